// XEP-0191 Blocking Command: block list get, block and unblock (one, several, all), pushes to
// the user's resources that asked for the list, persistence in the "blocking" column, and the
// enforcement: the user's stanzas to a blocked JID bounce with <not-acceptable/> +
// <blocked xmlns='urn:xmpp:blocking:errors'/>, and a blocked JID's stanzas to the user are
// handled as if the user were offline (§3.3).
//
// Lives on: every shard. Block lists are cached per shard, keyed by bare JID; a user's list is
// only read and changed on the user's home shard (IQs and outbound hooks run on the sender's
// home shard, inbound hooks on the recipient's: both are the user's). Which sessions asked for
// the list is a per-session slot.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "broker/src/modules/blocking/blocklist.hpp"
#include "broker/src/modules/api.hpp"
#include "broker/src/storage/move_function.hpp"
#include "broker/src/util/string_map.hpp"
#include "xmpp/xml/tokenizer.hpp"

namespace starling::modules {

struct BlockingOptions {
    // Items per block list; a block beyond it gets <policy-violation/>.
    // Configured as accounts.blocklist_max_items / accounts.offline_max_messages.
    std::size_t max_items = 1000;
    // Lists cached per shard; past it the lists of users with no session on the shard are
    // dropped (all of them when that is not enough) and read again on demand.
    std::size_t max_cached_lists = 1u << 16;
    // Stanzas per shard waiting for a block list read from disk (a stanza to an offline user
    // whose list is not cached; issue 14). Past it a message or an IQ get/set is answered
    // <resource-constraint/> and anything else dropped. Configured as blocking.max_waiting.
    std::size_t max_waiting = 10'000;
};

struct BlockingCounters {
    std::uint64_t outbound_refused = 0;  // the user wrote to a blocked JID
    std::uint64_t inbound_dropped = 0;   // from a blocked JID, silently (presence, errors)
    std::uint64_t inbound_bounced = 0;   // from a blocked JID, service-unavailable
    std::uint64_t storage_errors = 0;
    std::uint64_t waiting_refused = 0;   // stanzas refused: max_waiting wait for the disk
};

class BlockingModule final : public Module {
public:
    explicit BlockingModule(BlockingOptions options = {}) : _options(options) {}
    // Its name, options and factory, for the module list and the configuration.
    static ModuleSpec spec();
    std::string_view name() const noexcept override { return "blocking"; }
    void install(ModuleContext& ctx) override;
    ~BlockingModule() override { _alive.reset(); }

    const BlockingCounters& counters() const noexcept { return _counters; }

private:
    // The user's list (loaded on first use); null when the store failed. May read the disk on
    // this thread when the list is not cached: only the outbound check of a bound user's own
    // list uses it (cached at bind by preload(), kept by the eviction while the user is bound).
    const blocking::BlockList* list_of(std::string_view bare_jid);
    // What is known of `bare_jid`'s list without reading the disk: the list (cached, or read
    // from the overlay, the memtable or the block cache and cached), or `cold` (the disk is
    // needed; nothing was read), or `failed` (logged, counted; list null).
    enum class Known : std::uint8_t { list, cold, failed };
    struct Lookup {
        Known known;
        const blocking::BlockList* list = nullptr;
    };
    Lookup lookup(std::string_view bare_jid);
    // Reads `bare_jid`'s list on the store's reader thread, caches it, then runs `done` (with
    // the list, or null when the read failed) on this shard; reads of one list are shared.
    using ListFn = storage::MoveFunction<void(const blocking::BlockList*)>;
    void read_cold(const std::string& bare_jid, ListFn done);
    // `fn(list)` now when the list is known in memory; else once read, with `sender`'s input
    // held meanwhile (the IQs of the user's own list).
    void with_list(const std::string& bare_jid, Session& sender, ListFn fn);
    void cache(const std::string& bare_jid, blocking::BlockList list);
    // Routes again the stanzas that waited for `bare_jid`'s list (`read`: null when it failed).
    void replay(const std::string& bare_jid, const blocking::BlockList* read);
    // At bind: a user with a list that is not cached gets it read without touching the disk on
    // this thread (ShardWriter::get_async; issue 14), the session's input held until it is
    // cached, so that list_of() finds it in memory for the stanzas that follow.
    void preload(Session& session);
    enum class Recipient : std::uint8_t { allows, blocks, cold };
    Recipient recipient_blocks(std::string_view recipient_bare, std::string_view sender_full);
    bool blocks_in(const xmpp::Result<std::optional<std::string>, storage::Errc>& raw, std::string_view recipient_bare,
                   std::string_view sender_full);
    static void blocked_iq_error(std::string& out, std::string_view from, std::string_view to, std::string_view id);
    // An IQ to another account whose list is on disk only: held, then refused or dispatched.
    void defer_iq(OutboundEvent& ev);
    void dispatch_iq(Session& session, const std::string& bytes, const std::string& to, bool get);
    // `bytes` (one stanza of a jabber:client stream) parsed again by `tok`: a `stanza` event
    // (its element valid while `tok` lives), or any other kind when that fails.
    static xmpp::xml::Event reparse(xmpp::xml::Tokenizer& tok, std::string_view bytes);
    enum class Saved : std::uint8_t { now, later, failed };
    Saved save(const std::string& bare, blocking::BlockList next, DeferredIq& reply, std::function<void(DeferredIq&)> then);
    void get_list(const std::string& bare, const std::weak_ptr<Session>& who, DeferredIq reply,
                  const blocking::BlockList* list);
    void block(const std::string& bare, std::vector<std::string> items, DeferredIq reply,
               const blocking::BlockList* current);
    void unblock(const std::string& bare, std::vector<std::string> items, DeferredIq reply,
                 const blocking::BlockList* current);
    void after_block(const std::string& bare, const std::vector<std::string>& items,
                     const std::vector<std::string>& added);
    // Keeps `_with_list` true to the list `bare` now has.
    void note_list(const std::string& bare, bool empty);
    Handled on_get(IqEvent& ev);
    Handled on_block(IqEvent& ev);
    Handled on_unblock(IqEvent& ev);
    Handled on_outbound(OutboundEvent& ev);
    Handled on_inbound(InboundEvent& ev);
    void push(std::string_view bare_jid, std::string_view inner_xml);
    void send_presence(router::Endpoint& from, std::string_view to, bool available);

    BlockingOptions _options;
    ShardServices* _shard = nullptr;
    std::unique_ptr<blocking::BlockStore> _db;
    util::StringMap<blocking::BlockList> _lists;
    // The users homed on this shard who have a list (non-empty), read from the store at start
    // and kept with every change (lists change only on their owner's home shard, where they are
    // also checked): anyone else is known to block nobody without a lookup in `_lists` or a
    // read. Most devices never block anyone, so a fan-out to them costs no read. `_indexed`
    // false: the start-up read failed, and every check goes through `_lists` and the store.
    std::unordered_set<std::string, util::StringHash, std::equal_to<>> _with_list;
    bool _indexed = false;
    std::uint64_t _push_id = 0;
    // Cold reads in flight, by bare JID: what runs once the list is cached.
    util::StringMap<std::vector<ListFn>> _reading;
    // Stanzas for a user whose list is being read from disk, in arrival order: routed again
    // once it is cached (on_inbound then finds it in memory). `_waiting_count`: all users.
    util::StringMap<std::deque<router::Envelope>> _waiting;
    std::size_t _waiting_count = 0;
    // While the stanzas of `_replay_bare` are routed again: the outcome of its read, so that a
    // list that could not be read or cached is not read again for each of them.
    std::string _replay_bare;
    const blocking::BlockList* _replay_list = nullptr;
    BlockingCounters _counters;
    std::shared_ptr<int> _alive = std::make_shared<int>(0);  // completions check it
};

}  // namespace starling::modules
