#include "broker/src/modules/csi/csi_queue.hpp"

#include <algorithm>

namespace starling::modules::csi {

namespace {

constexpr std::string_view k_ns_client = "jabber:client";
constexpr std::string_view k_ns_chat_states = "http://jabber.org/protocol/chatstates";
constexpr std::string_view k_ns_pubsub_event = "http://jabber.org/protocol/pubsub#event";
constexpr std::string_view k_ns_delay = "urn:xmpp:delay";
constexpr std::string_view k_ns_shim = "http://jabber.org/protocol/shim";
constexpr std::string_view k_ns_address = "http://jabber.org/protocol/address";
constexpr std::string_view k_ns_hints = "urn:xmpp:hints";
constexpr std::string_view k_ns_stanza_id = "urn:xmpp:sid:0";

bool is_space(char c) noexcept { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

// A start tag read by bytes: its name and the few attributes classification looks at.
struct Tag {
    bool ok = false;
    bool self_closed = false;
    std::size_t end = 0;  // index just past its '>'
    std::string_view name;
    std::string_view type;
    std::string_view from;
    std::string_view xmlns;
    bool has_from = false;
};

// `s[pos]` is the '<' of a start tag.
Tag scan_tag(std::string_view s, std::size_t pos) noexcept {
    Tag t;
    std::size_t i = pos + 1;
    const std::size_t n = s.size();
    const std::size_t name_at = i;
    while (i < n && !is_space(s[i]) && s[i] != '/' && s[i] != '>') ++i;
    if (i == name_at || i >= n) return t;
    t.name = s.substr(name_at, i - name_at);
    for (;;) {
        while (i < n && is_space(s[i])) ++i;
        if (i >= n) return t;
        if (s[i] == '>') {
            t.end = i + 1;
            t.ok = true;
            return t;
        }
        if (s[i] == '/') {
            if (i + 1 >= n || s[i + 1] != '>') return t;
            t.self_closed = true;
            t.end = i + 2;
            t.ok = true;
            return t;
        }
        const std::size_t attr_at = i;
        while (i < n && s[i] != '=' && !is_space(s[i]) && s[i] != '>' && s[i] != '/') ++i;
        const std::string_view attr = s.substr(attr_at, i - attr_at);
        while (i < n && is_space(s[i])) ++i;
        if (attr.empty() || i >= n || s[i] != '=') return t;
        ++i;
        while (i < n && is_space(s[i])) ++i;
        if (i >= n || (s[i] != '\'' && s[i] != '"')) return t;
        const char quote = s[i++];
        const std::size_t close = s.find(quote, i);
        if (close == std::string_view::npos) return t;
        const std::string_view value = s.substr(i, close - i);
        if (attr == "type") t.type = value;
        else if (attr == "from") {
            t.from = value;
            t.has_from = true;
        } else if (attr == "xmlns") t.xmlns = value;
        i = close + 1;
    }
}

// What the first-level children of a message say about it.
enum class Child : std::uint8_t { neutral, chat_state, pubsub_event, urgent };

Child classify_child(const Tag& c) noexcept {
    // A prefixed child uses a declaration we would have to resolve: not cheap, so urgent.
    if (c.name.find(':') != std::string_view::npos) return Child::urgent;
    if (c.xmlns.empty() || c.xmlns == k_ns_client) {
        // <body/> is the message (Prosody's mod_csi_simple: "includes a textual message");
        // <subject/> changes a room's topic (ibid.). <thread/> only ties the rest together.
        return c.name == "thread" ? Child::neutral : Child::urgent;
    }
    if (c.xmlns == k_ns_chat_states) return Child::chat_state;
    if (c.xmlns == k_ns_pubsub_event && c.name == "event") return Child::pubsub_event;
    // Metadata that rides along with notifications and chat states and means nothing alone.
    if (c.xmlns == k_ns_delay || c.xmlns == k_ns_shim || c.xmlns == k_ns_address || c.xmlns == k_ns_hints ||
        c.xmlns == k_ns_stanza_id) {
        return Child::neutral;
    }
    return Child::urgent;  // receipts, encryption, carbons, anything else: the client decides
}

Classified classify_message(std::string_view s, const Tag& root) noexcept {
    Classified urgent{Urgency::urgent, {}};
    if (root.type == "error" || root.self_closed || !root.has_from) return urgent;
    bool chat_state = false;
    bool event = false;
    std::size_t depth = 0;
    std::size_t pos = root.end;
    const std::size_t n = s.size();
    bool ended = false;
    while (pos < n) {
        const std::size_t lt = s.find('<', pos);
        if (lt == std::string_view::npos || lt + 1 >= n) return urgent;  // unterminated: not ours
        if (s[lt + 1] == '/') {
            if (depth == 0) {  // the message's end tag
                ended = true;
                break;
            }
            --depth;
            const std::size_t gt = s.find('>', lt);
            if (gt == std::string_view::npos) return urgent;
            pos = gt + 1;
            continue;
        }
        if (s[lt + 1] == '!') {
            if (s.substr(lt, 9) != "<![CDATA[") return urgent;
            const std::size_t end = s.find("]]>", lt + 9);
            if (end == std::string_view::npos) return urgent;
            pos = end + 3;
            continue;
        }
        const Tag child = scan_tag(s, lt);
        if (!child.ok) return urgent;
        if (depth == 0) {
            switch (classify_child(child)) {
                case Child::urgent: return urgent;
                case Child::chat_state: chat_state = true; break;
                case Child::pubsub_event: event = true; break;
                case Child::neutral: break;
            }
        }
        if (!child.self_closed) ++depth;
        pos = child.end;
    }
    if (!ended) return urgent;
    if (event) return {Urgency::data, root.from};
    if (chat_state) return {Urgency::chat_state, root.from};
    return urgent;  // nothing we know to be unimportant
}

}  // namespace

Classified classify(std::string_view stanza) noexcept {
    if (stanza.empty() || stanza.front() != '<') return {};
    const Tag root = scan_tag(stanza, 0);
    if (!root.ok) return {};
    if (root.name == "presence") {
        // Status changes wait; subscription requests and errors do not (mod_csi_simple:
        // "presence stanzas other than status changes").
        if ((root.type.empty() || root.type == "unavailable") && root.has_from && !root.from.empty()) {
            return {Urgency::presence, root.from};
        }
        return {};
    }
    if (root.name == "message") return classify_message(stanza, root);
    if (root.name == "iq" && root.type == "get" && root.has_from && !root.self_closed &&
        root.from.find('@') == std::string_view::npos && root.from.find('/') == std::string_view::npos) {
        // A server's XEP-0199 ping (§4.1): it checks the link and needs only the pong. Written
        // past what is held, it does not wake the client for the rest (a flush on every idle
        // ping would undo CSI for a quiet operator).
        const std::size_t lt = stanza.find('<', root.end);
        if (lt != std::string_view::npos) {
            const Tag child = scan_tag(stanza, lt);
            if (child.ok && child.self_closed && child.name == "ping" && child.xmlns == "urn:xmpp:ping") {
                const std::string_view rest = stanza.substr(child.end);
                if (rest == "</iq>") return {Urgency::bypass, root.from};
            }
        }
    }
    return {};  // iq (someone waits for the answer) and anything else
}

void CsiQueue::drop(const std::string& key) {
    auto it = _latest.find(key);
    if (it == _latest.end()) return;
    Item& old = _items[it->second];
    old.live = false;
    _bytes -= old.bytes.size();
    std::string().swap(old.bytes);
    --_live;
    _latest.erase(it);
}

CsiQueue::Push CsiQueue::push(std::string_view stanza, const Classified& c) {
    Push result = Push::held;
    if (c.urgency == Urgency::presence) {
        // Bare and full JIDs of one account replace each other (see the class comment).
        const std::size_t slash = c.from.find('/');
        const std::string bare(c.from.substr(0, slash));
        const std::size_t before = _live;
        if (slash == std::string_view::npos) {
            if (auto r = _resources.find(bare); r != _resources.end()) {
                for (const auto& full : r->second) drop("p" + full);
                _resources.erase(r);
            }
        } else {
            drop("p" + bare);
            auto& fulls = _resources[bare];
            const std::string_view full = c.from;
            if (std::find(fulls.begin(), fulls.end(), full) == fulls.end()) fulls.emplace_back(full);
        }
        if (_live != before) result = Push::coalesced;
    }
    if (c.urgency == Urgency::presence || c.urgency == Urgency::chat_state) {
        std::string key;
        key.reserve(c.from.size() + 1);
        key += c.urgency == Urgency::presence ? 'p' : 'c';
        key += c.from;
        const std::size_t at = _items.size();
        auto [it, fresh] = _latest.try_emplace(std::move(key), at);
        if (!fresh) {
            Item& old = _items[it->second];
            old.live = false;
            _bytes -= old.bytes.size();
            std::string().swap(old.bytes);
            --_live;
            it->second = at;
            result = Push::coalesced;
        }
    }
    _items.push_back({std::string(stanza), true});
    ++_live;
    _bytes += stanza.size();
    if (_items.size() > 2 * _live + 16) compact();
    if (_live > _limits.max_held || _bytes > _limits.max_held_bytes) return Push::overflow;
    return result;
}

void CsiQueue::compact() {
    std::vector<Item> live;
    live.reserve(_live);
    std::vector<std::size_t> moved(_items.size(), 0);
    for (std::size_t i = 0; i < _items.size(); ++i) {
        if (!_items[i].live) continue;
        moved[i] = live.size();
        live.push_back(std::move(_items[i]));
    }
    for (auto& [key, index] : _latest) index = moved[index];
    _items.swap(live);
}

}  // namespace starling::modules::csi
