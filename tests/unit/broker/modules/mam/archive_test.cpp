#include "broker/src/modules/mam/archive.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <optional>
#include <random>
#include <vector>

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <rocksdb/db.h>

#include "broker/src/storage/accounts.hpp"
#include "broker/src/storage/rocks.hpp"
#include "broker/src/storage/segment_log.hpp"
#include "broker/src/storage/store.hpp"
#include "broker/src/storage/write_path.hpp"
#include "tests/support/faulty_fs.hpp"

namespace {

namespace mam = starling::modules::mam;
using starling::storage::Column;
using starling::storage::Committer;
using starling::storage::Errc;
using starling::storage::ShardWriter;
using starling::storage::Store;
using starling::storage::StoreOptions;

class TempDir {
public:
    TempDir() {
        std::random_device rd;
        _path = std::filesystem::temp_directory_path() / ("starling-mam-test-" + std::to_string(rd()));
        std::filesystem::create_directories(_path);
    }
    ~TempDir() { std::filesystem::remove_all(_path); }
    std::string str() const { return _path.string(); }

private:
    std::filesystem::path _path;
};

mam::ArchivedMessage msg(std::uint64_t id, std::string with, std::string body, bool sent = false) {
    mam::ArchivedMessage m;
    m.id = id;
    m.stamp_us = static_cast<std::int64_t>(id);
    m.with = std::move(with);
    m.sent = sent;
    m.stanza = "<message><body>" + body + "</body></message>";
    return m;
}

std::vector<std::uint64_t> ids_of(const mam::MessageArchive& a, std::string_view bare, std::uint64_t lo = 0,
                                  std::uint64_t hi = UINT64_MAX) {
    std::vector<std::uint64_t> out;
    auto r = a.scan(bare, lo, hi, [&](std::uint64_t id, std::string_view) {
        out.push_back(id);
        return true;
    });
    EXPECT_TRUE(r);
    return out;
}

TEST(IdCodec, RoundTripsAndIsOpaque) {
    const mam::IdCodec codec("secret");
    const std::uint64_t samples[] = {0, 1, 2, 0x0123456789abcdefULL, 1'764'000'000'000'000ULL,
                                     1'764'000'000'000'001ULL, UINT64_MAX};
    for (auto id : samples) {
        const auto text = codec.format(id);
        ASSERT_EQ(text.size(), 16u);
        EXPECT_EQ(text.find_first_not_of("0123456789abcdef"), std::string::npos) << text;
        EXPECT_EQ(codec.parse(text), id) << text;
    }
    // Neighbouring ids (one microsecond apart) look unrelated; the same id under another
    // secret is another text; the same secret gives the same text (stable across restarts).
    const auto a = codec.format(1'764'000'000'000'000ULL);
    const auto b = codec.format(1'764'000'000'000'001ULL);
    int same = 0;
    for (std::size_t i = 0; i < 16; ++i) same += a[i] == b[i];
    EXPECT_LT(same, 8) << a << " " << b;
    EXPECT_NE(mam::IdCodec("other").format(1), codec.format(1));
    EXPECT_EQ(mam::IdCodec("secret").format(12345), codec.format(12345));
    for (const char* bad : {"", "123", "0123456789ABCDEF", "0123456789abcdeg", "0123456789abcdef0"}) {
        EXPECT_FALSE(codec.parse(bad).has_value()) << bad;
    }
}

TEST(ArchiveKey, OneUsersKeysAreOneRangeInIdOrder) {
    // "a@x" must not be a prefix-range neighbour of "a@x.y": the NUL ends the JID.
    EXPECT_LT(mam::archive_key("a@x", UINT64_MAX), mam::archive_key("a@x.y", 0));
    EXPECT_LT(mam::archive_key("a@x", 255), mam::archive_key("a@x", 256));
    EXPECT_EQ(mam::archive_key("a@x", 1).size(), 3u + 9u);
}

TEST(MessageArchive, NextIdIsStrictlyIncreasing) {
    mam::MessageArchive a(nullptr);
    EXPECT_EQ(a.next_id(1000), 1000u);
    EXPECT_EQ(a.next_id(1000), 1001u);  // same microsecond
    EXPECT_EQ(a.next_id(500), 1002u);   // clock went back
    EXPECT_EQ(a.next_id(2000), 2000u);
}

TEST(MessageArchive, EncodeDecodeRoundTrip) {
    const auto m = msg(42, "bob@x/phone", "h\xc3\xa9llo", true);
    auto d = mam::MessageArchive::decode(mam::MessageArchive::encode(m), 42);
    ASSERT_TRUE(d);
    EXPECT_EQ(d->id, 42u);
    EXPECT_EQ(d->stamp_us, 42);
    EXPECT_EQ(d->with, "bob@x/phone");
    EXPECT_TRUE(d->sent);
    EXPECT_EQ(d->stanza, m.stanza);
    auto bad = mam::MessageArchive::decode("garbage that is no flatbuffer", 1);
    ASSERT_FALSE(bad);
    EXPECT_EQ(bad.error(), Errc::corrupt);
}

void exercise(mam::MessageArchive& a) {
    ASSERT_TRUE(a.append("alice@x", msg(10, "bob@x/r", "1")));
    ASSERT_TRUE(a.append("alice@x", msg(20, "carol@x/r", "2", true)));
    ASSERT_TRUE(a.append("alice@x", msg(30, "bob@x/r", "3")));
    ASSERT_TRUE(a.append("alice@x.y", msg(15, "bob@x/r", "other user")));
    ASSERT_TRUE(a.append("alic@x", msg(25, "bob@x/r", "prefix user")));
    EXPECT_EQ(ids_of(a, "alice@x"), (std::vector<std::uint64_t>{10, 20, 30}));
    EXPECT_EQ(ids_of(a, "alice@x", 20, 30), (std::vector<std::uint64_t>{20, 30}));  // inclusive
    EXPECT_EQ(ids_of(a, "alice@x", 11, 29), (std::vector<std::uint64_t>{20}));
    EXPECT_EQ(ids_of(a, "alice@x.y"), (std::vector<std::uint64_t>{15}));
    EXPECT_TRUE(ids_of(a, "nobody@x").empty());
    // stop early
    int seen = 0;
    ASSERT_TRUE(a.scan("alice@x", 0, UINT64_MAX, [&](std::uint64_t, std::string_view) { return ++seen < 2; }));
    EXPECT_EQ(seen, 2);
    auto g = a.get("alice@x", 20);
    ASSERT_TRUE(g);
    EXPECT_EQ(g->with, "carol@x/r");
    EXPECT_EQ(g->stanza, "<message><body>2</body></message>");
    EXPECT_EQ(a.get("alice@x", 21).error(), Errc::not_found);
    // remove [lo, hi)
    ASSERT_TRUE(a.remove("alice@x", 0, 20));
    EXPECT_EQ(ids_of(a, "alice@x"), (std::vector<std::uint64_t>{20, 30}));
    EXPECT_EQ(ids_of(a, "alice@x.y"), (std::vector<std::uint64_t>{15}));
    ASSERT_TRUE(a.remove("alice@x", 30, 30));  // empty range
    EXPECT_EQ(ids_of(a, "alice@x"), (std::vector<std::uint64_t>{20, 30}));
}

TEST(MessageArchive, InMemory) {
    mam::MessageArchive a(nullptr);
    EXPECT_FALSE(a.is_durable());
    exercise(a);
}

TEST(MessageArchive, InRocksDbAndAfterReopening) {
    TempDir dir;
    {
        auto store = Store::open(dir.str());
        mam::MessageArchive a(store.get());
        EXPECT_TRUE(a.is_durable());
        exercise(a);
    }
    auto store = Store::open(dir.str());
    mam::MessageArchive a(store.get());
    EXPECT_EQ(ids_of(a, "alice@x"), (std::vector<std::uint64_t>{20, 30}));
    auto g = a.get("alice@x", 30);
    ASSERT_TRUE(g);
    EXPECT_EQ(g->with, "bob@x/r");
}

// After a restart with the clock behind the newest record, a new id must still be above every id
// the user has (nothing overwritten), while another user's ids do not matter.
TEST(MessageArchive, FreshIdsStayAboveTheUsersNewestRecordAfterARestart) {
    TempDir dir;
    auto store = Store::open(dir.str());
    {
        mam::MessageArchive before(store.get());
        ASSERT_TRUE(before.append("a@x", msg(5'000'000, "b@x/r", "future")));
        ASSERT_TRUE(before.append("a@x.y", msg(9'000'000, "b@x/r", "other user")));
    }
    mam::MessageArchive after(store.get());
    const auto first = after.fresh_id("a@x", 1'000);  // the clock went back
    EXPECT_GT(first, 5'000'000u);
    EXPECT_LT(first, 9'000'000u) << "another user's newest id leaked into a@x's floor";
    EXPECT_GT(after.fresh_id("a@x", 1'000), first);
    EXPECT_EQ(after.fresh_id("new@x", 2'000), 5'000'003u) << "ids stay increasing per shard";
    mam::MessageArchive memory(nullptr);
    ASSERT_TRUE(memory.append("a@x", msg(7'000, "b@x/r", "m")));
    EXPECT_GT(memory.fresh_id("a@x", 10), 7'000u);
}

// The retention pass over idle users: every user with records once, in key order, a page at a
// time, whatever the length of their archives; then the cursor says the pass is over.
TEST(MessageArchive, UsersFromVisitsEachUserWithRecordsOncePerPass) {
    TempDir dir;
    auto store = Store::open(dir.str());
    mam::MessageArchive durable(store.get());
    mam::MessageArchive memory(nullptr);
    for (auto* a : {&durable, &memory}) {
        for (std::uint64_t id = 1; id <= 30; ++id) ASSERT_TRUE(a->append("b@x", msg(id, "c@x/r", "m")));
        ASSERT_TRUE(a->append("a@x", msg(5, "c@x/r", "m")));
        ASSERT_TRUE(a->append("a@x.y", msg(6, "c@x/r", "m")));  // a@x's name is its prefix
        ASSERT_TRUE(a->append("c@x", msg(7, "a@x/r", "m")));
        a->flush();
        std::string cursor;
        EXPECT_EQ(a->users_from(cursor, 2), (std::vector<std::string>{"a@x", "a@x.y"}));
        EXPECT_FALSE(cursor.empty());
        EXPECT_EQ(a->users_from(cursor, 2), (std::vector<std::string>{"b@x", "c@x"}));
        EXPECT_TRUE(cursor.empty()) << "the pass reached the end";
        EXPECT_EQ(a->users_from(cursor, 10), (std::vector<std::string>{"a@x", "a@x.y", "b@x", "c@x"}));
        EXPECT_TRUE(cursor.empty());
        // Released, a user's count is loaded again on its next use, and is still right.
        a->release("b@x");
        EXPECT_EQ(a->count("b@x").value_or(0), 30u);
    }
}

// Retention by count and by age, from the kept count: the oldest beyond the limit go, and
// records below the age floor; other users are untouched.
TEST(MessageArchive, EnforceRemovesTheExpiredAndTheOldestBeyondTheCount) {
    mam::MessageArchive a(nullptr);
    for (std::uint64_t id = 10; id < 110; ++id) ASSERT_TRUE(a.append("alice@x", msg(id, "bob@x/r", "m")));
    ASSERT_TRUE(a.append("bob@x", msg(5, "alice@x/r", "bob's")));
    EXPECT_EQ(a.count("alice@x").value_or(0), 100u);
    auto removed = a.enforce("alice@x", 20, 50);  // ids < 20 expired; then keep the newest 50
    ASSERT_TRUE(removed);
    EXPECT_EQ(*removed, 50u);
    const auto left = ids_of(a, "alice@x");
    ASSERT_EQ(left.size(), 50u);
    EXPECT_EQ(left.front(), 60u);
    EXPECT_EQ(left.back(), 109u);
    EXPECT_EQ(a.count("alice@x").value_or(0), 50u);
    EXPECT_EQ(ids_of(a, "bob@x"), (std::vector<std::uint64_t>{5}));
    // Within the limits: nothing goes.
    EXPECT_EQ(a.enforce("alice@x", 20, 50).value_or(99), 0u);
    EXPECT_EQ(ids_of(a, "alice@x").size(), 50u);
}

// The count is stored with the records and read back after a restart (no scan); an archive
// written before counts were kept is counted once.
TEST(MessageArchive, CountsAreStoredAndLegacyArchivesAreCountedOnce) {
    TempDir dir;
    auto store = Store::open(dir.str());
    {
        mam::MessageArchive a(store.get());
        for (std::uint64_t id = 1; id <= 7; ++id) ASSERT_TRUE(a.append("alice@x", msg(id, "bob@x/r", "m")));
        ASSERT_TRUE(a.remove("alice@x", 0, 3));  // ids 1, 2
        EXPECT_EQ(a.count("alice@x").value_or(0), 5u);
        for (std::uint64_t id = 1; id <= 3; ++id) ASSERT_TRUE(a.append("old@x", msg(id, "bob@x/r", "m")));
    }
    std::string value;
    ASSERT_TRUE(store->db()
                    .Get(rocksdb::ReadOptions(), store->column(Column::meta),
                         starling::storage::slice(mam::count_key("alice@x")), &value)
                    .ok());
    EXPECT_EQ(value, std::string("\0\0\0\0\0\0\0\x05", 8));
    // "old@x" as if written by an older broker: no count stored.
    ASSERT_TRUE(store->db()
                    .Delete(rocksdb::WriteOptions(), store->column(Column::meta),
                            starling::storage::slice(mam::count_key("old@x")))
                    .ok());
    mam::MessageArchive b(store.get());
    EXPECT_EQ(b.count("alice@x").value_or(0), 5u);
    EXPECT_EQ(b.count("old@x").value_or(0), 3u);
    ASSERT_TRUE(b.append("alice@x", msg(b.fresh_id("alice@x", 100), "bob@x/r", "m")));
    EXPECT_EQ(b.count("alice@x").value_or(0), 6u);
}

// Through the shard's write path: appends are committed by the committer thread; what was
// appended is readable inside when_readable, and the count goes with the records.
TEST(MessageArchive, ThroughTheWritePathRecordsAreReadableWhenCommitted) {
    TempDir dir;
    auto store = Store::open(dir.str());
    asio::io_context io{1};
    asio::executor_work_guard<asio::io_context::executor_type> guard{io.get_executor()};
    Committer committer(*store);
    committer.start();
    {
        ShardWriter writer(io, 0, committer);
        mam::MessageArchive a(store.get(), &writer);
        a.defer_writes_to(io);
        std::vector<std::uint64_t> seen;
        bool answered = false, readable = false;
        asio::post(io, [&] {
            for (std::uint64_t id = 1; id <= 100; ++id) ASSERT_TRUE(a.append("alice@x", msg(id, "bob@x/r", "m")));
            a.when_readable([&](bool ok) {
                readable = ok;
                seen = ids_of(a, "alice@x");
                answered = true;
            });
        });
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
        while (!answered && std::chrono::steady_clock::now() < deadline) io.run_for(std::chrono::milliseconds(2));
        ASSERT_TRUE(answered);
        EXPECT_TRUE(readable);
        EXPECT_EQ(seen.size(), 100u);
        // Each message: its body, in the log. The index entries wait in memory and go as one
        // chunk (100 entries, fewer than the 128 a chunk holds) with the log's marker, when
        // the archive is read: 102 writes, no index record and no count per message.
        EXPECT_EQ(writer.counters().staged_ops, 102u) << "one RocksDB write per message or more";
        EXPECT_EQ(writer.overlay_size(), 0u) << "archive records are not copied into the overlay";
        // Nothing pending: answered at once.
        bool inline_answer = false;
        a.when_readable([&](bool ok) { inline_answer = ok; });
        EXPECT_TRUE(inline_answer);
        EXPECT_EQ(a.count("alice@x").value_or(0), 100u) << "a new archive's count is known without a scan";
        answered = false;
        asio::post(io, [&] {
            ASSERT_TRUE(a.append("alice@x", msg(200, "bob@x/r", "m")));
            a.persist_counts();  // the sweep's tick
            a.when_readable([&](bool) { answered = true; });
        });
        while (!answered && std::chrono::steady_clock::now() < deadline) io.run_for(std::chrono::milliseconds(2));
        ASSERT_TRUE(answered);
        EXPECT_EQ(writer.counters().staged_ops, 106u) << "one body, one chunk, the marker and the one count";
    }
    std::string value;
    ASSERT_TRUE(store->db()
                    .Get(rocksdb::ReadOptions(), store->column(Column::meta),
                         starling::storage::slice(mam::count_key("alice@x")), &value)
                    .ok());
    EXPECT_EQ(value, std::string("\0\0\0\0\0\0\0\x65", 8));
    committer.stop();
}

// A WAL of an older broker with an archive range deletion from a user's first key (its
// retention at login) after records of that user: replayed at open, it must not break the
// memtable's per-owner insert hints (RocksDB shares them between point and range tombstone
// lists); the store rewrites the deletion's start during the replay.
TEST(MessageArchive, RangeDeletionsOfOlderVersionsReplayFromTheWal) {
    TempDir dir;
    { auto created = Store::open(dir.str()); }
    {
        rocksdb::Options o;
        o.avoid_flush_during_shutdown = true;
        std::vector<rocksdb::ColumnFamilyDescriptor> families{{rocksdb::kDefaultColumnFamilyName, {}}};
        for (std::size_t i = 0; i < static_cast<std::size_t>(Column::count_); ++i) {
            families.emplace_back(std::string(starling::storage::to_string(static_cast<Column>(i))),
                                  rocksdb::ColumnFamilyOptions());
        }
        std::vector<rocksdb::ColumnFamilyHandle*> handles;
        rocksdb::DB* raw = nullptr;
        ASSERT_TRUE(rocksdb::DB::Open(o, dir.str(), families, &handles, &raw).ok());
        auto* cf = handles[static_cast<std::size_t>(Column::mam) + 1];
        using starling::storage::slice;
        const rocksdb::WriteOptions w;
        ASSERT_TRUE(raw->Put(w, cf, slice(mam::archive_key("alice@x", 1)), "a").ok());
        ASSERT_TRUE(raw->Put(w, cf, slice(mam::archive_key("alice@x", 2)), "b").ok());
        ASSERT_TRUE(raw->DeleteRange(w, cf, slice(mam::archive_key("alice@x", 0)), slice(mam::archive_key("alice@x", 2))).ok());
        ASSERT_TRUE(raw->Put(w, cf, slice(mam::archive_key("alice@x", 3)), "c").ok());
        for (auto* h : handles) raw->DestroyColumnFamilyHandle(h);
        ASSERT_TRUE(raw->Close().ok());
        delete raw;
    }
    auto store = Store::open(dir.str());
    EXPECT_GE(store->recovery().wal_batches_replayed, 4u) << "the writes must come from the WAL";
    mam::MessageArchive a(store.get());
    EXPECT_EQ(ids_of(a, "alice@x"), (std::vector<std::uint64_t>{2, 3}));
    ASSERT_TRUE(a.append("alice@x", msg(4, "bob@x/r", "after the replay")));
    ASSERT_TRUE(a.remove("alice@x", 0, 3));
    EXPECT_EQ(ids_of(a, "alice@x"), (std::vector<std::uint64_t>{3, 4}));
}

// A slow disk (every WAL append takes 400 ms) does not slow the reactor: turns archiving
// messages end at once, the commits happen on the committer thread, and a reader waits for them
// through when_readable instead of blocking.
TEST(MessageArchive, ASlowDiskDoesNotStallTheReactor) {
    using namespace std::chrono_literals;
    TempDir dir;
    auto fs = std::make_shared<starling::test::FaultyFileSystem>();
    StoreOptions options;
    options.file_system = fs;
    auto store = Store::open(dir.str(), options);
    asio::io_context io{1};
    asio::executor_work_guard<asio::io_context::executor_type> guard{io.get_executor()};
    Committer committer(*store);
    committer.start();
    {
        ShardWriter writer(io, 0, committer);
        mam::MessageArchive a(store.get(), &writer);
        a.defer_writes_to(io);
        fs->set_wal_latency(400ms);
        const auto start = std::chrono::steady_clock::now();
        std::chrono::steady_clock::duration slowest{};
        std::uint64_t id = 0;
        for (int turn = 0; turn < 20; ++turn) {
            asio::post(io, [&] {
                for (int i = 0; i < 50; ++i) ASSERT_TRUE(a.append("alice@x", msg(++id, "bob@x/r", "m")));
            });
            const auto t0 = std::chrono::steady_clock::now();
            io.poll();  // the turn, the archive's end of turn and the writer's seal
            slowest = std::max(slowest, std::chrono::steady_clock::now() - t0);
        }
        const auto turns_done = std::chrono::steady_clock::now() - start;
        EXPECT_LT(slowest, 200ms) << "a turn waited for the disk";
        EXPECT_LT(turns_done, 400ms) << "20 turns took longer than one WAL append";
        bool answered = false;
        std::size_t seen = 0;
        a.when_readable([&](bool ok) {
            EXPECT_TRUE(ok);
            seen = ids_of(a, "alice@x").size();
            answered = true;
        });
        EXPECT_FALSE(answered) << "nothing can be committed yet";
        const auto deadline = std::chrono::steady_clock::now() + 20s;
        while (!answered && std::chrono::steady_clock::now() < deadline) io.run_for(5ms);
        ASSERT_TRUE(answered);
        EXPECT_EQ(seen, 1000u);
        EXPECT_GE(std::chrono::steady_clock::now() - start, 400ms) << "the reader did not wait for the disk";
        fs->heal();
    }
    committer.stop();
}

// --- store-once (issue 14): one body per message, one index record per party ---

std::size_t bodies_in(Store& store) {
    std::size_t n = 0;
    std::unique_ptr<rocksdb::Iterator> it(store.db().NewIterator(rocksdb::ReadOptions(), store.column(Column::mam_bodies)));
    for (it->SeekToFirst(); it->Valid(); it->Next()) ++n;
    return n;
}

// alice@x sends bob@x one message (both homed on one shard): stored once, in both archives.
// `sender_full` empty: appended as the previous version did (the log record names alice's bare
// JID, and bob's entry takes a log record of its own).
void chat_once(mam::MessageArchive& a, std::uint64_t id, std::string_view text,
               std::string_view sender_full = "alice@x/r") {
    const std::string stanza = "<message from='alice@x/r' to='bob@x'><body>" + std::string(text) + "</body></message>";
    ASSERT_TRUE(a.append("alice@x", id, static_cast<std::int64_t>(id), "bob@x", true, stanza, sender_full));
    auto shared = a.append_shared("bob@x", id, "alice@x/r", "alice@x");
    ASSERT_TRUE(shared);
    ASSERT_TRUE(*shared);
}

std::vector<std::string> all_orphans(const mam::MessageArchive& a) {
    std::vector<std::string> out;
    std::string cursor;
    do {
        auto some = a.find_orphans(cursor, 3, UINT64_MAX, [](std::string_view) { return true; });
        out.insert(out.end(), some.begin(), some.end());
    } while (!cursor.empty());
    return out;
}

TEST(StoreOnce, AMessageStoredOnceIsVisibleToBothParties) {
    TempDir dir;
    {
        auto store = Store::open(dir.str());
        mam::MessageArchive a(store.get());
        chat_once(a, 100, "hi");
        EXPECT_EQ(bodies_in(*store), 1u) << "one body for the two archives";
    }
    auto store = Store::open(dir.str());  // and after a restart
    mam::MessageArchive a(store.get());
    auto mine = a.get("alice@x", 100);
    ASSERT_TRUE(mine);
    EXPECT_TRUE(mine->sent);
    EXPECT_EQ(mine->with, "bob@x");
    EXPECT_EQ(mine->stanza, "<message from='alice@x/r' to='bob@x'><body>hi</body></message>");
    EXPECT_FALSE(mine->needs_stanza_id);
    auto theirs = a.get("bob@x", 100);
    ASSERT_TRUE(theirs);
    EXPECT_FALSE(theirs->sent);
    EXPECT_EQ(theirs->with, "alice@x/r");
    EXPECT_EQ(theirs->stanza, mine->stanza);
    EXPECT_TRUE(theirs->needs_stanza_id) << "bob's <stanza-id/> is added when the record is sent";
    EXPECT_EQ(ids_of(a, "bob@x"), (std::vector<std::uint64_t>{100}));
    EXPECT_EQ(a.count("alice@x").value_or(0), 1u);
    EXPECT_EQ(a.count("bob@x").value_or(0), 1u);
    EXPECT_TRUE(all_orphans(a).empty());
    // The recipient cannot take an id at or below its newest: it stores a copy of its own.
    ASSERT_TRUE(a.append("bob@x", 500, 500, "carol@x/r", false, "<message/>"));
    ASSERT_TRUE(a.append("alice@x", 400, 400, "bob@x", true, "<message><body>late</body></message>"));
    auto refused = a.append_shared("bob@x", 400, "alice@x/r", "alice@x");
    ASSERT_TRUE(refused);
    EXPECT_FALSE(*refused);
    EXPECT_EQ(ids_of(a, "bob@x"), (std::vector<std::uint64_t>{100, 500}));
}

TEST(StoreOnce, DeletingOnePartysAccountKeepsTheOthersCopy) {
    TempDir dir;
    auto store = Store::open(dir.str());
    mam::MessageArchive a(store.get());
    chat_once(a, 100, "one");
    chat_once(a, 200, "two");
    starling::storage::AccountStore accounts(*store);
    ASSERT_TRUE(accounts.purge_data("alice@x"));  // what `starlingctl user del` does to the store
    a.forget("alice@x");
    EXPECT_TRUE(ids_of(a, "alice@x").empty());
    EXPECT_TRUE(all_orphans(a).empty()) << "bob's records still name both bodies";
    auto kept = a.get("bob@x", 200);
    ASSERT_TRUE(kept);
    EXPECT_EQ(kept->stanza, "<message from='alice@x/r' to='bob@x'><body>two</body></message>");
    // Then bob goes too: nobody names the bodies, the pass removes them.
    ASSERT_TRUE(accounts.purge_data("bob@x"));
    a.forget("bob@x");
    const auto orphans = all_orphans(a);
    EXPECT_EQ(orphans.size(), 2u);
    a.erase_bodies(orphans);
    EXPECT_EQ(bodies_in(*store), 0u);
}

TEST(StoreOnce, RetentionRemovesBodiesNobodyRefersTo) {
    TempDir dir;
    auto store = Store::open(dir.str());
    mam::MessageArchive a(store.get());
    const std::uint64_t base = 1'000'000'000'000'000;  // µs since the epoch (2001)
    for (std::uint64_t i = 0; i < 10; ++i) chat_once(a, base + i, "m");
    // A message bob got from a remote party: a body of his own.
    ASSERT_TRUE(a.append("bob@x", base + 20, static_cast<std::int64_t>(base + 20), "dave@remote/r", false, "<message/>"));
    EXPECT_EQ(bodies_in(*store), 11u);
    // By count: bob keeps his newest 5. His own body goes with his record at once; alice still
    // names the shared ones, which stay.
    ASSERT_TRUE(a.enforce("bob@x", 0, 5));
    EXPECT_EQ(ids_of(a, "bob@x").size(), 5u);
    EXPECT_TRUE(all_orphans(a).empty());
    EXPECT_EQ(bodies_in(*store), 11u);
    ASSERT_TRUE(a.enforce("alice@x", 0, 3));
    auto orphans = all_orphans(a);  // base+0 .. base+5: neither alice nor bob has them
    EXPECT_EQ(orphans.size(), 6u);
    a.erase_bodies(orphans);
    EXPECT_EQ(bodies_in(*store), 5u);
    EXPECT_TRUE(a.get("bob@x", base + 6)) << "shared, still named by bob";
    // By count again: bob keeps only the message of his own body.
    ASSERT_TRUE(a.enforce("bob@x", 0, 1));
    EXPECT_EQ(ids_of(a, "bob@x"), (std::vector<std::uint64_t>{base + 20}));
    // By age: every body older than the floor, in one range deletion.
    a.expire_bodies(base + 8);
    EXPECT_EQ(bodies_in(*store), 3u);  // base+8, base+9 (alice's) and base+20 (bob's own)
    ASSERT_TRUE(a.enforce("alice@x", base + 8, 0));
    EXPECT_EQ(ids_of(a, "alice@x"), (std::vector<std::uint64_t>{base + 8, base + 9}));
    // bob's own body (nobody else names it) goes with his expired record, no pass needed.
    ASSERT_TRUE(a.enforce("bob@x", base + 30, 0));
    EXPECT_EQ(bodies_in(*store), 2u);
    EXPECT_TRUE(a.get("alice@x", base + 9));
}

// A store written before store-once: records with the stanza inline (FlatBuffers) are read as
// they are, next to new ones, and retention and counts treat them alike.
TEST(StoreOnce, AnOldFormatStoreIsRead) {
    TempDir dir;
    {
        auto store = Store::open(dir.str());
        for (std::uint64_t id : {10, 20}) {
            const auto m = msg(id, "bob@x/r", "old " + std::to_string(id), id == 20);
            ASSERT_TRUE(store->db()
                            .Put(rocksdb::WriteOptions(), store->column(Column::mam),
                                 starling::storage::slice(mam::archive_key("alice@x", id)),
                                 starling::storage::slice(mam::MessageArchive::encode(m)))
                            .ok());
        }
    }
    auto store = Store::open(dir.str());
    mam::MessageArchive a(store.get());
    auto old = a.get("alice@x", 20);
    ASSERT_TRUE(old);
    EXPECT_EQ(old->stanza, "<message><body>old 20</body></message>");
    EXPECT_EQ(old->with, "bob@x/r");
    EXPECT_TRUE(old->sent);
    EXPECT_FALSE(old->stanza_in_body);
    EXPECT_EQ(a.count("alice@x").value_or(0), 2u) << "counted once";
    const std::uint64_t id = a.fresh_id("alice@x", 5);  // the clock behind: still above 20
    EXPECT_GT(id, 20u);
    ASSERT_TRUE(a.append("alice@x", id, static_cast<std::int64_t>(id), "bob@x", true, "<message><body>new</body></message>"));
    EXPECT_EQ(ids_of(a, "alice@x"), (std::vector<std::uint64_t>{10, 20, id}));
    std::vector<std::string> withs;
    ASSERT_TRUE(a.scan("alice@x", 0, UINT64_MAX, [&](std::uint64_t i, std::string_view v) {
        auto d = mam::MessageArchive::decode(v, i);
        EXPECT_TRUE(d);
        if (d) withs.push_back(d->with);
        return true;
    }));
    EXPECT_EQ(withs, (std::vector<std::string>{"bob@x/r", "bob@x/r", "bob@x"}));
    EXPECT_EQ(a.get("alice@x", id)->stanza, "<message><body>new</body></message>");
    ASSERT_TRUE(a.enforce("alice@x", 0, 1));
    EXPECT_EQ(ids_of(a, "alice@x"), (std::vector<std::uint64_t>{id}));
    EXPECT_TRUE(all_orphans(a).empty());
}

TEST(StoreOnce, InMemoryToo) {
    mam::MessageArchive a(nullptr);
    chat_once(a, 100, "hi");
    ASSERT_TRUE(a.get("bob@x", 100));
    a.forget("alice@x");
    EXPECT_TRUE(all_orphans(a).empty());
    a.forget("bob@x");
    EXPECT_EQ(all_orphans(a).size(), 1u);
}

}  // namespace

// --- the body log (issue 14): through the write path, bodies go to the shard's SegmentLog ---

namespace {

// Runs `f` on the shard (posted), then waits until what it archived is readable.
void on_shard_then_readable(asio::io_context& io, mam::MessageArchive& a, const std::function<void()>& f) {
    bool answered = false;
    asio::post(io, [&] {
        f();
        a.when_readable([&](bool ok) {
            EXPECT_TRUE(ok);
            answered = true;
        });
    });
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!answered && std::chrono::steady_clock::now() < deadline) io.run_for(std::chrono::milliseconds(2));
    ASSERT_TRUE(answered);
}

std::string log_bytes(const std::string& store_dir) {
    std::string out;
    for (const auto& e : std::filesystem::recursive_directory_iterator(std::filesystem::path(store_dir) / "archive-log")) {
        if (!e.is_regular_file()) continue;
        std::ifstream in(e.path(), std::ios::binary);
        out.append(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    }
    return out;
}

std::optional<std::uint64_t> sweep_all(const mam::MessageArchive& a) {
    std::optional<std::uint64_t> offset = 0;
    while (offset) offset = a.sweep_log(*a.log(), *offset, 2, UINT64_MAX);
    return offset;
}

// A broker's shard for the archive: store, committer, writer; destroyed without a flush of the
// entries in memory (what a kill -9 or a stop leaves), the log's records written.
struct Shard {
    explicit Shard(const std::string& dir) : store(Store::open(dir)), committer(*store) {
        committer.start();
        writer = std::make_unique<ShardWriter>(io, 0, committer);
        archive = std::make_unique<mam::MessageArchive>(store.get(), writer.get());
        archive->defer_writes_to(io);
    }
    ~Shard() {
        archive.reset();  // no flush of the entries in memory
        writer->seal();
        run_until([] { return false; }, std::chrono::milliseconds(50));
        writer.reset();
        committer.stop();
    }
    void run_until(const std::function<bool()>& done, std::chrono::milliseconds limit = std::chrono::seconds(10)) {
        const auto deadline = std::chrono::steady_clock::now() + limit;
        while (!done() && std::chrono::steady_clock::now() < deadline) io.run_for(std::chrono::milliseconds(2));
    }
    // Runs f on the shard and waits for one turn to be committed (without reading the archive).
    void turn(const std::function<void()>& f) {
        bool committed = false;
        asio::post(io, [&] {
            f();
            writer->when_durable(starling::storage::Durability::logged, [&](auto) { committed = true; });
        });
        run_until([&] { return committed; });
        ASSERT_TRUE(committed);
    }
    asio::io_context io{1};
    asio::executor_work_guard<asio::io_context::executor_type> guard{io.get_executor()};
    std::unique_ptr<Store> store;
    Committer committer;
    std::unique_ptr<ShardWriter> writer;
    std::unique_ptr<mam::MessageArchive> archive;
};

// `n` messages to bob@x from a remote sender (bodies of his own), ids from `first`, readable.
void bob_gets_from_afar(Shard& s, std::uint64_t first, std::uint64_t n) {
    on_shard_then_readable(s.io, *s.archive, [&] {
        for (std::uint64_t i = 0; i < n; ++i) {
            ASSERT_TRUE(s.archive->append("bob@x", first + i, static_cast<std::int64_t>(first + i), "dave@remote/r", false,
                                          "<message><body>n" + std::to_string(i) + "</body></message>"));
        }
    });
}

std::vector<std::uint64_t> range(std::uint64_t first, std::uint64_t n) {
    std::vector<std::uint64_t> out;
    for (std::uint64_t i = 0; i < n; ++i) out.push_back(first + i);
    return out;
}

}  // namespace

TEST(BodyLog, BodiesGoToTheLogAreReadByBothPartiesAndSurviveARestart) {
    TempDir dir;
    const std::uint64_t base = 1'000'000'000'000'000;
    {
        Shard s(dir.str());
        auto& a = *s.archive;
        ASSERT_NE(a.log(), nullptr);
        on_shard_then_readable(s.io, a, [&] {
            for (std::uint64_t i = 0; i < 20; ++i) chat_once(a, base + i, "hello " + std::to_string(i));
            // From a remote sender: a body of bob's own.
            ASSERT_TRUE(a.append("bob@x", base + 50, static_cast<std::int64_t>(base + 50), "dave@remote/r", false,
                                 "<message><body>from afar</body></message>"));
        });
        EXPECT_EQ(bodies_in(*s.store), 0u) << "no body in the store: they are in the log";
        auto theirs = a.get("bob@x", base + 3);
        ASSERT_TRUE(theirs);
        EXPECT_EQ(theirs->stanza, "<message from='alice@x/r' to='bob@x'><body>hello 3</body></message>");
        EXPECT_TRUE(theirs->needs_stanza_id);
        EXPECT_EQ(ids_of(a, "bob@x").size(), 21u);
    }
    auto store = Store::open(dir.str());
    mam::MessageArchive a(store.get());  // no writer: reads only, from the logs found at open
    auto mine = a.get("alice@x", base + 19);
    ASSERT_TRUE(mine);
    EXPECT_EQ(mine->stanza, "<message from='alice@x/r' to='bob@x'><body>hello 19</body></message>");
    auto afar = a.get("bob@x", base + 50);
    ASSERT_TRUE(afar);
    EXPECT_EQ(afar->stanza, "<message><body>from afar</body></message>");
}

TEST(BodyLog, ThePassErasesFromTheLogWhatNoIndexRecordNamesAndNothingElse) {
    TempDir dir;
    const std::uint64_t base = 1'000'000'000'000'000;
    Shard s(dir.str());
    auto& a = *s.archive;
    on_shard_then_readable(s.io, a, [&] {
        for (std::uint64_t i = 0; i < 10; ++i) chat_once(a, base + i, "private note " + std::to_string(i));
    });
    ASSERT_NE(log_bytes(dir.str()).find("private note 7<"), std::string::npos);
    sweep_all(a);
    EXPECT_EQ(a.log()->stats().erased.load(), 0u) << "every body is named";

    // Alice's account goes: bob still names the shared bodies.
    starling::storage::AccountStore accounts(*s.store);
    on_shard_then_readable(s.io, a, [&] {
        ASSERT_TRUE(accounts.purge_data("alice@x"));
        a.forget("alice@x");
    });
    sweep_all(a);
    EXPECT_EQ(a.log()->stats().erased.load(), 0u);
    ASSERT_TRUE(a.get("bob@x", base + 7));

    // Bob keeps his newest 4 by count: the 6 others are named by nobody now.
    on_shard_then_readable(s.io, a, [&] { ASSERT_TRUE(a.enforce("bob@x", 0, 4)); });
    sweep_all(a);
    // Six bodies, which nobody names now (bob's entries rode on them: no records of their own).
    EXPECT_EQ(a.log()->stats().erased.load(), 6u);
    const auto bytes = log_bytes(dir.str());
    for (int i = 0; i < 6; ++i) {
        EXPECT_EQ(bytes.find("private note " + std::to_string(i) + "<"), std::string::npos)
            << "an erased message is still in the log's file: " << i;
    }
    for (int i = 6; i < 10; ++i) {
        auto kept = a.get("bob@x", base + static_cast<std::uint64_t>(i));
        ASSERT_TRUE(kept) << i;
        EXPECT_NE(kept->stanza.find("private note " + std::to_string(i) + "<"), std::string::npos);
    }
}

// --- the index per tick (issue 14): entries wait in memory, go as one chunk per user ---


TEST(IndexPerTick, EntriesNotYetWrittenAreRebuiltFromTheLogAfterAStop) {
    TempDir dir;
    const std::uint64_t base = 1'000'000'000'000'000;
    {
        Shard s(dir.str());
        // 40 messages written as chunks (a read of the archive), then 30 that stay in memory.
        on_shard_then_readable(s.io, *s.archive, [&] {
            for (std::uint64_t i = 0; i < 40; ++i) chat_once(*s.archive, base + i, "early " + std::to_string(i));
        });
        s.turn([&] {
            for (std::uint64_t i = 40; i < 70; ++i) chat_once(*s.archive, base + i, "late " + std::to_string(i));
        });
        EXPECT_EQ(ids_of(*s.archive, "alice@x").size(), 40u) << "the late entries are only in memory";
    }
    Shard s(dir.str());
    EXPECT_EQ(s.archive->replay(*s.archive->log()), 60u) << "alice's and bob's 30 late entries";
    on_shard_then_readable(s.io, *s.archive, [] {});
    EXPECT_EQ(ids_of(*s.archive, "alice@x"), range(base, 70)) << "each id once, in order";
    EXPECT_EQ(ids_of(*s.archive, "bob@x"), range(base, 70));
    auto late = s.archive->get("bob@x", base + 65);
    ASSERT_TRUE(late);
    EXPECT_EQ(late->stanza, "<message from='alice@x/r' to='bob@x'><body>late 65</body></message>");
    EXPECT_TRUE(late->needs_stanza_id);
    // Nothing is rebuilt twice: the marker moved past them with their chunks.
    EXPECT_EQ(s.archive->replay(*s.archive->log()), 0u);
}

static std::size_t records_in(starling::storage::SegmentLog& log) {
    std::size_t n = 0;
    std::optional<std::uint64_t> offset = 0;
    while (offset) offset = log.sweep(*offset, 64, UINT64_MAX, [&](std::uint64_t, std::uint64_t, std::string_view) {
        ++n;
        return true;
    });
    return n;
}

TEST(IndexPerTick, TheRecipientsEntryRidesOnTheSendersRecord) {
    TempDir dir;
    const std::uint64_t base = 1'000'000'000'000'000;
    {
        Shard s(dir.str());
        s.turn([&] {
            for (std::uint64_t i = 0; i < 10; ++i) chat_once(*s.archive, base + i, "now " + std::to_string(i));
        });
        EXPECT_EQ(records_in(*s.archive->log()), 10u) << "one log record per message, not one per party";
        // A log the previous version wrote: a record for each party.
        s.turn([&] {
            for (std::uint64_t i = 10; i < 15; ++i) chat_once(*s.archive, base + i, "before " + std::to_string(i), "");
        });
        EXPECT_EQ(records_in(*s.archive->log()), 20u);
    }
    // Stopped before any tick: every entry is rebuilt from the records, bob's from the flag on
    // alice's.
    Shard s(dir.str());
    EXPECT_EQ(s.archive->replay(*s.archive->log()), 30u);
    on_shard_then_readable(s.io, *s.archive, [] {});
    EXPECT_EQ(ids_of(*s.archive, "alice@x"), range(base, 15));
    EXPECT_EQ(ids_of(*s.archive, "bob@x"), range(base, 15));
    for (const std::uint64_t id : {base + 4, base + 12}) {
        auto got = s.archive->get("bob@x", id);
        ASSERT_TRUE(got) << id;
        EXPECT_EQ(got->with, "alice@x/r") << "bob's entry names the sender's full JID";
        EXPECT_FALSE(got->sent);
        EXPECT_TRUE(got->needs_stanza_id);
        EXPECT_NE(got->stanza.find(id == base + 4 ? "now 4<" : "before 12<"), std::string::npos);
        auto mine = s.archive->get("alice@x", id);
        ASSERT_TRUE(mine);
        EXPECT_EQ(mine->with, "bob@x");
        EXPECT_TRUE(mine->sent);
    }
}

// A sent message's record leaves out its owner when the stanza starts with it as its 'from'
// (as the session stamps it): the replay reads it from there. An owner the stanza does not
// start with is written out and wins.
TEST(IndexPerTick, ASentRecordReadsItsOwnerFromTheStanzasFrom) {
    TempDir dir;
    const std::uint64_t base = 1'000'000'000'000'000;
    std::uint64_t compact = 0, explicit_owner = 0;
    {
        Shard s(dir.str());
        auto one = [&](std::uint64_t id, std::string_view owner) {
            const std::uint64_t before = s.archive->log()->staged_end();
            s.turn([&] {
                const std::string stanza = "<message from='alice@x/r' to='bob@x'><body>same size</body></message>";
                ASSERT_TRUE(s.archive->append("alice@x", id, static_cast<std::int64_t>(id), "bob@x", true, stanza, owner));
                auto shared = s.archive->append_shared("bob@x", id, owner, "alice@x");
                ASSERT_TRUE(shared);
                EXPECT_TRUE(*shared);
            });
            return s.archive->log()->written_end() - before;
        };
        compact = one(base, "alice@x/r");
        explicit_owner = one(base + 1, "alice@x/q");  // not the stanza's 'from'
        EXPECT_EQ(records_in(*s.archive->log()), 2u);
    }
    EXPECT_EQ(explicit_owner - compact, 2u + std::string_view("alice@x/q").size()) << "no owner field when the stanza has it";
    Shard s(dir.str());
    EXPECT_EQ(s.archive->replay(*s.archive->log()), 4u);
    on_shard_then_readable(s.io, *s.archive, [] {});
    auto first = s.archive->get("bob@x", base);
    ASSERT_TRUE(first);
    EXPECT_EQ(first->with, "alice@x/r");
    auto second = s.archive->get("bob@x", base + 1);
    ASSERT_TRUE(second);
    EXPECT_EQ(second->with, "alice@x/q") << "the owner written out, not the stanza's 'from'";
    for (const std::uint64_t id : {base, base + 1}) {
        auto mine = s.archive->get("alice@x", id);
        ASSERT_TRUE(mine) << id;
        EXPECT_TRUE(mine->sent);
        EXPECT_EQ(mine->with, "bob@x");
        EXPECT_NE(mine->stanza.find("same size"), std::string::npos);
    }
    // The sweep finds both records named (by alice's and by bob's index): nothing is erased.
    std::optional<std::uint64_t> offset = 0;
    while (offset) offset = s.archive->sweep_log(*s.archive->log(), *offset, 16, UINT64_MAX);
    EXPECT_TRUE(s.archive->get("bob@x", base));
    EXPECT_TRUE(s.archive->get("alice@x", base + 1));
}

static std::string be_bytes(std::uint64_t v, int n) {
    std::string out;
    for (int i = n - 1; i >= 0; --i) out += static_cast<char>((v >> (8 * i)) & 0xff);
    return out;
}

static std::vector<std::string> chunks_of(Store& store, std::string_view bare) {
    std::vector<std::string> out;
    std::unique_ptr<rocksdb::Iterator> it(store.db().NewIterator(rocksdb::ReadOptions(), store.column(Column::mam)));
    const std::string prefix = std::string(bare) + '\0';
    for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
        const auto v = it->value().ToString();
        if (v.size() > 5 && v.compare(0, 4, std::string(4, '\0')) == 0) out.push_back(v);
    }
    return out;
}

TEST(IndexPerTick, ChunksAreCompactAndKeepEveryField) {
    TempDir dir;
    const std::uint64_t base = 1'000'000'000'000'000;
    Shard s(dir.str());
    on_shard_then_readable(s.io, *s.archive, [&] {
        // 100 messages ~2 ms apart, one with a stamp of its own (an import, an offline delay).
        for (std::uint64_t i = 0; i < 100; ++i) {
            const std::uint64_t id = base + i * 2000;
            const std::int64_t stamp = i == 7 ? static_cast<std::int64_t>(id) - 3'600'000'000 : static_cast<std::int64_t>(id);
            ASSERT_TRUE(s.archive->append("bob@x", id, stamp, "dave@remote/r", false,
                                          "<message><body>n" + std::to_string(i) + "</body></message>"));
        }
    });
    const auto chunks = chunks_of(*s.store, "bob@x");
    ASSERT_EQ(chunks.size(), 1u);
    // Each entry: kind and flags, ~2 bytes of id, ~3 of position, and the 4-byte hash of 'with'
    // (the log record names it): version 2 took ~20 bytes with the JID, version 1 33.
    EXPECT_LT(chunks[0].size(), 5u + 100u * 10u + 8u) << "entries take about 9 bytes each";
    EXPECT_EQ(chunks[0].find("dave@remote"), std::string::npos) << "'with' is read from the log";
    EXPECT_EQ(chunks[0][4], '\x06');
    std::vector<std::uint64_t> want;
    for (std::uint64_t i = 0; i < 100; ++i) want.push_back(base + i * 2000);
    EXPECT_EQ(ids_of(*s.archive, "bob@x"), want);
    for (const std::uint64_t i : {0, 7, 99}) {
        auto m = s.archive->get("bob@x", base + i * 2000);
        ASSERT_TRUE(m) << i;
        EXPECT_EQ(m->with, "dave@remote/r");
        EXPECT_EQ(m->stanza, "<message><body>n" + std::to_string(i) + "</body></message>");
        EXPECT_EQ(m->stamp_us, static_cast<std::int64_t>(base + i * 2000) - (i == 7 ? 3'600'000'000 : 0));
    }
}

// Three body records of bob's, received from dave@remote/r (ids base..base+2, bodies
// "<word> 0".."<word> 2"), written to the log as earlier versions wrote them (3, kind 2, no
// flags, owner, with, stanza): their positions.
static std::vector<std::uint64_t> log_bodies_of_bob(Shard& s, std::uint64_t base, std::string_view word) {
    starling::storage::LogBuffer buf;
    std::vector<std::uint64_t> positions;
    for (std::uint64_t i = 0; i < 3; ++i) {
        const std::string stanza = "<message><body>" + std::string(word) + " " + std::to_string(i) + "</body></message>";
        const std::string record = std::string("\x03\x02\x00", 3) + be_bytes(5, 2) + "bob@x" + be_bytes(13, 2) +
                                   "dave@remote/r" + stanza;
        positions.push_back(s.archive->log()->stage(buf, base + i, record));
    }
    EXPECT_TRUE(s.archive->log()->write(buf));
    return positions;
}

// Bob's chunk whose last entry is `last`, written straight to the store.
static bool put_chunk_of_bob(Shard& s, std::uint64_t last, const std::string& chunk) {
    return s.store->db()
        .Put(rocksdb::WriteOptions(), s.store->column(Column::mam), "bob@x" + std::string(1, '\0') + be_bytes(last, 8), chunk)
        .ok();
}

TEST(IndexPerTick, ChunksOfTheEarlierFormatAreReadAndRewrittenCompact) {
    TempDir dir;
    const std::uint64_t base = 1'000'000'000'000'000;
    Shard s(dir.str());
    // Three log records and a chunk naming them, as the previous version wrote them: body
    // records (3, kind 2 received, no flags, owner, with, stanza), a chunk of kind 4 whose
    // entries are kind, flags (2: a log position follows), id, position, with.
    const auto positions = log_bodies_of_bob(s, base, "old");
    std::string chunk(4, '\0');
    chunk += '\x04';
    for (std::uint64_t i = 0; i < 3; ++i) {
        chunk += std::string("\x02\x02", 2) + be_bytes(base + i, 8) + be_bytes(positions[i], 8) + be_bytes(13, 2) +
                 "dave@remote/r";
    }
    ASSERT_TRUE(put_chunk_of_bob(s, base + 2, chunk));
    EXPECT_EQ(ids_of(*s.archive, "bob@x"), range(base, 3));
    auto middle = s.archive->get("bob@x", base + 1);
    ASSERT_TRUE(middle);
    EXPECT_EQ(middle->stanza, "<message><body>old 1</body></message>");
    EXPECT_EQ(middle->with, "dave@remote/r");
    // A removal cuts through it: what is kept is written again, in the compact form.
    on_shard_then_readable(s.io, *s.archive, [&] { ASSERT_TRUE(s.archive->remove("bob@x", base + 1, base + 2)); });
    EXPECT_EQ(ids_of(*s.archive, "bob@x"), (std::vector<std::uint64_t>{base, base + 2}));
    auto last = s.archive->get("bob@x", base + 2);
    ASSERT_TRUE(last);
    EXPECT_EQ(last->stanza, "<message><body>old 2</body></message>");
    const auto chunks = chunks_of(*s.store, "bob@x");
    ASSERT_EQ(chunks.size(), 1u);
    EXPECT_EQ(chunks[0][4], '\x06');
    EXPECT_EQ(last->with, "dave@remote/r");
}

// LEB128, as the chunks write their varints.
static std::string varint_bytes(std::uint64_t v) {
    std::string out;
    while (v >= 0x80) {
        out += static_cast<char>((v & 0x7f) | 0x80);
        v >>= 7;
    }
    out += static_cast<char>(v);
    return out;
}

TEST(IndexPerTick, ChunksOfVersionTwoAreRead) {
    TempDir dir;
    const std::uint64_t base = 1'000'000'000'000'000;
    Shard s(dir.str());
    // As the previous version wrote them: body records, then a chunk of version 5 whose entries
    // are a head (kind 2 | 8: a position follows), the id's delta, the position's delta
    // (zigzag), then 'with' in full.
    const auto positions = log_bodies_of_bob(s, base, "v2");
    std::string chunk(4, '\0');
    chunk += '\x05';
    std::uint64_t prev_id = 0, prev_position = 0;
    for (std::uint64_t i = 0; i < 3; ++i) {
        const std::uint64_t delta = positions[i] - prev_position;
        chunk += '\x0a';
        chunk += varint_bytes(base + i - prev_id);
        chunk += varint_bytes((delta << 1) ^ static_cast<std::uint64_t>(static_cast<std::int64_t>(delta) >> 63));
        chunk += varint_bytes(13) + "dave@remote/r";
        prev_id = base + i;
        prev_position = positions[i];
    }
    ASSERT_TRUE(put_chunk_of_bob(s, base + 2, chunk));
    EXPECT_EQ(ids_of(*s.archive, "bob@x"), range(base, 3));
    for (std::uint64_t i = 0; i < 3; ++i) {
        auto m = s.archive->get("bob@x", base + i);
        ASSERT_TRUE(m) << i;
        EXPECT_EQ(m->stanza, "<message><body>v2 " + std::to_string(i) + "</body></message>");
        EXPECT_EQ(m->with, "dave@remote/r");
    }
}

TEST(IndexPerTick, TheHashOfWithIsOfTheBareJidAndNeverChanges) {
    using starling::modules::mam::with_hash;
    // Stored in every chunk: a change would make every archived 'with' unreadable. The values
    // come from an independent implementation (Python) of the function its comment describes.
    EXPECT_EQ(with_hash("dave@remote/r"), 0x41aac891u);
    EXPECT_EQ(with_hash("dave@remote"), 0x41aac891u);
    EXPECT_EQ(with_hash("dave@remote/other"), with_hash("dave@remote"));
    EXPECT_NE(with_hash("dave@remote"), with_hash("eve@remote"));
    // Two JIDs with one hash (found by search; tests/integration/test_mam.py queries them).
    EXPECT_EQ(with_hash("twin12356@localhost"), with_hash("twin96963@localhost"));
    EXPECT_EQ(with_hash("twin12356@localhost"), 0xd35041a2u);
}

TEST(IndexPerTick, AnEntryWhoseHashDoesNotMatchItsLogRecordIsCorrupt) {
    TempDir dir;
    const std::uint64_t base = 1'000'000'000'000'000;
    Shard s(dir.str());
    on_shard_then_readable(s.io, *s.archive, [&] {
        ASSERT_TRUE(s.archive->append("bob@x", base, static_cast<std::int64_t>(base), "dave@remote/r", false,
                                      "<message><body>hi</body></message>"));
    });
    auto chunks = chunks_of(*s.store, "bob@x");
    ASSERT_EQ(chunks.size(), 1u);
    ASSERT_EQ(chunks[0][4], '\x06');
    // The entry's last 4 bytes are the hash of 'with': flip one bit.
    std::string bad = chunks[0];
    bad.back() = static_cast<char>(bad.back() ^ 1);
    ASSERT_TRUE(put_chunk_of_bob(s, base, bad));
    auto m = s.archive->get("bob@x", base);
    ASSERT_FALSE(m);
    EXPECT_EQ(m.error(), starling::storage::Errc::corrupt);
}

TEST(IndexPerTick, ADeletedAccountsEntriesAreNotRebuilt) {
    TempDir dir;
    const std::uint64_t base = 1'000'000'000'000'000;
    {
        Shard s(dir.str());
        s.turn([&] {
            for (std::uint64_t i = 0; i < 5; ++i) chat_once(*s.archive, base + i, "m");
        });
        starling::storage::AccountStore accounts(*s.store);
        s.turn([&] {
            ASSERT_TRUE(accounts.purge_data("alice@x"));
            s.archive->forget("alice@x");
        });
    }
    Shard s(dir.str());
    s.archive->replay(*s.archive->log());
    on_shard_then_readable(s.io, *s.archive, [] {});
    EXPECT_TRUE(ids_of(*s.archive, "alice@x").empty()) << "a deleted account's archive came back";
    EXPECT_EQ(ids_of(*s.archive, "bob@x"), range(base, 5));
}

TEST(IndexPerTick, RetentionAndRangesCutThroughChunks) {
    TempDir dir;
    const std::uint64_t base = 1'000'000'000'000'000;
    Shard s(dir.str());
    // 300 messages from remote senders: 3 chunks of bob's (128, 128, 44).
    bob_gets_from_afar(s, base, 300);
    EXPECT_EQ(ids_of(*s.archive, "bob@x"), range(base, 300));
    // A range inside chunks, crossing a chunk's end.
    EXPECT_EQ(ids_of(*s.archive, "bob@x", base + 120, base + 140), range(base + 120, 21));
    // By count: the newest 50 (the cut is inside the third chunk... and the first two go).
    on_shard_then_readable(s.io, *s.archive, [&] { ASSERT_TRUE(s.archive->enforce("bob@x", 0, 50)); });
    EXPECT_EQ(ids_of(*s.archive, "bob@x"), range(base + 250, 50));
    EXPECT_EQ(s.archive->count("bob@x").value_or(0), 50u);
    EXPECT_FALSE(s.archive->get("bob@x", base + 249));
    auto kept = s.archive->get("bob@x", base + 250);
    ASSERT_TRUE(kept);
    EXPECT_EQ(kept->stanza, "<message><body>n250</body></message>");
    // By age: a floor inside the remaining chunk.
    on_shard_then_readable(s.io, *s.archive, [&] { ASSERT_TRUE(s.archive->enforce("bob@x", base + 290, 0)); });
    EXPECT_EQ(ids_of(*s.archive, "bob@x"), range(base + 290, 10));
    EXPECT_EQ(s.archive->newest_stored("bob@x").value_or(0), base + 299);
    // And a range in the middle (not from 0), as remove() allows.
    on_shard_then_readable(s.io, *s.archive, [&] { ASSERT_TRUE(s.archive->remove("bob@x", base + 293, base + 296)); });
    std::vector<std::uint64_t> left = range(base + 290, 3);
    for (auto id : range(base + 296, 4)) left.push_back(id);
    EXPECT_EQ(ids_of(*s.archive, "bob@x"), left);
}

TEST(IndexPerTick, AgeAndCountTogetherNeverBringBackWhatTheFirstRemoved) {
    TempDir dir;
    const std::uint64_t base = 1'000'000'000'000'000;
    Shard s(dir.str());
    bob_gets_from_afar(s, base, 300);
    // Older than base+200 by age, and the newest 50 by count: the age goes first; the count
    // waits for the next sweep (it would read the chunks as they were before the first).
    bool answered_inline = false;
    bool answered = false;
    bool in_call = false;  // outlives the handler: the answer may come later (it should)
    asio::post(s.io, [&] {
        ASSERT_TRUE(s.archive->enforce("bob@x", base + 200, 50));
        in_call = true;
        s.archive->when_readable([&](bool ok) {
            EXPECT_TRUE(ok);
            answered_inline = in_call;
            answered = true;
        });
        in_call = false;
    });
    s.run_until([&] { return answered; });
    ASSERT_TRUE(answered);
    EXPECT_FALSE(answered_inline) << "a read right after a removal must wait for it to be committed";
    EXPECT_EQ(ids_of(*s.archive, "bob@x"), range(base + 200, 100));
    EXPECT_EQ(s.archive->queued(), 1u) << "queued again for the count";
    on_shard_then_readable(s.io, *s.archive, [&] {
        for (const auto& bare : s.archive->take_queued(8)) ASSERT_TRUE(s.archive->enforce(bare, base + 200, 50));
    });
    EXPECT_EQ(ids_of(*s.archive, "bob@x"), range(base + 250, 50));
    EXPECT_EQ(s.archive->count("bob@x").value_or(0), 50u);
}
