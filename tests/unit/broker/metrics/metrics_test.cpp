// Module counters in the exposition: one family per name, one series per label set, summed over
// shards.
#include "broker/src/metrics/metrics.hpp"

#include <gtest/gtest.h>

namespace {

using starling::metrics::render_text;
using starling::metrics::ShardSnapshot;
using starling::session::CounterSample;

ShardSnapshot shard(std::uint16_t id, std::uint64_t urgent, std::uint64_t active, std::uint64_t held) {
    ShardSnapshot s;
    s.shard = id;
    s.modules = {
        CounterSample{"starling_csi_flushes_total", "Flushes", {{"reason", "urgent"}}, urgent, {}, {}, 0},
        CounterSample{"starling_csi_flushes_total", "Flushes", {{"reason", "active"}}, active, {}, {}, 0},
        CounterSample{"starling_csi_held_total", "Held", {}, held, {}, {}, 0},
    };
    return s;
}

TEST(ModuleCounters, AreSummedOverShardsPerLabelSet) {
    const std::string text = render_text({shard(0, 1, 2, 10), shard(1, 3, 4, 20)});
    EXPECT_NE(text.find("starling_csi_flushes_total{reason=\"urgent\"} 4"), std::string::npos) << text;
    EXPECT_NE(text.find("starling_csi_flushes_total{reason=\"active\"} 6"), std::string::npos) << text;
    EXPECT_NE(text.find("starling_csi_held_total 30"), std::string::npos) << text;
    // One family: one HELP line.
    const auto help = text.find("# HELP starling_csi_flushes_total");
    ASSERT_NE(help, std::string::npos);
    EXPECT_EQ(text.find("# HELP starling_csi_flushes_total", help + 1), std::string::npos);
}

TEST(ModuleHistograms, AreCumulativeAndSummedOverShards) {
    auto with = [](std::uint16_t id, std::vector<std::uint64_t> buckets, double sum) {
        ShardSnapshot s;
        s.shard = id;
        s.modules = {CounterSample{"starling_pubsub_fan_out_size", "Recipients", {}, 0, {1, 10}, std::move(buckets), sum}};
        return s;
    };
    // Shard 0 saw 1, 5, 50; shard 1 saw 1 and 7.
    const std::string text = render_text({with(0, {1, 1, 1}, 56), with(1, {1, 1, 0}, 8)});
    EXPECT_NE(text.find("# TYPE starling_pubsub_fan_out_size histogram"), std::string::npos) << text;
    EXPECT_NE(text.find("starling_pubsub_fan_out_size_bucket{le=\"1\"} 2"), std::string::npos) << text;
    EXPECT_NE(text.find("starling_pubsub_fan_out_size_bucket{le=\"10\"} 4"), std::string::npos) << text;
    EXPECT_NE(text.find("starling_pubsub_fan_out_size_bucket{le=\"+Inf\"} 5"), std::string::npos) << text;
    EXPECT_NE(text.find("starling_pubsub_fan_out_size_count 5"), std::string::npos) << text;
    EXPECT_NE(text.find("starling_pubsub_fan_out_size_sum 64"), std::string::npos) << text;
}

TEST(ModuleCounters, NoShardsNoModuleFamilies) {
    EXPECT_EQ(render_text({}).find("starling_csi"), std::string::npos);
}

}  // namespace
