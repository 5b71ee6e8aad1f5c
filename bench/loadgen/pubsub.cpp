// The pubsub scenario's side of a Session (XEP-0060): node creation (§8.1), subscription
// (§6.1), publishing (§7.1) and the notifications received (§7.1.2).
#include <chrono>
#include <memory>
#include <string>
#include <string_view>

#include "bench/loadgen/session.hpp"
#include "bench/loadgen/wire.hpp"
#include "bench/loadgen/worker.hpp"
#include "xmpp/xml/raw_text.hpp"

namespace starling::loadgen {

namespace {

using xmpp::xml::ElementView;

constexpr std::string_view k_ns_pubsub = "http://jabber.org/protocol/pubsub";
// The item payload: <entry xmlns='urn:starling:loadgen'>lg RUN NODE SEQ SEND_NS</entry>.
constexpr std::string_view k_payload_magic = ">lg ";
constexpr std::uint32_t k_max_create_retries = 20;

void open_pubsub_iq(std::string& out, const Options& o, char kind, std::uint32_t node) {
    out += "<iq type='set' id='";
    out += kind;
    if (kind != 'p') append_number(out, node);
    out += "' to='";
    xmpp::xml::escape_attribute_into(out, o.pubsub_service);
    out += "'><pubsub xmlns='";
    out += k_ns_pubsub;
    out += "'>";
}

}  // namespace

void Session::send_create(std::uint32_t node) {
    std::string out;
    open_pubsub_iq(out, _worker.opt(), 'c', node);
    out += "<create node='";
    xmpp::xml::escape_attribute_into(out, _worker.run().node_names[node]);
    out += "'/></pubsub></iq>";
    queue(out);
}

void Session::send_subscribe(std::uint32_t node) {
    const auto& o = _worker.opt();
    std::string out;
    open_pubsub_iq(out, o, 's', node);
    out += "<subscribe node='";
    xmpp::xml::escape_attribute_into(out, _worker.run().node_names[node]);
    // §6.1.1: the JID must match the sender's (bare or full). The full JID: notifications come
    // to this session and no other.
    out += "' jid='";
    std::string jid = o.prefix;
    append_number(jid, o.first_user + _index);
    jid += _worker.run().jid_suffix;
    xmpp::xml::escape_attribute_into(out, jid);
    out += "'/></pubsub></iq>";
    queue(out);
}

void Session::send_publish(std::uint64_t now) noexcept {
    const auto& o = _worker.opt();
    auto& run = _worker.run();
    // Publisher p owns nodes p, p + P, p + 2P...: round-robin over them.
    const std::uint32_t p = o.publishers;
    const std::uint32_t mine = (o.nodes - _index + p - 1) / p;
    const std::uint32_t node = _index + p * (_publish_rr++ % mine);
    const std::uint64_t seq = run.node_seq[node]++;
    open_pubsub_iq(_out, o, 'p', node);
    _out += "<publish node='";
    xmpp::xml::escape_attribute_into(_out, run.node_names[node]);
    _out += "'><item><entry xmlns='urn:starling:loadgen'>lg ";
    append_number(_out, run.run_id);
    _out += ' ';
    append_number(_out, node);
    _out += ' ';
    append_number(_out, seq);
    _out += ' ';
    append_number(_out, now);
    if (!run.body_padding.empty()) {
        _out += ' ';
        _out += run.body_padding;
    }
    _out += "</entry></item></publish></pubsub></iq>";
    ++_next_seq;
    _inflight.fetch_add(1, std::memory_order_relaxed);
    _worker.counters.sent.add();
    _worker.mark_dirty(*this);
}

bool Session::on_setup_iq(const ElementView& el) {
    const std::string_view id = el.id().raw();
    if (id.empty()) return false;
    const bool ok = el.type().equals("result");
    if (id == "p") {
        _worker.on_publish_answer(*this, ok, ok ? std::string() : error_condition(el.bytes()));
        return true;
    }
    if (id[0] != 'c' && id[0] != 's') return false;
    std::string_view digits = id.substr(1);
    std::uint64_t node = 0;
    if (!parse_u64(digits, node) || !digits.empty()) return false;
    if (ok) {
        // §6.1.2: a subscription may come back 'pending' (authorization needed) or
        // 'unconfigured': not what the benchmark needs.
        const std::string_view b = el.bytes();
        const bool pending = id[0] == 's' && (b.find("subscription='pending'") != std::string_view::npos ||
                                              b.find("subscription=\"pending\"") != std::string_view::npos);
        _worker.on_setup_answer(id[0], pending ? RegisterOutcome::failed : RegisterOutcome::created,
                                pending ? "pending" : "");
        if (id[0] == 's' && !pending) {
            const auto& o = _worker.opt();
            const std::uint64_t m = o.users - o.publishers;
            const std::uint64_t s = o.subscribers_per_node;
            const std::uint64_t slot = ((_index - o.publishers) + m - (node * s) % m) % m;
            if (_index >= o.publishers && slot < s) _worker.subscribed[node * s + slot] = 1;
        }
        return true;
    }
    const std::string condition = error_condition(el.bytes());
    // ejabberd 23.01 (Mnesia) aborts some of many concurrent node creations with
    // internal-server-error (a cyclic lock on its node index) and does not retry them itself:
    // try again after a growing delay spread by session (so the retries do not collide
    // again), a bounded number of times per publisher, before counting a failure.
    if (id[0] == 'c' && condition == "internal-server-error" && _create_retries < k_max_create_retries) {
        ++_create_retries;
        const auto delay = std::chrono::milliseconds(50 * _create_retries + (_index * 7919u) % 500u);
        auto timer = std::make_shared<asio::steady_timer>(_worker.io(), delay);
        timer->async_wait([this, timer, n = static_cast<std::uint32_t>(node)](const std::error_code& ec) {
            if (!ec && is_online()) send_create(n);
        });
        return true;
    }
    // §8.1.3 (create): <conflict/> when the node exists already, e.g. from an earlier run.
    _worker.on_setup_answer(id[0], id[0] == 'c' && condition == "conflict" ? RegisterOutcome::existing
                                                                            : RegisterOutcome::failed,
                            condition);
    return true;
}

void Session::on_pubsub_event(const ElementView& el) {
    const std::string_view b = el.bytes();
    const auto at = b.find(k_payload_magic);
    if (at == std::string_view::npos) {
        _worker.counters.other_stanzas.add();
        return;
    }
    std::string_view p = b.substr(at + k_payload_magic.size());
    std::uint64_t run_id = 0, node = 0, seq = 0, sent_at = 0;
    const auto& o = _worker.opt();
    if (!parse_u64(p, run_id) || !parse_u64(p, node) || !parse_u64(p, seq) || !parse_u64(p, sent_at) ||
        node >= o.nodes) {
        _worker.counters.other_stanzas.add();
        return;
    }
    if (run_id != _worker.run().run_id) {
        _worker.counters.stale.add();
        return;
    }
    // Which of the node's subscriptions this session holds: subscriber j of node n is session
    // P + (n * S + j) mod M, M = users - P.
    const std::uint64_t m = o.users - o.publishers;
    const std::uint64_t s = o.subscribers_per_node;
    if (_index < o.publishers) {
        _worker.counters.unsubscribed.add();
        return;
    }
    const std::uint64_t slot = ((_index - o.publishers) + m - (node * s) % m) % m;
    if (slot >= s) {
        _worker.counters.unsubscribed.add();
        return;
    }
    _worker.on_notification(static_cast<std::uint32_t>(node * s + slot), seq, sent_at, now_ns());
}

}  // namespace starling::loadgen
