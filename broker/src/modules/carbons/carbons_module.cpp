#include "broker/src/modules/carbons/carbons_module.hpp"

#include <algorithm>

#include "broker/src/session/shard_services.hpp"
#include "broker/src/session/stamp.hpp"
#include "broker/src/modules/carbons/forward.hpp"
#include "broker/src/router/router.hpp"
#include "xmpp/jid.hpp"
#include "xmpp/ns.hpp"

namespace starling::modules {

namespace {

using xmpp::bare_of;

bool enabled(const router::Endpoint& s) noexcept {
    const auto* st = s.find_slot<CarbonsState>();
    return st != nullptr && st->enabled;
}

// A cheap test before parsing: only chat and normal messages can be eligible (XEP-0280 §6).
bool type_may_be_eligible(std::string_view type) noexcept {
    return type.empty() || type == "chat" || type == "normal";
}

Handled on_enable(IqEvent& ev, bool on, const std::shared_ptr<std::size_t>& count) {
    // XEP-0280 §4-§5: only for the sender's own sessions (to its bare JID or the server).
    if (!ev.is_to_self_or_server()) {
        ev.reply_error(xmpp::StanzaError::not_allowed);
        return Handled::yes;
    }
    ev.session.slot<CarbonsState>().set(on, count);  // §8.1: repeated requests are not errors
    ev.reply_result();
    return Handled::yes;
}

}  // namespace

void CarbonsState::set(bool on, const std::shared_ptr<std::size_t>& count) noexcept {
    if (on == enabled) return;
    if (on) {
        enabled_sessions = count;
        ++*enabled_sessions;
    } else {
        if (enabled_sessions) --*enabled_sessions;
        enabled_sessions.reset();
    }
    enabled = on;
}

std::vector<router::Endpoint*> rfc6121_recipients(const std::vector<router::Endpoint*>& sessions,
                                                 std::string_view to, std::string_view type) {
    std::vector<router::Endpoint*> out;
    if (to.find('/') != std::string_view::npos) {
        for (auto* s : sessions) {
            if (s->jid() != nullptr && s->jid()->full() == to) {
                out.push_back(s);  // §8.5.3.1: that resource, available or not
                return out;
            }
        }
        // §8.5.3.2.1: no such resource; chat and normal are handled as for the bare JID.
        if (!(type.empty() || type == "normal" || type == "chat")) return out;
    }
    // §8.5.2.1.1: the available resources of highest non-negative priority (router.cpp).
    int best = -129;
    for (auto* s : sessions) {
        if (s->is_available() && s->priority() >= 0) best = std::max(best, s->priority());
    }
    for (auto* s : sessions) {
        if (s->is_available() && s->priority() >= 0 && s->priority() == best) out.push_back(s);
    }
    return out;
}

void CarbonsModule::install(ModuleContext& ctx) {
    ctx.add_disco_feature(fwd::k_ns_carbons);  // XEP-0280 §3: on the server's disco#info
    ctx.on_iq(IqType::set, fwd::k_ns_carbons, "enable",
              [count = _enabled_sessions](IqEvent& ev) { return on_enable(ev, true, count); });
    ctx.on_iq(IqType::set, fwd::k_ns_carbons, "disable",
              [count = _enabled_sessions](IqEvent& ev) { return on_enable(ev, false, count); });

    // XEP-0280 §6 (sending): copies to the sender's other carbons-enabled resources, whether
    // or not the sender enabled carbons itself.
    ctx.on_outbound(
        router::StanzaKind::message,
        [count = _enabled_sessions](OutboundEvent& ev) {
            if (*count == 0 || !type_may_be_eligible(ev.type) || ev.to == nullptr) return Handled::no;
            const xmpp::Jid& me = *ev.session.jid();
            auto& shard = ev.session.shard();
            const auto& sessions = shard.router.sessions_of(me.bare_view());
            const bool any = std::any_of(sessions.begin(), sessions.end(),
                                         [&](router::Endpoint* s) { return s != &ev.session && enabled(*s); });
            if (!any) return Handled::no;
            const auto facts = fwd::read_facts(ev.element);
            if (!fwd::carbons_eligible(ev.type, facts) || facts.is_private || facts.no_copy) return Handled::no;
            // The copy carries the stamped 'from' like the original. The stream header's prefix
            // declarations are not at hand here (the session keeps them); clients do not use
            // stream-level prefixes inside messages in practice.
            std::string original;
            session::stamp_into(original, ev.element, me.full(), {});
            for (auto* s : sessions) {
                if (s == &ev.session || !enabled(*s)) continue;
                s->deliver(fwd::carbon("sent", me.bare_view(), s->jid()->full(), ev.type, original));
            }
            return Handled::no;
        },
        k_priority);

    // XEP-0280 §5 (receiving): copies to the carbons-enabled resources that do not get the
    // original under RFC 6121 §8.5.
    ctx.on_inbound(
        router::StanzaKind::message,
        [count = _enabled_sessions](InboundEvent& ev) {
            auto& env = ev.env;
            if (!type_may_be_eligible(env.type)) return Handled::no;
            // §7: a private message is not copied, and the receiving server SHOULD remove
            // <private/> before delivering it.
            if (fwd::remove_children(env.bytes, "private", fwd::k_ns_carbons)) return Handled::no;
            if (*count == 0) return Handled::no;  // nobody on this shard would get a copy
            const std::string_view bare = bare_of(env.to);
            // Between two resources of one user the sender's side made <sent/> copies already.
            if (bare_of(env.from) == bare) return Handled::no;
            const auto& sessions = ev.shard.router.sessions_of(bare);
            if (std::none_of(sessions.begin(), sessions.end(), [](router::Endpoint* s) { return enabled(*s); }))
                return Handled::no;
            const auto facts = fwd::read_facts(env.bytes);
            if (!fwd::carbons_eligible(env.type, facts) || facts.is_private || facts.no_copy) return Handled::no;
            const auto got = rfc6121_recipients(sessions, env.to, env.type);
            for (auto* s : sessions) {
                if (!enabled(*s) || std::find(got.begin(), got.end(), s) != got.end()) continue;
                s->deliver(fwd::carbon("received", bare, s->jid()->full(), env.type, env.bytes));
            }
            return Handled::no;
        },
        k_priority);
}

ModuleSpec CarbonsModule::spec() {
    return {
        .name = "carbons",
        .summary = "XEP-0280 message carbons",
        .optional = true,
        .options = {
        },
        .make = [](const OptionValues&) -> std::unique_ptr<Module> {
        return std::make_unique<CarbonsModule>();
    },
    };
}

}  // namespace starling::modules
