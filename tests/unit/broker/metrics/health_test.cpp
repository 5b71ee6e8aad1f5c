// /health and /ready: the verdict from the shards' last turns and the store's state, and the
// HTTP answers the metrics port gives for them.
#include "broker/src/metrics/health.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>

#include <gtest/gtest.h>

#include "broker/src/metrics/metrics.hpp"

namespace {

using namespace std::chrono_literals;
using starling::metrics::evaluate_health;
using starling::metrics::HealthClock;
using starling::metrics::HealthReport;
using starling::metrics::Heartbeats;
using starling::metrics::MetricsServer;

TEST(Health, EveryShardTurningIsHealthy) {
    const auto r = evaluate_health({100ms, 900ms}, 10s, false, false);
    EXPECT_TRUE(r.ok);
    EXPECT_EQ(r.http_status, 200);
    EXPECT_EQ(r.body, "ok: 2 shard(s) turning\n");
}

TEST(Health, AShardAtTheLimitIsStillHealthyAndOnePastItIsNot) {
    EXPECT_TRUE(evaluate_health({10s}, 10s, false, true).ok);
    const auto r = evaluate_health({1s, 10s + 1ms}, 10s, false, true);
    EXPECT_FALSE(r.ok);
    EXPECT_EQ(r.http_status, 503);
    EXPECT_NE(r.body.find("shard 1: reactor stalled, last turn 10001 ms ago (limit 10000 ms)"), std::string::npos)
        << r.body;
    EXPECT_EQ(r.body.find("shard 0"), std::string::npos) << r.body;
}

TEST(Health, LivenessIgnoresTheStoreAndReadinessDoesNot) {
    EXPECT_TRUE(evaluate_health({1s}, 10s, false, false).ok);
    const auto r = evaluate_health({1s}, 10s, true, false);
    EXPECT_FALSE(r.ok);
    EXPECT_EQ(r.http_status, 503);
    EXPECT_NE(r.body.find("store: not writable"), std::string::npos) << r.body;
    const auto ok = evaluate_health({1s}, 10s, true, true);
    EXPECT_TRUE(ok.ok);
    EXPECT_EQ(ok.body, "ok: 1 shard(s) turning, store writable\n");
}

TEST(Health, NoShardsIsNotHealthy) { EXPECT_FALSE(evaluate_health({}, 10s, false, true).ok); }

TEST(Heartbeats, AgesCountFromTheLastBeatOfEachShard) {
    Heartbeats h(2);
    const auto t0 = HealthClock::now();
    h.beat(0, t0);
    h.beat(1, t0 - 5s);
    h.beat(7, t0);  // no such shard: ignored
    const auto ages = h.ages(t0 + 1s);
    ASSERT_EQ(ages.size(), 2u);
    EXPECT_EQ(ages[0], HealthClock::duration(1s));
    EXPECT_EQ(ages[1], HealthClock::duration(6s));
    EXPECT_EQ(h.ages(t0 - 10s)[0], HealthClock::duration::zero());  // a clock read before the beat
}

// One HTTP/1.0 GET on loopback; returns the whole answer.
std::string http_get(std::uint16_t port, const std::string& path) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        ::close(fd);
        return "connect failed";
    }
    const std::string req = "GET " + path + " HTTP/1.0\r\nHost: localhost\r\n\r\n";
    (void)::send(fd, req.data(), req.size(), MSG_NOSIGNAL);
    std::string out;
    char buf[4096];
    for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;) out.append(buf, static_cast<std::size_t>(n));
    ::close(fd);
    return out;
}

std::uint16_t free_port() {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    (void)::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    socklen_t len = sizeof a;
    (void)::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    ::close(fd);
    return ntohs(a.sin_port);
}

TEST(MetricsServer, ServesMetricsHealthAndReadyOnOnePort) {
    std::atomic<bool> store_ok{true};
    const auto port = free_port();
    const auto two_shards = [] {
        std::vector<starling::metrics::ShardSnapshot> s(2);
        s[1].shard = 1;
        return s;
    };
    MetricsServer server("127.0.0.1:" + std::to_string(port), two_shards,
                         [&](bool ready) { return evaluate_health({1ms, 20s}, 10s, ready, store_ok.load()); });
    EXPECT_EQ(server.port(), port);
    const auto metrics = http_get(port, "/metrics");
    EXPECT_TRUE(metrics.starts_with("HTTP/1.1 200")) << metrics;
    EXPECT_NE(metrics.find("starling_connections{shard=\"1\"} 0"), std::string::npos) << metrics;

    const auto health = http_get(port, "/health");
    EXPECT_TRUE(health.starts_with("HTTP/1.1 503")) << health;
    EXPECT_NE(health.find("shard 1: reactor stalled"), std::string::npos) << health;
    EXPECT_EQ(http_get(port, "/nothing-here").find("HTTP/1.1 200"), std::string::npos);
}

TEST(MetricsServer, ReadyFollowsTheStore) {
    std::atomic<bool> store_ok{true};
    const auto port = free_port();
    MetricsServer server("127.0.0.1:" + std::to_string(port), [] { return std::vector<starling::metrics::ShardSnapshot>(1); },
                         [&](bool ready) { return evaluate_health({1ms}, 10s, ready, store_ok.load()); });
    EXPECT_TRUE(http_get(port, "/ready").starts_with("HTTP/1.1 200"));
    store_ok = false;
    const auto ready = http_get(port, "/ready");
    EXPECT_TRUE(ready.starts_with("HTTP/1.1 503")) << ready;
    EXPECT_NE(ready.find("store: not writable"), std::string::npos) << ready;
    EXPECT_TRUE(http_get(port, "/health").starts_with("HTTP/1.1 200"));
}

TEST(MetricsServer, ATakenPortIsAStartUpErrorThatSaysWhatToDo) {
    const auto port = free_port();
    MetricsServer first("127.0.0.1:" + std::to_string(port), [] { return std::vector<starling::metrics::ShardSnapshot>(); });
    try {
        MetricsServer second("127.0.0.1:" + std::to_string(port), [] { return std::vector<starling::metrics::ShardSnapshot>(); });
        FAIL() << "a second server bound the same port";
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find("--metrics-port"), std::string::npos) << e.what();
    }
}

}  // namespace
