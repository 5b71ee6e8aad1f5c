#include "broker/src/storage/move_function.hpp"

#include <gtest/gtest.h>

#include <array>
#include <memory>
#include <utility>

namespace {

using starling::storage::MoveFunction;

TEST(MoveFunction, CallsAMoveOnlyCallableStoredInline) {
    auto p = std::make_unique<int>(41);
    MoveFunction<int(int)> f = [p = std::move(p)](int x) { return *p + x; };
    EXPECT_TRUE(f);
    EXPECT_EQ(f(1), 42);
}

TEST(MoveFunction, CallsACallableTooLargeForTheInlineBufferFromTheHeap) {
    std::array<char, 256> big{};
    big[255] = 7;
    auto owned = std::make_shared<int>(1);
    MoveFunction<int()> f = [big, owned] { return big[255] + *owned; };
    EXPECT_EQ(owned.use_count(), 2);
    MoveFunction<int()> g = std::move(f);
    EXPECT_FALSE(f);
    EXPECT_EQ(g(), 8);
    g = nullptr;
    EXPECT_EQ(owned.use_count(), 1);  // destroyed exactly once
}

TEST(MoveFunction, MovingTransfersTheCallableAndDestroysItOnce) {
    auto owned = std::make_shared<int>(5);
    {
        MoveFunction<int()> f = [owned] { return *owned; };
        MoveFunction<int()> g;
        g = std::move(f);
        EXPECT_FALSE(f);
        EXPECT_EQ(g(), 5);
        EXPECT_EQ(owned.use_count(), 2);
    }
    EXPECT_EQ(owned.use_count(), 1);
}

}  // namespace
