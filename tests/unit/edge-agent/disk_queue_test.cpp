#include "edge-agent/src/disk_queue.hpp"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using starling::agent::AppendError;
using starling::agent::DiskQueue;
using starling::agent::FsyncPolicy;
using starling::agent::QueueOptions;

namespace {

class TempDir {
public:
    TempDir() {
        char tmpl[] = "/tmp/agent-queue-XXXXXX";
        _path = ::mkdtemp(tmpl);
    }
    ~TempDir() { fs::remove_all(_path); }
    const fs::path& path() const { return _path; }

private:
    fs::path _path;
};

QueueOptions opts(const fs::path& dir, std::uint64_t max = 64 * 1024, std::uint64_t seg = 16 * 1024) {
    QueueOptions o;
    o.dir = dir;
    o.max_bytes = max;
    o.segment_bytes = seg;
    o.max_record = 4096;
    o.fsync = FsyncPolicy::never;  // tests: the page cache is what kill -9 leaves too
    return o;
}

std::vector<std::uint64_t> pending(const DiskQueue& q) {
    std::vector<std::uint64_t> out;
    for (auto s = q.next_after(0); s; s = q.next_after(*s)) out.push_back(*s);
    return out;
}

std::vector<fs::path> segments(const fs::path& dir) {
    std::vector<fs::path> out;
    for (const auto& e : fs::directory_iterator(dir)) {
        if (e.path().extension() == ".q") out.push_back(e.path());
    }
    std::sort(out.begin(), out.end());
    return out;
}

}  // namespace

TEST(DiskQueue, AppendsReadsAndAcksInOrder) {
    TempDir d;
    DiskQueue q(opts(d.path()));
    EXPECT_EQ(q.append("one"), 1u);
    EXPECT_EQ(q.append("two"), 2u);
    EXPECT_EQ(q.append("three"), 3u);
    EXPECT_EQ(pending(q), (std::vector<std::uint64_t>{1, 2, 3}));
    EXPECT_EQ(q.read(2).value(), "two");
    q.ack(1);
    EXPECT_EQ(pending(q), (std::vector<std::uint64_t>{2, 3}));
    EXPECT_EQ(q.stats().depth, 2u);
    EXPECT_EQ(q.stats().acked_seq, 1u);
}

TEST(DiskQueue, OutOfOrderAcksMoveThePointerOverTheContiguousPrefixOnly) {
    TempDir d;
    {
        DiskQueue q(opts(d.path()));
        for (int i = 0; i < 4; ++i) q.append("x" + std::to_string(i));
        q.ack(2);
        q.ack(3);
        EXPECT_EQ(q.stats().acked_seq, 0u);
        EXPECT_EQ(pending(q), (std::vector<std::uint64_t>{1, 4}));
        q.ack(1);
        EXPECT_EQ(q.stats().acked_seq, 3u);
    }
    DiskQueue again(opts(d.path()));
    EXPECT_EQ(pending(again), (std::vector<std::uint64_t>{4}));
    EXPECT_EQ(again.read(4).value(), "x3");
}

TEST(DiskQueue, ReopenKeepsUnackedRecordsSeqsAndIncarnation) {
    TempDir d;
    std::string inc;
    {
        DiskQueue q(opts(d.path()));
        inc = q.incarnation();
        q.append("a");
        q.append("b");
        q.ack(1);
    }
    DiskQueue q(opts(d.path()));
    EXPECT_EQ(q.incarnation(), inc);
    EXPECT_EQ(pending(q), (std::vector<std::uint64_t>{2}));
    EXPECT_EQ(q.read(2).value(), "b");
    EXPECT_EQ(q.append("c"), 3u);  // seqs never repeat: ids stay unique
    EXPECT_EQ(q.item_id(3), inc + "-3");
    EXPECT_EQ(q.seq_of(inc + "-3"), 3u);
    EXPECT_EQ(q.seq_of("other-3"), 0u);
}

TEST(DiskQueue, SeqsDoNotRepeatAfterEverythingWasAckedAndDeleted) {
    TempDir d;
    {
        DiskQueue q(opts(d.path(), 64 * 1024, 16 * 1024));
        for (int i = 0; i < 50; ++i) q.ack(q.append(std::string(1000, 'p')));
    }
    DiskQueue q(opts(d.path(), 64 * 1024, 16 * 1024));
    EXPECT_EQ(q.stats().depth, 0u);
    EXPECT_EQ(q.append("next"), 51u);
}

TEST(DiskQueue, FullyAckedSegmentsAreDeleted) {
    TempDir d;
    DiskQueue q(opts(d.path(), 64 * 1024, 16 * 1024));
    std::vector<std::uint64_t> seqs;
    for (int i = 0; i < 40; ++i) seqs.push_back(q.append(std::string(1000, 'z')));
    EXPECT_GE(segments(d.path()).size(), 3u);
    for (auto s : seqs) q.ack(s);
    EXPECT_EQ(segments(d.path()).size(), 1u);  // the one being appended to stays
    EXPECT_EQ(q.stats().depth, 0u);
}

TEST(DiskQueue, AtTheBoundTheOldestAreDroppedAndCounted) {
    TempDir d;
    // 64 KiB bound, 16 KiB segments, ~1 KiB records: about 60 fit.
    DiskQueue q(opts(d.path(), 64 * 1024, 16 * 1024));
    const std::string rec(1000, 'r');
    std::uint64_t last = 0;
    for (int i = 0; i < 200; ++i) last = q.append(rec);
    const auto s = q.stats();
    EXPECT_LE(s.bytes, 64u * 1024);
    EXPECT_GT(s.dropped, 0u);
    EXPECT_EQ(s.dropped + s.depth, 200u);  // every record is either still queued or counted
    const auto p = pending(q);
    ASSERT_FALSE(p.empty());
    EXPECT_EQ(p.back(), last);  // the newest are kept
    EXPECT_EQ(p.front(), last - p.size() + 1);  // contiguous: only the oldest went
}

TEST(DiskQueue, RefusesARecordOverTheLimitAndAcceptsOneAtIt) {
    TempDir d;
    DiskQueue q(opts(d.path()));
    AppendError e{};
    EXPECT_NE(q.append(std::string(4096, 'a'), &e), 0u);
    EXPECT_EQ(q.append(std::string(4097, 'a'), &e), 0u);
    EXPECT_EQ(e, AppendError::too_large);
}

TEST(DiskQueue, ATornAppendIsCutAtOpenAndTheRestSurvives) {
    TempDir d;
    {
        DiskQueue q(opts(d.path()));
        q.append("first");
        q.append("second");
    }
    // A crash in the middle of the third append: its header and half the payload made it.
    const auto seg = segments(d.path()).back();
    const auto size_before = fs::file_size(seg);
    {
        std::ofstream f(seg, std::ios::binary | std::ios::app);
        const char torn[] = {'S', 'A', 'Q', '1', 10, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 'h', 'a', 'l'};
        f.write(torn, sizeof torn);
    }
    DiskQueue q(opts(d.path()));
    EXPECT_EQ(pending(q), (std::vector<std::uint64_t>{1, 2}));
    EXPECT_EQ(q.stats().corrupt_records, 1u);
    EXPECT_EQ(q.stats().truncated_bytes, 23u);
    EXPECT_EQ(fs::file_size(seg), size_before);
    EXPECT_EQ(q.append("third"), 3u);  // appends go on cleanly after the cut
    DiskQueue again(opts(d.path()));   // (closing the first is not needed: appends are pwrites)
    EXPECT_EQ(again.read(3).value(), "third");
}

TEST(DiskQueue, ACorruptRecordInTheMiddleIsSkippedAndTheScanResynchronises) {
    TempDir d;
    {
        DiskQueue q(opts(d.path()));
        q.append("aaaa");
        q.append("bbbb");
        q.append("cccc");
    }
    const auto seg = segments(d.path()).back();
    {
        // Flip one payload byte of the second record (header 20 bytes + 4 payload per record).
        const int fd = ::open(seg.c_str(), O_RDWR);
        ASSERT_GE(fd, 0);
        const char x = 'X';
        ASSERT_EQ(::pwrite(fd, &x, 1, 24 + 20 + 1), 1);
        ::close(fd);
    }
    DiskQueue q(opts(d.path()));
    EXPECT_EQ(pending(q), (std::vector<std::uint64_t>{1, 3}));
    EXPECT_EQ(q.read(3).value(), "cccc");
    EXPECT_EQ(q.stats().corrupt_records, 1u);
    EXPECT_EQ(q.append("dddd"), 4u);
}

TEST(DiskQueue, ATornAckSlotFallsBackToTheOtherOne) {
    TempDir d;
    {
        DiskQueue q(opts(d.path()));
        for (int i = 0; i < 5; ++i) q.append("r");
        q.ack(1);  // generation 1: slot 1
        q.ack(2);  // generation 2: slot 0
    }
    {
        // Tear the newest slot (slot 0): its CRC no longer matches.
        const int fd = ::open((d.path() / "acked").c_str(), O_RDWR);
        const char junk[4] = {9, 9, 9, 9};
        ASSERT_EQ(::pwrite(fd, junk, 4, 0), 4);
        ::close(fd);
    }
    DiskQueue q(opts(d.path()));
    // Back to the older pointer: record 2 is delivered again (item ids make that harmless).
    EXPECT_EQ(q.stats().acked_seq, 1u);
    EXPECT_EQ(pending(q), (std::vector<std::uint64_t>{2, 3, 4, 5}));
}

TEST(DiskQueue, GarbageFilesAndEmptySegmentsAreIgnored) {
    TempDir d;
    std::ofstream(d.path() / "seg-notanumber.q") << "x";
    std::ofstream(d.path() / "seg-00000000000000000007.q");  // empty
    DiskQueue q(opts(d.path()));
    EXPECT_EQ(q.stats().depth, 0u);
    EXPECT_EQ(q.append("x"), 1u);
}
