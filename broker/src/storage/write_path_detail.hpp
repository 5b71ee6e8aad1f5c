// Internals of the write path shared by write_path.cpp (the shard side) and committer.cpp
// (the committer thread): the shard's state and the records that cross between them.
// Not for use outside storage/.
#pragma once

#include <algorithm>
#include <array>
#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <rocksdb/write_batch.h>

#include "broker/src/storage/segment_log.hpp"
#include "broker/src/storage/write_path.hpp"

namespace starling::storage::detail {

using Clock = std::chrono::steady_clock;
using VoidResult = xmpp::Result<void, Errc>;

inline constexpr std::size_t k_columns = static_cast<std::size_t>(Column::count_);

// A shard whose batch did not fit in the committer queue tries again after this long: short
// enough to add little latency, long enough not to spin the reactor.
inline constexpr std::chrono::milliseconds k_queue_full_retry{1};

inline VoidResult ok() noexcept { return {}; }
inline VoidResult fail(Errc e) noexcept { return xmpp::Unexpected(e); }

struct OverlayEntry {
    std::optional<std::string> value;  // empty: erased (a tombstone)
    std::uint64_t op = 0;              // staging sequence number of the write that set it
};

struct RangeTombstone {
    Column column;
    std::string begin;
    std::string end;
    std::uint64_t op = 0;
};

struct Waiter {
    Durability level;
    Completion done;
};

// A sealed batch as the shard remembers it, until its completions have run.
struct InFlight {
    std::uint64_t batch_no = 0;
    std::uint64_t last_op = 0;  // overlay entries up to this op are in RocksDB once committed
    std::vector<std::pair<Column, std::string>> keys;
    std::vector<Waiter> waiters;
    bool done = false;
    VoidResult written;  // the batch is in RocksDB (memtable, and WAL unless memory-only)
    VoidResult synced;   // ... and the WAL up to it is fsynced
};


}  // namespace starling::storage::detail

namespace starling::storage {

using detail::Clock;
using detail::InFlight;
using detail::k_columns;
using detail::OverlayEntry;
using detail::RangeTombstone;
using detail::VoidResult;
using detail::Waiter;

// The most a new batch reserves up front (it reserves what the previous one held).
inline constexpr std::size_t k_max_batch_reserve = 4u << 20;
// A batch this large is sealed at once, before the end of its turn: batches stay about this
// size, so their buffers can be reused (State::spares) instead of growing by doubling and
// being page-faulted in afresh; and the committer starts on a long turn's writes earlier.
inline constexpr std::size_t k_seal_batch_bytes = 1u << 20;
// Emptied batches (and log buffers) a shard keeps for reuse. Under a heavy load three or four
// are in flight at once; a buffer freed because the spares were full came back as fresh pages,
// page-faulted in by the shard (perf showed SegmentLog::stage in the page-fault handler with 2;
// the A/B pairs of 2 against 4 were within this VM's noise). At most 4 x (2 MiB + 2 MiB) kept
// per shard after a burst.
inline constexpr std::size_t k_max_spare_batches = 4;

struct ShardWriter::State : std::enable_shared_from_this<ShardWriter::State> {
    State(asio::io_context& io_, std::uint16_t shard_, Committer& committer_)
        : io(io_), shard(shard_), committer(committer_), retry_timer(io_) {}

    asio::io_context& io;
    std::uint16_t shard;
    Committer& committer;

    // Read-your-writes: what is staged or in flight, by key, newest write wins.
    std::array<std::map<std::string, OverlayEntry, std::less<>>, k_columns> overlay;
    std::deque<RangeTombstone> ranges;  // in op order
    std::uint64_t next_op = 1;

    // The open batch of this turn.
    std::unique_ptr<rocksdb::WriteBatch> batch = std::make_unique<rocksdb::WriteBatch>();
    Durability level = Durability::memory;
    bool has_work = false;  // ops or waiters
    std::vector<std::pair<Column, std::string>> keys;
    std::vector<Waiter> waiters;
    std::uint64_t next_batch_no = 1;
    bool seal_posted = false;
    bool retry_armed = false;
    asio::steady_timer retry_timer;

    std::deque<InFlight> in_flight;  // in batch order
    // Committed batches handed back by the committer, emptied, for the next batches: their
    // buffers are reused instead of freshly allocated (and page-faulted in) on the shard thread.
    // At most k_max_spare_batches, each of at most about 2 x k_seal_batch_bytes (capacity).
    std::vector<std::unique_ptr<rocksdb::WriteBatch>> spares;
    // The records staged into a SegmentLog this turn (append_log), sealed with the batch; and
    // committed buffers' bytes, kept for the next ones (at most k_max_spare_batches, like
    // `spares`: while the committer writes one, the shard fills the next without growing a new
    // string by doubling and page-faulting it in).
    LogBuffer log_buffer;
    std::vector<std::string> spare_logs;

    // After a failed commit, every waiter registered before the failure reached this shard
    // (up to and including the batch that was open then) gets the error: the writes staged
    // before it are not all stored. The first error wins until that range is drained.
    std::uint64_t fail_through_batch = 0;
    Errc fail_errc = Errc::io_error;

    std::uint64_t next_read = 1;
    std::unordered_map<std::uint64_t, ReadCompletion> reads;
    std::unordered_map<std::uint64_t, MoveFunction<void()>> tasks;  // run_off_reactor's `done`s

    ShardWriterCounters counters;

    rocksdb::ColumnFamilyHandle* handle(Column c) noexcept { return committer.store().column(c); }

    void note_staged(Column c, std::string_view key, Durability at_least) {
        level = std::max(level, at_least);
        has_work = true;
        ++counters.staged_ops;
        keys.emplace_back(c, std::string(key));
        post_seal();
    }

    void post_seal() {
        // A full batch goes now (unless the committer's queue is full: the retry timer then
        // seals it, and sealing on every write until then would only ask again).
        if (batch->GetDataSize() + log_buffer.bytes.size() >= k_seal_batch_bytes && !retry_armed) seal();
        if (seal_posted) return;
        // Queued behind what this turn has already queued: runs at the end of the turn.
        asio::post(io, [weak = weak_from_this()] {
            if (auto s = weak.lock()) {
                s->seal_posted = false;
                s->seal();
            }
        });
        seal_posted = true;  // only once posted: a failed post leaves the next write to try
    }

    void seal() noexcept;
    void on_committed(std::uint64_t batch_no, VoidResult written, VoidResult synced) noexcept;
    // Keeps a committed batch as the spare (see `spare`), or frees it.
    void recycle(std::unique_ptr<rocksdb::WriteBatch> used) noexcept;
    void recycle_log(std::string used) noexcept;
    void drain() noexcept;
    void forget(const InFlight& f) noexcept;
    void fail_everything(Errc e) noexcept;

    // The overlay's answer: nullopt when it knows nothing of the key; else the value or, for a
    // tombstone, an empty optional.
    std::optional<std::optional<std::string>> lookup(Column c, std::string_view key) const {
        const auto& m = overlay[static_cast<std::size_t>(c)];
        const auto it = m.find(key);
        const std::uint64_t point_op = it == m.end() ? 0 : it->second.op;
        for (auto r = ranges.rbegin(); r != ranges.rend() && r->op > point_op; ++r) {
            if (r->column == c && key >= std::string_view(r->begin) && key < std::string_view(r->end)) {
                return std::optional<std::string>();
            }
        }
        if (it != m.end()) return it->second.value;
        return std::nullopt;
    }
};

// Committer-side records. Only values cross threads: the shard's completions stay on the shard.
struct Committer::Sealed {
    std::weak_ptr<ShardWriter::State> owner;
    asio::io_context* io = nullptr;
    std::unique_ptr<rocksdb::WriteBatch> batch;
    LogBuffer log;  // written before the batch; a failure fails the batch
    Durability level = Durability::logged;
    std::uint64_t batch_no = 0;
    Clock::time_point sealed_at;
};

struct Committer::ReadRequest {
    std::weak_ptr<ShardWriter::State> owner;
    asio::io_context* io = nullptr;
    rocksdb::ColumnFamilyHandle* column = nullptr;
    std::string key;
    std::uint64_t id = 0;
    MoveFunction<void()> work;  // set: run_off_reactor's work instead of a point read
};

}  // namespace starling::storage
