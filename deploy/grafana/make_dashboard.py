#!/usr/bin/env python3
"""Writes starling-dashboard.json, the Grafana dashboard of every metric starlingd exports.

    python3 deploy/grafana/make_dashboard.py > deploy/grafana/starling-dashboard.json

The first row holds what an operator looks at first (sessions per shard, stanza rates, routing
latency, stream errors, store latency and health); the rows below have one panel per metric
family. tests/integration/test_deploy_observability.py checks that every family a running
broker serves on /metrics appears here: a new metric needs a line below.
"""
import json

DS = {"type": "prometheus", "uid": "${datasource}"}


def q(expr, legend=""):
    return {"expr": expr, "legendFormat": legend}


def rate(name, by=""):
    return q(f"sum by ({by}) (rate({name}[$__rate_interval]))" if by else f"sum(rate({name}[$__rate_interval]))",
             "{{" + by + "}}" if by else name)


def quantiles(name):
    return [q(f"histogram_quantile({p}, sum by (le) (rate({name}_bucket[$__rate_interval])))", f"p{int(p * 100)}")
            for p in (0.5, 0.9, 0.99)]


# (row title, [(panel title, unit, [queries])])
ROWS = [
    ("First look", [
        ("Sessions per shard", "short", [q("starling_sessions_bound", "shard {{shard}}")]),
        ("Stanzas in per second, by kind", "ops", [rate("starling_stanzas_in_total", "kind")]),
        ("Stanzas out per second, per shard", "ops", [rate("starling_stanzas_out_total", "shard")]),
        ("Routing latency", "s", quantiles("starling_routing_latency_seconds")),
        ("Stream errors per second, by condition", "ops", [rate("starling_stream_errors_total", "condition")]),
        ("Store commit latency", "s", quantiles("starling_store_commit_latency_seconds")),
        ("Store healthy (1) / failing (0)", "short", [q("starling_store_healthy", "healthy")]),
        ("Open connections per shard", "short", [q("starling_connections", "shard {{shard}}")]),
    ]),
    ("Connections, TLS, authentication", [
        ("Connections accepted per second", "ops", [rate("starling_connections_accepted_total", "shard")]),
        ("Connections refused per second, by limit", "ops", [rate("starling_connections_refused_total", "reason")]),
        ("TLS handshakes per second", "ops", [rate("starling_tls_handshakes_total", "shard")]),
        ("TLS failures per second", "ops", [rate("starling_tls_failures_total", "shard")]),
        ("TLS handshakes per second, by version and resumption", "ops", [
            q("sum by (version, resumed) (rate(starling_tls_sessions_total[$__rate_interval]))",
              "TLS {{version}} resumed={{resumed}}")]),
        ("Authentications per second, by result", "ops", [rate("starling_auth_total", "result")]),
        ("Logins per second, by SASL mechanism", "ops", [rate("starling_auth_mechanism_total", "mechanism")]),
        ("Client bytes per second", "Bps", [rate("starling_bytes_total", "direction")]),
        ("Server pings (XEP-0199), by outcome", "ops", [rate("starling_server_pings_total", "outcome")]),
    ]),
    ("Routing", [
        ("Routing outcomes per second", "ops", [rate("starling_routed_total", "outcome")]),
        ("Cross-shard mailbox depth", "short", [q("starling_mailbox_depth", "shard {{shard}}")]),
    ]),
    ("Stream management (XEP-0198) and compression (XEP-0138)", [
        ("Unacknowledged stanzas", "short", [q("starling_sm_unacked_stanzas", "shard {{shard}}")]),
        ("Hibernating sessions", "short", [q("starling_sm_hibernating_sessions", "shard {{shard}}")]),
        ("SM events per second", "ops", [rate("starling_sm_events_total", "event")]),
        ("zlib bytes per second", "Bps", [q("sum by (direction, side) (rate(starling_zlib_bytes_total[$__rate_interval]))",
                                             "{{direction}} {{side}}")]),
        ("Compressed streams per second", "ops", [rate("starling_zlib_sessions_total")]),
        ("Compressed streams refused per second", "ops", [rate("starling_zlib_refused_total")]),
    ]),
    ("Presence and client state (XEP-0352)", [
        ("Presence broadcasts per second", "ops", [rate("starling_presence_broadcasts_total")]),
        ("Presence suppressed per second, by reason", "ops", [rate("starling_presence_suppressed_total", "reason")]),
        ("Silent probes answered per second", "ops", [rate("starling_presence_silent_probes_total")]),
        ("Probes dropped (presence.max_probe_reads waiting for the disk) per second", "ops",
         [rate("starling_presence_probes_dropped_total")]),
        ("CSI: sessions going inactive per second", "ops", [rate("starling_csi_inactive_total")]),
        ("CSI: stanzas held / coalesced / flushed per second", "ops", [
            rate("starling_csi_held_total"), rate("starling_csi_coalesced_total"), rate("starling_csi_flushed_total")]),
        ("CSI: bytes saved by coalescing per second", "Bps", [rate("starling_csi_coalesced_bytes_total")]),
        ("CSI: queue flushes per second, by reason", "ops", [rate("starling_csi_flushes_total", "reason")]),
    ]),
    ("Offline messages and blocking", [
        ("Offline messages per second, by outcome", "ops", [rate("starling_offline_messages_total", "outcome")]),
        ("Offline store errors per second", "ops", [rate("starling_offline_storage_errors_total")]),
        ("Offline messages whose storing waited for a disk read, per second", "ops",
         [rate("starling_offline_store_reads_offloaded_total")]),
        ("Blocked stanzas per second, by outcome", "ops", [rate("starling_blocking_stanzas_total", "outcome")]),
        ("Block list store errors, and stanzas refused waiting for a list read, per second", "ops",
         [rate("starling_blocking_storage_errors_total"), rate("starling_blocking_waiting_refused_total")]),
    ]),
    ("PubSub (XEP-0060)", [
        ("Requests per second", "ops", [rate("starling_pubsub_requests_total")]),
        ("Publishes per second", "ops", [rate("starling_pubsub_publishes_total")]),
        ("Items stored per second", "ops", [rate("starling_pubsub_items_total")]),
        ("Notifications per second", "ops", [rate("starling_pubsub_notifications_total")]),
        ("Fan-out envelopes per second", "ops", [rate("starling_pubsub_fan_out_envelopes_total")]),
        ("Forwarded to the node's home shard per second", "ops", [rate("starling_pubsub_forwarded_total")]),
        ("Errors per second", "ops", [rate("starling_pubsub_errors_total")]),
        ("Node and owner-roster loads from disk, and requests refused waiting for them, per second", "ops",
         [rate("starling_pubsub_node_loads_offloaded_total"), rate("starling_pubsub_roster_loads_offloaded_total"),
          rate("starling_pubsub_waiting_refused_total")]),
        ("Publishes refused by the per-account rate per second", "ops", [rate("starling_pubsub_rate_limited_total")]),
        ("Fan-out size (recipients per notified event)", "short", quantiles("starling_pubsub_fan_out_size")),
        ("Store write latency (staged to durable)", "s", quantiles("starling_pubsub_store_write_seconds")),
        ("Roster changes refused (waiting for the disk) and not stored, per second", "ops",
         [rate("starling_roster_refused_total"), rate("starling_roster_storage_errors_total")]),
        ("Administration commands (XEP-0133) per second, by outcome", "ops",
         [rate("starling_adhoc_commands_total", "outcome")]),
        ("Client capabilities (XEP-0115): queries, cache hits, unverified answers per second", "ops",
         [rate("starling_caps_queries_total"), rate("starling_caps_cache_hits_total"),
          rate("starling_caps_unverified_total")]),
    ]),
    ("Store (RocksDB)", [
        ("Group commits per second", "ops", [rate("starling_store_group_commits_total")]),
        ("Batches per second", "ops", [rate("starling_store_batches_total")]),
        ("Writes per second", "ops", [rate("starling_store_writes_total")]),
        ("Bytes written per second", "Bps", [rate("starling_store_bytes_total")]),
        ("fsyncs per second", "ops", [rate("starling_store_syncs_total")]),
        ("Pending batches", "short", [q("starling_store_pending_batches", "pending")]),
        ("Faults, failed batches, recoveries", "short", [
            q("starling_store_faults_total", "faults"), q("starling_store_failed_batches_total", "failed batches"),
            q("starling_store_recoveries_total", "recoveries")]),
        ("Unclean shutdowns found at start", "short", [q("starling_store_unclean_shutdowns_total", "unclean")]),
        ("Archive body logs: size", "bytes", [q("starling_archive_log_bytes", "on disk (holes included)")]),
        ("Archive body logs: bytes written, punched", "Bps", [
            rate("starling_archive_log_written_bytes_total"), rate("starling_archive_log_punched_bytes_total")]),
        ("Archive body logs: erased, failed writes, segments dropped", "short", [
            rate("starling_archive_log_erased_total"), q("starling_archive_log_write_failures_total", "failed writes"),
            q("starling_archive_log_segments_dropped_total", "segments dropped")]),
    ]),
]


def dashboard():
    panels, pid, y = [], 1, 0
    for row, items in ROWS:
        panels.append({"type": "row", "title": row, "id": pid, "collapsed": False,
                       "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
        pid, y = pid + 1, y + 1
        for i, (title, unit, queries) in enumerate(items):
            targets = [dict(t, refId=chr(ord("A") + k), datasource=DS) for k, t in enumerate(queries)]
            panels.append({
                "type": "timeseries", "title": title, "id": pid, "datasource": DS,
                "gridPos": {"h": 8, "w": 12, "x": 12 * (i % 2), "y": y + 8 * (i // 2)},
                "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
                "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
                "targets": targets,
            })
            pid += 1
        y += 8 * ((len(items) + 1) // 2)
    return {
        "__inputs": [{"name": "DS_PROMETHEUS", "label": "Prometheus", "type": "datasource",
                      "pluginId": "prometheus", "pluginName": "Prometheus"}],
        "title": "Starling broker", "uid": "starling-broker", "tags": ["starling", "xmpp"],
        "timezone": "browser", "schemaVersion": 38, "version": 1, "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": [{"name": "datasource", "label": "Prometheus", "type": "datasource",
                                 "query": "prometheus", "current": {}, "hide": 0}]},
        "panels": panels,
    }


if __name__ == "__main__":
    print(json.dumps(dashboard(), indent=1))
