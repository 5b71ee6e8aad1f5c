#include "broker/src/server/broker.hpp"

#include <sys/resource.h>
#include <sys/stat.h>

#include <chrono>
#include <csignal>
#include <functional>
#include <fstream>
#include <optional>
#include <future>
#include <thread>

#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/signal_set.hpp>
#include <asio/steady_timer.hpp>

#include "broker/src/admin/admin_server.hpp"
#include "broker/src/c2s/options.hpp"
#include "broker/src/c2s/session.hpp"
#include "broker/src/c2s/shard_context.hpp"
#include "broker/src/metrics/health.hpp"
#include "broker/src/metrics/metrics.hpp"
#include "broker/src/metrics/store_metrics.hpp"
#include "broker/src/modules/module_list.hpp"
#include "broker/src/modules/presence/silent.hpp"
#include "broker/src/modules/pubsub/describe.hpp"
#include "broker/src/modules/pubsub/node_store.hpp"
#include "broker/src/modules/pubsub/pubsub_module.hpp"
#include "broker/src/modules/pubsub/pubsub_service.hpp"
#include "broker/src/session/hooks.hpp"
#include "broker/src/session/shard_peers.hpp"
#include "broker/src/net/listener.hpp"
#include "broker/src/net/shard.hpp"
#include "broker/src/router/mailboxes.hpp"
#include "broker/src/router/router.hpp"
#include "broker/src/storage/accounts.hpp"
#include "broker/src/storage/fast_tokens.hpp"
#include "broker/src/storage/backup.hpp"
#include "broker/src/storage/store.hpp"
#include "broker/src/storage/write_path.hpp"
#include "broker/src/util/log.hpp"
#include "broker/src/util/random.hpp"
#include "broker/src/util/sd_notify.hpp"
#include "xmpp/tls/self_signed.hpp"
#include "xmpp/tls/openssl_server.hpp"
#include "xmpp/tls/tls_context.hpp"

namespace starling::server {

namespace {

constexpr std::size_t k_mailbox_capacity = 16 * 1024;
constexpr auto k_drain_limit = std::chrono::seconds(8);

c2s::C2sOptions make_options(const config::BrokerConfig& cfg, std::string secret) {
    c2s::C2sOptions o;
    o.domains = cfg.domains;
    o.require_tls = cfg.c2s.require_tls;
    o.allow_plaintext = cfg.c2s.allow_plaintext;
    o.xml_limits.max_stanza_bytes = cfg.c2s.max_stanza_bytes;
    o.xml_limits.max_depth = cfg.c2s.max_depth;
    o.xml_limits.max_attributes = cfg.c2s.max_attributes;
    o.pre_auth_timeout = std::chrono::milliseconds(cfg.c2s.pre_auth_timeout_ms);
    o.idle_timeout = std::chrono::milliseconds(cfg.c2s.idle_timeout_ms);
    o.auth_failure_delay = std::chrono::milliseconds(cfg.c2s.auth_failure_delay_ms);
    o.max_auth_failures = cfg.c2s.max_auth_failures;
    o.scram_iterations = cfg.accounts.scram_iterations;
    o.max_output_bytes = cfg.c2s.max_output_bytes;
    o.stanzas_per_second = cfg.c2s.stanzas_per_second;
    o.max_resources_per_user = cfg.c2s.max_resources_per_user;
    o.max_connections_per_ip = cfg.c2s.max_connections_per_ip;
    o.connection_rate_per_ip = cfg.c2s.connection_rate_per_ip;
    o.stream_management = cfg.c2s.stream_management;
    o.resume_timeout = std::chrono::seconds(cfg.c2s.resume_timeout_s);
    o.max_unacked_stanzas = cfg.c2s.max_unacked_stanzas;
    o.compression = cfg.c2s.compression;
    o.compression_window_bits = static_cast<int>(cfg.c2s.compression_window_bits);
    o.compression_mem_level = static_cast<int>(cfg.c2s.compression_mem_level);
    o.channel_binding = cfg.tls.channel_binding;
    o.channel_binding_downgrade_check = cfg.tls.channel_binding_downgrade_check;
    o.external_auth = !cfg.tls.client_ca_file.empty();
    o.external_jid_from_cn = cfg.tls.client_cert_jid_from_cn;
    o.sasl2 = cfg.fast.sasl2;
    o.fast = cfg.fast.sasl2 && cfg.fast.enabled;
    o.fast_max_tokens_per_account = cfg.fast.max_tokens_per_account;
    o.fast_token_lifetime = std::chrono::seconds(cfg.fast.token_lifetime_s);
    o.server_secret = std::move(secret);
    return o;
}

// The cap on open client connections of one shard: the configured total, or what the descriptor
// limit allows (less a reserve for the store, listeners and the admin socket), split evenly.
std::size_t per_shard_connection_cap(const config::BrokerConfig& cfg) {
    std::size_t total = cfg.c2s.max_connections;
    if (total == 0) {
        rlimit r{};
        if (::getrlimit(RLIMIT_NOFILE, &r) != 0 || r.rlim_cur == RLIM_INFINITY) return 0;
        total = r.rlim_cur > 256 ? static_cast<std::size_t>(r.rlim_cur) - 256 : 1;
    }
    const std::size_t shards = cfg.general.shards != 0 ? cfg.general.shards : std::max(1u, std::thread::hardware_concurrency());
    return std::max<std::size_t>(1, (total + shards - 1) / shards);
}

// A per-installation secret for decoy SCRAM salts (RFC 5802 §9): read, or made on first start
// (0600). Stable across restarts so that an unknown user's salt does not change either.
std::string load_server_secret(const config::BrokerConfig& cfg) {
    const auto path = cfg.general.server_secret_file ? *cfg.general.server_secret_file
                                                     : cfg.general.data_dir / "server-secret";
    {
        std::ifstream in(path, std::ios::binary);
        if (in) {
            std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
            if (s.size() >= 16) return s;
            throw std::runtime_error(path.string() + ": server secret shorter than 16 bytes");
        }
    }
    if (cfg.general.server_secret_file) throw std::runtime_error(path.string() + ": cannot read the server secret");
    util::Random random;
    const std::string secret = random.alnum(48);
    const auto tmp = path.string() + ".tmp";
    {
        const mode_t old = ::umask(077);
        std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
        ::umask(old);
        out << secret;
        if (!out.flush()) throw std::runtime_error(tmp + ": cannot write the server secret");
    }
    std::filesystem::rename(tmp, path);
    return secret;
}

}  // namespace

struct Broker::Impl {
    struct ShardState {
        util::Random random;
        std::unique_ptr<storage::ShardWriter> writer;  // before the router and modules that use it
        std::unique_ptr<router::ShardRouter> router;
        std::unique_ptr<c2s::ShardContext> ctx;
        session::HookTable hooks;
        std::vector<std::unique_ptr<net::Listener>> listeners;
        std::unique_ptr<asio::steady_timer> beat_timer;  // stamps heartbeats while the loop turns
    };

    config::BrokerConfig cfg;
    c2s::C2sOptions options;
    std::unique_ptr<storage::Store> store;
    std::unique_ptr<storage::Committer> committer;  // started after the store, stopped after the shards
    std::unique_ptr<storage::AccountStore> accounts;
    // The broker's TLS engine is OpenSSL (xmpp/tls/README.md "Engines"). Ticket keys outlive
    // certificate reloads, so a reload does not cost every device a full handshake.
    std::shared_ptr<xmpp::tls::TicketKeys> ticket_keys;
    storage::FastRevocations fast_revocations;  // every shard's logins and the admin thread's revoke
    std::shared_ptr<const xmpp::tls::OpenSslServerContext> tls;
    std::unique_ptr<net::ShardSet> shards;
    std::unique_ptr<router::Mailboxes<router::Envelope>> mailboxes;
    std::vector<std::unique_ptr<ShardState>> states;
    // Declared after the shards, so destroyed before them: when the constructor throws (a port
    // in use), the members unwind in reverse order, and the committer's thread must not post a
    // completion to a shard's io_context that is gone (ASan: heap-use-after-free). stop() is
    // idempotent; stop_all() calls it first on the normal path.
    struct CommitterStop {
        Impl& impl;
        ~CommitterStop() {
            if (impl.committer) impl.committer->stop();
        }
    };
    CommitterStop committer_stop{*this};
    std::unique_ptr<metrics::Heartbeats> heartbeats;  // one slot per shard (metrics/health.hpp)
    std::unique_ptr<metrics::MetricsServer> metrics_server;
    std::unique_ptr<admin::AdminServer> admin_server;

    // Control work posted to a shard's io_context (session/shard_peers.hpp).
    struct Peers final : session::ShardPeers {
        explicit Peers(Impl& i) : impl(i) {}
        std::size_t count() const noexcept override { return impl.states.size(); }
        void post(router::ShardId to, Work work) override {
            ShardState* st = impl.states.at(to).get();
            asio::post((*impl.shards)[to].io(), [st, work = std::move(work)]() mutable { work(*st->ctx); });
        }
        Impl& impl;
    };
    Peers peers{*this};

    explicit Impl(const config::BrokerConfig& c) : cfg(c) {
        std::filesystem::create_directories(cfg.general.data_dir);
        ::chmod(cfg.general.data_dir.c_str(), 0700);
        options = make_options(cfg, load_server_secret(cfg));
        options.max_connections = per_shard_connection_cap(cfg);

        storage::StoreOptions so;
        so.block_cache_bytes = std::size_t{cfg.storage.block_cache_mb} << 20;
        so.write_buffer_bytes = std::size_t{cfg.storage.write_buffer_mb} << 20;
        store = storage::Store::open(cfg.storage.path.string(), so);
        committer = std::make_unique<storage::Committer>(*store);
        committer->start();
        accounts = std::make_unique<storage::AccountStore>(*store);
        make_tls();

        shards = std::make_unique<net::ShardSet>(cfg.general.shards);
        const std::size_t n = shards->size();
        mailboxes = std::make_unique<router::Mailboxes<router::Envelope>>(
            n, k_mailbox_capacity, [this](router::ShardId to) { wake(to); });
        for (std::size_t i = 0; i < n; ++i) make_shard(static_cast<router::ShardId>(i));
        heartbeats = std::make_unique<metrics::Heartbeats>(n);
    }

    // A shard's liveness stamp: a timer on its own io_context, so it fires only while the loop
    // turns. Four beats per stall limit (at most one a second) keep a healthy shard far from it.
    std::chrono::milliseconds stall_limit() const { return std::chrono::seconds(cfg.metrics.stall_limit_s); }
    std::chrono::milliseconds beat_interval() const {
        return std::min<std::chrono::milliseconds>(std::chrono::seconds(1), stall_limit() / 4);
    }
    void beat(std::size_t i) {
        heartbeats->beat(i, metrics::HealthClock::now());
        auto& timer = *states[i]->beat_timer;
        timer.expires_after(beat_interval());
        timer.async_wait([this, i](const asio::error_code& ec) {
            if (!ec) beat(i);
        });
    }

    // /health (ready = false) and /ready; also the watchdog's condition. Any thread.
    metrics::HealthReport health(bool ready) const {
        return metrics::evaluate_health(heartbeats->ages(metrics::HealthClock::now()), stall_limit(), ready,
                                        committer->is_running() && committer->is_healthy());
    }

    void make_tls() {
        if (cfg.tls.session_tickets && !ticket_keys) ticket_keys = std::make_shared<xmpp::tls::TicketKeys>();
        tls = build_tls();
    }

    // Reads the certificates (the self-signed pair is made if missing) into a new context.
    // Throws TlsConfigError.
    std::shared_ptr<const xmpp::tls::OpenSslServerContext> build_tls() {
        xmpp::tls::TlsServerConfig tc;
        if (cfg.tls.certificates.empty()) {
            const auto dir = config::self_signed_dir(cfg);
            auto files = xmpp::tls::ensure_self_signed(dir, cfg.domains);
            STARLING_LOG(info, "{} self-signed certificate {} for {}", files.created ? "created" : "using",
                         files.cert_file.string(), cfg.domains.front());
            tc.identities.push_back({xmpp::tls::PemSource::file(files.cert_file.string()),
                                     xmpp::tls::PemSource::file(files.key_file.string()), {}, cfg.domains});
        } else {
            for (const auto& cert : cfg.tls.certificates) {
                tc.identities.push_back({xmpp::tls::PemSource::file(cert.cert_file.string()),
                                         xmpp::tls::PemSource::file(cert.key_file.string()), {}, cert.domains});
            }
        }
        if (!cfg.tls.client_ca_file.empty()) {
            // Device certificates (XEP-0178): asked for, never required (a device without one
            // still uses SCRAM); one that does not verify fails the handshake.
            tc.client_auth = xmpp::tls::ClientAuth::optional;
            tc.client_ca = xmpp::tls::PemSource::file(cfg.tls.client_ca_file.string());
            if (!cfg.tls.client_crl_file.empty()) {
                tc.client_crl = xmpp::tls::PemSource::file(cfg.tls.client_crl_file.string());
            }
        }
        xmpp::tls::OpenSslServerOptions opts;
        opts.session_tickets = cfg.tls.session_tickets;
        opts.ticket_keys = ticket_keys;
        // Tickets older than one period are refused even if their key is still around.
        opts.ticket_lifetime_s = cfg.tls.ticket_key_rotation_s;
        return std::make_shared<const xmpp::tls::OpenSslServerContext>(tc, opts);
    }

    // SIGHUP: certificates are read again; each shard takes the new context for new
    // handshakes, on its own thread. Established sessions keep the context they started with.
    // A certificate that cannot be loaded keeps the old one.
    void reload_tls() {
        std::shared_ptr<const xmpp::tls::OpenSslServerContext> fresh;
        try {
            fresh = build_tls();
        } catch (const std::exception& e) {
            STARLING_LOG(error, "TLS reload failed, keeping the current certificates: {}", e.what());
            return;
        }
        tls = fresh;
        on_every_shard([fresh](ShardState& s) {
            s.ctx->tls = fresh;
            return 0;
        });
        STARLING_LOG(info, "TLS certificates reloaded");
    }

    void rotate_ticket_keys() {
        if (!ticket_keys) return;
        try {
            ticket_keys->rotate();
        } catch (const std::exception& e) {
            STARLING_LOG(error, "session ticket key rotation failed: {}", e.what());
        }
    }

    void make_shard(router::ShardId id) {
        auto st = std::make_unique<ShardState>();
        auto& shard = (*shards)[id];
        auto* state = st.get();
        st->writer = std::make_unique<storage::ShardWriter>(shard.io(), id, *committer);
        st->router = std::make_unique<router::ShardRouter>(
            id, *mailboxes, [state](router::Envelope&& env) {
                // Only client sessions migrate (after binding, to their home shard).
                auto session = std::static_pointer_cast<c2s::C2sSession>(std::move(env.session));
                session->adopt(*state->ctx, env.fd);
            });
        session::ShardServices services{
            .shard = id, .io = shard.io(), .server = options, .accounts = *accounts, .router = *st->router,
            .random = st->random, .hooks = &st->hooks, .store = store.get(), .writer = st->writer.get(),
            .peers = &peers};
        st->ctx = std::make_unique<c2s::ShardContext>(services, options, tls);
        st->ctx->fast_revocations = &fast_revocations;
        st->hooks.install(*st->ctx, modules::make_modules(cfg.modules));
        st->router->set_hooks(&st->hooks);
        st->beat_timer = std::make_unique<asio::steady_timer>(shard.io());
        const auto address = asio::ip::make_address(cfg.c2s.bind_address);
        auto listen = [&](std::uint16_t port, bool direct_tls, std::string_view option) {
            if (port == 0) return;
            auto* ctx = st->ctx.get();
            try {
                st->listeners.push_back(std::make_unique<net::Listener>(
                    shard.io(), asio::ip::tcp::endpoint(address, port),
                    [ctx, direct_tls](asio::ip::tcp::socket s) {
                        c2s::C2sSession::start(*ctx, std::move(s), direct_tls);
                    }));
            } catch (const std::system_error& e) {
                // Say which port and which option: "bind: Address already in use" alone sends
                // an operator looking through the whole configuration.
                throw std::runtime_error("cannot listen on " + cfg.c2s.bind_address + " port " + std::to_string(port) +
                                         " (" + e.code().message() + "); change " + std::string(option) +
                                         ", or set it to 0 to turn that listener off");
            }
        };
        listen(cfg.c2s.port, false, "[c2s] port / --c2s-port");
        listen(cfg.c2s.tls_port, true, "[c2s] tls_port / --c2s-tls-port");
        states.push_back(std::move(st));
    }

    // From any shard: run a drain on shard `to`.
    void wake(router::ShardId to) {
        asio::post((*shards)[to].io(), [this, to] {
            auto& r = *states[to]->router;
            mailboxes->drain(to, [&r](router::Envelope&& env) { r.on_mail(std::move(env)); });
            r.flush();
        });
    }

    // Runs `f` on every shard and waits for all of them (admin and metrics threads only).
    template <class F>
    auto on_every_shard(F f) -> std::vector<decltype(f(std::declval<ShardState&>()))> {
        using R = decltype(f(std::declval<ShardState&>()));
        std::vector<std::future<R>> futures;
        for (std::size_t i = 0; i < states.size(); ++i) {
            auto task = std::make_shared<std::packaged_task<R()>>([this, i, f] { return f(*states[i]); });
            futures.push_back(task->get_future());
            asio::post((*shards)[i].io(), [task] { (*task)(); });
        }
        std::vector<R> out;
        for (auto& fu : futures) out.push_back(fu.get());
        return out;
    }

    std::vector<metrics::ShardSnapshot> snapshot() {
        return on_every_shard([this](ShardState& s) {
            metrics::ShardSnapshot snap;
            snap.shard = s.ctx->shard;
            snap.c2s = s.ctx->counters;
            snap.router = s.router->counters();
            snap.connections = s.ctx->sessions.size();
            snap.bound = s.router->session_count();
            snap.mailbox_depth = mailboxes->depth(s.ctx->shard);
            for (const auto& [p, session] : s.ctx->sessions) {
                snap.sm_unacked += session->unacked_count();
                if (session->is_hibernating()) ++snap.sm_hibernating;
            }
            snap.modules = s.hooks.counters();
            return snap;
        });
    }

    // starlingctl pubsub: list and show read RocksDB on the admin thread (what is committed);
    // delete runs on the node's home shard, as an owner's delete would, and waits until durable.
    void add_pubsub_hooks(admin::AdminHooks& hooks) {
        if (!cfg.modules.is_enabled("pubsub")) return;
        const std::string subdomain = cfg.modules.values.text("pubsub.subdomain");
        auto service_of = [this, subdomain](std::string_view asked) -> std::optional<std::string> {
            if (asked.empty()) return subdomain + "." + cfg.domains.front();
            for (const auto& d : cfg.domains) {
                if (asked == subdomain + "." + d) return std::string(asked);
            }
            return std::nullopt;
        };
        using Answer = admin::AdminHooks::Answer;
        hooks.pubsub_list = [this, service_of](std::string_view asked) -> Answer {
            auto service = service_of(asked);
            if (!service) return {false, "no PubSub service " + std::string(asked)};
            auto nodes = modules::pubsub::NodeStore(*store).list_nodes(*service);
            if (!nodes) return {true, "error: " + std::string(storage::to_string(nodes.error()))};
            std::string out;
            for (const auto& n : *nodes) out += n + "\n";
            return {true, out};
        };
        hooks.pubsub_show = [this, service_of](std::string_view asked, std::string_view node) -> Answer {
            auto service = service_of(asked);
            if (!service) return {false, "no PubSub service " + std::string(asked)};
            auto d = modules::pubsub::describe_node(*store, *service, node);
            return {d.found, std::move(d.text)};
        };
        hooks.pubsub_delete = [this, service_of](std::string_view asked, std::string_view node) -> Answer {
            auto service = service_of(asked);
            if (!service) return {false, "no PubSub service " + std::string(asked)};
            using Result = modules::pubsub::PubsubService::AdminDelete;
            auto promise = std::make_shared<std::promise<Result>>();
            auto future = promise->get_future();
            std::string key = *service;
            key += '\0';
            key += node;
            const auto home = states.front()->router->home_of(key);
            peers.post(home, [promise, svc = *service, n = std::string(node)](session::ShardServices& there) {
                auto* m = there.hooks == nullptr ? nullptr : there.hooks->find_module("pubsub");
                auto* ps = m == nullptr ? nullptr : static_cast<modules::PubsubModule*>(m)->service();
                if (ps == nullptr) {
                    promise->set_value(Result::failed);
                    return;
                }
                ps->admin_delete(svc, n, [promise](Result r) { promise->set_value(r); });
            });
            if (future.wait_for(std::chrono::seconds(10)) != std::future_status::ready) {
                return {true, "error: the node's shard did not answer within 10 s"};
            }
            switch (future.get()) {
                case Result::deleted: return {true, "deleted " + std::string(node) + " from " + *service};
                case Result::not_found: return {false, "no node " + std::string(node) + " on " + *service};
                case Result::failed: break;
            }
            return {true, "error: the deletion could not be stored (see the broker's log)"};
        };
    }

    // starlingctl fast list|revoke: the account's FAST tokens (XEP-0484), read and deleted in
    // RocksDB on the admin thread; a login reads them there too, so the next one is refused.
    void add_fast_hooks(admin::AdminHooks& hooks) {
        using Answer = admin::AdminHooks::Answer;
        hooks.fast_list = [this](std::string_view bare) -> Answer {
            auto tokens = storage::FastTokenStore(*store).get(bare);
            if (!tokens) return {false, "error: " + std::string(storage::to_string(tokens.error()))};
            const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                                 std::chrono::system_clock::now().time_since_epoch()).count();
            std::string out;
            for (const auto& t : *tokens) {
                out += "issued=" + std::to_string(t.issued_unix_s) + " expiry=" + std::to_string(t.expiry_unix_s) +
                       (t.expiry_unix_s <= now ? " (expired)" : "") + " count=" + std::to_string(t.count) +
                       " mechanism=" + t.mechanism + " client=" + (t.user_agent.empty() ? "-" : t.user_agent) + "\n";
            }
            if (out.empty()) out = "no FAST tokens\n";
            return {true, out};
        };
        hooks.fast_revoke = [this](std::string_view bare) -> Answer {
            // storage::FastRevocations: delete, bump, let every shard commit what it staged
            // before (a login's write-back of tokens it read before the delete), delete again.
            // No timing assumption: a slow disk makes the wait longer, never the result wrong.
            auto n = storage::FastTokenStore(*store).revoke(bare);
            if (!n) return {false, "error: " + std::string(storage::to_string(n.error()))};
            fast_revocations.bump(bare);
            if (!staged_writes_committed(k_revoke_wait)) {
                return {true, "error: the shards' writes did not commit within " + std::to_string(k_revoke_wait.count()) +
                                  " s (see the broker's log); the tokens may come back: revoke again"};
            }
            auto again = storage::FastTokenStore(*store).revoke(bare);
            if (!again) return {false, "error: " + std::string(storage::to_string(again.error()))};
            if (*again != 0) {
                STARLING_LOG(info, "admin: {} FAST token(s) of {} written back by a login meanwhile deleted again", *again,
                             bare);
            }
            STARLING_LOG(info, "admin: revoked {} FAST token(s) of {}", *n, bare);
            return {true, "revoked " + std::to_string(*n) + " FAST token(s) of " + std::string(bare)};
        };
    }

    static constexpr std::chrono::seconds k_revoke_wait{10};

    // Waits until every shard has committed (at least to the WAL) what it staged before the call,
    // at most `limit`; false when a shard did not answer in time. Admin thread only.
    bool staged_writes_committed(std::chrono::seconds limit) {
        std::vector<std::future<void>> done;
        for (std::size_t i = 0; i < states.size(); ++i) {
            auto promise = std::make_shared<std::promise<void>>();
            done.push_back(promise->get_future());
            asio::post((*shards)[i].io(), [this, i, promise] {
                // Failed or not, once its commit has answered a write is stored or never will be.
                states[i]->writer->when_durable(storage::Durability::logged,
                                                [promise](xmpp::Result<void, storage::Errc>) { promise->set_value(); });
            });
        }
        const auto deadline = std::chrono::steady_clock::now() + limit;
        for (auto& f : done) {
            if (f.wait_until(deadline) != std::future_status::ready) return false;
        }
        return true;
    }

    void start_services() {
        if (cfg.metrics.port != 0) {
            const bool v6 = cfg.metrics.bind_address.find(':') != std::string::npos;
            const std::string bind = v6 ? "[" + cfg.metrics.bind_address + "]:" + std::to_string(cfg.metrics.port)
                                        : cfg.metrics.bind_address + ":" + std::to_string(cfg.metrics.port);
            metrics_server = std::make_unique<metrics::MetricsServer>(
                bind, [this] { return snapshot(); }, [this](bool ready) { return health(ready); });
            metrics_server->add(std::make_shared<metrics::StoreCollector>(*store, *committer));
        }
        admin::AdminHooks hooks;
        hooks.sessions = [this] {
            auto lists = on_every_shard([](ShardState& s) {
                std::string text;
                s.router->for_each_session([&](router::Endpoint& endpoint) {
                    auto& session = static_cast<c2s::C2sSession&>(endpoint);  // only client sessions bind
                    text += session.jid()->full();
                    text += ' ';
                    text += session.peer_address();
                    text += " shard=";
                    text += std::to_string(s.ctx->shard);
                    text += '\n';
                });
                return text;
            });
            std::string all;
            for (auto& l : lists) all += l;
            return all;
        };
        hooks.kick = [this](std::string_view jid) {
            const std::string target(jid);
            auto kicked = on_every_shard([target](ShardState& s) {
                std::vector<router::Endpoint*> victims;
                s.router->for_each_session([&](router::Endpoint& session) {
                    const auto* j = session.jid();
                    if (j->full() == target || j->bare_view() == target) victims.push_back(&session);
                });
                for (auto* v : victims) v->close(xmpp::StreamError::policy_violation, "disconnected by the administrator");
                return victims.size();
            });
            std::size_t n = 0;
            for (auto k : kicked) n += k;
            return n > 0;
        };
        hooks.account_deleted = [this](std::string_view bare_jid) {
            const std::string bare(bare_jid);
            auto ended = on_every_shard([bare](ShardState& s) {
                std::vector<router::Endpoint*> victims;
                s.router->for_each_session([&](router::Endpoint& session) {
                    if (session.jid()->bare_view() == bare) victims.push_back(&session);
                });
                // RFC 6120 §4.9.3.11: the account is gone.
                for (auto* v : victims) v->close(xmpp::StreamError::not_authorized, "the account was deleted");
                s.hooks.account_deleted(bare);
                return victims.size();
            });
            std::size_t n = 0;
            for (auto k : ended) n += k;
            return n;
        };
        hooks.stats = [this] { return metrics::render_text(snapshot()); };
        hooks.presence_silent = [this](std::string_view bare, bool on) -> std::string {
            auto r = modules::presence::set_silent(*store, bare, on);
            return r ? std::string() : std::string(storage::to_string(r.error()));
        };
        add_pubsub_hooks(hooks);
        add_fast_hooks(hooks);
        hooks.backup = [this](const std::filesystem::path& dir) {
            auto err = storage::create_backup(*store, cfg.general.data_dir, dir);
            if (err.empty()) STARLING_LOG(info, "backup written to {}", dir.string());
            else STARLING_LOG(warn, "backup to {} failed: {}", dir.string(), err);
            return err;
        };
        admin::AdminConfig ac;
        ac.domains = cfg.domains;
        ac.scram_iterations = cfg.accounts.scram_iterations;
        admin_server = std::make_unique<admin::AdminServer>(cfg.admin.socket, *accounts, ac, std::move(hooks));
        admin_server->start();
        // Clients last: once a port answers, accounts can already be managed and scraped.
        for (auto& st : states) {
            for (auto& l : st->listeners) l->start();
        }
        for (std::size_t i = 0; i < states.size(); ++i) asio::post((*shards)[i].io(), [this, i] { beat(i); });
        shards->start();
    }

    void report_listening() {
        if (cfg.c2s.port != 0)
            STARLING_LOG(info, "listening for clients on {}:{} (STARTTLS{})", cfg.c2s.bind_address, cfg.c2s.port,
                         options.allow_plaintext ? ", plaintext allowed" : ", required");
        if (cfg.c2s.tls_port != 0)
            STARLING_LOG(info, "listening for clients on {}:{} (direct TLS, XEP-0368)", cfg.c2s.bind_address,
                         cfg.c2s.tls_port);
        if (metrics_server)
            STARLING_LOG(info, "listening for metrics on http://{}:{}/metrics (probes: /health, /ready)",
                         cfg.metrics.bind_address, metrics_server->port());
        STARLING_LOG(info, "admin socket {}; add a user with: starlingctl --data-dir {} user add user@{} PASSWORD",
                     cfg.admin.socket.string(), cfg.general.data_dir.string(), cfg.domains.front());
        STARLING_LOG(info, "serving {} with {} shard(s); data in {}", cfg.domains.front(), states.size(),
                     cfg.storage.path.string());
    }

    void drain() {
        STARLING_LOG(info, "shutting down: closing streams");
        on_every_shard([](ShardState& s) {
            s.ctx->draining = true;
            for (auto& l : s.listeners) l->stop();
            std::vector<std::shared_ptr<c2s::C2sSession>> all;
            for (auto& [p, sp] : s.ctx->sessions) all.push_back(sp);
            for (auto& sp : all) sp->close_gracefully();
            return 0;
        });
        const auto deadline = std::chrono::steady_clock::now() + k_drain_limit;
        while (std::chrono::steady_clock::now() < deadline) {
            auto left = on_every_shard([](ShardState& s) { return s.ctx->sessions.size(); });
            std::size_t n = 0;
            for (auto l : left) n += l;
            if (n == 0) break;
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
    }

    // What the shards staged is handed to the committer and committed before the shards stop:
    // a clean shutdown loses no write (offline messages stored while streams closed...).
    void flush_writes() {
        if (!shards || !committer) return;
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
        for (;;) {
            auto left = on_every_shard([](ShardState& s) {
                s.writer->seal();
                return s.writer->in_flight() + s.writer->overlay_size();
            });
            std::size_t n = 0;
            for (auto l : left) n += l;
            if (n == 0 || std::chrono::steady_clock::now() >= deadline || !committer->is_healthy()) break;
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
    }

    void stop_all() {
        if (admin_server) admin_server->stop();
        metrics_server.reset();
        if (shards) shards->stop();
        // Sessions hold sockets of the shards' io_contexts: release them before the shards go.
        for (auto& st : states) {
            st->ctx->sessions.clear();
            st->listeners.clear();
        }
        // Writers answer what still waits (Errc::stopped) and go before the committer stops.
        for (auto& st : states) st->writer.reset();
        if (committer) committer->stop();
    }
};

Broker::Broker(const config::BrokerConfig& config) : _impl(std::make_unique<Impl>(config)) {}

Broker::~Broker() {
    if (_impl) _impl->stop_all();
}

void Broker::run(const std::function<void()>& reload) {
    // systemd Type=notify (deploy/systemd/starlingd.service): READY=1 once every listener is up,
    // WATCHDOG=1 only while every shard's reactor turns, STOPPING=1 when the drain begins.
    const util::SystemdNotifier notifier;
    asio::io_context main_io;
    asio::signal_set signals(main_io, SIGINT, SIGTERM);
    asio::signal_set hup(main_io, SIGHUP);
    asio::steady_timer watchdog(main_io);
    std::signal(SIGPIPE, SIG_IGN);
    signals.async_wait([&](const asio::error_code&, int sig) {
        STARLING_LOG(info, "received signal {}", sig);
        notifier.notify("STOPPING=1");
        main_io.stop();  // the SIGHUP wait and the rotation and watchdog timers would keep run() going
    });
    // SIGHUP reloads what can be reloaded (DESIGN §9): the TLS certificates, and the log level.
    std::function<void()> wait_hup = [&] {
        hup.async_wait([&](const asio::error_code& ec, int) {
            if (ec) return;
            STARLING_LOG(info, "received SIGHUP: reloading the TLS certificates and the log level");
            notifier.notify("RELOADING=1");
            _impl->reload_tls();
            if (reload) reload();
            notifier.notify("READY=1\nSTATUS=reloaded");
            wait_hup();
        });
    };
    wait_hup();
    // Session ticket keys rotate on the main thread; the shards read them under the ring's lock.
    asio::steady_timer rotation(main_io);
    const auto rotation_period = std::chrono::seconds(_impl->cfg.tls.ticket_key_rotation_s);
    std::function<void()> arm_rotation = [&] {
        rotation.expires_after(rotation_period);
        rotation.async_wait([&](const asio::error_code& ec) {
            if (ec) return;
            _impl->rotate_ticket_keys();
            arm_rotation();
        });
    };
    if (_impl->ticket_keys) arm_rotation();
    _impl->start_services();
    _impl->report_listening();
    notifier.notify("READY=1\nSTATUS=serving");
    if (const auto period = notifier.watchdog()) {
        // Ping at half the period systemd allows (sd_watchdog_enabled(3) advice).
        const auto interval = std::max<std::chrono::microseconds>(*period / 2, std::chrono::milliseconds(10));
        STARLING_LOG(info, "systemd watchdog: pinging every {} ms while every shard turns",
                     std::chrono::duration_cast<std::chrono::milliseconds>(interval).count());
        std::function<void()> tick = [&] {
            const auto report = _impl->health(false);
            if (report.ok) notifier.notify("WATCHDOG=1");
            else STARLING_LOG(error, "systemd watchdog: not pinging: {}", report.body);
            watchdog.expires_after(interval);
            watchdog.async_wait([&](const asio::error_code& ec) {
                if (!ec) tick();
            });
        };
        tick();
        main_io.run();
    } else {
        main_io.run();
    }
    _impl->drain();
    _impl->flush_writes();
    _impl->stop_all();
    STARLING_LOG(info, "stopped");
}

}  // namespace starling::server
