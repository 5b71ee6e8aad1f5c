// XEP-0199 XMPP Ping: answers pings to the server and to accounts (the server answers for an
// account, RFC 6121 §8.5.2.1.3). Server-to-client pings of idle sessions come with the idle
// timeout work.
// Lives on: every shard. Stateless.
#pragma once

#include "broker/src/modules/module.hpp"

namespace starling::modules {

class PingModule final : public Module {
public:
    std::string_view name() const noexcept override { return "ping"; }
    void install(ModuleContext& ctx) override;
};

}  // namespace starling::modules
