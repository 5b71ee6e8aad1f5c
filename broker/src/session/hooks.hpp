// HookTable: a shard's table of module handlers, and the calls the core makes into it (the client
// stream layer through the methods below, the router through RouterHooks).
// Handlers of one hook run in priority order (higher first) until one says Handled::yes.
// Lookup is by small integers and a flat vector; registration happens before traffic only.
//
// Lives on: one per shard, owned by the broker next to the shard's router and context.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "broker/src/session/module.hpp"

namespace starling::session {

class HookTable final : public router::RouterHooks {
public:
    HookTable() = default;
    HookTable(const HookTable&) = delete;
    HookTable& operator=(const HookTable&) = delete;

    // Installs `modules` for this shard (the broker makes them from the module list).
    void install(ShardServices& shard, std::vector<std::unique_ptr<Module>> modules);

    // RouterHooks.
    router::Delivery inbound(router::Envelope& env) const override;
    router::Delivery undeliverable(router::Envelope& env) const override;
    bool interested(const router::Endpoint& endpoint, std::string_view interest) const override;

    // Core entry points.
    Handled handle_iq(IqEvent& ev) const;
    Handled outbound(OutboundEvent& ev) const;
    void routed(RoutedEvent& ev) const;
    void session_event(Session& session, SessionEvent event) const;
    void stream_features(Session& session, bool authenticated, std::string& out) const;
    Handled preauth_iq(PreauthIqEvent& ev) const;
    // A first-level non-stanza element of a bound stream; Handled::no when no module takes it.
    Handled stream_element(Session& session, const xmpp::xml::ElementView& el) const;
    // An IQ result or error from a bound session to the server.
    Handled iq_response(Session& session, const xmpp::xml::ElementView& el) const;
    // The account `bare_jid` was deleted: every module drops its cached state (call it on every
    // shard, after storage::delete_account).
    void account_deleted(std::string_view bare_jid) const;
    // The modules' counters with their current values (on this shard's thread).
    std::vector<CounterSample> counters() const;

    // Disco features of the server, sorted and unique (XEP-0030 §3.1).
    const std::vector<std::string>& disco_features() const noexcept { return _features; }
    const std::vector<std::string>& account_disco_features() const noexcept { return _account_features; }
    struct Identity {
        std::string category;
        std::string type;
    };
    const std::vector<Identity>& account_disco_identities() const noexcept { return _account_identities; }
    struct DiscoItem {
        std::string domain;  // the served domain that lists it
        std::string jid;
        std::string name;
    };
    // disco#items of the server's domains (XEP-0030 §4), in the order modules added them.
    const std::vector<DiscoItem>& disco_items() const noexcept { return _items; }
    std::size_t module_count() const noexcept { return _modules.size(); }
    // The installed module called `name`, or null (administration reaching one module).
    Module* find_module(std::string_view name) const noexcept {
        for (const auto& m : _modules) {
            if (m->name() == name) return m.get();
        }
        return nullptr;
    }

private:
    friend class ModuleContext;
    struct IqEntry {
        IqType type;
        std::string ns;
        std::string name;
        IqHandler handler;
        int priority = 0;
    };
    template <class H>
    struct Prioritised {
        int priority;
        H handler;
    };

    ShardServices* _shard = nullptr;
    std::vector<std::unique_ptr<Module>> _modules;
    std::vector<std::string> _features;
    std::vector<std::string> _account_features;
    std::vector<Identity> _account_identities;
    std::vector<IqResponseHandler> _iq_responses;
    std::vector<InterestHandler> _interests;
    std::vector<AccountDeletedHandler> _account_deleted;
    std::vector<DiscoItem> _items;
    std::vector<IqEntry> _iq;
    std::vector<Prioritised<OutboundHandler>> _outbound[3];
    std::vector<Prioritised<InboundHandler>> _inbound[3];
    std::vector<RoutedHandler> _routed[3];
    std::vector<SessionHandler> _session;
    std::vector<UndeliverableHandler> _undeliverable;
    std::vector<FeaturesHandler> _features_handlers;
    struct PreauthEntry {
        std::string ns;
        std::string name;
        PreauthIqHandler handler;
    };
    std::vector<PreauthEntry> _preauth;
    struct ElementEntry {
        std::string ns;
        std::string name;
        StreamElementHandler handler;
    };
    std::vector<ElementEntry> _elements;
    struct CounterEntry {
        std::string name;
        std::string help;
        MetricLabels labels;
        const std::uint64_t* value;
        std::vector<double> bounds;  // histograms: value points at bounds.size() + 1 buckets
        const double* sum = nullptr;
    };
    std::vector<CounterEntry> _counters;
};

}  // namespace starling::session
