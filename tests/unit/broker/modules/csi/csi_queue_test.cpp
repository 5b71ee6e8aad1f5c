// XEP-0352 holding: what is urgent (table), and the queue: coalescing latest per full JID,
// delivery order, and the limits at the limit and one past it.
#include "broker/src/modules/csi/csi_queue.hpp"

#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace {

using starling::modules::csi::Classified;
using starling::modules::csi::classify;
using starling::modules::csi::CsiQueue;
using starling::modules::csi::QueueLimits;
using starling::modules::csi::Urgency;

struct Row {
    const char* name;
    std::string stanza;
    Urgency want;
};

TEST(CsiClassify, TellsUrgentStanzasFromOnesThatMayWait) {
    const std::string event =
        "<message from='pubsub.localhost' to='a@localhost/r' type='headline'><event "
        "xmlns='http://jabber.org/protocol/pubsub#event'><items node='t'><item id='1'><x xmlns='urn:t'>"
        "<body>not a message body</body></x></item></items></event></message>";
    const Row rows[] = {
        {"available", "<presence from='b@localhost/r' xmlns='jabber:client'><show>away</show></presence>", Urgency::presence},
        {"available_empty", "<presence from='b@localhost/r'/>", Urgency::presence},
        {"unavailable", "<presence from='b@localhost/r' type='unavailable'/>", Urgency::presence},
        {"subscribe", "<presence from='b@localhost' type='subscribe'/>", Urgency::urgent},
        {"subscribed", "<presence from='b@localhost' type=\"subscribed\"/>", Urgency::urgent},
        {"presence_error", "<presence from='b@localhost' type='error'><error/></presence>", Urgency::urgent},
        {"presence_no_from", "<presence/>", Urgency::urgent},
        {"chat_body", "<message from='b@localhost/r' type='chat'><body>hi</body></message>", Urgency::urgent},
        {"body_after_state",
         "<message from='b@localhost/r' type='chat'><active xmlns='http://jabber.org/protocol/chatstates'/>"
         "<body>hi</body></message>",
         Urgency::urgent},
        {"chat_state", "<message from='b@localhost/r' type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>",
         Urgency::chat_state},
        {"chat_state_thread",
         "<message from='b@localhost/r' type='chat'><thread>t1</thread><paused "
         "xmlns=\"http://jabber.org/protocol/chatstates\"/></message>",
         Urgency::chat_state},
        {"pubsub_event", event, Urgency::data},
        {"pubsub_event_delay",
         "<message from='pubsub.localhost'><event xmlns='http://jabber.org/protocol/pubsub#event'/>"
         "<delay xmlns='urn:xmpp:delay' stamp='2026-01-01T00:00:00Z'/></message>",
         Urgency::data},
        {"pubsub_event_with_body",
         "<message from='pubsub.localhost'><event xmlns='http://jabber.org/protocol/pubsub#event'/><body>x</body></message>",
         Urgency::urgent},
        {"receipt", "<message from='b@localhost/r'><received xmlns='urn:xmpp:receipts' id='1'/></message>", Urgency::urgent},
        {"prefixed_child", "<message from='b@localhost/r' xmlns:e='urn:x'><e:thing/></message>", Urgency::urgent},
        {"subject", "<message from='room@localhost' type='groupchat'><subject>s</subject></message>", Urgency::urgent},
        {"message_error", "<message from='b@localhost' type='error'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>",
         Urgency::urgent},
        {"empty_message", "<message from='b@localhost/r'/>", Urgency::urgent},
        {"cdata_then_state",
         "<message from='b@localhost/r'><thread><![CDATA[<body>]]></thread><gone xmlns='http://jabber.org/protocol/chatstates'/></message>",
         Urgency::chat_state},
        {"quoted_gt", "<message from='b@localhost/r' id='a>b'><gone xmlns='http://jabber.org/protocol/chatstates'/></message>",
         Urgency::chat_state},
        {"iq", "<iq from='b@localhost/r' type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq>", Urgency::urgent},
        // The server's own ping goes past what is held; anything more than a bare ping does not.
        {"server_ping", "<iq from='localhost' to='a@localhost/r' type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>",
         Urgency::bypass},
        {"server_ping_dq", "<iq type=\"get\" id=\"p1\" from=\"localhost\"><ping xmlns=\"urn:xmpp:ping\"/></iq>",
         Urgency::bypass},
        {"server_ping_result", "<iq from='localhost' type='result' id='p1'/>", Urgency::urgent},
        {"server_ping_extra", "<iq from='localhost' type='get' id='p1'><ping xmlns='urn:xmpp:ping'/><x/></iq>",
         Urgency::urgent},
        {"server_other_iq", "<iq from='localhost' type='get' id='p1'><query xmlns='jabber:iq:version'/></iq>",
         Urgency::urgent},
        {"truncated", "<message from='b@localhost/r'><gone xmlns='http://jabber.org/protocol/chatstates'/>", Urgency::urgent},
        {"garbage", "hello", Urgency::urgent},
        {"empty", "", Urgency::urgent},
    };
    for (const auto& r : rows) EXPECT_EQ(classify(r.stanza).urgency, r.want) << r.name;
}

TEST(CsiClassify, KeysOnTheSendersFullJid) {
    EXPECT_EQ(classify("<presence from='b@localhost/phone'/>").from, "b@localhost/phone");
    EXPECT_EQ(classify("<message from='c@localhost/x'><gone xmlns='http://jabber.org/protocol/chatstates'/></message>").from,
              "c@localhost/x");
}

std::string presence(const std::string& from, int n) {
    return "<presence from='" + from + "'><status>" + std::to_string(n) + "</status></presence>";
}

std::vector<std::string> drained(CsiQueue& q) {
    std::vector<std::string> out;
    q.drain([&](std::string_view s) { out.emplace_back(s); });
    return out;
}

void push(CsiQueue& q, const std::string& s, CsiQueue::Push want = CsiQueue::Push::held) {
    EXPECT_EQ(q.push(s, classify(s)), want) << s;
}

TEST(CsiQueue, KeepsOnlyTheLatestPresencePerFullJid) {
    CsiQueue q;
    for (int i = 0; i < 10; ++i) {
        push(q, presence("b@localhost/r", i), i == 0 ? CsiQueue::Push::held : CsiQueue::Push::coalesced);
    }
    EXPECT_EQ(q.size(), 1u);
    EXPECT_EQ(drained(q), std::vector<std::string>{presence("b@localhost/r", 9)});
    EXPECT_TRUE(q.empty());
    EXPECT_EQ(q.bytes(), 0u);
}

TEST(CsiQueue, ResourcesOfOneAccountAreDifferentSenders) {
    CsiQueue q;
    push(q, presence("b@localhost/a", 1));
    push(q, presence("b@localhost/b", 1));
    push(q, presence("b@localhost/a", 2), CsiQueue::Push::coalesced);
    EXPECT_EQ(drained(q), (std::vector<std::string>{presence("b@localhost/b", 1), presence("b@localhost/a", 2)}));
}

TEST(CsiQueue, ANewerPresenceMovesBehindWhatCameBetween) {
    // What is written is a subsequence of what was delivered: the replaced presence does not
    // jump ahead of a notification that arrived after it.
    const std::string event = "<message from='b@localhost/a'><event xmlns='http://jabber.org/protocol/pubsub#event'/></message>";
    CsiQueue q;
    push(q, presence("b@localhost/a", 1));
    push(q, event);
    push(q, presence("c@localhost/a", 1));
    push(q, presence("b@localhost/a", 2), CsiQueue::Push::coalesced);
    EXPECT_EQ(drained(q), (std::vector<std::string>{event, presence("c@localhost/a", 1), presence("b@localhost/a", 2)}));
}

TEST(CsiQueue, PresenceAndChatStatesOfOneSenderAreKeptApart) {
    const std::string state = "<message from='b@localhost/a'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>";
    const std::string later = "<message from='b@localhost/a'><paused xmlns='http://jabber.org/protocol/chatstates'/></message>";
    CsiQueue q;
    push(q, presence("b@localhost/a", 1));
    push(q, state);
    push(q, later, CsiQueue::Push::coalesced);
    EXPECT_EQ(drained(q), (std::vector<std::string>{presence("b@localhost/a", 1), later}));
}

TEST(CsiQueue, NotificationsAreAllKeptInOrder) {
    CsiQueue q;
    std::vector<std::string> sent;
    for (int i = 0; i < 5; ++i) {
        sent.push_back("<message from='pubsub.localhost'><event xmlns='http://jabber.org/protocol/pubsub#event'><items node='n'><item id='" +
                       std::to_string(i) + "'/></items></event></message>");
        push(q, sent.back());
    }
    EXPECT_EQ(drained(q), sent);
}

TEST(CsiQueue, HoldsMaxHeldAndOverflowsOnePast) {
    QueueLimits limits;
    limits.max_held = 4;
    CsiQueue q(limits);
    for (int i = 0; i < 4; ++i) push(q, presence("u" + std::to_string(i) + "@localhost/r", 0));
    EXPECT_EQ(q.size(), 4u);
    // Coalescing at the limit does not grow the queue.
    push(q, presence("u0@localhost/r", 1), CsiQueue::Push::coalesced);
    EXPECT_EQ(q.size(), 4u);
    push(q, presence("u9@localhost/r", 0), CsiQueue::Push::overflow);
    const auto out = drained(q);
    ASSERT_EQ(out.size(), 5u);  // nothing dropped: the overflowing one is written too, last
    EXPECT_EQ(out.back(), presence("u9@localhost/r", 0));
    EXPECT_EQ(out[3], presence("u0@localhost/r", 1));
}

TEST(CsiQueue, OverflowsOnBytesOnePastTheLimit) {
    const std::string a = presence("a@localhost/r", 0);
    QueueLimits limits;
    limits.max_held_bytes = 2 * a.size();
    CsiQueue q(limits);
    push(q, a);
    push(q, presence("b@localhost/r", 0));  // same length: exactly at the limit
    EXPECT_EQ(q.bytes(), 2 * a.size());
    push(q, presence("c@localhost/r", 0), CsiQueue::Push::overflow);
}

TEST(CsiQueue, StaysCompactUnderLongCoalescingRuns) {
    QueueLimits limits;
    limits.max_held = 3;
    CsiQueue q(limits);
    for (int i = 0; i < 10000; ++i) {
        const auto want = i < 3 ? CsiQueue::Push::held : CsiQueue::Push::coalesced;
        push(q, presence("u" + std::to_string(i % 3) + "@localhost/r", i), want);
    }
    EXPECT_EQ(q.size(), 3u);
    // The latest of each, in the order the latest ones arrived.
    EXPECT_EQ(drained(q), (std::vector<std::string>{presence("u1@localhost/r", 9997), presence("u2@localhost/r", 9998),
                                                    presence("u0@localhost/r", 9999)}));
}

// A probe answered for an account with no resource online comes from its bare JID
// (RFC 6121 §4.3.2); when a resource of that account then comes online, the held bare
// unavailable is stale and goes. The other way round, a bare unavailable replaces every held
// presence of the account's resources.
TEST(CsiQueue, BareAndFullPresenceOfOneAccountReplaceEachOther) {
    CsiQueue q;
    const std::string bare_gone = "<presence from='dev@localhost' type='unavailable'/>";
    push(q, bare_gone);
    push(q, presence("other@localhost/r", 1));
    push(q, presence("dev@localhost/board", 1), CsiQueue::Push::coalesced);
    push(q, presence("dev@localhost/phone", 1));
    EXPECT_EQ(q.size(), 3u);
    push(q, bare_gone, CsiQueue::Push::coalesced);
    EXPECT_EQ(drained(q), (std::vector<std::string>{presence("other@localhost/r", 1), bare_gone}));
    EXPECT_EQ(q.bytes(), 0u);
    // After a drain nothing of the account is remembered.
    push(q, presence("dev@localhost/board", 2));
    push(q, presence("dev@localhost/board", 3), CsiQueue::Push::coalesced);
    EXPECT_EQ(drained(q), std::vector<std::string>{presence("dev@localhost/board", 3)});
}

// A fleet: thousands of devices, each changing status many times, held for one operator.
// What is held is one presence per device, within the default limits.
TEST(CsiQueue, DefaultLimitsHoldOnePresencePerDeviceOfAFleet) {
    CsiQueue q;
    for (int round = 0; round < 3; ++round) {
        for (int d = 0; d < 5000; ++d) {
            const std::string s = presence("dev" + std::to_string(d) + "@localhost/board", round);
            EXPECT_NE(q.push(s, classify(s)), CsiQueue::Push::overflow) << d;
        }
    }
    EXPECT_EQ(q.size(), 5000u);
    const auto out = drained(q);
    ASSERT_EQ(out.size(), 5000u);
    EXPECT_EQ(out.front(), presence("dev0@localhost/board", 2));
}

}  // namespace
