// The store-and-forward queue: every batch of readings is appended here before it is published,
// and leaves only when the broker acknowledged the publish (the IQ result).
//
// On disk (one folder): segment files `seg-<first seq, 20 digits>.q`, append-only, each a run of
// records
//     magic "SAQ1" | payload length u32 LE | seq u64 LE | CRC-32 u32 LE | payload
// where the CRC covers length, seq and payload. `acked` holds the highest acknowledged seq in
// two 16-byte slots (seq u64, generation u32, CRC u32) written alternately, so a torn write of
// one slot leaves the other. `incarnation` holds a random id made when the folder was created;
// item ids are "<incarnation>-<seq>", unique across restarts and across a wiped queue.
//
// Recovery (open): each segment is scanned; a record whose header or CRC does not check is
// skipped and the scan resynchronises on the next magic; garbage at the tail (a torn append) is
// truncated away. Counted in stats().corrupt_records / truncated_bytes.
//
// Bound: max_bytes over all segments. An append that would pass it deletes the oldest segments
// first; their unacknowledged records are counted in stats().dropped. A segment whose records
// are all acknowledged is deleted at once.
//
// Durability (fsync policy): `always` fdatasync()s every append and every ack before returning
// (a power cut loses nothing returned from append); `never` leaves it to the kernel (kill -9
// still loses nothing: the page cache survives the process; a power cut may lose the last
// seconds). Lives on: the agent's thread. Start-up failures throw QueueError; appends return
// errors as values.
#pragma once

#include <cstdint>
#include <deque>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace starling::agent {

class QueueError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

enum class FsyncPolicy : std::uint8_t { always, never };

struct QueueOptions {
    std::filesystem::path dir;
    std::uint64_t max_bytes = 16 * 1024 * 1024;
    std::uint64_t segment_bytes = 1024 * 1024;
    std::uint32_t max_record = 256 * 1024;  // a record larger than this is refused
    FsyncPolicy fsync = FsyncPolicy::always;
};

struct QueueStats {
    std::uint64_t depth = 0;            // records not yet acknowledged
    std::uint64_t bytes = 0;            // on disk, all segments
    std::uint64_t segments = 0;
    std::uint64_t dropped = 0;          // unacknowledged records deleted by the bound (this run)
    std::uint64_t corrupt_records = 0;  // skipped at open (this run)
    std::uint64_t truncated_bytes = 0;  // torn tails cut at open (this run)
    std::uint64_t acked_seq = 0;
    std::uint64_t next_seq = 1;
};

enum class AppendError : std::uint8_t { too_large, io };

class DiskQueue {
public:
    explicit DiskQueue(QueueOptions options);  // opens or creates, recovers; throws QueueError
    ~DiskQueue();
    DiskQueue(const DiskQueue&) = delete;
    DiskQueue& operator=(const DiskQueue&) = delete;

    // Appends one record; returns its seq (0 on error, see last_error()).
    std::uint64_t append(std::string_view payload, AppendError* error = nullptr);

    // The first unacknowledged record with seq > after, if any: its seq.
    std::optional<std::uint64_t> next_after(std::uint64_t after) const noexcept;
    // The payload of an unacknowledged record (read from disk); nullopt if gone (dropped).
    std::optional<std::string> read(std::uint64_t seq) const;
    // The broker acknowledged `seq`. Acks may come in any order; the persisted pointer moves
    // over the contiguous acknowledged prefix only.
    void ack(std::uint64_t seq);

    std::string item_id(std::uint64_t seq) const;
    // Parses an item id of this queue back to its seq; 0 if it is not ours.
    std::uint64_t seq_of(std::string_view item_id) const noexcept;
    const std::string& incarnation() const noexcept { return _incarnation; }
    QueueStats stats() const noexcept;

private:
    struct Segment {
        std::uint64_t first_seq = 0;
        std::uint64_t last_seq = 0;  // 0: empty
        std::uint64_t bytes = 0;
        int fd = -1;
        std::filesystem::path path;
    };
    struct Entry {
        std::uint64_t seq;
        std::uint64_t first_seq_of_segment;
        std::uint64_t offset;  // of the payload
        std::uint32_t len;
        bool acked;
    };

    void load_incarnation();
    void load_acked();
    void store_acked();
    void recover_segment(Segment& seg);
    void open_new_segment(std::uint64_t first_seq);
    void drop_oldest_segment();
    void delete_acked_segments();
    const Segment* segment_of(std::uint64_t first_seq) const noexcept;

    QueueOptions _opt;
    std::string _incarnation;
    int _ack_fd = -1;
    std::uint32_t _ack_generation = 0;
    std::uint64_t _acked = 0;  // persisted contiguous pointer
    std::uint64_t _next_seq = 1;
    std::deque<Segment> _segments;  // oldest first; back() is the one appended to
    std::deque<Entry> _entries;     // records with seq > _acked still on disk, in seq order
    QueueStats _stats;
};

}  // namespace starling::agent
