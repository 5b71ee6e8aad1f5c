// Configuration: TOML file (toml++), command line, cross-field validation. See config.hpp.
//
// One list, for_each_option(), names every scalar option with its field and bounds; the TOML
// reader, validate(), option_keys() and the unknown-key check all walk it, so adding an option
// is one line there plus its default in config.hpp. `domains` and `tls.certificates` are the
// two structured options and are handled on their own. Module options are not listed here:
// each module declares its own (session/options.hpp) and the reader walks module_catalog().
#include "broker/src/config/config.hpp"

#include "broker/src/modules/module_list.hpp"
#include "xmpp/jid.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <set>
#include <system_error>
#include <tuple>
#include <utility>

#include <toml++/toml.h>

namespace starling::config {

namespace {

// How a text option is checked.
enum class Text : std::uint8_t { any, not_empty, ip };

// Every scalar option: v(table, name, field[, bounds or Text]). The TOML key is table.name and
// the field has the same name.
template <class C, class V>
void for_each_option(C& c, V&& v) {
    v("general", "log_level", c.general.log_level);
    v("general", "data_dir", c.general.data_dir, Text::not_empty);
    v("general", "shards", c.general.shards, bounds::shards);
    v("general", "malloc_keep_free_bytes", c.general.malloc_keep_free_bytes, bounds::malloc_keep_free_bytes);
    v("general", "server_secret_file", c.general.server_secret_file);

    v("c2s", "bind_address", c.c2s.bind_address, Text::ip);
    v("c2s", "port", c.c2s.port, bounds::port);
    v("c2s", "tls_port", c.c2s.tls_port, bounds::port);
    v("c2s", "require_tls", c.c2s.require_tls);
    v("c2s", "allow_plaintext", c.c2s.allow_plaintext);
    v("c2s", "pre_auth_timeout_ms", c.c2s.pre_auth_timeout_ms, bounds::pre_auth_timeout_ms);
    v("c2s", "idle_timeout_ms", c.c2s.idle_timeout_ms, bounds::idle_timeout_ms);
    v("c2s", "auth_failure_delay_ms", c.c2s.auth_failure_delay_ms, bounds::auth_failure_delay_ms);
    v("c2s", "max_auth_failures", c.c2s.max_auth_failures, bounds::max_auth_failures);
    v("c2s", "stanzas_per_second", c.c2s.stanzas_per_second, bounds::stanzas_per_second);
    v("c2s", "max_output_bytes", c.c2s.max_output_bytes, bounds::max_output_bytes);
    v("c2s", "max_resources_per_user", c.c2s.max_resources_per_user, bounds::max_resources_per_user);
    v("c2s", "max_connections_per_ip", c.c2s.max_connections_per_ip, bounds::max_connections_per_ip);
    v("c2s", "connection_rate_per_ip", c.c2s.connection_rate_per_ip, bounds::connection_rate_per_ip);
    v("c2s", "max_connections", c.c2s.max_connections, bounds::max_connections);
    v("c2s", "max_stanza_bytes", c.c2s.max_stanza_bytes, bounds::max_stanza_bytes);
    v("c2s", "max_depth", c.c2s.max_depth, bounds::max_depth);
    v("c2s", "max_attributes", c.c2s.max_attributes, bounds::max_attributes);
    v("c2s", "stream_management", c.c2s.stream_management);
    v("c2s", "resume_timeout_s", c.c2s.resume_timeout_s, bounds::resume_timeout_s);
    v("c2s", "max_unacked_stanzas", c.c2s.max_unacked_stanzas, bounds::max_unacked_stanzas);
    v("c2s", "compression", c.c2s.compression);
    v("c2s", "compression_window_bits", c.c2s.compression_window_bits, bounds::compression_window_bits);
    v("c2s", "compression_mem_level", c.c2s.compression_mem_level, bounds::compression_mem_level);

    v("tls", "session_tickets", c.tls.session_tickets);
    v("tls", "ticket_key_rotation_s", c.tls.ticket_key_rotation_s, bounds::ticket_key_rotation_s);
    v("tls", "client_ca_file", c.tls.client_ca_file, Text::any);
    v("tls", "client_crl_file", c.tls.client_crl_file, Text::any);
    v("tls", "client_cert_jid_from_cn", c.tls.client_cert_jid_from_cn);
    v("tls", "channel_binding", c.tls.channel_binding);
    v("tls", "channel_binding_downgrade_check", c.tls.channel_binding_downgrade_check);

    v("metrics", "bind_address", c.metrics.bind_address, Text::ip);
    v("metrics", "port", c.metrics.port, bounds::port);
    v("metrics", "stall_limit_s", c.metrics.stall_limit_s, bounds::stall_limit_s);

    v("accounts", "scram_iterations", c.accounts.scram_iterations, bounds::scram_iterations);

    v("fast", "sasl2", c.fast.sasl2);
    v("fast", "enabled", c.fast.enabled);
    v("fast", "max_tokens_per_account", c.fast.max_tokens_per_account, bounds::fast_max_tokens_per_account);
    v("fast", "token_lifetime_s", c.fast.token_lifetime_s, bounds::fast_token_lifetime_s);

    v("admin", "socket", c.admin.socket, Text::any);
    v("storage", "path", c.storage.path, Text::any);
    v("storage", "block_cache_mb", c.storage.block_cache_mb, bounds::block_cache_mb);
    v("storage", "write_buffer_mb", c.storage.write_buffer_mb, bounds::write_buffer_mb);
}

constexpr std::string_view k_domains = "domains";
constexpr std::string_view k_modules = "modules";

// Keys that moved into a module's own table when modules began declaring their options: the
// old spelling gets an error that says where it went, not just "unknown key".
struct Moved {
    std::string_view from;
    std::string_view to;
};
constexpr std::array<Moved, 12> k_moved{{
    {"c2s.ping_idle_ms", "ping.idle_ms"},
    {"c2s.ping_timeout_ms", "ping.timeout_ms"},
    {"accounts.registration", "register.open"},
    {"accounts.registrations_per_ip_per_minute", "register.per_ip_per_minute"},
    {"accounts.password_change", "register.password_change"},
    {"accounts.cancel", "register.cancel"},
    {"accounts.vcard_max_bytes", "vcard.max_bytes"},
    {"accounts.offline_max_messages", "offline.max_messages"},
    {"accounts.blocklist_max_items", "blocking.max_items"},
    {"accounts.mam_retention_days", "mam.retention_days"},
    {"accounts.mam_max_messages_per_user", "mam.max_messages_per_user"},
    {"accounts.registration_open", "register.open"},
}};

std::string moved_message(std::string_view key) {
    for (const auto& m : k_moved) {
        if (m.from == key) {
            const auto dot = m.to.find('.');
            return "moved: write it as [" + std::string(m.to.substr(0, dot)) + "] " + std::string(m.to.substr(dot + 1)) +
                   (m.from == "accounts.registration" ? " = true or false" : "");
        }
    }
    return {};
}

std::string module_key(std::string_view module, std::string_view option) {
    std::string k(module);
    k += '.';
    k += option;
    return k;
}
constexpr std::string_view k_tls = "tls";
constexpr std::string_view k_certificates = "certificates";
constexpr std::array<std::string_view, 4> k_certificate_keys{"domain", "domains", "cert_file", "key_file"};
// sun_path is 108 bytes on Linux, one of them the terminating NUL.
constexpr std::size_t k_max_socket_path = 107;

std::string join_key(std::string_view table, std::string_view name) {
    std::string k(table);
    k += '.';
    k += name;
    return k;
}

std::string range_text(Range r) {
    return "between " + std::to_string(r.min) + " and " + std::to_string(r.max);
}

bool is_ip_literal(const std::string& s) {
    in6_addr buf{};
    return inet_pton(AF_INET, s.c_str(), &buf) == 1 || inet_pton(AF_INET6, s.c_str(), &buf) == 1;
}

bool is_readable_file(const std::filesystem::path& p) {
    std::error_code ec;
    if (!std::filesystem::is_regular_file(p, ec)) return false;
    std::ifstream f(p, std::ios::binary);
    return f.good();
}

// A domainpart as the broker stores it, or why not (RFC 7622 §3.2 via xmpp::BareJid).
struct DomainCheck {
    std::string normalised;
    std::string error;  // empty: fine
};

DomainCheck check_domain(std::string_view s, bool allow_wildcard) {
    std::string_view rest = s;
    std::string prefix;
    if (allow_wildcard && rest.starts_with("*.")) {
        prefix = "*.";
        rest.remove_prefix(2);
    }
    auto jid = xmpp::BareJid::parse(rest);
    if (!jid) return {{}, "not a valid domain (" + std::string(xmpp::to_string(jid.error())) + ")"};
    if (jid->has_localpart()) return {{}, "must be a domain, not an address with '@'"};
    return {prefix + std::string(jid->domainpart()), {}};
}

std::string_view type_name(const toml::node& n) {
    switch (n.type()) {
        case toml::node_type::string: return "a string";
        case toml::node_type::integer: return "an integer";
        case toml::node_type::floating_point: return "a floating-point number";
        case toml::node_type::boolean: return "a boolean";
        case toml::node_type::date: return "a date";
        case toml::node_type::time: return "a time";
        case toml::node_type::date_time: return "a date-time";
        case toml::node_type::array: return "an array";
        case toml::node_type::table: return "a table";
        case toml::node_type::none: break;
    }
    return "nothing";
}

// Levenshtein distance, for "did you mean" on unknown keys.
std::size_t edit_distance(std::string_view a, std::string_view b) {
    std::vector<std::size_t> prev(b.size() + 1), cur(b.size() + 1);
    for (std::size_t j = 0; j <= b.size(); ++j) prev[j] = j;
    for (std::size_t i = 1; i <= a.size(); ++i) {
        cur[0] = i;
        for (std::size_t j = 1; j <= b.size(); ++j) {
            std::size_t sub = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
            cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, sub});
        }
        std::swap(prev, cur);
    }
    return prev[b.size()];
}

std::string suggestion(std::string_view wrong, const std::vector<std::string_view>& known) {
    std::string_view best;
    std::size_t best_d = 3;  // suggest only close misspellings
    for (auto k : known) {
        std::size_t d = edit_distance(wrong, k);
        if (d < best_d) {
            best_d = d;
            best = k;
        }
    }
    return best.empty() ? std::string() : " (did you mean '" + std::string(best) + "'?)";
}

// Reads one parsed document into a BrokerConfig; every error is positioned in the file.
class TomlReader {
public:
    TomlReader(const toml::table& root, std::string file, BrokerConfig& out)
        : _root(root), _file(std::move(file)), _out(out) {}

    void read() {
        check_structure();
        for_each_option(_out, *this);
        read_modules();
        read_domains();
        read_certificates();
    }

    // --- scalar options, called by for_each_option ---
    void operator()(std::string_view t, std::string_view n, bool& field) {
        if (const toml::node* node = find(t, n)) {
            if (!node->is_boolean()) type_error(*node, join_key(t, n), "a boolean (true or false)");
            field = node->as_boolean()->get();
        }
    }

    template <std::unsigned_integral T>
    void operator()(std::string_view t, std::string_view n, T& field, Range r) {
        if (const toml::node* node = find(t, n)) {
            if (!node->is_integer()) type_error(*node, join_key(t, n), "an integer");
            std::int64_t v = node->as_integer()->get();
            if (v < 0 || static_cast<std::uint64_t>(v) < r.min || static_cast<std::uint64_t>(v) > r.max) {
                fail(*node, join_key(t, n), "must be " + range_text(r) + " (got " + std::to_string(v) + ")");
            }
            field = static_cast<T>(v);
        }
    }

    void operator()(std::string_view t, std::string_view n, std::string& field, Text kind) {
        if (const toml::node* node = find(t, n)) {
            field = string_value(*node, join_key(t, n));
            check_text(*node, join_key(t, n), field, kind);
        }
    }

    void operator()(std::string_view t, std::string_view n, std::filesystem::path& field, Text kind) {
        if (const toml::node* node = find(t, n)) {
            std::string s = string_value(*node, join_key(t, n));
            check_text(*node, join_key(t, n), s, kind);
            field = s;
        }
    }

    void operator()(std::string_view t, std::string_view n, std::optional<std::filesystem::path>& field) {
        if (const toml::node* node = find(t, n)) {
            std::string s = string_value(*node, join_key(t, n));
            if (s.empty()) field.reset();  // "" reads as unset
            else field = s;
        }
    }

    void operator()(std::string_view t, std::string_view n, LogLevel& field) {
        if (const toml::node* node = find(t, n)) {
            std::string s = string_value(*node, join_key(t, n));
            auto l = parse_log_level(s);
            if (!l) fail(*node, join_key(t, n), "must be one of trace, debug, info, warn, error (got \"" + s + "\")");
            field = *l;
        }
    }


private:
    [[noreturn]] void fail(const toml::source_region& where, std::string key, std::string message) const {
        throw ConfigError(_file, where.begin.line, where.begin.column, std::move(key), std::move(message));
    }
    [[noreturn]] void fail(const toml::node& where, std::string key, std::string message) const {
        fail(where.source(), std::move(key), std::move(message));
    }
    [[noreturn]] void type_error(const toml::node& n, std::string key, std::string_view expected) const {
        fail(n, std::move(key), "must be " + std::string(expected) + " (got " + std::string(type_name(n)) + ")");
    }

    std::string string_value(const toml::node& n, std::string key) const {
        if (!n.is_string()) type_error(n, std::move(key), "a string");
        return n.as_string()->get();
    }

    void check_text(const toml::node& n, std::string key, const std::string& s, Text kind) const {
        if (kind == Text::not_empty && s.empty()) fail(n, std::move(key), "must not be empty");
        if (kind == Text::ip && !is_ip_literal(s)) {
            fail(n, std::move(key), "must be an IPv4 or IPv6 address such as 0.0.0.0 or :: (got \"" + s + "\")");
        }
    }

    const toml::node* find(std::string_view table, std::string_view name) const {
        const toml::node* t = _root.get(table);
        return t == nullptr ? nullptr : t->as_table()->get(name);  // check_structure: a table
    }

    // Unknown tables and keys, and tables that are not tables. The earliest in the file wins.
    void check_structure() const {
        std::vector<std::pair<std::string, std::vector<std::string_view>>> known;  // table -> keys
        std::vector<std::string_view> tables;
        BrokerConfig dummy;
        for_each_option(dummy, [&](std::string_view t, std::string_view n, auto&&...) {
            if (known.empty() || known.back().first != t) {
                known.emplace_back(std::string(t), std::vector<std::string_view>{});
            }
            known.back().second.push_back(n);
        });
        // [tls] has scalar options (listed above) and the certificates array.
        auto tls = std::find_if(known.begin(), known.end(), [](const auto& e) { return e.first == k_tls; });
        if (tls == known.end()) tls = known.emplace(known.end(), std::string(k_tls), std::vector<std::string_view>{});
        tls->second.push_back(k_certificates);
        std::vector<std::string_view> switches;
        for (const auto& m : modules::module_catalog()) {
            if (m.optional) switches.push_back(m.name);
            if (m.options.empty()) continue;
            std::vector<std::string_view> names;
            for (const auto& o : m.options) names.push_back(o.name);
            known.emplace_back(std::string(m.name), std::move(names));
        }
        known.emplace_back(std::string(k_modules), switches);
        for (const auto& [t, keys] : known) tables.push_back(t);
        tables.push_back(k_domains);

        struct Problem {
            toml::source_position pos;
            std::string key;
            std::string message;
        };
        std::optional<Problem> first;
        auto note = [&](const toml::source_region& where, std::string key, std::string message) {
            if (!first || std::tie(where.begin.line, where.begin.column) <
                              std::tie(first->pos.line, first->pos.column)) {
                first = Problem{where.begin, std::move(key), std::move(message)};
            }
        };

        for (auto&& [k, node] : _root) {
            std::string_view name = k.str();
            if (name == k_domains) continue;  // read_domains checks its type
            auto it = std::find_if(known.begin(), known.end(), [&](const auto& e) { return e.first == name; });
            if (it == known.end()) {
                note(k.source(), std::string(name),
                     std::string(node.is_table() ? "unknown table" : "unknown key") + suggestion(name, tables));
                continue;
            }
            if (!node.is_table()) {
                note(node.source(), std::string(name),
                     "must be a table (got " + std::string(type_name(node)) + ")");
                continue;
            }
            for (auto&& [k2, node2] : *node.as_table()) {
                std::string_view name2 = k2.str();
                if (std::find(it->second.begin(), it->second.end(), name2) != it->second.end()) continue;
                if (auto moved = moved_message(join_key(name, name2)); !moved.empty()) {
                    note(k2.source(), join_key(name, name2), std::move(moved));
                    continue;
                }
                note(k2.source(), join_key(name, name2), "unknown key" + suggestion(name2, it->second));
                (void)node2;
            }
        }
        if (first) {
            throw ConfigError(_file, first->pos.line, first->pos.column, std::move(first->key),
                              std::move(first->message));
        }
    }

    // [modules] switches and each module's table, by the modules' declarations.
    void read_modules() {
        for (const auto& m : modules::module_catalog()) {
            if (m.optional) {
                bool on = true;
                (*this)(k_modules, m.name, on);
                _out.modules.enabled[std::string(m.name)] = on;
            }
            for (const auto& o : m.options) {
                const toml::node* node = find(m.name, o.name);
                if (node == nullptr) continue;
                const std::string key = module_key(m.name, o.name);
                switch (o.type) {
                    case session::OptionSpec::Type::boolean:
                        if (!node->is_boolean()) type_error(*node, key, "a boolean (true or false)");
                        _out.modules.values.set(key, node->as_boolean()->get());
                        break;
                    case session::OptionSpec::Type::integer: {
                        if (!node->is_integer()) type_error(*node, key, "an integer");
                        const std::int64_t v = node->as_integer()->get();
                        if (v < 0 || static_cast<std::uint64_t>(v) < o.min || static_cast<std::uint64_t>(v) > o.max) {
                            fail(*node, key, "must be " + range_text({o.min, o.max}) + " (got " + std::to_string(v) + ")");
                        }
                        _out.modules.values.set(key, static_cast<std::uint64_t>(v));
                        break;
                    }
                    case session::OptionSpec::Type::text:
                        _out.modules.values.set(key, string_value(*node, key));
                        break;
                    case session::OptionSpec::Type::jid_list: {
                        const toml::array* arr = node->as_array();
                        if (arr == nullptr) type_error(*node, key, "an array of bare JIDs");
                        std::vector<std::string> jids;
                        for (const auto& e : *arr) {
                            if (!e.is_string()) type_error(e, key, "an array of bare JIDs");
                            const std::string& text = e.as_string()->get();
                            auto jid = xmpp::BareJid::parse(text);
                            if (!jid || !jid->has_localpart()) {
                                fail(e, key, "\"" + text + "\" is not a bare JID (user@domain)" +
                                                 (jid ? std::string() : ": " + std::string(xmpp::to_string(jid.error()))));
                            }
                            jids.push_back(jid->str());
                        }
                        _out.modules.values.set(key, std::move(jids));
                        break;
                    }
                    case session::OptionSpec::Type::choice: {
                        std::string v = string_value(*node, key);
                        if (std::find(o.choices.begin(), o.choices.end(), v) == o.choices.end()) {
                            fail(*node, key, "must be " + session::describe_type(o) + " (got \"" + v + "\")");
                        }
                        _out.modules.values.set(key, std::move(v));
                        break;
                    }
                }
            }
        }
    }

    // Replaces the default list; each entry normalised (RFC 7622 §3.2), no duplicates.
    void read_domains() {
        const toml::node* node = _root.get(k_domains);
        if (node == nullptr) return;
        const std::string key(k_domains);
        const toml::array* arr = node->as_array();
        if (arr == nullptr) type_error(*node, key, "an array of strings");
        if (arr->empty()) fail(*node, key, "must list at least one domain");
        _out.domains = read_domain_list(*arr, key, false);
    }

    std::vector<std::string> read_domain_list(const toml::array& arr, const std::string& key, bool wildcard) const {
        std::vector<std::string> result;
        for (const toml::node& e : arr) {
            std::string s = string_value(e, key);
            DomainCheck d = check_domain(s, wildcard);
            if (!d.error.empty()) fail(e, key, d.error + " (got \"" + s + "\")");
            if (std::find(result.begin(), result.end(), d.normalised) != result.end()) {
                fail(e, key, "lists \"" + d.normalised + "\" twice");
            }
            result.push_back(std::move(d.normalised));
        }
        return result;
    }

    void read_certificates() {
        const toml::node* node = find(k_tls, k_certificates);
        if (node == nullptr) return;
        const std::string key = join_key(k_tls, k_certificates);
        const toml::array* arr = node->as_array();
        if (arr == nullptr) type_error(*node, key, "an array of tables ([[tls.certificates]])");
        std::vector<CertificateConfig> certs;
        std::vector<std::string_view> known(k_certificate_keys.begin(), k_certificate_keys.end());
        for (std::size_t i = 0; i < arr->size(); ++i) {
            const toml::node& e = *arr->get(i);
            const std::string prefix = key + "[" + std::to_string(i) + "]";
            const toml::table* t = e.as_table();
            if (t == nullptr) type_error(e, prefix, "a table");
            for (auto&& [k, v] : *t) {
                if (std::find(known.begin(), known.end(), k.str()) == known.end()) {
                    fail(k.source(), prefix + "." + std::string(k.str()), "unknown key" + suggestion(k.str(), known));
                }
                (void)v;
            }
            CertificateConfig c;
            const toml::node* one = t->get("domain");
            const toml::node* many = t->get("domains");
            if (one != nullptr && many != nullptr) {
                fail(*many, prefix + ".domains", "give either domain or domains, not both");
            }
            if (one != nullptr) {
                std::string s = string_value(*one, prefix + ".domain");
                DomainCheck d = check_domain(s, true);
                if (!d.error.empty()) fail(*one, prefix + ".domain", d.error + " (got \"" + s + "\")");
                c.domains.push_back(std::move(d.normalised));
            }
            if (many != nullptr) {
                const toml::array* da = many->as_array();
                if (da == nullptr) type_error(*many, prefix + ".domains", "an array of strings");
                c.domains = read_domain_list(*da, prefix + ".domains", true);
            }
            for (std::string_view f : {"cert_file", "key_file"}) {
                const toml::node* p = t->get(f);
                std::string fkey = prefix + "." + std::string(f);
                if (p == nullptr) fail(e, fkey, "is missing (a PEM file)");
                std::string s = string_value(*p, fkey);
                if (s.empty()) fail(*p, fkey, "must not be empty");
                (f == "cert_file" ? c.cert_file : c.key_file) = s;
            }
            certs.push_back(std::move(c));
        }
        _out.tls.certificates = std::move(certs);
    }

    const toml::table& _root;
    std::string _file;
    BrokerConfig& _out;
};

// Bounds and text kinds again, for values that came from flags or code.
struct BoundsChecker {
    template <class T>
    void operator()(std::string_view, std::string_view, const T&) const {}

    template <std::unsigned_integral T>
    void operator()(std::string_view t, std::string_view n, const T& v, Range r) const {
        auto u = static_cast<std::uint64_t>(v);
        if (u < r.min || u > r.max) {
            throw ConfigError(join_key(t, n), "must be " + range_text(r) + " (got " + std::to_string(u) + ")");
        }
    }

    void operator()(std::string_view t, std::string_view n, const std::string& s, Text kind) const {
        if (kind == Text::not_empty && s.empty()) throw ConfigError(join_key(t, n), "must not be empty");
        if (kind == Text::ip && !is_ip_literal(s)) {
            throw ConfigError(join_key(t, n), "must be an IPv4 or IPv6 address (got \"" + s + "\")");
        }
    }

    void operator()(std::string_view t, std::string_view n, const std::filesystem::path& p, Text kind) const {
        (*this)(t, n, p.string(), kind);
    }
};

// --- command line ---

struct Flag {
    std::string_view name;      // "--c2s-port"
    std::string_view argument;  // "N", or empty for a switch
    std::string_view help;
};

constexpr std::array<Flag, 13> k_flags{{
    {"--config", "FILE", "read this TOML file (see deploy/starlingd.toml); flags override it"},
    {"--data-dir", "DIR", "folder for the database, TLS certificate and admin socket (default ./data)"},
    {"--domain", "NAME", "serve this domain; repeat for several; replaces the file's list"},
    {"--c2s-port", "N", "client port with STARTTLS (default 5222; 0 disables)"},
    {"--c2s-tls-port", "N", "client port with direct TLS, XEP-0368 (default 5223; 0 disables)"},
    {"--metrics-port", "N", "Prometheus metrics port, on metrics.bind_address (default 9522; 0 disables)"},
    {"--shards", "N", "reactor threads (default 0: one per core; at most 1024)"},
    {"--log-level", "LEVEL", "trace, debug, info, warn or error (default info)"},
    {"--allow-plaintext", "", "let clients authenticate without TLS (loopback benchmarks only)"},
    {"--check-config", "", "validate the configuration, print the problem if any, and exit"},
    {"--print-module-config", "", "print every module's options with their defaults (TOML) and exit"},
    {"--help", "", "print this help and exit (also -h)"},
    {"--version", "", "print the version and exit"},
}};

std::uint64_t parse_uint_flag(std::string_view flag, std::string_view value, Range r) {
    std::uint64_t v = 0;
    auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
    if (value.empty() || ec != std::errc() || end != value.data() + value.size() || v < r.min || v > r.max) {
        throw ConfigError(std::string(flag),
                          "must be an integer " + range_text(r) + " (got \"" + std::string(value) + "\")");
    }
    return v;
}

void apply_flag(CliOptions& o, std::string_view flag, std::string_view value) {
    const std::string f(flag);
    if (flag == "--config") {
        if (value.empty()) throw ConfigError(f, "must not be empty");
        o.config = std::filesystem::path(value);
    } else if (flag == "--data-dir") {
        if (value.empty()) throw ConfigError(f, "must not be empty");
        o.data_dir = std::filesystem::path(value);
    } else if (flag == "--domain") {
        DomainCheck d = check_domain(value, false);
        if (!d.error.empty()) throw ConfigError(f, d.error + " (got \"" + std::string(value) + "\")");
        if (std::find(o.domains.begin(), o.domains.end(), d.normalised) == o.domains.end()) {
            o.domains.push_back(std::move(d.normalised));
        }
    } else if (flag == "--c2s-port") {
        o.c2s_port = static_cast<std::uint16_t>(parse_uint_flag(flag, value, bounds::port));
    } else if (flag == "--c2s-tls-port") {
        o.c2s_tls_port = static_cast<std::uint16_t>(parse_uint_flag(flag, value, bounds::port));
    } else if (flag == "--metrics-port") {
        o.metrics_port = static_cast<std::uint16_t>(parse_uint_flag(flag, value, bounds::port));
    } else if (flag == "--shards") {
        o.shards = static_cast<std::uint32_t>(parse_uint_flag(flag, value, bounds::shards));
    } else if (flag == "--log-level") {
        o.log_level = parse_log_level(value);
        if (!o.log_level) {
            throw ConfigError(f, "must be one of trace, debug, info, warn, error (got \"" + std::string(value) + "\")");
        }
    } else if (flag == "--allow-plaintext") {
        o.allow_plaintext = true;
    } else if (flag == "--check-config") {
        o.check_config = true;
    } else if (flag == "--print-module-config") {
        o.print_module_config = true;
    } else if (flag == "--help") {
        o.help = true;
    } else if (flag == "--version") {
        o.version = true;
    }
}

}  // namespace

// --- enums ---

std::string_view to_string(LogLevel l) noexcept {
    switch (l) {
        case LogLevel::trace: return "trace";
        case LogLevel::debug: return "debug";
        case LogLevel::info: return "info";
        case LogLevel::warn: return "warn";
        case LogLevel::error: return "error";
    }
    return "info";
}

std::optional<LogLevel> parse_log_level(std::string_view s) noexcept {
    for (auto l : {LogLevel::trace, LogLevel::debug, LogLevel::info, LogLevel::warn, LogLevel::error}) {
        if (s == to_string(l)) return l;
    }
    return std::nullopt;
}

// --- ConfigError ---

namespace {
std::string format_error(const std::string& file, std::uint32_t line, std::uint32_t column,
                         const std::string& key, const std::string& message) {
    std::string s;
    if (!file.empty()) {
        s += file;
        if (line != 0) {
            s += ':' + std::to_string(line);
            if (column != 0) s += ':' + std::to_string(column);
        }
        s += ": ";
    }
    if (key.starts_with('-')) s += key + ": ";
    else if (!key.empty()) s += "key '" + key + "': ";
    s += message;
    return s;
}
}  // namespace

ConfigError::ConfigError(std::string file, std::uint32_t line, std::uint32_t column, std::string key,
                         std::string message)
    : std::runtime_error(format_error(file, line, column, key, message)),
      _file(std::move(file)),
      _line(line),
      _column(column),
      _key(std::move(key)),
      _message(std::move(message)) {}

ConfigError::ConfigError(std::string key, std::string message)
    : ConfigError(std::string(), 0, 0, std::move(key), std::move(message)) {}

// --- file ---

BrokerConfig parse_config(std::string_view toml_text, std::string_view source_name) {
    const std::string file(source_name);
    toml::table root;
    try {
        root = toml::parse(toml_text, source_name);
    } catch (const toml::parse_error& e) {
        const auto& b = e.source().begin;
        throw ConfigError(file, b.line, b.column, {}, std::string(e.description()));
    }
    BrokerConfig config;
    TomlReader(root, file, config).read();
    return config;
}

BrokerConfig load_config_file(const std::filesystem::path& file) {
    const std::string name = file.string();
    std::error_code ec;
    if (std::filesystem::is_directory(file, ec)) throw ConfigError(name, 0, 0, {}, "cannot read: is a folder");
    std::FILE* f = std::fopen(name.c_str(), "rb");
    if (f == nullptr) throw ConfigError(name, 0, 0, {}, std::string("cannot read: ") + std::strerror(errno));
    std::string text;
    std::array<char, 8192> buf;
    std::size_t n = 0;
    while ((n = std::fread(buf.data(), 1, buf.size(), f)) > 0) text.append(buf.data(), n);
    const bool failed = std::ferror(f) != 0;
    const int err = errno;
    std::fclose(f);
    if (failed) throw ConfigError(name, 0, 0, {}, std::string("cannot read: ") + std::strerror(err));
    return parse_config(text, name);
}

// --- validation ---

void validate(const BrokerConfig& c) {
    for_each_option(c, BoundsChecker{});
    for (const auto& m : modules::module_catalog()) {
        for (const auto& o : m.options) {
            const std::string key = module_key(m.name, o.name);
            if (!c.modules.values.has(key)) throw ConfigError(key, "has no value");
            const auto& all = c.modules.values.all();
            const auto& v = all.find(key)->second;
            const bool type_ok = (o.type == session::OptionSpec::Type::boolean && std::holds_alternative<bool>(v)) ||
                                 (o.type == session::OptionSpec::Type::integer && std::holds_alternative<std::uint64_t>(v)) ||
                                 ((o.type == session::OptionSpec::Type::text || o.type == session::OptionSpec::Type::choice) &&
                                  std::holds_alternative<std::string>(v)) ||
                                 (o.type == session::OptionSpec::Type::jid_list &&
                                  std::holds_alternative<std::vector<std::string>>(v));
            if (!type_ok) throw ConfigError(key, "must be " + session::describe_type(o));
            if (const auto* i = std::get_if<std::uint64_t>(&v); i != nullptr && (*i < o.min || *i > o.max)) {
                throw ConfigError(key, "must be " + range_text({o.min, o.max}) + " (got " + std::to_string(*i) + ")");
            }
        }
    }

    if (c.domains.empty()) throw ConfigError("domains", "must list at least one domain");
    for (std::size_t i = 0; i < c.domains.size(); ++i) {
        DomainCheck d = check_domain(c.domains[i], false);
        if (!d.error.empty()) throw ConfigError("domains", d.error + " (got \"" + c.domains[i] + "\")");
        if (d.normalised != c.domains[i]) {
            throw ConfigError("domains", "\"" + c.domains[i] + "\" is not normalised (\"" + d.normalised + "\")");
        }
        if (std::find(c.domains.begin(), c.domains.begin() + static_cast<std::ptrdiff_t>(i), c.domains[i]) !=
            c.domains.begin() + static_cast<std::ptrdiff_t>(i)) {
            throw ConfigError("domains", "lists \"" + c.domains[i] + "\" twice");
        }
    }

    std::set<std::string> cert_names;
    bool has_default_cert = false;
    for (std::size_t i = 0; i < c.tls.certificates.size(); ++i) {
        const CertificateConfig& cert = c.tls.certificates[i];
        const std::string prefix = "tls.certificates[" + std::to_string(i) + "]";
        if (cert.cert_file.empty()) throw ConfigError(prefix + ".cert_file", "is missing (a PEM file)");
        if (cert.key_file.empty()) throw ConfigError(prefix + ".key_file", "is missing (a PEM file)");
        if (!is_readable_file(cert.cert_file)) {
            throw ConfigError(prefix + ".cert_file", "cannot read \"" + cert.cert_file.string() + "\"");
        }
        if (!is_readable_file(cert.key_file)) {
            throw ConfigError(prefix + ".key_file", "cannot read \"" + cert.key_file.string() + "\"");
        }
        if (cert.domains.empty()) {
            if (has_default_cert) {
                throw ConfigError(prefix + ".domains", "a second default certificate (one without domains)");
            }
            has_default_cert = true;
        }
        for (const auto& d : cert.domains) {
            DomainCheck dc = check_domain(d, true);
            if (!dc.error.empty()) throw ConfigError(prefix + ".domains", dc.error + " (got \"" + d + "\")");
            if (!cert_names.insert(dc.normalised).second) {
                throw ConfigError(prefix + ".domains", "\"" + d + "\" already has a certificate");
            }
        }
    }

    if (!c.tls.client_ca_file.empty() && !is_readable_file(c.tls.client_ca_file)) {
        throw ConfigError("tls.client_ca_file", "cannot read \"" + c.tls.client_ca_file.string() + "\"");
    }
    if (!c.tls.client_crl_file.empty()) {
        if (c.tls.client_ca_file.empty()) throw ConfigError("tls.client_crl_file", "needs tls.client_ca_file");
        if (!is_readable_file(c.tls.client_crl_file)) {
            throw ConfigError("tls.client_crl_file", "cannot read \"" + c.tls.client_crl_file.string() + "\"");
        }
    }

    if (c.general.server_secret_file && !is_readable_file(*c.general.server_secret_file)) {
        throw ConfigError("general.server_secret_file",
                          "cannot read \"" + c.general.server_secret_file->string() + "\"");
    }

    const std::array<std::pair<std::string_view, std::uint16_t>, 3> ports{{
        {"c2s.port", c.c2s.port}, {"c2s.tls_port", c.c2s.tls_port}, {"metrics.port", c.metrics.port}}};
    for (std::size_t i = 0; i < ports.size(); ++i) {
        for (std::size_t j = 0; j < i; ++j) {
            if (ports[i].second != 0 && ports[i].second == ports[j].second) {
                throw ConfigError(std::string(ports[i].first), "same port as " + std::string(ports[j].first) +
                                                                   " (" + std::to_string(ports[i].second) + ")");
            }
        }
    }

    if (c.c2s.max_output_bytes < c.c2s.max_stanza_bytes) {
        throw ConfigError("c2s.max_output_bytes", "must be at least c2s.max_stanza_bytes (" +
                                                      std::to_string(c.c2s.max_stanza_bytes) + ")");
    }
    if (c.admin.socket.string().size() > k_max_socket_path) {
        throw ConfigError("admin.socket", "longer than " + std::to_string(k_max_socket_path) +
                                              " bytes, the limit of a Unix socket path (\"" +
                                              c.admin.socket.string() + "\")");
    }
}

std::vector<std::string> warnings(const BrokerConfig& c) {
    std::vector<std::string> w;
    if (c.c2s.allow_plaintext) {
        w.emplace_back("c2s.allow_plaintext is on: clients may authenticate without TLS and their passwords "
                       "cross the network in clear; use it only on loopback");
    }
    if (c.c2s.port == 0 && c.c2s.tls_port == 0) {
        w.emplace_back("c2s.port and c2s.tls_port are both 0: no client can connect");
    }
    if (c.metrics.port != 0 && c.metrics.bind_address != "127.0.0.1" && c.metrics.bind_address != "::1") {
        w.emplace_back("metrics are served on " + c.metrics.bind_address + ", not only on loopback");
    }
    for (const auto& cert : c.tls.certificates) {
        for (const auto& d : cert.domains) {
            if (d.starts_with("*.")) continue;
            if (std::find(c.domains.begin(), c.domains.end(), d) == c.domains.end()) {
                w.emplace_back("a certificate names \"" + d + "\", which is not in domains");
            }
        }
    }
    return w;
}

void resolve_paths(BrokerConfig& c) {
    c.general.data_dir = std::filesystem::absolute(c.general.data_dir).lexically_normal();
    auto under = [&](std::filesystem::path& p, std::string_view fallback) {
        if (p.empty()) p = c.general.data_dir / fallback;
        else if (p.is_relative()) p = (c.general.data_dir / p).lexically_normal();
    };
    under(c.storage.path, "db");
    under(c.admin.socket, "admin.sock");
}

std::filesystem::path self_signed_dir(const BrokerConfig& c) { return c.general.data_dir / "tls"; }

std::vector<std::string> option_keys() {
    std::vector<std::string> keys;
    BrokerConfig dummy;
    for_each_option(dummy, [&](std::string_view t, std::string_view n, auto&&...) { keys.push_back(join_key(t, n)); });
    for (const auto& m : modules::module_catalog()) {
        if (m.optional) keys.push_back(join_key(k_modules, m.name));
        for (const auto& o : m.options) keys.push_back(module_key(m.name, o.name));
    }
    keys.emplace_back(k_domains);
    keys.push_back(join_key(k_tls, k_certificates));
    return keys;
}

session::ModuleSettings default_modules() { return modules::default_module_settings(); }

namespace {
// Wraps `text` into "# " comment lines of at most `width` characters.
void comment_into(std::string& out, std::string_view text, std::size_t width = 96) {
    std::string line = "#";
    std::size_t pos = 0;
    while (pos < text.size()) {
        std::size_t end = text.find(' ', pos);
        if (end == std::string_view::npos) end = text.size();
        const std::string_view word = text.substr(pos, end - pos);
        if (line.size() > 1 && line.size() + 1 + word.size() > width) {
            out += line + "\n";
            line = "#";
        }
        line += ' ';
        line += word;
        pos = end + 1;
    }
    if (line.size() > 1) out += line + "\n";
}
}  // namespace

std::string module_config_text() {
    std::string out;
    out += "[modules]\n";
    comment_into(out, "Optional modules, each on unless turned off here. A module turned off is not advertised in "
                      "disco and its stored data is kept for when it is turned on again.");
    for (const auto& m : modules::module_catalog()) {
        if (!m.optional) continue;
        comment_into(out, m.summary);
        out += std::string(m.name) + " = true\n";
    }
    for (const auto& m : modules::module_catalog()) {
        if (m.options.empty()) continue;
        out += "\n[" + std::string(m.name) + "]\n";
        comment_into(out, std::string(m.summary) + ".");
        for (const auto& o : m.options) {
            std::string help(o.help);
            if (!help.empty() && help[0] >= 'a' && help[0] <= 'z') help[0] = static_cast<char>(help[0] - 'a' + 'A');
            comment_into(out, help + " (" + session::describe_type(o) + ").");
            out += std::string(o.name) + " = " + session::to_toml(session::default_value(o)) + "\n";
        }
    }
    return out;
}

// --- command line ---

CliOptions parse_command_line(int argc, char** argv) {
    CliOptions o;
    for (int i = 1; i < argc; ++i) {
        std::string_view arg = argv[i];
        if (arg == "-h") arg = "--help";
        std::string_view name = arg;
        std::optional<std::string_view> inline_value;
        if (auto eq = arg.find('='); arg.starts_with("--") && eq != std::string_view::npos) {
            name = arg.substr(0, eq);
            inline_value = arg.substr(eq + 1);
        }
        const Flag* flag = nullptr;
        for (const auto& f : k_flags) {
            if (f.name == name) flag = &f;
        }
        if (flag == nullptr) {
            if (!arg.starts_with("-")) {
                throw ConfigError({}, "unexpected argument '" + std::string(arg) + "' (see --help)");
            }
            throw ConfigError(std::string(name), "unknown option (see --help)");
        }
        std::string_view value;
        if (flag->argument.empty()) {
            if (inline_value) throw ConfigError(std::string(name), "takes no value");
        } else if (inline_value) {
            value = *inline_value;
        } else {
            if (i + 1 >= argc || std::string_view(argv[i + 1]).starts_with("--")) {
                throw ConfigError(std::string(name), "needs a value (" + std::string(name) + " " +
                                                         std::string(flag->argument) + ")");
            }
            value = argv[++i];
        }
        apply_flag(o, name, value);
    }
    return o;
}

void apply_overrides(BrokerConfig& c, const CliOptions& o) {
    if (o.data_dir) c.general.data_dir = *o.data_dir;
    if (!o.domains.empty()) c.domains = o.domains;
    if (o.c2s_port) c.c2s.port = *o.c2s_port;
    if (o.c2s_tls_port) c.c2s.tls_port = *o.c2s_tls_port;
    if (o.metrics_port) c.metrics.port = *o.metrics_port;
    if (o.shards) c.general.shards = *o.shards;
    if (o.log_level) c.general.log_level = *o.log_level;
    if (o.allow_plaintext) c.c2s.allow_plaintext = true;
}

std::string usage() {
    std::string s =
        "Usage: starlingd [OPTIONS]\n"
        "Starts the Starling XMPP broker. With no options it serves 'localhost' from ./data with a\n"
        "self-signed certificate. Each option overrides the configuration file.\n\n"
        "Options:\n";
    for (const auto& f : k_flags) {
        std::string left = "  " + std::string(f.name);
        if (!f.argument.empty()) left += " " + std::string(f.argument);
        if (left.size() < 24) left.resize(24, ' ');
        else left += "  ";
        s += left + std::string(f.help) + "\n";
    }
    s += "\nBoth '--flag value' and '--flag=value' work.\n";
    return s;
}

BrokerConfig load(int argc, char** argv, CliOptions* out) {
    CliOptions cli = parse_command_line(argc, argv);
    if (out != nullptr) *out = cli;
    BrokerConfig c;
    if (cli.help || cli.version || cli.print_module_config) return c;
    if (cli.config) c = load_config_file(*cli.config);
    apply_overrides(c, cli);
    resolve_paths(c);
    validate(c);
    return c;
}

}  // namespace starling::config
