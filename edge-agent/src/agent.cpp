#include "edge-agent/src/agent.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>

#include "edge-agent/src/log.hpp"
#include "edge-agent/src/xml_util.hpp"

namespace starling::agent {

namespace {

void append_double(std::string& out, double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.6g", v);
    out += buf;
}

std::string publish_stanza(const std::string& id, const std::string& service, const std::string& node,
                           const std::string& item_id, const std::string& payload) {
    std::string s = "<iq type='set' id='" + id + "' to='" + xml_escape(service) +
                    "'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='" + xml_escape(node) +
                    "'><item id='" + xml_escape(item_id) + "'>";
    s += payload;
    s += "</item></publish></pubsub></iq>";
    return s;
}

}  // namespace

std::string batch_payload(const std::string& device, const std::vector<Reading>& readings, std::size_t begin,
                          std::size_t end, std::uint64_t dropped) {
    std::string p = "<readings xmlns='urn:starling:agent:readings:0' device='" + xml_escape(device) + "' count='" +
                    std::to_string(end - begin) + "' dropped='" + std::to_string(dropped) + "'>";
    for (std::size_t i = begin; i < end; ++i) {
        const auto& r = readings[i];
        p += "<r n='" + xml_escape(r.name) + "' t='" + std::to_string(r.t_ms) + "'";
        if (!r.unit.empty()) p += " u='" + xml_escape(r.unit) + "'";
        p += " v='";
        append_double(p, r.value);
        p += "'/>";
    }
    p += "</readings>";
    return p;
}

Agent::Agent(asio::io_context& io, const AgentConfig& cfg)
    : _io(io),
      _cfg(cfg),
      _queue(cfg.queue),
      _sources(io, cfg),
      _link(io, cfg,
            Link::Callbacks{
                [this](bool resumed) { on_online(resumed); },
                // Offline: IQs in flight stay counted; a resumed stream still answers them, a new
                // stream fails them first and restarts publishing (on_online).
                [] {},
                [this](const pugi::xml_node& iq) {
                    auto handled = _commands.handle(iq);
                    if (handled && handled->empty()) return;  // answered when its program ends
                    std::string answer = handled ? std::move(*handled) : std::string();
                    if (!handled) {
                        // RFC 6120 §8.2.3: an IQ nobody handles gets an error.
                        answer = "<iq type='error' id='" + xml_escape(iq.attribute("id").value()) + "' to='" +
                                 xml_escape(iq.attribute("from").value()) +
                                 "'><error type='cancel'><service-unavailable "
                                 "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>";
                    }
                    _link.send_stanza(std::move(answer));
                },
            }),
      _commands(cfg),
      _shim(io, cfg),
      _tick(io),
      _retry(io),
      _node(cfg.node_name()),
      _service(cfg.pubsub_service()) {
    const auto s = _queue.stats();
    log(LogLevel::info, "queue.open",
        {{"dir", cfg.queue.dir.string()}, {"depth", s.depth}, {"bytes", s.bytes}, {"segments", s.segments},
         {"corrupt_records", s.corrupt_records}, {"truncated_bytes", s.truncated_bytes},
         {"incarnation", _queue.incarnation()}});
    _commands.set_shim([this](const CommandDef& def, const std::map<std::string, std::string>& args) {
        return _shim.send_command(def, args);
    });
    _commands.set_program_runner(
        [this](const std::vector<std::string>& argv, std::uint32_t timeout_ms, std::uint32_t max_output, ProgramDone done) {
            spawn_program(_io, argv, timeout_ms, max_output, std::move(done));
        },
        // Offline meanwhile: the answer goes into the stream-management queue or is lost with the
        // stream (the operator's IQ then times out, as for any reply lost with a link).
        [this](std::string stanza) { _link.send_stanza(std::move(stanza)); });
    if (s.corrupt_records > 0)
        log(LogLevel::warn, "queue.recovered", {{"corrupt_records", s.corrupt_records}, {"truncated_bytes", s.truncated_bytes}});
}

Agent::~Agent() = default;

void Agent::start() {
    start_status_socket();
    _shim.start();
    _link.start();
    arm_tick();
}

void Agent::stop() {
    _tick.cancel();
    _retry.cancel();
    _shim.stop();
    if (_status) {
        asio::error_code ec;
        _status->close(ec);
        ::unlink(_cfg.status_socket.c_str());
    }
    _link.stop();
}

void Agent::arm_tick() {
    // A fixed rate, not interval + the time a tick takes; after a stall, no burst of catch-up ticks.
    const auto now = std::chrono::steady_clock::now();
    auto next = _tick.expiry() + _cfg.interval;
    if (next < now || _tick.expiry() == asio::steady_timer::time_point{}) next = now + _cfg.interval;
    _tick.expires_at(next);
    _tick.async_wait([this](const asio::error_code& ec) {
        if (ec) return;
        tick();
        arm_tick();
    });
}

void Agent::tick() {
    std::vector<Reading> readings;
    _sources.collect(readings);
    std::optional<std::uint32_t> shim_seq;
    _shim.take(readings, shim_seq);
    // The device may forget its batches once they are on disk here (firmware-shim/README.md).
    if (enqueue(readings) && shim_seq) _shim.ack(*shim_seq);
    pump();
}

bool Agent::enqueue(std::vector<Reading>& readings) {
    bool all = true;
    for (std::size_t b = 0; b < readings.size(); b += _cfg.max_readings_per_batch) {
        const std::size_t e = std::min(readings.size(), b + _cfg.max_readings_per_batch);
        const auto before = _queue.stats().dropped;
        AppendError err{};
        const auto seq = _queue.append(batch_payload(_cfg.device, readings, b, e, before), &err);
        if (seq == 0) {
            log(LogLevel::error, "queue.append_failed",
                {{"reason", err == AppendError::too_large ? "batch larger than queue.max_record_bytes" : "I/O error"},
                 {"readings", e - b}});
            all = false;
            continue;
        }
        _readings += e - b;
        const auto after = _queue.stats().dropped;
        if (after != before) log(LogLevel::warn, "queue.full_dropped", {{"batches", after - before}, {"dropped_total", after}});
    }
    return all;
}

void Agent::on_online(bool resumed) {
    if (resumed) {
        // A create that timed out is asked again; otherwise the stream goes on where it was.
        if (!_node_ready && !_node_checked && _cfg.create_node) {
            create_node();
        } else {
            pump();
        }
        return;
    }
    restart_publishing();
    if (_cfg.create_node && !_node_checked) {
        _node_ready = false;
        create_node();
    } else {
        _node_ready = true;
        pump();
    }
}

void Agent::create_node() {
    const std::string id = _link.next_id();
    std::string s = "<iq type='set' id='" + id + "' to='" + xml_escape(_service) +
                    "'><pubsub xmlns='http://jabber.org/protocol/pubsub'><create node='" + xml_escape(_node) + "'/>";
    if (_cfg.node_max_items > 0) {
        s += "<configure><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>"
             "http://jabber.org/protocol/pubsub#node_config</value></field><field var='pubsub#max_items'><value>" +
             std::to_string(_cfg.node_max_items) + "</value></field></x></configure>";
    }
    s += "</pubsub></iq>";
    _link.send_iq(id, std::move(s), [this](const IqReply& r) {
        if (!r.ok && r.condition == "disconnected") return;  // asked again when the link is back
        if (!r.ok && r.condition == "timeout") {
            log(LogLevel::warn, "pubsub.create_timeout", {{"node", _node}});
            if (_link.state() == LinkState::online) _link.drop("create timed out");
            return;
        }
        if (r.ok) {
            log(LogLevel::info, "pubsub.node_created", {{"service", _service}, {"node", _node}});
        } else if (r.condition == "conflict") {
            log(LogLevel::debug, "pubsub.node_exists", {{"node", _node}});
        } else {
            // Not allowed to create (or another problem): publishing says whether the node exists.
            log(LogLevel::warn, "pubsub.create_refused", {{"node", _node}, {"condition", r.condition}, {"app", r.app_condition}});
        }
        _node_checked = true;
        _node_ready = true;
        pump();
    }, _cfg.publish_timeout);
}

void Agent::restart_publishing() {
    ++_gen;
    _inflight = 0;
    _sent_upto = 0;
}

void Agent::pump() {
    if (_link.state() != LinkState::online || !_node_ready) return;
    bool sent = false;
    while (_inflight < _cfg.publish_window) {
        const auto seq = _queue.next_after(_sent_upto);
        if (!seq) break;
        auto payload = _queue.read(*seq);
        _sent_upto = *seq;
        if (!payload) continue;  // dropped by the bound meanwhile
        const std::string id = _link.next_id();
        ++_inflight;
        const auto gen = _gen;
        const auto s = *seq;
        _link.send_iq(id, publish_stanza(id, _service, _node, _queue.item_id(s), *payload),
                      [this, gen, s](const IqReply& r) { on_publish_reply(gen, s, r); }, _cfg.publish_timeout);
        sent = true;
    }
    if (sent && _link.unacked_stanzas() >= _cfg.sm_max_unacked / 2) _link.request_ack();
}

void Agent::on_publish_reply(std::uint64_t gen, std::uint64_t seq, const IqReply& r) {
    if (r.ok) {
        _queue.ack(seq);
        ++_published;
        _last_publish_ms = unix_ms();
        if (_published == 1) {
            const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - _started);
            log(LogLevel::info, "publish.first_acked", {{"since_start_ms", static_cast<std::int64_t>(ms.count())}});
        }
        if (gen == _gen) {
            --_inflight;
            pump();
        }
        return;
    }
    if (r.condition == "disconnected") return;  // the link starts a new generation
    if (r.condition == "timeout") {
        // The broker took it and never answered (a stuck service, a lost route): the batch stays
        // queued; a resumed or new stream sends everything unacknowledged again, same item ids.
        if (gen != _gen) return;
        log(LogLevel::warn, "publish.timeout",
            {{"item", _queue.item_id(seq)}, {"timeout_ms", static_cast<std::int64_t>(_cfg.publish_timeout.count())}});
        ++_timeouts;
        restart_publishing();
        if (_link.state() == LinkState::online) _link.drop("publish timed out");
        return;
    }
    if (r.condition == "not-acceptable" || r.condition == "bad-request") {
        // This batch can never be accepted (too big, invalid): drop it rather than block the queue.
        log(LogLevel::error, "publish.rejected", {{"item", _queue.item_id(seq)}, {"condition", r.condition}, {"app", r.app_condition}});
        _queue.ack(seq);
        ++_rejected;
        if (gen == _gen) {
            --_inflight;
            pump();
        }
        return;
    }
    if (gen != _gen) return;
    log(LogLevel::warn, "publish.failed", {{"item", _queue.item_id(seq)}, {"condition", r.condition}, {"app", r.app_condition}});
    restart_publishing();
    _node_ready = false;
    _retry.expires_after(std::chrono::seconds(2));
    _retry.async_wait([this](const asio::error_code& ec) {
        if (ec || _link.state() != LinkState::online) return;
        if (_cfg.create_node) {
            create_node();
        } else {
            _node_ready = true;
            pump();
        }
    });
}

std::string Agent::status_line() const {
    const auto q = _queue.stats();
    std::string s = "state=";
    s += to_string(_link.state());
    s += " jid=";
    append_log_value(s, _link.full_jid().empty() ? std::string("-") : _link.full_jid());
    s += " queue_depth=" + std::to_string(q.depth) + " queue_bytes=" + std::to_string(q.bytes) +
         " queue_dropped=" + std::to_string(q.dropped) + " published=" + std::to_string(_published) +
         " rejected=" + std::to_string(_rejected) + " timeouts=" + std::to_string(_timeouts) + " readings=" + std::to_string(_readings) +
         " inflight=" + std::to_string(_inflight) + " last_publish_ms=" + std::to_string(_last_publish_ms) +
         " connects=" + std::to_string(_link.counters().connects) +
         " resumes=" + std::to_string(_link.counters().resumes) +
         " commands=" + std::to_string(_commands.executed()) + " refused=" + std::to_string(_commands.refused()) +
         " source_errors=" + std::to_string(_sources.errors()) +
         " shim=" + std::string(!_cfg.has_shim() ? "none" : _shim.is_connected() ? "connected" : "down") +
         " shim_readings=" + std::to_string(_shim.counters().readings) +
         " shim_bad_frames=" + std::to_string(_shim.counters().bad_frames) + " last_error=";
    append_log_value(s, _link.last_error().empty() ? std::string("-") : _link.last_error());
    return s;
}

void Agent::start_status_socket() {
    if (_cfg.status_socket.empty()) return;
    ::unlink(_cfg.status_socket.c_str());  // a stale socket of a previous run
    _status = std::make_unique<asio::local::stream_protocol::acceptor>(_io);
    asio::error_code ec;
    const asio::local::stream_protocol::endpoint ep(_cfg.status_socket);
    _status->open(ep.protocol(), ec);
    if (!ec) _status->bind(ep, ec);
    if (!ec) ::chmod(_cfg.status_socket.c_str(), 0660);
    if (!ec) _status->listen(4, ec);
    if (ec) {
        log(LogLevel::error, "status.socket_failed", {{"path", _cfg.status_socket}, {"reason", ec.message()}});
        _status.reset();
        return;
    }
    accept_status();
}

void Agent::accept_status() {
    _status->async_accept([this](const asio::error_code& ec, asio::local::stream_protocol::socket sock) {
        if (ec) return;
        auto s = std::make_shared<asio::local::stream_protocol::socket>(std::move(sock));
        auto line = std::make_shared<std::string>(status_line() + "\n");
        asio::async_write(*s, asio::buffer(*line), [s, line](const asio::error_code&, std::size_t) {});
        accept_status();
    });
}

}  // namespace starling::agent
