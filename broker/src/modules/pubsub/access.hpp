// Who may do what on a node (XEP-0060 §4.1 affiliations, §4.5 access models, §16.4.4
// publish_model). Pure functions of a node's configuration and one entity's affiliation and
// subscription state, so the rules are tested on their own.
//
// Lives on: stateless.
#pragma once

#include <cstdint>

#include "broker/src/modules/pubsub/node_config.hpp"
#include "broker/src/modules/pubsub/node_store.hpp"

namespace starling::modules::pubsub {

// The answer to a subscription request (§6.1).
enum class SubscribeDecision : std::uint8_t {
    subscribed,  // §6.1.2: open, or an affiliated entity
    pending,     // §6.1.2 / §8.6: authorize: an owner must approve
    closed_node, // §6.1.3.4: whitelist, not on it: not-allowed + <closed-node/>
    forbidden,   // §6.1.3.8: an outcast is blocked: forbidden
    presence_required,  // §6.1.3.2: presence, not subscribed to the owner's presence:
                        // not-authorized + <presence-subscription-required/>
    not_in_roster_group,  // §6.1.3.3: roster, not in an allowed group: not-authorized +
                          // <not-in-roster-group/>
};

// `roster_admits`: an owner's roster lets the entity in under the node's model (§4.5):
// presence, its subscription is from or both (RFC 6121 §2.1.2.5); roster, it is in one of the
// node's roster_groups_allowed. Ignored by the other models.
SubscribeDecision decide_subscribe(AccessModel model, Affiliation affiliation, bool roster_admits = false) noexcept;

// The answer to an items request (§6.5).
enum class RetrieveDecision : std::uint8_t {
    allowed,
    closed_node,     // §6.5.9 whitelist: not-allowed + <closed-node/>
    not_subscribed,  // §6.5.9 authorize: not-authorized + <not-subscribed/>
    forbidden,       // an outcast
    presence_required,  // §6.5.9 presence: not-authorized + <presence-subscription-required/>
    not_in_roster_group,  // §6.5.9 roster: not-authorized + <not-in-roster-group/>
};

RetrieveDecision decide_retrieve(AccessModel model, Affiliation affiliation, SubState state,
                                 bool roster_admits = false) noexcept;

// §7.1.3: publishing needs the right affiliation under the node's publish_model.
bool may_publish(PublishModel model, Affiliation affiliation, SubState state) noexcept;

// §7.2.3 and §4.1 table 4: owners and publishers may retract items (any item: the table
// gives publishers "delete item" without restricting it to their own).
bool may_retract(Affiliation affiliation) noexcept;

}  // namespace starling::modules::pubsub
