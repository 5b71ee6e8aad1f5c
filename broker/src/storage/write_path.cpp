#include "broker/src/storage/write_path.hpp"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
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

namespace {

using Clock = std::chrono::steady_clock;
using VoidResult = xmpp::Result<void, Errc>;

constexpr std::size_t k_columns = static_cast<std::size_t>(Column::count_);

// A shard whose batch did not fit in the committer queue tries again after this long: short
// enough to add little latency, long enough not to spin the reactor.
constexpr std::chrono::milliseconds k_queue_full_retry{1};

VoidResult ok() noexcept { return {}; }
VoidResult fail(Errc e) noexcept { return xmpp::Unexpected(e); }

}  // namespace

std::string_view to_string(Durability d) noexcept {
    switch (d) {
    case Durability::memory: return "memory";
    case Durability::logged: return "logged";
    case Durability::synced: return "synced";
    }
    return "logged";
}

// ---------------------------------------------------------------------------------------------
// Shard side

namespace {

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

}  // namespace

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

    // After a failed commit, every waiter registered before the failure reached this shard
    // (up to and including the batch that was open then) gets the error: the writes staged
    // before it are not all stored. The first error wins until that range is drained.
    std::uint64_t fail_through_batch = 0;
    Errc fail_errc = Errc::io_error;

    std::uint64_t next_read = 1;
    std::unordered_map<std::uint64_t, ReadCompletion> reads;

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
};

void ShardWriter::State::seal() noexcept {
    if (!has_work) return;
    Committer::Sealed sealed;
    sealed.owner = weak_from_this();
    sealed.io = &io;
    sealed.batch = std::move(batch);
    sealed.level = level;
    sealed.batch_no = next_batch_no;
    sealed.sealed_at = Clock::now();
    const auto submitted = committer.submit(sealed);
    if (submitted == Committer::Submitted::full) {
        // Keep the batch open (it goes on growing) and try again shortly; never wait here.
        batch = std::move(sealed.batch);
        ++counters.queue_full;
        if (!retry_armed) {
            try {
                retry_timer.expires_after(k_queue_full_retry);
                retry_timer.async_wait([weak = weak_from_this()](const std::error_code& ec) {
                    if (ec) return;
                    if (auto s = weak.lock()) {
                        s->retry_armed = false;
                        s->seal();
                    }
                });
                retry_armed = true;
            } catch (...) {
                // Out of memory: the next write of a later turn posts another seal.
            }
        }
        return;
    }
    try {
        InFlight f;
        f.batch_no = next_batch_no;
        f.last_op = next_op - 1;
        f.keys = std::move(keys);
        f.waiters = std::move(waiters);
        if (submitted == Committer::Submitted::stopped) {
            // Nothing will write it: its waiters fail, in their turn after earlier batches.
            f.done = true;
            f.written = fail(Errc::stopped);
            f.synced = fail(Errc::stopped);
        }
        in_flight.push_back(std::move(f));
    } catch (...) {
        STARLING_LOG(error, "storage: shard {}: out of memory sealing a batch", shard);
    }
    keys.clear();
    waiters.clear();
    batch = std::make_unique<rocksdb::WriteBatch>();
    level = Durability::memory;
    has_work = false;
    ++next_batch_no;
    ++counters.sealed_batches;
    if (submitted == Committer::Submitted::stopped) {
        // Run them from the reactor, not from inside whatever called seal(). (Out of memory
        // here, they run with the next completion or the destructor.)
        try {
            asio::post(io, [weak = weak_from_this()] {
                if (auto s = weak.lock()) s->drain();
            });
        } catch (...) {
        }
    }
}

void ShardWriter::State::on_committed(std::uint64_t batch_no, VoidResult written, VoidResult synced) noexcept {
    for (auto& f : in_flight) {
        if (f.batch_no != batch_no) continue;
        f.done = true;
        f.written = written;
        f.synced = synced;
        if (!written || !synced) {
            const Errc e = !written ? written.error() : synced.error();
            if (fail_through_batch < f.batch_no) fail_errc = e;  // a new failure episode
            fail_through_batch = std::max(fail_through_batch, next_batch_no);
        }
        break;
    }
    drain();
}

// Drops the batch's writes from the overlay: RocksDB has them now, or (when the commit failed)
// never will, and then RocksDB is the truth too.
void ShardWriter::State::forget(const InFlight& f) noexcept {
    for (const auto& [column, key] : f.keys) {
        auto& m = overlay[static_cast<std::size_t>(column)];
        auto it = m.find(key);
        if (it != m.end() && it->second.op <= f.last_op) m.erase(it);
    }
    while (!ranges.empty() && ranges.front().op <= f.last_op) ranges.pop_front();
}

void ShardWriter::State::drain() noexcept {
    // Keep this state alive while user callbacks run (one may destroy the ShardWriter).
    auto self = shared_from_this();
    while (!in_flight.empty() && in_flight.front().done) {
        InFlight f = std::move(in_flight.front());
        in_flight.pop_front();
        forget(f);
        const bool poisoned = f.batch_no <= fail_through_batch;
        for (auto& w : f.waiters) {
            VoidResult r = w.level == Durability::synced ? f.synced : f.written;
            if (r && poisoned) r = fail(fail_errc);
            if (r) {
                ++counters.completions_ok;
            } else {
                ++counters.completions_failed;
            }
            w.done(r);
        }
    }
}

void ShardWriter::State::fail_everything(Errc e) noexcept {
    // Completions of the open batch and of every batch in flight, in order, with `e`; reads too.
    for (auto& f : in_flight) {
        for (auto& w : f.waiters) {
            ++counters.completions_failed;
            w.done(fail(e));
        }
        f.waiters.clear();
    }
    in_flight.clear();
    for (auto& w : waiters) {
        ++counters.completions_failed;
        w.done(fail(e));
    }
    waiters.clear();
    auto pending_reads = std::move(reads);
    reads.clear();
    for (auto& [id, done] : pending_reads) done(xmpp::Unexpected(e));
}

ShardWriter::ShardWriter(asio::io_context& io, std::uint16_t shard, Committer& committer)
    : _state(std::make_shared<State>(io, shard, committer)) {}

ShardWriter::~ShardWriter() {
    // Seal what is open so that it may still be committed, then answer every waiter: the
    // answers of the committer would find no one.
    _state->seal();
    _state->retry_timer.cancel();
    _state->fail_everything(Errc::stopped);
}

xmpp::Result<void, Errc> ShardWriter::put(Column c, std::string_view key, std::string_view value,
                                          Durability at_least) noexcept {
    auto& s = *_state;
    try {
        const auto st = s.batch->Put(s.handle(c), slice(key), slice(value));
        if (!st.ok()) return xmpp::Unexpected(errc_of(st));
        auto& entry = s.overlay[static_cast<std::size_t>(c)][std::string(key)];
        entry.value = std::string(value);
        entry.op = s.next_op++;
        s.note_staged(c, key, at_least);
        return {};
    } catch (...) {
        // The batch may hold the write while the overlay does not: commit then shows it. Only
        // an allocation can fail here.
        return xmpp::Unexpected(Errc::io_error);
    }
}

xmpp::Result<void, Errc> ShardWriter::erase(Column c, std::string_view key, Durability at_least) noexcept {
    auto& s = *_state;
    try {
        const auto st = s.batch->Delete(s.handle(c), slice(key));
        if (!st.ok()) return xmpp::Unexpected(errc_of(st));
        auto& entry = s.overlay[static_cast<std::size_t>(c)][std::string(key)];
        entry.value.reset();
        entry.op = s.next_op++;
        s.note_staged(c, key, at_least);
        return {};
    } catch (...) {
        return xmpp::Unexpected(Errc::io_error);
    }
}

xmpp::Result<void, Errc> ShardWriter::erase_range(Column c, std::string_view begin, std::string_view end,
                                                  Durability at_least) noexcept {
    auto& s = *_state;
    if (!(begin < end)) return {};  // empty range: nothing to erase (RocksDB would refuse it)
    try {
        const auto st = s.batch->DeleteRange(s.handle(c), slice(begin), slice(end));
        if (!st.ok()) return xmpp::Unexpected(errc_of(st));
        s.ranges.push_back({c, std::string(begin), std::string(end), s.next_op++});
        s.level = std::max(s.level, at_least);
        s.has_work = true;
        ++s.counters.staged_ops;
        s.post_seal();
        return {};
    } catch (...) {
        return xmpp::Unexpected(Errc::io_error);
    }
}

void ShardWriter::when_durable(Durability level, Completion done) noexcept {
    auto& s = *_state;
    try {
        s.waiters.reserve(s.waiters.size() + 1);  // may throw; the push below then cannot
        s.waiters.push_back({level, std::move(done)});
        s.level = std::max(s.level, level);
        s.has_work = true;
        s.post_seal();
    } catch (...) {
        // Out of memory: answer rather than forget (still never inline).
        auto shared = std::make_shared<Completion>(std::move(done));
        asio::post(s.io, [shared] { (*shared)(fail(Errc::io_error)); });
    }
}

xmpp::Result<std::optional<std::string>, Errc> ShardWriter::get(Column c, std::string_view key) noexcept {
    auto& s = *_state;
    try {
        if (auto hit = s.lookup(c, key)) {
            ++s.counters.reads_overlay;
            return std::move(*hit);
        }
        rocksdb::PinnableSlice value;
        const auto st = s.committer.store().db().Get(rocksdb::ReadOptions(), s.handle(c), slice(key), &value);
        if (st.IsNotFound()) return std::optional<std::string>();
        if (!st.ok()) return xmpp::Unexpected(errc_of(st));
        return std::optional<std::string>(std::string(value.data(), value.size()));
    } catch (...) {
        return xmpp::Unexpected(Errc::io_error);
    }
}

void ShardWriter::get_async(Column c, std::string_view key, ReadCompletion done) noexcept {
    auto& s = *_state;
    try {
        if (auto hit = s.lookup(c, key)) {
            ++s.counters.reads_overlay;
            done(std::move(*hit));
            return;
        }
        // Memtable and block cache only: RocksDB answers Incomplete rather than read a file.
        rocksdb::ReadOptions memory_only;
        memory_only.read_tier = rocksdb::kBlockCacheTier;
        rocksdb::PinnableSlice value;
        const auto st = s.committer.store().db().Get(memory_only, s.handle(c), slice(key), &value);
        if (st.ok() || st.IsNotFound()) {
            ++s.counters.reads_inline;
            done(st.ok() ? std::optional<std::string>(std::string(value.data(), value.size()))
                         : std::optional<std::string>());
            return;
        }
        if (!st.IsIncomplete()) {
            done(xmpp::Unexpected(errc_of(st)));
            return;
        }
        Committer::ReadRequest request;
        request.owner = s.weak_from_this();
        request.io = &s.io;
        request.column = s.handle(c);
        request.key = std::string(key);
        request.id = s.next_read++;
        s.reads.emplace(request.id, std::move(done));
        if (!s.committer.submit_read(request)) {
            auto it = s.reads.find(request.id);
            auto cb = std::move(it->second);
            s.reads.erase(it);
            cb(xmpp::Unexpected(Errc::stopped));
            return;
        }
        ++s.counters.reads_offloaded;
    } catch (...) {
        if (done) done(xmpp::Unexpected(Errc::io_error));
    }
}

void ShardWriter::seal() noexcept { _state->seal(); }

std::size_t ShardWriter::overlay_size() const noexcept {
    std::size_t n = _state->ranges.size();
    for (const auto& m : _state->overlay) n += m.size();
    return n;
}

std::size_t ShardWriter::in_flight() const noexcept { return _state->in_flight.size(); }
std::uint16_t ShardWriter::shard() const noexcept { return _state->shard; }
const ShardWriterCounters& ShardWriter::counters() const noexcept { return _state->counters; }

// ---------------------------------------------------------------------------------------------
// Committer

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
    _impl->thread = std::thread([this] { _impl->run(); });
    _impl->read_thread = std::thread([this] { _impl->run_reads(); });
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

    if (owner._options.merge_shards && group.size() > 1) {
        Durability level = Durability::memory;
        rocksdb::WriteBatch merged;
        rocksdb::Status st;
        try {
            std::size_t bytes = 0;
            for (const auto& s : group) bytes += s.batch->GetDataSize();
            merged = rocksdb::WriteBatch(bytes);
            Appender appender(merged, by_id);
            for (const auto& s : group) {
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
        std::fill(written.begin(), written.end(), r);
        std::fill(synced.begin(), synced.end(), r);
    } else {
        // One DB::Write per shard batch; only the last one that goes through the WAL carries
        // the fsync: the WAL is one file written in order, so it syncs the ones before too.
        std::size_t carrier = group.size();
        if (need_sync) {
            for (std::size_t i = group.size(); i-- > 0;) {
                if (group[i].level != Durability::memory && group[i].batch->Count() > 0) {
                    carrier = i;
                    break;
                }
            }
        }
        rocksdb::Status first_error;
        for (std::size_t i = 0; i < group.size(); ++i) {
            auto& s = group[i];
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
            asio::post(*s.io, [owner_state = std::move(s.owner), no = s.batch_no, w = written[i], y = synced[i]] {
                if (auto state = owner_state.lock()) state->on_committed(no, w, y);
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
