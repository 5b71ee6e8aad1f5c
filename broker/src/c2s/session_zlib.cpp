// C2sSession, part 5: XEP-0138 stream compression with zlib. Negotiated after authentication
// (§3: after TLS and SASL), once per stream; then the bytes on the connection are one zlib
// stream each way, inside TLS when there is TLS:
//   socket -> [TLS] -> inflate -> tokenizer ... _out -> deflate (one flush per batch) -> [TLS] -> socket
// Between batches the session parks both zlib streams (xmpp/zlib: history kept, zlib's state
// freed), so an idle compressed device costs a few KB, not zlib's ~300 KB default.
#include <cstring>

#include "broker/src/c2s/options.hpp"
#include "broker/src/c2s/session.hpp"
#include "broker/src/c2s/session_detail.hpp"
#include "broker/src/c2s/session_zlib.hpp"
#include "broker/src/c2s/shard_context.hpp"
#include "broker/src/util/log.hpp"
#include "xmpp/zlib/zlib_stream.hpp"

namespace starling::c2s {

using namespace detail;


void C2sSession::on_compress(const ElementView& el) {
    auto fail = [this](std::string_view condition) {
        _out += "<failure xmlns='http://jabber.org/protocol/compress'><";
        _out += condition;
        _out += "/></failure>";
        schedule_flush();
    };
    if (el.local_name() != "compress") {
        close(StreamError::unsupported_stanza_type, el.local_name());
        return;
    }
    // §3: offered once, after authentication; a second request on a compressed stream, or one
    // where we did not offer it, is refused and the stream goes on uncompressed (or as it was).
    if (!_ctx->options.compression || _zlib || _phase != Phase::negotiating || _jid) {
        fail("setup-failed");
        return;
    }
    const std::string body(el.bytes());
    if (body.find("<method>zlib</method>") == std::string::npos) {
        fail("unsupported-method");  // §4: the only method we speak
        return;
    }
    xmpp::zlib::DeflaterOptions d;
    d.window_bits = _ctx->options.compression_window_bits;
    d.mem_level = _ctx->options.compression_mem_level;
    auto deflater = xmpp::zlib::Deflater::make(d);
    auto inflater = xmpp::zlib::Inflater::make();
    if (!deflater || !inflater) {
        fail("setup-failed");
        return;
    }
    _zlib = std::make_unique<Compression>(Compression{std::move(*deflater), std::move(*inflater)});
    ++_ctx->counters.zlib_sessions;
    // <compressed/> itself goes out as it is; everything after it is compressed, and so is
    // everything the client sends after it (§3: then both sides restart the stream).
    _out += "<compressed xmlns='http://jabber.org/protocol/compress'/>";
    _out_ready = _out.size();
    _tok->discard_unscanned();
    _tok->restart();
    _header_sent = false;
    _phase = Phase::header;
    schedule_flush();
}

// Inflates what arrived into the tokenizer. False when the stream is over (the error is queued).
bool C2sSession::inflate_into_tokenizer(std::span<const char> wire) {
    if (wire.empty()) return true;
    auto& plain = _ctx->inflate_scratch;
    plain.clear();
    // At most this much plaintext from one read: a zlib bomb (a few KB that inflate to GBs)
    // is refused before it costs memory (XEP-0138 §7, DESIGN §7). Legitimate input: one read
    // of compressed XML, at most a few stanzas' worth.
    const std::size_t limit = 4 * _ctx->options.xml_limits.max_stanza_bytes;
    auto r = _zlib->in.decompress(wire, plain, limit);
    _ctx->counters.zlib_in_wire += wire.size();
    if (!r) {
        ++_ctx->counters.zlib_refused;
        const auto e = _zlib->in.error();
        STARLING_LOG(debug, "c2s {}: compressed input refused: {}", _peer, xmpp::zlib::to_string(e));
        // Our direction still works: the stream error goes out compressed, as the client expects.
        if (e == xmpp::zlib::ZlibError::output_limit) {
            close(StreamError::policy_violation, "compressed input expands beyond the limit");
        } else {
            close(StreamError::bad_format, "compressed input is not a valid zlib stream");
        }
        return false;
    }
    _ctx->counters.zlib_in_plain += plain.size();
    if (!plain.empty()) _tok->append(plain);
    if (plain.capacity() > (256u << 10)) std::string().swap(plain);  // one big read keeps no big buffer
    return true;
}

// Compresses what was added to _out since the last call: one deflate flush per output batch
// (DESIGN §3.5). False when zlib failed (the connection is then torn down: the stream cannot
// be continued).
bool C2sSession::deflate_pending() {
    if (!_zlib || _out.size() <= _out_ready) return true;
    auto& z = _ctx->deflate_scratch;
    z.clear();
    const std::string_view plain = std::string_view(_out).substr(_out_ready);
    auto r = _zlib->out.compress(plain, z);
    if (!r) {
        STARLING_LOG(warn, "c2s {}: compression failed: {}", _peer, xmpp::zlib::to_string(_zlib->out.error()));
        return false;
    }
    _ctx->counters.zlib_out_plain += plain.size();
    _ctx->counters.zlib_out_wire += z.size();
    _out.resize(_out_ready);
    _out += z;
    _out_ready = _out.size();
    if (z.capacity() > (256u << 10)) std::string().swap(z);
    return true;
}

void C2sSession::park_compression() noexcept {
    if (!_zlib) return;
    (void)_zlib->out.park();
    (void)_zlib->in.park();  // refuses mid-block (the client did not flush): keeps its state
}

}  // namespace starling::c2s
