// RFC 6121 §4: presence broadcast, probes, directed presence, and unavailable on disconnect.
//
// - Initial presence (§4.2): broadcast to contacts with subscription from/both and to the
//   user's own available resources; probes to contacts with to/both; the new resource gets the
//   presence of the user's other available resources.
// - Probes (§4.3) are answered on the probed user's home shard from last_presence() of each of
//   its available resources when the prober is subscribed (from/both), or with unavailable when
//   it has none. Their reads go off the reactor when cold; at most `[presence] max_probe_reads`
//   probes per shard wait on the disk at once, and a probe past that is dropped, not answered.
// - Updates (§4.4) are broadcast like initial presence; an unchanged one is not (DESIGN §5).
// - Silent accounts (silent.hpp, DESIGN §5): available presence reaches the account's own
//   resources only, and probes to it are answered unavailable.
// - Unavailable (§4.5), sent or implied by the end of the session: to contacts, own resources
//   and every directed-presence recipient (§4.6), whose list is then dropped.
// Subscription stanzas are the roster module's.
//
// Lives on: every shard; handlers run on the user's home shard. Per-session state: directed
// presence recipients and the last broadcast presence.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

#include "broker/src/modules/api.hpp"
#include "broker/src/modules/blocking/blocklist.hpp"
#include "broker/src/modules/roster/roster_store.hpp"
#include "broker/src/storage/move_function.hpp"

namespace starling::session {
class InputHold;
}

namespace starling::modules {

// Plain per-shard integers (CONVENTIONS §4), exported with ModuleContext::add_counter.
struct PresenceCounters {
    std::uint64_t broadcasts = 0;           // available or unavailable presence broadcast to contacts
    std::uint64_t suppressed_unchanged = 0; // identical to the last one broadcast: not sent again
    std::uint64_t suppressed_silent = 0;    // a silent account's available presence: not sent to contacts
    std::uint64_t probes_silent = 0;        // probes to a silent account answered unavailable
    std::uint64_t probes_dropped = 0;       // not answered: max_probe_reads disk reads in flight already
};

// `[presence] max_probe_reads`: probes of this shard whose answer waits on the store's reader
// thread at once (issue 14). At least 1: a probe that needs the disk past it is dropped.
inline constexpr std::uint32_t k_default_max_probe_reads = 1024;

class PresenceModule final : public Module {
public:
    explicit PresenceModule(std::string silent_prefix = {}, std::uint32_t max_probe_reads = k_default_max_probe_reads)
        : _silent_prefix(std::move(silent_prefix)), _max_probe_reads(max_probe_reads < 1 ? 1 : max_probe_reads) {}
    // Its name, options and factory, for the module list and the configuration.
    static ModuleSpec spec();
    std::string_view name() const noexcept override { return "presence"; }
    ~PresenceModule() override;
    void install(ModuleContext& ctx) override;

    const PresenceCounters& counters() const noexcept { return _counters; }
    // Probes of this shard whose answer waits on a read off the reactor now (<= max_probe_reads).
    std::uint32_t probe_reads_in_flight() const noexcept { return _probe_reads; }
    // Whether `bare` (a local account) is silent: by the configured prefix or its stored flag.
    bool is_silent(std::string_view bare) const;

private:
    Handled on_outbound(OutboundEvent& ev);
    Handled on_inbound(InboundEvent& ev);
    // Holds a contact's presence for `owner` back while a roster change of `owner` waits to be
    // durable (and behind presence held before it): Handled::yes when it took the envelope.
    Handled hold_behind_roster_writes(router::Envelope& env);
    void on_available(Session& session);
    // §4.3.2's answer to a probe from `from`, once the probed account `owner` was read (exists),
    // with the prober's roster item and the silent flag.
    void answer_probe(const std::string& owner, std::string_view from, bool exists,
                      const std::optional<roster::RosterItem>& item, bool silent);
    void flush_if_posted();
    bool _in_probe_call = false;  // inside on_inbound's probe reads: a completion now is inline

    // One of the shard's max_probe_reads places, held by a probe from its first read that goes
    // off the reactor until its answer is sent (or it ends unanswered): at most one read of
    // that probe is queued at a time, so the reader's queue holds at most max_probe_reads
    // probe reads. Move-only; frees the place when destroyed, if the module still exists.
    class ProbeSlot {
    public:
        ProbeSlot() = default;
        explicit ProbeSlot(PresenceModule& m) : _module(&m), _alive(m._alive) { ++m._probe_reads; }
        ProbeSlot(ProbeSlot&& o) noexcept : _module(std::exchange(o._module, nullptr)), _alive(std::move(o._alive)) {}
        ProbeSlot& operator=(ProbeSlot&& o) noexcept {
            if (this != &o) {
                release();
                _module = std::exchange(o._module, nullptr);
                _alive = std::move(o._alive);
            }
            return *this;
        }
        ~ProbeSlot() { release(); }
        bool held() const noexcept { return _module != nullptr; }

    private:
        void release() noexcept {
            if (_module != nullptr && !_alive.expired()) --_module->_probe_reads;
            _module = nullptr;
        }
        PresenceModule* _module = nullptr;
        std::weak_ptr<int> _alive;
    };
    // One read of a probe's answer (§4.3.2): `fn` runs inline when the answer is in memory, else
    // once the reader thread has it, if `slot` is held or one of max_probe_reads is free (then
    // `slot` takes it). Past the cap the probe is dropped: `fn` never runs (counted, logged).
    using ProbeReadThen =
        storage::MoveFunction<void(xmpp::Result<std::optional<std::string>, storage::Errc>, ProbeSlot)>;
    void probe_read(storage::Column c, std::string_view key, ProbeSlot slot, ProbeReadThen fn);
    void drop_probe();  // counts it; logs now and then
    void on_unavailable(Session& session);
    // `bytes` (stamped, from the session's full JID) to every contact with from/both and to the
    // user's other available resources. The contacts come from the roster, read through
    // with_roster; `hold` (may be null) is released once they have it.
    // `blocked`: the user's XEP-0191 list (available presence skips those contacts).
    void broadcast(Session& session, std::string_view type, std::string_view bytes, bool to_self,
                   bool to_contacts = true, std::shared_ptr<session::InputHold> hold = nullptr,
                   blocking::BlockList blocked = {});
    // What an available presence of `owner` needs before it is broadcast: whether the account
    // is silent, and (when not) its block list. Read through the shard's writer without touching
    // the disk on this thread (issue 14); `fn` may run inline. Never after the module is gone.
    using StateThen = storage::MoveFunction<void(bool silent, blocking::BlockList blocked)>;
    void presence_state(const std::string& owner, StateThen fn);
    bool _in_state_call = false;  // inside presence_state's own call: a completion now is inline

    // Runs `fn` with `owner`'s roster, read without touching the disk on this thread (issue 14:
    // RosterStore::load_async), after every earlier with_roster of `owner` on this shard: a
    // user's broadcasts and probes leave in the order they were asked for (an unavailable never
    // overtakes the available before it). Inline when nothing is waiting and the roster is in
    // memory. Never after the module is gone.
    using RosterThen = storage::MoveFunction<void(xmpp::Result<roster::RosterSnapshot, storage::Errc>)>;
    void with_roster(const std::string& owner, RosterThen fn);
    void next_roster(const std::string& owner);
    struct RosterQueue {
        std::deque<RosterThen> waiting;
        bool reading = false;
    };
    std::unordered_map<std::string, RosterQueue> _roster_queues;
    bool _in_roster_call = false;  // inside with_roster's own call: a completion now is inline

    ShardServices* _shard = nullptr;
    std::unique_ptr<roster::RosterStore> _store;
    std::string _silent_prefix;
    std::uint32_t _max_probe_reads = k_default_max_probe_reads;
    std::uint32_t _probe_reads = 0;  // ProbeSlots held
    PresenceCounters _counters;
    std::unordered_map<std::string, std::uint32_t> _held;  // owner -> presence stanzas held back
    bool _releasing = false;                                // routing a held stanza again
    std::shared_ptr<int> _alive = std::make_shared<int>(0); // completions check it
};

}  // namespace starling::modules
