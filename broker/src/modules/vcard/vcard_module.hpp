// XEP-0054 vCard-temp: each account's vCard, kept in the "vcards" column family. The server
// answers for the account (RFC 6120 §10.5.3.2): get on one's own (no 'to', or one's bare JID)
// and on any other local account; set only on one's own.
//
// Lives on: every shard. A get runs on the requester's home shard and reads RocksDB directly
// (the store is thread-safe, and nothing of the other account's shard is touched); a set runs
// on the owner's home shard. No cache, so no shard ever serves a stale vCard.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <string>

#include <pugixml.hpp>

#include "broker/src/modules/api.hpp"

namespace starling::storage {
class Store;
}
namespace starling::modules {

class VcardStore;

struct VcardOptions {
    // Serialized size limit of one vCard (a 48x48 PNG avatar in base64 is about 4-8 KiB; 64 KiB
    // leaves room for a larger photo without letting one account hold megabytes).
    std::size_t max_bytes = 64 * 1024;
};

class VcardModule final : public Module {
public:
    // Options from the shard's C2sOptions (`vcard_max_bytes`, once it exists), the store from the
    // shard context (ShardContext::store). Without a store the module installs nothing.
    VcardModule();
    // Tests: an explicit store and options.
    VcardModule(storage::Store* store, VcardOptions options);
    ~VcardModule() override;

    // Its name, options and factory, for the module list and the configuration.
    static ModuleSpec spec();
    std::string_view name() const noexcept override { return "vcard"; }
    void install(ModuleContext& ctx) override;

private:
    storage::Store* _store_override = nullptr;
    std::optional<VcardOptions> _options;
    std::unique_ptr<VcardStore> _store;
};

// The <vCard/> element `vcard` of `dom` as standalone XML: named `vCard` with its namespace
// declared on itself (whatever prefix the client used), plus the prefix declarations of its
// ancestors that its content may rely on. Exposed for tests.
std::string serialize_vcard(pugi::xml_node vcard);

}  // namespace starling::modules
