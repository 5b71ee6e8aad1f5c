#include "broker/src/modules/pubsub/access.hpp"

#include <gtest/gtest.h>

namespace {

using namespace starling::modules::pubsub;

TEST(PubsubAccess, SubscribeDecisionsFollowTheAccessModel) {
    struct Row {
        AccessModel model;
        Affiliation affiliation;
        SubscribeDecision want;
    };
    const Row rows[] = {
        {AccessModel::open, Affiliation::none, SubscribeDecision::subscribed},
        {AccessModel::open, Affiliation::outcast, SubscribeDecision::forbidden},
        {AccessModel::whitelist, Affiliation::none, SubscribeDecision::closed_node},
        {AccessModel::whitelist, Affiliation::member, SubscribeDecision::subscribed},
        {AccessModel::whitelist, Affiliation::publisher, SubscribeDecision::subscribed},
        {AccessModel::whitelist, Affiliation::owner, SubscribeDecision::subscribed},
        {AccessModel::whitelist, Affiliation::outcast, SubscribeDecision::forbidden},
        {AccessModel::authorize, Affiliation::none, SubscribeDecision::pending},
        {AccessModel::authorize, Affiliation::member, SubscribeDecision::subscribed},
        {AccessModel::presence, Affiliation::none, SubscribeDecision::presence_required},
        {AccessModel::presence, Affiliation::member, SubscribeDecision::subscribed},
        {AccessModel::presence, Affiliation::outcast, SubscribeDecision::forbidden},
    };
    for (const auto& r : rows) {
        EXPECT_EQ(decide_subscribe(r.model, r.affiliation), r.want)
            << to_string(r.model) << " / " << to_string(r.affiliation);
    }
    // §4.5: subscribed to an owner's presence opens a presence node, and only such a node.
    EXPECT_EQ(decide_subscribe(AccessModel::presence, Affiliation::none, true), SubscribeDecision::subscribed);
    EXPECT_EQ(decide_subscribe(AccessModel::presence, Affiliation::outcast, true), SubscribeDecision::forbidden);
    EXPECT_EQ(decide_subscribe(AccessModel::whitelist, Affiliation::none, true), SubscribeDecision::closed_node);
    // Roster: in an allowed group, or refused with not-in-roster-group (§6.1.3.3).
    EXPECT_EQ(decide_subscribe(AccessModel::roster, Affiliation::none, false), SubscribeDecision::not_in_roster_group);
    EXPECT_EQ(decide_subscribe(AccessModel::roster, Affiliation::none, true), SubscribeDecision::subscribed);
    EXPECT_EQ(decide_retrieve(AccessModel::roster, Affiliation::none, SubState::subscribed, false),
              RetrieveDecision::not_in_roster_group);
    EXPECT_EQ(decide_retrieve(AccessModel::roster, Affiliation::member, SubState::none, false), RetrieveDecision::allowed);
}

TEST(PubsubAccess, RetrieveDecisionsFollowTheAccessModel) {
    struct Row {
        AccessModel model;
        Affiliation affiliation;
        SubState state;
        RetrieveDecision want;
    };
    const Row rows[] = {
        {AccessModel::open, Affiliation::none, SubState::none, RetrieveDecision::allowed},
        {AccessModel::open, Affiliation::outcast, SubState::none, RetrieveDecision::forbidden},
        {AccessModel::whitelist, Affiliation::none, SubState::none, RetrieveDecision::closed_node},
        {AccessModel::whitelist, Affiliation::none, SubState::subscribed, RetrieveDecision::closed_node},
        {AccessModel::whitelist, Affiliation::member, SubState::none, RetrieveDecision::allowed},
        {AccessModel::authorize, Affiliation::none, SubState::none, RetrieveDecision::not_subscribed},
        {AccessModel::authorize, Affiliation::none, SubState::pending, RetrieveDecision::not_subscribed},
        {AccessModel::authorize, Affiliation::none, SubState::subscribed, RetrieveDecision::allowed},
        {AccessModel::authorize, Affiliation::owner, SubState::none, RetrieveDecision::allowed},
        {AccessModel::presence, Affiliation::none, SubState::none, RetrieveDecision::presence_required},
        {AccessModel::presence, Affiliation::none, SubState::subscribed, RetrieveDecision::presence_required},
        {AccessModel::presence, Affiliation::owner, SubState::none, RetrieveDecision::allowed},
    };
    for (const auto& r : rows) {
        EXPECT_EQ(decide_retrieve(r.model, r.affiliation, r.state), r.want)
            << to_string(r.model) << " / " << to_string(r.affiliation) << " / " << to_string(r.state);
    }
    EXPECT_EQ(decide_retrieve(AccessModel::presence, Affiliation::none, SubState::none, true), RetrieveDecision::allowed);
    EXPECT_EQ(decide_retrieve(AccessModel::presence, Affiliation::outcast, SubState::none, true),
              RetrieveDecision::forbidden);
}

TEST(PubsubAccess, PublishFollowsThePublishModel) {
    EXPECT_TRUE(may_publish(PublishModel::publishers, Affiliation::owner, SubState::none));
    EXPECT_TRUE(may_publish(PublishModel::publishers, Affiliation::publisher, SubState::none));
    EXPECT_FALSE(may_publish(PublishModel::publishers, Affiliation::member, SubState::subscribed));
    EXPECT_FALSE(may_publish(PublishModel::publishers, Affiliation::none, SubState::subscribed));
    EXPECT_TRUE(may_publish(PublishModel::subscribers, Affiliation::none, SubState::subscribed));
    EXPECT_FALSE(may_publish(PublishModel::subscribers, Affiliation::none, SubState::pending));
    EXPECT_TRUE(may_publish(PublishModel::open, Affiliation::none, SubState::none));
    EXPECT_FALSE(may_publish(PublishModel::open, Affiliation::outcast, SubState::none));
}

TEST(PubsubAccess, OnlyOwnersAndPublishersRetract) {
    EXPECT_TRUE(may_retract(Affiliation::owner));
    EXPECT_TRUE(may_retract(Affiliation::publisher));
    EXPECT_FALSE(may_retract(Affiliation::member));
    EXPECT_FALSE(may_retract(Affiliation::none));
    EXPECT_FALSE(may_retract(Affiliation::outcast));
}

}  // namespace
