// XEP-0092 Software Version of the server.
// Lives on: every shard. Stateless.
#pragma once

#include "broker/src/modules/module.hpp"

namespace starling::modules {

class VersionModule final : public Module {
public:
    std::string_view name() const noexcept override { return "version"; }
    void install(ModuleContext& ctx) override;
};

}  // namespace starling::modules
