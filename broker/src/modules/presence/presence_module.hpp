// RFC 6121 §4: presence broadcast, probes, directed presence, and unavailable on disconnect.
//
// - Initial presence (§4.2): broadcast to contacts with subscription from/both and to the
//   user's own available resources; probes to contacts with to/both; the new resource gets the
//   presence of the user's other available resources.
// - Probes (§4.3) are answered on the probed user's home shard from last_presence() of each of
//   its available resources when the prober is subscribed (from/both), or with unavailable when
//   it has none.
// - Updates (§4.4) are broadcast like initial presence; an unchanged one is not (DESIGN §5).
// - Unavailable (§4.5), sent or implied by the end of the session: to contacts, own resources
//   and every directed-presence recipient (§4.6), whose list is then dropped.
// Subscription stanzas are the roster module's.
//
// Lives on: every shard; handlers run on the user's home shard. Per-session state: directed
// presence recipients and the last broadcast presence.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "broker/src/modules/api.hpp"
#include "broker/src/modules/roster/roster_store.hpp"

namespace starling::modules {

class PresenceModule final : public Module {
public:
    // Its name, options and factory, for the module list and the configuration.
    static ModuleSpec spec();
    std::string_view name() const noexcept override { return "presence"; }
    void install(ModuleContext& ctx) override;

    // Presence suppressed at the source because it did not change (DESIGN §5), on this shard.
    std::uint64_t suppressed() const noexcept { return _suppressed; }

private:
    Handled on_outbound(OutboundEvent& ev);
    Handled on_inbound(InboundEvent& ev);
    void on_available(Session& session);
    void on_unavailable(Session& session);
    // `bytes` (stamped, from the session's full JID) to every contact with from/both and to the
    // user's other available resources.
    void broadcast(Session& session, std::string_view type, std::string_view bytes, bool to_self);

    ShardServices* _shard = nullptr;
    std::unique_ptr<roster::RosterStore> _store;
    std::uint64_t _suppressed = 0;
};

}  // namespace starling::modules
