#include "broker/src/util/hex.hpp"

#include <gtest/gtest.h>

#include <cinttypes>
#include <cstdio>
#include <random>
#include <string>

namespace {

std::string printf_hex(std::uint64_t v) {
    char b[17];
    std::snprintf(b, sizeof b, "%016" PRIx64, v);
    return std::string(b, 16);
}

std::string hex16(std::uint64_t v) {
    char out[16];
    starling::util::hex16_into(v, out);
    return std::string(out, sizeof out);
}

}  // namespace

TEST(Hex16, WritesTheSameDigitsAsPrintf) {
    // Archive ids and segment names are these digits: they must never change.
    for (const std::uint64_t v : {std::uint64_t{0}, std::uint64_t{9}, std::uint64_t{10}, std::uint64_t{15},
                                  std::uint64_t{0x0123456789abcdef}, std::uint64_t{0xfedcba9876543210}, ~std::uint64_t{0}}) {
        EXPECT_EQ(hex16(v), printf_hex(v));
    }
    std::mt19937_64 random(14);
    for (int i = 0; i < 100'000; ++i) {
        const std::uint64_t v = random();
        ASSERT_EQ(hex16(v), printf_hex(v)) << i;
    }
}

TEST(Hex16, ParsesWhatItWrites) {
    std::mt19937_64 random(15);
    for (int i = 0; i < 10'000; ++i) {
        const std::uint64_t v = random();
        const auto parsed = starling::util::parse_hex16(hex16(v));
        ASSERT_TRUE(parsed);
        EXPECT_EQ(*parsed, v);
    }
    EXPECT_FALSE(starling::util::parse_hex16("0123456789ABCDEF")) << "lowercase only";
}
