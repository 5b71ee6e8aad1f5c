#include "edge-agent/src/backoff.hpp"

#include <gtest/gtest.h>

#include <random>

using starling::agent::Backoff;
using Ms = std::chrono::milliseconds;

TEST(Backoff, CeilingDoublesFromTheBaseUpToTheCap) {
    Backoff b(Ms(100), Ms(1000));
    std::mt19937_64 rng(1);
    const long expected[] = {100, 200, 400, 800, 1000, 1000, 1000};
    for (long e : expected) {
        EXPECT_EQ(b.ceiling().count(), e);
        (void)b.next(rng);
    }
}

TEST(Backoff, DelaysAreFullJitterWithinTheCeiling) {
    Backoff b(Ms(100), Ms(100000));
    std::mt19937_64 rng(42);
    for (int i = 0; i < 6; ++i) (void)b.next(rng);  // ceiling 6400 now
    long lo = 1 << 30, hi = 0;
    for (int i = 0; i < 2000; ++i) {
        Backoff c = b;
        const auto d = c.next(rng).count();
        EXPECT_GE(d, 0);
        EXPECT_LE(d, 6400);
        lo = std::min(lo, d);
        hi = std::max(hi, d);
    }
    // Uniform over [0, 6400]: 2000 draws reach both ends of the range.
    EXPECT_LT(lo, 200);
    EXPECT_GT(hi, 6200);
}

TEST(Backoff, ResetStartsAgainFromTheBase) {
    Backoff b(Ms(50), Ms(5000));
    std::mt19937_64 rng(7);
    for (int i = 0; i < 10; ++i) (void)b.next(rng);
    EXPECT_EQ(b.ceiling().count(), 5000);
    b.reset();
    EXPECT_EQ(b.ceiling().count(), 50);
    EXPECT_EQ(b.attempts(), 0u);
}

TEST(Backoff, ManyAttemptsNeverOverflow) {
    Backoff b(Ms(1000), Ms(3600000));
    std::mt19937_64 rng(3);
    for (int i = 0; i < 200; ++i) EXPECT_LE(b.next(rng).count(), 3600000);
    EXPECT_EQ(b.ceiling().count(), 3600000);
}
