// Modules: one protocol feature each (DESIGN §4, CONVENTIONS §5). A module registers handlers
// on its shard's HookTable at install time: IQ handlers by (namespace, payload name, type),
// hooks on stanzas leaving a local session (outbound) and reaching a local account on its home
// shard (inbound), session events, and disco features. The table is frozen before traffic;
// the core knows no XEP. This is the whole API a module sees; it lives below both c2s/ (which
// calls the hooks) and modules/ (which install them), so neither includes the other.
//
// Lives on: one instance of every module per shard, installed before the shard runs; each
// handler runs on that shard's thread, for sessions and accounts whose home shard it is.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <pugixml.hpp>

#include "broker/src/router/router.hpp"
#include "broker/src/session/counters.hpp"
#include "broker/src/session/options.hpp"
#include "broker/src/session/session.hpp"
#include "broker/src/session/shard_services.hpp"
#include "xmpp/jid.hpp"
#include "xmpp/stream_error.hpp"
#include "xmpp/xml/tokenizer.hpp"

namespace starling::util {
class StanzaDom;
}

namespace starling::session {

class HookTable;

enum class Handled : std::uint8_t { no, yes };
enum class IqType : std::uint8_t { get, set };

// The answer to an IQ that must wait for something first — a durable write (DESIGN §6: an IQ
// result acknowledges only what is stored). Taken from an IqEvent with defer() and answered
// later on the same shard; if the session is gone by then, the answer is dropped.
class DeferredIq {
public:
    DeferredIq() = default;
    void result(std::string_view inner_xml = {});
    void error(xmpp::StanzaError condition, std::string_view text = {}, std::string_view app_condition_xml = {});

private:
    friend class IqEvent;
    std::weak_ptr<Session> _session;
    std::string _from;  // the IQ's 'to': the reply's 'from'
    std::string _to;    // the sender's full JID
    std::string _id;
};

// An IQ of type get or set addressed to the server or to an account (the sender's own bare
// JID, or another local account: RFC 6120 §10.5.3.2, the server answers for it).
class IqEvent {
public:
    IqEvent(Session& session, const xmpp::xml::ElementView& el, util::StanzaDom& dom,
            pugi::xml_node payload, std::string_view to, bool to_account, IqType type, std::string id);

    Session& session;  // the sender, bound, on its home shard
    const xmpp::xml::ElementView& element;
    util::StanzaDom& dom;
    pugi::xml_node payload;  // the first child element of the <iq/>
    std::string_view to;     // normalised: the domain or a bare JID; the reply's 'from'
    bool to_account;         // to a bare JID with a localpart
    IqType type;
    std::string id;  // unescaped

    const xmpp::Jid& from() const noexcept;
    // True when addressed to the sender's own account or to the server (not another user).
    bool is_to_self_or_server() const noexcept;
    // <iq type='result'> with `inner_xml` (already serialized, may be empty) as its content.
    void reply_result(std::string_view inner_xml = {});
    // `app_condition_xml`: see xmpp::xml::write_stanza_error.
    void reply_error(xmpp::StanzaError condition, std::string_view text = {}, std::string_view app_condition_xml = {});
    // The reply is given later through the returned object (this event counts as answered).
    DeferredIq defer();
    bool replied() const noexcept { return _replied; }

private:
    bool _replied = false;
};

// A stanza a bound local session sends, before it is routed (blocking, carbons, archive,
// presence broadcast and subscriptions...). `to` is null when the stanza had no 'to'.
struct OutboundEvent {
    Session& session;
    const xmpp::xml::ElementView& element;
    router::StanzaKind kind;
    const xmpp::Jid* to;
    std::string_view type;  // unescaped
};

// A stanza a bound local session sent, as it is routed: the outbound hooks let it through and
// the session stamped it (`env.bytes` are the bytes its recipients get, before their inbound
// hooks), just before the router takes it. Read-only: it can no longer be stopped. Messages
// to local services (DESIGN §1) do not come here, as they do not go through on_outbound.
struct RoutedEvent {
    Session& session;
    const router::Envelope& env;
};

// A stanza for a local account, on the account's home shard, before the directory picks
// sessions (probes, subscriptions, blocking, carbons, archive). Handlers may edit env.bytes.
struct InboundEvent {
    router::Envelope& env;
    ShardServices& shard;
};

// An IQ on a stream that has not authenticated yet (XEP-0077 in-band registration). There is no
// 'from': answer with session.deliver() (no 'to' on the reply, RFC 6120 §8.1.1.1).
struct PreauthIqEvent {
    Session& session;
    const xmpp::xml::ElementView& element;
    util::StanzaDom& dom;
    pugi::xml_node payload;
    IqType type;
    std::string id;           // unescaped
    std::string_view domain;  // the domain the stream is for
};

enum class SessionEvent : std::uint8_t {
    bound,        // resource bound on the home shard
    available,    // first available presence (RFC 6121 §4.2: initial presence)
    unavailable,  // unavailable presence after being available
    closed,       // the stream is over (after unavailable, if it was available)
    // What the session wants notifications for (XEP-0115 "+notify" features, XEP-0163 §4.2)
    // became known or changed, while it is available.
    interests,
};

using IqHandler = std::function<Handled(IqEvent&)>;
using OutboundHandler = std::function<Handled(OutboundEvent&)>;
using InboundHandler = std::function<Handled(InboundEvent&)>;
using RoutedHandler = std::function<void(RoutedEvent&)>;
using SessionHandler = std::function<void(Session&, SessionEvent)>;
// A stanza for an account with no session that takes it (RFC 6121 §8.5.2.2): Handled::yes when
// kept (offline storage); otherwise the router applies the RFC's default.
using UndeliverableHandler = std::function<Handled(router::Envelope&, ShardServices&)>;
// Extra <stream:features/> children for an authenticated (true) or not yet authenticated stream.
using PreauthIqHandler = std::function<Handled(PreauthIqEvent&)>;
using FeaturesHandler = std::function<void(Session&, bool authenticated, std::string& out)>;
// A first-level element of a bound stream that is not a stanza (a "nonza": XEP-0352 <active/>,
// XEP-0198 <r/>). Handled::no for all of them: RFC 6120 §4.9.3.23 unsupported-stanza-type.
using StreamElementHandler = std::function<Handled(Session&, const xmpp::xml::ElementView&)>;
// An IQ result or error a bound session sends to the server (the answer to a query the server
// made, e.g. XEP-0115 disco#info). Handled::yes when the handler was waiting for it.
using IqResponseHandler = std::function<Handled(Session&, const xmpp::xml::ElementView&)>;
// Whether a session wants notifications for `interest` (XEP-0163 §4.2 filtered notifications).
using InterestHandler = std::function<bool(const Session&, std::string_view interest)>;
// An account was deleted (its records are gone from the store: storage::delete_account): the
// module forgets what it caches for that bare JID. Runs on every shard.
using AccountDeletedHandler = std::function<void(std::string_view bare_jid)>;


// What a module sees at install time.
class ModuleContext {
public:
    ModuleContext(HookTable& host, ShardServices& shard) : _host(host), _shard(shard) {}

    ShardServices& shard() noexcept { return _shard; }
    void add_disco_feature(std::string_view var);
    // A feature of every account (disco#info to a bare JID), e.g. urn:xmpp:mam:2.
    void add_account_disco_feature(std::string_view var);
    // An identity of every account, "category/type" (XEP-0163 §6.1: pubsub/pep).
    void add_account_disco_identity(std::string_view category, std::string_view type);
    // An entity the server `domain` lists in disco#items (XEP-0030 §4), e.g. its PubSub service.
    void add_disco_item(std::string_view domain, std::string_view jid, std::string_view name);
    // Handlers of the same payload run by priority (higher first), then in the order added,
    // until one answers Handled::yes.
    void on_iq(IqType type, std::string_view ns, std::string_view name, IqHandler handler, int priority = 0);
    void on_outbound(router::StanzaKind kind, OutboundHandler handler, int priority = 0);
    void on_inbound(router::StanzaKind kind, InboundHandler handler, int priority = 0);
    void on_routed(router::StanzaKind kind, RoutedHandler handler);
    void on_session(SessionHandler handler);
    void on_undeliverable(UndeliverableHandler handler);
    void on_stream_features(FeaturesHandler handler);
    void on_preauth_iq(std::string_view ns, std::string_view name, PreauthIqHandler handler);
    // Nonzas of a bound stream, by namespace and local name (one handler per pair).
    void on_stream_element(std::string_view ns, std::string_view name, StreamElementHandler handler);
    void on_iq_response(IqResponseHandler handler);
    // Answers RouterHooks::interested for client sessions; the first handler that says yes wins.
    void on_interest(InterestHandler handler);
    void on_account_deleted(AccountDeletedHandler handler);
    // A counter exported as a Prometheus counter `name`{labels}: `value` is read on this shard at
    // scrape time and must live as long as the module (a member of it).
    void add_counter(std::string_view name, std::string_view help, MetricLabels labels, const std::uint64_t* value);
    // A histogram exported as `name`: `buckets` points at bounds.size() + 1 non-cumulative counts
    // (the last for values above every bound) and `sum` at the sum of observed values; both are
    // members of the module, read on this shard at scrape time.
    void add_histogram(std::string_view name, std::string_view help, std::vector<double> bounds,
                       const std::uint64_t* buckets, const double* sum);

private:
    HookTable& _host;
    ShardServices& _shard;
};

class Module {
public:
    virtual ~Module() = default;
    virtual std::string_view name() const noexcept = 0;
    virtual void install(ModuleContext& ctx) = 0;
};

// What the broker knows of a module before any shard exists: its name (also the TOML table of
// its options and its switch under [modules]), whether an operator may turn it off, its options,
// and how to make one instance (per shard) from the configured values. modules/module_list.cpp
// holds one line per module.
struct ModuleSpec {
    std::string_view name;
    std::string_view summary;  // "XEP-0160 offline messages": for docs and --print-config
    bool optional = false;     // [modules] <name> = false turns it off (its data is kept)
    std::vector<OptionSpec> options;
    std::function<std::unique_ptr<Module>(const OptionValues&)> make;
};

}  // namespace starling::session
