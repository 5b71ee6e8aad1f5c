// The Committer of write_path.hpp: group commit on its own thread, recovery after faults, and
// the reader thread behind ShardWriter::get_async.
#include "broker/src/storage/write_path.hpp"
#include "broker/src/storage/write_path_detail.hpp"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <pthread.h>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/write_batch.h>

#include "broker/src/storage/rocks.hpp"
#include "broker/src/util/log.hpp"

namespace starling::storage {

using namespace detail;

namespace {

// Re-adds the records of one WriteBatch to another (the public way to merge batches).
class Appender final : public rocksdb::WriteBatch::Handler {
public:
    Appender(rocksdb::WriteBatch& out, const std::vector<rocksdb::ColumnFamilyHandle*>& by_id) noexcept
        : _out(out), _by_id(by_id) {}
    // An unknown id is refused: a null handle would silently mean the default family.
    rocksdb::Status PutCF(std::uint32_t id, const rocksdb::Slice& key, const rocksdb::Slice& value) override {
        auto* f = family(id);
        return f != nullptr ? _out.Put(f, key, value) : unknown(id);
    }
    rocksdb::Status DeleteCF(std::uint32_t id, const rocksdb::Slice& key) override {
        auto* f = family(id);
        return f != nullptr ? _out.Delete(f, key) : unknown(id);
    }
    rocksdb::Status DeleteRangeCF(std::uint32_t id, const rocksdb::Slice& begin, const rocksdb::Slice& end) override {
        auto* f = family(id);
        return f != nullptr ? _out.DeleteRange(f, begin, end) : unknown(id);
    }

private:
    static rocksdb::Status unknown(std::uint32_t id) {
        return rocksdb::Status::InvalidArgument("write batch names an unknown column family", std::to_string(id));
    }
    rocksdb::ColumnFamilyHandle* family(std::uint32_t id) const noexcept {
        return id < _by_id.size() ? _by_id[id] : nullptr;
    }
    rocksdb::WriteBatch& _out;
    const std::vector<rocksdb::ColumnFamilyHandle*>& _by_id;
};

}  // namespace

struct Committer::Impl {
    explicit Impl(Committer& owner_) : owner(owner_) {}

    Committer& owner;

    std::mutex mutex;  // guards queue, stopping, running (the shards' only lock: a push)
    std::condition_variable wake;
    std::vector<Sealed> queue;
    bool stopping = false;
    bool running = false;
    std::thread thread;

    std::mutex read_mutex;
    std::condition_variable read_wake;
    std::deque<ReadRequest> reads;
    bool read_stopping = false;
    bool read_accepting = false;
    std::thread read_thread;

    // Committer thread only.
    std::vector<rocksdb::ColumnFamilyHandle*> by_id;  // column family id -> handle (merging)
    Clock::time_point next_resume{};
    std::chrono::milliseconds backoff{0};
    bool logged_fault = false;

    void run() noexcept;
    void run_reads() noexcept;
    void commit(std::vector<Sealed>& group) noexcept;
    void complete(std::vector<Sealed>& group, const std::vector<VoidResult>& written,
                  const std::vector<VoidResult>& synced) noexcept;
    void fault(const rocksdb::Status& st, std::size_t batches) noexcept;
    void try_resume() noexcept;
};

Committer::Committer(Store& store, CommitterOptions options)
    : _store(store), _options(options), _impl(std::make_unique<Impl>(*this)) {
    if (_options.max_queued_batches == 0) _options.max_queued_batches = 1;
    auto& by_id = _impl->by_id;
    auto add = [&](rocksdb::ColumnFamilyHandle* h) {
        if (h == nullptr) return;
        if (by_id.size() <= h->GetID()) by_id.resize(h->GetID() + 1, nullptr);
        by_id[h->GetID()] = h;
    };
    add(_store.db().DefaultColumnFamily());
    for (std::size_t i = 0; i < k_columns; ++i) add(_store.column(static_cast<Column>(i)));
}

Committer::~Committer() { stop(); }

void Committer::start() {
    std::lock_guard lock(_impl->mutex);
    if (_impl->running) return;
    _impl->stopping = false;
    {
        std::lock_guard read_lock(_impl->read_mutex);
        _impl->read_stopping = false;
        _impl->read_accepting = true;
    }
    // Named, so that top and perf tell them from the shards and RocksDB's own threads.
    _impl->thread = std::thread([this] {
        pthread_setname_np(pthread_self(), "committer");
        _impl->run();
    });
    _impl->read_thread = std::thread([this] {
        pthread_setname_np(pthread_self(), "store-reads");
        _impl->run_reads();
    });
    _impl->running = true;
}

void Committer::stop() noexcept {
    {
        std::lock_guard lock(_impl->mutex);
        if (!_impl->running) return;
        _impl->stopping = true;
    }
    _impl->wake.notify_all();
    {
        std::lock_guard lock(_impl->read_mutex);
        _impl->read_stopping = true;
        _impl->read_accepting = false;
    }
    _impl->read_wake.notify_all();
    if (_impl->thread.joinable()) _impl->thread.join();
    if (_impl->read_thread.joinable()) _impl->read_thread.join();
    std::lock_guard lock(_impl->mutex);
    _impl->running = false;
}

bool Committer::is_running() const noexcept {
    std::lock_guard lock(_impl->mutex);
    return _impl->running && !_impl->stopping;
}

Committer::Submitted Committer::submit(Sealed& batch) noexcept {
    {
        std::lock_guard lock(_impl->mutex);
        if (!_impl->running || _impl->stopping) return Submitted::stopped;
        if (_impl->queue.size() >= _options.max_queued_batches) return Submitted::full;
        try {
            _impl->queue.push_back(std::move(batch));
        } catch (...) {
            return Submitted::full;  // out of memory: keep it open and retry, like a full queue
        }
        _stats.pending.store(_impl->queue.size(), std::memory_order_relaxed);
    }
    _impl->wake.notify_one();
    return Submitted::queued;
}

bool Committer::submit_read(ReadRequest& request) noexcept {
    {
        std::lock_guard lock(_impl->read_mutex);
        if (!_impl->read_accepting) return false;
        try {
            _impl->reads.push_back(std::move(request));
        } catch (...) {
            return false;
        }
    }
    _impl->read_wake.notify_one();
    return true;
}

void Committer::Impl::run() noexcept {
    std::vector<Sealed> group;
    std::unique_lock lock(mutex);
    for (;;) {
        const bool healthy = owner._stats.healthy.load(std::memory_order_relaxed);
        auto has_work = [&] { return stopping || !queue.empty(); };
        if (healthy) {
            wake.wait(lock, has_work);
        } else {
            // Unhealthy: wake up for work, and at the next recovery attempt without any.
            wake.wait_until(lock, next_resume, has_work);
        }
        group.swap(queue);
        owner._stats.pending.store(0, std::memory_order_relaxed);
        const bool last = stopping;
        lock.unlock();

        if (!owner._stats.healthy.load(std::memory_order_relaxed) && (Clock::now() >= next_resume || last)) {
            try_resume();
        }
        if (!group.empty()) commit(group);
        group.clear();

        lock.lock();
        if (last && queue.empty()) break;  // drained: stop() waits for nothing more
    }
}

void Committer::Impl::commit(std::vector<Sealed>& group) noexcept {
    auto& stats = owner._stats;
    auto& db = owner._store.db();
    const bool sync_allowed = owner._store.options().sync_writes;
    std::vector<VoidResult> written(group.size());
    std::vector<VoidResult> synced(group.size());

    if (!stats.healthy.load(std::memory_order_relaxed)) {
        // Still broken after the recovery attempt: answer now rather than let callers hang.
        const auto e = static_cast<Errc>(stats.last_error.load(std::memory_order_relaxed));
        std::fill(written.begin(), written.end(), fail(e));
        std::fill(synced.begin(), synced.end(), fail(e));
        complete(group, written, synced);
        return;
    }

    bool need_sync = false;
    for (auto& s : group) {
        if (s.level == Durability::synced && !sync_allowed) s.level = Durability::logged;
        need_sync = need_sync || s.level == Durability::synced;
    }

    // The log records of each batch go first (SegmentLog): the batch's index records may name
    // them. A batch whose records could not be written is not written either, and fails.
    std::vector<char> skip(group.size(), 0);
    for (std::size_t i = 0; i < group.size(); ++i) {
        auto& s = group[i];
        if (s.log.empty()) continue;
        if (auto r = s.log.log->write(s.log); !r) {
            skip[i] = 1;
            written[i] = fail(r.error());
            synced[i] = written[i];
            fault(r.error() == Errc::no_space ? rocksdb::Status::NoSpace("archive log")
                                              : rocksdb::Status::IOError("archive log write failed"),
                  1);
        }
    }

    if (owner._options.merge_shards && group.size() > 1) {
        Durability level = Durability::memory;
        rocksdb::WriteBatch merged;
        rocksdb::Status st;
        try {
            std::size_t bytes = 0;
            for (const auto& s : group) bytes += s.batch->GetDataSize();
            merged = rocksdb::WriteBatch(bytes);
            Appender appender(merged, by_id);
            for (std::size_t i = 0; i < group.size(); ++i) {
                const auto& s = group[i];
                if (skip[i]) continue;
                level = std::max(level, s.level);
                if (s.batch->Count() == 0) continue;
                st = s.batch->Iterate(&appender);
                if (!st.ok()) break;
            }
        } catch (...) {
            st = rocksdb::Status::Aborted("out of memory merging batches");
        }
        if (st.ok() && merged.Count() > 0) {
            rocksdb::WriteOptions w;
            w.disableWAL = level == Durability::memory;
            w.sync = need_sync;
            st = db.Write(w, &merged);
            stats.db_writes.fetch_add(1, std::memory_order_relaxed);
            if (need_sync) stats.syncs.fetch_add(1, std::memory_order_relaxed);
        } else if (st.ok() && need_sync) {
            st = db.SyncWAL();
            stats.syncs.fetch_add(1, std::memory_order_relaxed);
        }
        if (!st.ok()) fault(st, group.size());
        const VoidResult r = st.ok() ? ok() : fail(errc_of(st));
        for (std::size_t i = 0; i < group.size(); ++i) {
            if (skip[i]) continue;
            written[i] = r;
            synced[i] = r;
        }
    } else {
        // One DB::Write per shard batch; only the last one that goes through the WAL carries
        // the fsync: the WAL is one file written in order, so it syncs the ones before too.
        std::size_t carrier = group.size();
        if (need_sync) {
            for (std::size_t i = group.size(); i-- > 0;) {
                if (!skip[i] && group[i].level != Durability::memory && group[i].batch->Count() > 0) {
                    carrier = i;
                    break;
                }
            }
        }
        rocksdb::Status first_error;
        for (std::size_t i = 0; i < group.size(); ++i) {
            auto& s = group[i];
            if (skip[i]) continue;
            if (!first_error.ok()) {
                // After a failure RocksDB refuses writes until resumed: do not ask again.
                written[i] = fail(errc_of(first_error));
                continue;
            }
            if (s.batch->Count() == 0) continue;
            rocksdb::WriteOptions w;
            w.disableWAL = s.level == Durability::memory;
            w.sync = i == carrier;
            const auto st = db.Write(w, s.batch.get());
            stats.db_writes.fetch_add(1, std::memory_order_relaxed);
            if (w.sync) stats.syncs.fetch_add(1, std::memory_order_relaxed);
            if (!st.ok()) {
                first_error = st;
                written[i] = fail(errc_of(st));
            }
        }
        VoidResult sync_result = ok();
        if (!first_error.ok()) {
            sync_result = fail(errc_of(first_error));
        } else if (need_sync && carrier == group.size()) {
            // Only empty or memory batches asked for synced: sync what earlier groups logged.
            const auto st = db.SyncWAL();
            stats.syncs.fetch_add(1, std::memory_order_relaxed);
            if (!st.ok()) {
                first_error = st;
                sync_result = fail(errc_of(st));
            }
        }
        if (!first_error.ok()) fault(first_error, group.size());
        for (std::size_t i = 0; i < group.size(); ++i) {
            synced[i] = written[i] ? sync_result : written[i];
            // The fsync came with the carrier's write: a batch after a failed one is not synced.
        }
    }
    complete(group, written, synced);
}

void Committer::Impl::complete(std::vector<Sealed>& group, const std::vector<VoidResult>& written,
                               const std::vector<VoidResult>& synced) noexcept {
    auto& stats = owner._stats;
    const auto now = Clock::now();
    std::uint64_t ops = 0;
    std::uint64_t bytes = 0;
    std::uint64_t failed = 0;
    for (std::size_t i = 0; i < group.size(); ++i) {
        auto& s = group[i];
        ops += s.batch->Count();
        bytes += s.batch->GetDataSize();
        if (!written[i] || !synced[i]) ++failed;
        const auto us = std::chrono::duration_cast<std::chrono::microseconds>(now - s.sealed_at).count();
        std::size_t bucket = 0;
        while (bucket < std::size(k_commit_latency_bounds_us) && us > k_commit_latency_bounds_us[bucket]) ++bucket;
        stats.latency[bucket].fetch_add(1, std::memory_order_relaxed);
        stats.latency_sum_us.fetch_add(static_cast<std::uint64_t>(us), std::memory_order_relaxed);
    }
    stats.groups.fetch_add(1, std::memory_order_relaxed);
    stats.batches.fetch_add(group.size(), std::memory_order_relaxed);
    stats.ops.fetch_add(ops, std::memory_order_relaxed);
    stats.bytes.fetch_add(bytes, std::memory_order_relaxed);
    stats.failed_batches.fetch_add(failed, std::memory_order_relaxed);
    // Counters first, then the completions: whoever is woken by one sees the counts.
    for (std::size_t i = 0; i < group.size(); ++i) {
        auto& s = group[i];
        try {
            // The batch goes back to its shard with the completion, for reuse (State::spare).
            asio::post(*s.io, [owner_state = std::move(s.owner), no = s.batch_no, w = written[i], y = synced[i],
                               used = std::move(s.batch), used_log = std::move(s.log.bytes)]() mutable {
                if (auto state = owner_state.lock()) {
                    state->on_committed(no, w, y);
                    state->recycle(std::move(used));
                    state->recycle_log(std::move(used_log));
                }
            });
        } catch (...) {
            // Cannot happen short of memory exhaustion; the shard's destructor then answers its
            // waiters with Errc::stopped.
            STARLING_LOG(error, "storage: cannot post a completion to a shard (out of memory)");
        }
    }
}

void Committer::Impl::fault(const rocksdb::Status& st, std::size_t batches) noexcept {
    auto& stats = owner._stats;
    stats.faults.fetch_add(1, std::memory_order_relaxed);
    stats.last_error.store(static_cast<std::uint8_t>(errc_of(st)), std::memory_order_relaxed);
    if (stats.healthy.exchange(false, std::memory_order_relaxed)) {
        backoff = std::chrono::milliseconds(owner._options.resume_backoff_min_ms);
        next_resume = Clock::now() + backoff;
    }
    if (!logged_fault) {
        // Once per episode: a full disk would otherwise log at the rate of traffic.
        logged_fault = true;
        STARLING_LOG(error,
                     "storage: writing {} batches failed ({}: {}); writes fail until the store recovers, "
                     "retrying every {}..{} ms",
                     batches, to_string(errc_of(st)), st.ToString(), owner._options.resume_backoff_min_ms,
                     owner._options.resume_backoff_max_ms);
    }
}

void Committer::Impl::try_resume() noexcept {
    auto& stats = owner._stats;
    auto& db = owner._store.db();
    // Resume() clears a background error once its cause is gone; it answers OK when there was
    // none. RocksDB 7.8 does not retire a WAL whose append failed: its writer stays "seen
    // error" (and the Debian build asserts if it is written again), and Resume() switches to
    // a new WAL only when it has a memtable to flush. So after a successful Resume() we force
    // that switch: a marker in the default column family (unused by the stores) written
    // without the WAL, then a flush of that family, which starts a new WAL.
    auto st = db.Resume();
    if (st.ok()) {
        rocksdb::WriteOptions no_wal;
        no_wal.disableWAL = true;
        const auto n = stats.recoveries.load(std::memory_order_relaxed) + 1;
        st = db.Put(no_wal, db.DefaultColumnFamily(), "starling/recovery", std::to_string(n));
        if (st.ok()) {
            rocksdb::FlushOptions flush;
            flush.allow_write_stall = true;
            st = db.Flush(flush, db.DefaultColumnFamily());
        }
    }
    if (st.ok()) {
        stats.healthy.store(true, std::memory_order_relaxed);
        stats.recoveries.fetch_add(1, std::memory_order_relaxed);
        logged_fault = false;
        STARLING_LOG(info, "storage: the store is writable again");
        return;
    }
    backoff = std::min(backoff * 2, std::chrono::milliseconds(owner._options.resume_backoff_max_ms));
    if (backoff.count() == 0) backoff = std::chrono::milliseconds(owner._options.resume_backoff_min_ms);
    next_resume = Clock::now() + backoff;
    STARLING_LOG(debug, "storage: recovery failed ({}), next attempt in {} ms", st.ToString(), backoff.count());
}

void Committer::Impl::run_reads() noexcept {
    auto& db = owner._store.db();
    std::unique_lock lock(read_mutex);
    for (;;) {
        read_wake.wait(lock, [&] { return read_stopping || !reads.empty(); });
        if (reads.empty()) break;  // stopping, and every read answered
        ReadRequest r = std::move(reads.front());
        reads.pop_front();
        lock.unlock();
        if (r.work) {
            try {
                r.work();
            } catch (...) {
                STARLING_LOG(error, "storage: work off the reactor failed (out of memory)");
            }
            try {
                asio::post(*r.io, [owner_state = std::move(r.owner), id = r.id] {
                    auto state = owner_state.lock();
                    if (!state) return;
                    auto it = state->tasks.find(id);
                    if (it == state->tasks.end()) return;
                    auto done = std::move(it->second);
                    state->tasks.erase(it);
                    done();
                });
            } catch (...) {
                STARLING_LOG(error, "storage: cannot answer work off the reactor (out of memory)");
            }
            lock.lock();
            continue;
        }
        xmpp::Result<std::optional<std::string>, Errc> result = std::optional<std::string>();
        try {
            rocksdb::PinnableSlice value;
            const auto st = db.Get(rocksdb::ReadOptions(), r.column, slice(r.key), &value);
            if (st.ok()) {
                result = std::optional<std::string>(std::string(value.data(), value.size()));
            } else if (!st.IsNotFound()) {
                result = xmpp::Unexpected(errc_of(st));
            }
            asio::post(*r.io, [owner_state = std::move(r.owner), id = r.id, result = std::move(result)]() mutable {
                auto state = owner_state.lock();
                if (!state) return;
                auto it = state->reads.find(id);
                if (it == state->reads.end()) return;
                auto done = std::move(it->second);
                state->reads.erase(it);
                done(std::move(result));
            });
        } catch (...) {
            STARLING_LOG(error, "storage: cannot answer a read (out of memory)");
        }
        lock.lock();
    }
}

}  // namespace starling::storage
