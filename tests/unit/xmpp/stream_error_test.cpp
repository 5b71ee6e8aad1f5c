#include "xmpp/stream_error.hpp"

#include <gtest/gtest.h>

#include <set>
#include <string>

namespace {

TEST(StreamError, EveryConditionHasADistinctName) {
    std::set<std::string> names;
    for (int i = 0; i <= static_cast<int>(xmpp::StreamError::unsupported_version); ++i) {
        names.emplace(xmpp::to_string(static_cast<xmpp::StreamError>(i)));
    }
    EXPECT_EQ(names.size(), 25u);  // RFC 6120 §4.9.3 defines 25 conditions
    EXPECT_TRUE(names.count("not-well-formed"));
    EXPECT_TRUE(names.count("restricted-xml"));
}

TEST(StanzaError, EveryConditionHasADistinctNameAndAType) {
    std::set<std::string> names;
    for (int i = 0; i <= static_cast<int>(xmpp::StanzaError::unexpected_request); ++i) {
        auto e = static_cast<xmpp::StanzaError>(i);
        names.emplace(xmpp::to_string(e));
        EXPECT_FALSE(xmpp::to_string(xmpp::default_type(e)).empty());
    }
    EXPECT_EQ(names.size(), 22u);  // RFC 6120 §8.3.3 defines 22 conditions
    EXPECT_EQ(xmpp::to_string(xmpp::default_type(xmpp::StanzaError::bad_request)), "modify");
}

}  // namespace
