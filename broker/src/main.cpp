// starlingd: the broker. Reads the configuration (file, then command line), starts the
// services and serves until SIGTERM/SIGINT. Start-up errors are one line on stderr and exit 1;
// usage errors exit 2.
#include <sys/resource.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <cstdint>
#include <cstdio>
#include <exception>

#include "broker/src/config/config.hpp"
#include "broker/src/server/broker.hpp"
#include "broker/src/util/log.hpp"

namespace {

// Every client is a file descriptor, and the usual soft limit (1024) would refuse clients long
// before memory runs out: raise it to the hard limit, as servers do. The hard limit is the
// operator's (systemd LimitNOFILE=, ulimit -Hn); past it, accept() fails with EMFILE and the
// listener backs off (net/listener.cpp).
void raise_descriptor_limit() {
    rlimit r{};
    if (::getrlimit(RLIMIT_NOFILE, &r) != 0) return;
    if (r.rlim_cur < r.rlim_max) {
        r.rlim_cur = r.rlim_max;
        (void)::setrlimit(RLIMIT_NOFILE, &r);
        (void)::getrlimit(RLIMIT_NOFILE, &r);
    }
    STARLING_LOG(info, "file descriptor limit {}: at most about {} client connections", r.rlim_cur,
                 r.rlim_cur > 64 ? r.rlim_cur - 64 : 0);
}

// general.malloc_keep_free_bytes: how much freed memory an arena keeps before trimming. Before
// any shard thread starts (the setting is global to the allocator).
void set_malloc_keep_free(std::uint64_t bytes) {
#if defined(__GLIBC__)
    if (bytes == 0) return;
    if (::mallopt(M_TRIM_THRESHOLD, static_cast<int>(bytes)) != 1) {
        STARLING_LOG(warn, "general.malloc_keep_free_bytes: the allocator refused {}", bytes);
    }
#else
    (void)bytes;
#endif
}

}  // namespace

int main(int argc, char** argv) {
    using namespace starling;
    config::CliOptions cli;
    config::BrokerConfig cfg;
    try {
        cfg = config::load(argc, argv, &cli);
    } catch (const config::ConfigError& e) {
        std::fprintf(stderr, "starlingd: %s\n", e.what());
        std::fprintf(stderr, "starlingd: run 'starlingd --help' for the options\n");
        return 2;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "starlingd: %s\n", e.what());
        return 2;
    }
    if (cli.help) {
        std::fputs(config::usage().c_str(), stdout);
        return 0;
    }
    if (cli.version) {
        std::puts("starlingd 0.1.0");
        return 0;
    }
    if (cli.print_module_config) {
        std::fputs(config::module_config_text().c_str(), stdout);
        return 0;
    }
    for (const auto& w : config::warnings(cfg)) std::fprintf(stderr, "starlingd: warning: %s\n", w.c_str());
    if (cli.check_config) {
        std::printf("starlingd: configuration OK (%s)\n",
                    cli.config ? cli.config->c_str() : "built-in defaults and command line");
        return 0;
    }
    util::g_log_level.store(static_cast<int>(cfg.general.log_level));
    if (cfg.c2s.allow_plaintext) {
        STARLING_LOG(warn, "*** --allow-plaintext: clients may authenticate WITHOUT TLS; passwords can be "
                           "read on the network. Use it on loopback and for benchmarks only. ***");
    }
    raise_descriptor_limit();
    set_malloc_keep_free(cfg.general.malloc_keep_free_bytes);
    try {
        server::Broker broker(cfg);
        // SIGHUP (systemd ExecReload=): read the configuration again and apply what can change
        // on a running broker: the log level. Everything else needs a restart (deploy/README.md);
        // a file that no longer parses is reported and the running settings stay.
        broker.run([argc, argv, &cfg] {
            try {
                const auto fresh = config::load(argc, argv, nullptr);
                util::g_log_level.store(static_cast<int>(fresh.general.log_level));
                STARLING_LOG(info, "reloaded: log level {}{}", config::to_string(fresh.general.log_level),
                             fresh == cfg ? "" : "; other changes take effect at the next restart");
            } catch (const std::exception& e) {
                STARLING_LOG(error, "reload failed, keeping the running configuration: {}", e.what());
            }
        });
    } catch (const std::exception& e) {
        std::fprintf(stderr, "starlingd: %s\n", e.what());
        return 1;
    }
    return 0;
}
