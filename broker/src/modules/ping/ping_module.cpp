#include "broker/src/modules/ping/ping_module.hpp"

namespace starling::modules {

namespace {
constexpr std::string_view k_ns_ping = "urn:xmpp:ping";
}

void PingModule::install(ModuleContext& ctx) {
    ctx.add_disco_feature(k_ns_ping);
    ctx.on_iq(IqType::get, k_ns_ping, "ping", [](IqEvent& ev) {
        ev.reply_result();  // XEP-0199 §4.2: an empty result
        return Handled::yes;
    });
}

}  // namespace starling::modules
