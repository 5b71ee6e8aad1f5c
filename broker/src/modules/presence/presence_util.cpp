#include "broker/src/modules/presence/presence_util.hpp"

#include "broker/src/session/shard_services.hpp"
#include "broker/src/router/router.hpp"
#include "xmpp/xml/raw_text.hpp"
#include "xmpp/xml/writer.hpp"

namespace starling::modules::presence {

namespace {
bool is_space(char c) noexcept { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }
}  // namespace

namespace {
// Copies `s` with attribute `drop` removed from its start tag, inserting `insert` (raw, with
// its leading space) right after the element name. The start tag was produced by the
// tokenizer-checked stamping (or by us): attributes are a name, optional spaces, '=', optional
// spaces, and a quoted value with no raw quote of its kind.
std::string rewrite_start_tag(std::string_view s, std::string_view drop, std::string_view insert) {
    std::size_t i = 1;
    while (i < s.size() && !is_space(s[i]) && s[i] != '/' && s[i] != '>') ++i;
    std::string out;
    out.reserve(s.size() + insert.size());
    out.append(s.substr(0, i));
    out += insert;
    while (i < s.size()) {
        const std::size_t attr_start = i;
        while (i < s.size() && is_space(s[i])) ++i;
        if (i >= s.size() || s[i] == '/' || s[i] == '>') {
            out.append(s.substr(attr_start));
            return out;
        }
        const std::size_t n0 = i;
        while (i < s.size() && s[i] != '=' && !is_space(s[i])) ++i;
        const std::string_view attr_name = s.substr(n0, i - n0);
        while (i < s.size() && s[i] != '\'' && s[i] != '"') ++i;
        if (i >= s.size()) return out.append(s.substr(attr_start)), out;
        const char q = s[i];
        const std::size_t close = s.find(q, i + 1);
        if (close == std::string_view::npos) return out.append(s.substr(attr_start)), out;
        i = close + 1;
        if (attr_name != drop) out.append(s.substr(attr_start, i - attr_start));
    }
    return out;
}
}  // namespace

std::string with_to(std::string_view s, std::string_view to) {
    std::string attr = " to='";
    xmpp::xml::escape_attribute_into(attr, to);
    attr += '\'';
    return rewrite_start_tag(s, "to", attr);
}

std::string without_attribute(std::string_view s, std::string_view name) { return rewrite_start_tag(s, name, {}); }

std::string make_presence(std::string_view from, std::string_view to, std::string_view type, std::string_view id,
                          std::string_view inner) {
    std::string out;
    xmpp::xml::Writer w(out);
    w.open("presence");
    if (!from.empty()) w.attr("from", from);
    if (!to.empty()) w.attr("to", to);
    if (!type.empty()) w.attr("type", type);
    if (!id.empty()) w.attr("id", id);
    if (!inner.empty()) w.raw(inner);
    w.close();
    return out;
}

std::vector<router::Endpoint*> sessions_of(ShardServices& shard, std::string_view bare) {
    return shard.router.sessions_of(bare);
}

bool route_presence(ShardServices& shard, std::string_view from, std::string_view to, std::string_view type,
                    std::string bytes) {
    if (to.empty()) return false;
    router::Envelope env;
    env.kind = router::Envelope::Kind::deliver;
    env.stanza = router::StanzaKind::presence;
    env.to = to;
    env.from = from;
    env.type = type;
    env.bytes = std::move(bytes);
    return shard.router.route(std::move(env));
}

int send_current_presence(ShardServices& shard, std::string_view owner, std::string_view to) {
    int n = 0;
    for (auto* s : sessions_of(shard, owner)) {
        if (!s->is_available() || s->last_presence().empty()) continue;
        route_presence(shard, s->jid()->full(), to, "", with_to(s->last_presence(), to));
        ++n;
    }
    return n;
}

int send_unavailable_from_all(ShardServices& shard, std::string_view owner, std::string_view to) {
    int n = 0;
    for (auto* s : sessions_of(shard, owner)) {
        if (!s->is_available()) continue;
        const auto& from = s->jid()->full();
        route_presence(shard, from, to, "unavailable", make_presence(from, to, "unavailable"));
        ++n;
    }
    return n;
}

std::string_view inner_xml(std::string_view bytes, std::size_t start_tag_len) {
    if (start_tag_len >= bytes.size()) return {};
    const std::size_t end = bytes.rfind("</");
    if (end == std::string_view::npos || end < start_tag_len) return {};
    return bytes.substr(start_tag_len, end - start_tag_len);
}

}  // namespace starling::modules::presence
