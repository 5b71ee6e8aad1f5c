// Deflater and Inflater over zlib 1.2.13. The one subtle part is parking: see park_* below.
#include "xmpp/zlib/zlib_stream.hpp"

#include <zlib.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <new>

namespace xmpp::zlib {

std::string_view to_string(ZlibError e) noexcept {
    switch (e) {
    case ZlibError::none: return "none";
    case ZlibError::bad_option: return "bad-option";
    case ZlibError::out_of_memory: return "out-of-memory";
    case ZlibError::corrupt_input: return "corrupt-input";
    case ZlibError::window_too_large: return "window-too-large";
    case ZlibError::output_limit: return "output-limit";
    case ZlibError::data_after_end: return "data-after-end";
    case ZlibError::internal: return "internal";
    }
    return "unknown";
}

// --- AllocationCounter ---------------------------------------------------------------------

namespace {
// Keeps the caller's pointer aligned like malloc's (zlib stores ush/Pos arrays and structs).
constexpr std::size_t k_header = 16;
static_assert(k_header >= sizeof(std::size_t) && k_header % alignof(std::max_align_t) == 0);
}  // namespace

bool AllocationCounter::admit(std::size_t n) noexcept {
    if (n > _limit || _live > _limit - n) return false;
    if (_parent != nullptr && !_parent->admit(n)) return false;
    _live += n;
    _peak = std::max(_peak, _live);
    ++_allocations;
    return true;
}

void AllocationCounter::release(std::size_t n) noexcept {
    _live -= n;
    if (_parent != nullptr) _parent->release(n);
}

void* AllocationCounter::zalloc(void* opaque, unsigned items, unsigned size) noexcept {
    auto* self = static_cast<AllocationCounter*>(opaque);
    const std::size_t n = static_cast<std::size_t>(items) * size;  // both < 2^32: no overflow
    if (self != nullptr && !self->admit(n)) return nullptr;
    void* raw = std::malloc(n + k_header);
    if (raw == nullptr) {
        if (self != nullptr) self->release(n);
        return nullptr;
    }
    std::memcpy(raw, &n, sizeof n);
    return static_cast<char*>(raw) + k_header;
}

void AllocationCounter::zfree(void* opaque, void* address) noexcept {
    if (address == nullptr) return;
    void* raw = static_cast<char*>(address) - k_header;
    std::size_t n = 0;
    std::memcpy(&n, raw, sizeof n);
    if (auto* self = static_cast<AllocationCounter*>(opaque); self != nullptr) self->release(n);
    std::free(raw);
}

// --- shared plumbing -----------------------------------------------------------------------

namespace detail {
namespace {

enum class State : std::uint8_t {
    fresh,   // no zlib state yet; the zlib header is still to be written / read
    active,  // zlib initialised
    parked,  // zlib state released; `dict` holds the history the stream may still refer to
    failed,
};

// zlib's counters are uInt: feed it at most this much per call.
constexpr std::size_t k_max_chunk = std::size_t{1} << 30;

// Growth step for output buffers when the final size is unknown.
constexpr std::size_t k_min_grow = 4096;

// Compaction of parked history: not worth a deflate call below this, nor for less gain.
constexpr std::size_t k_min_compact = 512;
constexpr std::size_t k_min_saving = 64;
constexpr int k_compact_window_bits = 12;
constexpr int k_compact_mem_level = 4;

}  // namespace

struct StreamBase {
    z_stream z{};
    AllocationCounter own;
    State state = State::fresh;
    ZlibError error = ZlibError::none;
    ZlibCounters counters;
    std::unique_ptr<char[]> dict;  // parked history: the last dict_len bytes of plaintext
    std::size_t dict_len = 0;
    std::size_t packed_len = 0;    // > 0: `dict` holds those bytes, the history compressed

    explicit StreamBase(AllocationCounter* shared) noexcept : own(shared) {
        z.zalloc = &AllocationCounter::zalloc;
        z.zfree = &AllocationCounter::zfree;
        z.opaque = &own;
    }

    // The first error wins (CONVENTIONS §3).
    ZlibError fail(ZlibError e) noexcept {
        if (error == ZlibError::none) error = e;
        return error;
    }

    void drop_dict() noexcept {
        dict.reset();
        dict_len = 0;
        packed_len = 0;
    }

    std::size_t held_bytes() const noexcept { return packed_len > 0 ? packed_len : dict_len; }

    // Parked history, compacted: XML history compresses ~5:1 and a warm stream's window is
    // most of what an idle session holds (README, "Parking"). A one-shot raw deflate with a
    // small window (its ~37 KiB of state stays under malloc's mmap threshold and lives only
    // during this call, counted like every zlib allocation). On any failure, or if it does
    // not shrink, the plain history is kept: compaction is an optimisation, never an error.
    void compact() noexcept {
        if (dict_len < k_min_compact || packed_len > 0) return;
        z_stream t{};
        t.zalloc = &AllocationCounter::zalloc;
        t.zfree = &AllocationCounter::zfree;
        t.opaque = &own;
        if (deflateInit2(&t, 1, Z_DEFLATED, -k_compact_window_bits, k_compact_mem_level, Z_DEFAULT_STRATEGY) != Z_OK) {
            return;
        }
        const uLong bound = deflateBound(&t, static_cast<uLong>(dict_len));
        std::unique_ptr<char[]> buf(new (std::nothrow) char[bound]);
        if (buf) {
            t.next_in = reinterpret_cast<Bytef*>(dict.get());
            t.avail_in = static_cast<uInt>(dict_len);
            t.next_out = reinterpret_cast<Bytef*>(buf.get());
            t.avail_out = static_cast<uInt>(bound);
            const int rc = deflate(&t, Z_FINISH);
            const std::size_t n = bound - t.avail_out;
            if (rc == Z_STREAM_END && n + k_min_saving < dict_len) {
                if (std::unique_ptr<char[]> exact(new (std::nothrow) char[n]); exact) {
                    std::memcpy(exact.get(), buf.get(), n);
                    dict = std::move(exact);
                    packed_len = n;
                }
            }
        }
        deflateEnd(&t);
    }

    // Back to the plain history before a resume: out_of_memory, or internal for what can only
    // be a bug (the packed bytes were written by compact() above).
    ZlibError expand() noexcept {
        if (packed_len == 0) return ZlibError::none;
        std::unique_ptr<char[]> plain(new (std::nothrow) char[dict_len]);
        if (!plain) return ZlibError::out_of_memory;
        z_stream t{};
        t.zalloc = &AllocationCounter::zalloc;
        t.zfree = &AllocationCounter::zfree;
        t.opaque = &own;
        const int init = inflateInit2(&t, -k_compact_window_bits);
        if (init != Z_OK) return init == Z_MEM_ERROR ? ZlibError::out_of_memory : ZlibError::internal;
        t.next_in = reinterpret_cast<Bytef*>(dict.get());
        t.avail_in = static_cast<uInt>(packed_len);
        t.next_out = reinterpret_cast<Bytef*>(plain.get());
        t.avail_out = static_cast<uInt>(dict_len);
        const int rc = inflate(&t, Z_FINISH);
        const bool ok = rc == Z_STREAM_END && t.avail_out == 0;
        inflateEnd(&t);
        if (!ok) return rc == Z_MEM_ERROR ? ZlibError::out_of_memory : ZlibError::internal;
        dict = std::move(plain);
        packed_len = 0;
        return ZlibError::none;
    }

    // Room for `n` bytes from `used`; returns false on allocation failure.
    static bool grow(std::string& out, std::size_t used, std::size_t n) noexcept {
        try {
            out.resize(used + n);
        } catch (...) {
            return false;
        }
        return true;
    }
};

struct DeflaterImpl : StreamBase {
    DeflaterOptions options;
    explicit DeflaterImpl(const DeflaterOptions& o) noexcept : StreamBase(o.shared_counter), options(o) {}
    ~DeflaterImpl() {
        if (state == State::active) deflateEnd(&z);
    }
    DeflaterImpl(const DeflaterImpl&) = delete;
    DeflaterImpl& operator=(const DeflaterImpl&) = delete;

    // A failed stream is over (the caller closes it): give zlib's memory back at once.
    ZlibError fatal(ZlibError e) noexcept {
        if (state == State::active) deflateEnd(&z);
        drop_dict();
        state = State::failed;
        return fail(e);
    }

    // Fresh: a zlib-wrapped stream (the header goes out with the first bytes). Parked: a raw
    // deflate stream, since the header was sent long ago; the peer sees the next deflate
    // block of the same stream. zlib.h (deflateSetDictionary): for raw deflate the dictionary
    // may be set before the first deflate() call, and the compressor may then refer back into
    // it exactly as far as the peer's inflater (which kept the real history) can.
    ZlibError start() noexcept {
        const bool raw = state == State::parked;
        if (raw) {
            if (auto e = expand(); e != ZlibError::none) return fatal(e);
        }
        const int bits = raw ? -options.window_bits : options.window_bits;
        int rc = deflateInit2(&z, options.level, Z_DEFLATED, bits, options.mem_level, Z_DEFAULT_STRATEGY);
        if (rc != Z_OK) {
            drop_dict();
            state = State::failed;
            return fail(rc == Z_MEM_ERROR ? ZlibError::out_of_memory : ZlibError::internal);
        }
        if (raw && dict_len > 0) {
            rc = deflateSetDictionary(&z, reinterpret_cast<const Bytef*>(dict.get()),
                                      static_cast<uInt>(dict_len));
            if (rc != Z_OK) {
                deflateEnd(&z);
                drop_dict();
                state = State::failed;
                return fail(ZlibError::internal);
            }
        }
        if (raw) ++counters.unparks;
        drop_dict();
        state = State::active;
        return ZlibError::none;
    }

    Result<std::size_t, ZlibError> compress(std::string_view in, std::string& out) noexcept {
        if (error != ZlibError::none) return Unexpected(error);
        if (in.empty()) return std::size_t{0};
        if (state != State::active) {
            if (auto e = start(); e != ZlibError::none) return Unexpected(e);
        }
        const int final_flush = options.flush == FlushMode::full ? Z_FULL_FLUSH : Z_SYNC_FLUSH;
        const std::size_t start_size = out.size();
        std::size_t used = start_size;
        // Text compresses; XMPP's worst case (random base64) grows by ~0.1% plus block overhead.
        std::size_t step = std::max(k_min_grow, in.size() / 2 + 64);
        std::size_t taken = 0;
        for (;;) {
            const std::size_t piece = std::min(in.size() - taken, k_max_chunk);
            const bool last = taken + piece == in.size();
            z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data() + taken));
            z.avail_in = static_cast<uInt>(piece);
            const int flush = last ? final_flush : Z_NO_FLUSH;
            for (;;) {
                if (!grow(out, used, step)) {
                    out.resize(start_size);
                    return Unexpected(fatal(ZlibError::out_of_memory));
                }
                z.next_out = reinterpret_cast<Bytef*>(out.data() + used);
                z.avail_out = static_cast<uInt>(std::min(step, k_max_chunk));
                const std::size_t room = z.avail_out;
                const int rc = deflate(&z, flush);
                used += room - z.avail_out;
                out.resize(used);
                if (rc == Z_STREAM_ERROR) {
                    out.resize(start_size);
                    return Unexpected(fatal(ZlibError::internal));
                }
                // zlib.h (deflate): with a flush, done once all input is taken and there was
                // output space left; otherwise call again with the same flush.
                if (z.avail_in == 0 && z.avail_out != 0) break;
                step = std::min(step * 2, k_max_chunk);
            }
            taken += piece;
            if (last) break;
        }
        const std::size_t produced = used - start_size;
        counters.bytes_in += in.size();
        counters.bytes_out += produced;
        if (options.park_after_each_call) {
            if (auto e = park(); e != ZlibError::none) return Unexpected(e);
        }
        return produced;
    }

    // Every compress() ends on a flush, so between calls the stream is at a block boundary
    // with no pending output: zlib.h allows a raw deflate to continue from there with only the
    // dictionary. FlushMode::full has dropped the history already: nothing to keep.
    ZlibError park() noexcept {
        if (error != ZlibError::none) return error;
        if (state != State::active) return ZlibError::none;
        if (options.flush == FlushMode::sync) {
            uInt len = 0;
            if (deflateGetDictionary(&z, nullptr, &len) != Z_OK) return fatal(ZlibError::internal);
            if (len > 0) {
                dict.reset(new (std::nothrow) char[len]);
                if (!dict) return ZlibError::out_of_memory;  // not parked; the stream goes on
                if (deflateGetDictionary(&z, reinterpret_cast<Bytef*>(dict.get()), &len) != Z_OK) {
                    return fatal(ZlibError::internal);
                }
                dict_len = len;
            }
        }
        deflateEnd(&z);
        state = State::parked;
        ++counters.parks;
        if (options.compact_parked_history) compact();
        return ZlibError::none;
    }
};

struct InflaterImpl : StreamBase {
    InflaterOptions options;
    int peer_window_bits = 0;     // from the peer's zlib header (RFC 1950 §2.2 CINFO + 8)
    bool raw = false;             // re-initialised after a park: no trailer check by zlib
    bool finished = false;        // the peer's last block (Z_FINISH) was decoded
    std::uint8_t trailer_left = 0;  // Adler-32 bytes after the last block of a raw stream

    explicit InflaterImpl(const InflaterOptions& o) noexcept : StreamBase(o.shared_counter), options(o) {}
    ~InflaterImpl() {
        if (state == State::active) inflateEnd(&z);
    }
    InflaterImpl(const InflaterImpl&) = delete;
    InflaterImpl& operator=(const InflaterImpl&) = delete;

    // A failed stream is over (the caller closes it with a stream error): give zlib's memory
    // back at once, so a peer that sent a bomb or garbage holds nothing while it is closed.
    ZlibError fatal(ZlibError e) noexcept {
        if (state == State::active) inflateEnd(&z);
        drop_dict();
        state = State::failed;
        return fail(e);
    }

    ZlibError start(std::uint8_t first_byte) noexcept {
        if (state == State::fresh) {
            // RFC 1950 §2.2: CMF = CINFO (window bits - 8) << 4 | CM (8 = deflate). Refuse a
            // window past our maximum ourselves, then let zlib size the window from the header
            // (windowBits 0), so a peer using 2^9 costs 512 bytes of window, not 32 KiB.
            if ((first_byte & 0x0f) == Z_DEFLATED) {
                const int bits = (first_byte >> 4) + 8;
                if (bits > options.max_window_bits) {
                    state = State::failed;
                    return fail(bits > 15 ? ZlibError::corrupt_input : ZlibError::window_too_large);
                }
                peer_window_bits = bits;
            }
        }
        const bool resume = state == State::parked;
        if (resume) {
            if (auto e = expand(); e != ZlibError::none) return fatal(e);
        }
        const int rc = inflateInit2(&z, resume ? -peer_window_bits : 0);
        if (rc != Z_OK) {
            drop_dict();
            state = State::failed;
            return fail(rc == Z_MEM_ERROR ? ZlibError::out_of_memory : ZlibError::internal);
        }
        if (resume) {
            // zlib.h (inflateSetDictionary): a raw inflate accepts the dictionary at any time;
            // it becomes the window the peer's next back-references point into.
            if (dict_len > 0 && inflateSetDictionary(&z, reinterpret_cast<const Bytef*>(dict.get()),
                                                     static_cast<uInt>(dict_len)) != Z_OK) {
                inflateEnd(&z);
                drop_dict();
                state = State::failed;
                return fail(ZlibError::out_of_memory);
            }
            raw = true;
            ++counters.unparks;
        }
        drop_dict();
        state = State::active;
        return ZlibError::none;
    }

    Result<InflateProgress, ZlibError> decompress(std::span<const char> in, std::string& out,
                                                  std::size_t max_out) noexcept {
        if (error != ZlibError::none) return Unexpected(error);
        InflateProgress p;
        if (in.empty()) return p;
        if (finished) return skip_trailer(in, p);
        if (state != State::active) {
            if (auto e = start(static_cast<std::uint8_t>(in[0])); e != ZlibError::none) return Unexpected(e);
        }
        const std::size_t start_size = out.size();
        std::size_t used = start_size;
        // At most max_out + 1 bytes: the one past the limit proves the bomb.
        const std::size_t cap = max_out == SIZE_MAX ? max_out : max_out + 1;
        std::size_t step = std::max(k_min_grow, in.size() * 4);
        for (;;) {
            const std::size_t room = std::min({step, cap - p.produced, k_max_chunk});
            if (room == 0) break;  // the cap is reached and zlib wants more room: a bomb
            if (!grow(out, used, room)) {
                out.resize(used);
                return Unexpected(fatal(ZlibError::out_of_memory));
            }
            const std::size_t in_piece = std::min(in.size() - p.consumed, k_max_chunk);
            z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data() + p.consumed));
            z.avail_in = static_cast<uInt>(in_piece);
            z.next_out = reinterpret_cast<Bytef*>(out.data() + used);
            z.avail_out = static_cast<uInt>(room);
            const int rc = inflate(&z, Z_NO_FLUSH);
            const std::size_t wrote = room - z.avail_out;
            used += wrote;
            p.produced += wrote;
            p.consumed += in_piece - z.avail_in;
            out.resize(used);
            counters.bytes_out += wrote;
            switch (rc) {
            case Z_OK:
            case Z_BUF_ERROR:  // no progress possible: needs more input or more room
                break;
            case Z_STREAM_END:
                finished = true;
                trailer_left = raw ? 4 : 0;
                counters.bytes_in += p.consumed;
                return skip_trailer(in, p);
            case Z_MEM_ERROR:
                counters.bytes_in += p.consumed;
                return Unexpected(fatal(ZlibError::out_of_memory));
            case Z_NEED_DICT:  // RFC 1950 FDICT: XEP-0138 defines no preset dictionary
            case Z_DATA_ERROR:
                counters.bytes_in += p.consumed;
                return Unexpected(fatal(ZlibError::corrupt_input));
            default:
                counters.bytes_in += p.consumed;
                return Unexpected(fatal(ZlibError::internal));
            }
            if (p.produced > max_out) break;
            if (p.consumed == in.size() && z.avail_out != 0) {
                counters.bytes_in += p.consumed;
                if (options.park_after_each_call) park();
                return p;
            }
            if (z.avail_out != 0 && rc == Z_BUF_ERROR) {
                counters.bytes_in += p.consumed;
                return Unexpected(fatal(ZlibError::internal));  // input left, room left, no progress
            }
            step = std::min(step * 2, k_max_chunk);
        }
        counters.bytes_in += p.consumed;
        return Unexpected(fatal(ZlibError::output_limit));
    }

    // After the peer's final block: a raw (resumed) stream still carries the 4-byte Adler-32
    // trailer of RFC 1950, which zlib would have checked had it kept the wrapper. We cannot
    // check it (the sum covers output from before the park), so we only step over it.
    Result<InflateProgress, ZlibError> skip_trailer(std::span<const char> in, InflateProgress p) noexcept {
        const std::size_t rest = in.size() - p.consumed;
        const std::size_t skip = std::min<std::size_t>(rest, trailer_left);
        trailer_left = static_cast<std::uint8_t>(trailer_left - skip);
        p.consumed += skip;
        counters.bytes_in += skip;
        if (p.consumed < in.size()) return Unexpected(fatal(ZlibError::data_after_end));
        if (state == State::active) {
            inflateEnd(&z);
            state = State::parked;  // nothing to resume: holds nothing
            drop_dict();
        }
        return p;
    }

    // zlib sets data_type after every inflate(): the number of unused bits in the last input
    // byte, +128 when it stopped at a block boundary (or just after the zlib header). Only
    // with both (boundary, 0 bits) can a fresh raw inflater continue at the next input byte
    // with nothing but the window; a peer's Z_SYNC_FLUSH / Z_FULL_FLUSH ends on exactly that
    // (an empty stored block is byte-aligned, RFC 1951 §3.2.4).
    bool park() noexcept {
        if (state != State::active) return state != State::failed;
        if (z.total_in == 0) return false;
        if ((z.data_type & 128) == 0 || (z.data_type & 7) != 0) return false;
        uInt len = 0;
        if (inflateGetDictionary(&z, nullptr, &len) != Z_OK) return false;
        if (len > 0) {
            dict.reset(new (std::nothrow) char[len]);
            if (!dict) return false;
            if (inflateGetDictionary(&z, reinterpret_cast<Bytef*>(dict.get()), &len) != Z_OK) {
                drop_dict();
                return false;
            }
            dict_len = len;
        }
        inflateEnd(&z);
        state = State::parked;
        ++counters.parks;
        if (options.compact_parked_history) compact();
        return true;
    }
};

}  // namespace detail

// --- Deflater ------------------------------------------------------------------------------

Result<Deflater, ZlibError> Deflater::make(const DeflaterOptions& o) noexcept {
    if (o.window_bits < 9 || o.window_bits > 15 || o.mem_level < 1 || o.mem_level > 9 || o.level < 1 ||
        o.level > 9 || (o.flush != FlushMode::sync && o.flush != FlushMode::full)) {
        return Unexpected(ZlibError::bad_option);
    }
    std::unique_ptr<detail::DeflaterImpl> impl(new (std::nothrow) detail::DeflaterImpl(o));
    if (!impl) return Unexpected(ZlibError::out_of_memory);
    return Deflater(std::move(impl));
}

Deflater::Deflater(std::unique_ptr<detail::DeflaterImpl> impl) noexcept : _impl(std::move(impl)) {}
Deflater::Deflater(Deflater&&) noexcept = default;
Deflater& Deflater::operator=(Deflater&&) noexcept = default;
Deflater::~Deflater() = default;

Result<std::size_t, ZlibError> Deflater::compress(std::string_view plaintext, std::string& out) noexcept {
    return _impl->compress(plaintext, out);
}

Result<void, ZlibError> Deflater::park() noexcept {
    if (auto e = _impl->park(); e != ZlibError::none) return Unexpected(e);
    return {};
}

bool Deflater::is_parked() const noexcept { return _impl->state != detail::State::active; }
void Deflater::compact() noexcept {
    if (_impl->state == detail::State::parked) _impl->compact();
}
std::size_t Deflater::zlib_bytes() const noexcept { return _impl->own.live_bytes(); }
std::size_t Deflater::parked_bytes() const noexcept { return _impl->held_bytes(); }
const ZlibCounters& Deflater::counters() const noexcept { return _impl->counters; }
ZlibError Deflater::error() const noexcept { return _impl->error; }

// --- Inflater ------------------------------------------------------------------------------

Result<Inflater, ZlibError> Inflater::make(const InflaterOptions& o) noexcept {
    if (o.max_window_bits < 9 || o.max_window_bits > 15) return Unexpected(ZlibError::bad_option);
    std::unique_ptr<detail::InflaterImpl> impl(new (std::nothrow) detail::InflaterImpl(o));
    if (!impl) return Unexpected(ZlibError::out_of_memory);
    return Inflater(std::move(impl));
}

Inflater::Inflater(std::unique_ptr<detail::InflaterImpl> impl) noexcept : _impl(std::move(impl)) {}
Inflater::Inflater(Inflater&&) noexcept = default;
Inflater& Inflater::operator=(Inflater&&) noexcept = default;
Inflater::~Inflater() = default;

Result<InflateProgress, ZlibError> Inflater::decompress(std::span<const char> in, std::string& out,
                                                        std::size_t max_out) noexcept {
    return _impl->decompress(in, out, max_out);
}

bool Inflater::park() noexcept { return _impl->park(); }
bool Inflater::is_parked() const noexcept { return _impl->state != detail::State::active; }
void Inflater::compact() noexcept {
    if (_impl->state == detail::State::parked) _impl->compact();
}
bool Inflater::is_finished() const noexcept { return _impl->finished; }
std::size_t Inflater::zlib_bytes() const noexcept { return _impl->own.live_bytes(); }
std::size_t Inflater::parked_bytes() const noexcept { return _impl->held_bytes(); }
const ZlibCounters& Inflater::counters() const noexcept { return _impl->counters; }
ZlibError Inflater::error() const noexcept { return _impl->error; }

}  // namespace xmpp::zlib
