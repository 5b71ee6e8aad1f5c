// starlingctl: account administration and a look into the running broker.
//
// If starlingd answers on its admin socket (<data-dir>/admin.sock by default), every command
// goes through it (the broker's own domains and iteration count apply; --domain and --iterations
// are ignored). Otherwise the user commands open the stopped broker's store (<data-dir>/db)
// directly; the served domains are then those given with --domain, or, without --domain, the
// JID's own domain is accepted (starlingctl cannot know the broker's configuration).
//
// Exit codes: 0 ok, 1 the operation failed, 2 usage.
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "broker/src/admin/protocol.hpp"
#include "broker/src/admin/rosters.hpp"
#include "broker/src/admin/users.hpp"
#include "broker/src/ctl/cert_issue.hpp"
#include "broker/src/ctl/client.hpp"
#include "broker/src/ctl/terminal.hpp"
#include "broker/src/storage/accounts.hpp"
#include "broker/src/storage/store.hpp"
#include "broker/src/util/random.hpp"
#include "xmpp/sasl/scram.hpp"

namespace {

using namespace starling;

constexpr int k_ok = 0;
constexpr int k_failed = 1;
constexpr int k_usage = 2;

constexpr const char* k_help = R"(usage: starlingctl [OPTIONS] COMMAND

Options:
  --data-dir DIR    the broker's data folder (default ./data)
  --socket PATH     the admin socket (default <data-dir>/admin.sock)
  --domain NAME     a served domain (repeatable); only used when starlingd is not running.
                    Without it, a stopped broker's accounts may be on any domain.
  --iterations N    PBKDF2 iterations of new keys when starlingd is not running
                    (default 4096; the running broker uses its own setting)
  -h, --help        this text

Commands:
  user add JID [PASSWORD]      create an account (no PASSWORD: read from stdin, no echo on a tty)
  user passwd JID [PASSWORD]   change a password
  user del JID                 delete an account
  user list                    list the accounts
  user import FILE|-           create accounts from "jid,password" lines (- : stdin);
                               '#' comments and blank lines are skipped; all or nothing
  roster import FILE|-         provision rosters from "owner,contact,none|to|from|both[,name]"
                               lines (stopped broker only); all or nothing
  sessions                     list the connected sessions        (running broker only)
  kick JID                     disconnect a full JID, or every session of a bare JID
  stats                        the broker's counters              (running broker only)
  presence silent JID on|off   an account's presence is (not) broadcast to its contacts;
                               probes to it answer unavailable      (running broker only)
  pubsub list [SERVICE]        the nodes of a PubSub service (default pubsub.<first domain>)
  pubsub show SERVICE NODE     a node's configuration, affiliations, subscriptions, items
  pubsub delete SERVICE NODE   delete a node; its subscribers are told
                               (pubsub: running broker only)
  cert issue JID --ca-cert FILE --ca-key FILE --out PREFIX [--days N]
                               enrol a device for SASL EXTERNAL: a new P-256 key
                               (PREFIX.key, 0600) and a certificate for JID (PREFIX.crt,
                               SAN id-on-xmppAddr, N days, default 365) signed by the
                               device CA of [tls] client_ca_file. Offline; README "Device
                               certificates" has the openssl commands for the same
  fast list JID                XEP-0484 FAST tokens of an account (no secrets: issue time,
                               expiry, client id, use counter)     (running broker only)
  fast revoke JID              revoke them all: the next token login is refused
  backup DIR                   a consistent copy of the store, taken while starlingd runs,
                               into DIR (a new folder; the broker's user must be able to
                               create it). Restore: deploy/README.md  (running broker only)

With starlingd running, commands go through its admin socket; otherwise the user commands open
the store in <data-dir>/db directly.
Exit status: 0 ok, 1 the operation failed, 2 usage.
)";

struct Options {
    std::filesystem::path data_dir = "data";
    std::filesystem::path socket;
    std::vector<std::string> domains;
    std::uint32_t iterations = 4096;
    std::vector<std::string> command;
};

int usage(const std::string& message) {
    std::cerr << "starlingctl: " << message << "\n(see starlingctl --help)\n";
    return k_usage;
}

int failed(const std::string& message) {
    std::cerr << "starlingctl: " << message << '\n';
    return k_failed;
}

// Returns -1 when parsed, else an exit code.
int parse_args(int argc, char** argv, Options& o) {
    std::vector<std::string> args(argv + 1, argv + argc);
    for (std::size_t i = 0; i < args.size(); ++i) {
        std::string a = args[i];
        if (a == "-h" || a == "--help") {
            std::cout << k_help;
            return k_ok;
        }
        if (!o.command.empty() || a.empty() || a[0] != '-' || a == "-") {
            o.command.push_back(a);
            continue;
        }
        std::string value;
        const auto eq = a.find('=');
        bool inline_value = false;
        if (a.rfind("--", 0) == 0 && eq != std::string::npos) {
            value = a.substr(eq + 1);
            a = a.substr(0, eq);
            inline_value = true;
        }
        const auto need_value = [&]() -> bool {
            if (inline_value) return true;
            if (i + 1 >= args.size()) return false;
            value = args[++i];
            return true;
        };
        if (a == "--data-dir" || a == "--socket" || a == "--domain" || a == "--iterations") {
            if (!need_value()) return usage(a + " needs a value");
            if (a == "--data-dir") {
                o.data_dir = value;
            } else if (a == "--socket") {
                o.socket = value;
            } else if (a == "--domain") {
                o.domains.push_back(value);
            } else {
                try {
                    std::size_t used = 0;
                    const unsigned long n = std::stoul(value, &used);
                    if (used != value.size() || n < xmpp::sasl::k_min_iterations || n > xmpp::sasl::k_max_iterations) {
                        throw std::out_of_range("");
                    }
                    o.iterations = static_cast<std::uint32_t>(n);
                } catch (const std::exception&) {
                    return usage("--iterations must be a number in [" + std::to_string(xmpp::sasl::k_min_iterations) +
                                 ", " + std::to_string(xmpp::sasl::k_max_iterations) + "]");
                }
            }
            continue;
        }
        return usage("unknown option " + a);
    }
    if (o.socket.empty()) o.socket = o.data_dir / "admin.sock";
    return -1;
}

// Checks the shape of the command; returns -1 when fine.
int check_command(const std::vector<std::string>& c) {
    if (c.empty()) return usage("no command");
    const auto n = c.size();
    if (c[0] == "user") {
        if (n < 2) return usage("user needs a subcommand: add, passwd, del, list, import");
        const auto& s = c[1];
        if ((s == "add" || s == "passwd") && (n == 3 || n == 4)) return -1;
        if ((s == "del" || s == "import") && n == 3) return -1;
        if (s == "list" && n == 2) return -1;
        if (s == "add" || s == "passwd") return usage("usage: user " + s + " JID [PASSWORD]");
        if (s == "del") return usage("usage: user del JID");
        if (s == "import") return usage("usage: user import FILE|-");
        if (s == "list") return usage("usage: user list");
        return usage("unknown user subcommand '" + s + "'");
    }
    if (c[0] == "roster") {
        if (n == 3 && c[1] == "import") return -1;
        return usage("usage: roster import FILE|-");
    }
    if (c[0] == "presence") {
        if (n == 4 && c[1] == "silent" && (c[3] == "on" || c[3] == "off")) return -1;
        return usage("usage: presence silent JID on|off");
    }
    if (c[0] == "pubsub") {
        if (n >= 2 && c[1] == "list" && n <= 3) return -1;
        if (n == 4 && (c[1] == "show" || c[1] == "delete")) return -1;
        return usage("usage: pubsub list [SERVICE] | pubsub show SERVICE NODE | pubsub delete SERVICE NODE");
    }
    if (c[0] == "fast") {
        if (n == 3 && (c[1] == "list" || c[1] == "revoke")) return -1;
        return usage("usage: fast list JID | fast revoke JID");
    }
    if ((c[0] == "sessions" || c[0] == "stats") && n == 1) return -1;
    if (c[0] == "cert") {
        if (n >= 3 && c[1] == "issue") return -1;  // its options are read by run_cert()
        return usage("usage: cert issue JID --ca-cert FILE --ca-key FILE --out PREFIX [--days N]");
    }
    if (c[0] == "backup") return n == 2 ? -1 : usage("usage: backup DIR");
    if (c[0] == "kick" && n == 2) return -1;
    if (c[0] == "sessions" || c[0] == "stats" || c[0] == "kick") return usage("wrong arguments for " + c[0]);
    return usage("unknown command '" + c[0] + "'");
}

// The password of add/passwd: the argument, or stdin.
std::optional<std::string> get_password(const std::vector<std::string>& c) {
    if (c.size() == 4) return c[3];
    return ctl::read_password("Password: ");
}

// An import source: a file or stdin, read line by line.
class LineSource {
public:
    explicit LineSource(const std::string& name) {
        if (name != "-") {
            _file = std::make_unique<std::ifstream>(name, std::ios::binary);
            if (!*_file) _error = "cannot open " + name;
        }
    }
    const std::string& error() const { return _error; }
    bool next(std::string& line) { return static_cast<bool>(std::getline(_file ? *_file : std::cin, line)); }

private:
    std::unique_ptr<std::ifstream> _file;
    std::string _error;
};

// ---- roster provisioning (stopped broker) ----

int run_roster_import(const Options& o) {
    LineSource source(o.command[2]);
    if (!source.error().empty()) return failed(source.error());
    std::vector<admin::RosterEntry> entries;
    std::string line;
    for (std::size_t no = 1; source.next(line); ++no) {
        bool skip = false;
        auto e = admin::parse_roster_line(line, no, skip);
        if (!e) return failed(e.error().message + "; nothing imported");
        if (!skip) entries.push_back(std::move(*e));
    }
    std::unique_ptr<storage::Store> store;
    const auto db_dir = o.data_dir / "db";
    try {
        std::filesystem::create_directories(o.data_dir);
        store = storage::Store::open(db_dir.string());
    } catch (const std::exception& e) {
        return failed(std::string(e.what()) + " (roster import needs starlingd stopped)");
    }
    const auto t0 = std::chrono::steady_clock::now();
    auto r = admin::import_rosters(*store, entries);
    if (!r) return failed(r.error().message);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("imported %zu roster items for %zu accounts in %.3f s\n", entries.size(), *r, secs);
    return k_ok;
}

// ---- through the running broker ----

int run_online(ctl::AdminClient& client, const Options& o) {
    namespace p = admin::protocol;
    const auto& c = o.command;
    std::vector<std::string_view> request(c.begin(), c.end());
    std::optional<std::string> password;
    if (c[0] == "user" && (c[1] == "add" || c[1] == "passwd")) {
        password = get_password(c);
        if (!password) return failed("no password given");
        if (!p::is_valid_field(*password)) return failed("a password may not hold control characters");
        request.resize(3);
        request.push_back(*password);
    }
    // The broker resolves nothing against its own working directory: send an absolute path.
    std::string backup_dir;
    if (c[0] == "backup") {
        backup_dir = std::filesystem::absolute(c[1]).lexically_normal().string();
        request[1] = backup_dir;
    }
    for (std::size_t i = 0; i < request.size(); ++i) {
        if (!p::is_valid_field(request[i])) return failed("an argument may not hold control characters");
    }
    if (c[0] == "user" && c[1] == "import") {
        LineSource source(c[2]);
        if (!source.error().empty()) return failed(source.error());
        bool open = client.send_all(p::encode_line({"user", "import"}));
        std::string line, chunk;
        while (open && source.next(line)) {
            chunk += line;
            chunk += '\n';
            if (chunk.size() >= 64 * 1024) {
                open = client.send_all(chunk);
                chunk.clear();
            }
        }
        if (open && !chunk.empty()) client.send_all(chunk);
        client.shutdown_write();
        ctl::ProgressLine progress;
        const int rc = ctl::read_answer(client, [&](std::size_t done, std::size_t total, double s) {
            progress.update(done, total, s);
        });
        progress.finish();
        return rc;
    }
    if (!client.send_all(p::encode_line(request))) return failed("starlingd closed the admin connection");
    return ctl::read_answer(client, {});
}

// ---- on the stopped broker's store ----

// run_offline()'s answer when another process holds the store: a broker that is starting holds
// it a moment before its admin socket answers.
constexpr int k_store_locked = -3;

int run_offline(const Options& o) {
    const auto& c = o.command;
    std::unique_ptr<storage::Store> store;
    const auto db_dir = o.data_dir / "db";
    try {
        std::filesystem::create_directories(o.data_dir);
        store = storage::Store::open(db_dir.string());
    } catch (const storage::StoreError& e) {
        const std::string what = e.what();
        if (what.find("lock") != std::string::npos) return k_store_locked;  // main() retries
        return failed(what);
    } catch (const std::exception& e) {
        return failed(std::string("cannot open the store in ") + db_dir.string() + ": " + e.what());
    }
    storage::AccountStore accounts(*store);
    std::unique_ptr<util::Random> random;
    try {
        random = std::make_unique<util::Random>();
    } catch (const std::exception& e) {
        return failed(e.what());
    }
    admin::UserContext ctx{accounts, o.domains, o.iterations, *random};
    const auto report = [](const admin::AdminResult<void>& r, const std::string& ok) {
        if (!r) return failed(r.error().message);
        std::cout << ok << '\n';
        return k_ok;
    };
    const auto shown = [&](const std::string& jid) {
        auto b = admin::parse_user_jid(jid, {});
        return b ? b->str() : jid;
    };
    if (c[1] == "add" || c[1] == "passwd") {
        // Refuse early, before asking for a password that would be thrown away.
        auto jid = admin::parse_user_jid(c[2], o.domains);
        if (!jid) return failed(jid.error().message);
        auto password = get_password(c);
        if (!password) return failed("no password given");
        if (c[1] == "add") return report(admin::add_user(ctx, c[2], *password), "added " + shown(c[2]));
        return report(admin::change_password(ctx, c[2], *password), "password changed for " + shown(c[2]));
    }
    if (c[1] == "del") return report(admin::delete_user(ctx, c[2]), "deleted " + shown(c[2]));
    if (c[1] == "list") {
        auto users = admin::list_users(accounts);
        if (!users) return failed(users.error().message);
        for (const auto& u : *users) std::cout << u << '\n';
        std::cout << users->size() << " accounts\n";
        return k_ok;
    }
    // import
    LineSource source(c[2]);
    if (!source.error().empty()) return failed(source.error());
    admin::ImportParser parser(o.domains);
    std::string line;
    while (source.next(line)) {
        if (!parser.feed_line(line)) break;
    }
    auto entries = parser.finish();
    if (!entries) return failed(entries.error().message + "; nothing imported");
    ctl::ProgressLine progress;
    admin::ImportOptions options;
    options.iterations = o.iterations;
    options.progress = [&](const admin::ImportProgress& p) { progress.update(p.done, p.total, p.seconds); };
    auto r = admin::import_users(accounts, std::move(*entries), options);
    progress.finish();
    if (!r) return failed(r.error().message);
    const double rate = r->derive_seconds > 0 ? static_cast<double>(r->imported) / r->derive_seconds : 0;
    std::printf("imported %zu accounts in %.3f s (%ld accounts/s)\n", r->imported, r->derive_seconds + r->write_seconds,
                static_cast<long>(rate));
    return k_ok;
}

}  // namespace

// cert issue JID --ca-cert FILE --ca-key FILE --out PREFIX [--days N]: no broker involved.
int run_cert(const std::vector<std::string>& c) {
    ctl::CertRequest req;
    req.jid = c[2];
    for (std::size_t i = 3; i < c.size(); ++i) {
        const std::string& a = c[i];
        if (i + 1 >= c.size()) return usage(a + " needs a value");
        const std::string& v = c[++i];
        if (a == "--ca-cert") {
            req.ca_cert = v;
        } else if (a == "--ca-key") {
            req.ca_key = v;
        } else if (a == "--out") {
            req.out = v;
        } else if (a == "--days") {
            try {
                std::size_t used = 0;
                const unsigned long d = std::stoul(v, &used);
                if (used != v.size() || d < 1 || d > 3650) throw std::out_of_range("");
                req.days = static_cast<std::uint32_t>(d);
            } catch (const std::exception&) {
                return usage("--days must be a number in [1, 3650]");
            }
        } else {
            return usage("unknown cert issue option " + a);
        }
    }
    if (req.ca_cert.empty() || req.ca_key.empty() || req.out.empty()) {
        return usage("cert issue needs --ca-cert, --ca-key and --out");
    }
    const auto issued = ctl::issue_device_certificate(req);
    std::cout << "certificate " << issued.cert_file.string() << "\nkey " << issued.key_file.string()
              << "\nserial " << issued.serial_hex << '\n';
    return k_ok;
}

int main(int argc, char** argv) {
    Options o;
    if (int rc = parse_args(argc, argv, o); rc >= 0) return rc;
    if (int rc = check_command(o.command); rc >= 0) return rc;
    try {
        // A broker that is starting up holds the store before its socket answers: try again
        // for a few seconds before calling the store locked.
        if (o.command[0] == "cert") return run_cert(o.command);
        if (o.command[0] == "roster") {
            ctl::AdminClient probe;
            std::string detail;
            if (probe.connect(o.socket.string(), detail) == ctl::ConnectStatus::connected) {
                return failed("roster import works on a stopped broker: stop starlingd first (its sessions "
                              "would not see the new items)");
            }
            return run_roster_import(o);
        }
        const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(5);
        for (;;) {
            ctl::AdminClient client;
            std::string detail;
            switch (client.connect(o.socket.string(), detail)) {
            case ctl::ConnectStatus::connected:
                return run_online(client, o);
            case ctl::ConnectStatus::permission_denied:
                return failed("permission denied on the admin socket " + o.socket.string() +
                              ": run as the broker's user or as root");
            case ctl::ConnectStatus::error:
                return failed("cannot connect to the admin socket " + o.socket.string() + ": " + detail);
            case ctl::ConnectStatus::not_running:
                break;
            }
            if (o.command[0] != "user") return failed("starlingd is not running (nothing answers on " + o.socket.string() + ")");
            const int rc = run_offline(o);
            if (rc != k_store_locked) return rc;
            if (std::chrono::steady_clock::now() >= give_up) {
                return failed("the store " + (o.data_dir / "db").string() +
                              " is locked by another process, but nothing answers on " + o.socket.string() +
                              ": is starlingd (or another starlingctl) running with another --socket?");
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
        }
    } catch (const std::exception& e) {
        return failed(e.what());
    }
}
