#include "edge-agent/src/disk_queue.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <random>
#include <vector>

namespace starling::agent {

namespace {

constexpr char k_magic[4] = {'S', 'A', 'Q', '1'};
constexpr std::size_t k_header = 20;

void put_u32(char* p, std::uint32_t v) noexcept {
    for (int i = 0; i < 4; ++i) p[i] = static_cast<char>((v >> (8 * i)) & 0xff);
}
void put_u64(char* p, std::uint64_t v) noexcept {
    for (int i = 0; i < 8; ++i) p[i] = static_cast<char>((v >> (8 * i)) & 0xff);
}
std::uint32_t get_u32(const char* p) noexcept {
    std::uint32_t v = 0;
    for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(p[i]);
    return v;
}
std::uint64_t get_u64(const char* p) noexcept {
    std::uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(p[i]);
    return v;
}
std::uint32_t crc(const char* p, std::size_t n, std::uint32_t init = 0) noexcept {
    uLong c = init;
    while (n > 0) {
        const uInt chunk = static_cast<uInt>(std::min<std::size_t>(n, 1u << 30));
        c = crc32(c, reinterpret_cast<const Bytef*>(p), chunk);
        p += chunk;
        n -= chunk;
    }
    return static_cast<std::uint32_t>(c);
}
// CRC of a record: length and seq (header bytes 4..16), then the payload.
std::uint32_t record_crc(const char* header, const char* payload, std::size_t len) noexcept {
    return crc(payload, len, crc(header + 4, 12));
}

std::string errno_text() { return std::strerror(errno); }

void fsync_dir(const std::filesystem::path& dir) {
    const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)::fsync(fd);
        ::close(fd);
    }
}

bool write_all(int fd, const char* p, std::size_t n, off_t at) noexcept {
    while (n > 0) {
        const ssize_t w = ::pwrite(fd, p, n, at);
        if (w < 0) {
            if (errno == EINTR) continue;
            return false;
        }
        p += w;
        n -= static_cast<std::size_t>(w);
        at += w;
    }
    return true;
}

}  // namespace

DiskQueue::DiskQueue(QueueOptions options) : _opt(std::move(options)) {
    std::error_code ec;
    std::filesystem::create_directories(_opt.dir, ec);
    if (ec) throw QueueError("queue: cannot create " + _opt.dir.string() + ": " + ec.message());
    load_incarnation();
    load_acked();
    std::vector<std::pair<std::uint64_t, std::filesystem::path>> found;
    for (const auto& de : std::filesystem::directory_iterator(_opt.dir, ec)) {
        const auto name = de.path().filename().string();
        if (name.size() != 4 + 20 + 2 || !name.starts_with("seg-") || !name.ends_with(".q")) continue;
        std::uint64_t first = 0;
        const auto r = std::from_chars(name.data() + 4, name.data() + 24, first);
        if (r.ec != std::errc{} || r.ptr != name.data() + 24) continue;
        found.emplace_back(first, de.path());
    }
    if (ec) throw QueueError("queue: cannot list " + _opt.dir.string() + ": " + ec.message());
    std::sort(found.begin(), found.end());
    std::uint64_t max_seq = _acked;
    for (auto& [first, path] : found) {
        Segment seg;
        seg.first_seq = first;
        seg.path = path;
        seg.fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
        if (seg.fd < 0) throw QueueError("queue: cannot open " + path.string() + ": " + errno_text());
        recover_segment(seg);
        if (seg.last_seq == 0) {  // empty or nothing valid in it
            ::close(seg.fd);
            std::filesystem::remove(path, ec);
            continue;
        }
        max_seq = std::max(max_seq, seg.last_seq);
        _stats.bytes += seg.bytes;
        _segments.push_back(std::move(seg));
    }
    _next_seq = max_seq + 1;
    delete_acked_segments();
}

DiskQueue::~DiskQueue() {
    for (auto& s : _segments) {
        if (s.fd >= 0) ::close(s.fd);
    }
    if (_ack_fd >= 0) ::close(_ack_fd);
}

void DiskQueue::load_incarnation() {
    const auto path = _opt.dir / "incarnation";
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        char buf[64];
        const ssize_t n = ::read(fd, buf, sizeof buf);
        ::close(fd);
        std::string s(buf, n > 0 ? static_cast<std::size_t>(n) : 0);
        while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
        const bool ok = s.size() >= 4 && s.size() <= 32 &&
                        std::all_of(s.begin(), s.end(), [](char c) { return std::isalnum(static_cast<unsigned char>(c)); });
        if (ok) {
            _incarnation = s;
            return;
        }
        // Unreadable: a new incarnation keeps ids unique; the records keep their seqs.
    }
    std::random_device rd;
    static constexpr char hex[] = "0123456789abcdef";
    for (int i = 0; i < 12; ++i) _incarnation += hex[rd() & 15];
    const auto tmp = _opt.dir / "incarnation.tmp";
    const int w = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (w < 0) throw QueueError("queue: cannot write " + tmp.string() + ": " + errno_text());
    const std::string line = _incarnation + "\n";
    const bool ok = write_all(w, line.data(), line.size(), 0) && ::fsync(w) == 0;
    ::close(w);
    if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0)
        throw QueueError("queue: cannot write " + path.string() + ": " + errno_text());
    fsync_dir(_opt.dir);
}

void DiskQueue::load_acked() {
    const auto path = _opt.dir / "acked";
    _ack_fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (_ack_fd < 0) throw QueueError("queue: cannot open " + path.string() + ": " + errno_text());
    char buf[32] = {};
    const ssize_t n = ::pread(_ack_fd, buf, sizeof buf, 0);
    for (int slot = 0; slot < 2; ++slot) {
        if (n < (slot + 1) * 16) break;
        const char* p = buf + slot * 16;
        if (get_u32(p + 12) != crc(p, 12)) continue;  // torn or never written
        const std::uint32_t gen = get_u32(p + 8);
        const std::uint64_t seq = get_u64(p);
        if (seq >= _acked) {
            _acked = seq;
            _ack_generation = std::max(_ack_generation, gen);
        }
    }
    _stats.acked_seq = _acked;
}

void DiskQueue::store_acked() {
    char rec[16];
    ++_ack_generation;
    put_u64(rec, _acked);
    put_u32(rec + 8, _ack_generation);
    put_u32(rec + 12, crc(rec, 12));
    const off_t at = (_ack_generation % 2) * 16;
    if (!write_all(_ack_fd, rec, sizeof rec, at)) return;  // redelivery is idempotent: harmless
    if (_opt.fsync == FsyncPolicy::always) (void)::fdatasync(_ack_fd);
}

void DiskQueue::recover_segment(Segment& seg) {
    struct stat st {};
    if (::fstat(seg.fd, &st) != 0) throw QueueError("queue: cannot stat " + seg.path.string() + ": " + errno_text());
    std::string data(static_cast<std::size_t>(st.st_size), '\0');
    std::size_t got = 0;
    while (got < data.size()) {
        const ssize_t r = ::pread(seg.fd, data.data() + got, data.size() - got, static_cast<off_t>(got));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += static_cast<std::size_t>(r);
    }
    data.resize(got);
    std::size_t pos = 0;
    std::size_t good_end = 0;
    std::uint64_t prev = seg.first_seq - 1;
    // The seq of the first record is the file's name; later ones only grow.
    while (pos < data.size()) {
        bool ok = pos + k_header <= data.size() && std::memcmp(data.data() + pos, k_magic, 4) == 0;
        std::uint32_t len = 0;
        std::uint64_t seq = 0;
        if (ok) {
            len = get_u32(data.data() + pos + 4);
            seq = get_u64(data.data() + pos + 8);
            ok = len <= _opt.max_record && pos + k_header + len <= data.size() && seq > prev &&
                 get_u32(data.data() + pos + 16) == record_crc(data.data() + pos, data.data() + pos + k_header, len);
        }
        if (!ok) {
            ++_stats.corrupt_records;
            const auto* hit = static_cast<const char*>(
                memmem(data.data() + pos + 1, data.size() - pos - 1, k_magic, sizeof k_magic));
            if (hit == nullptr) break;
            pos = static_cast<std::size_t>(hit - data.data());
            continue;
        }
        if (seq > _acked) {
            _entries.push_back(Entry{seq, seg.first_seq, pos + k_header, len, false});
        }
        prev = seq;
        seg.last_seq = seq;
        pos += k_header + len;
        good_end = pos;
    }
    if (good_end < data.size()) {
        // A torn append (or garbage after the last good record): cut it so appends stay clean.
        _stats.truncated_bytes += data.size() - good_end;
        if (::ftruncate(seg.fd, static_cast<off_t>(good_end)) != 0)
            throw QueueError("queue: cannot truncate " + seg.path.string() + ": " + errno_text());
        (void)::fsync(seg.fd);
    }
    seg.bytes = good_end;
}

void DiskQueue::open_new_segment(std::uint64_t first_seq) {
    char name[40];
    std::snprintf(name, sizeof name, "seg-%020llu.q", static_cast<unsigned long long>(first_seq));
    Segment seg;
    seg.first_seq = first_seq;
    seg.path = _opt.dir / name;
    seg.fd = ::open(seg.path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (seg.fd < 0) return;  // the append that asked reports the I/O error
    if (_opt.fsync == FsyncPolicy::always) fsync_dir(_opt.dir);
    _segments.push_back(std::move(seg));
}

void DiskQueue::drop_oldest_segment() {
    Segment& seg = _segments.front();
    while (!_entries.empty() && _entries.front().first_seq_of_segment == seg.first_seq) {
        if (!_entries.front().acked) ++_stats.dropped;
        _entries.pop_front();
    }
    ::close(seg.fd);
    ::unlink(seg.path.c_str());
    _stats.bytes -= seg.bytes;
    _segments.pop_front();
}

void DiskQueue::delete_acked_segments() {
    while (_segments.size() > 1 && _segments.front().last_seq <= _acked) drop_oldest_segment();
}

std::uint64_t DiskQueue::append(std::string_view payload, AppendError* error) {
    if (payload.size() > _opt.max_record) {
        if (error) *error = AppendError::too_large;
        return 0;
    }
    const std::uint64_t rec = k_header + payload.size();
    if (_segments.empty() || (_segments.back().bytes > 0 && _segments.back().bytes + rec > _opt.segment_bytes))
        open_new_segment(_next_seq);
    while (!_segments.empty() && _stats.bytes + rec > _opt.max_bytes) {
        if (_segments.size() == 1) {
            if (_segments.back().bytes == 0) break;
            open_new_segment(_next_seq);
            if (_segments.size() == 1) break;
        }
        drop_oldest_segment();
    }
    if (_segments.empty() || _segments.back().fd < 0) {
        if (error) *error = AppendError::io;
        return 0;
    }
    Segment& seg = _segments.back();
    const std::uint64_t seq = _next_seq;
    std::string buf(k_header + payload.size(), '\0');
    std::memcpy(buf.data(), k_magic, 4);
    put_u32(buf.data() + 4, static_cast<std::uint32_t>(payload.size()));
    put_u64(buf.data() + 8, seq);
    if (!payload.empty()) std::memcpy(buf.data() + k_header, payload.data(), payload.size());
    put_u32(buf.data() + 16, record_crc(buf.data(), buf.data() + k_header, payload.size()));
    // One pwrite: a crash leaves the record whole, absent, or torn (cut at the next open).
    if (!write_all(seg.fd, buf.data(), buf.size(), static_cast<off_t>(seg.bytes)) ||
        (_opt.fsync == FsyncPolicy::always && ::fdatasync(seg.fd) != 0)) {
        (void)::ftruncate(seg.fd, static_cast<off_t>(seg.bytes));
        if (error) *error = AppendError::io;
        return 0;
    }
    _entries.push_back(Entry{seq, seg.first_seq, seg.bytes + k_header, static_cast<std::uint32_t>(payload.size()), false});
    seg.bytes += rec;
    seg.last_seq = seq;
    _stats.bytes += rec;
    ++_next_seq;
    return seq;
}

std::optional<std::uint64_t> DiskQueue::next_after(std::uint64_t after) const noexcept {
    auto it = std::upper_bound(_entries.begin(), _entries.end(), after,
                               [](std::uint64_t s, const Entry& e) { return s < e.seq; });
    for (; it != _entries.end(); ++it) {
        if (!it->acked) return it->seq;
    }
    return std::nullopt;
}

const DiskQueue::Segment* DiskQueue::segment_of(std::uint64_t first_seq) const noexcept {
    for (const auto& s : _segments) {
        if (s.first_seq == first_seq) return &s;
    }
    return nullptr;
}

std::optional<std::string> DiskQueue::read(std::uint64_t seq) const {
    auto it = std::lower_bound(_entries.begin(), _entries.end(), seq,
                               [](const Entry& e, std::uint64_t s) { return e.seq < s; });
    if (it == _entries.end() || it->seq != seq) return std::nullopt;
    const Segment* seg = segment_of(it->first_seq_of_segment);
    if (seg == nullptr) return std::nullopt;
    std::string out(it->len, '\0');
    std::size_t got = 0;
    while (got < out.size()) {
        const ssize_t r = ::pread(seg->fd, out.data() + got, out.size() - got, static_cast<off_t>(it->offset + got));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return std::nullopt;
        got += static_cast<std::size_t>(r);
    }
    return out;
}

void DiskQueue::ack(std::uint64_t seq) {
    auto it = std::lower_bound(_entries.begin(), _entries.end(), seq,
                               [](const Entry& e, std::uint64_t s) { return e.seq < s; });
    if (it == _entries.end() || it->seq != seq) return;
    it->acked = true;
    const std::uint64_t before = _acked;
    while (!_entries.empty() && _entries.front().acked) {
        _acked = _entries.front().seq;
        _entries.pop_front();
    }
    if (_acked != before) {
        store_acked();
        delete_acked_segments();
    }
}

std::string DiskQueue::item_id(std::uint64_t seq) const {
    return _incarnation + "-" + std::to_string(seq);
}

std::uint64_t DiskQueue::seq_of(std::string_view id) const noexcept {
    if (id.size() <= _incarnation.size() + 1 || !id.starts_with(_incarnation) || id[_incarnation.size()] != '-')
        return 0;
    std::uint64_t seq = 0;
    const char* b = id.data() + _incarnation.size() + 1;
    const auto r = std::from_chars(b, id.data() + id.size(), seq);
    return r.ec == std::errc{} && r.ptr == id.data() + id.size() ? seq : 0;
}

QueueStats DiskQueue::stats() const noexcept {
    QueueStats s = _stats;
    s.depth = static_cast<std::uint64_t>(
        std::count_if(_entries.begin(), _entries.end(), [](const Entry& e) { return !e.acked; }));
    s.segments = _segments.size();
    s.acked_seq = _acked;
    s.next_seq = _next_seq;
    return s;
}

}  // namespace starling::agent
