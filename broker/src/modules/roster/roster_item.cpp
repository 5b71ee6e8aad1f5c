#include "broker/src/modules/roster/roster_item.hpp"

#include <charconv>

#include "xmpp/xml/writer.hpp"

namespace starling::modules::roster {

std::string_view to_string(Sub s) noexcept {
    switch (s) {
        case Sub::none: return "none";
        case Sub::to: return "to";
        case Sub::from: return "from";
        case Sub::both: return "both";
    }
    return "none";
}

void RosterItem::write_xml(std::string& out) const {
    xmpp::xml::Writer w(out);
    w.open("item").attr("jid", jid);
    if (!name.empty()) w.attr("name", name);
    w.attr("subscription", to_string(sub));
    if (ask_out) w.attr("ask", "subscribe");  // RFC 6121 §2.1.2.2
    if (approved) w.attr("approved", "true");  // §2.1.2.1, pre-approval
    for (const auto& g : groups) w.leaf("group", g);
    w.close();
}

std::string RosterItem::visible() const {
    std::string out;
    if (in_roster) write_xml(out);
    return out;
}

// ---- Record -------------------------------------------------------------------------------------

namespace {
void field(std::string& out, std::string_view v) {
    out += std::to_string(v.size());
    out += ':';
    out += v;
}

bool read_field(std::string_view& in, std::string_view& v) {
    const auto colon = in.find(':');
    if (colon == std::string_view::npos || colon == 0 || colon > 10) return false;
    std::size_t n = 0;
    const auto r = std::from_chars(in.data(), in.data() + colon, n);
    if (r.ec != std::errc{} || r.ptr != in.data() + colon) return false;
    in.remove_prefix(colon + 1);
    if (n > in.size()) return false;
    v = in.substr(0, n);
    in.remove_prefix(n);
    return true;
}
}  // namespace

std::string encode(const RosterItem& item) {
    std::string out = "R1";
    field(out, item.jid);
    field(out, item.name);
    std::string flags;
    flags += item.ask_out ? '1' : '0';
    flags += item.pending_in ? '1' : '0';
    flags += item.approved ? '1' : '0';
    flags += item.in_roster ? '1' : '0';
    field(out, flags);
    field(out, std::to_string(static_cast<int>(item.sub)));
    field(out, item.pending_stanza);
    field(out, std::to_string(item.groups.size()));
    for (const auto& g : item.groups) field(out, g);
    return out;
}

std::optional<RosterItem> decode(std::string_view in) {
    if (in.substr(0, 2) != "R1") return std::nullopt;
    in.remove_prefix(2);
    RosterItem item;
    std::string_view jid, name, flags, sub, pending, count;
    if (!read_field(in, jid) || !read_field(in, name) || !read_field(in, flags) || !read_field(in, sub) ||
        !read_field(in, pending) || !read_field(in, count)) {
        return std::nullopt;
    }
    if (flags.size() != 4 || sub.size() != 1 || sub[0] < '0' || sub[0] > '3') return std::nullopt;
    std::size_t n = 0;
    const auto r = std::from_chars(count.data(), count.data() + count.size(), n);
    if (r.ec != std::errc{} || r.ptr != count.data() + count.size() || n > 10'000) return std::nullopt;
    item.jid = jid;
    item.name = name;
    item.ask_out = flags[0] == '1';
    item.pending_in = flags[1] == '1';
    item.approved = flags[2] == '1';
    item.in_roster = flags[3] == '1';
    item.sub = static_cast<Sub>(sub[0] - '0');
    item.pending_stanza = pending;
    for (std::size_t i = 0; i < n; ++i) {
        std::string_view g;
        if (!read_field(in, g)) return std::nullopt;
        item.groups.emplace_back(g);
    }
    if (!in.empty()) return std::nullopt;
    return item;
}

// ---- State machine (RFC 6121 Appendix A) ---------------------------------------------------------

OutSubscribe user_sends_subscribe(RosterItem& item) {
    // A.2.1: None/From gain Pending Out; To/Both unchanged. Routed in every case: the contact's
    // server answers 'subscribed' itself when we already have a subscription (§3.1.3).
    // §3.1.2: the item is created (visible) when it does not exist.
    item.in_roster = true;
    if (!has_to(item.sub)) item.ask_out = true;
    return {};
}

OutSubscribed user_sends_subscribed(RosterItem& item) {
    OutSubscribed r;
    if (item.pending_in) {
        // A.2.2: None+PendingIn -> From, To+PendingIn -> Both (Pending Out kept).
        item.pending_in = false;
        item.pending_stanza.clear();
        item.approved = false;
        item.sub = item.sub == Sub::to ? Sub::both : (item.sub == Sub::none ? Sub::from : item.sub);
        item.in_roster = true;
        r.route = true;
        r.send_presence = true;  // §3.2.1: the contact now gets our current presence
        return r;
    }
    if (!has_from(item.sub) && !item.approved) {
        // §3.4.1: pre-approval; the item is created when absent, with approved='true'.
        item.approved = true;
        item.in_roster = true;
    }
    return r;
}

OutUnsubscribed user_sends_unsubscribed(RosterItem& item) {
    OutUnsubscribed r;
    r.route = true;  // keeps both servers' views in step even when we see nothing to cancel
    if (item.pending_in) {
        // A.2.3 / §3.2.2: deny a pending request.
        item.pending_in = false;
        item.pending_stanza.clear();
    }
    if (has_from(item.sub)) {
        // §3.5.2: cancel the contact's subscription to us.
        item.sub = item.sub == Sub::both ? Sub::to : Sub::none;
        r.send_unavailable = true;
    }
    item.approved = false;  // §3.4: withdraws a pre-approval
    return r;
}

OutUnsubscribe user_sends_unsubscribe(RosterItem& item) {
    // A.2.4 / §3.3.2: To -> None, Both -> From, Pending Out dropped.
    item.ask_out = false;
    if (has_to(item.sub)) item.sub = item.sub == Sub::both ? Sub::from : Sub::none;
    return {.route = true};
}

InSubscribe contact_sends_subscribe(RosterItem& item) {
    if (has_from(item.sub)) return InSubscribe::auto_subscribed;  // A.3.1, §3.1.3
    if (item.approved) {
        // §3.4.2: honour the pre-approval.
        item.approved = false;
        item.pending_in = false;
        item.pending_stanza.clear();
        item.sub = item.sub == Sub::to ? Sub::both : Sub::from;
        item.in_roster = true;
        return InSubscribe::pre_approved;
    }
    item.pending_in = true;
    return InSubscribe::deliver;
}

bool contact_sends_subscribed(RosterItem& item) {
    // A.3.2: only an outstanding request (Pending Out) is granted.
    if (!item.ask_out) return false;
    item.ask_out = false;
    item.sub = item.sub == Sub::from ? Sub::both : (item.sub == Sub::none ? Sub::to : item.sub);
    item.in_roster = true;
    return true;
}

bool contact_sends_unsubscribe(RosterItem& item) {
    // A.3.3: the contact withdraws its subscription to us (or its pending request).
    bool changed = false;
    if (item.pending_in) {
        item.pending_in = false;
        item.pending_stanza.clear();
        changed = true;
    }
    if (has_from(item.sub)) {
        item.sub = item.sub == Sub::both ? Sub::to : Sub::none;
        changed = true;
    }
    return changed;
}

bool contact_sends_unsubscribed(RosterItem& item) {
    // A.3.4: our subscription (or request) is denied or cancelled.
    bool changed = false;
    if (item.ask_out) {
        item.ask_out = false;
        changed = true;
    }
    if (has_to(item.sub)) {
        item.sub = item.sub == Sub::both ? Sub::from : Sub::none;
        changed = true;
    }
    return changed;
}

bool is_empty(const RosterItem& item) noexcept {
    return !item.in_roster && item.sub == Sub::none && !item.ask_out && !item.pending_in && !item.approved;
}

}  // namespace starling::modules::roster
