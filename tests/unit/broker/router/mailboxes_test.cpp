#include "broker/src/router/mailboxes.hpp"

#include <gtest/gtest.h>

#include <asio.hpp>
#include <atomic>
#include <thread>
#include <vector>

namespace {

using starling::router::Mailboxes;
using starling::router::ShardId;

TEST(Mailboxes, WakesOncePerBatchAndDeliversInOrder) {
    std::vector<ShardId> wakes;
    Mailboxes<int> mb(3, 16, [&](ShardId to) { wakes.push_back(to); });
    for (int i = 0; i < 5; ++i) {
        int v = i;
        ASSERT_TRUE(mb.send(0, 2, v));
    }
    int v = 100;
    ASSERT_TRUE(mb.send(1, 2, v));
    EXPECT_TRUE(wakes.empty());  // nothing is woken before the flush
    mb.flush(0);
    mb.flush(1);
    EXPECT_EQ(wakes, (std::vector<ShardId>{2}));  // one wake-up for two senders' batches
    EXPECT_EQ(mb.depth(2), 6u);
    std::vector<int> got;
    EXPECT_EQ(mb.drain(2, [&](int x) { got.push_back(x); }), 6u);
    EXPECT_EQ(got, (std::vector<int>{0, 1, 2, 3, 4, 100}));
    int w = 7;
    ASSERT_TRUE(mb.send(0, 2, w));
    mb.flush(0);
    EXPECT_EQ(wakes.size(), 2u);  // drained, so the next batch wakes again
}

TEST(Mailboxes, RefusesWhenFullSoTheSenderCanBackOff) {
    Mailboxes<int> mb(2, 2, [](ShardId) {});
    int a = 1, b = 2, c = 3;
    EXPECT_TRUE(mb.send(0, 1, a));
    EXPECT_TRUE(mb.send(0, 1, b));
    EXPECT_FALSE(mb.send(0, 1, c));
    EXPECT_EQ(c, 3);
}

TEST(Mailboxes, BudgetLeavesTheRestForANextWake) {
    int wakes = 0;
    Mailboxes<int> mb(2, 64, [&](ShardId) { ++wakes; });
    for (int i = 0; i < 10; ++i) {
        int v = i;
        ASSERT_TRUE(mb.send(1, 0, v));
    }
    mb.flush(1);
    EXPECT_EQ(wakes, 1);
    EXPECT_EQ(mb.drain(0, [](int) {}, 4), 4u);
    EXPECT_EQ(wakes, 2);  // re-woken for the rest
    EXPECT_EQ(mb.drain(0, [](int) {}, 100), 6u);
}

TEST(Mailboxes, CarriesMessagesBetweenRealReactorThreads) {
    // Two shards, each an io_context on its own thread, ping-pong a counter 10,000 times.
    constexpr int k_rounds = 10000;
    asio::io_context io[2];
    std::unique_ptr<Mailboxes<int>> mb;
    std::atomic<int> received{0};
    std::function<void(ShardId)> wake = [&](ShardId to) {
        asio::post(io[to], [&, to] {
            mb->drain(to, [&, to](int v) {
                received.fetch_add(1, std::memory_order_relaxed);
                if (v < k_rounds) {
                    int next = v + 1;
                    const ShardId other = static_cast<ShardId>(1 - to);
                    while (!mb->send(to, other, next)) std::this_thread::yield();
                }
            });
            mb->flush(to);
            if (received.load() >= k_rounds + 1) {
                io[0].stop();
                io[1].stop();
            }
        });
    };
    mb = std::make_unique<Mailboxes<int>>(2, 8, wake);
    auto guard0 = asio::make_work_guard(io[0]);
    auto guard1 = asio::make_work_guard(io[1]);
    std::thread t1([&] { io[1].run(); });
    asio::post(io[0], [&] {
        int first = 0;
        ASSERT_TRUE(mb->send(0, 1, first));
        mb->flush(0);
    });
    std::thread t0([&] { io[0].run(); });
    t0.join();
    t1.join();
    EXPECT_EQ(received.load(), k_rounds + 1);
}

}  // namespace
