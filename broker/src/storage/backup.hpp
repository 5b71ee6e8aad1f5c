// Online backup of the store: a RocksDB checkpoint (a consistent copy of every column family as
// of one sequence number, hard links to the immutable SST files when `dir` is on the same file
// system, copies otherwise) taken while the broker runs and writes. deploy/README.md, "Backups",
// has the restore procedure; tests/integration/test_deploy_backup.py exercises both.
//
// Thread-safe (RocksDB's Checkpoint is): the admin thread calls it while shards write. What a
// shard staged but had not committed yet (at most one reactor turn) is not in the checkpoint.
#pragma once

#include <filesystem>
#include <string>

#include "broker/src/storage/store.hpp"

namespace starling::storage {

// Writes the checkpoint into `dir`/db (and copies the files of `data_dir` that a restored broker
// needs beside its store: `server-secret`). `dir` must be an absolute path that does not exist
// yet, in an existing folder. Returns an error text, empty on success.
std::string create_backup(Store& store, const std::filesystem::path& data_dir, const std::filesystem::path& dir);

}  // namespace starling::storage
