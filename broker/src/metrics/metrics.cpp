#include "broker/src/metrics/metrics.hpp"

#include <civetweb.h>

#include <iterator>
#include <limits>
#include <stdexcept>

#include <prometheus/text_serializer.h>

#include "xmpp/sasl/ht.hpp"
#include "xmpp/sasl/mechanism.hpp"
#include "xmpp/stream_error.hpp"

namespace starling::metrics {

namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

MetricFamily family(std::string name, std::string help, MetricType type) {
    MetricFamily f;
    f.name = std::move(name);
    f.help = std::move(help);
    f.type = type;
    return f;
}

void add(MetricFamily& f, std::vector<ClientMetric::Label> labels, double value) {
    ClientMetric m;
    m.label = std::move(labels);
    if (f.type == MetricType::Counter) m.counter.value = value;
    else m.gauge.value = value;
    f.metric.push_back(std::move(m));
}

std::string shard_label(const ShardSnapshot& s) { return std::to_string(s.shard); }

// The modules' counters: one family per name (in the order the modules declared them), one
// series per label set, summed over shards (every shard installs the same modules).
void add_module_counters(std::vector<MetricFamily>& out, const std::vector<ShardSnapshot>& shards) {
    const std::size_t first = out.size();
    for (const auto& s : shards) {
        for (const auto& c : s.modules) {
            const bool histogram = !c.bounds.empty();
            MetricFamily* f = nullptr;
            for (std::size_t i = first; i < out.size(); ++i) {
                if (out[i].name == c.name) f = &out[i];
            }
            if (f == nullptr) {
                out.push_back(family(c.name, c.help, histogram ? MetricType::Histogram : MetricType::Counter));
                f = &out.back();
            }
            std::vector<ClientMetric::Label> labels;
            for (const auto& [k, v] : c.labels) labels.push_back({k, v});
            ClientMetric* m = nullptr;
            for (auto& existing : f->metric) {
                if (existing.label == labels) m = &existing;
            }
            if (!histogram) {
                if (m == nullptr) add(*f, std::move(labels), static_cast<double>(c.value));
                else m->counter.value += static_cast<double>(c.value);
                continue;
            }
            if (m == nullptr) {
                ClientMetric fresh;
                fresh.label = std::move(labels);
                for (std::size_t b = 0; b <= c.bounds.size(); ++b) {
                    ClientMetric::Bucket bucket;
                    bucket.upper_bound = b < c.bounds.size() ? c.bounds[b] : std::numeric_limits<double>::infinity();
                    fresh.histogram.bucket.push_back(bucket);
                }
                f->metric.push_back(std::move(fresh));
                m = &f->metric.back();
            }
            // Cumulative counts (Prometheus), summed over shards.
            std::uint64_t cumulative = 0;
            for (std::size_t b = 0; b < c.buckets.size() && b < m->histogram.bucket.size(); ++b) {
                cumulative += c.buckets[b];
                m->histogram.bucket[b].cumulative_count += cumulative;
            }
            m->histogram.sample_count += cumulative;
            m->histogram.sample_sum += c.sum;
        }
    }
}

}  // namespace

std::vector<MetricFamily> BrokerCollector::families(const std::vector<ShardSnapshot>& shards) {
    std::vector<MetricFamily> out;
    auto per_shard = [&](const char* name, const char* help, MetricType type, auto value) {
        auto f = family(name, help, type);
        for (const auto& s : shards) add(f, {{"shard", shard_label(s)}}, static_cast<double>(value(s)));
        out.push_back(std::move(f));
    };
    per_shard("starling_connections", "Open client connections", MetricType::Gauge,
              [](const ShardSnapshot& s) { return s.connections; });
    per_shard("starling_sessions_bound", "Sessions with a bound resource", MetricType::Gauge,
              [](const ShardSnapshot& s) { return s.bound; });
    per_shard("starling_mailbox_depth", "Cross-shard messages waiting for this shard", MetricType::Gauge,
              [](const ShardSnapshot& s) { return s.mailbox_depth; });
    per_shard("starling_connections_accepted_total", "Client connections accepted", MetricType::Counter,
              [](const ShardSnapshot& s) { return s.c2s.connections_accepted; });
    {
        auto f = family("starling_connections_refused_total", "Connections refused, by the limit that refused them",
                        MetricType::Counter);
        std::uint64_t per_ip = 0, rate = 0, capacity = 0;
        for (const auto& s : shards) {
            per_ip += s.c2s.refused_per_ip;
            rate += s.c2s.refused_rate;
            capacity += s.c2s.refused_capacity;
        }
        add(f, {{"reason", "per_address"}}, static_cast<double>(per_ip));
        add(f, {{"reason", "rate"}}, static_cast<double>(rate));
        add(f, {{"reason", "capacity"}}, static_cast<double>(capacity));
        out.push_back(std::move(f));
    }
    per_shard("starling_tls_handshakes_total", "TLS handshakes completed", MetricType::Counter,
              [](const ShardSnapshot& s) { return s.c2s.tls_handshakes; });
    per_shard("starling_tls_failures_total", "TLS handshakes or records that failed", MetricType::Counter,
              [](const ShardSnapshot& s) { return s.c2s.tls_failures; });
    {
        auto f = family("starling_tls_sessions_total",
                        "TLS handshakes completed, by protocol version and whether a session ticket resumed them",
                        MetricType::Counter);
        std::array<std::uint64_t, 4> n{};
        for (const auto& s : shards) {
            for (std::size_t i = 0; i < n.size(); ++i) n[i] += s.c2s.tls_completed[i];
        }
        add(f, {{"version", "1.3"}, {"resumed", "false"}}, static_cast<double>(n[0]));
        add(f, {{"version", "1.3"}, {"resumed", "true"}}, static_cast<double>(n[1]));
        add(f, {{"version", "1.2"}, {"resumed", "false"}}, static_cast<double>(n[2]));
        add(f, {{"version", "1.2"}, {"resumed", "true"}}, static_cast<double>(n[3]));
        out.push_back(std::move(f));
    }
    {
        auto f = family("starling_auth_mechanism_total", "Successful SASL authentications, by mechanism",
                        MetricType::Counter);
        for (const auto m : xmpp::sasl::k_all_mechanisms) {
            std::uint64_t n = 0;
            for (const auto& s : shards) n += s.c2s.auth_by_mechanism[static_cast<std::size_t>(m)];
            add(f, {{"mechanism", std::string(xmpp::sasl::to_string(m))}}, static_cast<double>(n));
        }
        std::uint64_t fast = 0;
        for (const auto& s : shards) fast += s.c2s.auth_fast;
        add(f, {{"mechanism", std::string(xmpp::sasl::k_ht_sha_256_none)}}, static_cast<double>(fast));
        out.push_back(std::move(f));
    }

    per_shard("starling_sm_unacked_stanzas", "XEP-0198: stanzas sent to clients and not yet acknowledged",
              MetricType::Gauge, [](const ShardSnapshot& s) { return s.sm_unacked; });
    per_shard("starling_sm_hibernating_sessions", "XEP-0198: sessions whose connection was lost, waiting to be resumed",
              MetricType::Gauge, [](const ShardSnapshot& s) { return s.sm_hibernating; });
    {
        auto f = family("starling_sm_events_total", "XEP-0198 stream management events", MetricType::Counter);
        std::uint64_t enabled = 0, resumed = 0, failed = 0, hibernated = 0, expired = 0, rerouted = 0;
        for (const auto& s : shards) {
            enabled += s.c2s.sm_enabled;
            resumed += s.c2s.sm_resumed;
            failed += s.c2s.sm_resume_failed;
            hibernated += s.c2s.sm_hibernated;
            expired += s.c2s.sm_expired;
            rerouted += s.c2s.sm_rerouted;
        }
        add(f, {{"event", "enabled"}}, static_cast<double>(enabled));
        add(f, {{"event", "resumed"}}, static_cast<double>(resumed));
        add(f, {{"event", "resume_failed"}}, static_cast<double>(failed));
        add(f, {{"event", "hibernated"}}, static_cast<double>(hibernated));
        add(f, {{"event", "expired"}}, static_cast<double>(expired));
        add(f, {{"event", "rerouted_message"}}, static_cast<double>(rerouted));
        out.push_back(std::move(f));
    }
    {
        auto f = family("starling_zlib_bytes_total",
                        "XEP-0138: bytes through zlib, by direction and side (wire: compressed)", MetricType::Counter);
        std::uint64_t in_wire = 0, in_plain = 0, out_plain = 0, out_wire = 0;
        for (const auto& s : shards) {
            in_wire += s.c2s.zlib_in_wire;
            in_plain += s.c2s.zlib_in_plain;
            out_plain += s.c2s.zlib_out_plain;
            out_wire += s.c2s.zlib_out_wire;
        }
        add(f, {{"direction", "in"}, {"side", "wire"}}, static_cast<double>(in_wire));
        add(f, {{"direction", "in"}, {"side", "plain"}}, static_cast<double>(in_plain));
        add(f, {{"direction", "out"}, {"side", "plain"}}, static_cast<double>(out_plain));
        add(f, {{"direction", "out"}, {"side", "wire"}}, static_cast<double>(out_wire));
        out.push_back(std::move(f));
    }
    per_shard("starling_zlib_sessions_total", "XEP-0138: streams that negotiated compression", MetricType::Counter,
              [](const ShardSnapshot& s) { return s.c2s.zlib_sessions; });
    per_shard("starling_zlib_refused_total", "XEP-0138: streams ended for compressed input (bombs, corruption)",
              MetricType::Counter, [](const ShardSnapshot& s) { return s.c2s.zlib_refused; });
    {
        auto f = family("starling_auth_total", "SASL authentications by result", MetricType::Counter);
        std::uint64_t ok = 0, bad = 0;
        for (const auto& s : shards) {
            ok += s.c2s.auth_success;
            bad += s.c2s.auth_failure;
        }
        add(f, {{"result", "success"}}, static_cast<double>(ok));
        add(f, {{"result", "failure"}}, static_cast<double>(bad));
        out.push_back(std::move(f));
    }
    {
        auto f = family("starling_stanzas_in_total", "Stanzas received from clients", MetricType::Counter);
        static constexpr const char* k_kinds[] = {"message", "presence", "iq"};
        for (int k = 0; k < 3; ++k) {
            std::uint64_t n = 0;
            for (const auto& s : shards) n += s.c2s.stanzas_in[k];
            add(f, {{"kind", k_kinds[k]}}, static_cast<double>(n));
        }
        out.push_back(std::move(f));
    }
    per_shard("starling_stanzas_out_total", "Stanzas written to clients", MetricType::Counter,
              [](const ShardSnapshot& s) { return s.c2s.stanzas_out; });
    {
        auto f = family("starling_bytes_total", "Bytes on client sockets (TLS included)", MetricType::Counter);
        std::uint64_t in = 0, outb = 0;
        for (const auto& s : shards) {
            in += s.c2s.bytes_in;
            outb += s.c2s.bytes_out;
        }
        add(f, {{"direction", "in"}}, static_cast<double>(in));
        add(f, {{"direction", "out"}}, static_cast<double>(outb));
        out.push_back(std::move(f));
    }
    {
        auto f = family("starling_stream_errors_total", "Streams closed with an error, by condition",
                        MetricType::Counter);
        for (std::size_t c = 0; c < std::size(shards.empty() ? c2s::C2sCounters{}.stream_errors
                                                             : shards.front().c2s.stream_errors);
             ++c) {
            std::uint64_t n = 0;
            for (const auto& s : shards) n += s.c2s.stream_errors[c];
            if (n == 0) continue;
            add(f, {{"condition", std::string(xmpp::to_string(static_cast<xmpp::StreamError>(c)))}},
                static_cast<double>(n));
        }
        out.push_back(std::move(f));
    }
    {
        auto f = family("starling_routed_total", "Routing outcomes", MetricType::Counter);
        router::RouterCounters sum;
        for (const auto& s : shards) {
            sum.delivered += s.router.delivered;
            sum.hops += s.router.hops;
            sum.bounced += s.router.bounced;
            sum.dropped += s.router.dropped;
            sum.mailbox_full += s.router.mailbox_full;
        }
        add(f, {{"outcome", "delivered"}}, static_cast<double>(sum.delivered));
        add(f, {{"outcome", "cross_shard"}}, static_cast<double>(sum.hops));
        add(f, {{"outcome", "bounced"}}, static_cast<double>(sum.bounced));
        add(f, {{"outcome", "dropped"}}, static_cast<double>(sum.dropped));
        add(f, {{"outcome", "mailbox_full"}}, static_cast<double>(sum.mailbox_full));
        out.push_back(std::move(f));
    }
    {
        auto f = family("starling_routing_latency_seconds",
                        "From a stanza's routing to its delivery to the recipient's session",
                        MetricType::Histogram);
        ClientMetric m;
        std::uint64_t cumulative = 0;
        double sum_us = 0;
        for (std::size_t b = 0; b < router::k_latency_buckets; ++b) {
            for (const auto& s : shards) cumulative += s.router.latency[b];
            ClientMetric::Bucket bucket;
            bucket.cumulative_count = cumulative;
            bucket.upper_bound = b < std::size(router::k_latency_bounds_us)
                                     ? static_cast<double>(router::k_latency_bounds_us[b]) / 1e6
                                     : std::numeric_limits<double>::infinity();
            m.histogram.bucket.push_back(bucket);
        }
        for (const auto& s : shards) sum_us += s.router.latency_sum_us;
        m.histogram.sample_count = cumulative;
        m.histogram.sample_sum = sum_us / 1e6;
        f.metric.push_back(std::move(m));
        out.push_back(std::move(f));
    }
    add_module_counters(out, shards);
    return out;
}

std::vector<MetricFamily> BrokerCollector::Collect() const { return families(_snapshot()); }

std::string render_text(const std::vector<ShardSnapshot>& shards) {
    return prometheus::TextSerializer().Serialize(BrokerCollector::families(shards));
}

namespace {

void respond(mg_connection* conn, int status, const char* content_type, const std::string& body) {
    const char* reason = status == 200 ? "OK" : status == 503 ? "Service Unavailable" : "Not Found";
    mg_printf(conn,
              "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nCache-Control: no-store\r\n"
              "Connection: close\r\n\r\n",
              status, reason, content_type, body.size());
    mg_write(conn, body.data(), body.size());
}

int serve_metrics(mg_connection* conn, void* self) {
    respond(conn, 200, "text/plain; version=0.0.4; charset=utf-8", static_cast<MetricsServer*>(self)->scrape());
    return 200;
}

int serve_probe(mg_connection* conn, bool ready, void* self) {
    const auto& probe = static_cast<MetricsServer*>(self)->health();
    if (!probe) {
        respond(conn, 404, "text/plain; charset=utf-8", "no health probe\n");
        return 404;
    }
    const auto report = probe(ready);
    respond(conn, report.http_status, "text/plain; charset=utf-8", report.body);
    return report.http_status;
}

int serve_health(mg_connection* conn, void* self) { return serve_probe(conn, false, self); }
int serve_ready(mg_connection* conn, void* self) { return serve_probe(conn, true, self); }

}  // namespace

MetricsServer::MetricsServer(const std::string& bind, BrokerCollector::Snapshot snapshot, HealthProbe health)
    : _collector(std::make_shared<BrokerCollector>(std::move(snapshot))), _health(std::move(health)) {
    const std::string threads = std::to_string(k_http_threads);
    const char* options[] = {"listening_ports", bind.c_str(), "num_threads", threads.c_str(),
                             "request_timeout_ms", "10000", nullptr};
    mg_callbacks callbacks{};
    char error_text[256] = {};
    mg_init_data init{&callbacks, this, options};
    mg_error_data error{nullptr, error_text, sizeof error_text};
    _http = mg_start2(&init, &error);
    if (_http == nullptr) {
        // Say which address is taken and how to choose another, not only civetweb's words.
        throw std::runtime_error("cannot serve metrics on " + bind + " (" + error_text +
                                 "): is the port in use by another process? Choose another with "
                                 "--metrics-port N or [metrics] port in the configuration (0 disables metrics)");
    }
    mg_set_request_handler(_http, "/metrics$", serve_metrics, this);
    mg_set_request_handler(_http, "/health$", serve_health, this);
    mg_set_request_handler(_http, "/ready$", serve_ready, this);
}

MetricsServer::~MetricsServer() {
    if (_http != nullptr) mg_stop(_http);  // joins civetweb's threads: no handler runs after this
}

void MetricsServer::add(std::shared_ptr<prometheus::Collectable> collectable) { _extra.push_back(std::move(collectable)); }

std::string MetricsServer::scrape() const {
    auto families = _collector->Collect();
    for (const auto& c : _extra) {
        auto more = c->Collect();
        families.insert(families.end(), std::make_move_iterator(more.begin()), std::make_move_iterator(more.end()));
    }
    return prometheus::TextSerializer().Serialize(families);
}

std::uint16_t MetricsServer::port() const {
    mg_server_port ports[4] = {};
    const int n = mg_get_server_ports(_http, 4, ports);
    return n > 0 ? static_cast<std::uint16_t>(ports[0].port) : 0;
}

}  // namespace starling::metrics
