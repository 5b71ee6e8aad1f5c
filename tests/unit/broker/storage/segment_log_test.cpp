// SegmentLog: the archive's body log (storage/segment_log.hpp). Records written by position,
// read back, recovered after a torn write, rolled into segments, dropped by age, and erased in
// place by the sweep so that their bytes are gone from the file.
#include "broker/src/storage/segment_log.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <string>
#include <vector>

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/mman.h>
#include <sys/vfs.h>
#include <unistd.h>

namespace {

using starling::storage::crc32c;
using starling::storage::Errc;
using starling::storage::LogBuffer;
using starling::storage::SegmentLog;

namespace fs = std::filesystem;

class SegmentLogTest : public ::testing::Test {
protected:
    void SetUp() override {
        _dir = fs::temp_directory_path() /
               ("starling-segment-log-" + std::to_string(::getpid()) + "-" +
                ::testing::UnitTest::GetInstance()->current_test_info()->name());
        fs::remove_all(_dir);
    }
    void TearDown() override { fs::remove_all(_dir); }

    std::unique_ptr<SegmentLog> open(std::uint64_t segment_bytes = 64u << 20) {
        SegmentLog::Options o;
        o.segment_bytes = segment_bytes;
        return SegmentLog::open(_dir, 3, o);
    }

    // Stages `n` records with ids from `first_id` into one buffer and writes it; returns their
    // positions by id.
    std::map<std::uint64_t, std::uint64_t> write_batch(SegmentLog& log, std::uint64_t first_id, int n,
                                                       bool write = true) {
        LogBuffer buf;
        std::map<std::uint64_t, std::uint64_t> at;
        for (int i = 0; i < n; ++i) {
            const std::uint64_t id = first_id + static_cast<std::uint64_t>(i);
            at[id] = log.stage(buf, id, payload(id));
        }
        if (write) {
            auto r = log.write(buf);
            EXPECT_TRUE(r.has_value());
        }
        return at;
    }

    static std::string payload(std::uint64_t id) {
        return "<message id='m" + std::to_string(id) + "'><body>secret number " + std::to_string(id) +
               "</body></message>";
    }

    std::string all_bytes() const {
        std::string out;
        for (const auto& e : fs::directory_iterator(_dir)) {
            std::ifstream in(e.path(), std::ios::binary);
            out.append(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
        }
        return out;
    }

    std::vector<std::string> names() const {
        std::vector<std::string> out;
        for (const auto& e : fs::directory_iterator(_dir)) out.push_back(e.path().filename().string());
        std::sort(out.begin(), out.end());
        return out;
    }

    fs::path _dir;
};

TEST(Crc32c, MatchesTheCastagnoliCheckValue) {
    // RFC 3720 §B.4 check value of "123456789".
    const std::string s = "123456789";
    EXPECT_EQ(crc32c(0, s.data(), s.size()), 0xe3069283u);
    // Extending in pieces gives the same.
    EXPECT_EQ(crc32c(crc32c(0, s.data(), 4), s.data() + 4, 5), 0xe3069283u);
}

TEST_F(SegmentLogTest, ARecordStillInItsBufferCanBeAmendedAndItsCrcCoversTheChange) {
    auto log = open();
    LogBuffer buf;
    const auto first = log->stage(buf, 10, "flags=0 one");
    const auto second = log->stage(buf, 11, "flags=0 two");
    auto p = log->staged_payload(buf, second);
    ASSERT_EQ(std::string_view(p.data(), p.size()), "flags=0 two");
    p[6] = '4';  // amended in place, before the committer writes the buffer
    ASSERT_TRUE(log->write(buf));
    auto one = log->read(first, 10);
    ASSERT_TRUE(one) << "the CRC, computed when written, is right";
    EXPECT_EQ(*one, "flags=0 one");
    auto two = log->read(second, 11);
    ASSERT_TRUE(two);
    EXPECT_EQ(*two, "flags=4 two");
    // Another buffer, or a record not in this one: nothing to amend.
    LogBuffer next;
    EXPECT_TRUE(log->staged_payload(next, second).empty());
    (void)log->stage(next, 12, "x");
    EXPECT_TRUE(log->staged_payload(next, second).empty());
    // Read back after a reopen: the records are whole on disk.
    log.reset();
    log = open();
    auto again = log->read(second, 11);
    ASSERT_TRUE(again);
    EXPECT_EQ(*again, "flags=4 two");
}

TEST_F(SegmentLogTest, RecordsAreReadBackByPositionAndIdAcrossAReopen) {
    std::map<std::uint64_t, std::uint64_t> at;
    {
        auto log = open();
        at = write_batch(*log, 100, 10);
        auto more = write_batch(*log, 200, 5);
        at.insert(more.begin(), more.end());
        for (const auto& [id, pos] : at) {
            EXPECT_EQ(starling::storage::log_of(pos), 3);
            auto r = log->read(pos, id);
            ASSERT_TRUE(r.has_value()) << id;
            EXPECT_EQ(*r, payload(id));
        }
        // Another id at a valid position is not that record.
        auto wrong = log->read(at[100], 101);
        ASSERT_FALSE(wrong.has_value());
        EXPECT_EQ(wrong.error(), Errc::not_found);
    }
    auto log = open();
    EXPECT_EQ(log->max_id(), 204u);
    EXPECT_EQ(log->recovered_cut_bytes(), 0u);
    for (const auto& [id, pos] : at) {
        auto r = log->read(pos, id);
        ASSERT_TRUE(r.has_value()) << id;
        EXPECT_EQ(*r, payload(id));
    }
    // Appends go on after the recovered end.
    auto next = write_batch(*log, 300, 1);
    EXPECT_GT(next[300], at[204]);
    EXPECT_EQ(*log->read(next[300], 300), payload(300));
}

TEST_F(SegmentLogTest, ATornWriteAtTheEndIsCutAtOpenAndTheRecordsBeforeItStay) {
    std::map<std::uint64_t, std::uint64_t> at;
    {
        auto log = open();
        at = write_batch(*log, 10, 4);
    }
    const auto names_before = names();
    ASSERT_EQ(names_before.size(), 1u);
    const auto file = _dir / names_before[0];
    const auto size = fs::file_size(file);
    {
        // Half a record: a header that promises more than the file holds.
        std::ofstream out(file, std::ios::binary | std::ios::app);
        const char torn[] = "\x12\x34\x56\x78\xff\x00\x00\x00\x01\x02\x03";
        out.write(torn, sizeof torn - 1);
    }
    auto log = open();
    EXPECT_EQ(log->recovered_cut_bytes(), 11u);
    EXPECT_EQ(fs::file_size(file), size);
    for (const auto& [id, pos] : at) EXPECT_EQ(*log->read(pos, id), payload(id));
    auto next = write_batch(*log, 20, 1);
    EXPECT_EQ(*log->read(next[20], 20), payload(20));
}

TEST_F(SegmentLogTest, ACorruptedRecordReadsAsCorruptNotAsOtherBytes) {
    std::map<std::uint64_t, std::uint64_t> at;
    auto log = open();
    at = write_batch(*log, 10, 3);
    const auto file = _dir / names()[0];
    {
        std::fstream f(file, std::ios::binary | std::ios::in | std::ios::out);
        f.seekp(static_cast<std::streamoff>(starling::storage::offset_of(at[11]) + starling::storage::k_log_header + 5));
        f.put('X');
    }
    auto r = log->read(at[11], 11);
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error(), Errc::corrupt);
    EXPECT_EQ(*log->read(at[12], 12), payload(12));
}

TEST_F(SegmentLogTest, AFailedBatchLeavesAGapThatLaterBatchesAndARestartStepOver) {
    std::map<std::uint64_t, std::uint64_t> first, lost, third;
    {
        auto log = open();
        first = write_batch(*log, 10, 3);
        lost = write_batch(*log, 20, 3, /*write=*/false);  // its write failed: never on disk
        third = write_batch(*log, 30, 3);
        for (const auto& [id, pos] : first) EXPECT_EQ(*log->read(pos, id), payload(id));
        for (const auto& [id, pos] : third) EXPECT_EQ(*log->read(pos, id), payload(id));
        for (const auto& [id, pos] : lost) EXPECT_FALSE(log->read(pos, id).has_value());
    }
    auto log = open();
    EXPECT_EQ(log->recovered_cut_bytes(), 0u);
    EXPECT_EQ(log->max_id(), 32u);
    for (const auto& [id, pos] : third) EXPECT_EQ(*log->read(pos, id), payload(id));
}

TEST_F(SegmentLogTest, SegmentsRollAtTheirSizeAndWholeOnesExpireByAge) {
    std::map<std::uint64_t, std::uint64_t> at;
    {
        auto log = open(4096);
        // ~80 bytes a record, 20 a batch: a new segment every batch or two.
        for (int b = 0; b < 10; ++b) {
            auto m = write_batch(*log, 1000 + static_cast<std::uint64_t>(b) * 100, 20);
            at.insert(m.begin(), m.end());
        }
    }
    const auto before = names();
    ASSERT_GE(before.size(), 4u);
    // Sealed segments are named with their highest id; the tail is not.
    std::size_t sealed = 0;
    for (const auto& n : before) sealed += n.find('-') != std::string::npos ? 1 : 0;
    EXPECT_EQ(sealed, before.size() - 1);
    auto log = open(4096);
    for (const auto& [id, pos] : at) ASSERT_EQ(*log->read(pos, id), payload(id)) << id;
    // Every record below 1500 is older than the floor: the segments holding only those go.
    const auto dropped = log->drop_below(1500);
    EXPECT_GE(dropped, 1u);
    EXPECT_EQ(names().size(), before.size() - dropped);
    for (const auto& [id, pos] : at) {
        auto r = log->read(pos, id);
        if (id >= 1500) {
            ASSERT_TRUE(r.has_value()) << "a record at or above the floor went: " << id;
        }
    }
    // The tail is never dropped, whatever the floor.
    log->drop_below(UINT64_MAX);
    EXPECT_EQ(names().size(), 1u);
    EXPECT_EQ(*log->read(at[1919], 1919), payload(1919));
}

// How many of a file's first `bytes` are in the page cache (mincore over a mapping of it).
static std::size_t resident_bytes(const fs::path& file, std::size_t bytes) {
    const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return SIZE_MAX;
    void* map = ::mmap(nullptr, bytes, PROT_READ, MAP_SHARED, fd, 0);
    ::close(fd);
    if (map == MAP_FAILED) return SIZE_MAX;
    const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    std::vector<unsigned char> in((bytes + page - 1) / page);
    std::size_t resident = SIZE_MAX;
    if (::mincore(map, bytes, in.data()) == 0) {
        resident = 0;
        for (const unsigned char b : in) resident += (b & 1) != 0 ? page : 0;
    }
    ::munmap(map, bytes);
    return resident;
}

// A log is written once and read rarely: the pages more than 32 MiB behind its tail are given
// back to the kernel once written, in the tail segment and, once sealed, in the segment before
// it. Every record still reads back (from the disk).
TEST_F(SegmentLogTest, PagesFarBehindTheTailLeaveThePageCacheAndTheirRecordsStillReadBack) {
    auto log = open();  // 64 MiB segments
    const std::string filler(8000, 'x');
    std::map<std::uint64_t, std::uint64_t> at;
    std::uint64_t id = 1000;
    auto write_mib = [&](int mib) {  // batches of 128 records of ~8 KB (~1 MiB)
        for (int b = 0; b < mib; ++b) {
            LogBuffer buf;
            for (int i = 0; i < 128; ++i, ++id) at[id] = log->stage(buf, id, std::to_string(id) + filler);
            ASSERT_TRUE(log->write(buf).has_value());
        }
    };
    struct statfs fs_info {};
    ASSERT_EQ(::statfs(_dir.c_str(), &fs_info), 0);
    const bool can_drop = fs_info.f_type != TMPFS_MAGIC;  // tmpfs cannot give pages back
    write_mib(56);
    ASSERT_EQ(names().size(), 1u);
    const auto tail = _dir / names().front();
    if (can_drop) {
        // The kernel may keep a few pages (those still in its per-CPU batches): most go.
        EXPECT_LT(resident_bytes(tail, 16u << 20), 4u << 20) << "the tail's oldest 16 MiB are no longer cached";
        EXPECT_GT(resident_bytes(tail, 56u << 20), 24u << 20) << "its newest 32 MiB are";
    }
    write_mib(16);  // seals the first segment and goes on in a second
    const auto files = names();
    ASSERT_EQ(files.size(), 2u);
    if (can_drop) {
        EXPECT_LT(resident_bytes(_dir / files.front(), 64u << 20), 8u << 20) << "the sealed segment's pages went too";
    }
    for (const std::uint64_t i : {std::uint64_t{1000}, std::uint64_t{5000}, id - 1}) {
        auto r = log->read(at[i], i);
        ASSERT_TRUE(r.has_value()) << i;
        EXPECT_EQ(*r, std::to_string(i) + filler);
    }
}

TEST_F(SegmentLogTest, TheSweepErasesWhatItIsToldAndTheBytesAreGoneFromTheFile) {
    std::map<std::uint64_t, std::uint64_t> at;
    auto log = open();
    for (int b = 0; b < 4; ++b) {
        auto m = write_batch(*log, 100 + static_cast<std::uint64_t>(b) * 100, 50);
        at.insert(m.begin(), m.end());
    }
    ASSERT_NE(all_bytes().find("secret number 101<"), std::string::npos);
    // Keep the even ids and the 300s; erase the rest. Steps of 37 records.
    auto keep = [](std::uint64_t, std::uint64_t id, std::string_view payload_seen) {
        EXPECT_EQ(payload_seen, payload(id));
        return id % 2 == 0 || (id >= 300 && id < 400);
    };
    std::optional<std::uint64_t> offset = 0;
    int steps = 0;
    while (offset && steps < 100) {
        offset = log->sweep(*offset, 37, UINT64_MAX, keep);
        ++steps;
    }
    EXPECT_FALSE(offset.has_value());
    EXPECT_GE(steps, 200 / 37);
    for (const auto& [id, pos] : at) {
        auto r = log->read(pos, id);
        if (id % 2 == 0 || (id >= 300 && id < 400)) {
            ASSERT_TRUE(r.has_value()) << id;
            EXPECT_EQ(*r, payload(id));
        } else {
            ASSERT_FALSE(r.has_value()) << id;
            EXPECT_EQ(r.error(), Errc::not_found);
        }
    }
    const auto bytes = all_bytes();
    EXPECT_EQ(bytes.find("secret number 101<"), std::string::npos);
    EXPECT_EQ(bytes.find("secret number 499<"), std::string::npos);
    EXPECT_NE(bytes.find("secret number 301<"), std::string::npos);
    EXPECT_EQ(log->stats().erased.load(), 100u - 25u);

    // A second pass finds nothing more to erase; then everything goes, and the dead runs merge
    // (blocks given back when the file system can punch holes).
    offset = 0;
    while (offset) offset = log->sweep(*offset, 1000, UINT64_MAX, keep);
    EXPECT_EQ(log->stats().erased.load(), 75u);
    offset = 0;
    while (offset) offset = log->sweep(*offset, 1000, UINT64_MAX, [](std::uint64_t, std::uint64_t, std::string_view) { return false; });
    EXPECT_EQ(log->stats().erased.load(), 200u);
    EXPECT_EQ(all_bytes().find("secret number"), std::string::npos);
    // The log still opens, and appends go on.
    log.reset();
    log = open();
    EXPECT_EQ(log->recovered_cut_bytes(), 0u);
    auto next = write_batch(*log, 900, 2);
    EXPECT_EQ(*log->read(next[901], 901), payload(901));
}

TEST_F(SegmentLogTest, TheSweepStopsAtTheWatermark) {
    auto log = open();
    auto at = write_batch(*log, 10, 10);
    int seen = 0;
    auto next = log->sweep(0, 100, 14, [&](std::uint64_t, std::uint64_t id, std::string_view) {
        EXPECT_LE(id, 14u);
        ++seen;
        return false;
    });
    EXPECT_FALSE(next.has_value());  // the watermark ends the pass
    EXPECT_EQ(seen, 5);
    EXPECT_FALSE(log->read(at[14], 14).has_value());
    EXPECT_EQ(*log->read(at[15], 15), payload(15));
}

}  // namespace
