// XEP-0160 Best Practices for Handling Offline Messages: chat and normal messages to an account
// with no available resource of non-negative priority are stored durably in the "offline"
// column (OfflineStore) and delivered, oldest first, with a XEP-0203 <delay/>, to the first
// resource that sends available presence of non-negative priority; then they are deleted.
//
// Lives on: every shard (one instance each). Everything about one user's queue happens on the
// home shard of its bare JID: on_undeliverable and the session events run there. The per-shard
// cache of queue sizes is keyed by bare JID and only ever touched by that shard's thread.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "broker/src/modules/api.hpp"
#include "broker/src/modules/offline/offline_store.hpp"
#include "broker/src/session/input_hold.hpp"

namespace starling::modules {

struct OfflineOptions {
    // Messages kept per user; one more gets <service-unavailable/> (XEP-0160 §2).
    // Configured as accounts.blocklist_max_items / accounts.offline_max_messages.
    std::uint32_t max_messages = 1000;
    // Stanza bytes handed to a session per reactor turn when flushing a queue, so that a long
    // queue does not overrun the session's output limit (c2s.max_output_bytes) in one go.
    std::size_t flush_bytes = 256u << 10;
    // Queue sizes cached per shard before the cache is dropped and rebuilt on demand.
    std::size_t max_cached_queues = 1u << 16;
    // Messages per shard waiting to be stored behind a read off the reactor (a queue's state
    // or an account not in memory, issue 14); one more is answered <resource-constraint/>
    // (RFC 6120 §8.3.3.18, type wait: retry later). Configured as offline.max_waiting.
    std::size_t max_waiting = 4096;
};

// Plain per-shard integers (CONVENTIONS §4).
struct OfflineCounters {
    std::uint64_t stored = 0;
    std::uint64_t delivered = 0;
    std::uint64_t rejected_full = 0;      // answered service-unavailable: queue full
    std::uint64_t rejected_no_store = 0;  // XEP-0334 <no-store/>: not ours to keep
    std::uint64_t dropped_chat_state = 0; // XEP-0160 §4: chat states alone are not stored
    std::uint64_t rejected_no_account = 0;  // RFC 6121 §8.5.1: no such user
    std::uint64_t storage_errors = 0;
    std::uint64_t rejected_busy = 0;      // max_waiting messages already wait for the disk
    std::uint64_t store_reads_offloaded = 0;  // stores that waited for a read off the reactor
};

class OfflineModule final : public Module {
public:
    explicit OfflineModule(OfflineOptions options = {}) : _options(options) {}
    ~OfflineModule() override;
    // Its name, options and factory, for the module list and the configuration.
    static ModuleSpec spec();
    std::string_view name() const noexcept override { return "offline"; }
    void install(ModuleContext& ctx) override;

    const OfflineCounters& counters() const noexcept { return _counters; }

private:
    Handled store(router::Envelope& env);
    // Stores one message now if what it needs is cached or in memory (the memtable, the block
    // cache): the queue's state, and while the queue is empty whether the account exists.
    // `exists` is what a read off the reactor said of the account (null: not read).
    enum class Outcome : std::uint8_t { stored, refused, cold };
    Outcome try_store(const std::string& bare, const router::Envelope& env,
                      const xmpp::Result<bool, storage::Errc>* exists);
    // A message whose store needs the disk: it waits, in arrival order behind the user's other
    // waiting messages, for a read on the store's reader thread (issue 14). Its sender's input
    // is held meanwhile when the sender is on this shard, so that an XEP-0198 <a/> never counts
    // a message that is not stored yet.
    struct Waiting {
        router::Envelope env;
        std::unique_ptr<session::InputHold> hold;  // released when the message is stored or bounced
    };
    void wait_for_read(const std::string& bare, router::Envelope& env);
    void start_store_read(const std::string& bare);
    // After the read: stores (or, `read_ok` false or refused, bounces) the user's waiting
    // messages, oldest first.
    void store_waiting(const std::string& bare, const xmpp::Result<bool, storage::Errc>* exists, bool read_ok);
    void deliver_stored(Session& session);
    // What one delivery reads: the queue's state when it is not cached, then its oldest
    // messages. Run inline from memory first, else on the store's reader thread (issue 14).
    struct BatchRead {
        bool need_state = false;
        std::size_t max_count = 0;
        std::size_t max_bytes = 0;
        xmpp::Result<offline::QueueState, storage::Errc> state = offline::QueueState{};
        xmpp::Result<std::vector<offline::OfflineRecord>, storage::Errc> records = std::vector<offline::OfflineRecord>{};
        void run(const offline::OfflineStore& db, std::string_view bare, bool memory_only);
        bool cold() const noexcept;
    };
    void deliver_batch(Session& session, const std::string& bare, BatchRead& read);
    void continue_later(Session& session);
    struct CachedQueue {
        offline::QueueState state;
        // Writes staged for this queue and not yet durable. While non-zero the entry stays
        // cached (a rescan of RocksDB would miss them) and the queue is not read from RocksDB.
        std::uint32_t unsynced = 0;
        bool stale = false;  // a write failed: drop the entry once `unsynced` is zero
    };
    CachedQueue* queue(std::string_view bare_jid);
    CachedQueue& cache(const std::string& bare_jid, offline::QueueState state);
    // Counts a staged write for `bare_jid` until the shard's writer says it is durable.
    void track(const std::string& bare_jid, CachedQueue& q);

    OfflineOptions _options;
    ShardServices* _shard = nullptr;
    std::unique_ptr<offline::OfflineStore> _db;
    std::unordered_map<std::string, CachedQueue> _queues;  // bare JID -> size (cache)
    std::unordered_set<std::string> _reading;  // queues whose delivery read is off the reactor
    std::unordered_map<std::string, std::deque<Waiting>> _waiting;  // bare JID -> messages behind a read
    std::size_t _waiting_count = 0;  // messages in _waiting, all users
    std::shared_ptr<int> _alive = std::make_shared<int>(0);         // timers check it
    OfflineCounters _counters;
};

}  // namespace starling::modules
