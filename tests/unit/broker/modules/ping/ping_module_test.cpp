// XEP-0199 server pings: the decision table (at each limit and one past it) and the real timer
// on a real shard: a silent client is pinged and then dropped, an answering one stays.
#include "broker/src/modules/ping/ping_module.hpp"

#include <gtest/gtest.h>

#include "tests/unit/broker/support/live_shard.hpp"

namespace {

using namespace std::chrono_literals;
using starling::modules::next_ping_action;
using starling::modules::PingAction;
using starling::modules::PingModule;
using starling::modules::PingState;
using starling::modules::ServerPingOptions;
using Clock = std::chrono::steady_clock;

ServerPingOptions opts(std::chrono::milliseconds idle, std::chrono::milliseconds timeout) {
    ServerPingOptions o;
    o.idle = idle;
    o.timeout = timeout;
    return o;
}

TEST(NextPingAction, PingsOnlyOnceSilentForTheIdleTime) {
    const auto o = opts(60s, 30s);
    const Clock::time_point t0{};
    struct Row {
        std::chrono::milliseconds silent;
        PingAction want;
    };
    for (const Row& row : {Row{0ms, PingAction::none}, Row{59'999ms, PingAction::none}, Row{60'000ms, PingAction::send_ping},
                           Row{60'001ms, PingAction::send_ping}}) {
        PingState s;
        EXPECT_EQ(next_ping_action(s, t0 + 100s + row.silent, t0 + 100s, o), row.want) << row.silent.count();
        EXPECT_EQ(s.outstanding, row.want == PingAction::send_ping);
    }
}

TEST(NextPingAction, ClosesAtTheTimeoutWhenNothingArrived) {
    const auto o = opts(60s, 30s);
    const Clock::time_point last_read{};
    PingState s;
    ASSERT_EQ(next_ping_action(s, last_read + 60s, last_read, o), PingAction::send_ping);
    EXPECT_EQ(next_ping_action(s, last_read + 60s + 29'999ms, last_read, o), PingAction::none);
    EXPECT_TRUE(s.outstanding);
    EXPECT_EQ(next_ping_action(s, last_read + 90s, last_read, o), PingAction::close);
    EXPECT_EQ(next_ping_action(s, last_read + 90s + 1ms, last_read, o), PingAction::close);
}

TEST(NextPingAction, AnyInputAfterThePingClearsIt) {
    const auto o = opts(60s, 30s);
    const Clock::time_point t0{};
    PingState s;
    ASSERT_EQ(next_ping_action(s, t0 + 60s, t0, o), PingAction::send_ping);
    // Input at the very instant of the ping does not count as an answer; one tick later does.
    EXPECT_EQ(next_ping_action(s, t0 + 70s, t0 + 60s, o), PingAction::none);
    EXPECT_TRUE(s.outstanding);
    EXPECT_EQ(next_ping_action(s, t0 + 71s, t0 + 60s + 1ms, o), PingAction::none);
    EXPECT_FALSE(s.outstanding);
    // Then the idle clock starts again from that input.
    EXPECT_EQ(next_ping_action(s, t0 + 120s, t0 + 60s + 1ms, o), PingAction::none);
    EXPECT_EQ(next_ping_action(s, t0 + 120s + 1ms, t0 + 60s + 1ms, o), PingAction::send_ping);
}

TEST(NextPingAction, ZeroIdleDisablesServerPings) {
    PingState s;
    const Clock::time_point t0{};
    EXPECT_EQ(next_ping_action(s, t0 + 100h, t0, opts(0ms, 30s)), PingAction::none);
    EXPECT_FALSE(s.outstanding);
}

std::vector<std::unique_ptr<starling::modules::Module>> ping_only(ServerPingOptions o) {
    std::vector<std::unique_ptr<starling::modules::Module>> v;
    v.push_back(std::make_unique<PingModule>(o));
    return v;
}

TEST(PingModule, SilentClientIsPingedThenClosedWithConnectionTimeout) {
    auto o = opts(200ms, 200ms);
    o.tick = 20ms;
    starling::testing::OneShard shard(ping_only(o));
    shard.add_user("mute@localhost", "secret");
    starling::testing::TestClient c(shard.port);
    ASSERT_NE(c.login("mute", "secret").find("<jid>mute@localhost/r</jid>"), std::string::npos);

    const auto t0 = Clock::now();
    const auto ping = c.read_until("</iq>", 2s);
    const auto pinged_after = Clock::now() - t0;
    EXPECT_NE(ping.find("<ping xmlns='urn:xmpp:ping'/>"), std::string::npos) << ping;
    EXPECT_NE(ping.find("to='mute@localhost/r'"), std::string::npos) << ping;
    EXPECT_NE(ping.find("type='get'"), std::string::npos) << ping;
    EXPECT_GE(pinged_after, 150ms);

    const auto rest = c.read_until_closed(2s);
    EXPECT_TRUE(c.closed());
    EXPECT_NE(rest.find("<connection-timeout"), std::string::npos) << rest;
    EXPECT_GE(Clock::now() - t0, 350ms);
    EXPECT_EQ(shard.on_shard([&] { return shard.router->session_count(); }), 0u);
}

TEST(PingModule, AnsweringClientStaysThroughSeveralRounds) {
    auto o = opts(150ms, 150ms);
    o.tick = 20ms;
    starling::testing::OneShard shard(ping_only(o));
    shard.add_user("pong@localhost", "secret");
    starling::testing::TestClient c(shard.port);
    c.login("pong", "secret");
    for (int round = 0; round < 4; ++round) {
        const auto ping = c.read_until("</iq>", 2s);
        const auto at = ping.find("id='");
        ASSERT_NE(at, std::string::npos) << ping;
        const auto id = ping.substr(at + 4, ping.find('\'', at + 4) - at - 4);
        c.send("<iq type='result' to='localhost' id='" + id + "'/>");
    }
    EXPECT_FALSE(c.closed());
    c.send("<iq type='get' id='last' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>");
    EXPECT_NE(c.read_until("id='last'").find("type='result'"), std::string::npos);
    EXPECT_EQ(shard.on_shard([&] { return shard.router->session_count(); }), 1u);
}

TEST(PingModule, DisabledSendsNothing) {
    auto o = opts(0ms, 100ms);
    starling::testing::OneShard shard(ping_only(o));
    shard.add_user("calm@localhost", "secret");
    starling::testing::TestClient c(shard.port);
    c.login("calm", "secret");
    const auto got = c.read_until("<ping", 400ms);
    EXPECT_EQ(got.find("<ping"), std::string::npos) << got;
    EXPECT_FALSE(c.closed());
}

}  // namespace
