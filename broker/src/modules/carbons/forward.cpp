#include "broker/src/modules/carbons/forward.hpp"

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

bool is_space(char c) noexcept { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

// Ends a name: what cannot be in one, as far as finding the end of a tag is concerned.
bool ends_name(char c) noexcept {
    return is_space(c) || c == '/' || c == '>' || c == '<' || c == '=' || c == '\'' || c == '"';
}

// The next attribute of a start tag's attribute region (`attrs`: from after the element name to
// before '/>' or '>'), from `p`. 1: `name` and `value` (raw, between the quotes) are set and `p`
// moved past it; 0: no more; -1: not an attribute.
int next_attribute(std::string_view attrs, std::size_t& p, std::string_view& name, std::string_view& value) noexcept {
    while (p < attrs.size() && is_space(attrs[p])) ++p;
    if (p >= attrs.size()) return 0;
    const std::size_t name_begin = p;
    while (p < attrs.size() && !ends_name(attrs[p])) ++p;
    if (p == name_begin) return -1;
    name = attrs.substr(name_begin, p - name_begin);
    while (p < attrs.size() && is_space(attrs[p])) ++p;
    if (p >= attrs.size() || attrs[p] != '=') return -1;
    ++p;
    while (p < attrs.size() && is_space(attrs[p])) ++p;
    if (p >= attrs.size() || (attrs[p] != '\'' && attrs[p] != '"')) return -1;
    const char quote = attrs[p++];
    const std::size_t close = attrs.find(quote, p);
    if (close == std::string_view::npos) return -1;
    value = attrs.substr(p, close - p);
    if (value.find('<') != std::string_view::npos) return -1;  // XML 1.0 §3.1 [10]
    p = close + 1;
    return 1;
}

// The first attribute named `qname` in a start tag's attribute region (already checked by
// read_start_tag); not present() when there is none. Like pugixml's attribute(): the first one.
RawText find_attribute(std::string_view attrs, std::string_view qname) noexcept {
    std::size_t p = 0;
    std::string_view name, value;
    while (next_attribute(attrs, p, name, value) == 1) {
        if (name == qname) return RawText(value, value.find('&') != std::string_view::npos);
    }
    return {};
}

struct StartTag {
    std::string_view qname;
    std::string_view attrs;  // between the name and '/>' or '>'
    std::size_t end = 0;     // one past its '>'
    bool self_closing = false;
};

// Reads the start tag at s[at] == '<': a name, attributes name='v' or name="v" ('>' allowed
// inside the quotes), optional '/', '>'. False when it is not one.
bool read_start_tag(std::string_view s, std::size_t at, StartTag& t) noexcept {
    std::size_t p = at + 1;
    while (p < s.size() && !ends_name(s[p])) ++p;
    if (p == at + 1) return false;
    t.qname = s.substr(at + 1, p - at - 1);
    const std::size_t attrs_begin = p;
    // The region ends at the first '>' outside quotes.
    char quote = 0;
    for (; p < s.size(); ++p) {
        const char c = s[p];
        if (quote != 0) {
            if (c == quote) quote = 0;
        } else if (c == '\'' || c == '"') {
            quote = c;
        } else if (c == '>') {
            break;
        }
    }
    if (p >= s.size()) return false;
    t.end = p + 1;
    t.self_closing = s[p - 1] == '/' && p - 1 >= attrs_begin;
    t.attrs = s.substr(attrs_begin, p - attrs_begin - (t.self_closing ? 1 : 0));
    std::size_t q = 0;
    std::string_view name, value;
    int r;
    while ((r = next_attribute(t.attrs, q, name, value)) == 1) {
    }
    return r == 0;
}

// A child of the top element, as the walk found it.
struct Child {
    std::string_view qname;
    std::string_view attrs;
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
RawText ns_of(const Child& c, std::string_view top_attrs) noexcept {
    const auto colon = c.qname.find(':');
    if (colon == std::string_view::npos) {
        if (auto ns = find_attribute(c.attrs, "xmlns")) return ns;
        if (auto ns = find_attribute(top_attrs, "xmlns")) return ns;
        return RawText::plain(xmpp::ns::client);
    }
    // "xmlns:" + prefix, without allocating: a prefix longer than any name we could be
    // looking for is still compared exactly, piecewise.
    const std::string_view prefix = c.qname.substr(0, colon);
    auto find_decl = [prefix](std::string_view attrs) -> RawText {
        std::size_t p = 0;
        std::string_view name, value;
        while (next_attribute(attrs, p, name, value) == 1) {
            if (name.size() == 6 + prefix.size() && name.substr(0, 6) == "xmlns:" && name.substr(6) == prefix)
                return RawText(value, value.find('&') != std::string_view::npos);
        }
        return {};
    };
    if (auto ns = find_decl(c.attrs)) return ns;
    return find_decl(top_attrs);
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
    }
}

// Calls on_child(const Child&, top element's attribute region) for each child of the element
// in `s`, in order, once its end is known. False (maybe after some calls) when `s` is not one
// element: then the caller must drop what it learnt.
template <class OnChild>
bool for_each_child(std::string_view s, OnChild&& on_child) noexcept {
    StartTag top;
    if (s.size() < 2 || s[0] != '<' || !read_start_tag(s, 0, top)) return false;
    auto only_space_after = [s](std::size_t p) {
        for (; p < s.size(); ++p) {
            if (!is_space(s[p])) return false;
        }
        return true;
    };
    if (top.self_closing) return only_space_after(top.end);
    std::size_t depth = 1;  // 1: in the top element's content; 2: in a child's
    Child child;
    std::size_t p = top.end;
    for (;;) {
        const std::size_t lt = s.find('<', p);  // text (and any '>' in it) is skipped
        if (lt == std::string_view::npos) return false;
        const std::string_view rest = s.substr(lt);
        // Restricted XML (RFC 6120 §11.1) leaves only CDATA of these three, but the bytes may
        // be anything: skip the others as pugixml's parse_default does.
        if (rest.starts_with("<![CDATA[")) {
            const std::size_t e = s.find("]]>", lt + 9);
            if (e == std::string_view::npos) return false;
            p = e + 3;
            continue;
        }
        if (rest.starts_with("<!--")) {
            const std::size_t e = s.find("-->", lt + 4);
            if (e == std::string_view::npos) return false;
            p = e + 3;
            continue;
        }
        if (rest.starts_with("<?")) {
            const std::size_t e = s.find("?>", lt + 2);
            if (e == std::string_view::npos) return false;
            p = e + 2;
            continue;
        }
        if (rest.starts_with("<!")) return false;  // a DTD inside an element
        if (rest.starts_with("</")) {
            std::size_t q = lt + 2;
            while (q < s.size() && !ends_name(s[q])) ++q;
            const std::string_view name = s.substr(lt + 2, q - lt - 2);
            while (q < s.size() && is_space(s[q])) ++q;
            if (q >= s.size() || s[q] != '>') return false;
            p = q + 1;
            if (depth == 1) return name == top.qname && only_space_after(p);
            if (depth == 2) {
                if (name != child.qname) return false;
                child.end = p;
                on_child(static_cast<const Child&>(child), top.attrs);
            }
            --depth;
            continue;
        }
        StartTag t;
        if (!read_start_tag(s, lt, t)) return false;
        p = t.end;
        if (depth == 1) {
            child.qname = t.qname;
            child.attrs = t.attrs;
            child.begin = lt;
            if (t.self_closing) {
                child.end = t.end;
                on_child(static_cast<const Child&>(child), top.attrs);
                continue;
            }
        } else if (t.self_closing) {
            continue;
        }
        ++depth;
    }
}

}  // namespace

MessageFacts read_facts(std::string_view stanza) noexcept {
    MessageFacts f;
    const bool ok = for_each_child(stanza, [&f](const Child& c, std::string_view top_attrs) {
        note(f, c.local_name(), ns_of(c, top_attrs));
    });
    if (!ok) return {};
    f.parsed = true;
    return f;
}

namespace {

// The walk behind read_facts_removing and remove_children; `facts` may be null.
bool remove_matching(std::string& stanza, std::string_view name, std::string_view ns, std::string_view by,
                     MessageFacts* facts) {
    MessageFacts f;
    // [begin, end) of each child to cut; no allocation unless something matches.
    std::vector<std::pair<std::size_t, std::size_t>> cut;
    const bool ok = for_each_child(stanza, [&](const Child& c, std::string_view top_attrs) {
        const RawText child_ns = ns_of(c, top_attrs);
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
    const std::size_t end = start_tag_end(stanza);
    if (end == std::string_view::npos || end == 0) return false;
    if (stanza[end - 1] == '/') {
        // <message .../> -> <message ...>child</message>
        std::size_t name_end = 1;
        while (name_end < end && stanza[name_end] != ' ' && stanza[name_end] != '\t' && stanza[name_end] != '\n' &&
               stanza[name_end] != '\r' && stanza[name_end] != '/')
            ++name_end;
        const std::string name = stanza.substr(1, name_end - 1);
        if (end + 1 != stanza.size()) return false;
        stanza.erase(end - 1, 1);  // the '/'
        stanza += child;
        stanza += "</";
        stanza += name;
        stanza += '>';
        return true;
    }
    const std::size_t close = stanza.rfind("</");
    if (close == std::string::npos || close <= end) return false;
    stanza.insert(close, child);
    return true;
}

bool remove_children(std::string& stanza, std::string_view name, std::string_view ns, std::string_view by) {
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
