#include "broker/src/storage/write_path.hpp"
#include "broker/src/storage/write_path_detail.hpp"

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

using namespace detail;

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

void ShardWriter::State::seal() noexcept {
    if (!has_work) return;
    // The next batch starts with room for as much as this one held: no growth by doubling,
    // each time copying what is already there, on the shard thread.
    const std::size_t reserve = std::min<std::size_t>(batch->GetDataSize(), k_max_batch_reserve);
    const std::size_t log_reserve = std::min<std::size_t>(log_buffer.bytes.size(), k_max_batch_reserve);
    Committer::Sealed sealed;
    sealed.owner = weak_from_this();
    sealed.io = &io;
    sealed.batch = std::move(batch);
    sealed.log = std::move(log_buffer);
    sealed.level = level;
    sealed.batch_no = next_batch_no;
    sealed.sealed_at = Clock::now();
    const auto submitted = committer.submit(sealed);
    if (submitted == Committer::Submitted::full) {
        // Keep the batch open (it goes on growing) and try again shortly; never wait here.
        batch = std::move(sealed.batch);
        log_buffer = std::move(sealed.log);
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
    log_buffer.clear();
    if (!spare_logs.empty()) {
        log_buffer.bytes = std::move(spare_logs.back());
        spare_logs.pop_back();
        log_buffer.bytes.clear();
    } else {
        log_buffer.bytes = std::string();
        try {
            log_buffer.bytes.reserve(log_reserve);
        } catch (...) {
            // Out of memory: the buffer grows as it is filled, or the append fails then.
        }
    }
    if (!spares.empty()) {
        batch = std::move(spares.back());
        spares.pop_back();
    } else {
        batch = std::make_unique<rocksdb::WriteBatch>(reserve);
    }
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

void ShardWriter::State::recycle(std::unique_ptr<rocksdb::WriteBatch> used) noexcept {
    if (!used || spares.size() >= k_max_spare_batches || used->GetDataSize() > 2 * k_seal_batch_bytes) return;
    try {
        spares.reserve(k_max_spare_batches);
    } catch (...) {
        return;  // out of memory: the batch is freed
    }
    used->Clear();  // keeps its buffer
    spares.push_back(std::move(used));
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

xmpp::Result<void, Errc> ShardWriter::append(Column c, std::string_view key, std::string_view value,
                                             Durability at_least) noexcept {
    auto& s = *_state;
    try {
        const auto st = s.batch->Put(s.handle(c), slice(key), slice(value));
        if (!st.ok()) return xmpp::Unexpected(errc_of(st));
        ++s.next_op;
        s.level = std::max(s.level, at_least);
        s.has_work = true;
        ++s.counters.staged_ops;
        s.post_seal();
        return {};
    } catch (...) {
        return xmpp::Unexpected(Errc::io_error);
    }
}

xmpp::Result<std::uint64_t, Errc> ShardWriter::append_log(SegmentLog& log, std::uint64_t id, std::string_view payload,
                                                         std::string_view payload_tail) noexcept {
    auto& s = *_state;
    try {
        // One log per batch: a second log seals the first's records with the batch so far.
        if (s.log_buffer.log != nullptr && s.log_buffer.log != &log) s.seal();
        if (s.log_buffer.log != nullptr && s.log_buffer.log != &log) return xmpp::Unexpected(Errc::invalid_argument);
        const std::uint64_t position = log.stage(s.log_buffer, id, payload, payload_tail);
        s.level = std::max(s.level, Durability::logged);
        s.has_work = true;
        ++s.counters.staged_ops;
        s.post_seal();
        return position;
    } catch (...) {
        return xmpp::Unexpected(Errc::io_error);
    }
}

std::span<char> ShardWriter::staged_log_payload(SegmentLog& log, std::uint64_t position) noexcept {
    return log.staged_payload(_state->log_buffer, position);
}

void ShardWriter::State::recycle_log(std::string used) noexcept {
    if (used.capacity() == 0 || used.capacity() > 2 * k_seal_batch_bytes || spare_logs.size() >= k_max_spare_batches)
        return;
    try {
        spare_logs.reserve(k_max_spare_batches);
    } catch (...) {
        return;  // out of memory: the buffer is freed
    }
    spare_logs.push_back(std::move(used));
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
        // May throw; the push below then cannot. Geometric growth: reserve(size() + 1) would
        // reallocate, and move every waiter, on each call (quadratic in a batch's waiters).
        if (s.waiters.size() == s.waiters.capacity()) {
            s.waiters.reserve(std::max<std::size_t>(16, 2 * s.waiters.capacity()));
        }
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

xmpp::Result<std::optional<std::string>, Errc> ShardWriter::get_in_memory(Column c, std::string_view key) noexcept {
    auto& s = *_state;
    try {
        if (auto hit = s.lookup(c, key)) {
            ++s.counters.reads_overlay;
            return std::move(*hit);
        }
        // Memtable and block cache only: RocksDB answers Incomplete rather than read a file.
        rocksdb::ReadOptions memory_only;
        memory_only.read_tier = rocksdb::kBlockCacheTier;
        rocksdb::PinnableSlice value;
        const auto st = s.committer.store().db().Get(memory_only, s.handle(c), slice(key), &value);
        if (st.ok() || st.IsNotFound()) {
            ++s.counters.reads_inline;
            return st.ok() ? std::optional<std::string>(std::string(value.data(), value.size()))
                           : std::optional<std::string>();
        }
        return xmpp::Unexpected(errc_of(st));  // Incomplete: not_in_memory
    } catch (...) {
        return xmpp::Unexpected(Errc::io_error);
    }
}

void ShardWriter::get_async(Column c, std::string_view key, ReadCompletion done) noexcept {
    auto& s = *_state;
    try {
        if (auto got = get_in_memory(c, key); got || got.error() != Errc::not_in_memory) {
            done(std::move(got));
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

void ShardWriter::run_off_reactor(Task work, Task done) noexcept {
    auto& s = *_state;
    std::uint64_t id = 0;
    try {
        Committer::ReadRequest request;
        request.owner = s.weak_from_this();
        request.io = &s.io;
        request.id = id = s.next_read++;
        request.work = std::move(work);
        s.tasks.emplace(id, std::move(done));
        if (s.committer.submit_read(request)) {
            ++s.counters.tasks_offloaded;
            return;
        }
        work = std::move(request.work);  // not taken: the reader is stopping
    } catch (...) {
    }
    // Here and now: the reader thread is stopping (or memory ran out queueing the request).
    if (auto it = s.tasks.find(id); it != s.tasks.end()) {
        done = std::move(it->second);
        s.tasks.erase(it);
    }
    try {
        if (work) work();
        if (done) done();
    } catch (...) {
    }
}

std::optional<std::optional<std::string>> ShardWriter::staged(Column c, std::string_view key) const {
    return _state->lookup(c, key);
}

std::vector<std::pair<std::string, std::optional<std::string>>> ShardWriter::staged_with_prefix(
    Column c, std::string_view prefix) const {
    std::vector<std::pair<std::string, std::optional<std::string>>> out;
    const auto& m = _state->overlay[static_cast<std::size_t>(c)];
    for (auto it = m.lower_bound(prefix); it != m.end() && std::string_view(it->first).starts_with(prefix); ++it) {
        // In the map, so lookup() knows it (a later range erase may have covered it).
        out.emplace_back(it->first, *_state->lookup(c, it->first));
    }
    return out;
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

}  // namespace starling::storage
