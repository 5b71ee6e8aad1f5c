// XEP-0138 stream compression (method "zlib", RFC 1950/1951) as two memory-to-memory engines,
// one per direction: a Deflater for what we send, an Inflater for what we receive. No sockets,
// no I/O, no clock: the caller hands in bytes and gets bytes back, like xmpp/tls/TlsSession.
//
// Lifecycle (both): made by make(options), which checks the options and allocates no zlib
// state yet (a stream that negotiated compression but has sent nothing holds no zlib memory).
// The first call that carries data initialises zlib; park() gives zlib's big allocations back
// between batches and keeps only the last part of the sliding window, and the next call
// re-initialises zlib transparently as a raw continuation of the same zlib stream, so the
// bytes on the wire stay one valid RFC 1950 stream. After an error the object stays failed
// (the first error wins), has already given zlib's memory back, and every later call returns
// that error. Movable (a moved-from object
// may only be destroyed or assigned to); not thread-safe. Lives on: the shard that owns the
// connection (it moves with the socket on home-shard migration, as a whole, between two calls).
//
// Memory is counted exactly: every zlib allocation goes through an AllocationCounter (the
// object's own, and optionally a shared one for a whole shard or a benchmark).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "xmpp/result.hpp"

namespace xmpp::zlib {

// Why a stream failed. One per object: the first error wins and sticks.
enum class ZlibError : std::uint8_t {
    none,
    bad_option,        // make(): an option out of its bounds (nothing was allocated)
    out_of_memory,     // zlib could not allocate its state (or the counter's limit was hit)
    corrupt_input,     // not a zlib stream, a corrupt block, a preset dictionary, a bad window
    window_too_large,  // the peer's zlib header asks for a window past max_window_bits
    output_limit,      // one decompress() call would produce more than max_out: a zlib bomb
    data_after_end,    // bytes after the peer finished its zlib stream (Z_FINISH)
    internal,          // zlib returned something it never should (a bug, ours or zlib's)
};

// Stable kebab-case name, for logs and metric labels.
std::string_view to_string(ZlibError e) noexcept;

// Counts the bytes zlib holds through it. zalloc()/zfree() have the signatures of zlib's
// alloc_func/free_func with `opaque` = the counter, so a test or a benchmark can hand them to
// a plain z_stream too. Each allocation carries a 16-byte header (its size) that is not
// counted: the numbers are what zlib asked for. An optional parent sees every allocation too
// (one per shard, summed at scrape time). Not thread-safe: one shard's objects only.
class AllocationCounter {
public:
    AllocationCounter() noexcept = default;
    explicit AllocationCounter(AllocationCounter* parent) noexcept : _parent(parent) {}
    AllocationCounter(const AllocationCounter&) = delete;
    AllocationCounter& operator=(const AllocationCounter&) = delete;

    std::size_t live_bytes() const noexcept { return _live; }
    std::size_t peak_bytes() const noexcept { return _peak; }
    std::uint64_t allocations() const noexcept { return _allocations; }
    // An allocation that would take live_bytes() past `limit` fails (zlib sees Z_MEM_ERROR):
    // failure injection for tests, or a hard per-shard budget.
    void set_limit(std::size_t limit) noexcept { _limit = limit; }
    void reset_peak() noexcept { _peak = _live; }

    static void* zalloc(void* opaque, unsigned items, unsigned size) noexcept;
    static void zfree(void* opaque, void* address) noexcept;

private:
    bool admit(std::size_t n) noexcept;
    void release(std::size_t n) noexcept;

    AllocationCounter* _parent = nullptr;
    std::size_t _live = 0;
    std::size_t _peak = 0;
    std::size_t _limit = static_cast<std::size_t>(-1);
    std::uint64_t _allocations = 0;
};

// What each direction has seen, for the broker's metrics ("bytes saved" = the difference).
struct ZlibCounters {
    std::uint64_t bytes_in = 0;   // Deflater: plaintext taken; Inflater: compressed taken
    std::uint64_t bytes_out = 0;  // Deflater: compressed produced; Inflater: plaintext produced
    std::uint64_t parks = 0;      // park() calls that released zlib's state
    std::uint64_t unparks = 0;    // re-initialisations from a parked state
};

// How each compress() call ends.
enum class FlushMode : std::uint8_t {
    // Z_SYNC_FLUSH: the peer can decode everything so far; later data may refer back to it
    // (best ratio). The XEP-0138 default behaviour of every client.
    sync,
    // Z_FULL_FLUSH: as sync, and the history is dropped, so no later batch can refer to an
    // earlier one (a worse ratio, and nothing to keep when parked). Limits length-oracle
    // attacks to the inside of one batch (README, "Security").
    full,
};

struct DeflaterOptions {
    // LZ77 window, 2^window_bits bytes: 9..15 (zlib's 8 is silently 9). Memory, measured:
    // README. Defaults tuned for a million mostly idle sessions (README, "Defaults").
    int window_bits = 11;
    // Hash chain and literal buffer size: 1..9.
    int mem_level = 4;
    // zlib compression level: 1 (fastest) .. 9 (best ratio); level does not change memory.
    int level = 6;
    FlushMode flush = FlushMode::sync;
    // Park after every compress() call: zlib's state lives only during the call.
    bool park_after_each_call = false;
    // Keep the parked history compressed (~5:1 on XML; costs a small deflate per park and an
    // inflate per resume): for parks from an idle timer rather than after every batch.
    bool compact_parked_history = false;
    // Also charged with every allocation (optional; must outlive the Deflater).
    AllocationCounter* shared_counter = nullptr;
};

struct InflaterOptions {
    // Largest window a peer may declare in its zlib header: 9..15. RFC 1950 allows up to 15
    // and standard clients use it (zlib's deflateInit default), so keep 15 to interoperate.
    // zlib allocates the window the peer declares, not this maximum.
    int max_window_bits = 15;
    bool park_after_each_call = false;
    bool compact_parked_history = false;  // as DeflaterOptions::compact_parked_history
    AllocationCounter* shared_counter = nullptr;
};

// What one decompress() call did.
struct InflateProgress {
    std::size_t consumed = 0;  // compressed bytes taken from `in` (all of it on success)
    std::size_t produced = 0;  // plaintext bytes appended to `out`
};

namespace detail {
struct DeflaterImpl;
struct InflaterImpl;
}  // namespace detail

// Our direction: plaintext (one output batch) in, compressed bytes out.
class Deflater {
public:
    static Result<Deflater, ZlibError> make(const DeflaterOptions& options = {}) noexcept;

    Deflater(Deflater&&) noexcept;
    Deflater& operator=(Deflater&&) noexcept;
    ~Deflater();

    // Compresses `plaintext` and appends it to `out`, ending with a flush (options.flush) so
    // that the peer can decode everything written so far. DESIGN §3.5: call once per output
    // batch, not per stanza (every flush costs at least 4 bytes and ends a deflate block).
    // Returns the bytes appended; nothing for an empty `plaintext`. The first call also writes
    // the 2-byte zlib header. `out` grows as needed (its allocation is the caller's).
    Result<std::size_t, ZlibError> compress(std::string_view plaintext, std::string& out) noexcept;

    // Gives zlib's state back, keeping at most 2^window_bits bytes of history (nothing in
    // FlushMode::full). Always possible between calls (each call ends on a flush). Idempotent.
    // out_of_memory here (no room for the history) is not sticky: the stream stays unparked.
    Result<void, ZlibError> park() noexcept;
    bool is_parked() const noexcept;
    // Compresses the parked history (see compact_parked_history), e.g. from an idle timer
    // long after a cheap park(). No-op unless parked; never fails (keeps it plain instead).
    void compact() noexcept;

    // Bytes zlib holds right now for this object (0 when parked or before the first call).
    std::size_t zlib_bytes() const noexcept;
    // Bytes of history kept while parked (our allocation, not zlib's; compacted if asked).
    std::size_t parked_bytes() const noexcept;
    const ZlibCounters& counters() const noexcept;
    ZlibError error() const noexcept;

private:
    explicit Deflater(std::unique_ptr<detail::DeflaterImpl> impl) noexcept;
    std::unique_ptr<detail::DeflaterImpl> _impl;
};

// The peer's direction: compressed bytes in, plaintext out, bounded per call.
class Inflater {
public:
    static Result<Inflater, ZlibError> make(const InflaterOptions& options = {}) noexcept;

    Inflater(Inflater&&) noexcept;
    Inflater& operator=(Inflater&&) noexcept;
    ~Inflater();

    // Decompresses all of `in` (any chunking: a zlib stream may be cut anywhere) and appends
    // the plaintext to `out`. If this call would produce more than `max_out` bytes, it fails
    // with output_limit (sticky) having appended at most max_out + 1 bytes: a zlib bomb (1 KB
    // of input can expand to 1 MB) is refused before it costs memory. XEP-0138 §7 / DESIGN
    // §7: the caller ends the stream with policy-violation. Choose max_out >= the largest
    // plaintext a legitimate `in` can carry (e.g. the tokenizer's max_stanza_bytes plus the
    // socket read size times zlib's best ratio, ~1032:1, capped: see README, "Limits").
    Result<InflateProgress, ZlibError> decompress(std::span<const char> in, std::string& out,
                                                  std::size_t max_out) noexcept;

    // Gives zlib's state back, keeping the last 2^(peer window bits) bytes of output at most.
    // Only possible on a block boundary at a byte edge, which is where a peer's Z_SYNC_FLUSH
    // or Z_FULL_FLUSH leaves the stream; returns false (and keeps everything) mid-block, for
    // example when the peer has not flushed yet or the zlib header is incomplete. Idempotent.
    bool park() noexcept;
    bool is_parked() const noexcept;
    // As Deflater::compact().
    void compact() noexcept;
    // True once the peer ended its zlib stream (Z_FINISH); later input is data_after_end.
    bool is_finished() const noexcept;

    std::size_t zlib_bytes() const noexcept;
    std::size_t parked_bytes() const noexcept;
    const ZlibCounters& counters() const noexcept;
    ZlibError error() const noexcept;

private:
    explicit Inflater(std::unique_ptr<detail::InflaterImpl> impl) noexcept;
    std::unique_ptr<detail::InflaterImpl> _impl;
};

}  // namespace xmpp::zlib
