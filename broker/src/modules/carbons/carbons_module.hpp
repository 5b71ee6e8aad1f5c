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

#include <cstddef>
#include <memory>
#include <vector>

#include "broker/src/modules/api.hpp"

namespace starling::modules {

// Per-session slot (C2sSession::slot<CarbonsState>()). While enabled it counts in its shard's
// `enabled_sessions` (shared: a slot may outlive the module at shutdown), so that the message
// hooks skip the user's session lookup while nobody on the shard has carbons on, the usual
// case in a device fleet.
struct CarbonsState {
    bool enabled = false;
    std::shared_ptr<std::size_t> enabled_sessions;  // set while enabled
    void set(bool on, const std::shared_ptr<std::size_t>& count) noexcept;
    CarbonsState() = default;
    CarbonsState(const CarbonsState&) = delete;
    CarbonsState& operator=(const CarbonsState&) = delete;
    ~CarbonsState() { set(false, nullptr); }
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

private:
    // Sessions of this shard with carbons enabled (every session of a user is on its home
    // shard, DESIGN §2, so both hooks look only here).
    std::shared_ptr<std::size_t> _enabled_sessions = std::make_shared<std::size_t>(0);
};

// Which of `sessions` the router gives a message for `to` (a bare or full JID of their
// account), RFC 6121 §8.5.2-§8.5.3 as router.cpp applies them; `type` is the message type.
// Exposed for tests.
std::vector<router::Endpoint*> rfc6121_recipients(const std::vector<router::Endpoint*>& sessions,
                                                 std::string_view to, std::string_view type);

}  // namespace starling::modules
