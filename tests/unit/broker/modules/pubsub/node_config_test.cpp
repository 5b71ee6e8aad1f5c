#include "broker/src/modules/pubsub/node_config.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace {

using namespace starling::modules::pubsub;
using xmpp::StanzaError;

// A submitted form from rows of (var, value).
std::string form(const std::vector<std::pair<std::string, std::string>>& fields, const std::string& type = "submit") {
    std::string x = "<x xmlns='jabber:x:data' type='" + type + "'>";
    for (const auto& [var, value] : fields) x += "<field var='" + var + "'><value>" + value + "</value></field>";
    return x + "</x>";
}

struct Applied {
    bool ok;
    NodeConfig config;
    FormError error;
};

Applied apply_form(const std::string& xml, NodeConfig base = {}, ConfigLimits limits = {}) {
    pugi::xml_document doc;
    EXPECT_TRUE(doc.load_string(xml.c_str()));
    auto r = apply_config_form(base, doc.document_element(), limits);
    if (r) return {true, r.value(), {}};
    return {false, {}, r.error()};
}

TEST(NodeConfigForm, AppliesEveryKnownField) {
    const auto a = apply_form(form({{"FORM_TYPE", std::string(k_form_type_node_config)},
                               {"pubsub#access_model", "whitelist"},
                               {"pubsub#publish_model", "subscribers"},
                               {"pubsub#max_items", "42"},
                               {"pubsub#persist_items", "0"},
                               {"pubsub#deliver_payloads", "false"},
                               {"pubsub#notify_retract", "0"},
                               {"pubsub#notify_delete", "true"},
                               {"pubsub#notify_config", "1"},
                               {"pubsub#title", "Boiler &amp; pumps"}}));
    ASSERT_TRUE(a.ok) << a.error.text;
    EXPECT_EQ(a.config.access_model, AccessModel::whitelist);
    EXPECT_EQ(a.config.publish_model, PublishModel::subscribers);
    EXPECT_EQ(a.config.max_items, 42u);
    EXPECT_FALSE(a.config.persist_items);
    EXPECT_FALSE(a.config.deliver_payloads);
    EXPECT_FALSE(a.config.notify_retract);
    EXPECT_TRUE(a.config.notify_delete);
    EXPECT_TRUE(a.config.notify_config);
    EXPECT_EQ(a.config.title, "Boiler & pumps");
}

TEST(NodeConfigForm, RosterAccessWithItsGroupsAndItemExpiry) {
    const auto a = apply_form("<x xmlns='jabber:x:data' type='submit'>"
                              "<field var='pubsub#access_model'><value>roster</value></field>"
                              "<field var='pubsub#roster_groups_allowed'><value>Family</value><value>Ops</value></field>"
                              "<field var='pubsub#item_expire'><value>600</value></field></x>");
    ASSERT_TRUE(a.ok) << a.error.text;
    EXPECT_EQ(a.config.access_model, AccessModel::roster);
    EXPECT_EQ(a.config.roster_groups_allowed, (std::vector<std::string>{"Family", "Ops"}));
    EXPECT_EQ(a.config.item_expire_s, 600u);
}

TEST(NodeConfigForm, KeepsFieldsTheFormDoesNotName) {
    NodeConfig base;
    base.max_items = 7;
    base.access_model = AccessModel::authorize;
    const auto a = apply_form(form({{"pubsub#deliver_payloads", "0"}}), base);
    ASSERT_TRUE(a.ok);
    EXPECT_EQ(a.config.max_items, 7u);
    EXPECT_EQ(a.config.access_model, AccessModel::authorize);
    EXPECT_FALSE(a.config.deliver_payloads);
}

TEST(NodeConfigForm, CancelLeavesTheConfigurationAlone) {
    NodeConfig base;
    base.title = "kept";
    const auto a = apply_form(form({{"pubsub#title", "changed"}}, "cancel"), base);
    ASSERT_TRUE(a.ok);
    EXPECT_EQ(a.config, base);
}

struct Refusal {
    const char* name;
    std::vector<std::pair<std::string, std::string>> fields;
    StanzaError condition;
    const char* field;  // named in the error text
};

TEST(NodeConfigForm, RefusesWithTheConditionAndNamesTheField) {
    const std::vector<Refusal> rows{
        {"unknown field", {{"pubsub#flavour", "mint"}}, StanzaError::bad_request, "pubsub#flavour"},
        {"wrong form type", {{"FORM_TYPE", "urn:other"}}, StanzaError::bad_request, "FORM_TYPE"},
        {"unknown access model", {{"pubsub#access_model", "everyone"}}, StanzaError::bad_request, "pubsub#access_model"},
        {"item_expire not a number", {{"pubsub#item_expire", "soon"}}, StanzaError::bad_request, "pubsub#item_expire"},
        {"item_expire over ten years", {{"pubsub#item_expire", "999999999"}}, StanzaError::not_acceptable, "pubsub#item_expire"},
        {"unknown publish model", {{"pubsub#publish_model", "all"}}, StanzaError::bad_request, "pubsub#publish_model"},
        {"max_items not a number", {{"pubsub#max_items", "ten"}}, StanzaError::bad_request, "pubsub#max_items"},
        {"max_items negative", {{"pubsub#max_items", "-1"}}, StanzaError::bad_request, "pubsub#max_items"},
        {"max_items zero", {{"pubsub#max_items", "0"}}, StanzaError::not_acceptable, "pubsub#max_items"},
        {"max_items one past the cap", {{"pubsub#max_items", "101"}}, StanzaError::not_acceptable, "pubsub#max_items"},
        {"boolean neither", {{"pubsub#persist_items", "yes"}}, StanzaError::bad_request, "pubsub#persist_items"},
        {"boolean empty", {{"pubsub#notify_delete", ""}}, StanzaError::bad_request, "pubsub#notify_delete"},
    };
    ConfigLimits limits;
    limits.max_items_cap = 100;
    for (const auto& row : rows) {
        const auto a = apply_form(form(row.fields), {}, limits);
        ASSERT_FALSE(a.ok) << row.name;
        EXPECT_EQ(a.error.condition, row.condition) << row.name;
        EXPECT_NE(a.error.text.find(row.field), std::string::npos) << row.name << ": " << a.error.text;
    }
}

TEST(NodeConfigForm, MaxItemsAtTheCapAndMax) {
    ConfigLimits limits;
    limits.max_items_cap = 100;
    auto a = apply_form(form({{"pubsub#max_items", "100"}}), {}, limits);
    ASSERT_TRUE(a.ok);
    EXPECT_EQ(a.config.max_items, 100u);
    a = apply_form(form({{"pubsub#max_items", "max"}}), {}, limits);
    ASSERT_TRUE(a.ok);
    EXPECT_EQ(a.config.max_items, 100u);
}

TEST(NodeConfigForm, RefusesAFormThatIsNotSubmitted) {
    const auto a = apply_form(form({{"pubsub#max_items", "3"}}, "form"));
    ASSERT_FALSE(a.ok);
    EXPECT_EQ(a.error.condition, StanzaError::bad_request);
}

TEST(NodeConfigForm, WrittenFormParsesBackToTheSameConfiguration) {
    NodeConfig c;
    c.access_model = AccessModel::authorize;
    c.publish_model = PublishModel::open;
    c.max_items = 77;
    c.persist_items = false;
    c.notify_retract = false;
    c.notify_config = true;
    c.title = "<temps> & 'co'";
    c.item_expire_s = 3600;
    c.roster_groups_allowed = {"Family", "Ops & on-call"};
    std::string xml;
    write_config_form(xml, c, {});
    // An owner that submits the form unchanged keeps the configuration.
    const std::string submitted = [&] {
        std::string s = xml;
        s.replace(s.find("type='form'"), 11, "type='submit'");
        return s;
    }();
    const auto a = apply_form(submitted);
    ASSERT_TRUE(a.ok) << a.error.text << "\n" << xml;
    EXPECT_EQ(a.config, c);
}

}  // namespace
