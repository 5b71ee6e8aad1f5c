// Online backup: a checkpoint of an open store, opened on its own, holds what was written.
#include "broker/src/storage/backup.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "broker/src/storage/accounts.hpp"
#include "broker/src/storage/store.hpp"

namespace {

namespace fs = std::filesystem;
using starling::storage::AccountRecord;
using starling::storage::AccountStore;
using starling::storage::create_backup;
using starling::storage::Store;

struct TempDir {
    fs::path path;
    TempDir() {
        std::random_device rd;
        path = fs::temp_directory_path() / ("starling-backup-test-" + std::to_string(rd()));
        fs::create_directories(path);
    }
    ~TempDir() { fs::remove_all(path); }
};

AccountRecord record() {
    AccountRecord r;
    r.sha256 = {4096, "salt", std::string(32, '\x01'), std::string(32, '\x02')};
    r.sha1 = {4096, "s1", std::string(20, '\x03'), std::string(20, '\x04')};
    return r;
}

TEST(Backup, ACheckpointOfAnOpenStoreHoldsItsAccounts) {
    TempDir data;
    auto store = Store::open((data.path / "db").string());
    AccountStore accounts(*store);
    ASSERT_TRUE(accounts.put("juliet@example.com", record()));
    std::ofstream(data.path / "server-secret") << "0123456789abcdef0123";

    const auto backup = data.path / "backup-1";
    ASSERT_EQ(create_backup(*store, data.path, backup), "");
    ASSERT_TRUE(accounts.put("romeo@example.com", record()));  // after the backup: not in it
    EXPECT_TRUE(fs::exists(backup / "server-secret"));
    EXPECT_FALSE(fs::exists(backup / "db" / Store::k_open_marker));  // a restored store is not "unclean"

    auto restored = Store::open((backup / "db").string());  // opens while the original is still open
    AccountStore again(*restored);
    EXPECT_TRUE(*again.exists("juliet@example.com"));
    EXPECT_FALSE(*again.exists("romeo@example.com"));
    EXPECT_FALSE(restored->recovered_from_unclean_shutdown());
}

TEST(Backup, RefusesAnExistingOrRelativeFolder) {
    TempDir data;
    auto store = Store::open((data.path / "db").string());
    EXPECT_NE(create_backup(*store, data.path, data.path).find("already exists"), std::string::npos);
    EXPECT_NE(create_backup(*store, data.path, "relative/backup").find("absolute"), std::string::npos);
    EXPECT_NE(create_backup(*store, data.path, data.path / "no" / "such" / "parent").find("is not a folder"),
              std::string::npos);
    EXPECT_FALSE(fs::exists(data.path / "no"));
}

}  // namespace
