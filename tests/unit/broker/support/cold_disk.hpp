// Slow-disk helpers of the cold-read tests (issue 14), on a OneShard wired with a WritePath on a
// test::FaultyFileSystem (live_shard.hpp): make a column family's data cold, and check that a
// message needing no storage is routed while a cold read waits.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <initializer_list>
#include <string>

#include <rocksdb/db.h>

#include "broker/src/storage/store.hpp"
#include "tests/support/faulty_fs.hpp"
#include "tests/unit/broker/support/live_shard.hpp"

namespace starling::testing {

// Per SST read while the disk is slow.
inline constexpr std::chrono::milliseconds k_disk_latency{600};

// Everything written so far to `columns` goes to SSTs whose blocks are in no cache; from now on
// every read of those files waits `latency`.
inline void make_cold(OneShard& t, test::FaultyFileSystem& fs, std::initializer_list<storage::Column> columns,
                      std::chrono::milliseconds latency = k_disk_latency) {
    for (auto c : columns) {
        rocksdb::FlushOptions fo;
        fo.wait = true;
        ASSERT_TRUE(t.store->db().Flush(fo, t.store->column(c)).ok());
    }
    fs.set_read_latency(latency);
}

// `from`'s chat message to bob@localhost/b (bound on `bob`) must get there long before the disk
// answers. The time it took goes into the XML report (--gtest_output=xml) as
// routed_during_stall_us: the routing time of a message that needs no storage.
inline void expect_routed_during_the_stall(TestClient& from, TestClient& bob, const std::string& body,
                                           std::chrono::milliseconds latency = k_disk_latency) {
    const auto sent = std::chrono::steady_clock::now();
    from.send("<message type='chat' to='bob@localhost/b' id='m-" + body + "'><body>" + body + "</body></message>");
    const auto got = bob.read_until("</message>");
    EXPECT_NE(got.find("<body>" + body + "</body>"), std::string::npos) << got;
    const auto took = std::chrono::steady_clock::now() - sent;
    EXPECT_LT(took, latency / 2) << "the message waited for the disk";
    ::testing::Test::RecordProperty("routed_during_stall_us",
                                    static_cast<int>(std::chrono::duration_cast<std::chrono::microseconds>(took).count()));
}

}  // namespace starling::testing
