#include "broker/src/modules/version/version_module.hpp"

#include "broker/src/session/shard_services.hpp"
#include "xmpp/xml/writer.hpp"

namespace starling::modules {

namespace {
constexpr std::string_view k_ns_version = "jabber:iq:version";
}

void VersionModule::install(ModuleContext& ctx) {
    ctx.add_disco_feature(k_ns_version);
    const std::string version = ctx.shard().server.version;
    ctx.on_iq(IqType::get, k_ns_version, "query", [version](IqEvent& ev) {
        if (ev.to_account) return Handled::no;  // an account's version is its client's to tell
        std::string inner;
        xmpp::xml::Writer w(inner);
        w.open("query").attr("xmlns", k_ns_version).leaf("name", "Starling").leaf("version", version).close();
        ev.reply_result(inner);
        return Handled::yes;
    });
}

ModuleSpec VersionModule::spec() {
    return {
        .name = "version",
        .summary = "XEP-0092 software version",
        .optional = true,
        .options = {
        },
        .make = [](const OptionValues&) -> std::unique_ptr<Module> {
        return std::make_unique<VersionModule>();
    },
    };
}

}  // namespace starling::modules
