// The module API's nonza hook and module counters on a HookTable.
#include "broker/src/session/hooks.hpp"

#include <gtest/gtest.h>

#include "tests/unit/broker/support/live_shard.hpp"

namespace {

using starling::session::Handled;
using starling::session::Module;
using starling::session::ModuleContext;

struct Declares final : Module {
    std::uint64_t value = 7;
    bool twice = false;
    std::string_view name() const noexcept override { return "declares"; }
    void install(ModuleContext& ctx) override {
        ctx.add_counter("starling_test_total", "help", {{"reason", "a"}}, &value);
        ctx.on_stream_element("urn:test", "x", [](auto&, const auto&) { return Handled::yes; });
        if (twice) ctx.on_stream_element("urn:test", "x", [](auto&, const auto&) { return Handled::yes; });
    }
};

TEST(HookTable, ReadsModuleCountersAtCallTime) {
    std::vector<std::unique_ptr<Module>> mods;
    auto m = std::make_unique<Declares>();
    auto* raw = m.get();
    mods.push_back(std::move(m));
    starling::testing::OneShard shard(std::move(mods));
    auto first = shard.on_shard([&] { return shard.host.counters(); });
    ASSERT_EQ(first.size(), 1u);
    EXPECT_EQ(first[0].name, "starling_test_total");
    EXPECT_EQ(first[0].labels, (starling::session::MetricLabels{{"reason", "a"}}));
    EXPECT_EQ(first[0].value, 7u);
    shard.on_shard([&] { return raw->value = 9; });
    EXPECT_EQ(shard.on_shard([&] { return shard.host.counters(); })[0].value, 9u);
}

TEST(HookTable, RefusesTwoOwnersOfOneStreamElement) {
    starling::session::HookTable table;
    std::vector<std::unique_ptr<Module>> mods;
    auto m = std::make_unique<Declares>();
    m->twice = true;
    mods.push_back(std::move(m));
    starling::testing::OneShard shard(std::vector<std::unique_ptr<Module>>{});
    EXPECT_THROW(table.install(*shard.ctx, std::move(mods)), std::logic_error);
}

}  // namespace
