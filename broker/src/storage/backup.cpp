#include "broker/src/storage/backup.hpp"
#include "broker/src/storage/segment_log.hpp"
#include "broker/src/storage/store.hpp"

#include <rocksdb/db.h>
#include <rocksdb/utilities/checkpoint.h>

#include <algorithm>
#include <fstream>
#include <memory>
#include <vector>
#include <system_error>

namespace starling::storage {

namespace {

// The first `bytes` bytes of `from` into a new file `to`.
std::string copy_prefix(const std::filesystem::path& from, const std::filesystem::path& to, std::uint64_t bytes) {
    std::ifstream in(from, std::ios::binary);
    if (!in) return "cannot read " + from.string();
    std::ofstream out(to, std::ios::binary | std::ios::trunc);
    if (!out) return "cannot create " + to.string();
    std::vector<char> buf(1u << 20);
    while (bytes > 0) {
        const auto n = static_cast<std::streamsize>(std::min<std::uint64_t>(bytes, buf.size()));
        if (!in.read(buf.data(), n)) return "cannot read " + from.string() + " (shorter than expected)";
        if (!out.write(buf.data(), n)) return "cannot write " + to.string();
        bytes -= static_cast<std::uint64_t>(n);
    }
    out.flush();
    if (!out) return "cannot write " + to.string();
    return {};
}

}  // namespace

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
    // The archive's body logs, after the checkpoint: every index record in the checkpoint names
    // a record written before it (SegmentLog writes come first), so the copies hold them all.
    // Records appended since are copied too, and found unnamed by the pass over the log.
    for (auto* log : store.segment_logs()) {
        const auto to = dir / "db" / "archive-log" / std::to_string(log->id());
        fs::create_directories(to, ec);
        if (ec) {
            fs::remove_all(dir, ec);
            return "cannot create " + to.string() + ": " + ec.message();
        }
        for (const auto& [path, bytes] : log->files()) {
            if (auto err = copy_prefix(path, to / path.filename(), bytes); !err.empty()) {
                fs::remove_all(dir, ec);
                return err;
            }
        }
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
