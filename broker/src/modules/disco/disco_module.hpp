// XEP-0030 Service Discovery: the server's identity and the features every module declared;
// an account's identity (account/registered). Items are empty until components exist.
// Lives on: every shard. Reads the shard's ModuleHost feature list, frozen at install.
#pragma once

#include "broker/src/modules/module.hpp"

namespace starling::modules {

class DiscoModule final : public Module {
public:
    std::string_view name() const noexcept override { return "disco"; }
    void install(ModuleContext& ctx) override;
};

}  // namespace starling::modules
