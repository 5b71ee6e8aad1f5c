#include "broker/src/util/node_map.hpp"

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

namespace starling::util {
namespace {

TEST(NodeMap, FindsWhatWasPutAndNothingElse) {
    NodeMap<int> m;
    m.prefetch("alice@localhost");  // a hint: safe on an empty map
    EXPECT_EQ(m.find("alice@localhost"), nullptr);  // empty: no table yet
    auto [a, made] = m.emplace("alice@localhost", 1);
    ASSERT_TRUE(made);
    EXPECT_EQ(a->first, "alice@localhost");
    EXPECT_EQ(a->second, 1);
    auto [again, made_again] = m.emplace("alice@localhost", 2);
    EXPECT_FALSE(made_again);
    EXPECT_EQ(again, a);
    EXPECT_EQ(a->second, 1);  // the first value stays
    m.prefetch("alice@localhost");
    m.prefetch("bob@localhost");  // absent: nothing to fetch
    EXPECT_EQ(m.find("alice@localhost"), a);
    EXPECT_EQ(m.find("alice@localhos"), nullptr);
    EXPECT_EQ(m.find("alice@localhost/phone"), nullptr);
    EXPECT_EQ(m.size(), 1u);
    // The empty key is a key like any other.
    auto [e, e_made] = m.emplace("", 7);
    EXPECT_TRUE(e_made);
    EXPECT_EQ(m.find(""), e);
}

TEST(NodeMap, NodesStayWhereTheyAreWhileTheTableGrows) {
    NodeMap<std::string> m;
    auto* first = m.emplace("user0@localhost", "zero").first;
    for (int i = 1; i < 5000; ++i) m.emplace("user" + std::to_string(i) + "@localhost", std::to_string(i));
    EXPECT_EQ(m.size(), 5000u);
    EXPECT_EQ(m.find("user0@localhost"), first);
    EXPECT_EQ(first->second, "zero");
    EXPECT_EQ(m.find("user4999@localhost")->second, "4999");
}

// Erasing moves later slots of a probe run back (no tombstones): checked against std::map over
// many random inserts and erasures, with the table kept small so that runs are long and wrap.
TEST(NodeMap, AgreesWithAnOrderedMapOverRandomInsertsAndErasures) {
    std::mt19937 rng(14);
    NodeMap<int> m;
    std::map<std::string, int> ref;
    std::map<std::string, NodeMap<int>::Node*> nodes;
    for (int step = 0; step < 200000; ++step) {
        const std::string key = "u" + std::to_string(rng() % 300);
        if (rng() % 3 == 0) {
            auto* n = m.find(key);
            ASSERT_EQ(n != nullptr, ref.count(key) == 1) << key;
            if (n != nullptr) {
                ASSERT_EQ(n, nodes[key]);  // still the node it was made as
                m.erase(n);
                ref.erase(key);
                nodes.erase(key);
            }
        } else {
            auto [n, made] = m.emplace(key, step);
            ASSERT_EQ(made, ref.count(key) == 0) << key;
            if (made) {
                ref[key] = step;
                nodes[key] = n;
            }
            ASSERT_EQ(n->second, ref[key]);
        }
        if (step % 1000 == 0) {
            ASSERT_EQ(m.size(), ref.size());
            for (const auto& [k, v] : ref) {
                auto* n = m.find(k);
                ASSERT_NE(n, nullptr) << k;
                ASSERT_EQ(n->second, v);
            }
            std::size_t visited = 0;
            m.for_each([&](NodeMap<int>::Node& n) {
                ++visited;
                EXPECT_EQ(ref.at(std::string(n.first)), n.second);
            });
            ASSERT_EQ(visited, ref.size());
        }
    }
}

TEST(NodeMap, ClearDestroysEveryValue) {
    auto counter = std::make_shared<int>(0);
    {
        NodeMap<std::shared_ptr<int>> m;
        for (int i = 0; i < 100; ++i) m.emplace(std::to_string(i), counter);
        EXPECT_EQ(counter.use_count(), 101);
        m.erase(m.find("5"));
        EXPECT_EQ(counter.use_count(), 100);
        m.clear();
        EXPECT_EQ(counter.use_count(), 1);
        EXPECT_TRUE(m.empty());
        EXPECT_EQ(m.find("6"), nullptr);
        m.emplace("6", counter);  // usable after clear
        EXPECT_EQ(m.find("6")->second, counter);
    }
    EXPECT_EQ(counter.use_count(), 1);  // and the destructor frees the rest
}

}  // namespace
}  // namespace starling::util
