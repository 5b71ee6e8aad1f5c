// broker/src/config: TOML file, command line, overrides, validation.
#include "broker/src/config/config.hpp"
#include "broker/src/modules/module_list.hpp"

#include <gtest/gtest.h>

#include <unistd.h>

#include <fstream>
#include <ostream>
#include <functional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using namespace starling::config;

namespace {

// Runs f and returns the ConfigError it throws; fails the test if it throws nothing.
template <class F>
ConfigError error_of(F&& f) {
    try {
        f();
    } catch (const ConfigError& e) {
        return e;
    }
    ADD_FAILURE() << "no ConfigError thrown";
    return ConfigError("", "none");
}

// argv from strings, argv[0] = "starlingd".
class Argv {
public:
    Argv(std::initializer_list<std::string> args) {
        _s.push_back("starlingd");
        _s.insert(_s.end(), args.begin(), args.end());
        for (auto& s : _s) _p.push_back(s.data());
        _p.push_back(nullptr);
    }
    int argc() const { return static_cast<int>(_s.size()); }
    char** argv() { return _p.data(); }

private:
    std::vector<std::string> _s;
    std::vector<char*> _p;
};

// A fresh folder per test, removed afterwards.
class TempDir {
public:
    TempDir() {
        const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
        _path = fs::temp_directory_path() /
                ("starling_config_" + std::to_string(::getpid()) + "_" + info->name());
        fs::remove_all(_path);
        fs::create_directories(_path);
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(_path, ec);
    }
    const fs::path& path() const { return _path; }
    fs::path write(const std::string& name, const std::string& text) const {
        fs::path p = _path / name;
        std::ofstream(p) << text;
        return p;
    }

private:
    fs::path _path;
};

std::string read_text(const fs::path& p) {
    std::ifstream f(p);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

const fs::path k_example = fs::path(STARLING_SOURCE_DIR) / "deploy" / "starlingd.toml";

}  // namespace

// --- defaults and the documented example ---

TEST(BrokerConfig, DefaultsAreValid) {
    BrokerConfig c;
    EXPECT_NO_THROW(validate(c));
    EXPECT_EQ(c.domains, std::vector<std::string>{"localhost"});
    EXPECT_EQ(c.c2s.port, 5222);
    EXPECT_EQ(c.c2s.tls_port, 5223);
    EXPECT_EQ(c.metrics.port, 9522);
    EXPECT_EQ(c.metrics.bind_address, "127.0.0.1");
    EXPECT_TRUE(c.c2s.require_tls);
    EXPECT_FALSE(c.c2s.allow_plaintext);
    EXPECT_FALSE(c.modules.values.boolean("register.open"));
    EXPECT_TRUE(c.modules.is_enabled("mam"));
    EXPECT_TRUE(warnings(c).empty());
}

TEST(BrokerConfig, EmptyFileGivesTheDefaults) {
    EXPECT_EQ(parse_config("", "empty.toml"), BrokerConfig{});
    EXPECT_EQ(parse_config("# only a comment\n[c2s]\n", "c.toml"), BrokerConfig{});
}

// deploy/starlingd.toml holds the module sections exactly as the modules declare them.
TEST(ExampleFile, HoldsTheModulesDeclarationsVerbatim) {
    const std::string text = read_text(k_example);
    const std::string block = module_config_text();
    EXPECT_NE(text.find(block), std::string::npos)
        << "deploy/starlingd.toml is out of date; regenerate its module sections with\n"
           "  starlingd --print-module-config\nwhich prints:\n"
        << block;
}

TEST(ExampleFile, EqualsTheDefaults) {
    ASSERT_TRUE(fs::exists(k_example)) << k_example;
    BrokerConfig c = load_config_file(k_example);
    EXPECT_EQ(c, BrokerConfig{});
    EXPECT_NO_THROW(validate(c));
}

// Every option is documented: set, or shown commented out, under its table.
TEST(ExampleFile, MentionsEveryOption) {
    std::istringstream in(read_text(k_example));
    std::set<std::string> seen;
    std::string section;
    for (std::string line; std::getline(in, line);) {
        if (line.starts_with("# ")) line.erase(0, 2);
        if (line.starts_with("[[")) {
            section = line.substr(2, line.find("]]") - 2);
            seen.insert(section);
        } else if (line.starts_with("[")) {
            section = line.substr(1, line.find(']') - 1);
        } else if (auto eq = line.find(" = "); eq != std::string::npos && eq > 0 &&
                                               line.find_first_of(" `(#") == eq) {
            seen.insert(section.empty() ? line.substr(0, eq) : section + "." + line.substr(0, eq));
        }
    }
    for (const auto& key : option_keys()) EXPECT_TRUE(seen.count(key)) << key << " is not in " << k_example;
}

// --- good files ---

struct GoodFile {
    const char* name;
    const char* toml;
    std::function<void(BrokerConfig&)> expected;  // applied to the defaults
};

// gtest prints the row by its name.
std::ostream& operator<<(std::ostream& os, const GoodFile& r) { return os << r.name; }

class GoodFiles : public ::testing::TestWithParam<GoodFile> {};

TEST_P(GoodFiles, ParseToTheExpectedConfig) {
    const GoodFile& row = GetParam();
    BrokerConfig expected;
    row.expected(expected);
    BrokerConfig got = parse_config(row.toml, "good.toml");
    EXPECT_EQ(got, expected);
}

INSTANTIATE_TEST_SUITE_P(
    Config, GoodFiles,
    ::testing::Values(
        GoodFile{"domains_normalised", "domains = [\"Example.COM\", \"iot.example.org\"]\n",
                 [](BrokerConfig& c) { c.domains = {"example.com", "iot.example.org"}; }},
        GoodFile{"general", "[general]\nlog_level = \"debug\"\ndata_dir = \"/var/lib/starling\"\nshards = 4\n"
                            "server_secret_file = \"/etc/starling/secret\"\n",
                 [](BrokerConfig& c) {
                     c.general.log_level = LogLevel::debug;
                     c.general.data_dir = "/var/lib/starling";
                     c.general.shards = 4;
                     c.general.server_secret_file = "/etc/starling/secret";
                 }},
        GoodFile{"empty_secret_is_unset", "[general]\nserver_secret_file = \"\"\n", [](BrokerConfig&) {}},
        GoodFile{"device_certificates_and_binding",
                 "[tls]\nclient_ca_file = \"/etc/starling/ca.crt\"\nclient_crl_file = \"/etc/starling/ca.crl\"\n"
                 "client_cert_jid_from_cn = true\nchannel_binding = false\nchannel_binding_downgrade_check = true\n",
                 [](BrokerConfig& c) {
                     c.tls.client_ca_file = "/etc/starling/ca.crt";
                     c.tls.client_crl_file = "/etc/starling/ca.crl";
                     c.tls.client_cert_jid_from_cn = true;
                     c.tls.channel_binding = false;
                     c.tls.channel_binding_downgrade_check = true;
                 }},
        GoodFile{"ports_disabled", "[c2s]\nport = 0\ntls_port = 0\n[metrics]\nport = 0\n",
                 [](BrokerConfig& c) {
                     c.c2s.port = 0;
                     c.c2s.tls_port = 0;
                     c.metrics.port = 0;
                 }},
        GoodFile{"ipv6_binds", "[c2s]\nbind_address = \"::\"\n[metrics]\nbind_address = \"::1\"\n",
                 [](BrokerConfig& c) {
                     c.c2s.bind_address = "::";
                     c.metrics.bind_address = "::1";
                 }},
        GoodFile{"plaintext", "[c2s]\nrequire_tls = false\nallow_plaintext = true\n",
                 [](BrokerConfig& c) {
                     c.c2s.require_tls = false;
                     c.c2s.allow_plaintext = true;
                 }},
        GoodFile{"limits", "[c2s]\nmax_stanza_bytes = 65536\nmax_depth = 16\nmax_attributes = 32\n"
                           "stanzas_per_second = 50\nidle_timeout_ms = 0\n",
                 [](BrokerConfig& c) {
                     c.c2s.max_stanza_bytes = 65536;
                     c.c2s.max_depth = 16;
                     c.c2s.max_attributes = 32;
                     c.c2s.stanzas_per_second = 50;
                     c.c2s.idle_timeout_ms = 0;
                 }},
        GoodFile{"accounts", "[accounts]\nscram_iterations = 10000\n[register]\nopen = true\n",
                 [](BrokerConfig& c) {
                     c.accounts.scram_iterations = 10000;
                     c.modules.values.set("register.open", true);
                 }},
        GoodFile{"module_options", "[modules]\nmam = false\n[offline]\nmax_messages = 50\n[ping]\nidle_ms = 0\n",
                 [](BrokerConfig& c) {
                     c.modules.enabled["mam"] = false;
                     c.modules.values.set("offline.max_messages", std::uint64_t{50});
                     c.modules.values.set("ping.idle_ms", std::uint64_t{0});
                 }},
        GoodFile{"jid_list", "[adhoc]\nadmins = [\"Boss@LocalHost\", \"ops@example.org\"]\n",
                 [](BrokerConfig& c) {
                     // Normalised as the JIDs they name (RFC 7622).
                     c.modules.values.set("adhoc.admins", std::vector<std::string>{"boss@localhost", "ops@example.org"});
                 }},
        GoodFile{"paths", "[admin]\nsocket = \"/run/starling.sock\"\n[storage]\npath = \"rocks\"\n",
                 [](BrokerConfig& c) {
                     c.admin.socket = "/run/starling.sock";
                     c.storage.path = "rocks";
                 }},
        GoodFile{"certificates",
                 "[[tls.certificates]]\ndomains = [\"Example.com\", \"*.example.com\"]\n"
                 "cert_file = \"a.crt\"\nkey_file = \"a.key\"\n"
                 "[[tls.certificates]]\ndomain = \"other.org\"\ncert_file = \"b.crt\"\nkey_file = \"b.key\"\n"
                 "[[tls.certificates]]\ncert_file = \"d.crt\"\nkey_file = \"d.key\"\n",
                 [](BrokerConfig& c) {
                     c.tls.certificates = {{{"example.com", "*.example.com"}, "a.crt", "a.key"},
                                           {{"other.org"}, "b.crt", "b.key"},
                                           {{}, "d.crt", "d.key"}};
                 }},
        GoodFile{"inline_tables", "c2s = { port = 15222 }\n",
                 [](BrokerConfig& c) { c.c2s.port = 15222; }}),
    [](const auto& p) { return std::string(p.param.name); });

// --- bad files: each error names the key, the line and the column ---

struct BadFile {
    const char* name;
    const char* toml;
    std::uint32_t line;
    std::uint32_t column;  // 0: not checked
    const char* key;
    const char* message;   // exact
};

// gtest prints the row by its name.
std::ostream& operator<<(std::ostream& os, const BadFile& r) { return os << r.name; }

class BadFiles : public ::testing::TestWithParam<BadFile> {};

TEST_P(BadFiles, AreErrorsAtTheRightPlace) {
    const BadFile& row = GetParam();
    ConfigError e = error_of([&] { (void)parse_config(row.toml, "bad.toml"); });
    EXPECT_EQ(e.file(), "bad.toml");
    EXPECT_EQ(e.line(), row.line) << e.what();
    if (row.column != 0) {
        EXPECT_EQ(e.column(), row.column) << e.what();
    }
    EXPECT_EQ(e.key(), row.key) << e.what();
    if (std::string_view(row.message).size() > 0) {
        EXPECT_EQ(e.message(), row.message) << e.what();
    }
}

INSTANTIATE_TEST_SUITE_P(
    Config, BadFiles,
    ::testing::Values(
        BadFile{"port_too_big", "# comment\n[c2s]\nport = 70000\n", 3, 8, "c2s.port",
                "must be between 0 and 65535 (got 70000)"},
        BadFile{"negative", "[general]\nshards = -1\n", 2, 10, "general.shards",
                "must be between 0 and 1024 (got -1)"},
        BadFile{"port_is_string", "[c2s]\n\nport = \"5222\"\n", 3, 8, "c2s.port",
                "must be an integer (got a string)"},
        BadFile{"port_is_float", "[metrics]\nport = 9522.0\n", 2, 8, "metrics.port",
                "must be an integer (got a floating-point number)"},
        BadFile{"bool_is_int", "[c2s]\nrequire_tls = 1\n", 2, 15, "c2s.require_tls",
                "must be a boolean (true or false) (got an integer)"},
        BadFile{"unknown_key", "[c2s]\nport = 5222\nprot = 5223\n", 3, 1, "c2s.prot",
                "unknown key (did you mean 'port'?)"},
        BadFile{"unknown_key_far", "[c2s]\nfrobnicate = true\n", 2, 1, "c2s.frobnicate", "unknown key"},
        BadFile{"unknown_table", "[c2ss]\nport = 1\n", 1, 0, "c2ss",
                "unknown table (did you mean 'c2s'?)"},
        BadFile{"unknown_top_key", "domain = [\"a\"]\n", 1, 1, "domain",
                "unknown key (did you mean 'domains'?)"},
        BadFile{"earliest_unknown_wins", "[metrics]\nzzz = 1\n[c2s]\naaa = 2\n", 2, 1, "metrics.zzz",
                "unknown key"},
        BadFile{"table_is_scalar", "c2s = 5\n", 1, 7, "c2s", "must be a table (got an integer)"},
        BadFile{"log_level", "[general]\nlog_level = \"loud\"\n", 2, 13, "general.log_level",
                "must be one of trace, debug, info, warn, error (got \"loud\")"},
        BadFile{"registration_moved", "[accounts]\nregistration = \"open\"\n", 2, 1, "accounts.registration",
                "moved: write it as [register] open = true or false"},
        BadFile{"offline_moved", "[accounts]\noffline_max_messages = 5\n", 2, 1, "accounts.offline_max_messages",
                "moved: write it as [offline] max_messages"},
        BadFile{"module_option_type", "[register]\nopen = \"yes\"\n", 2, 0, "register.open",
                "must be a boolean (true or false) (got a string)"},
        BadFile{"unknown_module_option", "[offline]\nmax_mesages = 5\n", 2, 1, "offline.max_mesages",
                "unknown key (did you mean 'max_messages'?)"},
        BadFile{"unknown_module_switch", "[modules]\npubsubb = false\n", 2, 1, "modules.pubsubb", ""},
        BadFile{"jid_list_not_array", "[adhoc]\nadmins = \"boss@localhost\"\n", 2, 0, "adhoc.admins",
                "must be an array of bare JIDs (got a string)"},
        BadFile{"jid_list_domain_only", "[adhoc]\nadmins = [\"ok@localhost\",\n  \"localhost\"]\n", 3, 3, "adhoc.admins",
                "\"localhost\" is not a bare JID (user@domain)"},
        BadFile{"jid_list_not_a_jid", "[adhoc]\nadmins = [\"a@b@c\"]\n", 2, 0, "adhoc.admins", ""},
        BadFile{"jid_list_full_jid", "[adhoc]\nadmins = [\"a@b/phone\"]\n", 2, 0, "adhoc.admins", ""},
        BadFile{"jid_list_number", "[adhoc]\nadmins = [5]\n", 2, 0, "adhoc.admins",
                "must be an array of bare JIDs (got an integer)"},
        BadFile{"bind_hostname", "[c2s]\nbind_address = \"localhost\"\n", 2, 0, "c2s.bind_address",
                "must be an IPv4 or IPv6 address such as 0.0.0.0 or :: (got \"localhost\")"},
        BadFile{"bind_bracketed", "[metrics]\nbind_address = \"[::1]\"\n", 2, 0, "metrics.bind_address", ""},
        BadFile{"data_dir_empty", "[general]\ndata_dir = \"\"\n", 2, 0, "general.data_dir", "must not be empty"},
        BadFile{"domains_not_array", "domains = \"localhost\"\n", 1, 11, "domains",
                "must be an array of strings (got a string)"},
        BadFile{"domains_empty", "domains = []\n", 1, 0, "domains", "must list at least one domain"},
        BadFile{"domain_with_at", "domains = [\n  \"ok.example\",\n  \"user@example.com\",\n]\n", 3, 3, "domains",
                "must be a domain, not an address with '@' (got \"user@example.com\")"},
        BadFile{"domain_with_resource", "domains = [\"example.com/res\"]\n", 1, 0, "domains", ""},
        BadFile{"domain_empty_string", "domains = [\"\"]\n", 1, 0, "domains", ""},
        BadFile{"domain_twice", "domains = [\"a.example\", \"A.example\"]\n", 1, 0, "domains",
                "lists \"a.example\" twice"},
        BadFile{"domain_not_string", "domains = [\"a.example\", 5]\n", 1, 0, "domains",
                "must be a string (got an integer)"},
        BadFile{"cert_no_key", "[[tls.certificates]]\ndomains = [\"a.example\"]\ncert_file = \"a.crt\"\n", 1, 0,
                "tls.certificates[0].key_file", "is missing (a PEM file)"},
        BadFile{"cert_unknown_key", "[[tls.certificates]]\ncert = \"a.crt\"\n", 2, 1,
                "tls.certificates[0].cert", ""},
        BadFile{"cert_both_domain_forms",
                "[[tls.certificates]]\ndomain = \"a.example\"\ndomains = [\"b.example\"]\n"
                "cert_file = \"a\"\nkey_file = \"b\"\n",
                3, 0, "tls.certificates[0].domains", "give either domain or domains, not both"},
        BadFile{"cert_bad_domain", "[[tls.certificates]]\ndomain = \"a b\"\ncert_file = \"a\"\nkey_file = \"b\"\n",
                2, 0, "tls.certificates[0].domain", ""},
        BadFile{"certificates_not_array", "[tls]\ncertificates = \"a.crt\"\n", 2, 0, "tls.certificates", ""},
        BadFile{"syntax_error", "[c2s]\nport = \n", 2, 0, "", ""},
        BadFile{"duplicate_key", "[c2s]\nport = 1\nport = 2\n", 3, 0, "", ""},
        BadFile{"duplicate_table", "[c2s]\n[metrics]\n[c2s]\n", 3, 0, "", ""}),
    [](const auto& p) { return std::string(p.param.name); });

TEST(ConfigError, FormatsFileLineColumnAndKey) {
    ConfigError e = error_of([] { (void)parse_config("# comment\n[c2s]\nport = 70000\n", "starlingd.toml"); });
    EXPECT_STREQ(e.what(), "starlingd.toml:3:8: key 'c2s.port': must be between 0 and 65535 (got 70000)");
    EXPECT_STREQ(ConfigError("--c2s-port", "bad").what(), "--c2s-port: bad");
    EXPECT_STREQ(ConfigError("c2s.port", "bad").what(), "key 'c2s.port': bad");
    EXPECT_STREQ(ConfigError("f.toml", 0, 0, "", "cannot read").what(), "f.toml: cannot read");
    EXPECT_STREQ(ConfigError("f.toml", 4, 0, "", "oops").what(), "f.toml:4: oops");
}

// --- every numeric bound: at the limit, and one past it ---

struct Bound {
    const char* table;
    const char* name;
    Range range;
};

// gtest prints the row by its name.
std::ostream& operator<<(std::ostream& os, const Bound& r) { return os << r.table << "." << r.name; }

// A module option's row, with the bounds its module declares.
Bound declared(const char* module, const char* option) {
    for (const auto& m : starling::modules::module_catalog()) {
        if (m.name != module) continue;
        for (const auto& o : m.options) {
            if (o.name == option) return Bound{module, option, Range{o.min, o.max}};
        }
    }
    ADD_FAILURE() << module << "." << option << " is not declared";
    return Bound{module, option, Range{0, 0}};
}

class NumericBounds : public ::testing::TestWithParam<Bound> {
protected:
    static std::string file(const Bound& b, std::string value) {
        return "# line 1\n[" + std::string(b.table) + "]\n" + b.name + " = " + value + "\n";
    }
};

TEST_P(NumericBounds, AcceptTheLimitsAndRejectOnePast) {
    const Bound& b = GetParam();
    const std::string key = std::string(b.table) + "." + b.name;
    EXPECT_NO_THROW((void)parse_config(file(b, std::to_string(b.range.min)), "b.toml")) << key;
    EXPECT_NO_THROW((void)parse_config(file(b, std::to_string(b.range.max)), "b.toml")) << key;
    const std::string expected_range =
        "must be between " + std::to_string(b.range.min) + " and " + std::to_string(b.range.max);

    ConfigError over = error_of([&] { (void)parse_config(file(b, std::to_string(b.range.max + 1)), "b.toml"); });
    EXPECT_EQ(over.line(), 3u) << over.what();
    EXPECT_EQ(over.key(), key);
    EXPECT_EQ(over.message(), expected_range + " (got " + std::to_string(b.range.max + 1) + ")");

    const std::string under_value = b.range.min == 0 ? "-1" : std::to_string(b.range.min - 1);
    ConfigError under = error_of([&] { (void)parse_config(file(b, under_value), "b.toml"); });
    EXPECT_EQ(under.line(), 3u) << under.what();
    EXPECT_EQ(under.key(), key);
    EXPECT_EQ(under.message(), expected_range + " (got " + under_value + ")");
}

INSTANTIATE_TEST_SUITE_P(
    Config, NumericBounds,
    ::testing::Values(Bound{"general", "shards", bounds::shards},
                      Bound{"general", "malloc_keep_free_bytes", bounds::malloc_keep_free_bytes},
                      Bound{"c2s", "port", bounds::port},
                      Bound{"c2s", "tls_port", bounds::port},
                      Bound{"c2s", "pre_auth_timeout_ms", bounds::pre_auth_timeout_ms},
                      Bound{"c2s", "idle_timeout_ms", bounds::idle_timeout_ms},
                      Bound{"c2s", "auth_failure_delay_ms", bounds::auth_failure_delay_ms},
                      Bound{"c2s", "max_auth_failures", bounds::max_auth_failures},
                      Bound{"c2s", "stanzas_per_second", bounds::stanzas_per_second},
                      Bound{"c2s", "max_output_bytes", bounds::max_output_bytes},
                      Bound{"c2s", "max_resources_per_user", bounds::max_resources_per_user},
                      Bound{"c2s", "max_connections_per_ip", bounds::max_connections_per_ip},
                      Bound{"c2s", "connection_rate_per_ip", bounds::connection_rate_per_ip},
                      Bound{"c2s", "max_connections", bounds::max_connections},
                      Bound{"c2s", "max_stanza_bytes", bounds::max_stanza_bytes},
                      Bound{"c2s", "max_depth", bounds::max_depth},
                      Bound{"c2s", "max_attributes", bounds::max_attributes},
                      Bound{"c2s", "resume_timeout_s", bounds::resume_timeout_s},
                      Bound{"c2s", "max_unacked_stanzas", bounds::max_unacked_stanzas},
                      Bound{"c2s", "compression_window_bits", bounds::compression_window_bits},
                      Bound{"c2s", "compression_mem_level", bounds::compression_mem_level},
                      Bound{"tls", "ticket_key_rotation_s", bounds::ticket_key_rotation_s},
                      Bound{"metrics", "port", bounds::port},
                      Bound{"metrics", "stall_limit_s", bounds::stall_limit_s},
                      Bound{"accounts", "scram_iterations", bounds::scram_iterations},
                      Bound{"fast", "max_tokens_per_account", bounds::fast_max_tokens_per_account},
                      Bound{"fast", "token_lifetime_s", bounds::fast_token_lifetime_s},
                      Bound{"storage", "block_cache_mb", bounds::block_cache_mb},
                      Bound{"storage", "write_buffer_mb", bounds::write_buffer_mb},
                      declared("ping", "idle_ms"), declared("ping", "timeout_ms"),
                      declared("register", "per_ip_per_minute"), declared("vcard", "max_bytes"),
                      declared("offline", "max_messages"), declared("blocking", "max_items"),
                      declared("mam", "retention_days"), declared("mam", "max_messages_per_user"),
                      declared("csi", "max_held"), declared("csi", "max_held_bytes"),
                      declared("pubsub", "max_nodes_per_owner"), declared("pubsub", "max_items_per_node"),
                      declared("pubsub", "default_max_items"), declared("pubsub", "max_payload_bytes"),
                      declared("pubsub", "max_subscriptions_per_node"), declared("pubsub", "max_nodes_cached"),
                      declared("pubsub", "max_publishes_per_second"), declared("adhoc", "max_sessions"), declared("adhoc", "session_timeout_s"),
                      declared("adhoc", "max_online_list"), declared("caps", "max_cached"),
                      declared("caps", "max_pending"), declared("roster", "max_pending_changes"),
                      declared("presence", "max_probe_reads"), declared("blocking", "max_waiting"),
                      declared("offline", "max_waiting"), declared("pubsub", "max_waiting_requests")),
    [](const auto& p) { return std::string(p.param.table) + "_" + p.param.name; });

TEST(NumericBounds, CoverEveryIntegerOption) {
    // 16 rows above; the example file has these plus the non-numeric ones.
    std::size_t numeric = 0;
    for (const auto& k : option_keys()) {
        std::string table = k.substr(0, k.find('.'));
        std::string name = k.substr(k.find('.') + 1);
        try {
            (void)parse_config("[" + table + "]\n" + name + " = \"x\"\n", "t.toml");
        } catch (const ConfigError& e) {
            if (e.message() == "must be an integer (got a string)") ++numeric;
        }
    }
    EXPECT_EQ(numeric, 56u);  // booleans such as modules.mam are not counted
}

// --- files on disk ---

TEST(LoadConfigFile, ReadsAFileAndNamesItInErrors) {
    TempDir dir;
    fs::path good = dir.write("good.toml", "[c2s]\nport = 15222\n");
    EXPECT_EQ(load_config_file(good).c2s.port, 15222);

    fs::path bad = dir.write("bad.toml", "[c2s]\nport = 99999\n");
    ConfigError e = error_of([&] { (void)load_config_file(bad); });
    EXPECT_EQ(e.file(), bad.string());
    EXPECT_EQ(e.line(), 2u);
    EXPECT_EQ(std::string(e.what()), bad.string() + ":2:8: key 'c2s.port': must be between 0 and 65535 (got 99999)");
}

TEST(LoadConfigFile, MissingFileIsAnError) {
    TempDir dir;
    ConfigError e = error_of([&] { (void)load_config_file(dir.path() / "nope.toml"); });
    EXPECT_EQ(e.line(), 0u);
    EXPECT_EQ(e.message(), "cannot read: No such file or directory");
    ConfigError d = error_of([&] { (void)load_config_file(dir.path()); });
    EXPECT_EQ(d.message(), "cannot read: is a folder");
}

// --- validate() ---

struct Invalid {
    const char* name;
    std::function<void(BrokerConfig&)> change;
    const char* key;
    const char* message;  // exact; empty: not checked
};

// gtest prints the row by its name.
std::ostream& operator<<(std::ostream& os, const Invalid& r) { return os << r.name; }

class Validate : public ::testing::TestWithParam<Invalid> {};

TEST_P(Validate, RejectsInconsistentConfigs) {
    BrokerConfig c;
    GetParam().change(c);
    ConfigError e = error_of([&] { validate(c); });
    EXPECT_EQ(e.key(), GetParam().key) << e.what();
    EXPECT_TRUE(e.file().empty());
    if (std::string_view(GetParam().message).size() > 0) {
        EXPECT_EQ(e.message(), GetParam().message);
    }
}

INSTANTIATE_TEST_SUITE_P(
    Config, Validate,
    ::testing::Values(
        Invalid{"no_domain", [](BrokerConfig& c) { c.domains.clear(); }, "domains", "must list at least one domain"},
        Invalid{"domain_not_normalised", [](BrokerConfig& c) { c.domains = {"Example.com"}; }, "domains",
                "\"Example.com\" is not normalised (\"example.com\")"},
        Invalid{"domain_twice", [](BrokerConfig& c) { c.domains = {"a.example", "a.example"}; }, "domains", ""},
        Invalid{"tls_port_clash", [](BrokerConfig& c) { c.c2s.tls_port = 5222; }, "c2s.tls_port",
                "same port as c2s.port (5222)"},
        Invalid{"metrics_port_clash", [](BrokerConfig& c) { c.metrics.port = 5223; }, "metrics.port",
                "same port as c2s.tls_port (5223)"},
        Invalid{"shards_from_code", [](BrokerConfig& c) { c.general.shards = 5000; }, "general.shards",
                "must be between 0 and 1024 (got 5000)"},
        Invalid{"bad_bind", [](BrokerConfig& c) { c.c2s.bind_address = "example.com"; }, "c2s.bind_address", ""},
        Invalid{"output_below_stanza",
                [](BrokerConfig& c) {
                    c.c2s.max_stanza_bytes = 1u << 20;
                    c.c2s.max_output_bytes = 65536;
                },
                "c2s.max_output_bytes", "must be at least c2s.max_stanza_bytes (1048576)"},
        Invalid{"cert_without_key",
                [](BrokerConfig& c) { c.tls.certificates.push_back({{"localhost"}, "/etc/hostname", ""}); },
                "tls.certificates[0].key_file", "is missing (a PEM file)"},
        Invalid{"cert_unreadable",
                [](BrokerConfig& c) {
                    c.tls.certificates.push_back({{"localhost"}, "/nonexistent/a.crt", "/nonexistent/a.key"});
                },
                "tls.certificates[0].cert_file", "cannot read \"/nonexistent/a.crt\""},
        Invalid{"client_ca_unreadable", [](BrokerConfig& c) { c.tls.client_ca_file = "/nonexistent/ca.crt"; },
                "tls.client_ca_file", "cannot read \"/nonexistent/ca.crt\""},
        Invalid{"client_crl_without_ca", [](BrokerConfig& c) { c.tls.client_crl_file = "/etc/hostname"; },
                "tls.client_crl_file", "needs tls.client_ca_file"},
        Invalid{"client_crl_unreadable",
                [](BrokerConfig& c) {
                    c.tls.client_ca_file = "/etc/hostname";
                    c.tls.client_crl_file = "/nonexistent/ca.crl";
                },
                "tls.client_crl_file", "cannot read \"/nonexistent/ca.crl\""},
        Invalid{"secret_unreadable",
                [](BrokerConfig& c) { c.general.server_secret_file = "/nonexistent/secret"; },
                "general.server_secret_file", ""},
        Invalid{"socket_too_long", [](BrokerConfig& c) { c.admin.socket = "/" + std::string(200, 'a'); },
                "admin.socket", ""},
        Invalid{"empty_data_dir", [](BrokerConfig& c) { c.general.data_dir.clear(); }, "general.data_dir",
                "must not be empty"}),
    [](const auto& p) { return std::string(p.param.name); });

TEST(Validate, AcceptsDisabledListenersOnPortZero) {
    BrokerConfig c;
    c.c2s.port = 0;
    c.metrics.port = 0;
    EXPECT_NO_THROW(validate(c));
    c.c2s.tls_port = 0;
    EXPECT_NO_THROW(validate(c));
    EXPECT_FALSE(warnings(c).empty());  // nobody can connect: allowed, but said
}

TEST(Validate, AllowPlaintextWithRequireTlsIsFineAndWarned) {
    BrokerConfig c;
    c.c2s.allow_plaintext = true;
    EXPECT_NO_THROW(validate(c));
    ASSERT_EQ(warnings(c).size(), 1u);
    EXPECT_NE(warnings(c)[0].find("allow_plaintext"), std::string::npos);
}

TEST(Validate, ChecksCertificateFiles) {
    TempDir dir;
    BrokerConfig c;
    fs::path crt = dir.write("a.crt", "-----BEGIN CERTIFICATE-----\n");
    fs::path key = dir.write("a.key", "-----BEGIN PRIVATE KEY-----\n");
    c.tls.certificates.push_back({{"localhost", "*.localhost"}, crt, key});
    c.tls.certificates.push_back({{}, crt, key});  // the default certificate
    EXPECT_NO_THROW(validate(c));

    c.tls.certificates.push_back({{}, crt, key});
    EXPECT_EQ(error_of([&] { validate(c); }).key(), "tls.certificates[2].domains");
    c.tls.certificates.back().domains = {"localhost"};
    EXPECT_EQ(error_of([&] { validate(c); }).message(), "\"localhost\" already has a certificate");

    c.tls.certificates.pop_back();
    c.tls.certificates[0].key_file = dir.path();  // a folder is not a key
    EXPECT_EQ(error_of([&] { validate(c); }).key(), "tls.certificates[0].key_file");
}

// --- derived paths ---

TEST(ResolvePaths, PutsStorageAndAdminUnderDataDir) {
    BrokerConfig c;
    c.general.data_dir = "/srv/starling/";
    resolve_paths(c);
    EXPECT_EQ(c.storage.path, fs::path("/srv/starling/db"));
    EXPECT_EQ(c.admin.socket, fs::path("/srv/starling/admin.sock"));
    EXPECT_EQ(self_signed_dir(c), fs::path("/srv/starling/tls"));

    BrokerConfig again = c;
    resolve_paths(again);
    EXPECT_EQ(again, c);  // idempotent

    BrokerConfig d;
    d.general.data_dir = "/srv/s";
    d.storage.path = "rocks";
    d.admin.socket = "/run/starling/admin.sock";
    resolve_paths(d);
    EXPECT_EQ(d.storage.path, fs::path("/srv/s/rocks"));
    EXPECT_EQ(d.admin.socket, fs::path("/run/starling/admin.sock"));
}

TEST(ResolvePaths, MakesARelativeDataDirAbsolute) {
    BrokerConfig c;
    resolve_paths(c);
    EXPECT_TRUE(c.general.data_dir.is_absolute());
    EXPECT_EQ(c.general.data_dir, (fs::current_path() / "data").lexically_normal());
    EXPECT_EQ(c.storage.path, c.general.data_dir / "db");
}

// --- command line ---

struct CliRow {
    const char* name;
    std::vector<std::string> args;
    std::function<void(CliOptions&)> expected;  // applied to a default CliOptions
};

// gtest prints the row by its name.
std::ostream& operator<<(std::ostream& os, const CliRow& r) { return os << r.name; }

class CommandLine : public ::testing::TestWithParam<CliRow> {};

TEST_P(CommandLine, ParsesFlags) {
    const CliRow& row = GetParam();
    std::vector<std::string> s{"starlingd"};
    s.insert(s.end(), row.args.begin(), row.args.end());
    std::vector<char*> p;
    for (auto& a : s) p.push_back(a.data());
    p.push_back(nullptr);
    CliOptions expected;
    row.expected(expected);
    EXPECT_EQ(parse_command_line(static_cast<int>(s.size()), p.data()), expected);
}

INSTANTIATE_TEST_SUITE_P(
    Config, CommandLine,
    ::testing::Values(
        CliRow{"nothing", {}, [](CliOptions&) {}},
        CliRow{"config_separate", {"--config", "/etc/starlingd.toml"},
               [](CliOptions& o) { o.config = "/etc/starlingd.toml"; }},
        CliRow{"config_equals", {"--config=/etc/starlingd.toml"},
               [](CliOptions& o) { o.config = "/etc/starlingd.toml"; }},
        CliRow{"every_value_flag",
               {"--data-dir", "/tmp/d", "--c2s-port", "0", "--c2s-tls-port=15223", "--metrics-port", "65535",
                "--shards=2", "--log-level", "warn"},
               [](CliOptions& o) {
                   o.data_dir = "/tmp/d";
                   o.c2s_port = 0;
                   o.c2s_tls_port = 15223;
                   o.metrics_port = 65535;
                   o.shards = 2;
                   o.log_level = LogLevel::warn;
               }},
        CliRow{"switches", {"--allow-plaintext", "--check-config", "--help", "--version"},
               [](CliOptions& o) {
                   o.allow_plaintext = true;
                   o.check_config = true;
                   o.help = true;
                   o.version = true;
               }},
        CliRow{"short_help", {"-h"}, [](CliOptions& o) { o.help = true; }},
        CliRow{"domains_repeat_normalised", {"--domain", "A.example", "--domain=b.example", "--domain", "a.example"},
               [](CliOptions& o) { o.domains = {"a.example", "b.example"}; }},
        CliRow{"last_value_wins", {"--c2s-port", "1", "--c2s-port", "2"}, [](CliOptions& o) { o.c2s_port = 2; }},
        CliRow{"value_with_equals", {"--data-dir=/tmp/a=b"}, [](CliOptions& o) { o.data_dir = "/tmp/a=b"; }}),
    [](const auto& p) { return std::string(p.param.name); });

struct CliError {
    const char* name;
    std::vector<std::string> args;
    const char* what;  // exact
};

// gtest prints the row by its name.
std::ostream& operator<<(std::ostream& os, const CliError& r) { return os << r.name; }

class CommandLineErrors : public ::testing::TestWithParam<CliError> {};

TEST_P(CommandLineErrors, AreOneClearLine) {
    const CliError& row = GetParam();
    std::vector<std::string> s{"starlingd"};
    s.insert(s.end(), row.args.begin(), row.args.end());
    std::vector<char*> p;
    for (auto& a : s) p.push_back(a.data());
    p.push_back(nullptr);
    ConfigError e = error_of([&] { (void)parse_command_line(static_cast<int>(s.size()), p.data()); });
    EXPECT_STREQ(e.what(), row.what);
    EXPECT_TRUE(e.file().empty());
}

INSTANTIATE_TEST_SUITE_P(
    Config, CommandLineErrors,
    ::testing::Values(
        CliError{"unknown_flag", {"--c2s-prot", "1"}, "--c2s-prot: unknown option (see --help)"},
        CliError{"unknown_flag_equals", {"--nope=1"}, "--nope: unknown option (see --help)"},
        CliError{"missing_value_at_end", {"--c2s-port"}, "--c2s-port: needs a value (--c2s-port N)"},
        CliError{"missing_value_before_flag", {"--config", "--check-config"},
                 "--config: needs a value (--config FILE)"},
        CliError{"not_a_number", {"--c2s-port", "abc"}, "--c2s-port: must be an integer between 0 and 65535 (got \"abc\")"},
        CliError{"out_of_range", {"--c2s-port=70000"}, "--c2s-port: must be an integer between 0 and 65535 (got \"70000\")"},
        CliError{"negative", {"--shards", "-1"}, "--shards: must be an integer between 0 and 1024 (got \"-1\")"},
        CliError{"trailing_junk", {"--metrics-port", "80x"},
                 "--metrics-port: must be an integer between 0 and 65535 (got \"80x\")"},
        CliError{"empty_number", {"--shards="}, "--shards: must be an integer between 0 and 1024 (got \"\")"},
        CliError{"bad_level", {"--log-level=loud"},
                 "--log-level: must be one of trace, debug, info, warn, error (got \"loud\")"},
        CliError{"bad_domain", {"--domain", "user@example.com"},
                 "--domain: must be a domain, not an address with '@' (got \"user@example.com\")"},
        CliError{"switch_with_value", {"--allow-plaintext=yes"}, "--allow-plaintext: takes no value"},
        CliError{"empty_config", {"--config="}, "--config: must not be empty"},
        CliError{"positional", {"start"}, "unexpected argument 'start' (see --help)"},
        CliError{"single_dash", {"-x"}, "-x: unknown option (see --help)"}),
    [](const auto& p) { return std::string(p.param.name); });

TEST(Usage, DocumentsEveryFlag) {
    const std::string u = usage();
    for (const char* flag : {"--config FILE", "--data-dir DIR", "--domain NAME", "--c2s-port N", "--c2s-tls-port N",
                             "--metrics-port N", "--shards N", "--log-level LEVEL", "--allow-plaintext",
                             "--check-config", "--help", "--version"}) {
        EXPECT_NE(u.find(flag), std::string::npos) << flag;
    }
}

// --- precedence: defaults < file < flags ---

TEST(ApplyOverrides, FlagsWinOverTheFileAndLeaveTheRest) {
    BrokerConfig c = parse_config(
        "domains = [\"file.example\"]\n[general]\nshards = 3\nlog_level = \"debug\"\n"
        "[c2s]\nport = 6000\ntls_port = 6001\nmax_depth = 20\n[metrics]\nport = 6002\n",
        "f.toml");
    Argv a{"--domain", "cli.example", "--c2s-port=7000", "--shards", "1", "--allow-plaintext"};
    apply_overrides(c, parse_command_line(a.argc(), a.argv()));
    EXPECT_EQ(c.domains, std::vector<std::string>{"cli.example"});
    EXPECT_EQ(c.c2s.port, 7000);
    EXPECT_EQ(c.general.shards, 1u);
    EXPECT_TRUE(c.c2s.allow_plaintext);
    // From the file, untouched by flags.
    EXPECT_EQ(c.c2s.tls_port, 6001);
    EXPECT_EQ(c.metrics.port, 6002);
    EXPECT_EQ(c.c2s.max_depth, 20u);
    EXPECT_EQ(c.general.log_level, LogLevel::debug);
    EXPECT_TRUE(c.c2s.require_tls);
}

TEST(ApplyOverrides, NoFlagsChangeNothing) {
    BrokerConfig c = parse_config("[c2s]\nallow_plaintext = true\n", "f.toml");
    BrokerConfig before = c;
    apply_overrides(c, CliOptions{});
    EXPECT_EQ(c, before);  // no --allow-plaintext does not turn it off
}

TEST(Load, FileThenFlagsThenDerivedPaths) {
    TempDir dir;
    fs::path file = dir.write("s.toml", "domains = [\"file.example\"]\n[c2s]\nport = 6000\ntls_port = 6001\n"
                                        "[storage]\npath = \"rocks\"\n");
    const std::string data = (dir.path() / "data").string();
    Argv a{"--config", file.string(), "--data-dir=" + data, "--c2s-tls-port", "0", "--check-config"};
    CliOptions cli;
    BrokerConfig c = load(a.argc(), a.argv(), &cli);
    EXPECT_TRUE(cli.check_config);
    EXPECT_EQ(cli.config, file);
    EXPECT_EQ(c.domains, std::vector<std::string>{"file.example"});
    EXPECT_EQ(c.c2s.port, 6000);
    EXPECT_EQ(c.c2s.tls_port, 0);
    EXPECT_EQ(c.general.data_dir, fs::path(data));
    EXPECT_EQ(c.storage.path, fs::path(data) / "rocks");
    EXPECT_EQ(c.admin.socket, fs::path(data) / "admin.sock");
}

TEST(Load, WithoutAFileUsesTheDefaults) {
    Argv a{"--data-dir", "/srv/x"};
    BrokerConfig c = load(a.argc(), a.argv());
    BrokerConfig expected;
    expected.general.data_dir = "/srv/x";
    resolve_paths(expected);
    EXPECT_EQ(c, expected);
}

TEST(Load, ValidatesAfterOverrides) {
    TempDir dir;
    fs::path file = dir.write("s.toml", "[c2s]\nport = 6000\n");
    Argv a{"--config", file.string(), "--metrics-port", "6000"};
    ConfigError e = error_of([&] { (void)load(a.argc(), a.argv()); });
    EXPECT_STREQ(e.what(), "key 'metrics.port': same port as c2s.port (6000)");
}

TEST(Load, ReportsTheFileOfABadValue) {
    TempDir dir;
    fs::path file = dir.write("s.toml", "\n[c2s]\nmax_depth = 1\n");
    Argv a{"--config=" + file.string()};
    ConfigError e = error_of([&] { (void)load(a.argc(), a.argv()); });
    EXPECT_EQ(e.file(), file.string());
    EXPECT_EQ(e.line(), 3u);
    EXPECT_EQ(e.key(), "c2s.max_depth");
}

TEST(Load, HelpAndVersionDoNotReadTheFile) {
    Argv h{"--config", "/nonexistent/starlingd.toml", "--help"};
    CliOptions cli;
    EXPECT_NO_THROW((void)load(h.argc(), h.argv(), &cli));
    EXPECT_TRUE(cli.help);
    Argv v{"--version", "--config", "/nonexistent/starlingd.toml"};
    EXPECT_NO_THROW((void)load(v.argc(), v.argv()));
    Argv bad{"--config", "/nonexistent/starlingd.toml"};
    EXPECT_EQ(error_of([&] { (void)load(bad.argc(), bad.argv()); }).file(), "/nonexistent/starlingd.toml");
}

// --- enums ---

TEST(LogLevel, RoundTripsThroughText) {
    for (auto l : {LogLevel::trace, LogLevel::debug, LogLevel::info, LogLevel::warn, LogLevel::error}) {
        EXPECT_EQ(parse_log_level(to_string(l)), l);
    }
    EXPECT_EQ(parse_log_level("INFO"), std::nullopt);
}
