// The broker's RocksDB Store as a shard offers it to modules (vcard/, and register/ for
// deleting an account's vCard). Null in unit tests that run without storage.
#pragma once

#include "broker/src/c2s/shard_context.hpp"

namespace starling::storage {
class Store;
}

namespace starling::modules {

inline storage::Store* shard_store(c2s::ShardContext& shard) noexcept { return shard.store; }

}  // namespace starling::modules
