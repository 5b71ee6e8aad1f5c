#include "broker/src/modules/register/register_limiter.hpp"

#include <gtest/gtest.h>

namespace {

using namespace std::chrono_literals;
using starling::modules::RegistrationLimiter;
using Clock = RegistrationLimiter::Clock;

TEST(RegistrationLimiter, AllowsExactlyTheLimitPerWindow) {
    RegistrationLimiter l(3, 60s);
    const Clock::time_point t0{};
    EXPECT_TRUE(l.try_acquire("10.0.0.1", t0));
    EXPECT_TRUE(l.try_acquire("10.0.0.1", t0 + 1s));
    EXPECT_TRUE(l.try_acquire("10.0.0.1", t0 + 2s));   // the 3rd: at the limit
    EXPECT_FALSE(l.try_acquire("10.0.0.1", t0 + 3s));  // one past it
    EXPECT_FALSE(l.try_acquire("10.0.0.1", t0 + 59'999ms));
    EXPECT_TRUE(l.try_acquire("10.0.0.1", t0 + 60s));  // a new window
}

TEST(RegistrationLimiter, CountsEachAddressOnItsOwn) {
    RegistrationLimiter l(1, 60s);
    const Clock::time_point t0{};
    EXPECT_TRUE(l.try_acquire("10.0.0.1", t0));
    EXPECT_FALSE(l.try_acquire("10.0.0.1", t0));
    EXPECT_TRUE(l.try_acquire("10.0.0.2", t0));
    EXPECT_TRUE(l.try_acquire("::1", t0));
}

TEST(RegistrationLimiter, ZeroMeansNoLimit) {
    RegistrationLimiter l(0, 60s);
    for (int i = 0; i < 1000; ++i) EXPECT_TRUE(l.try_acquire("10.0.0.1", Clock::time_point{}));
    EXPECT_EQ(l.tracked(), 0u);
}

TEST(RegistrationLimiter, ExpiredAddressesAreSweptSoMemoryStaysBounded) {
    RegistrationLimiter l(1, 60s);
    const Clock::time_point t0{};
    for (int i = 0; i < 5000; ++i) ASSERT_TRUE(l.try_acquire("a" + std::to_string(i), t0));
    // A minute later the old windows are dead: new addresses push them out.
    for (int i = 0; i < 5000; ++i) ASSERT_TRUE(l.try_acquire("b" + std::to_string(i), t0 + 61s));
    EXPECT_LE(l.tracked(), 5000u + 1024u);
}

}  // namespace
