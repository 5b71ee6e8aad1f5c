// starling-agent's configuration: one TOML file (toml++, like starlingd). edge-agent/README.md
// documents every key with its default and bounds; deploy/starling-agent.toml is an example.
// Parsing is start-up code: every problem throws ConfigError "file:line:col: key 'x.y': why".
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "edge-agent/src/disk_queue.hpp"
#include "edge-agent/src/log.hpp"

namespace starling::agent {

class ConfigError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// A sysfs-style file holding one number (hwmon temp*_input, thermal_zone*/temp, IIO
// in_*_raw): value = raw * scale + offset.
struct FileSource {
    std::string name;  // reading name, [A-Za-z0-9_.-]{1,64}
    std::string path;
    double scale = 1.0;
    double offset = 0.0;
    std::string unit;  // free text, e.g. "Cel" (UCUM)
};

// An allow-listed program (absolute path, fixed argv, no shell) run once per interval; each
// output line "name value [unit]" is a reading (name prefixed with `name.`).
struct ProgramSource {
    std::string name;
    std::vector<std::string> argv;  // argv[0]: absolute path
    std::uint32_t timeout_ms = 2000;
    std::uint32_t max_output = 4096;
};

// One typed argument of an ad-hoc command (a data-form field).
struct CommandArg {
    std::string name;
    enum class Type : std::uint8_t { integer, boolean, string } type = Type::string;
    std::int64_t min = 0;          // integer
    std::int64_t max = 0;          // integer
    std::string pattern_chars;     // string: allowed characters (empty: [A-Za-z0-9_.-])
    std::uint32_t max_len = 64;    // string
};

// An XEP-0050 command built from configuration.
struct CommandDef {
    std::string name;   // the command node
    std::string title;
    enum class Kind : std::uint8_t { shim, file, program } kind = Kind::shim;
    std::vector<CommandArg> args;
    std::string path;               // file: the file written (the one argument's value)
    std::vector<std::string> argv;  // program: fixed argv; "{arg}" elements are replaced
    std::uint32_t timeout_ms = 5000;
};

struct AgentConfig {
    std::string source_file;  // for messages
    // [agent]
    std::string device = "device";
    LogLevel log_level = LogLevel::info;
    std::string status_socket = "/run/starling-agent/status.sock";  // empty: none
    // [xmpp]
    std::string jid;  // required: localpart@domain
    std::string password;
    std::string password_file;
    std::string host;  // default: the JID's domain
    std::uint16_t port = 5222;
    std::string resource = "agent";
    std::vector<std::string> operators;  // bare JIDs allowed to run commands
    // [tls]
    std::string ca_file = "/etc/ssl/certs/ca-certificates.crt";
    std::string pin_sha256;  // hex SHA-256 of the server certificate (DER); empty: none
    // [link] pin_sha256: SHA-256 of the server's SubjectPublicKeyInfo (base64 in the file, like
    // HPKP's pin-sha256 and curl --pinnedpubkey sha256//...); replaces the CA and name checks.
    std::optional<std::array<std::uint8_t, 32>> pin_spki_sha256;
    bool verify_hostname = true;
    bool insecure_skip_verify = false;  // labs only: no certificate check at all
    // [link]
    std::chrono::milliseconds connect_timeout{10000};
    std::chrono::milliseconds ping_interval{60000};
    std::chrono::milliseconds ping_timeout{20000};
    std::chrono::milliseconds backoff_initial{500};
    std::chrono::milliseconds backoff_max{60000};
    bool stream_management = true;
    std::uint32_t sm_max_unacked = 256;  // stanzas kept for resend
    bool send_inactive = true;
    // Client certificate and its private key (PEM files), for SASL EXTERNAL (XEP-0178) when
    // the broker offers it. Both or neither. The key must not be accessible by group or others.
    std::string client_cert;
    std::string client_key;
    // [pubsub]
    std::string service;  // default "pubsub.<domain>"
    std::string node = "starling/devices/{device}";
    bool create_node = true;
    std::uint32_t node_max_items = 1000;  // pubsub#max_items at creation; 0: server default
    std::uint32_t publish_window = 8;
    // A publish (or create) IQ unanswered this long: the link is dropped and resumed or
    // reconnected, and the batch is sent again (it stays in the queue).
    std::chrono::milliseconds publish_timeout{30000};
    // [queue]
    QueueOptions queue;
    // [telemetry]
    std::chrono::milliseconds interval{1000};
    std::uint32_t max_readings_per_batch = 512;
    std::vector<FileSource> files;
    std::vector<ProgramSource> programs;
    std::string shim_socket;  // firmware shim over a UNIX socket; empty: none
    std::string shim_uart;    // firmware shim over a serial device (8N1, raw); empty: none
    std::uint32_t shim_baud = 115200;
    bool has_shim() const noexcept { return !shim_socket.empty() || !shim_uart.empty(); }
    // [[command]]
    std::vector<CommandDef> commands;

    std::string domain() const;
    std::string node_name() const;  // `node` with {device} replaced
    std::string pubsub_service() const;
};

AgentConfig parse_config(std::string_view toml_text, std::string_view source_name);
// Reads password_file too, and refuses a client_key that group or others may access.
AgentConfig load_config(const std::filesystem::path& path);

}  // namespace starling::agent
