#include "broker/src/storage/segment_log.hpp"

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

#include "broker/src/util/hex.hpp"
#include "broker/src/util/log.hpp"

namespace starling::storage {

// ---- CRC32C --------------------------------------------------------------------------------

namespace {

constexpr std::uint32_t k_castagnoli_reflected = 0x82f63b78u;

constexpr std::array<std::uint32_t, 256> crc_table() {
    std::array<std::uint32_t, 256> t{};
    for (std::uint32_t i = 0; i < 256; ++i) {
        std::uint32_t c = i;
        for (int k = 0; k < 8; ++k) c = (c & 1) != 0 ? (c >> 1) ^ k_castagnoli_reflected : c >> 1;
        t[i] = c;
    }
    return t;
}
constexpr auto k_crc_table = crc_table();

std::uint32_t crc32c_table(std::uint32_t crc, const unsigned char* p, std::size_t n) noexcept {
    for (std::size_t i = 0; i < n; ++i) crc = k_crc_table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
    return crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) std::uint32_t crc32c_sse42(std::uint32_t crc, const unsigned char* p,
                                                             std::size_t n) noexcept {
    std::uint64_t c = crc;
    while (n >= 8) {
        std::uint64_t v;
        std::memcpy(&v, p, 8);
        c = __builtin_ia32_crc32di(c, v);
        p += 8;
        n -= 8;
    }
    auto c32 = static_cast<std::uint32_t>(c);
    while (n-- > 0) c32 = __builtin_ia32_crc32qi(c32, *p++);
    return c32;
}
const bool k_has_sse42 = __builtin_cpu_supports("sse4.2");
#endif

}  // namespace

std::uint32_t crc32c(std::uint32_t crc, const void* data, std::size_t n) noexcept {
    const auto* p = static_cast<const unsigned char*>(data);
    crc = ~crc;
#if defined(__x86_64__)
    crc = k_has_sse42 ? crc32c_sse42(crc, p, n) : crc32c_table(crc, p, n);
#else
    crc = crc32c_table(crc, p, n);
#endif
    return ~crc;
}

// ---- records -------------------------------------------------------------------------------

namespace {

constexpr std::uint64_t k_dead_clean = 0;  // a dead record whose payload is zeros (or a hole)
constexpr std::uint64_t k_dead_dirty = 1;  // a dead record whose payload may not be zeroed yet
constexpr std::uint64_t k_block = 4096;
constexpr std::size_t k_max_open_fds = 64;
constexpr std::size_t k_window = 1u << 20;

void put_le(char* out, std::uint64_t v, int bytes) noexcept {
    for (int i = 0; i < bytes; ++i) out[i] = static_cast<char>((v >> (8 * i)) & 0xff);
}

std::uint64_t get_le(const char* in, int bytes) noexcept {
    std::uint64_t v = 0;
    for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(in[i]);
    return v;
}

struct Header {
    std::uint32_t crc = 0;
    std::uint32_t len = 0;
    std::uint64_t id = 0;
};

Header parse_header(const char* p) noexcept {
    return {static_cast<std::uint32_t>(get_le(p, 4)), static_cast<std::uint32_t>(get_le(p + 4, 4)), get_le(p + 8, 8)};
}

bool is_dead(std::uint64_t id) noexcept { return id <= k_dead_dirty; }

// The CRC of a record: over length and id, and the payload of a live one.
std::uint32_t record_crc(const char* header, std::string_view payload) noexcept {
    std::uint32_t c = crc32c(0, header + 4, 12);
    return payload.empty() ? c : crc32c(c, payload.data(), payload.size());
}

void header_into(char* out, std::uint32_t len, std::uint64_t id, std::string_view payload) noexcept {
    put_le(out + 4, len, 4);
    put_le(out + 8, id, 8);
    put_le(out, record_crc(out, payload), 4);
}

Errc errc_of_errno(int e) noexcept { return e == ENOSPC || e == EDQUOT ? Errc::no_space : Errc::io_error; }

bool pwrite_all(int fd, const char* p, std::size_t n, std::uint64_t at) noexcept {
    while (n > 0) {
        const auto w = ::pwrite(fd, p, n, static_cast<off_t>(at));
        if (w < 0) {
            if (errno == EINTR) continue;
            return false;
        }
        if (w == 0) {
            errno = EIO;
            return false;
        }
        p += w;
        n -= static_cast<std::size_t>(w);
        at += static_cast<std::uint64_t>(w);
    }
    return true;
}

bool pread_all(int fd, char* p, std::size_t n, std::uint64_t at) noexcept {
    while (n > 0) {
        const auto r = ::pread(fd, p, n, static_cast<off_t>(at));
        if (r < 0) {
            if (errno == EINTR) continue;
            return false;
        }
        if (r == 0) {
            errno = EIO;  // shorter than the table says
            return false;
        }
        p += r;
        n -= static_cast<std::size_t>(r);
        at += static_cast<std::uint64_t>(r);
    }
    return true;
}

// Sequential reads of one file through a window of up to k_window bytes.
class Window {
public:
    Window(int fd, std::uint64_t file_base, std::uint64_t end) : _fd(fd), _base(file_base), _end(end) {}
    // Bytes [at, at + n) of the log (offsets, not file offsets), or nullopt past the end or on
    // an I/O error (error() says which).
    std::optional<std::string_view> view(std::uint64_t at, std::size_t n) {
        if (at < _base || at + n > _end) return std::nullopt;
        if (at < _w_start || at + n > _w_start + _buf.size()) {
            const std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(std::max(n, k_window), _end - at));
            _buf.resize(want);
            if (!pread_all(_fd, _buf.data(), want, at - _base)) {
                _error = true;
                _buf.clear();
                return std::nullopt;
            }
            _w_start = at;
        }
        return std::string_view(_buf.data() + (at - _w_start), n);
    }
    bool error() const noexcept { return _error; }

private:
    int _fd;
    std::uint64_t _base;
    std::uint64_t _end;
    std::uint64_t _w_start = 0;
    std::string _buf;
    bool _error = false;
};

// A record at `at` as read through `w`: its size and id, or nullopt when it is incomplete or
// its CRC fails. Sets *io on an I/O error.
struct Found {
    std::uint64_t size = 0;
    std::uint64_t id = 0;
    std::string_view payload;  // live records only; valid until the next view()
};
std::optional<Found> record_at(Window& w, std::uint64_t at) {
    auto h = w.view(at, k_log_header);
    if (!h) return std::nullopt;
    const Header hd = parse_header(h->data());
    char head[k_log_header];
    std::memcpy(head, h->data(), k_log_header);
    std::string_view payload;
    if (!is_dead(hd.id)) {
        auto p = w.view(at + k_log_header, hd.len);
        if (!p) return std::nullopt;
        payload = *p;
    }
    if (record_crc(head, payload) != hd.crc) return std::nullopt;
    return Found{k_log_header + hd.len, hd.id, payload};
}

struct Scan {
    std::uint64_t valid_end = 0;
    std::uint64_t max_id = 0;
    bool io_error = false;
};

// Walks the records of a segment from `start` to `end`; stops at the first bad one that no
// valid record follows (a torn tail).
Scan scan_segment(int fd, std::uint64_t start, std::uint64_t end) {
    Window w(fd, start, end);
    Scan s;
    std::uint64_t at = start;
    while (at < end) {
        auto r = record_at(w, at);
        if (!r) {
            if (w.error()) {
                s.io_error = true;
                break;
            }
            // A record damaged in place (an erasure cut short by a power loss) with valid ones
            // after it is skipped; anything else ends the segment.
            auto h = w.view(at, k_log_header);
            if (!h) break;
            const std::uint64_t next = at + k_log_header + parse_header(h->data()).len;
            if (next >= end || !record_at(w, next)) break;
            at = next;
            continue;
        }
        if (!is_dead(r->id)) s.max_id = std::max(s.max_id, r->id);
        at += r->size;
    }
    s.valid_end = at;
    return s;
}

std::string hex16(std::uint64_t v) {
    char digits[16];
    util::hex16_into(v, digits);
    return std::string(digits, sizeof digits);
}

using util::parse_hex16;

}  // namespace

struct SegmentLog::Fd {
    int fd = -1;
    explicit Fd(int f) : fd(f) {}
    ~Fd() {
        if (fd >= 0) ::close(fd);
    }
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
};

SegmentLog::SegmentLog(std::filesystem::path dir, std::uint16_t id, Options options)
    : _dir(std::move(dir)), _id(id), _options(options) {
    if (_options.segment_bytes < 4096) _options.segment_bytes = 4096;
}

SegmentLog::~SegmentLog() = default;

std::filesystem::path SegmentLog::path_of(std::uint64_t start, std::optional<std::uint64_t> max_id) const {
    std::string name = hex16(start);
    if (max_id) name += "-" + hex16(*max_id);
    name += ".seg";
    return _dir / name;
}

std::unique_ptr<SegmentLog> SegmentLog::open(const std::filesystem::path& dir, std::uint16_t id, Options options) {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) throw std::runtime_error("cannot create " + dir.string() + ": " + ec.message());
    std::unique_ptr<SegmentLog> log(new SegmentLog(dir, id, options));
    log->recover();
    return log;
}

void SegmentLog::recover() {
    struct Found {
        std::uint64_t start;
        std::optional<std::uint64_t> max_id;
        std::filesystem::path path;
    };
    std::vector<Found> found;
    for (const auto& e : std::filesystem::directory_iterator(_dir)) {
        const auto name = e.path().filename().string();
        if (name.size() < 20 || !name.ends_with(".seg")) continue;
        const auto start = parse_hex16(std::string_view(name).substr(0, 16));
        if (!start) continue;
        std::optional<std::uint64_t> max_id;
        if (name.size() == 16 + 1 + 16 + 4 && name[16] == '-') {
            max_id = parse_hex16(std::string_view(name).substr(17, 16));
            if (!max_id) continue;
        } else if (name.size() != 20) {
            continue;
        }
        found.push_back({*start, max_id, e.path()});
    }
    std::sort(found.begin(), found.end(), [](const Found& a, const Found& b) { return a.start < b.start; });
    for (std::size_t i = 0; i < found.size(); ++i) {
        auto& f = found[i];
        const bool last = i + 1 == found.size();
        const int fd = ::open(f.path.c_str(), O_RDWR | O_CLOEXEC);
        if (fd < 0) throw std::runtime_error("cannot open " + f.path.string() + ": " + std::strerror(errno));
        auto handle = std::make_shared<Fd>(fd);
        const off_t size = ::lseek(fd, 0, SEEK_END);
        if (size < 0) throw std::runtime_error("cannot read " + f.path.string() + ": " + std::strerror(errno));
        Segment s;
        s.start = f.start;
        s.end = f.start + static_cast<std::uint64_t>(size);
        s.path = f.path;
        if (f.max_id && !last) {
            s.sealed = true;
            s.max_id = *f.max_id;
        } else {
            // The tail, or a segment whose rename did not happen (a crash at a rollover).
            const Scan scan = scan_segment(fd, s.start, s.end);
            if (scan.io_error) throw std::runtime_error("cannot read " + f.path.string() + ": " + std::strerror(errno));
            if (scan.valid_end < s.end) {
                _cut_bytes += s.end - scan.valid_end;
                STARLING_LOG(warn, "archive log: cutting {} bytes of an incomplete write at the end of {}",
                             s.end - scan.valid_end, f.path.string());
                if (::ftruncate(fd, static_cast<off_t>(scan.valid_end - s.start)) != 0) {
                    throw std::runtime_error("cannot cut " + f.path.string() + ": " + std::strerror(errno));
                }
                s.end = scan.valid_end;
            }
            s.max_id = std::max(scan.max_id, f.max_id.value_or(0));
            if (!last) {
                s.sealed = true;
                const auto sealed = path_of(s.start, s.max_id);
                std::filesystem::rename(s.path, sealed);
                s.path = sealed;
            } else if (f.max_id) {
                // A sealed name on the tail: a crash between creating the next segment and
                // writing to it, and that file was empty and removed. Name it as a tail again.
                const auto tail = path_of(s.start, std::nullopt);
                std::filesystem::rename(s.path, tail);
                s.path = tail;
            }
        }
        _recovered_max_id = std::max(_recovered_max_id, s.max_id);
        if (last) {
            s.fd = handle;
            ++_open_fds;
            _has_tail = true;
            _tail_start = s.start;
            _tail_end = s.end;
            _writeback_end = _dropped_end = s.start;
            _tail_max_id = s.max_id;
            _staged_any = true;
            _staged_segment = s.start;
            _staged_end = s.end;
            _written_end.store(s.end, std::memory_order_release);
        }
        _segments.emplace(s.start, std::move(s));
    }
}

std::uint64_t SegmentLog::stage(LogBuffer& buf, std::uint64_t id, std::string_view head, std::string_view tail) {
    if (buf.log == nullptr) {
        if (!_staged_any) {
            _staged_any = true;
            _staged_segment = _staged_end;
        } else if (_staged_end - _staged_segment >= _options.segment_bytes) {
            _staged_segment = _staged_end;  // a new segment starts with this batch
        }
        buf.log = this;
        buf.segment = _staged_segment;
        buf.start = _staged_end;
        buf.bytes.clear();
        buf.max_id = 0;
    }
    const std::size_t at = buf.bytes.size();
    const std::size_t len = head.size() + tail.size();
    buf.bytes.resize(at + k_log_header);
    buf.bytes.append(head);
    buf.bytes.append(tail);
    // Length and id now; the CRC when the committer writes the buffer (finish_crcs): off the
    // stager's thread, and a record stays amendable (staged_payload) until then.
    put_le(buf.bytes.data() + at + 4, static_cast<std::uint32_t>(len), 4);
    put_le(buf.bytes.data() + at + 8, id, 8);
    const std::uint64_t position = log_position(_id, _staged_end);
    _staged_end += k_log_header + len;
    buf.max_id = std::max(buf.max_id, id);
    _staged_max_id = std::max(_staged_max_id, id);
    return position;
}

std::span<char> SegmentLog::staged_payload(LogBuffer& buf, std::uint64_t position) const noexcept {
    if (buf.log != this || log_of(position) != _id) return {};
    const std::uint64_t offset = offset_of(position);
    if (offset < buf.start || offset - buf.start + k_log_header > buf.bytes.size()) return {};
    char* head = buf.bytes.data() + (offset - buf.start);
    const auto len = static_cast<std::size_t>(get_le(head + 4, 4));
    if (offset - buf.start + k_log_header + len > buf.bytes.size()) return {};
    return {head + k_log_header, len};
}

namespace {

// Each record's CRC (stage() left them out): walks the buffer record by record.
void finish_crcs(LogBuffer& buf) noexcept {
    std::size_t at = 0;
    while (at + k_log_header <= buf.bytes.size()) {
        char* head = buf.bytes.data() + at;
        const auto len = static_cast<std::size_t>(get_le(head + 4, 4));
        if (at + k_log_header + len > buf.bytes.size()) break;  // cannot be: stage() wrote them
        put_le(head, record_crc(head, std::string_view(head + k_log_header, len)), 4);
        at += k_log_header + len;
    }
}

}  // namespace

// The log is written once and read rarely (queries, the sweep, a restart's replay), yet every
// byte appended stays in the page cache until memory runs short, as dirty pages until the
// kernel's flusher gets to them: a shard archiving at full speed adds ~100 MB a second. So the
// committer starts the writeback of every k_writeback_step it appends (as RocksDB's
// bytes_per_sync does for its files), and gives back the pages further behind the tail than
// k_cached_log_bytes once they are written. Recent records, those queries ask for, stay cached;
// older ones are read from the disk. The pages given back are the next ones the page cache
// takes: on the VMs bench/RESULTS.md runs on, fresh pages cost ten times as much to write
// into as reused ones (issue 14). Failures are ignored: nothing here is needed for durability
// (sync_writes syncs, and the page cache keeps what it could not write).
namespace {
constexpr std::uint64_t k_writeback_step = 4u << 20;
constexpr std::uint64_t k_cached_log_bytes = 32u << 20;

// Starts writing [offset, offset + length) of the file out, without waiting.
void start_writeback(int fd, std::uint64_t offset, std::uint64_t length) noexcept {
    (void)::sync_file_range(fd, static_cast<off_t>(offset), static_cast<off_t>(length), SYNC_FILE_RANGE_WRITE);
}

// Waits until that range is written, then drops its pages from the page cache.
void give_back(int fd, std::uint64_t offset, std::uint64_t length) noexcept {
    if (length == 0) return;
    const auto off = static_cast<off_t>(offset);
    const auto len = static_cast<off_t>(length);
    (void)::sync_file_range(fd, off, len, SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER);
    (void)::posix_fadvise(fd, off, len, POSIX_FADV_DONTNEED);
}
}  // namespace

xmpp::Result<void, Errc> SegmentLog::write(LogBuffer& buf) noexcept {
    try {
        if (buf.bytes.empty()) return {};
        finish_crcs(buf);
        if (!_has_tail || buf.segment != _tail_start) {
            if (_has_tail && buf.segment < _tail_start) return xmpp::Unexpected(Errc::invalid_argument);
            const auto path = path_of(buf.segment, std::nullopt);
            const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
            if (fd < 0) {
                _stats.write_failures.fetch_add(1, std::memory_order_relaxed);
                return xmpp::Unexpected(errc_of_errno(errno));
            }
            auto handle = std::make_shared<Fd>(fd);
            CachedRange sealing;
            std::unique_lock lock(_mutex);
            if (_has_tail) {
                auto it = _segments.find(_tail_start);
                if (it != _segments.end()) {
                    if (_tail_end == _tail_start) {
                        // Nothing was ever written to it (its writes failed): no segment.
                        std::error_code ec;
                        std::filesystem::remove(it->second.path, ec);
                        if (it->second.fd) --_open_fds;
                        _segments.erase(it);
                    } else {
                        // Its cached pages go at the next step (no system call under the lock).
                        if (it->second.fd && _tail_end > _dropped_end) {
                            sealing = {it->second.fd, _dropped_end - _tail_start, _tail_end - _dropped_end};
                        }
                        const auto sealed = path_of(_tail_start, _tail_max_id);
                        std::error_code ec;
                        std::filesystem::rename(it->second.path, sealed, ec);
                        if (!ec) it->second.path = sealed;  // else: named again at the next open
                        it->second.sealed = true;
                        it->second.end = _tail_end;
                        it->second.max_id = _tail_max_id;
                    }
                }
            }
            Segment s;
            s.start = buf.segment;
            s.end = buf.segment;
            s.path = path;
            s.fd = handle;
            ++_open_fds;
            _segments[s.start] = std::move(s);
            _has_tail = true;
            _tail_start = buf.segment;
            _tail_end = buf.segment;
            _writeback_end = _dropped_end = buf.segment;
            _tail_max_id = 0;
            lock.unlock();
            if (sealing.fd) {
                // The segment sealed before (if no step came since) goes now; this one's
                // writeback starts, and its pages go at the next step.
                if (_sealed_cached.fd) give_back(_sealed_cached.fd->fd, _sealed_cached.offset, _sealed_cached.length);
                _sealed_cached = std::move(sealing);
                start_writeback(_sealed_cached.fd->fd, _sealed_cached.offset, _sealed_cached.length);
            }
        }
        std::shared_ptr<Fd> fd;
        {
            std::lock_guard lock(_mutex);
            auto it = _segments.find(_tail_start);
            if (it == _segments.end()) return xmpp::Unexpected(Errc::io_error);
            if (!it->second.fd) {
                const int f = ::open(it->second.path.c_str(), O_RDWR | O_CLOEXEC);
                if (f < 0) return xmpp::Unexpected(errc_of_errno(errno));
                it->second.fd = std::make_shared<Fd>(f);
                ++_open_fds;
            }
            fd = it->second.fd;
        }
        if (buf.start < _tail_end) return xmpp::Unexpected(Errc::invalid_argument);
        auto undo = [&](int e) {
            (void)!::ftruncate(fd->fd, static_cast<off_t>(_tail_end - _tail_start));
            _stats.write_failures.fetch_add(1, std::memory_order_relaxed);
            return xmpp::Unexpected(errc_of_errno(e));
        };
        if (buf.start > _tail_end) {
            // An earlier buffer failed and left a gap: one dead record over it. Its payload is
            // not written: the file's hole reads as zeros.
            char pad[k_log_header];
            header_into(pad, static_cast<std::uint32_t>(buf.start - _tail_end - k_log_header), k_dead_clean, {});
            if (!pwrite_all(fd->fd, pad, sizeof pad, _tail_end - _tail_start)) return undo(errno);
        }
        if (!pwrite_all(fd->fd, buf.bytes.data(), buf.bytes.size(), buf.start - _tail_start)) return undo(errno);
        _tail_end = buf.start + buf.bytes.size();
        _tail_max_id = std::max(_tail_max_id, buf.max_id);
        {
            std::lock_guard lock(_mutex);
            auto it = _segments.find(_tail_start);
            if (it != _segments.end()) it->second.end = _tail_end;
        }
        _written_end.store(_tail_end, std::memory_order_release);
        _stats.bytes_written.fetch_add(buf.bytes.size(), std::memory_order_relaxed);
        release_written(fd->fd);
        return {};
    } catch (...) {
        _stats.write_failures.fetch_add(1, std::memory_order_relaxed);
        return xmpp::Unexpected(Errc::io_error);
    }
}

void SegmentLog::release_written(int fd) noexcept {
    if (_tail_end - _writeback_end >= k_writeback_step) {
        start_writeback(fd, _writeback_end - _tail_start, _tail_end - _writeback_end);
        _writeback_end = _tail_end;
        if (_sealed_cached.fd) {
            // Its writeback began when it was sealed, a step ago.
            give_back(_sealed_cached.fd->fd, _sealed_cached.offset, _sealed_cached.length);
            _sealed_cached = {};
        }
    }
    if (_writeback_end - _dropped_end >= k_cached_log_bytes + k_writeback_step) {
        const std::uint64_t to = _writeback_end - k_cached_log_bytes;
        give_back(fd, _dropped_end - _tail_start, to - _dropped_end);
        _dropped_end = to;
    }
}

std::shared_ptr<SegmentLog::Fd> SegmentLog::fd_of(std::uint64_t offset, std::uint64_t* seg_start,
                                                  std::uint64_t* seg_end) const {
    std::lock_guard lock(_mutex);
    auto it = _segments.upper_bound(offset);
    if (it == _segments.begin()) return nullptr;
    --it;
    auto& s = it->second;
    if (offset >= s.end) return nullptr;
    if (!s.fd) {
        if (_open_fds >= k_max_open_fds) {
            // Many segments read at random: close every other one (reopened on demand).
            for (auto& [start, other] : _segments) {
                if (start != _tail_start && other.fd) {
                    other.fd.reset();
                    --_open_fds;
                }
            }
        }
        const int f = ::open(s.path.c_str(), O_RDWR | O_CLOEXEC);
        if (f < 0) return nullptr;
        s.fd = std::make_shared<Fd>(f);
        ++_open_fds;
    }
    *seg_start = s.start;
    *seg_end = s.end;
    return s.fd;
}

xmpp::Result<std::string, Errc> SegmentLog::read(std::uint64_t position, std::uint64_t id) const noexcept {
    try {
        if (log_of(position) != _id || is_dead(id)) return xmpp::Unexpected(Errc::not_found);
        const std::uint64_t at = offset_of(position);
        std::uint64_t start = 0, end = 0;
        auto fd = fd_of(at, &start, &end);
        if (!fd || at + k_log_header > end) return xmpp::Unexpected(Errc::not_found);
        // One read for the header and a typical stanza; a second for a longer one.
        std::string buf(static_cast<std::size_t>(std::min<std::uint64_t>(end - at, 1024)), '\0');
        if (!pread_all(fd->fd, buf.data(), buf.size(), at - start)) return xmpp::Unexpected(Errc::io_error);
        const Header h = parse_header(buf.data());
        if (h.id != id) return xmpp::Unexpected(Errc::not_found);  // erased
        if (at + k_log_header + h.len > end) return xmpp::Unexpected(Errc::corrupt);
        const std::size_t have = buf.size() - k_log_header;
        std::string payload;
        if (h.len <= have) {
            payload.assign(buf, k_log_header, h.len);
        } else {
            payload.resize(h.len);
            std::memcpy(payload.data(), buf.data() + k_log_header, have);
            if (!pread_all(fd->fd, payload.data() + have, h.len - have, at - start + buf.size())) {
                return xmpp::Unexpected(Errc::io_error);
            }
        }
        if (record_crc(buf.data(), payload) != h.crc) return xmpp::Unexpected(Errc::corrupt);
        return payload;
    } catch (...) {
        return xmpp::Unexpected(Errc::io_error);
    }
}

std::optional<std::uint64_t> SegmentLog::sweep(std::uint64_t offset, std::size_t n, std::uint64_t watermark,
                                               const Keep& keep) {
    std::size_t visited = 0;
    while (visited < n) {
        std::uint64_t start = 0, end = 0;
        std::shared_ptr<Fd> fd;
        {
            // The segment holding `offset`, or the next one after a gap (a dropped segment, a
            // failed write's end).
            std::lock_guard lock(_mutex);
            auto it = _segments.upper_bound(offset);
            if (it != _segments.begin()) {
                auto prev = std::prev(it);
                if (offset < prev->second.end) it = prev;
            }
            if (it == _segments.end()) return std::nullopt;
            offset = std::max(offset, it->first);
            if (offset >= it->second.end) {
                if (std::next(it) == _segments.end()) return std::nullopt;  // all written is seen
                offset = std::next(it)->first;
                continue;
            }
        }
        fd = fd_of(offset, &start, &end);
        if (!fd) return offset;
        Window w(fd->fd, start, end);
        // A run of dead records being gathered: [run_start, run_end), and whether anything in it
        // needs writing (a record erased now, several to merge, a dirty one).
        std::uint64_t run_start = 0, run_end = 0, run_records = 0;
        bool run_dirty = false;
        // Records of the run whose bytes may not be zeros yet (erased now, or dirty): only
        // those are zeroed, so merging a record into a long clean run costs little.
        std::vector<std::pair<std::uint64_t, std::uint64_t>> to_zero;
        auto close_run = [&]() -> bool {
            if (run_records == 0) return true;
            const bool write = run_dirty || run_records > 1;
            const std::uint64_t rs = run_start, re = run_end;
            run_records = 0;
            run_dirty = false;
            auto ranges = std::move(to_zero);
            to_zero.clear();
            if (!write) return true;
            const auto len = static_cast<std::uint32_t>(re - rs - k_log_header);
            char head[k_log_header];
            // 1. Mark the run dead-dirty over its whole length (a crash after this leaves a
            //    record the next sweep zeroes again); 2. give its whole blocks back and zero
            //    the rest of what may hold data; 3. mark it clean.
            header_into(head, len, k_dead_dirty, {});
            if (!pwrite_all(fd->fd, head, sizeof head, rs - start)) return false;
            const std::uint64_t zs = rs + k_log_header;
            const std::uint64_t bs = (zs - start + k_block - 1) / k_block * k_block + start;
            const std::uint64_t be = (re - start) / k_block * k_block + start;
            const bool punched = bs < be && ::fallocate(fd->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                                        static_cast<off_t>(bs - start), static_cast<off_t>(be - bs)) == 0;
            std::string zeros;
            auto zero = [&](std::uint64_t a, std::uint64_t b) {
                if (b <= a) return true;
                zeros.assign(static_cast<std::size_t>(b - a), '\0');
                return pwrite_all(fd->fd, zeros.data(), zeros.size(), a - start);
            };
            for (auto [a, b] : ranges) {
                a = std::max(a, zs);
                if (punched) {
                    if (a < be && b > bs) {
                        _stats.bytes_punched.fetch_add(std::min(b, be) - std::max(a, bs), std::memory_order_relaxed);
                    }
                    if (!zero(a, std::min(b, bs)) || !zero(std::max(a, be), b)) return false;
                } else if (!zero(a, b)) {
                    return false;
                }
            }
            header_into(head, len, k_dead_clean, {});
            return pwrite_all(fd->fd, head, sizeof head, rs - start);
        };
        auto add_dead = [&](std::uint64_t at, std::uint64_t size, bool dirty) {
            if (run_records == 0 || run_end != at) {
                (void)close_run();
                run_start = at;
                run_records = 0;
            }
            run_end = at + size;
            ++run_records;
            run_dirty = run_dirty || dirty;
            if (dirty) to_zero.emplace_back(at, at + size);
        };
        bool stop = false;
        while (offset < end && visited < n) {
            auto r = record_at(w, offset);
            if (!r) {
                if (w.error()) {
                    (void)close_run();
                    return offset;
                }
                // Damaged in place: leave it (reads of it say corrupt), go on after it.
                auto h = w.view(offset, k_log_header);
                if (!h) break;
                (void)close_run();
                offset += k_log_header + parse_header(h->data()).len;
                ++visited;
                continue;
            }
            if (is_dead(r->id)) {
                add_dead(offset, r->size, r->id == k_dead_dirty);
                offset += r->size;
                continue;  // dead records do not count against n: they cost no lookups
            }
            if (r->id > watermark) {
                stop = true;
                break;
            }
            ++visited;
            if (keep(log_position(_id, offset), r->id, r->payload)) {
                if (!close_run()) return offset;
            } else {
                _stats.erased.fetch_add(1, std::memory_order_relaxed);
                add_dead(offset, r->size, true);
            }
            offset += r->size;
        }
        if (!close_run()) return offset;
        if (stop) return std::nullopt;
        if (offset < end) return offset;  // n reached inside this segment
        // At the end of this segment: on to the next, if any (the loop finds it).
        std::lock_guard lock(_mutex);
        auto it = _segments.upper_bound(start);
        if (it == _segments.end()) return std::nullopt;
        offset = it->first;
    }
    return offset;
}

std::size_t SegmentLog::drop_below(std::uint64_t floor) noexcept {
    std::vector<std::filesystem::path> gone;
    try {
        std::lock_guard lock(_mutex);
        for (auto it = _segments.begin(); it != _segments.end();) {
            if (it->second.sealed && it->first != _tail_start && it->second.max_id < floor) {
                gone.push_back(it->second.path);
                if (it->second.fd) --_open_fds;
                it = _segments.erase(it);
            } else {
                ++it;
            }
        }
    } catch (...) {
        return 0;
    }
    for (const auto& p : gone) {
        std::error_code ec;
        std::filesystem::remove(p, ec);
        if (ec) STARLING_LOG(warn, "archive log: cannot remove {}: {}", p.string(), ec.message());
    }
    _stats.segments_dropped.fetch_add(gone.size(), std::memory_order_relaxed);
    return gone.size();
}

std::vector<std::pair<std::filesystem::path, std::uint64_t>> SegmentLog::files() const {
    std::vector<std::pair<std::filesystem::path, std::uint64_t>> out;
    const std::uint64_t written = written_end();
    std::lock_guard lock(_mutex);
    for (const auto& [start, s] : _segments) {
        const std::uint64_t end = start == _tail_start ? std::min(s.end, written) : s.end;
        out.emplace_back(s.path, end - start);
    }
    return out;
}

}  // namespace starling::storage
