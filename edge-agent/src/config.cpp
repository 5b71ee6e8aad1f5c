#include "edge-agent/src/config.hpp"

#include <sys/stat.h>
#include <toml++/toml.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <initializer_list>
#include <sstream>

#include "xmpp/base64.hpp"
#include "xmpp/jid.hpp"

namespace starling::agent {

namespace {

class Reader {
public:
    explicit Reader(std::string file) : _file(std::move(file)) {}

    [[noreturn]] void fail(const toml::node* n, std::string_view key, std::string_view why) const {
        std::string m = _file;
        if (n != nullptr && n->source().begin) {
            m += ':' + std::to_string(n->source().begin.line) + ':' + std::to_string(n->source().begin.column);
        }
        m += ": key '";
        m += key;
        m += "': ";
        m += why;
        throw ConfigError(m);
    }

    void only(const toml::table& t, std::string_view where, std::initializer_list<std::string_view> known) const {
        for (const auto& [k, v] : t) {
            if (std::find(known.begin(), known.end(), k.str()) == known.end())
                fail(&v, join(where, k.str()), "unknown key");
        }
    }

    static std::string join(std::string_view t, std::string_view k) {
        return t.empty() ? std::string(k) : std::string(t) + "." + std::string(k);
    }

    void str(const toml::table& t, std::string_view where, std::string_view k, std::string& out) const {
        if (const auto* n = t.get(k)) {
            if (!n->is_string()) fail(n, join(where, k), "must be a string");
            out = n->as_string()->get();
        }
    }
    void boolean(const toml::table& t, std::string_view where, std::string_view k, bool& out) const {
        if (const auto* n = t.get(k)) {
            if (!n->is_boolean()) fail(n, join(where, k), "must be a boolean (true or false)");
            out = n->as_boolean()->get();
        }
    }
    template <class T>
    void integer(const toml::table& t, std::string_view where, std::string_view k, T& out, std::int64_t min,
                 std::int64_t max) const {
        if (const auto* n = t.get(k)) {
            if (!n->is_integer()) fail(n, join(where, k), "must be an integer");
            const std::int64_t v = n->as_integer()->get();
            if (v < min || v > max)
                fail(n, join(where, k),
                     "must be between " + std::to_string(min) + " and " + std::to_string(max) + " (got " +
                         std::to_string(v) + ")");
            out = static_cast<T>(v);
        }
    }
    void ms(const toml::table& t, std::string_view where, std::string_view k, std::chrono::milliseconds& out,
            std::int64_t min, std::int64_t max) const {
        std::int64_t v = out.count();
        integer(t, where, k, v, min, max);
        out = std::chrono::milliseconds(v);
    }
    void real(const toml::table& t, std::string_view where, std::string_view k, double& out) const {
        if (const auto* n = t.get(k)) {
            if (n->is_integer()) {
                out = static_cast<double>(n->as_integer()->get());
            } else if (n->is_floating_point()) {
                out = n->as_floating_point()->get();
            } else {
                fail(n, join(where, k), "must be a number");
            }
        }
    }
    void strings(const toml::table& t, std::string_view where, std::string_view k, std::vector<std::string>& out) const {
        if (const auto* n = t.get(k)) {
            if (!n->is_array()) fail(n, join(where, k), "must be an array of strings");
            out.clear();
            for (const auto& e : *n->as_array()) {
                if (!e.is_string()) fail(&e, join(where, k), "must be an array of strings");
                out.push_back(e.as_string()->get());
            }
        }
    }
    const toml::table* table(const toml::table& root, std::string_view k) const {
        const auto* n = root.get(k);
        if (n == nullptr) return nullptr;
        if (!n->is_table()) fail(n, k, "must be a table");
        return n->as_table();
    }
    std::vector<const toml::table*> tables(const toml::table& root, std::string_view k) const {
        std::vector<const toml::table*> out;
        const auto* n = root.get(k);
        if (n == nullptr) return out;
        if (!n->is_array_of_tables()) fail(n, k, "must be an array of tables ([[" + std::string(k) + "]])");
        for (const auto& e : *n->as_array()) out.push_back(e.as_table());
        return out;
    }

private:
    std::string _file;
};

bool is_name(std::string_view s, std::size_t max = 64) {
    if (s.empty() || s.size() > max) return false;
    return std::all_of(s.begin(), s.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
               c == '.';
    });
}

bool is_hex64(std::string_view s) {
    return s.size() == 64 && std::all_of(s.begin(), s.end(), [](char c) {
               return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
           });
}

void read_args(const Reader& r, const toml::table& t, std::string_view where, CommandDef& cmd) {
    const auto* n = t.get("args");
    if (n == nullptr) return;
    if (!n->is_array_of_tables()) r.fail(n, Reader::join(where, "args"), "must be an array of tables");
    for (const auto& e : *n->as_array()) {
        const auto& at = *e.as_table();
        const std::string w = std::string(where) + ".args";
        r.only(at, w, {"name", "type", "min", "max", "chars", "max_len"});
        CommandArg a;
        r.str(at, w, "name", a.name);
        if (!is_name(a.name)) r.fail(&e, w + ".name", "must be 1-64 of [A-Za-z0-9_.-]");
        std::string type = "string";
        r.str(at, w, "type", type);
        if (type == "integer") {
            a.type = CommandArg::Type::integer;
        } else if (type == "boolean") {
            a.type = CommandArg::Type::boolean;
        } else if (type == "string") {
            a.type = CommandArg::Type::string;
        } else {
            r.fail(at.get("type"), w + ".type", "must be integer, boolean or string");
        }
        a.min = 0;
        a.max = 0;
        r.integer(at, w, "min", a.min, INT64_MIN, INT64_MAX);
        r.integer(at, w, "max", a.max, INT64_MIN, INT64_MAX);
        if (a.type == CommandArg::Type::integer && (!at.get("min") || !at.get("max") || a.min > a.max))
            r.fail(&e, w, "an integer argument needs min <= max");
        r.str(at, w, "chars", a.pattern_chars);
        r.integer(at, w, "max_len", a.max_len, 1, 4096);
        cmd.args.push_back(std::move(a));
    }
}

}  // namespace

std::string AgentConfig::domain() const {
    const auto at = jid.find('@');
    return at == std::string::npos ? jid : jid.substr(at + 1);
}

std::string AgentConfig::node_name() const {
    std::string out = node;
    for (std::size_t p; (p = out.find("{device}")) != std::string::npos;) out.replace(p, 8, device);
    return out;
}

std::string AgentConfig::pubsub_service() const { return service.empty() ? "pubsub." + domain() : service; }

AgentConfig parse_config(std::string_view text, std::string_view source_name) {
    AgentConfig c;
    c.source_file = source_name;
    c.queue.dir = "/var/lib/starling-agent/queue";
    toml::table root;
    try {
        root = toml::parse(text, source_name);
    } catch (const toml::parse_error& e) {
        std::ostringstream m;
        m << source_name << ':' << e.source().begin.line << ':' << e.source().begin.column << ": "
          << e.description();
        throw ConfigError(m.str());
    }
    const Reader r{std::string(source_name)};
    r.only(root, "", {"agent", "xmpp", "tls", "link", "pubsub", "queue", "telemetry", "source", "command"});

    if (const auto* t = r.table(root, "agent")) {
        r.only(*t, "agent", {"device", "log_level", "status_socket"});
        r.str(*t, "agent", "device", c.device);
        if (!is_name(c.device)) r.fail(t->get("device"), "agent.device", "must be 1-64 of [A-Za-z0-9_.-]");
        std::string level = "info";
        r.str(*t, "agent", "log_level", level);
        if (!parse_log_level(level, c.log_level))
            r.fail(t->get("log_level"), "agent.log_level", "must be debug, info, warn or error");
        r.str(*t, "agent", "status_socket", c.status_socket);
    }
    const auto* x = r.table(root, "xmpp");
    if (x == nullptr) throw ConfigError(std::string(source_name) + ": table [xmpp] with 'jid' is required");
    r.only(*x, "xmpp", {"jid", "password", "password_file", "host", "port", "resource", "operators"});
    r.str(*x, "xmpp", "jid", c.jid);
    {
        auto j = xmpp::BareJid::parse(c.jid);
        if (!j || !j->has_localpart()) r.fail(x->get("jid"), "xmpp.jid", "must be a bare JID localpart@domain");
    }
    r.str(*x, "xmpp", "password", c.password);
    r.str(*x, "xmpp", "password_file", c.password_file);
    if (!c.password.empty() && !c.password_file.empty())
        r.fail(x->get("password_file"), "xmpp.password_file", "set either password or password_file, not both");
    r.str(*x, "xmpp", "host", c.host);
    r.integer(*x, "xmpp", "port", c.port, 1, 65535);
    r.str(*x, "xmpp", "resource", c.resource);
    if (!is_name(c.resource)) r.fail(x->get("resource"), "xmpp.resource", "must be 1-64 of [A-Za-z0-9_.-]");
    r.strings(*x, "xmpp", "operators", c.operators);
    for (auto& op : c.operators) {
        auto j = xmpp::BareJid::parse(op);
        if (!j) r.fail(x->get("operators"), "xmpp.operators", "'" + op + "' is not a bare JID");
        op = j->str();
    }

    if (const auto* t = r.table(root, "tls")) {
        r.only(*t, "tls", {"ca_file", "pin_sha256", "verify_hostname", "insecure_skip_verify"});
        r.str(*t, "tls", "ca_file", c.ca_file);
        r.str(*t, "tls", "pin_sha256", c.pin_sha256);
        c.pin_sha256.erase(std::remove(c.pin_sha256.begin(), c.pin_sha256.end(), ':'), c.pin_sha256.end());
        std::transform(c.pin_sha256.begin(), c.pin_sha256.end(), c.pin_sha256.begin(),
                       [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
        if (!c.pin_sha256.empty() && !is_hex64(c.pin_sha256))
            r.fail(t->get("pin_sha256"), "tls.pin_sha256", "must be 64 hex digits (SHA-256 of the certificate, DER)");
        r.boolean(*t, "tls", "verify_hostname", c.verify_hostname);
        r.boolean(*t, "tls", "insecure_skip_verify", c.insecure_skip_verify);
    }
    if (const auto* t = r.table(root, "link")) {
        r.only(*t, "link", {"connect_timeout_ms", "ping_interval_ms", "ping_timeout_ms", "backoff_initial_ms",
                            "backoff_max_ms", "stream_management", "sm_max_unacked", "send_inactive", "pin_sha256",
                            "client_cert", "client_key"});
        r.str(*t, "link", "client_cert", c.client_cert);
        r.str(*t, "link", "client_key", c.client_key);
        if (c.client_cert.empty() != c.client_key.empty())
            r.fail(t->get(c.client_cert.empty() ? "client_key" : "client_cert"),
                   c.client_cert.empty() ? "link.client_key" : "link.client_cert",
                   "set both link.client_cert and link.client_key, or neither");
        std::string pin;
        r.str(*t, "link", "pin_sha256", pin);
        if (!pin.empty()) {
            if (pin.rfind("sha256//", 0) == 0) pin.erase(0, 8);  // curl's spelling
            const auto raw = xmpp::base64_decode(pin, 64);
            if (!raw || raw->size() != 32) {
                r.fail(t->get("pin_sha256"), "link.pin_sha256",
                       "must be the base64 of a SHA-256 (44 characters ending in '='): of the server's public key (SPKI, DER)");
            } else {
                c.pin_spki_sha256.emplace();
                std::copy(raw->begin(), raw->end(), c.pin_spki_sha256->begin());
            }
        }
        r.ms(*t, "link", "connect_timeout_ms", c.connect_timeout, 100, 300000);
        r.ms(*t, "link", "ping_interval_ms", c.ping_interval, 1000, 3600000);
        r.ms(*t, "link", "ping_timeout_ms", c.ping_timeout, 500, 600000);
        r.ms(*t, "link", "backoff_initial_ms", c.backoff_initial, 10, 600000);
        r.ms(*t, "link", "backoff_max_ms", c.backoff_max, 100, 3600000);
        if (c.backoff_max < c.backoff_initial)
            r.fail(t->get("backoff_max_ms"), "link.backoff_max_ms", "must be >= link.backoff_initial_ms");
        r.boolean(*t, "link", "stream_management", c.stream_management);
        r.integer(*t, "link", "sm_max_unacked", c.sm_max_unacked, 8, 65536);
        r.boolean(*t, "link", "send_inactive", c.send_inactive);
    }
    if (const auto* t = r.table(root, "pubsub")) {
        r.only(*t, "pubsub", {"service", "node", "create_node", "node_max_items", "publish_window", "publish_timeout_ms"});
        r.str(*t, "pubsub", "service", c.service);
        r.str(*t, "pubsub", "node", c.node);
        if (c.node.empty() || c.node.size() > 200) r.fail(t->get("node"), "pubsub.node", "must be 1-200 bytes");
        r.boolean(*t, "pubsub", "create_node", c.create_node);
        r.integer(*t, "pubsub", "publish_window", c.publish_window, 1, 128);
        r.integer(*t, "pubsub", "node_max_items", c.node_max_items, 0, 1000000);
        r.ms(*t, "pubsub", "publish_timeout_ms", c.publish_timeout, 100, 3600000);
    }
    if (const auto* t = r.table(root, "queue")) {
        r.only(*t, "queue", {"dir", "max_bytes", "segment_bytes", "max_record_bytes", "fsync"});
        std::string dir = c.queue.dir.string();
        r.str(*t, "queue", "dir", dir);
        c.queue.dir = dir;
        r.integer(*t, "queue", "max_bytes", c.queue.max_bytes, 64 * 1024, std::int64_t{1} << 40);
        r.integer(*t, "queue", "segment_bytes", c.queue.segment_bytes, 16 * 1024, 64 * 1024 * 1024);
        if (t->get("max_record_bytes") == nullptr) {
            c.queue.max_record = static_cast<std::uint32_t>(std::min<std::uint64_t>(c.queue.max_record, c.queue.segment_bytes));
        }
        r.integer(*t, "queue", "max_record_bytes", c.queue.max_record, 1024, 16 * 1024 * 1024);
        if (c.queue.segment_bytes * 2 > c.queue.max_bytes)
            r.fail(t->get("segment_bytes"), "queue.segment_bytes", "must be at most half of queue.max_bytes");
        if (c.queue.max_record > c.queue.segment_bytes)
            r.fail(t->get("max_record_bytes"), "queue.max_record_bytes", "must be at most queue.segment_bytes");
        std::string fs = "always";
        r.str(*t, "queue", "fsync", fs);
        if (fs == "always") {
            c.queue.fsync = FsyncPolicy::always;
        } else if (fs == "never") {
            c.queue.fsync = FsyncPolicy::never;
        } else {
            r.fail(t->get("fsync"), "queue.fsync", "must be always or never");
        }
    }
    if (const auto* t = r.table(root, "telemetry")) {
        r.only(*t, "telemetry", {"interval_ms", "max_readings_per_batch", "shim_socket", "shim_uart", "shim_baud"});
        r.ms(*t, "telemetry", "interval_ms", c.interval, 10, 86400000);
        r.integer(*t, "telemetry", "max_readings_per_batch", c.max_readings_per_batch, 1, 65536);
        r.str(*t, "telemetry", "shim_socket", c.shim_socket);
        r.str(*t, "telemetry", "shim_uart", c.shim_uart);
        r.integer(*t, "telemetry", "shim_baud", c.shim_baud, 1200, 4000000);
        if (!c.shim_socket.empty() && !c.shim_uart.empty()) {
            r.fail(t->get("shim_uart"), "telemetry.shim_uart", "one shim link: shim_socket or shim_uart, not both");
        }
        constexpr std::uint32_t k_bauds[] = {1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400, 460800,
                                             500000, 576000, 921600, 1000000, 1500000, 2000000, 3000000, 4000000};
        if (std::find(std::begin(k_bauds), std::end(k_bauds), c.shim_baud) == std::end(k_bauds)) {
            r.fail(t->get("shim_baud"), "telemetry.shim_baud", "not a standard rate (e.g. 9600, 115200, 921600)");
        }
    }
    if (const auto* t = r.table(root, "source")) {
        r.only(*t, "source", {"file", "program"});
        for (const auto* f : r.tables(*t, "file")) {
            r.only(*f, "source.file", {"name", "path", "scale", "offset", "unit"});
            FileSource s;
            r.str(*f, "source.file", "name", s.name);
            r.str(*f, "source.file", "path", s.path);
            r.real(*f, "source.file", "scale", s.scale);
            r.real(*f, "source.file", "offset", s.offset);
            r.str(*f, "source.file", "unit", s.unit);
            if (!is_name(s.name)) r.fail(f->get("name"), "source.file.name", "must be 1-64 of [A-Za-z0-9_.-]");
            if (s.path.empty() || s.path[0] != '/') r.fail(f->get("path"), "source.file.path", "must be an absolute path");
            c.files.push_back(std::move(s));
        }
        for (const auto* p : r.tables(*t, "program")) {
            r.only(*p, "source.program", {"name", "argv", "timeout_ms", "max_output_bytes"});
            ProgramSource s;
            r.str(*p, "source.program", "name", s.name);
            r.strings(*p, "source.program", "argv", s.argv);
            r.integer(*p, "source.program", "timeout_ms", s.timeout_ms, 10, 60000);
            r.integer(*p, "source.program", "max_output_bytes", s.max_output, 64, 1024 * 1024);
            if (!is_name(s.name)) r.fail(p->get("name"), "source.program.name", "must be 1-64 of [A-Za-z0-9_.-]");
            if (s.argv.empty() || s.argv[0].empty() || s.argv[0][0] != '/')
                r.fail(p->get("argv"), "source.program.argv", "argv[0] must be an absolute path (no shell, no PATH search)");
            c.programs.push_back(std::move(s));
        }
    }
    for (const auto* t : r.tables(root, "command")) {
        r.only(*t, "command", {"name", "title", "kind", "args", "path", "argv", "timeout_ms"});
        CommandDef d;
        r.str(*t, "command", "name", d.name);
        if (!is_name(d.name)) r.fail(t->get("name"), "command.name", "must be 1-64 of [A-Za-z0-9_.-]");
        d.title = d.name;
        r.str(*t, "command", "title", d.title);
        std::string kind = "shim";
        r.str(*t, "command", "kind", kind);
        if (kind == "shim") {
            d.kind = CommandDef::Kind::shim;
        } else if (kind == "file") {
            d.kind = CommandDef::Kind::file;
        } else if (kind == "program") {
            d.kind = CommandDef::Kind::program;
        } else {
            r.fail(t->get("kind"), "command.kind", "must be shim, file or program");
        }
        read_args(r, *t, "command", d);
        r.str(*t, "command", "path", d.path);
        r.strings(*t, "command", "argv", d.argv);
        r.integer(*t, "command", "timeout_ms", d.timeout_ms, 10, 600000);
        if (d.kind == CommandDef::Kind::file && (d.path.empty() || d.path[0] != '/' || d.args.size() != 1))
            r.fail(t->get("path"), "command.path", "a file command needs an absolute path and exactly one argument");
        if (d.kind == CommandDef::Kind::program && (d.argv.empty() || d.argv[0].empty() || d.argv[0][0] != '/'))
            r.fail(t->get("argv"), "command.argv", "argv[0] must be an absolute path (no shell, no PATH search)");
        for (const auto& other : c.commands) {
            if (other.name == d.name) r.fail(t->get("name"), "command.name", "'" + d.name + "' is defined twice");
        }
        c.commands.push_back(std::move(d));
    }
    if (c.password.empty() && c.password_file.empty() && c.client_cert.empty())
        throw ConfigError(std::string(source_name) +
                          ": key 'xmpp.password' or 'xmpp.password_file' (or link.client_cert) is required");
    if (c.pin_spki_sha256 && (c.insecure_skip_verify || !c.pin_sha256.empty()))
        throw ConfigError(std::string(source_name) +
                          ": link.pin_sha256 (the public key) cannot go with tls.pin_sha256 or tls.insecure_skip_verify");
    if (c.insecure_skip_verify && !c.pin_sha256.empty())
        throw ConfigError(std::string(source_name) + ": tls.insecure_skip_verify and tls.pin_sha256 contradict each other");
    return c;
}

namespace {

void check_key_file(const std::string& source, const std::string& key) {
    // Like ssh with an identity file: a private key that group or others may read (or write) is
    // refused, whoever owns it, so a careless chmod is found at --check-config, not in an audit.
    struct stat st {};
    if (::stat(key.c_str(), &st) != 0)
        throw ConfigError(source + ": link.client_key '" + key + "': " + std::strerror(errno));
    if (!S_ISREG(st.st_mode)) throw ConfigError(source + ": link.client_key '" + key + "': not a regular file");
    if ((st.st_mode & 077) != 0) {
        char mode[8];
        std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
        throw ConfigError(source + ": link.client_key '" + key + "': permissions " + mode +
                          " are too open: a private key must not be accessible by group or others (chmod 600)");
    }
}

}  // namespace

AgentConfig load_config(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw ConfigError(path.string() + ": cannot read");
    std::ostringstream ss;
    ss << in.rdbuf();
    AgentConfig c = parse_config(ss.str(), path.string());
    if (!c.password_file.empty()) {
        std::ifstream pf(c.password_file, std::ios::binary);
        if (!pf) throw ConfigError(path.string() + ": xmpp.password_file '" + c.password_file + "': cannot read");
        std::getline(pf, c.password);
        if (c.password.empty()) throw ConfigError(path.string() + ": xmpp.password_file '" + c.password_file + "' is empty");
    }
    if (!c.client_key.empty()) check_key_file(path.string(), c.client_key);
    return c;
}

}  // namespace starling::agent
