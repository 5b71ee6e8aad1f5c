// ModuleHost: a shard's table of module handlers, and the calls the core makes into it.
// Handlers of one hook run in priority order (higher first) until one says Handled::yes.
// Lookup is by small integers and a flat vector; registration happens before traffic only.
//
// Lives on: one per shard, owned by the broker next to the shard's router and context.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "broker/src/modules/module.hpp"

namespace starling::modules {

class ModuleHost {
public:
    ModuleHost() = default;
    ModuleHost(const ModuleHost&) = delete;
    ModuleHost& operator=(const ModuleHost&) = delete;

    // Installs every module of make_modules() (or `modules`) for this shard.
    void install(c2s::ShardContext& shard, std::vector<std::unique_ptr<Module>> modules);
    void install_default(c2s::ShardContext& shard);

    // Core entry points.
    Handled handle_iq(IqEvent& ev) const;
    Handled outbound(OutboundEvent& ev) const;
    Handled inbound(InboundEvent& ev) const;
    Handled undeliverable(router::Envelope& env, c2s::ShardContext& shard) const;
    void session_event(c2s::C2sSession& session, SessionEvent event) const;
    void stream_features(c2s::C2sSession& session, bool authenticated, std::string& out) const;
    Handled preauth_iq(PreauthIqEvent& ev) const;

    // Disco features of the server, sorted and unique (XEP-0030 §3.1).
    const std::vector<std::string>& disco_features() const noexcept { return _features; }
    const std::vector<std::string>& account_disco_features() const noexcept { return _account_features; }
    std::size_t module_count() const noexcept { return _modules.size(); }

private:
    friend class ModuleContext;
    struct IqEntry {
        IqType type;
        std::string ns;
        std::string name;
        IqHandler handler;
    };
    template <class H>
    struct Prioritised {
        int priority;
        H handler;
    };

    std::vector<std::unique_ptr<Module>> _modules;
    std::vector<std::string> _features;
    std::vector<std::string> _account_features;
    std::vector<IqEntry> _iq;
    std::vector<Prioritised<OutboundHandler>> _outbound[3];
    std::vector<Prioritised<InboundHandler>> _inbound[3];
    std::vector<SessionHandler> _session;
    std::vector<UndeliverableHandler> _undeliverable;
    std::vector<FeaturesHandler> _features_handlers;
    struct PreauthEntry {
        std::string ns;
        std::string name;
        PreauthIqHandler handler;
    };
    std::vector<PreauthEntry> _preauth;
};

}  // namespace starling::modules
