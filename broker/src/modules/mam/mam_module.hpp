// XEP-0313 Message Archive Management (urn:xmpp:mam:2) with XEP-0059 paging: every eligible
// message a user sends (outbound hook) or receives (inbound hook) is archived in the user's
// archive, on the user's home shard; a received message gets a <stanza-id/> (XEP-0359) naming
// its archive id before it is delivered. Queries filter by with/start/end and page with RSM.
// Retention (by age and by count) runs in a sweep on a timer, off the message path.
//
// Lives on: every shard (one MessageArchive each). Hooks run on the home shard of the archive's
// owner, so one user's archive is only ever written by one thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>
#include <string>

#include "broker/src/modules/mam/archive.hpp"
#include "broker/src/modules/mam/query.hpp"
#include "broker/src/modules/api.hpp"
#include "broker/src/modules/carbons/forward.hpp"

#include <asio/steady_timer.hpp>

namespace starling::storage {
class Store;
}

namespace starling::modules {

struct MamOptions {
    // Configured as accounts.mam_retention_days and accounts.mam_max_messages_per_user; page
    // sizes (default 50, at most 250) are fixed.
    std::uint32_t retention_days = 365;
    std::uint32_t max_messages_per_user = 10'000;
    mam::QueryLimits limits{};
};

class MamModule final : public Module {
public:
    // Runs before carbons (-20), so that <received/> copies carry the <stanza-id/>, and after
    // blocking (default 0), so that blocked messages are not archived.
    static constexpr int k_priority = -10;

    // `store`: null means the ShardContext's store; when that is null too (unit tests), memory.
    explicit MamModule(MamOptions options = {}, storage::Store* store = nullptr) noexcept
        : _options(options), _store(store) {}

    // Its name, options and factory, for the module list and the configuration.
    static ModuleSpec spec();
    std::string_view name() const noexcept override { return "mam"; }
    void install(ModuleContext& ctx) override;

    // The sweep: every interval, up to k_sweep_users queued users get their retention enforced.
    static constexpr std::chrono::milliseconds k_sweep_interval{1'000};
    static constexpr std::size_t k_sweep_users = 64;
    // Users with an archive whom nobody queued (no login, no message since the start) are
    // visited by a pass over the whole archive, k_sweep_users per idle tick; a pass that ends
    // starts again after this long.
    static constexpr std::chrono::hours k_idle_pass_interval{1};
    // Bodies no index record names any more (count trimming, deleted accounts) are found by a
    // pass over the body space, this many per tick, on the store's reader thread; a pass that
    // ends starts again after k_idle_pass_interval.
    static constexpr std::size_t k_sweep_bodies = 1024;
    // The same pass over the body logs (storage/segment_log.hpp): records looked at per tick.
    static constexpr std::size_t k_sweep_log_records = 4096;

private:
    void arm_sweep();
    void sweep();
    void collect_bodies();
    void collect_log();
    void drop_log_segments(std::uint64_t floor);
    // The logs this shard sweeps: its own, and those of shards that no longer exist (a smaller
    // shard count than when they were written) whose number maps to it.
    std::vector<std::uint16_t> swept_logs() const;

    MamOptions _options;
    session::ShardServices* _shard = nullptr;
    std::unique_ptr<asio::steady_timer> _timer;
    bool _sweeping = false;
    std::string _idle_cursor;  // the pass over idle users: where it goes on
    std::chrono::steady_clock::time_point _next_idle_pass{};
    bool _collecting = false;   // the pass over bodies: a step in flight
    std::string _body_cursor;   // where it goes on
    std::chrono::steady_clock::time_point _next_body_pass{};
    bool _log_collecting = false;       // the pass over the body logs: a step in flight
    std::vector<std::uint16_t> _log_pass;  // logs still to visit in this pass (front: now)
    std::uint64_t _log_offset = 0;      // where it goes on in the front one
    std::chrono::steady_clock::time_point _next_log_pass{};
    std::uint64_t _log_floor = 0;       // segments below this floor were dropped
    storage::Store* _log_store = nullptr;  // the store of the archive's logs
    storage::Store* _store;
    std::unique_ptr<mam::MessageArchive> _archive;
    std::unique_ptr<mam::IdCodec> _ids;
    // Reused buffers of the message hooks (one shard thread): no allocation per message.
    struct Scratch {
        std::string stanza;  // a sent message, stamped
        std::string sid;     // a <stanza-id/> element
        // The last sent message archived (its body: `stanza`), which its recipient, when homed
        // on this shard, shares instead of storing a copy (the inbound hook runs next, in the
        // same call: ShardRouter::route delivers locally at once).
        bool sent_valid = false;
        std::uint64_t sent_id = 0;
        std::string sent_from;  // the sender's full JID
        std::string sent_to;    // the recipient's bare JID
        fwd::MessageFacts sent_facts;  // what the outbound walk read from it
        // The outbound hook's decision for the on_routed hook that follows: archive it (and
        // whether the facts must be read from the routed stanza first).
        bool pending = false;
        bool pending_needs_facts = false;
        // The system clock less the steady clock, in microseconds, measured at each sweep: an
        // envelope's steady read time (routed_ns) plus this is its archive time.
        std::int64_t clock_offset_us = 0;
    };
    std::unique_ptr<Scratch> _scratch = std::make_unique<Scratch>();
};

}  // namespace starling::modules
