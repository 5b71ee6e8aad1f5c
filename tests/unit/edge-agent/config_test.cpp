#include "edge-agent/src/config.hpp"

#include <gtest/gtest.h>

#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

using starling::agent::AgentConfig;
using starling::agent::ConfigError;
using starling::agent::load_config;
using starling::agent::parse_config;

namespace {

const std::string k_min = "[xmpp]\njid = 'dev1@example.com'\npassword = 'pw'\n";

std::string error_of(const std::string& text) {
    try {
        parse_config(text, "agent.toml");
    } catch (const ConfigError& e) {
        return e.what();
    }
    return "";
}

}  // namespace

TEST(AgentConfig, MinimalFileGetsSafeDefaults) {
    const AgentConfig c = parse_config(k_min, "agent.toml");
    EXPECT_EQ(c.domain(), "example.com");
    EXPECT_EQ(c.pubsub_service(), "pubsub.example.com");
    EXPECT_EQ(c.node_name(), "starling/devices/device");
    EXPECT_EQ(c.port, 5222);
    EXPECT_FALSE(c.insecure_skip_verify);  // verification on unless asked
    EXPECT_TRUE(c.verify_hostname);
    EXPECT_EQ(c.ca_file, "/etc/ssl/certs/ca-certificates.crt");
    EXPECT_TRUE(c.stream_management);
    EXPECT_EQ(c.queue.fsync, starling::agent::FsyncPolicy::always);
    EXPECT_TRUE(c.operators.empty());  // nobody may run commands unless listed
}

TEST(AgentConfig, ReadsEveryTable) {
    const AgentConfig c = parse_config(k_min + R"(
[agent]
device = "pump-7"
log_level = "debug"
status_socket = "/tmp/s.sock"
[tls]
pin_sha256 = "AA:bb:cc:dd:ee:ff:00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff:00:11:22:33:44:55:66:77:88:99"
[link]
ping_interval_ms = 5000
backoff_initial_ms = 100
backoff_max_ms = 2000
[pubsub]
node = "site-a/{device}/telemetry"
publish_window = 4
[queue]
dir = "/tmp/q"
max_bytes = 1048576
segment_bytes = 65536
fsync = "never"
[telemetry]
interval_ms = 250
[[source.file]]
name = "cpu.temp"
path = "/sys/class/thermal/thermal_zone0/temp"
scale = 0.001
unit = "Cel"
[[source.program]]
name = "disk"
argv = ["/usr/bin/df-probe", "--json"]
[[command]]
name = "set-led"
kind = "shim"
args = [{ name = "on", type = "boolean" }]
[[command]]
name = "relay"
kind = "file"
path = "/sys/class/gpio/gpio17/value"
args = [{ name = "value", type = "integer", min = 0, max = 1 }]
)",
                                     "agent.toml");
    EXPECT_EQ(c.device, "pump-7");
    EXPECT_EQ(c.node_name(), "site-a/pump-7/telemetry");
    EXPECT_EQ(c.pin_sha256, "aabbccddeeff00112233445566778899aabbccddeeff00112233445566778899");
    EXPECT_EQ(c.ping_interval.count(), 5000);
    EXPECT_EQ(c.queue.max_bytes, 1048576u);
    EXPECT_EQ(c.queue.fsync, starling::agent::FsyncPolicy::never);
    ASSERT_EQ(c.files.size(), 1u);
    EXPECT_DOUBLE_EQ(c.files[0].scale, 0.001);
    ASSERT_EQ(c.programs.size(), 1u);
    EXPECT_EQ(c.programs[0].argv.size(), 2u);
    ASSERT_EQ(c.commands.size(), 2u);
    EXPECT_EQ(c.commands[1].args[0].max, 1);
}

struct BadCase {
    const char* name;
    std::string text;
    const char* expected;  // a part of the message
};

TEST(AgentConfig, ReadsAPublicKeyPinAndThePublishTimeout) {
    const AgentConfig dflt = parse_config(k_min, "agent.toml");
    EXPECT_FALSE(dflt.pin_spki_sha256.has_value());
    EXPECT_EQ(dflt.publish_timeout, std::chrono::milliseconds(30000));
    // base64 of 32 bytes 0x00..0x1f; curl's "sha256//" prefix is accepted too.
    const std::string pin = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    for (const std::string& spelled : {pin, "sha256//" + pin}) {
        const AgentConfig c =
            parse_config(k_min + "[link]\npin_sha256 = '" + spelled + "'\n[pubsub]\npublish_timeout_ms = 1500\n", "agent.toml");
        ASSERT_TRUE(c.pin_spki_sha256.has_value());
        for (std::size_t i = 0; i < 32; ++i) EXPECT_EQ((*c.pin_spki_sha256)[i], i);
        EXPECT_EQ(c.publish_timeout, std::chrono::milliseconds(1500));
    }
}

TEST(AgentConfig, RejectsBadFilesWithThePlaceAndTheReason) {
    const BadCase cases[] = {
        {"no xmpp table", "[agent]\ndevice='x'\n", "[xmpp]"},
        {"no password", "[xmpp]\njid='a@b'\n", "xmpp.password"},
        {"bare domain jid", "[xmpp]\njid='example.com'\npassword='p'\n", "xmpp.jid"},
        {"unknown key", k_min + "[link]\npingg_interval_ms = 5\n", "agent.toml:5:21: key 'link.pingg_interval_ms': unknown key"},
        {"unknown table", k_min + "[telemetri]\n", "unknown key"},
        {"port past the limit", "[xmpp]\njid='a@b'\npassword='p'\nport = 65536\n", "between 1 and 65535 (got 65536)"},
        {"wrong type", k_min + "[tls]\nverify_hostname = 'yes'\n", "must be a boolean"},
        {"bad pin", k_min + "[tls]\npin_sha256 = 'abc'\n", "64 hex digits"},
        {"pin and insecure", k_min + "[tls]\ninsecure_skip_verify = true\npin_sha256 = '" + std::string(64, 'a') + "'\n",
         "contradict"},
        {"spki pin not base64", k_min + "[link]\npin_sha256 = 'not base64!'\n", "link.pin_sha256"},
        {"spki pin too short", k_min + "[link]\npin_sha256 = 'AAAA'\n", "SHA-256"},
        {"spki pin and certificate pin",
         k_min + "[tls]\npin_sha256 = '" + std::string(64, 'a') + "'\n[link]\npin_sha256 = '" + std::string(43, 'A') + "='\n",
         "cannot go with tls.pin_sha256"},
        {"publish timeout too short", k_min + "[pubsub]\npublish_timeout_ms = 10\n", "pubsub.publish_timeout_ms"},
        {"segment too big", k_min + "[queue]\nmax_bytes = 65536\nsegment_bytes = 65536\n", "half of queue.max_bytes"},
        {"relative program", k_min + "[[source.program]]\nname='p'\nargv=['df']\n", "absolute path"},
        {"file command without path", k_min + "[[command]]\nname='x'\nkind='file'\nargs=[{name='v'}]\n", "absolute path"},
        {"duplicate command", k_min + "[[command]]\nname='x'\n[[command]]\nname='x'\n", "defined twice"},
        {"integer arg without bounds", k_min + "[[command]]\nname='x'\nargs=[{name='v', type='integer'}]\n", "min <= max"},
        {"client cert without key", k_min + "[link]\nclient_cert = '/d.crt'\n",
         "set both link.client_cert and link.client_key"},
        {"client key without cert", k_min + "[link]\nclient_key = '/d.key'\n", "link.client_key"},
        {"bad log level", k_min + "[agent]\nlog_level='loud'\n", "debug, info, warn or error"},
        {"two shim links", k_min + "[telemetry]\nshim_socket='/run/s.sock'\nshim_uart='/dev/ttyS0'\n",
         "shim_socket or shim_uart, not both"},
        {"odd baud rate", k_min + "[telemetry]\nshim_uart='/dev/ttyS0'\nshim_baud=12345\n", "telemetry.shim_baud"},
        {"toml syntax", "[xmpp\n", "agent.toml:1:"},
    };
    for (const auto& c : cases) {
        const std::string e = error_of(c.text);
        EXPECT_NE(e.find(c.expected), std::string::npos) << c.name << ": got '" << e << "'";
    }
}

TEST(AgentConfig, IntervalAtItsLimitsAndOnePast) {
    EXPECT_EQ(parse_config(k_min + "[telemetry]\ninterval_ms = 10\n", "a").interval.count(), 10);
    EXPECT_EQ(parse_config(k_min + "[telemetry]\ninterval_ms = 86400000\n", "a").interval.count(), 86400000);
    EXPECT_NE(error_of(k_min + "[telemetry]\ninterval_ms = 9\n").find("between 10 and 86400000"), std::string::npos);
    EXPECT_NE(error_of(k_min + "[telemetry]\ninterval_ms = 86400001\n").find("between"), std::string::npos);
}

TEST(AgentConfig, OperatorsAreNormalisedBareJids) {
    const AgentConfig c = parse_config(k_min + "operators = ['Alice@Example.com']\n", "a");
    ASSERT_EQ(c.operators.size(), 1u);
    EXPECT_EQ(c.operators[0], "alice@example.com");
    EXPECT_NE(error_of(k_min + "operators = ['@@']\n").find("xmpp.operators"), std::string::npos);
}

TEST(AgentConfig, TheExampleInDeployParses) {
    std::ifstream in(std::string(STARLING_SOURCE_DIR) + "/deploy/starling-agent.toml");
    ASSERT_TRUE(in);
    std::stringstream ss;
    ss << in.rdbuf();
    const AgentConfig c = parse_config(ss.str(), "deploy/starling-agent.toml");
    EXPECT_EQ(c.node_name(), "starling/devices/pi-42");
    EXPECT_EQ(c.commands.size(), 3u);
    EXPECT_EQ(c.files.size(), 1u);
    EXPECT_EQ(c.programs.size(), 1u);
}

TEST(AgentConfig, AClientCertificateStandsInForThePassword) {
    const std::string text = "[xmpp]\njid = 'dev1@example.com'\n[link]\nclient_cert = '/etc/starling-agent/device.crt'\n"
                             "client_key = '/etc/starling-agent/device.key'\n";
    const AgentConfig c = parse_config(text, "agent.toml");
    EXPECT_EQ(c.client_cert, "/etc/starling-agent/device.crt");
    EXPECT_EQ(c.client_key, "/etc/starling-agent/device.key");
    EXPECT_TRUE(c.password.empty());
    EXPECT_TRUE(parse_config(k_min, "a").client_cert.empty());  // default: no certificate
}

TEST(AgentConfig, AClientKeyOthersCanReadIsRefusedLikeSshDoes) {
    const auto dir = std::filesystem::temp_directory_path() / ("agent-key-test-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    const auto key = dir / "device.key";
    const auto conf = dir / "agent.toml";
    { std::ofstream(key) << "not read by the config loader\n"; }
    {
        std::ofstream(conf) << "[xmpp]\njid = 'dev1@example.com'\n[link]\nclient_cert = '/x.crt'\nclient_key = '"
                            << key.string() << "'\n";
    }
    auto error_loading = [&] {
        try {
            load_config(conf);
        } catch (const ConfigError& e) {
            return std::string(e.what());
        }
        return std::string();
    };
    using std::filesystem::perms;
    for (const auto mode : {perms::owner_read | perms::group_read, perms::owner_read | perms::others_read,
                            perms::owner_read | perms::owner_write | perms::group_write}) {
        std::filesystem::permissions(key, mode);
        const std::string e = error_loading();
        EXPECT_NE(e.find("link.client_key"), std::string::npos) << e;
        EXPECT_NE(e.find("too open"), std::string::npos) << e;
        EXPECT_NE(e.find("chmod 600"), std::string::npos) << e;
    }
    std::filesystem::permissions(key, perms::owner_read | perms::owner_write);
    EXPECT_EQ(error_loading(), "");
    std::filesystem::remove(key);
    EXPECT_NE(error_loading().find("No such file"), std::string::npos);
    std::filesystem::remove_all(dir);
}
