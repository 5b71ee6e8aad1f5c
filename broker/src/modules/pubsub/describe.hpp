// A node as an operator reads it (starlingctl pubsub show): configuration, affiliations,
// subscriptions and items, one "key value" per line, read from RocksDB (what is committed).
//
// Lives on: any thread (RocksDB reads are thread-safe); the admin socket's thread calls it.
#pragma once

#include <string>
#include <string_view>

namespace starling::storage {
class Store;
}

namespace starling::modules::pubsub {

struct NodeDescription {
    bool found = true;  // false: `text` says what does not exist
    std::string text;
};

NodeDescription describe_node(storage::Store& store, std::string_view service, std::string_view node);

}  // namespace starling::modules::pubsub
