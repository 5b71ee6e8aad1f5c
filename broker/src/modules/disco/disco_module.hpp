// XEP-0030 Service Discovery: the server's identity and the features every module declared;
// an account's identity (account/registered). Items are empty until components exist.
// XEP-0115: the server's capabilities hash goes into the stream features after
// authentication, so clients can skip a disco#info round trip on every login.
// Lives on: every shard. Reads the shard's ModuleHost feature list, frozen at install.
#pragma once

#include <string>
#include <vector>

#include "broker/src/modules/api.hpp"

namespace starling::modules {

// The node of Starling's capabilities (XEP-0115 §4: a URI for the software).
inline constexpr std::string_view k_caps_node = "urn:xmpp:starling:caps";

class DiscoModule final : public Module {
public:
    // Its name, options and factory, for the module list and the configuration.
    static ModuleSpec spec();
    std::string_view name() const noexcept override { return "disco"; }
    void install(ModuleContext& ctx) override;
};

}  // namespace starling::modules
