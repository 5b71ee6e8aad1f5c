#include "edge-agent/src/log.hpp"

#include <gtest/gtest.h>

using starling::agent::format_log_line;
using starling::agent::LogLevel;

TEST(Log, OneEventIsOneLineOfKeyValuePairs) {
    EXPECT_EQ(format_log_line(LogLevel::info, "link.online", {{"jid", "a@b/c"}, {"resumed", true}, {"n", 42}}),
              "level=info event=link.online jid=a@b/c resumed=true n=42");
}

TEST(Log, ValuesThatNeedItAreQuotedAndEscaped) {
    EXPECT_EQ(format_log_line(LogLevel::warn, "x", {{"reason", "read: Connection reset"}, {"e", ""}}),
              "level=warn event=x reason=\"read: Connection reset\" e=\"\"");
    // A peer's bytes can never break the line: quotes, backslashes and controls are escaped.
    EXPECT_EQ(format_log_line(LogLevel::error, "x", {{"v", "a\"b\\c\nlevel=info\x01"}}),
              "level=error event=x v=\"a\\\"b\\\\c\\x0alevel=info\\x01\"");
}
