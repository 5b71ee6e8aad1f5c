#include "broker/src/session/hooks.hpp"

#include <algorithm>
#include <stdexcept>

#include "broker/src/util/dom.hpp"
#include "xmpp/xml/raw_text.hpp"
#include "xmpp/xml/writer.hpp"

namespace starling::session {

// ---- IqEvent ---------------------------------------------------------------------------------

IqEvent::IqEvent(Session& s, const xmpp::xml::ElementView& el, util::StanzaDom& d, pugi::xml_node p,
                 std::string_view t, bool account, IqType ty, std::string i)
    : session(s), element(el), dom(d), payload(p), to(t), to_account(account), type(ty), id(std::move(i)) {}

const xmpp::Jid& IqEvent::from() const noexcept { return *session.jid(); }

bool IqEvent::is_to_self_or_server() const noexcept { return !to_account || to == from().bare_view(); }

namespace {
// <iq type='result'> with `inner_xml` (may be empty) as content, RFC 6120 §8.2.3.
std::string iq_result(std::string_view from, std::string_view to, std::string_view id, std::string_view inner_xml) {
    std::string out;
    xmpp::xml::Writer w(out);
    w.open("iq").attr("from", from).attr("to", to).attr("type", "result").attr("id", id);
    if (!inner_xml.empty()) w.raw(inner_xml);
    w.close();
    w.finish();
    return out;
}

std::string iq_error(std::string_view from, std::string_view to, std::string_view id, xmpp::StanzaError condition,
                     std::string_view text, std::string_view app_condition_xml) {
    std::string error;
    xmpp::xml::write_stanza_error(error, condition, text, app_condition_xml);
    std::string out;
    xmpp::xml::Writer w(out);
    w.open("iq").attr("from", from).attr("to", to).attr("type", "error").attr("id", id).raw(error).close();
    w.finish();
    return out;
}
}  // namespace

void IqEvent::reply_result(std::string_view inner_xml) {
    if (_replied) return;
    _replied = true;
    session.deliver(iq_result(to, from().full(), id, inner_xml));
}

void IqEvent::reply_error(xmpp::StanzaError condition, std::string_view text, std::string_view app_condition_xml) {
    if (_replied) return;
    _replied = true;
    session.deliver(iq_error(to, from().full(), id, condition, text, app_condition_xml));
}

DeferredIq IqEvent::defer() {
    _replied = true;
    DeferredIq d;
    d._session = session.shared();
    d._from = std::string(to);
    d._to = from().full();
    d._id = id;
    return d;
}

void DeferredIq::result(std::string_view inner_xml) {
    if (auto s = _session.lock()) s->deliver(iq_result(_from, _to, _id, inner_xml));
}

void DeferredIq::error(xmpp::StanzaError condition, std::string_view text, std::string_view app_condition_xml) {
    if (auto s = _session.lock()) s->deliver(iq_error(_from, _to, _id, condition, text, app_condition_xml));
}

// ---- ModuleContext ---------------------------------------------------------------------------

void ModuleContext::add_disco_feature(std::string_view var) {
    auto& f = _host._features;
    if (std::find(f.begin(), f.end(), var) == f.end()) f.emplace_back(var);
    std::sort(f.begin(), f.end());
}

void ModuleContext::add_account_disco_feature(std::string_view var) {
    auto& f = _host._account_features;
    if (std::find(f.begin(), f.end(), var) == f.end()) f.emplace_back(var);
    std::sort(f.begin(), f.end());
}

void ModuleContext::add_account_disco_identity(std::string_view category, std::string_view type) {
    _host._account_identities.push_back({std::string(category), std::string(type)});
}

void ModuleContext::add_disco_item(std::string_view domain, std::string_view jid, std::string_view name) {
    _host._items.push_back({std::string(domain), std::string(jid), std::string(name)});
}

void ModuleContext::on_iq(IqType type, std::string_view ns, std::string_view name, IqHandler handler, int priority) {
    auto& v = _host._iq;
    v.push_back({type, std::string(ns), std::string(name), std::move(handler), priority});
    std::stable_sort(v.begin(), v.end(), [](const auto& a, const auto& b) { return a.priority > b.priority; });
}

void ModuleContext::on_outbound(router::StanzaKind kind, OutboundHandler handler, int priority) {
    auto& v = _host._outbound[static_cast<int>(kind)];
    v.push_back({priority, std::move(handler)});
    std::stable_sort(v.begin(), v.end(), [](const auto& a, const auto& b) { return a.priority > b.priority; });
}

void ModuleContext::on_inbound(router::StanzaKind kind, InboundHandler handler, int priority) {
    auto& v = _host._inbound[static_cast<int>(kind)];
    v.push_back({priority, std::move(handler)});
    std::stable_sort(v.begin(), v.end(), [](const auto& a, const auto& b) { return a.priority > b.priority; });
}

void ModuleContext::on_routed(router::StanzaKind kind, RoutedHandler handler) {
    _host._routed[static_cast<int>(kind)].push_back(std::move(handler));
}

void ModuleContext::on_session(SessionHandler handler) { _host._session.push_back(std::move(handler)); }

void ModuleContext::on_undeliverable(UndeliverableHandler handler) {
    _host._undeliverable.push_back(std::move(handler));
}

void ModuleContext::on_stream_features(FeaturesHandler handler) {
    _host._features_handlers.push_back(std::move(handler));
}

void ModuleContext::on_preauth_iq(std::string_view ns, std::string_view name, PreauthIqHandler handler) {
    _host._preauth.push_back({std::string(ns), std::string(name), std::move(handler)});
}

void ModuleContext::on_stream_element(std::string_view ns, std::string_view name, StreamElementHandler handler) {
    // Start-up only: two owners of one element is a bug in the module list.
    for (const auto& e : _host._elements) {
        if (e.ns == ns && e.name == name) {
            throw std::logic_error("two modules handle the stream element {" + e.ns + "}" + e.name);
        }
    }
    _host._elements.push_back({std::string(ns), std::string(name), std::move(handler)});
}

void ModuleContext::on_iq_response(IqResponseHandler handler) { _host._iq_responses.push_back(std::move(handler)); }

void ModuleContext::on_interest(InterestHandler handler) { _host._interests.push_back(std::move(handler)); }
void ModuleContext::on_account_deleted(AccountDeletedHandler handler) {
    _host._account_deleted.push_back(std::move(handler));
}

void ModuleContext::add_counter(std::string_view name, std::string_view help, MetricLabels labels,
                                const std::uint64_t* value) {
    if (value == nullptr) throw std::logic_error("module counter " + std::string(name) + " has no value");
    _host._counters.push_back({std::string(name), std::string(help), std::move(labels), value, {}, nullptr});
}

void ModuleContext::add_histogram(std::string_view name, std::string_view help, std::vector<double> bounds,
                                  const std::uint64_t* buckets, const double* sum) {
    if (buckets == nullptr || sum == nullptr || bounds.empty()) {
        throw std::logic_error("module histogram " + std::string(name) + " has no buckets");
    }
    _host._counters.push_back({std::string(name), std::string(help), {}, buckets, std::move(bounds), sum});
}

// ---- HookTable -------------------------------------------------------------------------------

void HookTable::install(ShardServices& shard, std::vector<std::unique_ptr<Module>> modules) {
    _shard = &shard;
    ModuleContext ctx(*this, shard);
    for (auto& m : modules) {
        m->install(ctx);
        _modules.push_back(std::move(m));
    }
}

Handled HookTable::handle_iq(IqEvent& ev) const {
    if (!ev.payload) return Handled::no;
    const auto ns = ev.dom.ns_of(ev.payload);
    const auto name = util::StanzaDom::local_name(ev.payload);
    for (const auto& e : _iq) {
        if (e.type == ev.type && e.name == name && e.ns == ns) {
            if (e.handler(ev) == Handled::yes) return Handled::yes;
        }
    }
    return Handled::no;
}

Handled HookTable::outbound(OutboundEvent& ev) const {
    for (const auto& h : _outbound[static_cast<int>(ev.kind)]) {
        if (h.handler(ev) == Handled::yes) return Handled::yes;
    }
    return Handled::no;
}

void HookTable::routed(RoutedEvent& ev) const {
    for (const auto& h : _routed[static_cast<int>(ev.env.stanza)]) h(ev);
}

router::Delivery HookTable::inbound(router::Envelope& env) const {
    if (_shard == nullptr) return router::Delivery::pass;
    InboundEvent ev{env, *_shard};
    for (const auto& h : _inbound[static_cast<int>(env.stanza)]) {
        if (h.handler(ev) == Handled::yes) return router::Delivery::handled;
    }
    return router::Delivery::pass;
}

router::Delivery HookTable::undeliverable(router::Envelope& env) const {
    if (_shard == nullptr) return router::Delivery::pass;
    for (const auto& h : _undeliverable) {
        if (h(env, *_shard) == Handled::yes) return router::Delivery::handled;
    }
    return router::Delivery::pass;
}

void HookTable::session_event(Session& session, SessionEvent event) const {
    for (const auto& h : _session) h(session, event);
}

void HookTable::stream_features(Session& session, bool authenticated, std::string& out) const {
    for (const auto& h : _features_handlers) h(session, authenticated, out);
}

Handled HookTable::preauth_iq(PreauthIqEvent& ev) const {
    if (!ev.payload) return Handled::no;
    const auto ns = ev.dom.ns_of(ev.payload);
    const auto name = util::StanzaDom::local_name(ev.payload);
    for (const auto& e : _preauth) {
        if (e.name == name && e.ns == ns && e.handler(ev) == Handled::yes) return Handled::yes;
    }
    return Handled::no;
}

Handled HookTable::stream_element(Session& session, const xmpp::xml::ElementView& el) const {
    // A handful of entries (CSI, stream management): a scan beats hashing the names.
    const auto name = el.local_name();
    for (const auto& e : _elements) {
        if (e.name == name && el.ns().equals(e.ns)) return e.handler(session, el);
    }
    return Handled::no;
}

Handled HookTable::iq_response(Session& session, const xmpp::xml::ElementView& el) const {
    for (const auto& h : _iq_responses) {
        if (h(session, el) == Handled::yes) return Handled::yes;
    }
    return Handled::no;
}

void HookTable::account_deleted(std::string_view bare_jid) const {
    for (const auto& h : _account_deleted) h(bare_jid);
}

bool HookTable::interested(const router::Endpoint& endpoint, std::string_view interest) const {
    if (endpoint.kind() != router::Endpoint::Kind::client_session) return false;
    const auto& s = static_cast<const Session&>(endpoint);
    for (const auto& h : _interests) {
        if (h(s, interest)) return true;
    }
    return false;
}

std::vector<CounterSample> HookTable::counters() const {
    std::vector<CounterSample> out;
    out.reserve(_counters.size());
    for (const auto& c : _counters) {
        if (c.bounds.empty()) {
            out.push_back({c.name, c.help, c.labels, *c.value, {}, {}, 0});
        } else {
            out.push_back({c.name, c.help, c.labels, 0, c.bounds,
                           std::vector<std::uint64_t>(c.value, c.value + c.bounds.size() + 1), *c.sum});
        }
    }
    return out;
}

}  // namespace starling::session
