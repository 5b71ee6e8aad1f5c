#include "broker/src/modules/roster/roster_item.hpp"

#include <gtest/gtest.h>

namespace starling::modules::roster {
namespace {

RosterItem make(Sub sub, bool ask = false, bool pending_in = false) {
    RosterItem i;
    i.jid = "romeo@example.net";
    i.sub = sub;
    i.ask_out = ask;
    i.pending_in = pending_in;
    i.in_roster = true;
    return i;
}

TEST(RosterRecord, RoundTripsEveryField) {
    RosterItem i = make(Sub::from, true, true);
    i.name = "Romeo: 3:4 \n '<&>'";
    i.groups = {"Friends", "", "a:b"};
    i.approved = true;
    i.pending_stanza = "<presence from='romeo@example.net' type='subscribe'/>";
    auto back = decode(encode(i));
    ASSERT_TRUE(back);
    EXPECT_EQ(back->jid, i.jid);
    EXPECT_EQ(back->name, i.name);
    EXPECT_EQ(back->groups, i.groups);
    EXPECT_EQ(back->sub, Sub::from);
    EXPECT_TRUE(back->ask_out);
    EXPECT_TRUE(back->pending_in);
    EXPECT_TRUE(back->approved);
    EXPECT_TRUE(back->in_roster);
    EXPECT_EQ(back->pending_stanza, i.pending_stanza);
}

TEST(RosterRecord, RejectsUnknownVersionTruncationAndTrailingBytes) {
    const std::string good = encode(make(Sub::both));
    EXPECT_FALSE(decode("R2" + good.substr(2)));
    for (std::size_t n = 0; n < good.size(); ++n) EXPECT_FALSE(decode(good.substr(0, n))) << n;
    EXPECT_FALSE(decode(good + "x"));
    EXPECT_FALSE(decode("R117:romeo@example.net0:4:00001:90:0:"));  // subscription out of range
}

TEST(RosterItemXml, ShowsAskApprovedAndEscapedGroups) {
    RosterItem i = make(Sub::none, true);
    i.name = "R&J";
    i.approved = true;
    i.groups = {"<g>"};
    std::string out;
    i.write_xml(out);
    EXPECT_NE(out.find("jid='romeo@example.net'"), std::string::npos) << out;
    EXPECT_NE(out.find("subscription='none'"), std::string::npos) << out;
    EXPECT_NE(out.find("ask='subscribe'"), std::string::npos) << out;
    EXPECT_NE(out.find("approved='true'"), std::string::npos) << out;
    EXPECT_NE(out.find("name='R&amp;J'"), std::string::npos) << out;
    EXPECT_NE(out.find("<group>&lt;g&gt;</group>"), std::string::npos) << out;
    i.in_roster = false;
    EXPECT_EQ(i.visible(), "");
}

// RFC 6121 Appendix A, one row per state: (state before) -> (state after, action).
struct Row {
    Sub sub;
    bool ask;
    bool pin;
    Sub want_sub;
    bool want_ask;
    bool want_pin;
    bool changed;
};

TEST(SubscriptionStateMachine, InboundSubscribedFollowsAppendixA32) {
    const Row rows[] = {
        {Sub::none, false, false, Sub::none, false, false, false},
        {Sub::none, true, false, Sub::to, false, false, true},
        {Sub::none, true, true, Sub::to, false, true, true},
        {Sub::to, false, false, Sub::to, false, false, false},
        {Sub::from, true, false, Sub::both, false, false, true},
        {Sub::both, false, false, Sub::both, false, false, false},
    };
    for (const auto& r : rows) {
        RosterItem i = make(r.sub, r.ask, r.pin);
        EXPECT_EQ(contact_sends_subscribed(i), r.changed);
        EXPECT_EQ(i.sub, r.want_sub);
        EXPECT_EQ(i.ask_out, r.want_ask);
        EXPECT_EQ(i.pending_in, r.want_pin);
    }
}

TEST(SubscriptionStateMachine, InboundUnsubscribeFollowsAppendixA33) {
    const Row rows[] = {
        {Sub::none, false, false, Sub::none, false, false, false},
        {Sub::none, false, true, Sub::none, false, false, true},
        {Sub::none, true, true, Sub::none, true, false, true},
        {Sub::to, false, true, Sub::to, false, false, true},
        {Sub::from, false, false, Sub::none, false, false, true},
        {Sub::from, true, false, Sub::none, true, false, true},
        {Sub::both, false, false, Sub::to, false, false, true},
    };
    for (const auto& r : rows) {
        RosterItem i = make(r.sub, r.ask, r.pin);
        EXPECT_EQ(contact_sends_unsubscribe(i), r.changed);
        EXPECT_EQ(i.sub, r.want_sub);
        EXPECT_EQ(i.ask_out, r.want_ask);
        EXPECT_EQ(i.pending_in, r.want_pin);
    }
}

TEST(SubscriptionStateMachine, InboundUnsubscribedFollowsAppendixA34) {
    const Row rows[] = {
        {Sub::none, false, false, Sub::none, false, false, false},
        {Sub::none, true, false, Sub::none, false, false, true},
        {Sub::none, true, true, Sub::none, false, true, true},
        {Sub::to, false, false, Sub::none, false, false, true},
        {Sub::from, true, false, Sub::from, false, false, true},
        {Sub::both, false, false, Sub::from, false, false, true},
        {Sub::from, false, false, Sub::from, false, false, false},
    };
    for (const auto& r : rows) {
        RosterItem i = make(r.sub, r.ask, r.pin);
        EXPECT_EQ(contact_sends_unsubscribed(i), r.changed);
        EXPECT_EQ(i.sub, r.want_sub);
        EXPECT_EQ(i.ask_out, r.want_ask);
        EXPECT_EQ(i.pending_in, r.want_pin);
    }
}

TEST(SubscriptionStateMachine, InboundSubscribeIsAutoAnsweredPendingOrPreApproved) {
    RosterItem i = make(Sub::from);
    EXPECT_EQ(contact_sends_subscribe(i), InSubscribe::auto_subscribed);
    i = make(Sub::both);
    EXPECT_EQ(contact_sends_subscribe(i), InSubscribe::auto_subscribed);
    i = make(Sub::to);
    EXPECT_EQ(contact_sends_subscribe(i), InSubscribe::deliver);
    EXPECT_TRUE(i.pending_in);
    EXPECT_EQ(i.sub, Sub::to);
    i = make(Sub::to);
    i.approved = true;  // RFC 6121 §3.4
    EXPECT_EQ(contact_sends_subscribe(i), InSubscribe::pre_approved);
    EXPECT_EQ(i.sub, Sub::both);
    EXPECT_FALSE(i.approved);
}

TEST(SubscriptionStateMachine, OutboundSubscribedApprovesOrPreApproves) {
    RosterItem i = make(Sub::none, false, true);
    i.pending_stanza = "<presence/>";
    auto r = user_sends_subscribed(i);
    EXPECT_TRUE(r.route);
    EXPECT_TRUE(r.send_presence);
    EXPECT_EQ(i.sub, Sub::from);
    EXPECT_FALSE(i.pending_in);
    EXPECT_TRUE(i.pending_stanza.empty());

    i = make(Sub::to, true, true);
    r = user_sends_subscribed(i);
    EXPECT_EQ(i.sub, Sub::both);
    EXPECT_TRUE(i.ask_out);  // A.2.2: Pending Out kept

    RosterItem fresh;
    fresh.jid = "nurse@example.com";
    r = user_sends_subscribed(fresh);
    EXPECT_FALSE(r.route);
    EXPECT_TRUE(fresh.approved);
    EXPECT_TRUE(fresh.in_roster);
}

TEST(SubscriptionStateMachine, OutboundUnsubscribedCancelsAndUnsubscribeDropsTo) {
    RosterItem i = make(Sub::both);
    auto r = user_sends_unsubscribed(i);
    EXPECT_TRUE(r.send_unavailable);
    EXPECT_EQ(i.sub, Sub::to);
    auto u = user_sends_unsubscribe(i);
    EXPECT_TRUE(u.route);
    EXPECT_EQ(i.sub, Sub::none);

    i = make(Sub::none, true);
    user_sends_unsubscribe(i);
    EXPECT_FALSE(i.ask_out);
}

TEST(SubscriptionStateMachine, OutboundSubscribeSetsPendingOutOnlyWithoutTo) {
    RosterItem i;
    i.jid = "juliet@example.com";
    user_sends_subscribe(i);
    EXPECT_TRUE(i.ask_out);
    EXPECT_TRUE(i.in_roster);
    i = make(Sub::both);
    user_sends_subscribe(i);
    EXPECT_FALSE(i.ask_out);
}

TEST(RosterItem, IsEmptyOnlyWhenNothingIsLeft) {
    RosterItem i;
    i.jid = "x@y";
    EXPECT_TRUE(is_empty(i));
    i.pending_in = true;
    EXPECT_FALSE(is_empty(i));
}

}  // namespace
}  // namespace starling::modules::roster
