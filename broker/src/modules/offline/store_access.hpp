// How the IM modules (offline/, blocking/) reach the broker's RocksDB Store from their shard.
#pragma once

#include "broker/src/c2s/shard_context.hpp"
#include "broker/src/storage/accounts.hpp"
#include "broker/src/storage/store.hpp"

namespace starling::modules {

inline storage::Store& store_of(c2s::ShardContext& ctx) noexcept { return *ctx.store; }

}  // namespace starling::modules
