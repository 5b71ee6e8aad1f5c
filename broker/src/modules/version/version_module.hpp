// XEP-0092 Software Version of the server.
// Lives on: every shard. Stateless.
#pragma once

#include "broker/src/modules/api.hpp"

namespace starling::modules {

class VersionModule final : public Module {
public:
    // Its name, options and factory, for the module list and the configuration.
    static ModuleSpec spec();
    std::string_view name() const noexcept override { return "version"; }
    void install(ModuleContext& ctx) override;
};

}  // namespace starling::modules
