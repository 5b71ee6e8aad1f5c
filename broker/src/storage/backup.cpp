#include "broker/src/storage/backup.hpp"

#include <rocksdb/db.h>
#include <rocksdb/utilities/checkpoint.h>

#include <memory>
#include <system_error>

namespace starling::storage {

std::string create_backup(Store& store, const std::filesystem::path& data_dir, const std::filesystem::path& dir) {
    namespace fs = std::filesystem;
    if (!dir.is_absolute()) return "the backup folder must be an absolute path: " + dir.string();
    std::error_code ec;
    if (fs::exists(dir, ec)) return dir.string() + " already exists: choose a new folder for each backup";
    if (!fs::is_directory(dir.parent_path(), ec)) return dir.parent_path().string() + " is not a folder";
    if (!fs::create_directory(dir, ec)) return "cannot create " + dir.string() + ": " + ec.message();
    fs::permissions(dir, fs::perms::owner_all, fs::perm_options::replace, ec);  // accounts' keys are inside

    rocksdb::Checkpoint* raw = nullptr;
    auto s = rocksdb::Checkpoint::Create(&store.db(), &raw);
    std::unique_ptr<rocksdb::Checkpoint> checkpoint(raw);
    // log_size_for_flush = 0: flush the memtables first, so the copy needs no WAL replay.
    if (s.ok()) s = checkpoint->CreateCheckpoint((dir / "db").string(), 0);
    if (!s.ok()) {
        fs::remove_all(dir, ec);
        return "checkpoint failed: " + s.ToString();
    }
    // The secret behind decoy SCRAM salts (RFC 5802 §9): kept so that an unknown user's salt
    // does not change after a restore. Absent when configured elsewhere (server_secret_file).
    const auto secret = data_dir / "server-secret";
    if (fs::exists(secret, ec)) {
        if (!fs::copy_file(secret, dir / "server-secret", ec)) return "cannot copy " + secret.string() + ": " + ec.message();
    }
    return {};
}

}  // namespace starling::storage
