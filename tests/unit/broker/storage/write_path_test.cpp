#include "broker/src/storage/write_path.hpp"

#include <cstdio>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <rocksdb/db.h>

#include "broker/src/storage/rocks.hpp"
#include "broker/src/storage/store.hpp"
#include "tests/support/faulty_fs.hpp"

namespace {

using namespace std::chrono_literals;
using starling::storage::Column;
using starling::storage::Committer;
using starling::storage::CommitterOptions;
using starling::storage::Durability;
using starling::storage::Errc;
using starling::storage::ShardWriter;
using starling::storage::Store;
using starling::storage::StoreOptions;
using starling::test::Fault;
using starling::test::FaultyFileSystem;
using Value = xmpp::Result<std::optional<std::string>, Errc>;
using Done = xmpp::Result<void, Errc>;

class TempDir {
public:
    TempDir() {
        std::random_device rd;
        _path = std::filesystem::temp_directory_path() / ("starling-wp-test-" + std::to_string(rd()));
        std::filesystem::create_directories(_path);
    }
    ~TempDir() {
        if (std::getenv("STARLING_KEEP_TEST_DIR") == nullptr) std::filesystem::remove_all(_path);
    }
    std::string str() const { return _path.string(); }

private:
    std::filesystem::path _path;
};

std::optional<std::string> value_of(const Value& v) {
    EXPECT_TRUE(v.has_value());
    return v.has_value() ? *v : std::nullopt;
}

// One shard's reactor driven by the test thread, over a store on a fault-injecting file system.
class WritePathTest : public ::testing::Test {
protected:
    void open(StoreOptions options = {}, CommitterOptions committer_options = {}) {
        options.file_system = fs;
        store = Store::open(dir.str(), options);
        committer = std::make_unique<Committer>(*store, committer_options);
        committer->start();
        writer = std::make_unique<ShardWriter>(io, 0, *committer);
    }
    void TearDown() override {
        writer.reset();
        if (committer) committer->stop();
        io.poll();
        committer.reset();
        store.reset();
    }
    // Runs the reactor until `done` or a timeout; false on timeout.
    bool run_until(const std::function<bool()>& done, std::chrono::milliseconds timeout = 5s) {
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        while (!done()) {
            if (std::chrono::steady_clock::now() > deadline) return false;
            io.run_for(2ms);
        }
        return true;
    }
    // Runs `f` as one turn of the reactor, and the reactor until it returned.
    void in_turn(const std::function<void()>& f) {
        bool ran = false;
        asio::post(io, [&] {
            f();
            ran = true;
        });
        ASSERT_TRUE(run_until([&] { return ran; }));
    }
    // Stages nothing; waits until everything staged so far is committed at `level`.
    Done settle(Durability level = Durability::synced) {
        std::optional<Done> result;
        in_turn([&] { writer->when_durable(level, [&](Done r) { result = r; }); });
        EXPECT_TRUE(run_until([&] { return result.has_value(); }));
        return result.value_or(Done(xmpp::Unexpected(Errc::io_error)));
    }

    TempDir dir;
    std::shared_ptr<FaultyFileSystem> fs = std::make_shared<FaultyFileSystem>();
    asio::io_context io{1};
    asio::executor_work_guard<asio::io_context::executor_type> guard{io.get_executor()};
    std::unique_ptr<Store> store;
    std::unique_ptr<Committer> committer;
    std::unique_ptr<ShardWriter> writer;
};

TEST_F(WritePathTest, PutsOfOneTurnAreCommittedAsOneBatchWithOneWriteAndOneFsync) {
    open();
    std::optional<Done> result;
    in_turn([&] {
        for (int i = 0; i < 100; ++i) ASSERT_TRUE(writer->put(Column::meta, "k" + std::to_string(i), "v"));
        writer->when_durable(Durability::synced, [&](Done r) { result = r; });
    });
    ASSERT_TRUE(run_until([&] { return result.has_value(); }));
    EXPECT_TRUE(result->has_value());
    const auto& stats = committer->stats();
    EXPECT_EQ(stats.batches.load(), 1u);
    EXPECT_EQ(stats.db_writes.load(), 1u);
    EXPECT_EQ(stats.ops.load(), 100u);
    EXPECT_EQ(stats.syncs.load(), 1u);
    EXPECT_EQ(writer->counters().sealed_batches, 1u);
    EXPECT_EQ(writer->counters().staged_ops, 100u);
}

TEST_F(WritePathTest, ALongTurnIsCommittedInBatchesOfBoundedSizeInOrder) {
    open();
    // 3 MiB of appends in one turn: sealed as several batches of about 1 MiB, not one of 3.
    const std::string value(4096, 'v');
    std::vector<int> order;
    in_turn([&] {
        for (int i = 0; i < 768; ++i) {
            char key[16];
            std::snprintf(key, sizeof key, "k%05d", i);
            ASSERT_TRUE(writer->append(Column::mam, key, value, Durability::logged));
            if (i % 256 == 255) {
                writer->when_durable(Durability::logged, [&order, i](Done r) {
                    EXPECT_TRUE(r.has_value());
                    order.push_back(i);
                });
            }
        }
    });
    ASSERT_TRUE(run_until([&] { return order.size() == 3; }));
    EXPECT_EQ(order, (std::vector<int>{255, 511, 767}));
    EXPECT_GE(writer->counters().sealed_batches, 3u);
    EXPECT_LE(writer->counters().sealed_batches, 4u);
    EXPECT_EQ(committer->stats().ops.load(), 768u);
    // Every record is in the store.
    for (int i : {0, 255, 256, 767}) {
        char key[16];
        std::snprintf(key, sizeof key, "k%05d", i);
        std::string got;
        ASSERT_TRUE(store->db().Get({}, store->column(Column::mam), key, &got).ok()) << key;
        EXPECT_EQ(got, value);
    }
    // A later turn (its batch one of those handed back) is committed like any other.
    in_turn([&] { ASSERT_TRUE(writer->append(Column::mam, "later", "x", Durability::logged)); });
    ASSERT_TRUE(settle(Durability::logged).has_value());
    std::string got;
    ASSERT_TRUE(store->db().Get({}, store->column(Column::mam), "later", &got).ok());
    EXPECT_EQ(got, "x");
}

TEST_F(WritePathTest, CompletionsRunInStagingOrderAcrossTurnsAndLevels) {
    open();
    std::vector<int> order;
    const Durability levels[] = {Durability::synced, Durability::memory, Durability::logged};
    for (int turn = 0; turn < 20; ++turn) {
        asio::post(io, [&, turn] {
            ASSERT_TRUE(writer->put(Column::meta, "k" + std::to_string(turn), "v"));
            for (int j = 0; j < 3; ++j) {
                writer->when_durable(levels[(turn + j) % 3], [&order, n = turn * 3 + j](Done r) {
                    EXPECT_TRUE(r.has_value());
                    order.push_back(n);
                });
            }
        });
    }
    ASSERT_TRUE(run_until([&] { return order.size() == 60; }));
    for (int i = 0; i < 60; ++i) EXPECT_EQ(order[static_cast<std::size_t>(i)], i);
}

TEST_F(WritePathTest, ReadsItsOwnWritesFromTheOverlayBeforeCommitAndFromTheStoreAfter) {
    open();
    std::optional<Done> result;
    in_turn([&] {
        ASSERT_TRUE(writer->put(Column::rosters, "alice@example.org", "v1"));
        ASSERT_TRUE(writer->put(Column::rosters, "alice@example.org", "v2"));  // newest wins
        EXPECT_EQ(value_of(writer->get(Column::rosters, "alice@example.org")), "v2");
        // Not in RocksDB yet: only the overlay knows it.
        std::string raw;
        EXPECT_TRUE(store->db()
                        .Get(rocksdb::ReadOptions(), store->column(Column::rosters), "alice@example.org", &raw)
                        .IsNotFound());
        bool inline_answer = false;
        writer->get_async(Column::rosters, "alice@example.org", [&](Value v) {
            inline_answer = true;
            EXPECT_EQ(value_of(v), "v2");
        });
        EXPECT_TRUE(inline_answer);
        // Another column with the same key knows nothing of it.
        EXPECT_EQ(value_of(writer->get(Column::vcards, "alice@example.org")), std::nullopt);
        EXPECT_EQ(writer->overlay_size(), 1u);
        writer->when_durable(Durability::logged, [&](Done r) { result = r; });
    });
    ASSERT_TRUE(run_until([&] { return result.has_value(); }));
    EXPECT_EQ(writer->overlay_size(), 0u);
    EXPECT_EQ(value_of(writer->get(Column::rosters, "alice@example.org")), "v2");
    EXPECT_EQ(writer->counters().reads_overlay, 2u);
}

TEST_F(WritePathTest, ErasesAndRangeErasesAreSeenInTheOverlayAndAfterCommit) {
    open();
    in_turn([&] {
        for (const char* k : {"a1", "a2", "a3", "a5", "b1"}) ASSERT_TRUE(writer->put(Column::offline, k, "old"));
    });
    ASSERT_TRUE(settle());
    auto check = [&] {
        EXPECT_EQ(value_of(writer->get(Column::offline, "a1")), std::nullopt);     // erased
        EXPECT_EQ(value_of(writer->get(Column::offline, "a2")), std::nullopt);     // in the range
        EXPECT_EQ(value_of(writer->get(Column::offline, "a3")), "new");            // put after the range
        EXPECT_EQ(value_of(writer->get(Column::offline, "a5")), "old");            // the range ends before it
        EXPECT_EQ(value_of(writer->get(Column::offline, "b1")), "old");
    };
    in_turn([&] {
        ASSERT_TRUE(writer->erase(Column::offline, "a1"));
        ASSERT_TRUE(writer->erase_range(Column::offline, "a2", "a5"));
        ASSERT_TRUE(writer->put(Column::offline, "a3", "new"));
        check();
        bool answered = false;
        writer->get_async(Column::offline, "a2", [&](Value v) {
            answered = true;
            EXPECT_EQ(value_of(v), std::nullopt);
        });
        EXPECT_TRUE(answered);
    });
    ASSERT_TRUE(settle());
    EXPECT_EQ(writer->overlay_size(), 0u);
    check();
}

// Prefix reads (a user's roster) merge a RocksDB scan with what the overlay says: staged()
// answers for each key a range erase may cover, staged_with_prefix() lists the staged keys.
TEST_F(WritePathTest, StagedWritesUnderAPrefixAreListedInKeyOrderWithErasesAsEmpty) {
    open();
    in_turn([&] {
        for (const char* k : {"u1\0a", "u1\0b", "u1\0c"}) ASSERT_TRUE(writer->put(Column::rosters, std::string(k, 4), "old"));
    });
    ASSERT_TRUE(settle());
    using Staged = std::vector<std::pair<std::string, std::optional<std::string>>>;
    in_turn([&] {
        EXPECT_EQ(writer->staged(Column::rosters, std::string("u1\0a", 4)), std::nullopt) << "committed: RocksDB answers";
        ASSERT_TRUE(writer->put(Column::rosters, std::string("u1\0d", 4), "new"));
        ASSERT_TRUE(writer->erase(Column::rosters, std::string("u1\0a", 4)));
        ASSERT_TRUE(writer->put(Column::rosters, std::string("u2\0a", 4), "other user"));
        ASSERT_TRUE(writer->put(Column::offline, std::string("u1\0e", 4), "other column"));
        ASSERT_TRUE(writer->erase_range(Column::rosters, std::string("u1\0c", 4), std::string("u1\0e", 4)));
        EXPECT_EQ(writer->staged_with_prefix(Column::rosters, std::string("u1\0", 3)),
                  (Staged{{std::string("u1\0a", 4), std::nullopt}, {std::string("u1\0d", 4), std::nullopt}}));
        // Not in the point overlay, but under the range erase.
        EXPECT_EQ(writer->staged(Column::rosters, std::string("u1\0c", 4)), std::optional<std::optional<std::string>>(std::optional<std::string>()));
        EXPECT_EQ(writer->staged(Column::rosters, std::string("u1\0b", 4)), std::nullopt);
    });
    ASSERT_TRUE(settle());
    EXPECT_TRUE(writer->staged_with_prefix(Column::rosters, std::string("u1\0", 3)).empty());
    EXPECT_EQ(value_of(writer->get(Column::rosters, std::string("u1\0b", 4))), "old");
    EXPECT_EQ(value_of(writer->get(Column::rosters, std::string("u1\0c", 4))), std::nullopt);
}

TEST_F(WritePathTest, AFailedWriteCompletesItsWaitersWithTheErrorAndIsNeverReportedDurable) {
    CommitterOptions options;
    options.resume_backoff_min_ms = 60'000;  // no recovery during this test
    open({}, options);
    fs->fail_writes(Fault::no_space);
    std::vector<Done> results;
    in_turn([&] {
        ASSERT_TRUE(writer->put(Column::sm, "bob@example.org", "state"));
        writer->when_durable(Durability::logged, [&](Done r) { results.push_back(r); });
        writer->when_durable(Durability::synced, [&](Done r) { results.push_back(r); });
    });
    ASSERT_TRUE(run_until([&] { return results.size() == 2; }));
    for (const auto& r : results) {
        ASSERT_FALSE(r.has_value());
        EXPECT_EQ(r.error(), Errc::no_space);
    }
    EXPECT_FALSE(committer->is_healthy());
    EXPECT_GE(committer->stats().faults.load(), 1u);
    EXPECT_EQ(committer->stats().failed_batches.load(), 1u);
    EXPECT_EQ(writer->counters().completions_failed, 2u);
    // Not stored, and no longer pretended by the overlay.
    EXPECT_EQ(value_of(writer->get(Column::sm, "bob@example.org")), std::nullopt);
    // While unhealthy, later writes fail too rather than hang.
    const auto later = settle();
    ASSERT_FALSE(later.has_value());
    EXPECT_EQ(later.error(), Errc::no_space);
}

TEST_F(WritePathTest, RecoversOnItsOwnOnceTheFullDiskHasSpaceAgain) {
    open();
    in_turn([&] { ASSERT_TRUE(writer->put(Column::meta, "x", "1")); });
    ASSERT_TRUE(settle());
    // The disk fills up: the flush of the memtable to an SST fails, RocksDB stops writes.
    fs->fail_writes(Fault::no_space, starling::test::Files::tables);
    EXPECT_FALSE(store->db().Flush(rocksdb::FlushOptions(), store->column(Column::meta)).ok());
    in_turn([&] { ASSERT_TRUE(writer->put(Column::meta, "x", "lost")); });
    const auto failed = settle();
    ASSERT_FALSE(failed.has_value());
    EXPECT_EQ(failed.error(), Errc::no_space);
    EXPECT_FALSE(committer->is_healthy());

    fs->heal();
    ASSERT_TRUE(run_until([&] { return committer->is_healthy(); }, 10s)) << "no recovery after the fault cleared";
    EXPECT_GE(committer->stats().recoveries.load(), 1u);
    EXPECT_EQ(value_of(writer->get(Column::meta, "x")), "1");  // the failed write is not there
    in_turn([&] { ASSERT_TRUE(writer->put(Column::meta, "x", "2")); });
    ASSERT_TRUE(settle());
    EXPECT_EQ(value_of(writer->get(Column::meta, "x")), "2");
    std::string raw;
    ASSERT_TRUE(store->db().Get(rocksdb::ReadOptions(), store->column(Column::meta), "x", &raw).ok());
    EXPECT_EQ(raw, "2");
}

// RocksDB 7.8 keeps using a WAL whose append failed, and cannot switch away from it without a
// reopen. The committer must then stay unhealthy and fail writes: never write to that log
// (Debian's build asserts) and never report them durable.
TEST_F(WritePathTest, AFailedWalAppendKeepsFailingWritesUntilTheStoreIsReopened) {
    open();
    fs->fail_writes(Fault::io_error, starling::test::Files::wal);
    in_turn([&] { ASSERT_TRUE(writer->put(Column::meta, "x", "1")); });
    ASSERT_FALSE(settle().has_value());
    fs->heal();
    run_until([] { return false; }, 400ms);  // a few recovery attempts
    EXPECT_FALSE(committer->is_healthy());
    in_turn([&] { ASSERT_TRUE(writer->put(Column::meta, "y", "1")); });
    ASSERT_FALSE(settle().has_value());
    EXPECT_EQ(value_of(writer->get(Column::meta, "y")), std::nullopt);
}

TEST_F(WritePathTest, TheReactorKeepsRunningHandlersWhileTheDiskIsSlow) {
    open();
    fs->set_wal_latency(200ms);
    std::optional<Done> result;
    std::chrono::steady_clock::duration staging{};
    in_turn([&] {
        const auto t0 = std::chrono::steady_clock::now();
        ASSERT_TRUE(writer->put(Column::mam, "k", "v"));
        writer->when_durable(Durability::synced, [&](Done r) { result = r; });
        writer->seal();  // hands it over now: the committer thread is the one to wait
        staging = std::chrono::steady_clock::now() - t0;
    });
    int ticks = 0;
    asio::steady_timer timer(io);
    std::function<void()> tick = [&] {
        timer.expires_after(5ms);
        timer.async_wait([&](std::error_code ec) {
            if (ec || result) return;
            ++ticks;
            tick();
        });
    };
    tick();
    ASSERT_TRUE(run_until([&] { return result.has_value(); }));
    EXPECT_TRUE(result->has_value());
    EXPECT_LT(staging, 20ms);
    // Append and sync each sleep 200 ms on the committer thread; meanwhile the reactor ticked.
    EXPECT_GE(ticks, 20);
}

TEST_F(WritePathTest, AFullCommitQueueKeepsTheBatchOpenWithoutBlockingAndRetries) {
    CommitterOptions options;
    options.max_queued_batches = 1;
    open({}, options);
    fs->set_wal_latency(30ms);
    std::vector<int> order;
    for (int turn = 0; turn < 6; ++turn) {
        asio::post(io, [&, turn] {
            ASSERT_TRUE(writer->put(Column::meta, "k" + std::to_string(turn), "v"));
            writer->when_durable(Durability::synced, [&order, turn](Done r) {
                EXPECT_TRUE(r.has_value());
                order.push_back(turn);
            });
            writer->seal();
        });
    }
    ASSERT_TRUE(run_until([&] { return order.size() == 6; }));
    EXPECT_EQ(order, (std::vector<int>{0, 1, 2, 3, 4, 5}));
    EXPECT_GT(writer->counters().queue_full, 0u);
    EXPECT_LT(committer->stats().batches.load(), 6u);  // the refused ones rode with later batches
}

TEST_F(WritePathTest, SyncWritesOffDowngradesSyncedToLoggedWithoutAnyFsync) {
    StoreOptions options;
    options.sync_writes = false;
    open(options);
    in_turn([&] { ASSERT_TRUE(writer->put(Column::meta, "k", "v")); });
    ASSERT_TRUE(settle(Durability::synced));
    EXPECT_EQ(committer->stats().syncs.load(), 0u);
    EXPECT_EQ(fs->wal_syncs(), 0u);
}

TEST_F(WritePathTest, MemoryWritesSkipTheWal) {
    open();
    const auto before = fs->wal_appends();
    in_turn([&] { ASSERT_TRUE(writer->put(Column::meta, "cache", "v", Durability::memory)); });
    ASSERT_TRUE(settle(Durability::memory));
    EXPECT_EQ(fs->wal_appends(), before);
    EXPECT_EQ(value_of(writer->get(Column::meta, "cache")), "v");
}

TEST_F(WritePathTest, AColdReadGoesToTheReaderThreadAndIsPostedBack) {
    open();
    in_turn([&] { ASSERT_TRUE(writer->put(Column::pubsub_items, "node/item", "payload")); });
    ASSERT_TRUE(settle());
    // Out of the memtable into an SST whose data block is not cached yet.
    ASSERT_TRUE(store->db().Flush(rocksdb::FlushOptions(), store->column(Column::pubsub_items)).ok());
    std::optional<Value> answer;
    bool returned = false;
    in_turn([&] {
        writer->get_async(Column::pubsub_items, "node/item", [&](Value v) {
            EXPECT_TRUE(returned) << "a cold read must not answer inline";
            answer = std::move(v);
        });
        returned = true;
    });
    ASSERT_TRUE(run_until([&] { return answer.has_value(); }));
    EXPECT_EQ(value_of(*answer), "payload");
    EXPECT_EQ(writer->counters().reads_offloaded, 1u);
}

// get_in_memory: what get_async would answer inline, else not_in_memory, reading nothing.
TEST_F(WritePathTest, AnInMemoryReadAnswersStagedAndMemtableValuesAndSaysWhenTheDiskIsNeeded) {
    open();
    in_turn([&] { ASSERT_TRUE(writer->put(Column::accounts, "cold@example.org", "on disk")); });
    ASSERT_TRUE(settle());
    ASSERT_TRUE(store->db().Flush(rocksdb::FlushOptions(), store->column(Column::accounts)).ok());
    in_turn([&] {
        ASSERT_TRUE(writer->put(Column::accounts, "staged@example.org", "staged"));
        EXPECT_EQ(value_of(writer->get_in_memory(Column::accounts, "staged@example.org")), "staged");
        const auto cold = writer->get_in_memory(Column::accounts, "cold@example.org");
        ASSERT_FALSE(cold);
        EXPECT_EQ(cold.error(), Errc::not_in_memory);
    });
    ASSERT_TRUE(settle());
    in_turn([&] {
        // Committed: in the memtable now; and an absent key is not found without the disk.
        EXPECT_EQ(value_of(writer->get_in_memory(Column::accounts, "staged@example.org")), "staged");
        const auto absent = writer->get_in_memory(Column::accounts, "nobody@example.org");
        ASSERT_TRUE(absent);
        EXPECT_FALSE(absent->has_value());
    });
    EXPECT_EQ(writer->counters().reads_offloaded, 0u);
    // Once read from the disk (synchronously here), the block is cached and answers inline.
    EXPECT_EQ(value_of(writer->get(Column::accounts, "cold@example.org")), "on disk");
    in_turn([&] { EXPECT_EQ(value_of(writer->get_in_memory(Column::accounts, "cold@example.org")), "on disk"); });
}

// A MAM query's scan: the work runs on the reader thread, its result reaches the shard through
// what both capture; once the writer is gone, `done` is dropped; with the reader stopped, both
// run at once on the shard.
TEST_F(WritePathTest, WorkOffTheReactorRunsOnTheReaderThreadAndIsAnsweredOnTheShard) {
    open();
    const auto shard_thread = std::this_thread::get_id();
    auto seen = std::make_shared<std::thread::id>();
    bool answered = false;
    bool returned = false;
    in_turn([&] {
        writer->run_off_reactor([seen] { *seen = std::this_thread::get_id(); },
                                [&, seen] {
                                    EXPECT_TRUE(returned) << "done never runs inline";
                                    EXPECT_TRUE(*seen != std::thread::id()) << "done runs after the work";
                                    EXPECT_TRUE(std::this_thread::get_id() == shard_thread);
                                    answered = true;
                                });
        returned = true;
    });
    ASSERT_TRUE(run_until([&] { return answered; }));
    EXPECT_TRUE(*seen != shard_thread) << "the work ran on the shard's thread";

    // The writer goes before the answer: the work still runs, the answer is dropped.
    std::atomic<bool> worked{false};
    bool late = false;
    writer->run_off_reactor([&] { worked = true; }, [&] { late = true; });
    writer.reset();
    ASSERT_TRUE(run_until([&] { return worked.load(); }));
    io.run_for(20ms);
    EXPECT_FALSE(late);

    // The reader stopped: both run now.
    writer = std::make_unique<ShardWriter>(io, 0, *committer);
    committer->stop();
    bool both = false;
    writer->run_off_reactor([&] { both = true; }, [&] { EXPECT_TRUE(both); both = false; late = true; });
    EXPECT_TRUE(late);
}

TEST_F(WritePathTest, StopCommitsWhatWasSealedAndAnswersEveryLaterWaiterWithStopped) {
    open();
    std::vector<Done> results;
    for (int i = 0; i < 10; ++i) {
        ASSERT_TRUE(writer->put(Column::meta, "k" + std::to_string(i), "v"));
        writer->when_durable(Durability::synced, [&](Done r) { results.push_back(r); });
    }
    writer->seal();
    committer->stop();  // drains: the sealed batch is committed, its completion posted
    ASSERT_TRUE(writer->put(Column::meta, "late", "v"));
    writer->when_durable(Durability::synced, [&](Done r) { results.push_back(r); });
    ASSERT_TRUE(run_until([&] { return results.size() == 11; }));
    for (int i = 0; i < 10; ++i) EXPECT_TRUE(results[static_cast<std::size_t>(i)].has_value());
    ASSERT_FALSE(results[10].has_value());
    EXPECT_EQ(results[10].error(), Errc::stopped);
    EXPECT_EQ(value_of(writer->get(Column::meta, "late")), std::nullopt);
    EXPECT_EQ(value_of(writer->get(Column::meta, "k3")), "v");
}

TEST_F(WritePathTest, DestroyingAWriterAnswersItsWaitersInsteadOfDroppingThem) {
    open();
    fs->set_wal_latency(50ms);
    std::vector<Done> results;
    ASSERT_TRUE(writer->put(Column::meta, "a", "v"));
    writer->when_durable(Durability::synced, [&](Done r) { results.push_back(r); });
    writer->seal();  // in flight
    ASSERT_TRUE(writer->put(Column::meta, "b", "v"));
    writer->when_durable(Durability::synced, [&](Done r) { results.push_back(r); });  // open
    writer.reset();
    ASSERT_EQ(results.size(), 2u);
    for (const auto& r : results) {
        ASSERT_FALSE(r.has_value());
        EXPECT_EQ(r.error(), Errc::stopped);
    }
}

TEST_F(WritePathTest, MergedGroupCommitGivesTheSameAnswers) {
    CommitterOptions options;
    options.merge_shards = true;
    open({}, options);
    asio::io_context other_io{1};
    auto other_guard = asio::make_work_guard(other_io);
    ShardWriter other(other_io, 1, *committer);
    fs->set_wal_latency(20ms);
    int done = 0;
    for (int turn = 0; turn < 4; ++turn) {
        ASSERT_TRUE(writer->put(Column::meta, "a" + std::to_string(turn), "v"));
        writer->when_durable(Durability::synced, [&](Done r) { done += r.has_value() ? 1 : 100; });
        writer->seal();
        ASSERT_TRUE(other.put(Column::meta, "b" + std::to_string(turn), "w"));
        other.when_durable(Durability::synced, [&](Done r) { done += r.has_value() ? 1 : 100; });
        other.seal();
    }
    ASSERT_TRUE(run_until([&] {
        other_io.poll();
        return done >= 8;
    }));
    EXPECT_EQ(done, 8);
    // Groups held both shards' batches: fewer writes than batches.
    EXPECT_EQ(committer->stats().batches.load(), 8u);
    EXPECT_LT(committer->stats().db_writes.load(), 8u);
    EXPECT_EQ(value_of(other.get(Column::meta, "b3")), "w");
    EXPECT_EQ(value_of(writer->get(Column::meta, "a0")), "v");
}

// --- Errc ------------------------------------------------------------------------------------

TEST(StorageErrc, AFullDiskIsNoSpaceWhetherRocksDbMarksItOrOnlySaysSo) {
    using starling::storage::errc_of;
    EXPECT_EQ(errc_of(rocksdb::Status::NoSpace()), Errc::no_space);
    EXPECT_EQ(errc_of(rocksdb::Status::IOError("While appending to file: 000004.log: No space left on device")),
              Errc::no_space);
    EXPECT_EQ(errc_of(rocksdb::Status::IOError("injected")), Errc::io_error);
    EXPECT_EQ(starling::storage::to_string(Errc::no_space), "no-space");
    EXPECT_EQ(starling::storage::to_string(Errc::stopped), "stopped");
}

// --- Store: unclean shutdown -----------------------------------------------------------------

TEST(Store, ACleanCloseIsNotReportedAsUnclean) {
    TempDir dir;
    { auto store = Store::open(dir.str()); EXPECT_FALSE(store->recovered_from_unclean_shutdown()); }
    auto store = Store::open(dir.str());
    EXPECT_FALSE(store->recovered_from_unclean_shutdown());
    EXPECT_EQ(store->unclean_shutdowns(), 0u);
}

TEST(Store, AnUncleanShutdownIsDetectedAfterTheProcessDiesWithoutClosing) {
    // "threadsafe": the child is a fresh exec of this binary (forking a process with RocksDB's
    // threads running is not safe). It re-runs this test up to EXPECT_EXIT, so it learns the
    // directory from the environment instead of making its own.
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    constexpr const char* k_env = "STARLING_TEST_UNCLEAN_DIR";
    const char* inherited = std::getenv(k_env);
    std::optional<TempDir> owned;
    if (inherited == nullptr) owned.emplace();
    const std::string path = inherited != nullptr ? std::string(inherited) : owned->str();
    if (inherited == nullptr) {
        ::setenv(k_env, path.c_str(), 1);
        auto store = Store::open(path);  // create it, and close it cleanly
    }
    // The child opens the store, makes one synced write and dies without closing anything.
    EXPECT_EXIT(
        {
            auto store = Store::open(path);
            rocksdb::WriteOptions w;
            w.sync = true;
            const auto st = store->db().Put(w, store->column(Column::accounts), "carol@example.org", "keys");
            std::_Exit(st.ok() ? 0 : 1);
        },
        ::testing::ExitedWithCode(0), "");
    ::unsetenv(k_env);
    auto store = Store::open(path);
    EXPECT_TRUE(store->recovered_from_unclean_shutdown());
    EXPECT_EQ(store->unclean_shutdowns(), 1u);
    EXPECT_GE(store->recovery().wal_batches_replayed, 1u);
    std::string value;
    ASSERT_TRUE(store->db().Get(rocksdb::ReadOptions(), store->column(Column::accounts), "carol@example.org", &value).ok());
    EXPECT_EQ(value, "keys");
    store.reset();
    // Closed cleanly this time.
    EXPECT_FALSE(Store::open(path)->recovered_from_unclean_shutdown());
}

}  // namespace
