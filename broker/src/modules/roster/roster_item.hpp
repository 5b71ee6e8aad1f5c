// One roster item (RFC 6121 §2.1.2) with its subscription state (RFC 6121 §3, Appendix A), the
// record it is stored as, and the pure transitions of the subscription state machine. No I/O:
// the module decides, this file computes.
//
// Lives on: the stack of a handler on the home shard of the roster's owner.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace starling::modules::roster {

// RFC 6121 §2.1.2.5: the 'subscription' attribute.
enum class Sub : std::uint8_t { none, to, from, both };

std::string_view to_string(Sub s) noexcept;
inline bool has_to(Sub s) noexcept { return s == Sub::to || s == Sub::both; }
inline bool has_from(Sub s) noexcept { return s == Sub::from || s == Sub::both; }

struct RosterItem {
    std::string jid;  // the contact's bare JID, normalised
    std::string name;
    std::vector<std::string> groups;
    Sub sub = Sub::none;
    bool ask_out = false;      // "Pending Out": we sent subscribe, no answer yet (ask='subscribe')
    bool pending_in = false;   // "Pending In": the contact asked us, not answered yet
    bool approved = false;     // pre-approved (RFC 6121 §3.4)
    bool in_roster = false;    // visible in the roster (a lone Pending In is not, §3.1.3)
    std::string pending_stanza;  // the stored inbound subscribe (redelivered on login, §3.1.3)

    // Appends <item .../> as a roster get/push shows it (jabber:iq:roster).
    void write_xml(std::string& out) const;
    // What a client can see of the item (write_xml), "" when not in the roster: a change
    // bumps the roster version and is pushed.
    std::string visible() const;
};

// Record encoding (value of the `rosters` column, key = owner bare JID + '\0' + contact bare
// JID). FlatBuffers would be overkill for seven small fields read as a whole: a versioned,
// length-prefixed text record instead:
//   "R1" then fields, each "<decimal length>:<bytes>", in this order:
//   jid, name, flags, sub, pending_stanza, group count, groups...
//   flags: three chars '0'/'1' = ask_out, pending_in, approved, then in_roster.
// Unknown versions and truncated records fail to decode (nullopt): the item is treated as
// absent and logged by the caller.
std::string encode(const RosterItem& item);
std::optional<RosterItem> decode(std::string_view bytes);

// ---- Subscription state machine (RFC 6121 §3 and Appendix A) ---------------------------------
// Each returns what the server must do besides saving the item.

// The user sends <presence type='subscribe'/> to the contact (§3.1.2).
struct OutSubscribe {
    bool route = true;  // always routed (the contact's server auto-answers when already from/both)
};
OutSubscribe user_sends_subscribe(RosterItem& item);

// The user sends 'subscribed' (§3.2.1 approve, or §3.4 pre-approve).
struct OutSubscribed {
    bool route = false;          // approves a pending request: route, then send current presence
    bool send_presence = false;
};
OutSubscribed user_sends_subscribed(RosterItem& item);

// The user sends 'unsubscribed' (§3.2.2 deny, §3.5 cancel, or a pre-approval withdrawn).
struct OutUnsubscribed {
    bool route = false;
    bool send_unavailable = false;  // §3.5.2: the contact stops seeing us
};
OutUnsubscribed user_sends_unsubscribed(RosterItem& item);

// The user sends 'unsubscribe' (§3.3.2).
struct OutUnsubscribe {
    bool route = false;
};
OutUnsubscribe user_sends_unsubscribe(RosterItem& item);

// An inbound 'subscribe' from the contact, on the user's home shard (§3.1.3).
enum class InSubscribe : std::uint8_t {
    auto_subscribed,  // already from/both: answer 'subscribed' for the user, do not deliver
    pre_approved,     // §3.4: now from/both; answer 'subscribed' and send current presence
    deliver,          // pending in: deliver to the user's available resources (stored)
};
InSubscribe contact_sends_subscribe(RosterItem& item);
// An inbound 'subscribed' (§3.1.5): true when it changed the item (deliver it), else drop.
bool contact_sends_subscribed(RosterItem& item);
// An inbound 'unsubscribe' (§3.3.3): true when it changed the item (deliver it and send the
// contact unavailable presence from every available resource).
bool contact_sends_unsubscribe(RosterItem& item);
// An inbound 'unsubscribed' (§3.2.3, §3.5.3): true when it changed the item (deliver it).
bool contact_sends_unsubscribed(RosterItem& item);

// True when nothing is left worth storing (no subscription, nothing pending, not in roster).
bool is_empty(const RosterItem& item) noexcept;

}  // namespace starling::modules::roster
