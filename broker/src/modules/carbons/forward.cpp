#include "broker/src/modules/carbons/forward.hpp"

#include <array>
#include <cstring>
#include <utility>
#include <vector>

#include "xmpp/ns.hpp"
#include "xmpp/xml/raw_text.hpp"

namespace starling::modules::fwd {

namespace {
constexpr std::string_view k_ns_muc_user = "http://jabber.org/protocol/muc#user";
constexpr std::string_view k_ns_mam = "urn:xmpp:mam:2";
}  // namespace

namespace {

using xmpp::xml::RawText;

// Byte classes for the walk: a table, one load per byte (the hooks run per message, issue 14).
enum : unsigned char { k_space = 1, k_name_end = 2 };
constexpr std::array<unsigned char, 256> k_class = [] {
    std::array<unsigned char, 256> t{};
    for (const unsigned char c : {' ', '\t', '\n', '\r'}) t[c] = k_space | k_name_end;
    // What cannot be in a name, as far as finding the end of a tag is concerned.
    for (const unsigned char c : {'/', '>', '<', '=', '\'', '"'}) t[c] = k_name_end;
    return t;
}();

bool is_space(char c) noexcept { return (k_class[static_cast<unsigned char>(c)] & k_space) != 0; }
bool ends_name(char c) noexcept { return (k_class[static_cast<unsigned char>(c)] & k_name_end) != 0; }

std::size_t skip_space(std::string_view s, std::size_t p) noexcept {
    while (p < s.size() && is_space(s[p])) ++p;
    return p;
}

std::size_t skip_name(std::string_view s, std::size_t p) noexcept {
    while (p < s.size() && !ends_name(s[p])) ++p;
    return p;
}

RawText raw_text(std::string_view value) noexcept {
    return RawText(value, std::memchr(value.data(), '&', value.size()) != nullptr);
}

// One attribute at s[p] (after its white space): name, optional white space, '=', optional
// white space, a quoted value without '<' (XML 1.0 §3.1 [10]; '>' is allowed). On success `p`
// is one past the closing quote.
bool read_attribute(std::string_view s, std::size_t& p, std::string_view& name, std::string_view& value) noexcept {
    const std::size_t name_begin = p;
    p = skip_name(s, p);
    if (p == name_begin) return false;
    name = s.substr(name_begin, p - name_begin);
    p = skip_space(s, p);
    if (p >= s.size() || s[p] != '=') return false;
    p = skip_space(s, p + 1);
    if (p >= s.size() || (s[p] != '\'' && s[p] != '"')) return false;
    const char quote = s[p++];
    const void* close = std::memchr(s.data() + p, quote, s.size() - p);
    if (close == nullptr) return false;
    const std::size_t len = static_cast<std::size_t>(static_cast<const char*>(close) - (s.data() + p));
    value = s.substr(p, len);
    if (std::memchr(value.data(), '<', len) != nullptr) return false;
    p += len + 1;
    return true;
}

struct StartTag {
    std::string_view qname;
    std::string_view attrs;  // between the name and '/>' or '>'
    RawText default_ns;      // its first xmlns='...'; not present() without one
    std::size_t end = 0;     // one past its '>'
    bool self_closing = false;
};

// Reads the start tag at s[at] == '<' in one pass: a name, then attributes each after white
// space, then '>' or '/>'. False when it is not one.
bool read_start_tag(std::string_view s, std::size_t at, StartTag& t) noexcept {
    std::size_t p = skip_name(s, at + 1);
    if (p == at + 1) return false;
    t.qname = s.substr(at + 1, p - at - 1);
    t.default_ns = {};
    const std::size_t attrs_begin = p;
    for (;;) {
        const std::size_t before = p;
        p = skip_space(s, p);
        if (p >= s.size()) return false;
        if (s[p] == '>' || s[p] == '/') {
            t.self_closing = s[p] == '/';
            if (t.self_closing && (p + 1 >= s.size() || s[p + 1] != '>')) return false;
            t.attrs = s.substr(attrs_begin, p - attrs_begin);
            t.end = p + (t.self_closing ? 2 : 1);
            return true;
        }
        if (p == before) return false;  // XML 1.0 §3.1 [40]: white space before each attribute
        std::string_view name, value;
        if (!read_attribute(s, p, name, value)) return false;
        if (name == "xmlns" && !t.default_ns.present()) t.default_ns = raw_text(value);
    }
}

// The first xmlns:`prefix` declaration in an attribute region read_start_tag accepted; not
// present() when there is none. The first, like pugixml's attribute().
RawText find_prefix_decl(std::string_view attrs, std::string_view prefix) noexcept {
    std::size_t p = 0;
    for (;;) {
        p = skip_space(attrs, p);
        std::string_view name, value;
        if (p >= attrs.size() || !read_attribute(attrs, p, name, value)) return {};
        if (name.size() == 6 + prefix.size() && name.starts_with("xmlns:") && name.substr(6) == prefix)
            return raw_text(value);
    }
}

// The first attribute named `qname` in an attribute region read_start_tag accepted.
RawText find_attribute(std::string_view attrs, std::string_view qname) noexcept {
    std::size_t p = 0;
    for (;;) {
        p = skip_space(attrs, p);
        std::string_view name, value;
        if (p >= attrs.size() || !read_attribute(attrs, p, name, value)) return {};
        if (name == qname) return raw_text(value);
    }
}

// A child of the top element, as the walk found it.
struct Child {
    std::string_view qname;
    std::string_view attrs;
    RawText default_ns;
    std::size_t begin = 0;  // its '<'
    std::size_t end = 0;    // one past its end tag (or its '/>')

    std::string_view local_name() const noexcept {
        const auto colon = qname.find(':');
        return colon == std::string_view::npos ? qname : qname.substr(colon + 1);
    }
};

// What StanzaDom::ns_of gives the child: the xmlns (or xmlns:prefix) declaration on the child,
// else on the top element, else jabber:client for an unprefixed name. An undeclared prefix
// (xml: included, whose namespace none of the readers care about) is not present().
RawText ns_of(const Child& c, const StartTag& top) noexcept {
    const auto colon = c.qname.find(':');
    if (colon == std::string_view::npos) {
        if (c.default_ns.present()) return c.default_ns;
        if (top.default_ns.present()) return top.default_ns;
        return RawText::plain(xmpp::ns::client);
    }
    const std::string_view prefix = c.qname.substr(0, colon);
    if (auto ns = find_prefix_decl(c.attrs, prefix)) return ns;
    return find_prefix_decl(top.attrs, prefix);
}

bool is_ns(const RawText& ns, std::string_view want) noexcept { return ns.present() && ns.equals(want); }

void note(MessageFacts& f, std::string_view name, const RawText& ns) noexcept {
    if (is_ns(ns, xmpp::ns::client)) {
        if (name == "body") f.has_body = true;
    } else if (is_ns(ns, k_ns_carbons)) {
        if (name == "private") f.is_private = true;
        else if (name == "sent" || name == "received") f.is_carbon = true;
    } else if (is_ns(ns, k_ns_hints)) {
        if (name == "no-copy") f.no_copy = true;
        else if (name == "no-store" || name == "no-permanent-store") f.no_store = true;
        else if (name == "store") f.store = true;
    } else if (is_ns(ns, k_ns_muc_user)) {
        f.is_muc_user = true;
    } else if (name == "result" && is_ns(ns, k_ns_mam)) {
        f.is_mam_result = true;
    } else if (name == "stanza-id" && is_ns(ns, k_ns_sid)) {
        f.has_stanza_id = true;
    }
}

// Skips past `close` from `from`; npos when it is not there.
std::size_t past(std::string_view s, std::size_t from, std::string_view close) noexcept {
    const std::size_t e = s.find(close, from);
    return e == std::string_view::npos ? e : e + close.size();
}

// Calls on_child(const Child&, const StartTag& top) for each child of the element in `s` whose
// start tag `top` is (read already), in order, once its end is known. False (maybe after some
// calls) when `s` is not one element: then the caller must drop what it learnt.
template <class OnChild>
bool for_each_child_after(std::string_view s, const StartTag& top, OnChild&& on_child) noexcept {
    if (top.self_closing) return skip_space(s, top.end) == s.size();
    std::size_t depth = 1;  // 1: in the top element's content; 2: in a child's
    Child child;
    StartTag t;
    std::size_t p = top.end;
    for (;;) {
        // Text (and any '>' in it) is skipped.
        const void* lt_at = p < s.size() ? std::memchr(s.data() + p, '<', s.size() - p) : nullptr;
        if (lt_at == nullptr) return false;
        const std::size_t lt = static_cast<std::size_t>(static_cast<const char*>(lt_at) - s.data());
        if (lt + 1 >= s.size()) return false;
        const char next = s[lt + 1];
        if (next == '!' || next == '?') {
            // Restricted XML (RFC 6120 §11.1) leaves only CDATA of these, but the bytes may be
            // anything: skip comments and PIs as pugixml's parse_default does.
            const std::string_view rest = s.substr(lt);
            if (rest.starts_with("<![CDATA[")) p = past(s, lt + 9, "]]>");
            else if (rest.starts_with("<!--")) p = past(s, lt + 4, "-->");
            else if (next == '?') p = past(s, lt + 2, "?>");
            else return false;  // a DTD inside an element
            if (p == std::string_view::npos) return false;
            continue;
        }
        if (next == '/') {
            if (depth > 2) {
                // A grandchild's end tag: no attributes, so its first '>' ends it.
                p = past(s, lt + 2, ">");
                if (p == std::string_view::npos) return false;
                --depth;
                continue;
            }
            // The top element's or a child's: the name is known, compare it.
            const std::string_view name = depth == 1 ? top.qname : child.qname;
            if (s.compare(lt + 2, name.size(), name) != 0) return false;
            const std::size_t q = skip_space(s, lt + 2 + name.size());
            if (q >= s.size() || s[q] != '>') return false;
            p = q + 1;
            if (depth == 1) return skip_space(s, p) == s.size();
            child.end = p;
            on_child(static_cast<const Child&>(child), static_cast<const StartTag&>(top));
            depth = 1;
            continue;
        }
        if (!read_start_tag(s, lt, t)) return false;
        p = t.end;
        if (depth == 1) {
            child.qname = t.qname;
            child.attrs = t.attrs;
            child.default_ns = t.default_ns;
            child.begin = lt;
            if (t.self_closing) {
                child.end = t.end;
                on_child(static_cast<const Child&>(child), static_cast<const StartTag&>(top));
                continue;
            }
        } else if (t.self_closing) {
            continue;
        }
        ++depth;
    }
}

// The same, reading the start tag first.
template <class OnChild>
bool for_each_child(std::string_view s, OnChild&& on_child) noexcept {
    StartTag top;
    if (s.size() < 2 || s[0] != '<' || !read_start_tag(s, 0, top)) return false;
    return for_each_child_after(s, top, std::forward<OnChild>(on_child));
}

}  // namespace

namespace {

// The facts of the element in `s` whose start tag `top` is, read already.
MessageFacts facts_after(std::string_view s, const StartTag& top) noexcept {
    MessageFacts f;
    const bool ok = for_each_child_after(s, top, [&f](const Child& c, const StartTag& t) {
        note(f, c.local_name(), ns_of(c, t));
    });
    if (!ok) return {};
    f.parsed = true;
    return f;
}

}  // namespace

MessageFacts read_facts(std::string_view stanza) noexcept {
    StartTag top;
    if (stanza.size() < 2 || stanza[0] != '<' || !read_start_tag(stanza, 0, top)) return {};
    return facts_after(stanza, top);
}

MessageFacts read_facts(const xmpp::xml::ElementView& el) noexcept {
    // The start tag as the tokenizer read it (well-formed, its attributes split): the walk
    // starts at the first child. The same facts as read_facts(el.bytes()): the fuzz harness
    // compares them.
    const std::string_view s = el.bytes();
    const std::string_view tag = el.start_tag();
    const std::string_view qname = el.qualified_name();
    if (tag.size() < qname.size() + 2 || s.size() < tag.size()) return {};
    StartTag top;
    top.qname = qname;
    top.self_closing = tag.ends_with("/>");
    const std::size_t attrs_begin = 1 + qname.size();
    top.attrs = tag.substr(attrs_begin, tag.size() - attrs_begin - (top.self_closing ? 2 : 1));
    top.end = tag.size();
    for (const auto& a : el.attributes()) {
        if (a.name == "xmlns") {
            top.default_ns = a.value;
            break;
        }
    }
    return facts_after(s, top);
}

namespace {

// The walk behind read_facts_removing and remove_children; `facts` may be null.
bool remove_matching(std::string& stanza, std::string_view name, std::string_view ns, std::string_view by,
                     MessageFacts* facts) {
    MessageFacts f;
    // [begin, end) of each child to cut; no allocation unless something matches.
    std::vector<std::pair<std::size_t, std::size_t>> cut;
    const bool ok = for_each_child(stanza, [&](const Child& c, const StartTag& top) {
        const RawText child_ns = ns_of(c, top);
        const std::string_view local = c.local_name();
        if (local == name && is_ns(child_ns, ns) && (by.empty() || find_attribute(c.attrs, "by").equals(by))) {
            cut.emplace_back(c.begin, c.end);
            return;
        }
        if (facts != nullptr) note(f, local, child_ns);
    });
    if (!ok) {
        if (facts != nullptr) *facts = {};
        return false;
    }
    f.parsed = true;
    if (facts != nullptr) *facts = f;
    for (auto it = cut.rbegin(); it != cut.rend(); ++it) stanza.erase(it->first, it->second - it->first);
    return !cut.empty();
}

}  // namespace

MessageFacts read_facts_removing(std::string& stanza, std::string_view name, std::string_view ns,
                                 std::string_view by, bool& removed) {
    MessageFacts f;
    removed = remove_matching(stanza, name, ns, by, &f);
    return f;
}

bool carbons_eligible(std::string_view type, const MessageFacts& f) noexcept {
    if (!f.parsed || f.is_carbon || f.is_muc_user || f.is_mam_result) return false;
    if (type == "chat") return true;
    return (type.empty() || type == "normal") && f.has_body;
}

bool archive_eligible(std::string_view type, const MessageFacts& f) noexcept {
    if (!f.parsed || f.is_carbon || f.is_mam_result) return false;
    if (!(type.empty() || type == "normal" || type == "chat")) return false;
    if (f.no_store) return false;
    return f.has_body || f.store;
}

std::size_t start_tag_end(std::string_view xml) noexcept {
    char quote = 0;
    for (std::size_t i = 0; i < xml.size(); ++i) {
        const char c = xml[i];
        if (quote != 0) {
            if (c == quote) quote = 0;
        } else if (c == '\'' || c == '"') {
            quote = c;
        } else if (c == '>') {
            return i;
        }
    }
    return std::string_view::npos;
}

void append_as_client_ns(std::string& out, std::string_view stanza) {
    const std::size_t end = start_tag_end(stanza);
    if (stanza.size() < 2 || stanza[0] != '<' || end == std::string_view::npos) {
        out += stanza;
        return;
    }
    const std::string_view tag = stanza.substr(0, end);
    std::size_t name_end = 1;
    while (name_end < tag.size() && tag[name_end] != ' ' && tag[name_end] != '\t' && tag[name_end] != '\n' &&
           tag[name_end] != '\r' && tag[name_end] != '/')
        ++name_end;
    const bool prefixed = tag.substr(1, name_end - 1).find(':') != std::string_view::npos;
    // An xmlns= attribute (not xmlns:p=, not text inside a value): outside quotes, after
    // whitespace, followed by optional whitespace and '='.
    auto is_space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
    bool has_default = false;
    char quote = 0;
    for (std::size_t p = name_end; p < tag.size() && !has_default; ++p) {
        const char c = tag[p];
        if (quote != 0) {
            if (c == quote) quote = 0;
            continue;
        }
        if (c == '\'' || c == '"') {
            quote = c;
            continue;
        }
        if (!is_space(tag[p - 1]) || tag.compare(p, 5, "xmlns") != 0) continue;
        std::size_t q = p + 5;
        while (q < tag.size() && is_space(tag[q])) ++q;
        has_default = q < tag.size() && tag[q] == '=';
    }
    if (prefixed || has_default) {
        out += stanza;
        return;
    }
    out.append(stanza.substr(0, name_end));
    out += " xmlns='jabber:client'";
    out.append(stanza.substr(name_end));
}

bool insert_child(std::string& stanza, std::string_view child) {
    if (stanza.size() < 4 || stanza[0] != '<' || stanza.back() != '>') return false;
    std::size_t name_end = 1;
    while (name_end < stanza.size() && !ends_name(stanza[name_end])) ++name_end;
    const std::string_view name = std::string_view(stanza).substr(1, name_end - 1);
    if (name.empty()) return false;
    if (stanza[stanza.size() - 2] == '/') {
        // <message .../> -> <message ...>child</message>: the '/>' must end the start tag.
        if (start_tag_end(stanza) != stanza.size() - 1) return false;
        const std::string closing = "</" + std::string(name) + '>';
        stanza.erase(stanza.size() - 2, 1);  // the '/'
        stanza += child;
        stanza += closing;
        return true;
    }
    // The end tag is the last '</' (an element ends with its own end tag, nothing after it): no
    // walk over the start tag, which may be long (issue 14: this runs on every archived message).
    const std::size_t close = stanza.rfind("</");
    if (close == std::string::npos || close <= name_end) return false;
    if (std::string_view(stanza).substr(close + 2, name.size()) != name) return false;
    const std::size_t q = skip_space(stanza, close + 2 + name.size());
    if (q != stanza.size() - 1) return false;
    stanza.insert(close, child);
    return true;
}

bool remove_children(std::string& stanza, std::string_view name, std::string_view ns, std::string_view by) {
    // A name is spelt as itself (no references in names, XML 1.0 §2.3): without `name` in the
    // bytes no child has it. It runs on every message delivered (carbons' <private/>), and a
    // name like "private" is rarer in a message than the namespace's "urn:xmpp:" (JIDs, other
    // children's namespaces), at whose every 'u' a search for `ns` stops.
    if (stanza.find(name) == std::string::npos) return false;
    // `ns` has none of & < > ' ", so only a character reference could spell it other than as
    // itself (xmlns='urn:xmpp:si&#x64;:0'): without both, no child can be in it.
    if (stanza.find(ns) == std::string::npos && stanza.find("&#") == std::string::npos) return false;
    return remove_matching(stanza, name, ns, by, nullptr);
}

std::string carbon(std::string_view wrapper, std::string_view from_bare, std::string_view to_full,
                   std::string_view type, std::string_view stanza) {
    std::string out;
    out.reserve(stanza.size() + 200);
    out += "<message from='";
    xmpp::xml::escape_attribute_into(out, from_bare);
    out += "' to='";
    xmpp::xml::escape_attribute_into(out, to_full);
    out += '\'';
    if (!type.empty()) {
        out += " type='";
        xmpp::xml::escape_attribute_into(out, type);
        out += '\'';
    }
    out += "><";
    out += wrapper;
    out += " xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'>";
    append_as_client_ns(out, stanza);
    out += "</forwarded></";
    out += wrapper;
    out += "></message>";
    return out;
}

}  // namespace starling::modules::fwd
