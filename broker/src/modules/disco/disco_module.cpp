#include "broker/src/modules/disco/disco_module.hpp"

#include <algorithm>
#include <memory>

#include "broker/src/modules/caps/caps_module.hpp"
#include "broker/src/session/shard_services.hpp"
#include "broker/src/session/hooks.hpp"
#include "xmpp/base64.hpp"
#include "xmpp/xml/writer.hpp"

namespace starling::modules {

namespace {
constexpr std::string_view k_ns_info = k_ns_disco_info;  // caps_module.hpp
constexpr std::string_view k_ns_items = "http://jabber.org/protocol/disco#items";
constexpr std::string_view k_server_identity = "server/im//Starling";
}  // namespace

void DiscoModule::install(ModuleContext& ctx) {
    ctx.add_disco_feature(k_ns_info);
    ctx.add_disco_feature(k_ns_items);
    ShardServices* shard = &ctx.shard();
    // Computed on first use: every module has declared its features by then.
    auto ver = std::make_shared<std::string>();
    auto server_ver = [shard, ver]() -> const std::string& {
        if (ver->empty()) *ver = caps_ver({std::string(k_server_identity)}, shard->hooks->disco_features());
        return *ver;
    };
    ctx.on_stream_features([server_ver](Session&, bool authenticated, std::string& out) {
        if (!authenticated) return;
        // XEP-0115 §6.3: capabilities in stream features.
        out += "<c xmlns='";
        out += k_ns_caps;
        out += "' hash='sha-1' node='";
        out += k_caps_node;
        out += "' ver='";
        out += server_ver();
        out += "'/>";
    });
    ctx.on_iq(IqType::get, k_ns_info, "query", [shard, server_ver](IqEvent& ev) {
        if (const auto node = ev.payload.attribute("node")) {
            // XEP-0115 §6.2: "node#ver" of our own caps is the same as no node; others unknown.
            const std::string ours = std::string(k_caps_node) + "#" + server_ver();
            if (ev.to_account || node.value() != ours) {
                ev.reply_error(xmpp::StanzaError::item_not_found);  // XEP-0030 §3.1: no such node
                return Handled::yes;
            }
        }
        std::string inner;
        xmpp::xml::Writer w(inner);
        w.open("query").attr("xmlns", k_ns_info);
        if (auto node = ev.payload.attribute("node")) w.attr("node", node.value());
        if (ev.to_account) {
            // XEP-0030 §3.1 and the registry: a registered account.
            w.open("identity").attr("category", "account").attr("type", "registered").close();
            for (const auto& i : shard->hooks->account_disco_identities()) {
                w.open("identity").attr("category", i.category).attr("type", i.type).close();
            }
            w.open("feature").attr("var", k_ns_info).close();
            for (const auto& f : shard->hooks->account_disco_features()) {
                if (f != k_ns_info) w.open("feature").attr("var", f).close();
            }
        } else {
            w.open("identity").attr("category", "server").attr("type", "im").attr("name", "Starling").close();
            for (const auto& f : shard->hooks->disco_features()) w.open("feature").attr("var", f).close();
        }
        w.close();
        ev.reply_result(inner);
        return Handled::yes;
    });
    ctx.on_iq(IqType::get, k_ns_items, "query", [shard](IqEvent& ev) {
        if (ev.payload.attribute("node")) {
            ev.reply_error(xmpp::StanzaError::item_not_found);
            return Handled::yes;
        }
        std::string inner;
        xmpp::xml::Writer w(inner);
        w.open("query").attr("xmlns", k_ns_items);
        if (!ev.to_account) {
            // XEP-0030 §4.1: the server's items are the services modules added (PubSub...).
            for (const auto& item : shard->hooks->disco_items()) {
                if (item.domain != ev.to) continue;
                w.open("item").attr("jid", item.jid);
                if (!item.name.empty()) w.attr("name", item.name);
                w.close();
            }
        }
        w.close();
        ev.reply_result(inner);
        return Handled::yes;
    });
}

ModuleSpec DiscoModule::spec() {
    return {
        .name = "disco",
        .summary = "XEP-0030 service discovery, XEP-0115 server capabilities",
        .optional = false,
        .options = {
        },
        .make = [](const OptionValues&) -> std::unique_ptr<Module> {
        return std::make_unique<DiscoModule>();
    },
    };
}

}  // namespace starling::modules
