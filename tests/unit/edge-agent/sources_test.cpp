#include "edge-agent/src/sources.hpp"
#include "edge-agent/src/process.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "edge-agent/src/agent.hpp"

using starling::agent::parse_number;
using starling::agent::parse_program_line;
using starling::agent::Reading;
using starling::agent::run_program;

TEST(Sources, ParsesSysfsNumbers) {
    struct Row {
        const char* text;
        bool ok;
        double value;
    };
    const Row rows[] = {
        {"42000\n", true, 42000},   {"-5\n", true, -5},        {" 3.25 \n", true, 3.25}, {"0", true, 0},
        {"", false, 0},             {"\n", false, 0},          {"12abc\n", false, 0},    {"nan\n", false, 0},
        {"inf\n", false, 0},        {"1 2\n", false, 0},
    };
    for (const auto& r : rows) {
        double v = -1;
        EXPECT_EQ(parse_number(r.text, v), r.ok) << r.text;
        if (r.ok) {
            EXPECT_DOUBLE_EQ(v, r.value) << r.text;
        }
    }
}

TEST(Sources, ParsesProgramLines) {
    Reading r;
    ASSERT_TRUE(parse_program_line("disk.free 12.5 GB", r));
    EXPECT_EQ(r.name, "disk.free");
    EXPECT_DOUBLE_EQ(r.value, 12.5);
    EXPECT_EQ(r.unit, "GB");
    ASSERT_TRUE(parse_program_line("load 0.7\r", r));
    EXPECT_EQ(r.unit, "");
    EXPECT_FALSE(parse_program_line("load", r));
    EXPECT_FALSE(parse_program_line("load x", r));
    EXPECT_FALSE(parse_program_line("a b c d", r));
    EXPECT_FALSE(parse_program_line("bad<name 1", r));
    EXPECT_FALSE(parse_program_line(std::string(65, 'n') + " 1", r));  // one past the 64 limit
    EXPECT_TRUE(parse_program_line(std::string(64, 'n') + " 1", r));
}

TEST(Sources, RunsAProgramWithoutAShellAndBoundsItsOutputAndTime) {
    std::string out;
    EXPECT_EQ(run_program({"/bin/echo", "a;b", "$HOME"}, 2000, 4096, out), 0);
    EXPECT_EQ(out, "a;b $HOME\n");  // no shell: nothing expanded
    EXPECT_EQ(run_program({"/bin/sh", "-c", "yes | head -c 100000"}, 2000, 100, out), 0);
    EXPECT_EQ(out.size(), 100u);
    EXPECT_EQ(run_program({"/bin/sleep", "5"}, 100, 100, out), -1);  // killed at the timeout
    EXPECT_EQ(run_program({"/nonexistent/program"}, 1000, 100, out), 127);
    EXPECT_EQ(run_program({"/bin/false"}, 1000, 100, out), 1);
}

TEST(Sources, CollectsFilesAndLogsAVanishedOneWithoutFailing) {
    char tmpl[] = "/tmp/agent-src-XXXXXX";
    const std::filesystem::path dir = ::mkdtemp(tmpl);
    starling::agent::AgentConfig cfg;
    cfg.files.push_back({"t", (dir / "temp").string(), 0.001, 0, "Cel"});
    std::ofstream(dir / "temp") << "41500\n";
    asio::io_context io;
    starling::agent::Sources s(io, cfg);
    std::vector<Reading> out;
    s.collect(out);
    ASSERT_EQ(out.size(), 1u);
    EXPECT_DOUBLE_EQ(out[0].value, 41.5);
    EXPECT_EQ(out[0].unit, "Cel");
    std::filesystem::remove(dir / "temp");
    out.clear();
    s.collect(out);
    EXPECT_TRUE(out.empty());
    EXPECT_EQ(s.errors(), 1u);
    std::filesystem::remove_all(dir);
}

TEST(Sources, KillsTheWholeProcessGroupAtTheTimeout) {
    // A grandchild keeps stdout open: killing only the child would leave the pipe open 5 s.
    std::string out;
    const auto t0 = std::chrono::steady_clock::now();
    EXPECT_EQ(run_program({"/bin/sh", "-c", "(sleep 5; echo late) & echo early; wait"}, 300, 100, out), -1);
    EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(2));
    EXPECT_EQ(out, "early\n");
}

TEST(Sources, AProgramRunsWithoutBlockingCollectAndItsReadingsComeLater) {
    starling::agent::AgentConfig cfg;
    cfg.programs.push_back({"p", {"/bin/sh", "-c", "sleep 0.3; echo x 2 V"}, 5000, 4096});
    asio::io_context io;
    starling::agent::Sources s(io, cfg);
    std::vector<Reading> out;
    const auto t0 = std::chrono::steady_clock::now();
    s.collect(out);  // starts it
    s.collect(out);  // still running: not started twice
    EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(200));
    EXPECT_TRUE(out.empty());
    EXPECT_EQ(s.programs_busy(), 1u);
    io.run_for(std::chrono::seconds(3));  // returns when the child is reaped (nothing else queued)
    s.collect(out);
    ASSERT_GE(out.size(), 1u);
    EXPECT_EQ(out[0].name, "p.x");
    EXPECT_DOUBLE_EQ(out[0].value, 2);
    EXPECT_EQ(out[0].unit, "V");
    EXPECT_EQ(s.errors(), 0u);
}

TEST(BatchPayload, IsOneEscapedReadingsElement) {
    std::vector<Reading> rs = {{"a<b", 1.5, "Cel", 1000}, {"c", -2, "", 2000}, {"d", 3, "x", 3000}};
    EXPECT_EQ(starling::agent::batch_payload("dev'1", rs, 0, 2, 4),
              "<readings xmlns='urn:starling:agent:readings:0' device='dev&apos;1' count='2' dropped='4'>"
              "<r n='a&lt;b' t='1000' u='Cel' v='1.5'/><r n='c' t='2000' v='-2'/></readings>");
}
