// starlingd's configuration: a TOML file (deploy/starlingd.toml documents every option) and the
// command line, which overrides the file. Precedence: built-in defaults < file < flags.
//
// This header is the single source of the defaults (the member initialisers below) and of the
// bounds (namespace `bounds`); the example file, usage() and the tests follow it.
// Start-up only: everything here may throw ConfigError (CONVENTIONS §3); nothing here runs once
// the shards are up. The resulting BrokerConfig is immutable and read by every shard.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "broker/src/session/options.hpp"

namespace starling::config {

// Inclusive bounds of a numeric option.
struct Range {
    std::uint64_t min;
    std::uint64_t max;
};

namespace bounds {
inline constexpr Range block_cache_mb{1, 1u << 20};
inline constexpr Range write_buffer_mb{1, 1u << 16};
inline constexpr Range shards{0, 1024};  // 0: one shard per core
inline constexpr Range malloc_keep_free_bytes{0, 1ull << 30};  // 0: the C library's own policy
inline constexpr Range port{0, 65535};   // 0: that listener is disabled
inline constexpr Range pre_auth_timeout_ms{1'000, 3'600'000};
inline constexpr Range idle_timeout_ms{0, 86'400'000};  // 0: no idle timeout
inline constexpr Range auth_failure_delay_ms{0, 60'000};
inline constexpr Range max_auth_failures{1, 10};
inline constexpr Range stanzas_per_second{1, 1'000'000};
inline constexpr Range max_output_bytes{4096, 1u << 30};
inline constexpr Range max_resources_per_user{1, 1000};
inline constexpr Range max_connections_per_ip{1, 1'000'000};
inline constexpr Range connection_rate_per_ip{0, 1'000'000};  // 0: no limit
inline constexpr Range max_connections{0, 100'000'000};       // 0: the descriptor limit
// RFC 6120 §13.12: a server must accept client stanzas of at least 10000 bytes.
inline constexpr Range max_stanza_bytes{10'000, 16u << 20};
inline constexpr Range max_depth{4, 1024};
// A stream header alone carries about 7 attributes (RFC 6120 §4.7).
inline constexpr Range max_attributes{8, 4096};
inline constexpr Range scram_iterations{4096, 1'000'000};
inline constexpr Range resume_timeout_s{1, 3'600};  // XEP-0198 §5: a lost session waits this long
inline constexpr Range max_unacked_stanzas{10, 100'000};
inline constexpr Range compression_window_bits{9, 15};  // zlib's LZ77 window, 2^N bytes
inline constexpr Range compression_mem_level{1, 9};
// A ticket is accepted for up to two periods; RFC 8446 §4.6.1 caps a ticket's life at 7 days.
inline constexpr Range ticket_key_rotation_s{60, 86'400};
inline constexpr Range stall_limit_s{1, 3'600};
inline constexpr Range fast_max_tokens_per_account{1, 64};
inline constexpr Range fast_token_lifetime_s{1, 365 * 86'400};  // a shard's reactor silent longer than this is unhealthy
}  // namespace bounds

enum class LogLevel : std::uint8_t { trace, debug, info, warn, error };
// "trace", "debug", ...; parse_log_level returns nullopt for anything else.
std::string_view to_string(LogLevel l) noexcept;
std::optional<LogLevel> parse_log_level(std::string_view s) noexcept;

struct GeneralConfig {
    LogLevel log_level = LogLevel::info;
    std::filesystem::path data_dir = "./data";
    std::uint32_t shards = 0;  // 0: one per core
    // Freed heap memory each allocator arena keeps for reuse instead of giving it back to the
    // kernel (glibc M_TRIM_THRESHOLD). A fan-out fills every subscriber's output buffer in one
    // turn and frees them once written; kept, the next turn reuses the pages instead of
    // faulting them in again (bench/RESULTS.md, PubSub). 0: glibc's default (128 KiB, adaptive).
    std::uint64_t malloc_keep_free_bytes = 64ull << 20;
    // Secret that derives decoy SCRAM salts for unknown users (RFC 5802 §9). Unset: the broker
    // keeps one in <data_dir>. Set: the file must exist and be readable.
    std::optional<std::filesystem::path> server_secret_file;

    friend bool operator==(const GeneralConfig&, const GeneralConfig&) = default;
};

struct C2sConfig {
    std::string bind_address = "0.0.0.0";  // an IPv4 or IPv6 literal
    std::uint16_t port = 5222;             // STARTTLS (RFC 6120 §5); 0 disables
    std::uint16_t tls_port = 5223;         // direct TLS (XEP-0368); 0 disables
    bool require_tls = true;
    // Authenticate without TLS (benchmarks on loopback). Wins over require_tls; logs a warning.
    bool allow_plaintext = false;
    std::uint32_t pre_auth_timeout_ms = 30'000;
    std::uint32_t idle_timeout_ms = 600'000;  // 0: none
    std::uint32_t auth_failure_delay_ms = 1'000;
    std::uint32_t max_auth_failures = 3;  // RFC 6120 §6.4.5 suggests 2 to 5 retries
    std::uint32_t stanzas_per_second = 200;  // per session, with a burst of the same
    std::uint64_t max_output_bytes = 2u << 20;  // a reader slower than this is disconnected (2 MiB: a CSI flush of a fleet operator's held presence fits)
    std::uint32_t max_resources_per_user = 16;
    std::uint32_t max_connections_per_ip = 10'000;  // per shard; devices behind one NAT share an address
    std::uint32_t connection_rate_per_ip = 200;     // new connections per second per address per shard
    std::uint32_t max_connections = 0;              // all addresses, whole broker; 0: descriptor limit
    std::uint64_t max_stanza_bytes = 262'144;
    std::uint32_t max_depth = 32;
    std::uint32_t max_attributes = 64;
    bool stream_management = true;          // XEP-0198 acks and resumption
    std::uint32_t resume_timeout_s = 300;   // a lost session waits this long to be resumed
    std::uint32_t max_unacked_stanzas = 1000;  // unacknowledged stanzas per session; one more ends it
    bool compression = false;                 // XEP-0138 zlib; see the security note in the README
    std::uint32_t compression_window_bits = 11;
    std::uint32_t compression_mem_level = 4;

    friend bool operator==(const C2sConfig&, const C2sConfig&) = default;
};

// One certificate and its key (PEM). `domains` are the names it serves by SNI ("*.example.com"
// allowed); empty means the default certificate, used when no other entry matches.
struct CertificateConfig {
    std::vector<std::string> domains;
    std::filesystem::path cert_file;
    std::filesystem::path key_file;

    friend bool operator==(const CertificateConfig&, const CertificateConfig&) = default;
};

struct TlsConfig {
    // Empty: a self-signed certificate for the domains, made in self_signed_dir() at first start.
    std::vector<CertificateConfig> certificates;
    // Stateless session tickets (TLS 1.3 and 1.2): a reconnecting device skips the full
    // handshake. Keys are random, in memory only, shared by every shard, and rotated every
    // ticket_key_rotation_s; a ticket is accepted for at most two periods.
    bool session_tickets = true;
    std::uint32_t ticket_key_rotation_s = 3'600;
    // Device certificates (SASL EXTERNAL, XEP-0178): PEM CA bundle that client certificates
    // must chain to. Empty: no client certificate is asked for and EXTERNAL is never offered.
    std::filesystem::path client_ca_file;
    // PEM CRL(s) of that CA: a listed certificate fails the handshake. Empty: no revocation check.
    std::filesystem::path client_crl_file;
    // A certificate without an id-on-xmppAddr SAN logs in as <subject CN>@<stream domain>.
    bool client_cert_jid_from_cn = false;
    // SCRAM-SHA-*-PLUS (channel binding, RFC 5802 §6) and XEP-0440's feature, under TLS.
    bool channel_binding = true;
    // RFC 5802 §6 downgrade detection: refuse SCRAM with the "y" flag while -PLUS is offered.
    // Off by default: clients that know only tls-unique (slixmpp 1.8) send "y" with every
    // non-PLUS mechanism, so it would lock them out (c2s/README.md).
    bool channel_binding_downgrade_check = false;

    friend bool operator==(const TlsConfig&, const TlsConfig&) = default;
};

struct MetricsConfig {
    std::string bind_address = "127.0.0.1";  // an IPv4 or IPv6 literal
    std::uint16_t port = 9522;               // Prometheus text format at /metrics; 0 disables
    // /health, /ready and the systemd watchdog fail when a shard's reactor has not turned for
    // this long (a loop blocked by a bug or a stuck system call).
    std::uint32_t stall_limit_s = 10;

    friend bool operator==(const MetricsConfig&, const MetricsConfig&) = default;
};

// XEP-0388 SASL2 + XEP-0386 Bind2, and XEP-0484 FAST tokens (broker/src/c2s/README.md).
struct FastConfig {
    bool sasl2 = true;  // offer SASL2 and Bind2 beside RFC 6120 SASL
    bool enabled = true;  // offer FAST tokens (needs sasl2)
    std::uint32_t max_tokens_per_account = 8;  // the oldest goes first
    std::uint32_t token_lifetime_s = 14 * 86'400;  // a token older than this is refused

    friend bool operator==(const FastConfig&, const FastConfig&) = default;
};

struct AccountsConfig {
    std::uint32_t scram_iterations = 4096;  // for new and changed passwords

    friend bool operator==(const AccountsConfig&, const AccountsConfig&) = default;
};

struct AdminConfig {
    std::filesystem::path socket;  // empty: <data_dir>/admin.sock; relative: under data_dir

    friend bool operator==(const AdminConfig&, const AdminConfig&) = default;
};

struct StorageConfig {
    std::filesystem::path path;  // RocksDB folder. Empty: <data_dir>/db; relative: under data_dir
    std::uint32_t block_cache_mb = 32;   // RocksDB's block cache (reads of recent data)
    std::uint32_t write_buffer_mb = 64;  // memtables, all column families together

    friend bool operator==(const StorageConfig&, const StorageConfig&) = default;
};

// Every optional module on, every module option at its declared default.
session::ModuleSettings default_modules();

// The whole configuration. A default-constructed BrokerConfig is the configuration of a
// `starlingd` started with no file and no flags (before resolve_paths()).
struct BrokerConfig {
    GeneralConfig general;
    std::vector<std::string> domains{"localhost"};  // normalised domainparts (RFC 7622 §3.2)
    C2sConfig c2s;
    TlsConfig tls;
    MetricsConfig metrics;
    AccountsConfig accounts;
    FastConfig fast;
    // [modules] switches and each module's own table ([offline], [mam]...): what the modules
    // declare (modules/module_list.hpp), defaults filled in.
    session::ModuleSettings modules = default_modules();
    AdminConfig admin;
    StorageConfig storage;

    friend bool operator==(const BrokerConfig&, const BrokerConfig&) = default;
};

// A configuration that cannot be used. Thrown at start-up only; main() prints what() and exits
// non-zero. what() reads, depending on what is known:
//   starlingd.toml:12:8: key 'c2s.port': must be between 0 and 65535 (got 70000)
//   starlingd.toml: cannot read: No such file or directory
//   key 'c2s.tls_port': same port as c2s.port (5222)       (validate(): no position)
//   --c2s-port: must be an integer between 0 and 65535 (got abc)
class ConfigError : public std::runtime_error {
public:
    // A problem in a file; line and column are 1-based, 0 when unknown.
    ConfigError(std::string file, std::uint32_t line, std::uint32_t column, std::string key,
                std::string message);
    // A problem with a command-line flag ("--c2s-port") or with a setting whatever its origin
    // ("c2s.port"); a key starting with '-' is a flag.
    ConfigError(std::string key, std::string message);

    const std::string& file() const noexcept { return _file; }
    std::uint32_t line() const noexcept { return _line; }
    std::uint32_t column() const noexcept { return _column; }
    // "c2s.port", "--c2s-port", or empty when the error is not about one key (syntax, I/O).
    const std::string& key() const noexcept { return _key; }
    // The reason alone, without file, position or key.
    const std::string& message() const noexcept { return _message; }

private:
    std::string _file;
    std::uint32_t _line = 0;
    std::uint32_t _column = 0;
    std::string _key;
    std::string _message;
};

// Parses TOML text over the defaults. Unknown tables and keys, wrong types and out-of-range
// values are ConfigErrors positioned in `source_name`. Checks each value on its own; validate()
// does the cross-field checks.
BrokerConfig parse_config(std::string_view toml_text, std::string_view source_name);
BrokerConfig load_config_file(const std::filesystem::path& file);

// Cross-field checks and bounds (for values set by flags or code): at least one domain, no
// duplicate domain, every certificate has a readable cert_file and key_file, no two listeners
// on one port, max_output_bytes >= max_stanza_bytes, server_secret_file readable if set.
void validate(const BrokerConfig& config);

// Things that are allowed but worth a loud log line (allow_plaintext, no client listener, a
// certificate for a domain not served...). One sentence each.
std::vector<std::string> warnings(const BrokerConfig& config);

// Derived paths: storage.path and admin.socket default to data_dir/"db" and
// data_dir/"admin.sock"; relative ones are taken under data_dir. Idempotent.
void resolve_paths(BrokerConfig& config);
// Where the self-signed certificate lives when tls.certificates is empty.
std::filesystem::path self_signed_dir(const BrokerConfig& config);

// Every option key the file accepts ("general.log_level", "domains", "tls.certificates", ...).
std::vector<std::string> option_keys();

// The [modules] table and every module's own table, each option at its default with its help
// and bounds as comments: generated from the modules' declarations. deploy/starlingd.toml holds
// exactly this text (a unit test compares them); `starlingd --print-module-config` prints it.
std::string module_config_text();

// The command line. Each set override replaces the file's value.
struct CliOptions {
    std::optional<std::filesystem::path> config;
    bool check_config = false;
    bool help = false;
    bool version = false;
    bool print_module_config = false;

    std::optional<std::filesystem::path> data_dir;
    std::vector<std::string> domains;  // normalised; non-empty replaces the file's list
    std::optional<std::uint16_t> c2s_port;
    std::optional<std::uint16_t> c2s_tls_port;
    std::optional<std::uint16_t> metrics_port;
    std::optional<std::uint32_t> shards;
    std::optional<LogLevel> log_level;
    bool allow_plaintext = false;  // only ever turns it on

    friend bool operator==(const CliOptions&, const CliOptions&) = default;
};

// `--flag value` and `--flag=value`. Throws ConfigError (key = the flag) on an unknown flag, a
// missing or bad value, a value given to a switch, or a positional argument.
CliOptions parse_command_line(int argc, char** argv);
void apply_overrides(BrokerConfig& config, const CliOptions& cli);
// Help text: every flag, one line each.
std::string usage();

// All of start-up: parse the command line (into *out if given), load --config if given, apply
// the flags, validate, resolve_paths. With --help or --version the file is not read and the
// defaults are returned.
BrokerConfig load(int argc, char** argv, CliOptions* out = nullptr);

}  // namespace starling::config
