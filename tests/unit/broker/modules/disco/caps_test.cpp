#include <gtest/gtest.h>

#include "broker/src/modules/disco/disco_module.hpp"

namespace {

using starling::modules::caps_ver;

// XEP-0115 §5.2, the simple example.
TEST(CapsVer, MatchesTheXepExample) {
    EXPECT_EQ(caps_ver({"client/pc//Exodus 0.9.1"},
                       {"http://jabber.org/protocol/muc", "http://jabber.org/protocol/disco#info",
                        "http://jabber.org/protocol/caps", "http://jabber.org/protocol/disco#items"}),
              "QgayPKawpkPSDYmwT/WM94uAlu0=");
}

TEST(CapsVer, DoesNotDependOnOrder) {
    EXPECT_EQ(caps_ver({"server/im//Starling"}, {"b", "a"}), caps_ver({"server/im//Starling"}, {"a", "b"}));
    EXPECT_NE(caps_ver({"server/im//Starling"}, {"a"}), caps_ver({"server/im//Starling"}, {"a", "b"}));
}

}  // namespace
