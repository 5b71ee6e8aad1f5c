// Routing latency while the disk stalls (issue 14, "Benchmark": p99 of messages that need no
// storage within 2x of no-fault while a slow-disk fault is injected on the same shard).
//
// One real shard, wired as broker/src/server/broker.cpp wires one (store, committer, shard
// writer, router, c2s sessions over loopback, the default module list), over a RocksDB store
// whose file system (tests/support/faulty_fs.hpp, never linked into starlingd) can add latency
// to every append and sync of the write-ahead log. Clients on one thread of this process:
//   - chat: pairs of online sessions; each sender sends a <message type='chat'/> to its
//     partner's full JID at a fixed pace, its send time in the body; the partner measures
//     send-to-receive. These messages need no storage (archive off), or only an archive append
//     that nobody waits for (archive on).
//   - storage: one more session that keeps writing on the same shard: roster sets (each one an
//     IQ answered once it is durable, plus a roster push), or messages to offline accounts;
//     or, for the "logins" stream, a client on a thread of its own that logs in (PLAIN and
//     bind) one account after another, accounts whose records are only in an SST and in no
//     cache (the store's block cache is made empty for that stream): every login reads the
//     disk. Its slow disk adds the latency to every SST read instead of the WAL's. The
//     "logins+IM" stream does the same with accounts that also have a roster (20 watchers) and
//     two offline messages each, all only in SSTs: each login sends its initial presence (the
//     roster read for the broadcast and the probes, the offline delivery) and a roster get, and
//     waits for the get's result before the next login. The "changes (cold)" stream logs in the
//     same kind of accounts and makes roster changes whose point reads need the disk (issue 14):
//     a set adding a contact, a subscription request to another such account (its roster and
//     account read on arrival), and a second set whose result it waits for.
// Each scenario runs twice on one fresh shard, the disk healthy and then with the fault, and
// prints p50/p99/max of the chat latency side by side with the storage operations completed.
//
// Run: build/release/bench/slow_disk_bench [--seconds N] [--latency-ms N] [--pairs N]
//        [--rate N (messages/s per sender)] [--only-logins-im (that row alone)]
//        [--only-changes (that row alone)]
//        (a temp dir, or $STARLING_BENCH_DIR)
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <future>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <asio/ip/tcp.hpp>
#include <asio/post.hpp>
#include <rocksdb/db.h>

#include "broker/src/admin/users.hpp"
#include "broker/src/c2s/options.hpp"
#include "broker/src/c2s/session.hpp"
#include "broker/src/c2s/shard_context.hpp"
#include "broker/src/modules/module_list.hpp"
#include "broker/src/modules/offline/offline_store.hpp"
#include "broker/src/modules/roster/roster_store.hpp"
#include "broker/src/net/listener.hpp"
#include "broker/src/net/shard.hpp"
#include "broker/src/router/mailboxes.hpp"
#include "broker/src/router/router.hpp"
#include "broker/src/session/hooks.hpp"
#include "broker/src/storage/accounts.hpp"
#include "broker/src/storage/store.hpp"
#include "broker/src/storage/write_path.hpp"
#include "broker/src/util/random.hpp"
#include "tests/support/faulty_fs.hpp"
#include "xmpp/base64.hpp"

namespace {

using namespace starling;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr const char* k_password = "bench-password";

enum class Stream { roster, offline, logins, logins_im, changes };
const char* to_string(Stream s) {
    return s == Stream::roster      ? "roster sets"
           : s == Stream::offline   ? "offline messages"
           : s == Stream::logins    ? "logins (cold)"
           : s == Stream::logins_im ? "logins+IM (cold)"
                                    : "changes (cold)";
}
bool is_login_stream(Stream s) { return s == Stream::logins || s == Stream::logins_im || s == Stream::changes; }
bool has_im_data(Stream s) { return s == Stream::logins_im || s == Stream::changes; }

struct Settings {
    int seconds = 5;
    int latency_ms = 200;
    int pairs = 16;
    int rate = 100;           // chat messages per second per sender
    int storage_window = 8;   // roster sets in flight
    int offline_rate = 200;   // offline messages per second
};

[[noreturn]] void die(const char* what);

// The shard, as broker.cpp builds one (minus TLS, metrics and the admin socket).
class Shard {
public:
    // `cold_cache`: a block cache of one byte, so that what is not in a memtable is read from
    // disk every time (the "logins" stream).
    Shard(const std::filesystem::path& dir, bool archive, std::shared_ptr<test::FaultyFileSystem> fs,
          bool cold_cache = false) {
        storage::StoreOptions so;
        so.file_system = std::move(fs);
        if (cold_cache) so.block_cache_bytes = 1;
        store = storage::Store::open(dir.string(), so);
        committer = std::make_unique<storage::Committer>(*store);
        committer->start();
        accounts = std::make_unique<storage::AccountStore>(*store);
        options.require_tls = false;
        options.allow_plaintext = true;
        options.auth_failure_delay = 0ms;
        options.server_secret = "0123456789abcdef0123456789abcdef";
        options.connection_rate_per_ip = 0;  // the logins stream reconnects from one address, flat out
        writer = std::make_unique<storage::ShardWriter>(shards[0].io(), 0, *committer);
        mailboxes = std::make_unique<router::Mailboxes<router::Envelope>>(1, 1024, [this](router::ShardId) { wake(); });
        router = std::make_unique<router::ShardRouter>(0, *mailboxes, [this](router::Envelope&& env) {
            std::static_pointer_cast<c2s::C2sSession>(std::move(env.session))->adopt(*ctx, env.fd);
        });
        ctx = std::make_unique<c2s::ShardContext>(
            session::ShardServices{.shard = 0, .io = shards[0].io(), .server = options, .accounts = *accounts,
                                   .router = *router, .random = random, .hooks = &hooks, .store = store.get(),
                                   .writer = writer.get()},
            options, nullptr);
        auto settings = modules::default_module_settings();
        settings.enabled["mam"] = archive;
        hooks.install(*ctx, modules::make_modules(settings));
        router->set_hooks(&hooks);
        listener = std::make_unique<net::Listener>(
            shards[0].io(), asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0),
            [this](asio::ip::tcp::socket s) { c2s::C2sSession::start(*ctx, std::move(s), false); });
        listener->start();
        port = listener->port();
        shards.start();
    }
    ~Shard() {
        // Let what is staged commit (the disk is healthy again by now), as starlingd's drain does.
        const auto deadline = Clock::now() + 10s;
        while (Clock::now() < deadline && pending() > 0) std::this_thread::sleep_for(5ms);
        shards.stop();
        ctx->sessions.clear();
        listener.reset();
        writer.reset();
        committer->stop();
    }

    void add_user(const std::string& bare) {
        auto rec = admin::make_account_record(k_password, 4096, random);
        if (!rec || !accounts->put(bare, *rec)) {
            std::fprintf(stderr, "cannot add %s\n", bare.c_str());
            std::exit(1);
        }
    }

    // The accounts (and, `im`, rosters and offline messages) go from the memtable to an SST:
    // later reads of them may need the disk.
    void flush_accounts(bool im = false) {
        rocksdb::FlushOptions fo;
        fo.wait = true;
        const storage::Column all[] = {storage::Column::accounts, storage::Column::rosters, storage::Column::meta,
                                       storage::Column::offline};
        for (const auto c : std::span(all, im ? std::size(all) : 1)) {
            if (!store->db().Flush(fo, store->column(c)).ok()) {
                std::fprintf(stderr, "cannot flush the stores\n");
                std::exit(1);
            }
        }
    }

    // A roster of `contacts` contacts subscribed to `bare` (subscription from: its presence is
    // broadcast to them; no probes, so that the row measures the logging-in user's own reads)
    // and two offline messages, written directly to RocksDB (set-up).
    void add_im_data(const std::string& bare, int contacts) {
        modules::roster::RosterStore rs(*store);
        for (int i = 0; i < contacts; ++i) {
            modules::roster::RosterItem item;
            item.jid = "contact" + std::to_string(i) + "@localhost";
            item.sub = modules::roster::Sub::from;
            item.in_roster = true;
            item.name = "contact " + std::to_string(i);
            if (!rs.save(bare, item, true)) die("cannot write a roster");
        }
        modules::offline::OfflineStore os(*store);
        for (std::uint64_t seq = 1; seq <= 2; ++seq) {
            modules::offline::OfflineRecord rec;
            rec.seq = seq;
            rec.stanza = "<message from='writer@localhost/r' to='" + bare + "' type='chat'><body>kept " +
                         std::to_string(seq) + "</body></message>";
            rec.received_unix_ms = 1;
            if (!os.append(bare, rec)) die("cannot store an offline message");
        }
    }

    std::uint16_t port = 0;

private:
    // Staged and in-flight writes, counted on the shard's thread.
    std::size_t pending() {
        std::promise<std::size_t> p;
        auto f = p.get_future();
        asio::post(shards[0].io(), [this, &p] {
            writer->seal();
            p.set_value(writer->in_flight() + writer->overlay_size());
        });
        return f.get();
    }
    void wake() {
        asio::post(shards[0].io(), [this] {
            mailboxes->drain(0, [this](router::Envelope&& env) { router->on_mail(std::move(env)); });
            router->flush();
        });
    }

    c2s::C2sOptions options;
    util::Random random;
    std::unique_ptr<storage::Store> store;
    std::unique_ptr<storage::Committer> committer;
    std::unique_ptr<storage::AccountStore> accounts;
    net::ShardSet shards{1};
    std::unique_ptr<storage::ShardWriter> writer;
    std::unique_ptr<router::Mailboxes<router::Envelope>> mailboxes;
    std::unique_ptr<router::ShardRouter> router;
    std::unique_ptr<c2s::ShardContext> ctx;
    session::HookTable hooks;
    std::unique_ptr<net::Listener> listener;
};

void die(const char* what) {
    std::fprintf(stderr, "slow_disk_bench: %s\n", what);
    std::exit(1);
}

// A client connection: blocking while it logs in, then driven by the poll loop.
class Client {
public:
    Client(std::uint16_t port, const std::string& user, const std::string& resource) {
        _fd = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons(port);
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (::connect(_fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) die("connect");
        int one = 1;
        ::setsockopt(_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        open_stream();
        send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>" +
             xmpp::base64_encode(std::string(1, '\0') + user + std::string(1, '\0') + k_password) + "</auth>");
        wait_for("<success");
        open_stream();
        send("<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>" + resource +
             "</resource></bind></iq>");
        wait_for("</iq>");
        _in.clear();
    }
    ~Client() { ::close(_fd); }
    Client(const Client&) = delete;
    Client& operator=(const Client&) = delete;

    int fd() const noexcept { return _fd; }
    void send(std::string_view s) {
        while (!s.empty()) {
            const ssize_t n = ::write(_fd, s.data(), s.size());
            if (n <= 0) die("write");
            s.remove_prefix(static_cast<std::size_t>(n));
        }
    }
    // What one read() brings, appended to the input; false at EOF.
    bool read_some() {
        char buf[16384];
        const ssize_t n = ::read(_fd, buf, sizeof buf);
        if (n <= 0) return false;
        _in.append(buf, static_cast<std::size_t>(n));
        return true;
    }
    std::string& input() noexcept { return _in; }
    // Reads until `needle` (dies after 10 s, or on a SASL failure) and drops what came before.
    void wait_for(std::string_view needle) {
        const auto deadline = Clock::now() + 10s;
        while (_in.find(needle) == std::string::npos) {
            if (Clock::now() > deadline) die("login timed out");
            pollfd p{_fd, POLLIN, 0};
            if (::poll(&p, 1, 100) > 0 && !read_some()) {
                std::fprintf(stderr, "slow_disk_bench: received before the close: %s\n", _in.c_str());
                die("closed during login");
            }
            if (_in.find("<failure") != std::string::npos) die("login refused");
        }
        _in.erase(0, _in.find(needle) + needle.size());
    }

private:
    void open_stream() {
        send("<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client' "
             "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>");
        wait_for("</stream:features>");
    }
    int _fd = -1;
    std::string _in;
};

std::int64_t now_us() {
    return std::chrono::duration_cast<std::chrono::microseconds>(Clock::now().time_since_epoch()).count();
}

// Counts the occurrences of `marker` in `in` and keeps only a tail that may start one.
std::size_t count_and_trim(std::string& in, std::string_view marker) {
    std::size_t n = 0;
    for (auto at = in.find(marker); at != std::string::npos; at = in.find(marker, at + marker.size())) ++n;
    if (in.size() >= marker.size()) in.erase(0, in.size() - (marker.size() - 1));
    return n;
}

struct PhaseResult {
    std::vector<std::int64_t> latencies_us;
    std::size_t sent = 0;
    std::size_t storage_sent = 0;
    std::size_t storage_done = 0;  // roster results received (offline: sent)
};

std::int64_t percentile(std::vector<std::int64_t>& v, double p) {
    if (v.empty()) return -1;
    std::sort(v.begin(), v.end());
    const auto i = static_cast<std::size_t>(p * static_cast<double>(v.size() - 1));
    return v[i];
}

class Driver {
public:
    Driver(Shard& shard, const Settings& s, Stream stream) : _s(s), _stream(stream) {
        for (int i = 0; i < s.pairs; ++i) {
            shard.add_user("a" + std::to_string(i) + "@localhost");
            shard.add_user("b" + std::to_string(i) + "@localhost");
        }
        shard.add_user("writer@localhost");
        for (int i = 0; i < k_offline_users; ++i) shard.add_user("away" + std::to_string(i) + "@localhost");
        if (is_login_stream(stream)) {
            for (int i = 0; i < k_login_users; ++i) {
                shard.add_user("login" + std::to_string(i) + "@localhost");
                if (has_im_data(stream)) shard.add_im_data("login" + std::to_string(i) + "@localhost", 20);
            }
        }
        for (int i = 0; i < s.pairs; ++i) {
            _senders.push_back(std::make_unique<Client>(shard.port, "a" + std::to_string(i), "r"));
            _receivers.push_back(std::make_unique<Client>(shard.port, "b" + std::to_string(i), "r"));
        }
        _writer = std::make_unique<Client>(shard.port, "writer", "r");
        // An interested resource (RFC 6121 §2.1.6): every set is also pushed to it.
        _writer->send("<iq type='get' id='roster0'><query xmlns='jabber:iq:roster'/></iq>");
        if (is_login_stream(stream)) shard.flush_accounts(has_im_data(stream));
        _port = shard.port;
    }

    PhaseResult run(Clock::duration length) {
        PhaseResult r;
        const auto start = Clock::now();
        const auto stop_sending = start + length;
        const auto interval = std::chrono::microseconds(1'000'000 / _s.rate);
        const auto offline_interval = std::chrono::microseconds(1'000'000 / _s.offline_rate);
        std::vector<Clock::time_point> next(_senders.size());
        for (std::size_t i = 0; i < next.size(); ++i) next[i] = start + interval * i / next.size();
        auto next_offline = start;
        std::size_t in_flight_sets = _carry;
        std::vector<pollfd> fds;
        for (auto& c : _receivers) fds.push_back({c->fd(), POLLIN, 0});
        fds.push_back({_writer->fd(), POLLIN, 0});
        const std::size_t writer_at = fds.size() - 1;
        const auto drain_limit = stop_sending + 5s;
        // Logins: one after another on a thread of their own, until the phase stops sending.
        const bool logins_stream = is_login_stream(_stream);
        std::atomic<bool> logging_in{logins_stream};
        std::atomic<std::size_t> logins{0};
        std::thread login_thread;
        if (logins_stream) {
            login_thread = std::thread([&] {
                while (logging_in.load()) {
                    const auto n = _login_seq++;
                    Client c(_port, "login" + std::to_string(n % k_login_users), "r");
                    if (_stream == Stream::logins_im) {
                        c.send("<presence/><iq type='get' id='rg'><query xmlns='jabber:iq:roster'/></iq>");
                        c.wait_for("id='rg'");
                    } else if (_stream == Stream::changes) {
                        const std::string other = "login" + std::to_string((n * 7 + 3) % k_login_users) + "@localhost";
                        c.send("<iq type='set' id='cs1'><query xmlns='jabber:iq:roster'><item jid='new" +
                               std::to_string(n) + "@localhost'/></query></iq><presence type='subscribe' to='" + other +
                               "'/><iq type='set' id='cs2'><query xmlns='jabber:iq:roster'><item jid='" + other +
                               "' name='n" + std::to_string(n) + "'/></query></iq>");
                        c.wait_for("id='cs2'");
                    }
                    logins.fetch_add(1);
                }
            });
        }
        for (;;) {
            const auto now = Clock::now();
            const bool sending = now < stop_sending;
            if (!sending && r.latencies_us.size() >= r.sent) break;
            if (now > drain_limit) break;
            if (sending) {
                for (std::size_t i = 0; i < _senders.size(); ++i) {
                    if (now < next[i]) continue;
                    next[i] += interval;
                    _senders[i]->send("<message to='b" + std::to_string(i) + "@localhost/r' type='chat'><body>" +
                                      std::to_string(now_us()) + "</body></message>");
                    ++r.sent;
                }
                if (_stream == Stream::roster) {
                    while (in_flight_sets < static_cast<std::size_t>(_s.storage_window)) {
                        const auto n = ++_seq;
                        _writer->send("<iq type='set' id='s" + std::to_string(n) +
                                      "'><query xmlns='jabber:iq:roster'><item jid='contact" +
                                      std::to_string(n % 50) + "@localhost' name='n" + std::to_string(n) +
                                      "'/></query></iq>");
                        ++in_flight_sets;
                        ++r.storage_sent;
                    }
                } else if (_stream == Stream::offline && now >= next_offline) {
                    next_offline += offline_interval;
                    _writer->send("<message to='away" + std::to_string(_seq++ % k_offline_users) +
                                  "@localhost' type='chat'><body>stored</body></message>");
                    ++r.storage_sent;
                    ++r.storage_done;
                }
            }
            for (auto& p : fds) p.revents = 0;
            if (::poll(fds.data(), fds.size(), 1) < 0) die("poll");
            for (std::size_t i = 0; i < _receivers.size(); ++i) {
                if ((fds[i].revents & POLLIN) == 0) continue;
                if (!_receivers[i]->read_some()) die("a receiver was disconnected");
                take_latencies(_receivers[i]->input(), r.latencies_us);
            }
            if (fds[writer_at].revents & POLLIN) {
                if (!_writer->read_some()) die("the writer was disconnected");
                const auto done = count_and_trim(_writer->input(), "type='result'");
                r.storage_done += done;
                in_flight_sets -= std::min(in_flight_sets, done);
            }
        }
        if (login_thread.joinable()) {
            logging_in.store(false);
            login_thread.join();
            r.storage_sent = r.storage_done = logins.load();
        }
        // Roster sets still in flight carry over to the next phase's window.
        _carry = in_flight_sets;
        return r;
    }

private:
    static constexpr int k_offline_users = 64;
    static constexpr int k_login_users = 256;

    static void take_latencies(std::string& in, std::vector<std::int64_t>& out) {
        const auto t = now_us();
        std::size_t at = 0;
        for (;;) {
            const auto open = in.find("<body>", at);
            if (open == std::string::npos) break;
            const auto close = in.find("</body>", open);
            if (close == std::string::npos) {
                at = open;
                in.erase(0, at);
                return;
            }
            std::int64_t sent = 0;
            std::from_chars(in.data() + open + 6, in.data() + close, sent);
            out.push_back(t - sent);
            at = close + 7;
        }
        // Keep a tail that may hold the start of "<body>".
        in.erase(0, in.size() > 5 ? in.size() - 5 : 0);
    }

    const Settings& _s;
    Stream _stream;
    std::vector<std::unique_ptr<Client>> _senders;
    std::vector<std::unique_ptr<Client>> _receivers;
    std::unique_ptr<Client> _writer;
    std::uint64_t _seq = 0;
    std::uint64_t _login_seq = 0;
    std::uint16_t _port = 0;
    std::size_t _carry = 1;  // the roster get's result counts as one
};

void print_row(const char* archive, Stream stream, const char* disk, PhaseResult& r, double seconds) {
    const auto p50 = percentile(r.latencies_us, 0.50);
    const auto p99 = percentile(r.latencies_us, 0.99);
    const auto max = r.latencies_us.empty() ? -1 : r.latencies_us.back();
    std::printf("%-8s %-17s %-9s %8zu %8zu %10.2f %10.2f %10.2f %10zu %10.1f\n", archive, to_string(stream), disk, r.sent,
                r.latencies_us.size(), static_cast<double>(p50) / 1000.0, static_cast<double>(p99) / 1000.0,
                static_cast<double>(max) / 1000.0, r.storage_done, static_cast<double>(r.storage_done) / seconds);
    std::fflush(stdout);
}

int int_arg(int argc, char** argv, int& i) {
    if (i + 1 >= argc) die("an option lacks its value");
    return std::atoi(argv[++i]);
}

}  // namespace

int main(int argc, char** argv) {
    Settings s;
    bool only_logins_im = false;
    bool only_changes = false;
    for (int i = 1; i < argc; ++i) {
        const std::string_view a = argv[i];
        if (a == "--only-logins-im") {
            only_logins_im = true;
        } else if (a == "--only-changes") {
            only_changes = true;
        } else if (a == "--seconds") {
            s.seconds = int_arg(argc, argv, i);
        } else if (a == "--latency-ms") {
            s.latency_ms = int_arg(argc, argv, i);
        } else if (a == "--pairs") {
            s.pairs = int_arg(argc, argv, i);
        } else if (a == "--rate") {
            s.rate = int_arg(argc, argv, i);
        } else {
            std::fprintf(stderr, "usage: %s [--seconds N] [--latency-ms N] [--pairs N] [--rate N] [--only-logins-im] "
                         "[--only-changes]\n",
                         argv[0]);
            return 2;
        }
    }
    if (s.seconds < 1 || s.latency_ms < 0 || s.pairs < 1 || s.rate < 1) die("bad option value");
    const char* base = std::getenv("STARLING_BENCH_DIR");
    std::random_device rd;
    const auto root = std::filesystem::path(base != nullptr ? base : std::filesystem::temp_directory_path().c_str()) /
                      ("starling-slow-disk-" + std::to_string(rd()));
    std::printf("slow-disk fault: +%d ms on every WAL append and sync (logins: on every SST read instead; "
                "'stored' counts logins); %d chat pairs at %d msg/s each; %d s per phase\n",
                s.latency_ms, s.pairs, s.rate, s.seconds);
    std::printf("%-8s %-17s %-9s %8s %8s %10s %10s %10s %10s %10s\n", "archive", "storage stream", "disk", "sent",
                "received", "p50 ms", "p99 ms", "max ms", "stored", "stored/s");
    for (const bool archive : {false, true}) {
        for (const Stream stream :
             {Stream::roster, Stream::offline, Stream::logins, Stream::logins_im, Stream::changes}) {
            const bool logins = is_login_stream(stream);
            if (logins && archive) continue;  // the archive plays no part in a login
            if (only_logins_im && stream != Stream::logins_im) continue;
            if (only_changes && stream != Stream::changes) continue;
            const auto dir = root / (std::string(archive ? "on-" : "off-") +
                                     (stream == Stream::roster      ? "roster"
                                      : stream == Stream::offline   ? "offline"
                                      : stream == Stream::logins    ? "logins"
                                      : stream == Stream::logins_im ? "logins-im"
                                                                    : "changes"));
            std::filesystem::create_directories(dir);
            auto fs = std::make_shared<test::FaultyFileSystem>();
            {
                Shard shard(dir, archive, fs, logins);
                Driver d(shard, s, stream);
                const auto length = std::chrono::seconds(s.seconds);
                auto healthy = d.run(length);
                print_row(archive ? "on" : "off", stream, "healthy", healthy, s.seconds);
                if (logins) fs->set_read_latency(std::chrono::milliseconds(s.latency_ms));
                else fs->set_wal_latency(std::chrono::milliseconds(s.latency_ms));
                auto slow = d.run(length);
                print_row(archive ? "on" : "off", stream, "slow", slow, s.seconds);
                fs->heal();
            }
            std::filesystem::remove_all(dir);
        }
    }
    std::filesystem::remove_all(root);
    return 0;
}
