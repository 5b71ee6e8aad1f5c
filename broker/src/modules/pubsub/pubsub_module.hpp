// XEP-0060 Publish-Subscribe: a PubSub service at `<subdomain>.<domain>` for each served domain
// (subdomain from `[pubsub] subdomain`, "pubsub" by default). The module registers its
// PubsubService with the shard's router as the service of those domains and lists them in the
// server's disco#items; everything else is in PubsubService.
//
// Lives on: one instance per shard (installed before the shard runs), owning that shard's
// PubsubService.
#pragma once

#include <memory>
#include <string_view>

#include "broker/src/modules/api.hpp"
#include "broker/src/modules/pubsub/pubsub_service.hpp"

namespace starling::storage {
class Store;
}

namespace starling::modules {

class PubsubModule final : public Module {
public:
    // `store` null: the shard's store (ShardServices::store).
    PubsubModule(storage::Store* store, pubsub::PubsubOptions options);
    ~PubsubModule() override;

    static ModuleSpec spec();
    std::string_view name() const noexcept override { return "pubsub"; }
    void install(ModuleContext& ctx) override;

    // Null until installed (or when the shard has no store).
    pubsub::PubsubService* service() noexcept { return _service.get(); }

private:
    void install_pep(ModuleContext& ctx, storage::Store& store);

    storage::Store* _store_override = nullptr;
    pubsub::PubsubOptions _options;
    std::unique_ptr<pubsub::PubsubService> _service;
    std::shared_ptr<int> _alive = std::make_shared<int>(0);  // the PEP roster reads' completions check it
};

}  // namespace starling::modules
