// starling-agent: the edge agent (issue 12). Reads sensors, queues readings on disk, publishes
// them to the broker's PubSub service, runs ad-hoc commands from operators.
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <asio.hpp>

#include <cstdio>
#include <cstring>
#include <functional>
#include <iostream>
#include <string>
#include <string_view>

#include "edge-agent/src/agent.hpp"
#include "edge-agent/src/config.hpp"
#include "edge-agent/src/log.hpp"
#include "edge-agent/src/sd_notify.hpp"
#include "xmpp/tls/tls_context.hpp"

#ifndef STARLING_VERSION
#define STARLING_VERSION "0.0.0"
#endif

namespace {

constexpr std::string_view k_default_config = "/etc/starling/starling-agent.toml";

void usage(std::FILE* to) {
    std::fprintf(to,
                 "usage: starling-agent [--config FILE] [--check-config | --status]\n"
                 "\n"
                 "  --config FILE    configuration file (default %s;\n"
                 "                   every key is documented in edge-agent/README.md)\n"
                 "  --check-config   read and validate the configuration, open the queue folder,\n"
                 "                   print a summary and exit (0: valid, 1: not)\n"
                 "  --status         ask the running agent (agent.status_socket) for its state:\n"
                 "                   link, queue depth, last publish; exit 1 if it does not answer\n"
                 "  --help           this text\n"
                 "  --version        the version\n",
                 k_default_config.data());
}

int query_status(const starling::agent::AgentConfig& cfg) {
    if (cfg.status_socket.empty()) {
        std::fprintf(stderr, "starling-agent: agent.status_socket is not set in %s\n", cfg.source_file.c_str());
        return 1;
    }
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (cfg.status_socket.size() >= sizeof addr.sun_path) {
        std::fprintf(stderr, "starling-agent: status socket path too long\n");
        return 1;
    }
    std::memcpy(addr.sun_path, cfg.status_socket.c_str(), cfg.status_socket.size() + 1);
    if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        std::fprintf(stderr, "starling-agent: no agent answers on %s: %s\n", cfg.status_socket.c_str(), std::strerror(errno));
        if (fd >= 0) ::close(fd);
        return 1;
    }
    std::string out;
    char buf[1024];
    for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;) out.append(buf, static_cast<std::size_t>(n));
    ::close(fd);
    std::fwrite(out.data(), 1, out.size(), stdout);
    return out.empty() ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
    using namespace starling::agent;
    std::string config_path(k_default_config);
    bool check = false;
    bool status = false;
    for (int i = 1; i < argc; ++i) {
        const std::string_view a = argv[i];
        if (a == "--help" || a == "-h") {
            usage(stdout);
            return 0;
        }
        if (a == "--version") {
            std::printf("starling-agent %s\n", STARLING_VERSION);
            return 0;
        }
        if (a == "--check-config") {
            check = true;
        } else if (a == "--status") {
            status = true;
        } else if (a == "--config" && i + 1 < argc) {
            config_path = argv[++i];
        } else {
            std::fprintf(stderr, "starling-agent: unknown argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    AgentConfig cfg;
    try {
        cfg = load_config(config_path);
    } catch (const ConfigError& e) {
        std::fprintf(stderr, "starling-agent: %s\n", e.what());
        return 1;
    }
    if (status) return query_status(cfg);
    set_log_level(cfg.log_level);
    try {
        if (check) {
            {
                DiskQueue q(cfg.queue);  // the folder must be usable
                const auto s = q.stats();
                std::printf("config ok: jid=%s host=%s port=%u pubsub=%s node=%s queue=%s depth=%llu sources=%zu "
                            "commands=%zu tls=%s client_cert=%s\n",
                            cfg.jid.c_str(), (cfg.host.empty() ? cfg.domain() : cfg.host).c_str(), cfg.port,
                            cfg.pubsub_service().c_str(), cfg.node_name().c_str(), cfg.queue.dir.c_str(),
                            static_cast<unsigned long long>(s.depth), cfg.files.size() + cfg.programs.size(),
                            cfg.commands.size(),
                            cfg.insecure_skip_verify ? "INSECURE(no verification)"
                            : cfg.pin_sha256.empty() ? "ca"
                                                     : "pinned",
                            cfg.client_cert.empty() ? "none" : cfg.client_cert.c_str());
            }
            xmpp::tls::TlsClientConfig t;  // the CA file must load
            bool build = false;
            if (!cfg.insecure_skip_verify && cfg.pin_sha256.empty()) {
                t.ca = xmpp::tls::PemSource::file(cfg.ca_file);
                build = true;
            } else {
                t.verify_peer = false;
            }
            if (!cfg.client_cert.empty()) {  // the certificate and its key must load and match
                xmpp::tls::TlsIdentity id;
                id.cert_chain = xmpp::tls::PemSource::file(cfg.client_cert);
                id.private_key = xmpp::tls::PemSource::file(cfg.client_key);
                t.identity = std::move(id);
                build = true;
            }
            if (build) xmpp::tls::TlsClientContext ctx(t);
            return 0;
        }
        asio::io_context io(1);
        Agent agent(io, cfg);
        asio::signal_set signals(io, SIGINT, SIGTERM);
        signals.async_wait([&](const asio::error_code& ec, int sig) {
            if (ec) return;
            log(LogLevel::info, "agent.stopping", {{"signal", sig}});
            sd_notify("STOPPING=1");
            agent.stop();
            // Give the stream's close one moment to go out, then leave.
            auto t = std::make_shared<asio::steady_timer>(io, std::chrono::milliseconds(200));
            t->async_wait([&io, t](const asio::error_code&) { io.stop(); });
        });
        log(LogLevel::info, "agent.start", {{"version", STARLING_VERSION}, {"jid", cfg.jid}, {"device", cfg.device},
                                            {"node", cfg.node_name()}, {"service", cfg.pubsub_service()}});
        agent.start();
        sd_notify("READY=1");
        // The watchdog ping comes from the event loop itself: a stuck loop stops it.
        asio::steady_timer watchdog(io);
        std::function<void()> pet;
        const auto every = watchdog_interval();  // outlives the loop: the timer's handler reads it
        if (every) {
            pet = [&] {
                sd_notify("WATCHDOG=1");
                watchdog.expires_after(*every);
                watchdog.async_wait([&](const asio::error_code& ec) {
                    if (!ec) pet();
                });
            };
            pet();
        }
        io.run();
        return 0;
    } catch (const QueueError& e) {
        std::fprintf(stderr, "starling-agent: %s\n", e.what());
    } catch (const xmpp::tls::TlsConfigError& e) {
        std::fprintf(stderr, "starling-agent: tls: %s\n", e.what());
    }
    return 1;
}
