// SegmentLog: an append-only log of records in segment files, for data written once, read by
// position and never updated: the stanzas of the message archive (modules/mam/README.md, "The
// body log"). Its point is the cost per record: a record staged by a shard is one memcpy into
// the batch of the turn and one CRC32C (the SSE4.2 instruction when the CPU has it); the
// committer thread writes a whole batch's records with one pwrite(), before the RocksDB batch
// of the same turn (so an index record committed in RocksDB never names a record the log lacks,
// crash or not). No memtable, no flush, no compaction for the bytes: RocksDB keeps only the
// small index records, which name records by position.
//
// Files: `<dir>/<start>.seg` while a segment is the tail, renamed `<start>-<max id>.seg` once a
// newer one starts (both 16 lowercase hex digits; the start is the segment's first byte offset
// in the log, the max id the highest record id in it). Segments start at a batch boundary once
// the tail holds Options::segment_bytes or more.
//
// Record: u32 CRC32C, u32 payload length, u64 id (all little-endian), then the payload. The
// CRC covers the length, the id and, when the id is not 0, the payload. Id 0 is a dead record:
// padding after a failed write, an erased record, or a run of them merged into one, whose
// payload is zeros or a punched hole (fallocate PUNCH_HOLE gives its blocks back to the file
// system). Positions (log_position) never change: erasing rewrites a record in place.
//
// Recovery (open): the tail segment is scanned; it ends at the first record that is incomplete
// or whose CRC fails with no valid record after it, and the file is cut there (a torn write of
// the last batch before a crash). Sealed segments are not read at open.
//
// Threads: stage() on one thread (the owning shard's), write() on the committer's, read(),
// sweep() and drop_below() on any (the store's reader thread): the segment table is guarded by
// a mutex, held only to look a segment up, never across I/O.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "broker/src/storage/errc.hpp"
#include "xmpp/result.hpp"

namespace starling::storage {

// CRC32C (Castagnoli), extending `crc` (0 to start). SSE4.2 when the CPU has it, else a table.
std::uint32_t crc32c(std::uint32_t crc, const void* data, std::size_t n) noexcept;

// A record's position: the log's id in the top 16 bits, its byte offset in that log below.
inline constexpr std::uint64_t k_log_offset_bits = 48;
inline constexpr std::uint64_t log_position(std::uint16_t log, std::uint64_t offset) noexcept {
    return (static_cast<std::uint64_t>(log) << k_log_offset_bits) | offset;
}
inline constexpr std::uint16_t log_of(std::uint64_t position) noexcept {
    return static_cast<std::uint16_t>(position >> k_log_offset_bits);
}
inline constexpr std::uint64_t offset_of(std::uint64_t position) noexcept {
    return position & ((std::uint64_t{1} << k_log_offset_bits) - 1);
}

inline constexpr std::size_t k_log_header = 16;

// The records one shard staged during a turn: written by the committer with the turn's batch.
struct LogBuffer {
    class SegmentLog* log = nullptr;  // null: nothing staged
    std::uint64_t segment = 0;        // start of the segment the records go to
    std::uint64_t start = 0;          // offset of the first record
    std::uint64_t max_id = 0;
    std::string bytes;
    bool empty() const noexcept { return bytes.empty(); }
    void clear() noexcept {
        log = nullptr;
        bytes.clear();
        max_id = 0;
    }
};

struct SegmentLogStats {
    std::atomic<std::uint64_t> bytes_written{0};
    std::atomic<std::uint64_t> write_failures{0};
    std::atomic<std::uint64_t> erased{0};          // records erased by sweep()
    std::atomic<std::uint64_t> bytes_punched{0};   // given back to the file system
    std::atomic<std::uint64_t> segments_dropped{0};
};

class SegmentLog {
public:
    struct Options {
        std::uint64_t segment_bytes = 64u << 20;
    };
    // Opens the log in `dir` (created when missing) and recovers its tail. Throws
    // std::runtime_error with the path when the folder or a segment cannot be opened.
    static std::unique_ptr<SegmentLog> open(const std::filesystem::path& dir, std::uint16_t id, Options options);
    static std::unique_ptr<SegmentLog> open(const std::filesystem::path& dir, std::uint16_t id) {
        return open(dir, id, Options{});
    }
    ~SegmentLog();
    SegmentLog(const SegmentLog&) = delete;
    SegmentLog& operator=(const SegmentLog&) = delete;

    std::uint16_t id() const noexcept { return _id; }
    const std::filesystem::path& dir() const noexcept { return _dir; }
    // The highest record id found at open or staged since (0: none): ids staged later should
    // be above it, so that a log's ids grow with its offsets. Stager's thread.
    std::uint64_t max_id() const noexcept { return std::max(_recovered_max_id, _staged_max_id); }
    // What open() cut from the tail (a torn write), in bytes.
    std::uint64_t recovered_cut_bytes() const noexcept { return _cut_bytes; }

    // Stager's thread. Appends a record to `buf` (opening it on this log when empty) and
    // returns its position. The id must not be 0.
    std::uint64_t stage(LogBuffer& buf, std::uint64_t id, std::string_view payload) {
        return stage(buf, id, payload, {});
    }
    // The same with the payload in two parts (head, then tail): no copy to join them first.
    std::uint64_t stage(LogBuffer& buf, std::uint64_t id, std::string_view head, std::string_view tail);

    // Stager's thread. The offset after the last record staged (or recovered).
    std::uint64_t staged_end() const noexcept { return _staged_end; }

    // Stager's thread. The payload of the record at `position` while it is still in `buf`
    // (staged this turn, not yet handed to the committer), to amend in place: its CRC is
    // computed by write(). Empty when the record is not in `buf`.
    std::span<char> staged_payload(LogBuffer& buf, std::uint64_t position) const noexcept;

    // Committer's thread. Computes the records' CRCs, then writes `buf` at its offset (after
    // padding, if an earlier buffer failed and left a gap). On failure nothing of `buf` is
    // kept: the file is cut back.
    xmpp::Result<void, Errc> write(LogBuffer& buf) noexcept;
    // End of what write() has written (the offset after the last record).
    std::uint64_t written_end() const noexcept { return _written_end.load(std::memory_order_acquire); }

    // Any thread. The payload of the live record at `position` whose id is `id`: not_found when
    // it is dead (erased), in a dropped segment, or has another id; corrupt when its CRC fails.
    xmpp::Result<std::string, Errc> read(std::uint64_t position, std::uint64_t id) const noexcept;

    // Any one thread at a time (the reader thread). Walks up to `n` records from `offset` (0:
    // the start of the oldest segment), stopping at the first live record whose id is above
    // `watermark`; for each other live record, `keep(position, id, payload)` says whether it
    // stays.
    // Records it refuses are erased; runs of dead records are merged and their whole blocks
    // punched. Returns where to go on from, or nullopt at the end of what was written (or the
    // watermark). An I/O error ends the step early (returned offset: where it stopped).
    using Keep = std::function<bool(std::uint64_t position, std::uint64_t id, std::string_view payload)>;
    std::optional<std::uint64_t> sweep(std::uint64_t offset, std::size_t n, std::uint64_t watermark, const Keep& keep);

    // Any thread. Deletes the sealed segments whose records all have ids below `floor`.
    // Returns how many it deleted.
    std::size_t drop_below(std::uint64_t floor) noexcept;

    // Segment files with the bytes to copy from each (the tail up to what was written): for
    // backups. Sealed segments are not appended to; their dead records may still be rewritten.
    std::vector<std::pair<std::filesystem::path, std::uint64_t>> files() const;

    const SegmentLogStats& stats() const noexcept { return _stats; }

private:
    struct Fd;
    struct Segment {
        std::uint64_t start = 0;
        std::uint64_t end = 0;      // offset after its last byte (sealed: the file size)
        std::uint64_t max_id = 0;   // sealed: every id in it is at most this
        bool sealed = false;
        std::filesystem::path path;
        std::shared_ptr<Fd> fd;     // open on demand; closed when many are open
    };
    SegmentLog(std::filesystem::path dir, std::uint16_t id, Options options);
    void recover();
    // After a write: starts the writeback of what the tail gained, and gives the page cache
    // back for what lies further behind than k_cached_log_bytes (see the .cpp).
    void release_written(int fd) noexcept;
    std::shared_ptr<Fd> fd_of(std::uint64_t offset, std::uint64_t* seg_start, std::uint64_t* seg_end) const;
    std::filesystem::path path_of(std::uint64_t start, std::optional<std::uint64_t> max_id) const;

    std::filesystem::path _dir;
    std::uint16_t _id;
    Options _options;
    std::uint64_t _recovered_max_id = 0;
    std::uint64_t _cut_bytes = 0;

    // Stager's thread only.
    std::uint64_t _staged_end = 0;
    std::uint64_t _staged_segment = 0;
    std::uint64_t _staged_max_id = 0;
    bool _staged_any = false;  // a segment exists (or was staged into)

    // Committer's thread only (plus open()).
    std::uint64_t _tail_start = 0;
    std::uint64_t _tail_end = 0;
    // The tail's page cache (committer's thread, release_written): writeback started up to
    // _writeback_end, pages given back up to _dropped_end (positions in the tail segment); the
    // pages of the segment sealed last, given back at the next step.
    std::uint64_t _writeback_end = 0;
    std::uint64_t _dropped_end = 0;
    struct CachedRange {
        std::shared_ptr<Fd> fd;
        std::uint64_t offset = 0;  // in the file
        std::uint64_t length = 0;
    };
    CachedRange _sealed_cached;
    std::uint64_t _tail_max_id = 0;
    bool _has_tail = false;
    std::atomic<std::uint64_t> _written_end{0};

    mutable std::mutex _mutex;  // guards _segments and their fds
    mutable std::map<std::uint64_t, Segment> _segments;  // by start
    mutable std::size_t _open_fds = 0;

    SegmentLogStats _stats;
};

}  // namespace starling::storage
