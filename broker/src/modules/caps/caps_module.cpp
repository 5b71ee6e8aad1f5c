#include "broker/src/modules/caps/caps_module.hpp"

#include <algorithm>

#include <mbedtls/sha1.h>

#include "broker/src/session/hooks.hpp"
#include "broker/src/util/dom.hpp"
#include "broker/src/util/log.hpp"
#include "xmpp/base64.hpp"
#include "xmpp/jid.hpp"
#include "xmpp/ns.hpp"
#include "xmpp/xml/raw_text.hpp"
#include "xmpp/xml/writer.hpp"

namespace starling::modules {

namespace {

constexpr std::string_view k_ns_info = k_ns_disco_info;
constexpr std::string_view k_ns_data = "jabber:x:data";
constexpr std::string_view k_notify = "+notify";
constexpr std::string_view k_id_prefix = "caps-";

struct CapsSlot {
    std::shared_ptr<const CapsInterests> interests;
};

std::string text_of(xmpp::xml::RawText t) { return t.present() ? t.unescape() : std::string(); }

std::shared_ptr<const CapsInterests> interests_from(const std::vector<std::string>& features) {
    auto out = std::make_shared<CapsInterests>();
    for (const auto& f : features) {
        if (f.size() > k_notify.size() && f.ends_with(k_notify)) out->nodes.push_back(f.substr(0, f.size() - k_notify.size()));
    }
    std::sort(out->nodes.begin(), out->nodes.end());
    out->nodes.erase(std::unique(out->nodes.begin(), out->nodes.end()), out->nodes.end());
    return out;
}

}  // namespace

std::string caps_ver(std::vector<std::string> identities, std::vector<std::string> features, std::vector<CapsForm> forms) {
    // XEP-0115 §5.1: every list sorted by byte value ("i;octet"), each item followed by '<';
    // identities, then features, then each form (by FORM_TYPE): FORM_TYPE, then its fields
    // by var, each var followed by its values, sorted.
    std::sort(identities.begin(), identities.end());
    std::sort(features.begin(), features.end());
    std::sort(forms.begin(), forms.end(), [](const CapsForm& a, const CapsForm& b) { return a.form_type < b.form_type; });
    std::string s;
    for (const auto& i : identities) (s += i) += '<';
    for (const auto& f : features) (s += f) += '<';
    for (auto& form : forms) {
        (s += form.form_type) += '<';
        std::sort(form.fields.begin(), form.fields.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
        for (auto& [var, values] : form.fields) {
            (s += var) += '<';
            std::sort(values.begin(), values.end());
            for (const auto& v : values) (s += v) += '<';
        }
    }
    unsigned char digest[20];
    mbedtls_sha1_ret(reinterpret_cast<const unsigned char*>(s.data()), s.size(), digest);
    return xmpp::base64_encode(std::string_view(reinterpret_cast<const char*>(digest), sizeof digest));
}

bool CapsInterests::contains(std::string_view node) const noexcept {
    return std::binary_search(nodes.begin(), nodes.end(), node);
}

CapsModule::CapsModule(CapsOptions options) : _options(options) {}
CapsModule::~CapsModule() = default;

const CapsInterests* CapsModule::interests_of(const Session& session) noexcept {
    const auto* slot = session.find_slot<CapsSlot>();
    return slot != nullptr ? slot->interests.get() : nullptr;
}

void CapsModule::install(ModuleContext& ctx) {
    _shard = &ctx.shard();
    // Ahead of the presence broadcast, so that the interests are known (when cached) by the
    // time SessionEvent::available is raised.
    ctx.on_outbound(router::StanzaKind::presence, [this](OutboundEvent& ev) { return on_presence(ev); }, 100);
    ctx.on_iq_response([this](Session& s, const xmpp::xml::ElementView& el) { return on_response(s, el); });
    ctx.on_interest([](const Session& s, std::string_view node) {
        const auto* i = interests_of(s);
        return i != nullptr && i->contains(node);
    });
    ctx.add_counter("starling_caps_queries_total", "XEP-0115 disco#info queries sent to clients", {}, &_counters.queries);
    ctx.add_counter("starling_caps_cache_hits_total", "Client presences whose XEP-0115 caps were already known", {},
                    &_counters.cache_hits);
    ctx.add_counter("starling_caps_unverified_total", "XEP-0115 answers that did not hash to their ver", {},
                    &_counters.unverified);
}

Handled CapsModule::on_presence(OutboundEvent& ev) {
    // Initial and later available presence of the session itself (RFC 6121 §4.2, §4.4).
    if (ev.to != nullptr || !ev.type.empty()) return Handled::no;
    util::StanzaDom dom(ev.element.bytes(), xmpp::ns::client);
    if (!dom.ok()) return Handled::no;
    const auto c = dom.child(dom.root(), "c", k_ns_caps);
    Session& session = ev.session;
    auto& slot = session.slot<CapsSlot>();
    if (!c) return Handled::no;  // no caps: interests stay as they were (§4.3.3: none)
    const std::string_view hash = c.attribute("hash").value();
    const std::string_view node = c.attribute("node").value();
    const std::string_view ver = c.attribute("ver").value();
    if (ver.empty() || node.empty() || ver.size() > 128 || node.size() > 1024) return Handled::no;
    std::string key(hash);
    key += ' ';
    key += ver;
    if (auto it = _cache.find(key); it != _cache.end()) {
        ++_counters.cache_hits;
        // Modules hear of it as SessionEvent::available, raised right after this hook. (A
        // change of caps while available is not re-announced: the next publish uses it.)
        slot.interests = it->second;
        return Handled::no;
    }
    if (auto p = _pending_by_key.find(key); p != _pending_by_key.end()) {
        _pending[p->second].waiting.push_back(session.shared());
        return Handled::no;
    }
    if (_pending.size() >= _options.max_pending && !_pending_order.empty()) {
        // Bounded: the oldest query is forgotten (its client never answered, or slowly).
        const std::string old = _pending_order.front();
        _pending_order.pop_front();
        if (auto it = _pending.find(old); it != _pending.end()) {
            _pending_by_key.erase(it->second.key);
            _pending.erase(it);
        }
    }
    std::string id(k_id_prefix);
    id += std::to_string(_next_id++);
    Pending p;
    p.ver = hash == "sha-1" ? std::string(ver) : std::string();  // only sha-1 is checked (§5.1)
    p.key = key;
    p.waiting.push_back(session.shared());
    _pending.emplace(id, std::move(p));
    _pending_by_key.emplace(key, id);
    _pending_order.push_back(id);
    // §6.2: ask the client for node#ver.
    std::string q;
    xmpp::xml::Writer w(q);
    w.open("iq").attr("type", "get").attr("from", session.domain()).attr("to", session.jid()->full()).attr("id", id);
    std::string node_ver(node);
    node_ver += '#';
    node_ver += ver;
    w.open("query").attr("xmlns", k_ns_info).attr("node", node_ver).close();
    w.close();
    w.finish();
    ++_counters.queries;
    session.deliver(q);
    return Handled::no;
}

Handled CapsModule::on_response(Session& session, const xmpp::xml::ElementView& el) {
    const std::string id = text_of(el.id());
    auto it = _pending.find(id);
    if (it == _pending.end()) return Handled::no;
    Pending p = std::move(it->second);
    _pending.erase(it);
    _pending_by_key.erase(p.key);
    std::erase(_pending_order, id);
    // Only the session asked may answer (an id guessed by another client changes nothing).
    bool asked = false;
    for (const auto& w : p.waiting) {
        if (w.lock().get() == &session) asked = true;
    }
    if (!asked) return Handled::yes;

    std::vector<std::string> identities, features;
    std::vector<CapsForm> forms;
    bool ok = false;
    if (el.type().equals("result")) {
        util::StanzaDom dom(el.bytes(), xmpp::ns::client);
        const auto query = dom.ok() ? dom.child(dom.root(), "query", k_ns_info) : pugi::xml_node();
        if (query) {
            ok = true;
            for (auto child = query.first_child(); child; child = child.next_sibling()) {
                if (child.type() != pugi::node_element) continue;
                const auto name = util::StanzaDom::local_name(child);
                const auto ns = dom.ns_of(child);
                if (name == "identity" && ns == k_ns_info) {
                    std::string i = child.attribute("category").value();
                    ((((i += '/') += child.attribute("type").value()) += '/') += child.attribute("xml:lang").value()) += '/';
                    i += child.attribute("name").value();
                    identities.push_back(std::move(i));
                } else if (name == "feature" && ns == k_ns_info) {
                    features.emplace_back(child.attribute("var").value());
                } else if (name == "x" && ns == k_ns_data) {
                    CapsForm form;
                    for (auto f = child.first_child(); f; f = f.next_sibling()) {
                        if (f.type() != pugi::node_element || util::StanzaDom::local_name(f) != "field") continue;
                        std::vector<std::string> values;
                        for (auto v = f.first_child(); v; v = v.next_sibling()) {
                            if (v.type() == pugi::node_element && util::StanzaDom::local_name(v) == "value") {
                                values.emplace_back(v.child_value());
                            }
                        }
                        const std::string var = f.attribute("var").value();
                        if (var == "FORM_TYPE") {
                            if (!values.empty()) form.form_type = values.front();
                        } else {
                            form.fields.emplace_back(var, std::move(values));
                        }
                    }
                    // §5.4 3.6: a form without FORM_TYPE is ignored.
                    if (!form.form_type.empty()) forms.push_back(std::move(form));
                }
            }
        }
    }
    auto interests = interests_from(features);
    if (ok && !p.ver.empty() && caps_ver(identities, features, std::move(forms)) == p.ver) {
        remember(p.key, interests);
    } else {
        ++_counters.unverified;
        // §5.4: not cached; it describes the session that answered and no other.
        p.waiting.clear();
        p.waiting.push_back(session.shared());
    }
    for (const auto& w : p.waiting) {
        if (auto s = w.lock()) set_interests(*s, interests);
    }
    return Handled::yes;
}

void CapsModule::remember(const std::string& key, std::shared_ptr<const CapsInterests> interests) {
    while (_cache.size() >= _options.max_cached && !_cache_order.empty()) {
        _cache.erase(_cache_order.front());
        _cache_order.pop_front();
    }
    if (_cache.emplace(key, std::move(interests)).second) _cache_order.push_back(key);
}

void CapsModule::set_interests(Session& session, std::shared_ptr<const CapsInterests> interests) {
    session.slot<CapsSlot>().interests = std::move(interests);
    if (session.is_available() && _shard->hooks != nullptr) {
        _shard->hooks->session_event(session, SessionEvent::interests);
    }
}

ModuleSpec CapsModule::spec() {
    return {
        .name = "caps",
        .summary = "XEP-0115 entity capabilities of clients: the PEP notifications they want (XEP-0163 §4.2)",
        .optional = true,
        .options = {
            OptionSpec::integer("max_cached", 10'000, 16, 10'000'000,
                                "verified capabilities each shard remembers (one per client software version)"),
            OptionSpec::integer("max_pending", 1'000, 16, 1'000'000,
                                "disco#info queries to clients each shard keeps in flight"),
        },
        .make = [](const OptionValues& v) -> std::unique_ptr<Module> {
            CapsOptions o;
            o.max_cached = static_cast<std::uint32_t>(v.integer("caps.max_cached"));
            o.max_pending = static_cast<std::uint32_t>(v.integer("caps.max_pending"));
            return std::make_unique<CapsModule>(o);
        },
    };
}

}  // namespace starling::modules
