#include "broker/src/c2s/sm_queue.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>

using starling::c2s::SmQueue;

namespace {

// Pushes `n` stanzas named s<first>..; returns the queue.
void push_n(SmQueue& q, int first, int n) {
    for (int i = first; i < first + n; ++i) ASSERT_TRUE(q.push("s" + std::to_string(i)));
}

}  // namespace

TEST(SmQueue, AckDropsWhatItCoversAndKeepsTheRestInOrder) {
    SmQueue q(100);
    push_n(q, 1, 5);
    EXPECT_EQ(q.sent(), 5u);
    EXPECT_EQ(q.ack(3), SmQueue::Ack::ok);
    EXPECT_EQ(q.acked(), 3u);
    EXPECT_EQ(q.size(), 2u);
    const auto rest = q.take_unacked();
    ASSERT_EQ(rest.size(), 2u);
    EXPECT_EQ(rest[0], "s4");
    EXPECT_EQ(rest[1], "s5");
    EXPECT_EQ(q.sent(), 3u) << "what is taken to be resent counts again when pushed";
}

TEST(SmQueue, AnHAboveWhatWasSentIsTooHigh) {
    SmQueue q(100);
    push_n(q, 1, 2);
    EXPECT_EQ(q.ack(3), SmQueue::Ack::too_high);
    EXPECT_EQ(q.size(), 2u) << "nothing dropped";
    EXPECT_EQ(q.ack(1000), SmQueue::Ack::too_high);
}

TEST(SmQueue, AnHBehindTheLastAckIsStaleAndIgnored) {
    SmQueue q(100);
    push_n(q, 1, 4);
    ASSERT_EQ(q.ack(3), SmQueue::Ack::ok);
    EXPECT_EQ(q.ack(2), SmQueue::Ack::stale);
    EXPECT_EQ(q.acked(), 3u);
    EXPECT_EQ(q.ack(3), SmQueue::Ack::ok) << "the same h again acknowledges nothing new";
    EXPECT_EQ(q.size(), 1u);
}

TEST(SmQueue, CountersWrapAroundAtTwoToTheThirtyTwo) {
    SmQueue q(100, 0xFFFF'FFFEu);  // two short of the wrap
    push_n(q, 1, 4);
    EXPECT_EQ(q.sent(), 2u) << "0xFFFFFFFE + 4 wraps to 2";
    EXPECT_EQ(q.ack(1), SmQueue::Ack::ok) << "h = 1 is three past 0xFFFFFFFE";
    EXPECT_EQ(q.size(), 1u);
    EXPECT_EQ(q.take_unacked().front(), "s4");
    EXPECT_EQ(q.ack(0xFFFF'FFFFu), SmQueue::Ack::stale) << "behind, across the wrap";
    EXPECT_EQ(q.ack(2), SmQueue::Ack::too_high);
}

TEST(SmQueue, PushBeyondTheBoundKeepsTheStanzaAndSaysSo) {
    SmQueue q(10);
    push_n(q, 1, 10);
    EXPECT_FALSE(q.push("s11")) << "the caller must end the stream";
    EXPECT_EQ(q.size(), 11u) << "and the stanza is kept, to be rerouted";
    EXPECT_EQ(q.take_unacked().back(), "s11");
}

TEST(SmQueue, AnIdleQueueHoldsNoMemory) {
    SmQueue q(100);
    push_n(q, 1, 50);
    ASSERT_EQ(q.ack(50), SmQueue::Ack::ok);
    EXPECT_TRUE(q.empty());
    EXPECT_EQ(q.bytes(), 0u);
}
