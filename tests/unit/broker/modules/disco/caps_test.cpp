#include <gtest/gtest.h>

#include "broker/src/modules/caps/caps_module.hpp"

namespace {

using starling::modules::caps_ver;

// XEP-0115 §5.2, the simple example.
TEST(CapsVer, MatchesTheXepExample) {
    EXPECT_EQ(caps_ver({"client/pc//Exodus 0.9.1"},
                       {"http://jabber.org/protocol/muc", "http://jabber.org/protocol/disco#info",
                        "http://jabber.org/protocol/caps", "http://jabber.org/protocol/disco#items"}),
              "QgayPKawpkPSDYmwT/WM94uAlu0=");
}

// XEP-0115 §5.3, the complex example: two identities with languages and an extended form.
TEST(CapsVer, MatchesTheXepComplexExampleWithAForm) {
    starling::modules::CapsForm form;
    form.form_type = "urn:xmpp:dataforms:softwareinfo";
    form.fields = {{"software_version", {"0.11"}},
                   {"os", {"Mac"}},
                   {"ip_version", {"ipv6", "ipv4"}},
                   {"os_version", {"10.5.1"}},
                   {"software", {"Psi"}}};
    EXPECT_EQ(caps_ver({"client/pc/en/Psi 0.11", "client/pc/el/\xce\xa8 0.11"},
                       {"http://jabber.org/protocol/disco#items", "http://jabber.org/protocol/caps",
                        "http://jabber.org/protocol/disco#info", "http://jabber.org/protocol/muc"},
                       {form}),
              "q07IKJEyjvHSyhy//CH0CxmKi8w=");
}

TEST(CapsVer, DoesNotDependOnOrder) {
    EXPECT_EQ(caps_ver({"server/im//Starling"}, {"b", "a"}), caps_ver({"server/im//Starling"}, {"a", "b"}));
    EXPECT_NE(caps_ver({"server/im//Starling"}, {"a"}), caps_ver({"server/im//Starling"}, {"a", "b"}));
}

}  // namespace
