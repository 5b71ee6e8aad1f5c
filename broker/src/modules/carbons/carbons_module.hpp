// XEP-0280 Message Carbons: a session enables or disables carbons (an IQ, state in a session
// slot); a chat message one resource sends is copied, wrapped in <sent/>, to the user's other
// carbons-enabled resources (outbound hook, on the sender's home shard); a chat message for the
// user is copied, wrapped in <received/>, to the carbons-enabled resources that the RFC 6121
// §8.5 rules do not give it to (inbound hook, on the recipient's home shard). Every session of
// a user lives on its home shard (DESIGN §2), so the copies are written directly to the
// sessions there: no routing, no hop.
//
// Lives on: every shard. Per-session state only (CarbonsState).
#pragma once

#include <vector>

#include "broker/src/modules/api.hpp"

namespace starling::modules {

// Per-session slot (C2sSession::slot<CarbonsState>()).
struct CarbonsState {
    bool enabled = false;
};

class CarbonsModule final : public Module {
public:
    // Hook priorities: after blocking (default 0, drops blocked stanzas first) and after MAM
    // (-10, which adds the <stanza-id/> the copies should carry).
    static constexpr int k_priority = -20;

    // Its name, options and factory, for the module list and the configuration.
    static ModuleSpec spec();
    std::string_view name() const noexcept override { return "carbons"; }
    void install(ModuleContext& ctx) override;
};

// Which of `sessions` the router gives a message for `to` (a bare or full JID of their
// account), RFC 6121 §8.5.2-§8.5.3 as router.cpp applies them; `type` is the message type.
// Exposed for tests.
std::vector<router::Endpoint*> rfc6121_recipients(const std::vector<router::Endpoint*>& sessions,
                                                 std::string_view to, std::string_view type);

}  // namespace starling::modules
