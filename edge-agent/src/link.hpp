// The agent's XMPP client link (RFC 6120 c2s): connect, STARTTLS (required; mbedTLS verifies
// the certificate against the configured CA, or a pinned SHA-256, or nothing in the labs-only
// insecure mode), SASL SCRAM-SHA-256 or SCRAM-SHA-1 (never PLAIN), bind, XEP-0198 stream
// management with resumption, XEP-0352 <inactive/>, XEP-0199 pings, and reconnection with
// exponential backoff and full jitter, resuming the stream when the server still has it.
//
// The layer above sends IQs with a handler and is told when the link is online (fresh or
// resumed) and offline. On a resumed stream, IQs in flight keep their handlers (the server
// replays what it had not acknowledged, XEP-0198 §5); on a fresh one every handler is called
// with an error first, so the caller resends from its queue.
//
// Lives on: the agent's io_context thread, for the life of the process.
#pragma once

#include <asio.hpp>
#include <pugixml.hpp>

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>

#include "edge-agent/src/backoff.hpp"
#include "edge-agent/src/channel.hpp"
#include "edge-agent/src/config.hpp"
#include "xmpp/sasl/scram.hpp"
#include "xmpp/tls/tls_context.hpp"
#include "xmpp/xml/tokenizer.hpp"

namespace starling::agent {

// The answer to an IQ: ok (type result), or the error's condition (RFC 6120 §8.3.3) and, for
// XEP-0060 errors, the application condition; `iq` is the whole reply (empty when the link
// dropped it: condition "disconnected").
struct IqReply {
    bool ok = false;
    std::string condition;
    std::string app_condition;
    pugi::xml_node iq;
};

enum class LinkState : std::uint8_t { offline, connecting, negotiating, online };
std::string_view to_string(LinkState s) noexcept;

struct LinkCounters {
    std::uint64_t connects = 0;
    std::uint64_t resumes = 0;
    std::uint64_t failures = 0;
    std::uint64_t stanzas_out = 0;
    std::uint64_t stanzas_in = 0;
};

class Link {
public:
    using IqHandler = std::function<void(const IqReply&)>;
    struct Callbacks {
        std::function<void(bool resumed)> online;
        std::function<void()> offline;
        // An IQ get/set that is not a ping: the handler must answer it (send_raw).
        std::function<void(const pugi::xml_node& iq)> iq_request;
    };

    Link(asio::io_context& io, const AgentConfig& config, Callbacks callbacks);  // throws on TLS config errors
    ~Link();

    void start();
    void stop();  // closes the stream (</stream:stream>) and stays offline

    // Sends an IQ; `stanza` must carry id='<id>' made by next_id(). The handler runs once: with
    // the answer, "disconnected" (a fresh stream replaced the one it was sent on), or "timeout"
    // when `timeout` (> 0) passed without an answer (the caller decides what the link does).
    void send_iq(const std::string& id, std::string stanza, IqHandler handler,
                 std::chrono::milliseconds timeout = std::chrono::milliseconds::zero());
    // Ends the connection as a failure would (resumed or reconnected after the backoff).
    void drop(const std::string& reason) { fail(reason); }
    // Any stanza (an IQ answer). Counted for stream management.
    void send_stanza(std::string stanza);
    // Asks the server for an ack (XEP-0198 <r/>), if stream management is on.
    void request_ack();
    std::string next_id();

    LinkState state() const noexcept { return _state; }
    const std::string& full_jid() const noexcept { return _full_jid; }
    const LinkCounters& counters() const noexcept { return _counters; }
    std::size_t unacked_stanzas() const noexcept { return _sm_unacked.size(); }
    const std::string& last_error() const noexcept { return _last_error; }

private:
    void connect();
    void on_connected();
    void on_data(std::string_view bytes);
    void on_channel_error(const std::string& reason);
    bool on_element(const xmpp::xml::ElementView& el);
    bool on_features(const pugi::xml_node& f);
    bool on_sasl(const pugi::xml_node& n);
    void on_stanza(const pugi::xml_node& n, std::string_view name);
    void on_tls_done();
    void send_header();
    void send_raw(std::string_view bytes);
    void bound();
    void go_online(bool resumed);
    void fail(const std::string& reason);
    void schedule_reconnect();
    void arm_ping();
    void fail_pending_iqs();
    void on_sm_ack(std::uint32_t h);

    asio::io_context& _io;
    const AgentConfig& _cfg;
    Callbacks _cb;
    xmpp::tls::TlsClientContext _tls_ctx;
    std::shared_ptr<Channel> _channel;
    std::unique_ptr<xmpp::xml::Tokenizer> _tok;
    std::unique_ptr<xmpp::sasl::ScramClient> _scram;
    bool _external = false;  // an EXTERNAL <auth/> is outstanding
    asio::steady_timer _reconnect_timer;
    asio::steady_timer _ping_timer;
    asio::steady_timer _ping_deadline;
    Backoff _backoff;
    std::mt19937_64 _rng;
    LinkState _state = LinkState::offline;
    enum class Phase : std::uint8_t { header, features, starttls, tls, sasl, bind, resume, enable, online } _phase{};
    bool _tls_up = false;
    bool _authenticated = false;
    bool _stopping = false;
    bool _sm_offered = false;
    bool _csi_offered = false;
    std::string _full_jid;
    std::string _last_error;
    std::uint64_t _id_counter = 0;
    struct PendingIq {
        IqHandler handler;
        std::unique_ptr<asio::steady_timer> deadline;  // null: no timeout
    };
    std::map<std::string, PendingIq> _pending;
    // XEP-0198
    bool _sm_on = false;
    std::string _sm_id;  // resumption id; empty: cannot resume
    std::uint32_t _sm_in = 0;        // stanzas handled from the server (h we report)
    std::uint32_t _sm_out_acked = 0;  // the server's last h
    std::deque<std::string> _sm_unacked;  // sent, not yet acknowledged by the server
    bool _ping_outstanding = false;
    std::chrono::steady_clock::time_point _online_since{};
    LinkCounters _counters;
};

}  // namespace starling::agent
