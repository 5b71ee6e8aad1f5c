#include "xmpp/secret.hpp"

#include <string>

#include <gtest/gtest.h>

namespace {

// The bytes of `s`'s own buffer, whatever its size says (the moved-from string keeps its
// small-string buffer: that is where a short password would linger).
std::string buffer_of(const std::string& s) { return std::string(s.data(), s.capacity()); }

TEST(SecretString, TakingAShortPasswordLeavesNothingInTheStringItCameFrom) {
    std::string typed = "hunter2";  // short: in the string's own buffer, not the heap
    const xmpp::SecretString secret(std::move(typed));
    EXPECT_EQ(secret.view(), "hunter2");
    EXPECT_TRUE(typed.empty());
    EXPECT_EQ(buffer_of(typed), std::string(typed.capacity(), '\0'));
}

TEST(SecretString, MovesAndAssignmentsKeepOneLiveCopyAndWipeTheRest) {
    xmpp::SecretString a(std::string_view("correct horse battery staple"));
    xmpp::SecretString b(std::move(a));
    EXPECT_TRUE(a.empty());
    EXPECT_EQ(b.view(), "correct horse battery staple");
    xmpp::SecretString c(std::string_view("pw"));
    c = std::move(b);
    EXPECT_TRUE(b.empty());
    EXPECT_EQ(c.view(), "correct horse battery staple");
    c = xmpp::SecretString(std::string_view("short"));
    EXPECT_EQ(c.view(), "short");
}

}  // namespace
