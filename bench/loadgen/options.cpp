#include "bench/loadgen/options.hpp"

#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <string_view>

namespace starling::loadgen {

namespace {

constexpr const char* k_usage = R"(usage: starling-loadgen SCENARIO [OPTIONS]

Scenarios:
  connect   open --users sessions at --rate sessions/s, hold them idle for --hold seconds;
            report the connect rate, failures and (with --server-pid) the server's RSS per session
  chat      log in --users sessions, then each sends messages to random other sessions for
            --duration seconds at --rate msgs/s in total (0: as fast as the --window allows);
            report delivered/s, loss, duplicates and latency percentiles
  register  XEP-0077 in-band registration of the --users accounts PREFIX<first>.. with
            --password, one per connection, at --rate registrations/s (0: --connect-window in
            flight per thread); report created, existing (conflict), failed by condition, rate
  pubsub    XEP-0060: create --nodes nodes on --pubsub-service, subscribe
            --subscribers-per-node sessions to each, then --publishers publish items (sequence
            and timestamp in the payload) at --rate items/s in total for --duration seconds;
            report notifications/s, latency percentiles, lost/duplicated notifications
  presence  IoT fleet: user i shares presence both ways with users i-K..i+K (K = --neighbours, mod N),
            subscribed in-band first (RFC 6121 §3) unless --skip-subscribe; then sessions send
            presence updates at --rate in total for --duration seconds; report notifications/s,
            latency, lost/duplicated (each update is expected by its --neighbours*2 contacts)
  reconnect TLS reconnects with an OpenSSL client (--tls starttls or direct): --mode full (each
            login a full handshake + SCRAM), resume (one full login per device, then each login
            offers the TLS session and, with --auth sasl2, a FAST token) for --duration s with
            --users devices looping; or storm (all bound, links cut, all reconnect with
            --connect-window per thread in flight); report logins/s, server CPU per login,
            resumed handshakes, failures, per-device time to be bound again (p50/p99)

Options:
  --host ADDR          server address (default 127.0.0.1)
  --port N             c2s port (default 5222)
  --domain NAME        XMPP domain (default localhost)
  --users N            sessions, accounts PREFIX<first>..PREFIX<first+N-1> (default 100)
  --first N            number of the first account (default 1)
  --prefix TEXT        account name prefix (default user)
  --password TEXT      password of every account (default pass)
  --resource TEXT      resource to bind (default lg)
  --sasl MECH          auto, plain, scram-sha-1, scram-sha-256 (default auto: PLAIN if offered)
  --threads N          worker threads, one io_context each (default 1)
  --rate R             connect: sessions/s; register: registrations/s; chat: messages/s;
                       pubsub: items/s; presence: updates/s; all in total (default 0: unpaced)
  --connect-rate R     chat, pubsub, presence: sessions/s while logging in (default 0: unpaced)
  --connect-window N   logins in flight per thread when unpaced (default 64)
  --duration S         chat, pubsub, presence: seconds of sending (default 10)
  --hold S             connect: seconds to hold the sessions idle (default 5)
  --drain S            chat, pubsub, presence: seconds to wait for messages in flight at the
                       end (default 5); presence: also the set-up's patience
  --window W           chat: outstanding messages per session; pubsub: publish IQs per
                       publisher; 0 = unbounded (default 8)
  --body-bytes N       chat, pubsub: pad message bodies / item payloads by N bytes (default 0)
  --no-spread          do not bind sockets to 127.0.0.1-254 (only done when --host is on 127/8)
  --server-pid PID     sample the server's RSS (and CPU time) from /proc
  --json FILE          also write the JSON summary to FILE
  --timeout S          hard bound on the whole run (default 300)
  --max-loss N         lost + duplicated messages + errors tolerated before exit 1 (default 0)
  --no-progress        no progress display on stderr
  --tls MODE           none, starttls, direct (default none: plain TCP, for benchmarks; direct
                       is XEP-0368 TLS from the first byte, give the server's TLS --port)
  --sm                 enable XEP-0198 stream management (resume='true') after binding and
                       answer the server's <r/> with <a/>
  --tls-verify         verify the server's certificate chain and name (default off: benchmark
                       servers use self-signed certificates; a note says so on stderr)
  --tls-ca FILE        trust anchors for --tls-verify (default the system's CA bundle)
  --pubsub-service JID pubsub: the service (default pubsub.DOMAIN)
  --nodes N            pubsub: nodes, named NODEPREFIX0..N-1 (default 10)
  --node-prefix TEXT   pubsub: node name prefix (default lg)
  --subscribers-per-node N   pubsub: subscribing sessions per node (default 10)
  --publishers N       pubsub: publishing sessions, nodes spread over them (default 0: one per
                       node). Sessions 0..P-1 publish, the others subscribe.
  --neighbours K       presence: contacts on each side of a user (default 4)
  --skip-subscribe     presence: the rosters are provisioned already (no subscribe phase)
  --mode M             reconnect: full, resume or storm (default resume)
  --auth A             reconnect: legacy (RFC 6120 SASL SCRAM + restart + bind, default) or sasl2
                       (XEP-0388 SASL2 + Bind2 + XEP-0484 FAST where offered, else legacy)
  --tls-version V      reconnect: 1.2, 1.3 or any (default any: TLS 1.2 to 1.3)
  --tls-psk-only       reconnect: offer psk_ke beside psk_dhe_ke on TLS 1.3 resumption (OpenSSL's
                       SSL_OP_ALLOW_NO_DHE_KEX; an OpenSSL 3.0 server still picks DHE when offered)
  --storm-cut WHO      reconnect storm: client (default: we close every link at once) or server
                       (wait until the server drops them, e.g. a restart by the calling script)
  --ready-file FILE    reconnect storm: written once every device is bound (the script's cue)
  --storm-retry-ms N   reconnect storm: pause after a failed attempt (default 100)
  -h, --help           this text

Output: progress on stderr (one live line on a terminal, else a line every 5 s), the JSON
summary on stdout. Exit status: 0 ok; 1 a login failed, loss or errors over --max-loss, or the
timeout hit; 2 usage.
)";

template <class T>
T parse_number(std::string_view flag, std::string_view v) {
    T out{};
    auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
    if (v.empty() || ec != std::errc() || end != v.data() + v.size()) {
        throw UsageError(std::string(flag) + ": not a number: \"" + std::string(v) + "\"");
    }
    return out;
}

double parse_seconds(std::string_view flag, std::string_view v) {
    // from_chars for double is in libstdc++ 11+.
    const double d = parse_number<double>(flag, v);
    if (d < 0) throw UsageError(std::string(flag) + ": must not be negative");
    return d;
}

}  // namespace

const char* usage_text() noexcept { return k_usage; }

const char* to_string(Scenario s) noexcept {
    switch (s) {
        case Scenario::connect: return "connect";
        case Scenario::chat: return "chat";
        case Scenario::registration: return "register";
        case Scenario::pubsub: return "pubsub";
        case Scenario::presence: return "presence";
        case Scenario::reconnect: return "reconnect";
    }
    return "?";
}

const char* to_string(Mechanism m) noexcept {
    switch (m) {
        case Mechanism::automatic: return "auto";
        case Mechanism::plain: return "PLAIN";
        case Mechanism::scram_sha_1: return "SCRAM-SHA-1";
        case Mechanism::scram_sha_256: return "SCRAM-SHA-256";
    }
    return "?";
}

const char* to_string(TlsMode m) noexcept {
    switch (m) {
        case TlsMode::none: return "none";
        case TlsMode::starttls: return "starttls";
        case TlsMode::direct: return "direct";
    }
    return "?";
}

bool parse_options(int argc, char** argv, Options& o) {
    bool have_scenario = false;
    for (int i = 1; i < argc; ++i) {
        const std::string_view a = argv[i];
        if (a == "-h" || a == "--help") {
            std::fputs(k_usage, stdout);
            return false;
        }
        if (a == "--no-spread") { o.spread_sources = false; continue; }
        if (a == "--no-progress") { o.progress = false; continue; }
        if (a == "--tls-verify") { o.tls_verify = true; continue; }
        if (a == "--sm") { o.sm = true; continue; }
        if (a == "--skip-subscribe") { o.skip_subscribe = true; continue; }
        if (a == "--tls-psk-only") { o.tls_psk_only = true; continue; }
        if (a.starts_with("--")) {
            if (i + 1 >= argc) throw UsageError(std::string(a) + " needs a value");
            const std::string_view v = argv[++i];
            if (a == "--host") o.host = v;
            else if (a == "--port") o.port = parse_number<std::uint16_t>(a, v);
            else if (a == "--domain") o.domain = v;
            else if (a == "--users") o.users = parse_number<std::uint32_t>(a, v);
            else if (a == "--first") o.first_user = parse_number<std::uint32_t>(a, v);
            else if (a == "--prefix") o.prefix = v;
            else if (a == "--password") o.password = v;
            else if (a == "--resource") o.resource = v;
            else if (a == "--sasl") {
                if (v == "auto") o.mechanism = Mechanism::automatic;
                else if (v == "plain" || v == "PLAIN") o.mechanism = Mechanism::plain;
                else if (v == "scram-sha-1" || v == "SCRAM-SHA-1") o.mechanism = Mechanism::scram_sha_1;
                else if (v == "scram-sha-256" || v == "SCRAM-SHA-256") o.mechanism = Mechanism::scram_sha_256;
                else throw UsageError("--sasl: one of auto, plain, scram-sha-1, scram-sha-256");
            }
            else if (a == "--threads") o.threads = parse_number<unsigned>(a, v);
            else if (a == "--rate") o.rate = parse_seconds(a, v);
            else if (a == "--connect-rate") o.connect_rate = parse_seconds(a, v);
            else if (a == "--connect-window") o.connect_window = parse_number<std::uint32_t>(a, v);
            else if (a == "--duration") o.duration_s = parse_seconds(a, v);
            else if (a == "--hold") o.hold_s = parse_seconds(a, v);
            else if (a == "--drain") o.drain_s = parse_seconds(a, v);
            else if (a == "--window") o.window = parse_number<std::uint32_t>(a, v);
            else if (a == "--body-bytes") o.body_bytes = parse_number<std::uint32_t>(a, v);
            else if (a == "--server-pid") o.server_pid = parse_number<long>(a, v);
            else if (a == "--json") o.json_file = v;
            else if (a == "--timeout") o.timeout_s = parse_seconds(a, v);
            else if (a == "--max-loss") o.max_loss = parse_number<std::uint64_t>(a, v);
            else if (a == "--tls") {
                if (v == "none") o.tls = TlsMode::none;
                else if (v == "starttls") o.tls = TlsMode::starttls;
                else if (v == "direct") o.tls = TlsMode::direct;
                else throw UsageError("--tls: one of none, starttls, direct");
            }
            else if (a == "--tls-ca") o.tls_ca = v;
            else if (a == "--pubsub-service") o.pubsub_service = v;
            else if (a == "--nodes") o.nodes = parse_number<std::uint32_t>(a, v);
            else if (a == "--node-prefix") o.node_prefix = v;
            else if (a == "--subscribers-per-node") o.subscribers_per_node = parse_number<std::uint32_t>(a, v);
            else if (a == "--publishers") o.publishers = parse_number<std::uint32_t>(a, v);
            else if (a == "--neighbours") o.neighbours = parse_number<std::uint32_t>(a, v);
            else if (a == "--mode") {
                if (v == "full") o.reconnect_mode = ReconnectMode::full;
                else if (v == "resume") o.reconnect_mode = ReconnectMode::resume;
                else if (v == "storm") o.reconnect_mode = ReconnectMode::storm;
                else throw UsageError("--mode: one of full, resume, storm");
            }
            else if (a == "--auth") {
                if (v == "legacy") o.reconnect_auth = ReconnectAuth::legacy;
                else if (v == "sasl2") o.reconnect_auth = ReconnectAuth::sasl2;
                else throw UsageError("--auth: one of legacy, sasl2");
            }
            else if (a == "--tls-version") {
                if (v != "1.2" && v != "1.3" && v != "any") throw UsageError("--tls-version: one of 1.2, 1.3, any");
                o.tls_version = v;
            }
            else if (a == "--storm-cut") {
                if (v == "client") o.storm_cut_server = false;
                else if (v == "server") o.storm_cut_server = true;
                else throw UsageError("--storm-cut: one of client, server");
            }
            else if (a == "--ready-file") o.ready_file = v;
            else if (a == "--storm-retry-ms") o.storm_retry_ms = parse_number<std::uint32_t>(a, v);
            else throw UsageError("unknown option " + std::string(a));
            continue;
        }
        if (have_scenario) throw UsageError("one scenario only (got \"" + std::string(a) + "\")");
        if (a == "connect") o.scenario = Scenario::connect;
        else if (a == "chat") o.scenario = Scenario::chat;
        else if (a == "register") o.scenario = Scenario::registration;
        else if (a == "pubsub") o.scenario = Scenario::pubsub;
        else if (a == "presence") o.scenario = Scenario::presence;
        else if (a == "reconnect") o.scenario = Scenario::reconnect;
        else throw UsageError("unknown scenario \"" + std::string(a) + "\" (connect, chat, register, pubsub, presence, reconnect)");
        have_scenario = true;
    }
    if (!have_scenario) throw UsageError("a scenario is required (connect, chat, register, pubsub, presence, reconnect)");
    if (o.users == 0) throw UsageError("--users must be at least 1");
    if (o.scenario == Scenario::chat && o.users < 2) throw UsageError("chat needs at least 2 --users");
    if (o.threads == 0 || o.threads > 256) throw UsageError("--threads must be 1..256");
    if (o.connect_window == 0) throw UsageError("--connect-window must be at least 1");
    if (o.scenario == Scenario::chat && o.rate == 0 && o.window == 0) {
        throw UsageError("chat with --rate 0 needs a --window (unpaced and unbounded would only fill buffers)");
    }
    if (o.scenario == Scenario::pubsub) {
        if (o.nodes == 0) throw UsageError("--nodes must be at least 1");
        if (o.publishers == 0) o.publishers = o.nodes;
        if (o.publishers > o.nodes) throw UsageError("--publishers must not exceed --nodes");
        if (o.users <= o.publishers) throw UsageError("pubsub needs more --users than --publishers");
        if (o.subscribers_per_node > o.users - o.publishers) {
            throw UsageError("--subscribers-per-node must not exceed --users minus --publishers");
        }
        if (o.pubsub_service.empty()) o.pubsub_service = "pubsub." + o.domain;
    }
    if (o.scenario == Scenario::reconnect) {
        if (o.mechanism == Mechanism::plain) throw UsageError("reconnect: --sasl scram-sha-1, scram-sha-256 or auto");
        if (o.storm_cut_server && o.reconnect_mode != ReconnectMode::storm) throw UsageError("--storm-cut: only with --mode storm");
    }
    if (o.scenario == Scenario::presence) {
        if (o.neighbours == 0) throw UsageError("--neighbours must be at least 1");
        if (2ull * o.neighbours >= o.users) throw UsageError("presence needs --users above 2 x --neighbours");
        if (o.rate <= 0) throw UsageError("presence needs a --rate (updates/s in total)");
    }
    return true;
}

}  // namespace starling::loadgen
