// XEP-0352 Client State Indication: <csi xmlns='urn:xmpp:csi:0'/> in the stream features after
// authentication (§4.1); <inactive/> and <active/> switch the session's state (§4.2), which
// starts active (§5). While a session is inactive, what is delivered to it goes through a
// DeliveryFilter that holds presence, lone chat states and PubSub notifications in a CsiQueue
// and writes everything held, in order, as soon as something urgent arrives, the queue passes
// its limits, or the client says <active/> (DESIGN §5, "at the sink").
//
// Wire and policy are split (CONVENTIONS §5): the nonza handlers only switch the state; the
// queue (csi_queue.hpp) decides what waits.
//
// Lives on: every shard; handlers run on the session's home shard. Per-session state is the
// CsiSession slot; an active session has no filter installed and pays nothing.
#pragma once

#include <cstdint>
#include <string_view>

#include "broker/src/modules/api.hpp"
#include "broker/src/modules/csi/csi_queue.hpp"

namespace starling::modules {

// Plain per-shard integers (CONVENTIONS §4), exported with ModuleContext::add_counter.
struct CsiCounters {
    std::uint64_t inactive = 0;         // <inactive/> received while active
    std::uint64_t held = 0;             // stanzas that entered a queue
    std::uint64_t coalesced = 0;        // held stanzas replaced by a newer one from the same JID
    std::uint64_t coalesced_bytes = 0;  // their bytes: never written (DESIGN §5: saved bytes count)
    std::uint64_t flush_urgent = 0;     // flushes: an urgent stanza arrived
    std::uint64_t flush_active = 0;     // flushes: <active/>
    std::uint64_t flush_overflow = 0;   // flushes: the queue passed max_held or max_held_bytes
    std::uint64_t flushed = 0;          // stanzas written by flushes
};

class CsiModule final : public Module {
public:
    explicit CsiModule(csi::QueueLimits limits = {}) : _limits(limits) {}
    // Its name, options and factory, for the module list and the configuration.
    static ModuleSpec spec();
    std::string_view name() const noexcept override { return "csi"; }
    void install(ModuleContext& ctx) override;

    const CsiCounters& counters() const noexcept { return _counters; }

    enum class Reason : std::uint8_t { urgent, active, overflow };
    // Writes what `session` holds (if anything) and counts it under `reason`.
    void flush(Session& session, Reason reason);

private:
    friend struct CsiSession;
    void set_inactive(Session& session);
    void set_active(Session& session);

    csi::QueueLimits _limits;
    CsiCounters _counters;
};

}  // namespace starling::modules
