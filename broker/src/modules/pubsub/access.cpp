#include "broker/src/modules/pubsub/access.hpp"

namespace starling::modules::pubsub {

namespace {
// Owners, publishers and members are on a node's whitelist (§4.1 table 4: members may
// subscribe and retrieve items whatever the access model).
bool is_affiliated(Affiliation a) noexcept {
    return a == Affiliation::owner || a == Affiliation::publisher || a == Affiliation::member;
}
}  // namespace

SubscribeDecision decide_subscribe(AccessModel model, Affiliation affiliation, bool roster_admits) noexcept {
    if (affiliation == Affiliation::outcast) return SubscribeDecision::forbidden;
    if (is_affiliated(affiliation)) return SubscribeDecision::subscribed;
    switch (model) {
        case AccessModel::open: return SubscribeDecision::subscribed;
        case AccessModel::authorize: return SubscribeDecision::pending;
        case AccessModel::whitelist: return SubscribeDecision::closed_node;
        case AccessModel::presence:
            return roster_admits ? SubscribeDecision::subscribed : SubscribeDecision::presence_required;
        case AccessModel::roster:
            return roster_admits ? SubscribeDecision::subscribed : SubscribeDecision::not_in_roster_group;
    }
    return SubscribeDecision::closed_node;
}

RetrieveDecision decide_retrieve(AccessModel model, Affiliation affiliation, SubState state,
                                 bool roster_admits) noexcept {
    if (affiliation == Affiliation::outcast) return RetrieveDecision::forbidden;
    if (is_affiliated(affiliation)) return RetrieveDecision::allowed;
    switch (model) {
        case AccessModel::open: return RetrieveDecision::allowed;
        case AccessModel::authorize:
            return state == SubState::subscribed ? RetrieveDecision::allowed : RetrieveDecision::not_subscribed;
        case AccessModel::whitelist: return RetrieveDecision::closed_node;
        case AccessModel::presence:
            return roster_admits ? RetrieveDecision::allowed : RetrieveDecision::presence_required;
        case AccessModel::roster:
            return roster_admits ? RetrieveDecision::allowed : RetrieveDecision::not_in_roster_group;
    }
    return RetrieveDecision::closed_node;
}

bool may_publish(PublishModel model, Affiliation affiliation, SubState state) noexcept {
    if (affiliation == Affiliation::outcast) return false;
    if (affiliation == Affiliation::owner || affiliation == Affiliation::publisher) return true;
    switch (model) {
        case PublishModel::publishers: return false;
        case PublishModel::subscribers: return state == SubState::subscribed || affiliation == Affiliation::member;
        case PublishModel::open: return true;
    }
    return false;
}

bool may_retract(Affiliation affiliation) noexcept {
    return affiliation == Affiliation::owner || affiliation == Affiliation::publisher;
}

}  // namespace starling::modules::pubsub
