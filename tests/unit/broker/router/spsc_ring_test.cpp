#include "broker/src/router/spsc_ring.hpp"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <thread>

namespace {

using starling::router::SpscRing;

TEST(SpscRing, RoundsCapacityUpToAPowerOfTwo) {
    SpscRing<int> r(100);
    EXPECT_EQ(r.capacity(), 128u);
}

TEST(SpscRing, KeepsOrderAndRefusesWhenFull) {
    SpscRing<int> r(4);
    for (int i = 0; i < 4; ++i) EXPECT_TRUE(r.try_push(i));
    int extra = 99;
    EXPECT_FALSE(r.try_push(extra));  // full at capacity: the producer must back off
    EXPECT_EQ(extra, 99);             // and still owns its message
    std::vector<int> got;
    EXPECT_EQ(r.drain([&](int v) { got.push_back(v); }, 3), 3u);
    EXPECT_EQ(got, (std::vector<int>{0, 1, 2}));
    EXPECT_TRUE(r.try_push(4));
    EXPECT_TRUE(r.try_push(5));
    r.drain([&](int v) { got.push_back(v); });
    EXPECT_EQ(got, (std::vector<int>{0, 1, 2, 3, 4, 5}));
    EXPECT_TRUE(r.empty());
}

TEST(SpscRing, MovesOwnershipAndDestroysLeftovers) {
    auto shared = std::make_shared<std::string>("payload");
    {
        SpscRing<std::shared_ptr<std::string>> r(8);
        for (int i = 0; i < 5; ++i) {
            auto copy = shared;
            ASSERT_TRUE(r.try_push(copy));
        }
        EXPECT_EQ(shared.use_count(), 6);
        r.drain([](std::shared_ptr<std::string>) {}, 2);
        EXPECT_EQ(shared.use_count(), 4);
    }  // three left in the ring are destroyed with it
    EXPECT_EQ(shared.use_count(), 1);
}

TEST(SpscRing, TransfersEveryMessageInOrderAcrossThreads) {
    constexpr std::uint64_t k_count = 2'000'000;
    SpscRing<std::uint64_t> r(1024);
    std::thread producer([&] {
        for (std::uint64_t i = 0; i < k_count;) {
            std::uint64_t v = i;
            if (r.try_push(v)) ++i;
            else std::this_thread::yield();
        }
    });
    std::uint64_t expected = 0;
    bool in_order = true;
    while (expected < k_count) {
        r.drain([&](std::uint64_t v) {
            in_order &= v == expected;
            ++expected;
        });
    }
    producer.join();
    EXPECT_TRUE(in_order);
    EXPECT_EQ(expected, k_count);
    EXPECT_TRUE(r.empty());
}

}  // namespace
