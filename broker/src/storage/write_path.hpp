// The one write path of every store (DESIGN §6, issue 14): a shard stages its writes during a
// reactor turn into one WriteBatch; at the end of the turn the batch is sealed and handed to
// the broker's Committer, whose thread writes everything queued by all shards with one fsync
// (group commit) and posts each shard's completions back to that shard's io_context. The shard
// thread never calls DB::Write, and never waits for the disk.
//
//   shard turn:   put/erase/erase_range ... when_durable(synced, cb)   -> one open WriteBatch
//   end of turn:  seal (posted by the first stage of the turn)          -> Committer queue
//   committer:    take all queued, DB::Write (+ one fsync), post back   -> shard io_context
//   shard:        drop the batch from the overlay, run its completions in staging order
//
// See broker/src/storage/README.md for durability levels, the read path and fault recovery.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "broker/src/storage/errc.hpp"
#include "broker/src/storage/move_function.hpp"
#include "broker/src/storage/store.hpp"
#include "xmpp/result.hpp"

namespace asio {
class io_context;
}

namespace starling::storage {

class SegmentLog;

// How far a write must get before its completion runs. Each level includes the ones below.
enum class Durability : std::uint8_t {
    memory,  // memtable only, WAL disabled: caches that can be rebuilt; lost with the process
    logged,  // appended to the WAL, no fsync: survives a process crash, not a power cut
    synced,  // WAL fsynced: survives a power cut; what an acknowledgement to a client promises
             // (XEP-0198 <a/>, an IQ result). StoreOptions::sync_writes=false downgrades it to
             // logged (the operator's choice).
};

std::string_view to_string(Durability d) noexcept;

using Completion = MoveFunction<void(xmpp::Result<void, Errc>)>;
using ReadCompletion = MoveFunction<void(xmpp::Result<std::optional<std::string>, Errc>)>;

// Commit latency (seal to committed, per batch), in the bucket style of the router's histogram
// (router.hpp k_latency_bounds_us) but reaching further: an fsync takes milliseconds, a sick
// disk seconds.
inline constexpr std::int64_t k_commit_latency_bounds_us[] = {100,    250,    500,     1'000,   2'500,   5'000,
                                                              10'000, 25'000, 100'000, 250'000, 1'000'000};
inline constexpr std::size_t k_commit_latency_buckets = std::size(k_commit_latency_bounds_us) + 1;

// Health and counters of the committer. Written by the committer thread, read by anyone (the
// metrics scrape, a health check): hence atomics, all relaxed, each value on its own. A reader
// sees each counter exact but not a snapshot of all of them at one instant.
struct CommitterStats {
    std::atomic<bool> healthy{true};           // false from a failed write until recovery
    std::atomic<std::uint64_t> groups{0};      // group commits (one per wake-up with work)
    std::atomic<std::uint64_t> batches{0};     // shard batches committed
    std::atomic<std::uint64_t> ops{0};         // puts/erases in them
    std::atomic<std::uint64_t> bytes{0};       // WriteBatch data size
    std::atomic<std::uint64_t> db_writes{0};   // DB::Write calls
    std::atomic<std::uint64_t> syncs{0};       // fsyncs asked for (a synced Write or SyncWAL)
    std::atomic<std::uint64_t> faults{0};      // failed DB writes or syncs
    std::atomic<std::uint64_t> failed_batches{0};  // batches whose completions got an error
    std::atomic<std::uint64_t> recoveries{0};  // DB::Resume() that made the store writable
    std::atomic<std::uint64_t> pending{0};     // batches queued, not yet taken by the committer
    std::atomic<std::uint8_t> last_error{static_cast<std::uint8_t>(Errc::io_error)};  // of the last fault
    std::array<std::atomic<std::uint64_t>, k_commit_latency_buckets> latency{};  // non-cumulative counts
    std::atomic<std::uint64_t> latency_sum_us{0};
};

// Merging the shards' batches into one WriteBatch per group is as fast or faster than one
// DB::Write per shard batch with only the last synced: fewer passes through RocksDB's write
// queue for the same single fsync. bench/storage_bench.cpp, 200 B records, ext4 on a shared
// virtio disk, 2 vCPUs, medians of 5, records durable per second, merged vs per batch:
//                           run A (fsync 0.24 ms)     run C (fsync 3.4 ms, busy disk)
//   1 record per turn, 1 shard   275k vs 203k              124k vs 77k
//   1 record per turn, 2 shards  250k vs 212k              108k vs 73k
//   16 per turn, 1 shard         402k vs 326k              145k vs 150k
//   16 per turn, 2 shards        358k vs 367k              267k vs 185k
// (A run B between them, with the disk at its noisiest, had per batch ahead in 2 of 4 by up
// to 1.5x: the disk, not the write path, dominates such runs.)
inline constexpr bool k_merge_shards_default = true;

struct CommitterOptions {
    // Sealed batches waiting for the committer, all shards together. When full, a shard keeps
    // adding to its open batch and retries a moment later: the reactor never blocks.
    std::size_t max_queued_batches = 1024;
    // One merged WriteBatch per group instead of one DB::Write per shard batch (one fsync
    // either way). See k_merge_shards_default for the measurement.
    bool merge_shards = k_merge_shards_default;
    // DB::Resume() after a fault: first after resume_backoff_min, doubling up to the max.
    std::uint32_t resume_backoff_min_ms = 100;
    std::uint32_t resume_backoff_max_ms = 5'000;
};

class Committer;

// Per-shard counters: plain integers read on the shard (CONVENTIONS §4), summed at scrape time.
struct ShardWriterCounters {
    std::uint64_t staged_ops = 0;
    std::uint64_t sealed_batches = 0;
    std::uint64_t queue_full = 0;        // seals put off because the committer queue was full
    std::uint64_t completions_ok = 0;
    std::uint64_t completions_failed = 0;
    std::uint64_t reads_overlay = 0;     // answered from staged, uncommitted writes
    std::uint64_t reads_inline = 0;      // get_async answered from memtable or block cache
    std::uint64_t reads_offloaded = 0;   // get_async sent to the reader thread
    std::uint64_t tasks_offloaded = 0;   // run_off_reactor work sent to the reader thread
};

// ShardWriter: the shard's front to the store. Stages writes into the turn's batch, keeps them
// readable (the overlay) until committed, and runs completions when they are durable.
//
// Lives on: one shard, for life; every call on that shard's thread. Construct it after the
// Committer is started and destroy it before the io_context (its timers and posted handlers
// belong to that io_context), and before the Committer. Destroying it completes every callback still waiting with
// Errc::stopped: nothing is dropped silently (the writes themselves may still be committed).
// Those callbacks run inside the destructor: they must not use the writer.
class ShardWriter {
public:
    ShardWriter(asio::io_context& io, std::uint16_t shard, Committer& committer);
    ~ShardWriter();
    ShardWriter(const ShardWriter&) = delete;
    ShardWriter& operator=(const ShardWriter&) = delete;

    // Stage a write into this turn's batch. `at_least` is the least the write needs: memory
    // writes go without the WAL unless the same batch holds a logged one. Fails only when the
    // batch cannot take it (allocation, RocksDB size limits); nothing is staged then.
    xmpp::Result<void, Errc> put(Column c, std::string_view key, std::string_view value,
                                 Durability at_least = Durability::logged) noexcept;
    xmpp::Result<void, Errc> erase(Column c, std::string_view key, Durability at_least = Durability::logged) noexcept;
    // Like put, but not kept in the overlay: get() and get_async() do not see the write until it
    // is committed. For stores that only add records under fresh keys and read them back after
    // when_durable (the MAM archive): no copy of the key and value, no map insertion, per write.
    xmpp::Result<void, Errc> append(Column c, std::string_view key, std::string_view value,
                                    Durability at_least = Durability::logged) noexcept;
    // Stages a record into `log` (storage/segment_log.hpp), written by the committer just
    // before this batch goes to RocksDB; a failed log write fails the batch. Returns the
    // record's position, which index records staged after it in the same turn may name: they
    // are never committed without it. Not readable until committed (when_durable). One log per
    // writer (a shard has its own). `id` must be 2 or more.
    xmpp::Result<std::uint64_t, Errc> append_log(SegmentLog& log, std::uint64_t id, std::string_view payload,
                                                 std::string_view payload_tail = {}) noexcept;
    // The payload of a record append_log staged this turn, while it can still be amended in
    // place (see SegmentLog::staged_payload); empty once its batch is sealed.
    std::span<char> staged_log_payload(SegmentLog& log, std::uint64_t position) noexcept;
    // Erases [begin, end).
    xmpp::Result<void, Errc> erase_range(Column c, std::string_view begin, std::string_view end,
                                         Durability at_least = Durability::logged) noexcept;

    // `done` runs on this shard's io_context, never inline, once every write staged before it on
    // this shard is committed at `level` (for writes staged at least at that level); or with the
    // error, when a commit of any of those writes failed. Completions run in staging order.
    // A write that got an error may or may not be stored: the store is what a read says.
    void when_durable(Durability level, Completion done) noexcept;

    // The value as this shard sees it: staged writes first (read-your-writes), else RocksDB.
    // Not found is an empty optional. May read from disk on this thread: on the stanza path,
    // prefer get_async.
    xmpp::Result<std::optional<std::string>, Errc> get(Column c, std::string_view key) noexcept;

    // Like get, without touching the disk on this thread. MAY RUN `done` INLINE, before
    // get_async returns: when the answer is in the overlay, the memtable or the block cache.
    // Otherwise the read goes to the committer's reader thread and `done` is posted back to
    // this shard. A write staged after the call is not seen by it.
    void get_async(Column c, std::string_view key, ReadCompletion done) noexcept;
    // The inline part of get_async alone: the overlay, the memtable and the block cache, or
    // Errc::not_in_memory when the answer needs the disk (then nothing was read). For callers
    // that bound their own reads off the reactor before they ask for one (presence probes).
    xmpp::Result<std::optional<std::string>, Errc> get_in_memory(Column c, std::string_view key) noexcept;

    // Runs `work` on the committer's reader thread, then `done` on this shard (posted), in
    // submission order of neither: for reads that may touch the disk (a MAM query's scan), so
    // that a slow disk stalls the reader and not the reactor. `work` may read the Store (only
    // RocksDB: it does not see this shard's staged writes; wait for them first, e.g. with
    // when_durable) and must touch nothing that belongs to the shard; what it produces reaches
    // `done` through state both capture. `done` is dropped, never run, once this writer is gone.
    // If the reader thread is stopping, both run here, now.
    using Task = MoveFunction<void()>;
    void run_off_reactor(Task work, Task done) noexcept;

    // What this shard's staged and in-flight writes say of `key`: nullopt when they hold
    // nothing for it (RocksDB answers); else the value, or an empty optional when erased.
    std::optional<std::optional<std::string>> staged(Column c, std::string_view key) const;
    // The staged and in-flight writes whose key starts with `prefix`, in key order, each with
    // what staged() says of it. Merged with a RocksDB scan of the same prefix (whose keys are
    // looked up with staged(): a range erase may cover them), a prefix read sees this shard's
    // own writes. Allocates: call from code that may throw, or catch.
    std::vector<std::pair<std::string, std::optional<std::string>>> staged_with_prefix(Column c,
                                                                                      std::string_view prefix) const;

    // Hands the open batch to the committer now rather than at the end of the turn (shutdown,
    // tests). A no-op when nothing is staged.
    void seal() noexcept;

    // Writes staged and not yet committed (keys and range erases in the overlay).
    std::size_t overlay_size() const noexcept;
    // Sealed batches whose completions have not run yet.
    std::size_t in_flight() const noexcept;
    std::uint16_t shard() const noexcept;
    const ShardWriterCounters& counters() const noexcept;

    struct State;  // defined in write_path_detail.hpp; shared with handlers posted to this shard

private:
    std::shared_ptr<State> _state;
};

// Committer: the broker-wide group committer, and the reader thread behind
// ShardWriter::get_async. One per broker, over the broker's Store.
//
// Lives on: its own two threads (commit, read), started and stopped as a pair by the owner of
// the shards: start() after the Store is open, stop() before any shard's io_context is
// destroyed (completions are posted to them). stop() drains: every batch queued before it is
// committed and its completions posted; a batch sealed after it completes with Errc::stopped.
// Thread-safe: shards call it from their threads; stats() from anywhere.
class Committer {
public:
    explicit Committer(Store& store, CommitterOptions options = {});
    ~Committer();  // stop()
    Committer(const Committer&) = delete;
    Committer& operator=(const Committer&) = delete;

    void start();          // start-up code: throws std::system_error if a thread cannot start
    void stop() noexcept;  // idempotent
    bool is_running() const noexcept;

    bool is_healthy() const noexcept { return _stats.healthy.load(std::memory_order_relaxed); }
    const CommitterStats& stats() const noexcept { return _stats; }
    Store& store() noexcept { return _store; }
    const CommitterOptions& options() const noexcept { return _options; }

private:
    friend class ShardWriter;
    friend struct ShardWriter::State;
    struct Impl;
    struct Sealed;
    struct ReadRequest;
    enum class Submitted : std::uint8_t { queued, full, stopped };
    // On success `batch` is moved from; otherwise it is left as it was.
    Submitted submit(Sealed& batch) noexcept;
    bool submit_read(ReadRequest& request) noexcept;

    Store& _store;
    CommitterOptions _options;
    CommitterStats _stats;
    std::unique_ptr<Impl> _impl;
};

}  // namespace starling::storage
