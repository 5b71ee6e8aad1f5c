// The presence scenario's side of a Session: mutual subscriptions with the neighbours
// (RFC 6121 §3.1), presence updates carrying a sequence and a timestamp, and the loss
// accounting per (contact, sequence) on the receiving side.
#include <string>
#include <string_view>

#include "bench/loadgen/session.hpp"
#include "bench/loadgen/wire.hpp"
#include "bench/loadgen/worker.hpp"
#include "xmpp/xml/raw_text.hpp"

namespace starling::loadgen {

namespace {

using xmpp::xml::ElementView;

constexpr std::string_view k_status_tag = "<status>";

void append_bare_jid(std::string& out, const Options& o, std::uint32_t index) {
    out += o.prefix;
    append_number(out, o.first_user + index);
    out += '@';
    out += o.domain;
}

}  // namespace

// User i subscribes to i±1..i±K: each pair asks both ways and each side approves what it is
// asked, so every pair ends with subscription 'both' (RFC 6121 §3.1.2-§3.1.5).
void Session::send_subscriptions() {
    const auto& o = _worker.opt();
    const std::uint32_t n = o.users;
    for (std::uint32_t d = 1; d <= o.neighbours; ++d) {
        for (const std::uint32_t peer : {(_index + d) % n, (_index + n - d) % n}) {
            _out += "<presence type='subscribe' to='";
            append_bare_jid(_out, o, peer);
            _out += "'/>";
        }
    }
    _worker.mark_dirty(*this);
}

void Session::send_presence_update(std::uint64_t now) noexcept {
    _out += "<presence><status>";
    append_number(_out, _next_seq++);
    _out += ' ';
    append_number(_out, now);
    _out += "</status></presence>";
    _worker.counters.sent.add();
    _worker.mark_dirty(*this);
}

void Session::on_presence(const ElementView& el) {
    const auto& o = _worker.opt();
    if (o.scenario != Scenario::presence) {
        _worker.counters.other_stanzas.add();
        return;
    }
    // The sender: PREFIX<n>@DOMAIN[/resource].
    const std::string_view from = el.from().raw();
    std::uint64_t number = 0;
    std::string_view rest = from;
    bool is_ours = rest.starts_with(o.prefix);
    if (is_ours) {
        rest.remove_prefix(o.prefix.size());
        is_ours = parse_u64(rest, number) && rest.starts_with('@') && number >= o.first_user &&
                  number - o.first_user < o.users;
    }
    const auto type = el.type();
    if (type.equals("subscribe")) {
        // Approve (§3.1.4); only our neighbours ask.
        _worker.counters.subscribe_requests.add();
        std::string out = "<presence type='subscribed' to='";
        const auto slash = from.find('/');
        xmpp::xml::escape_attribute_into(out, from.substr(0, slash));
        out += "'/>";
        queue(out);
        return;
    }
    if (type.equals("subscribed")) {
        _worker.on_setup_answer('p', RegisterOutcome::created, {});
        return;
    }
    if (type.equals("error")) {
        _worker.counters.errors_received.add();
        _worker.on_bounce(el.bytes());
        return;
    }
    const std::string_view b = el.bytes();
    const auto at = b.find(k_status_tag);
    if (type.present() || at == std::string_view::npos || !is_ours) {
        _worker.counters.other_stanzas.add();  // unavailable, probes, initial presence
        return;
    }
    std::string_view status = b.substr(at + k_status_tag.size());
    std::uint64_t seq = 0, sent_at = 0;
    if (!parse_u64(status, seq) || !parse_u64(status, sent_at)) {
        _worker.counters.other_stanzas.add();
        return;
    }
    // Contact slot: d = sender - me (mod N); 1..K are slots 0..K-1, -1..-K slots K..2K-1.
    const std::uint64_t n = o.users;
    const auto sender = static_cast<std::uint32_t>(number - o.first_user);
    const std::uint64_t d = (sender + n - _index) % n;
    std::uint64_t slot;
    if (d == 0) {
        // RFC 6121 §4.2.2: the server sends our own broadcast to our own available resources.
        _worker.counters.other_stanzas.add();
        return;
    }
    if (d >= 1 && d <= o.neighbours) {
        slot = d - 1;
    } else if (d >= n - o.neighbours) {
        slot = o.neighbours + (n - d) - 1;
    } else {
        // A contact outside the ring: a subscription left over from an earlier run with other
        // --users or --neighbours (a server cannot send presence to a non-contact on its own).
        _worker.counters.misrouted.add();
        return;
    }
    if (presence_seen.empty()) presence_seen.resize(2 * static_cast<std::size_t>(o.neighbours));
    auto& bits = presence_seen[slot];
    const std::size_t word = static_cast<std::size_t>(seq / 64);
    if (word >= bits.size()) bits.resize(std::max(word + 1, bits.size() * 2), 0);
    const std::uint64_t mask = std::uint64_t{1} << (seq % 64);
    const bool fresh = (bits[word] & mask) == 0;
    bits[word] |= mask;
    _worker.on_presence_update(fresh, sent_at, now_ns());
}

}  // namespace starling::loadgen
