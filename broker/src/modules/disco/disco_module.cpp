#include "broker/src/modules/disco/disco_module.hpp"

#include "broker/src/c2s/shard_context.hpp"
#include "broker/src/modules/host.hpp"
#include "xmpp/xml/writer.hpp"

namespace starling::modules {

namespace {
constexpr std::string_view k_ns_info = "http://jabber.org/protocol/disco#info";
constexpr std::string_view k_ns_items = "http://jabber.org/protocol/disco#items";
}  // namespace

void DiscoModule::install(ModuleContext& ctx) {
    ctx.add_disco_feature(k_ns_info);
    ctx.add_disco_feature(k_ns_items);
    c2s::ShardContext* shard = &ctx.shard();
    ctx.on_iq(IqType::get, k_ns_info, "query", [shard](IqEvent& ev) {
        if (ev.payload.attribute("node")) {
            ev.reply_error(xmpp::StanzaError::item_not_found);  // XEP-0030 §3.1: no such node
            return Handled::yes;
        }
        std::string inner;
        xmpp::xml::Writer w(inner);
        w.open("query").attr("xmlns", k_ns_info);
        if (ev.to_account) {
            // XEP-0030 §3.1 and the registry: a registered account.
            w.open("identity").attr("category", "account").attr("type", "registered").close();
            w.open("feature").attr("var", k_ns_info).close();
            for (const auto& f : shard->modules->account_disco_features()) {
                if (f != k_ns_info) w.open("feature").attr("var", f).close();
            }
        } else {
            w.open("identity").attr("category", "server").attr("type", "im").attr("name", "Starling").close();
            for (const auto& f : shard->modules->disco_features()) w.open("feature").attr("var", f).close();
        }
        w.close();
        ev.reply_result(inner);
        return Handled::yes;
    });
    ctx.on_iq(IqType::get, k_ns_items, "query", [](IqEvent& ev) {
        if (ev.payload.attribute("node")) {
            ev.reply_error(xmpp::StanzaError::item_not_found);
            return Handled::yes;
        }
        std::string inner;
        xmpp::xml::Writer w(inner);
        w.open("query").attr("xmlns", k_ns_items).close();
        ev.reply_result(inner);
        return Handled::yes;
    });
}

}  // namespace starling::modules
