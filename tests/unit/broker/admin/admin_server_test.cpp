#include "broker/src/admin/admin_server.hpp"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <thread>

#include "broker/src/admin/protocol.hpp"
#include "broker/src/admin/users.hpp"
#include "broker/src/storage/store.hpp"

namespace {

using namespace starling;

class TempDir {
public:
    TempDir() {
        std::random_device rd;
        // Short: sun_path holds 108 bytes.
        _path = std::filesystem::path("/tmp") / ("sta-" + std::to_string(rd()));
        std::filesystem::create_directories(_path);
    }
    ~TempDir() { std::filesystem::remove_all(_path); }
    const std::filesystem::path& path() const { return _path; }

private:
    std::filesystem::path _path;
};

int connect_to(const std::filesystem::path& p) {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, p.c_str(), sizeof addr.sun_path - 1);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        ::close(fd);
        return -1;
    }
    return fd;
}

void send_all(int fd, std::string_view data) {
    while (!data.empty()) {
        const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
        if (n <= 0) return;
        data.remove_prefix(static_cast<std::size_t>(n));
    }
}

std::string read_all(int fd) {
    std::string out;
    char buf[4096];
    ssize_t n;
    while ((n = ::read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<std::size_t>(n));
    return out;
}

// Sends `request` (and, for an import, the body, then EOF) and returns the whole answer.
std::string round_trip(const std::filesystem::path& socket, std::string_view request, std::string_view body = {},
                       bool end_stream = false) {
    const int fd = connect_to(socket);
    if (fd < 0) return "connect failed";
    send_all(fd, request);
    send_all(fd, body);
    if (end_stream) ::shutdown(fd, SHUT_WR);
    auto out = read_all(fd);
    ::close(fd);
    return out;
}

// The final line of an answer.
std::string last_line(const std::string& answer) {
    if (answer.empty()) return {};
    const auto end = answer.back() == '\n' ? answer.size() - 1 : answer.size();
    const auto nl = answer.rfind('\n', end - 1);
    return answer.substr(nl == std::string::npos ? 0 : nl + 1, end - (nl == std::string::npos ? 0 : nl + 1));
}

struct Broker {
    TempDir dir;
    std::unique_ptr<storage::Store> store = storage::Store::open((dir.path() / "db").string(), {.sync_writes = false});
    storage::AccountStore accounts{*store};
    std::filesystem::path socket = dir.path() / "admin.sock";
    std::optional<admin::AdminServer> server;

    explicit Broker(admin::AdminHooks hooks = {}) {
        server.emplace(socket, accounts, admin::AdminConfig{{"example.com"}, 4096, 2}, std::move(hooks));
        server->start();
    }
};

TEST(AdminServer, SocketIsCreatedWithMode0600AndRemovedAtStop) {
    Broker b;
    struct stat st {};
    ASSERT_EQ(::stat(b.socket.c_str(), &st), 0);
    EXPECT_TRUE(S_ISSOCK(st.st_mode));
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    b.server->stop();
    b.server->stop();  // idempotent
    EXPECT_FALSE(std::filesystem::exists(b.socket));
}

TEST(AdminServer, UserCommandsRoundTrip) {
    Broker b;
    EXPECT_EQ(round_trip(b.socket, "user\tadd\talice@example.com\ts3cret pass\n"), "ok\tadded alice@example.com\n");
    EXPECT_EQ(last_line(round_trip(b.socket, "user\tadd\tAlice@example.com\tx\n")),
              "error\talready-exists\taccount alice@example.com already exists");
    EXPECT_EQ(last_line(round_trip(b.socket, "user\tadd\tbob@other.org\tx\n")).rfind("error\tinvalid-jid\t", 0), 0u);
    EXPECT_EQ(round_trip(b.socket, "user\tlist\n"), "out\talice@example.com\nok\t1 accounts\n");
    EXPECT_EQ(round_trip(b.socket, "user\tpasswd\talice@example.com\tnew\n"),
              "ok\tpassword changed for alice@example.com\n");
    EXPECT_EQ(last_line(round_trip(b.socket, "user\tpasswd\tnobody@example.com\tnew\n")).rfind("error\tnot-found", 0),
              0u);
    EXPECT_EQ(round_trip(b.socket, "user\tdel\talice@example.com\n"), "ok\tdeleted alice@example.com\n");
    EXPECT_EQ(last_line(round_trip(b.socket, "user\tdel\talice@example.com\n")).rfind("error\tnot-found", 0), 0u);
    EXPECT_EQ(last_line(round_trip(b.socket, "frobnicate\n")).rfind("error\tbad-request", 0), 0u);
    EXPECT_EQ(round_trip(b.socket, "ping\n"), "ok\tpong\n");
}

TEST(AdminServer, HooksAreCalledOrReportedNotAvailable) {
    {
        Broker b;
        EXPECT_EQ(last_line(round_trip(b.socket, "sessions\n")), "error\tnot-available\tsessions: not available");
        EXPECT_EQ(last_line(round_trip(b.socket, "kick\ta@example.com\n")), "error\tnot-available\tkick: not available");
    }
    std::string kicked;
    std::string silenced;
    Broker b(admin::AdminHooks{
        [] { return std::string("a@example.com/phone shard=0\nb@example.com/x shard=1"); },
        [&](std::string_view jid) {
            kicked = jid;
            return jid == "a@example.com/phone";
        },
        [] { return std::string("sessions 2\n"); },
        [&](std::string_view jid, bool on) {
            silenced = std::string(jid) + (on ? " on" : " off");
            return std::string();
        },
        [](std::string_view service) {
            return admin::AdminHooks::Answer{service != "nowhere", "feed-a\nfeed-b\n"};
        },
        [](std::string_view service, std::string_view node) {
            return admin::AdminHooks::Answer{node == "feed-a", node == "feed-a" ? "node feed-a\nservice " + std::string(service)
                                                                                 : "no node " + std::string(node)};
        },
        [](std::string_view, std::string_view node) {
            return admin::AdminHooks::Answer{node == "feed-a", node == "feed-a" ? "deleted feed-a" : "no node"};
        },
        {},  // backup
        {},  // fast_list
        {},  // fast_revoke
        {},  // account_deleted
    });
    EXPECT_EQ(round_trip(b.socket, "sessions\n"),
              "out\ta@example.com/phone shard=0\nout\tb@example.com/x shard=1\nok\t\n");
    EXPECT_EQ(round_trip(b.socket, "stats\n"), "out\tsessions 2\nok\t\n");
    EXPECT_EQ(round_trip(b.socket, "kick\tA@Example.COM/phone\n"), "ok\tkicked a@example.com/phone\n");
    EXPECT_EQ(kicked, "a@example.com/phone");  // normalised before the hook sees it
    EXPECT_EQ(last_line(round_trip(b.socket, "kick\t@@\n")).rfind("error\tinvalid-jid", 0), 0u);
    EXPECT_EQ(last_line(round_trip(b.socket, "kick\tz@example.com\n")), "error\tnot-found\tno session for z@example.com");

    // presence silent: an existing account, normalised, on or off.
    EXPECT_EQ(last_line(round_trip(b.socket, "presence\tsilent\tdev@example.com\ton\n")),
              "error\tnot-found\tno account dev@example.com");
    EXPECT_EQ(round_trip(b.socket, "user\tadd\tdev@example.com\tpw\n"), "ok\tadded dev@example.com\n");
    EXPECT_EQ(last_line(round_trip(b.socket, "presence\tsilent\tdev@example.com\tmaybe\n")).rfind("error\tbad-request", 0),
              0u);
    EXPECT_EQ(last_line(round_trip(b.socket, "presence\tsilent\tDev@Example.com\ton\n")).rfind("ok\tdev@example.com is silent", 0),
              0u);
    EXPECT_EQ(silenced, "dev@example.com on");
    EXPECT_EQ(last_line(round_trip(b.socket, "presence\tsilent\tdev@example.com\toff\n")).rfind("ok\t", 0), 0u);
    EXPECT_EQ(silenced, "dev@example.com off");

    // pubsub list [SERVICE] | show SERVICE NODE | delete SERVICE NODE.
    EXPECT_EQ(round_trip(b.socket, "pubsub\tlist\n"), "out\tfeed-a\nout\tfeed-b\nok\t\n");
    EXPECT_EQ(last_line(round_trip(b.socket, "pubsub\tlist\tnowhere\n")).rfind("error\tnot-found", 0), 0u);
    EXPECT_EQ(round_trip(b.socket, "pubsub\tshow\tps.example.com\tfeed-a\n"),
              "out\tnode feed-a\nout\tservice ps.example.com\nok\t\n");
    EXPECT_EQ(last_line(round_trip(b.socket, "pubsub\tshow\tps.example.com\tzzz\n")), "error\tnot-found\tno node zzz");
    EXPECT_EQ(round_trip(b.socket, "pubsub\tdelete\tps.example.com\tfeed-a\n"), "ok\tdeleted feed-a\n");
    EXPECT_EQ(last_line(round_trip(b.socket, "pubsub\tshow\tps.example.com\n")).rfind("error\tbad-request", 0), 0u);
}

TEST(AdminServer, FastListAndRevokeReachTheirHooksForExistingAccountsOnly) {
    {
        Broker b;
        EXPECT_EQ(last_line(round_trip(b.socket, "fast\tlist\tdev@example.com\n")), "error\tnot-available\tfast: not available");
    }
    std::string listed, revoked;
    admin::AdminHooks hooks;
    hooks.fast_list = [&](std::string_view bare) {
        listed = bare;
        return admin::AdminHooks::Answer{true, "issued=1 expiry=2 count=0 mechanism=HT-SHA-256-NONE client=ua\n"};
    };
    hooks.fast_revoke = [&](std::string_view bare) {
        revoked = bare;
        return admin::AdminHooks::Answer{true, "revoked 1 FAST token(s) of " + std::string(bare)};
    };
    Broker b(std::move(hooks));
    EXPECT_EQ(last_line(round_trip(b.socket, "fast\trevoke\tdev@example.com\n")), "error\tnot-found\tno account dev@example.com");
    EXPECT_TRUE(revoked.empty());
    EXPECT_EQ(round_trip(b.socket, "user\tadd\tdev@example.com\tpw\n"), "ok\tadded dev@example.com\n");
    EXPECT_EQ(round_trip(b.socket, "fast\tlist\tDev@Example.com\n"),
              "out\tissued=1 expiry=2 count=0 mechanism=HT-SHA-256-NONE client=ua\nok\t\n");
    EXPECT_EQ(listed, "dev@example.com");
    EXPECT_EQ(round_trip(b.socket, "fast\trevoke\tdev@example.com\n"), "ok\trevoked 1 FAST token(s) of dev@example.com\n");
    EXPECT_EQ(revoked, "dev@example.com");
    EXPECT_EQ(last_line(round_trip(b.socket, "fast\tlist\t@@\n")).rfind("error\tinvalid-jid", 0), 0u);
}

TEST(AdminServer, ImportStreamsLinesAndReportsTheResult) {
    Broker b;
    std::string body = "# fleet\n";
    for (int i = 0; i < 100; ++i) body += "dev" + std::to_string(i) + "@example.com,pw" + std::to_string(i) + "\n";
    body += "last@example.com,no-newline";  // the final line may lack its '\n'
    const auto answer = round_trip(b.socket, "user\timport\n", body, true);
    EXPECT_EQ(last_line(answer).rfind("ok\timported 101 accounts", 0), 0u) << answer;
    EXPECT_NE(answer.find("progress\t101\t101\t"), std::string::npos) << answer;
    EXPECT_EQ(admin::list_users(b.accounts)->size(), 101u);
}

TEST(AdminServer, ImportWithABadLineWritesNothing) {
    Broker b;
    const std::string body = "a@example.com,1\nb@example.com,2\nthis line has no comma\nc@example.com,3\n";
    const auto answer = round_trip(b.socket, "user\timport\n", body, true);
    EXPECT_EQ(answer, "error\tbad-line\tline 3: expected 'jid,password'\n");
    EXPECT_TRUE(admin::list_users(b.accounts)->empty());
}

TEST(AdminServer, ConcurrentImportsBothComplete) {
    Broker b;
    const auto body = [](const std::string& prefix) {
        std::string s;
        for (int i = 0; i < 50; ++i) s += prefix + std::to_string(i) + "@example.com,pw\n";
        return s;
    };
    std::string a, c;
    std::thread ta([&] { a = round_trip(b.socket, "user\timport\n", body("a"), true); });
    std::thread tc([&] { c = round_trip(b.socket, "user\timport\n", body("c"), true); });
    // Meanwhile the admin thread still answers.
    EXPECT_EQ(round_trip(b.socket, "ping\n"), "ok\tpong\n");
    ta.join();
    tc.join();
    EXPECT_EQ(last_line(a).rfind("ok\timported 50", 0), 0u) << a;
    EXPECT_EQ(last_line(c).rfind("ok\timported 50", 0), 0u) << c;
    EXPECT_EQ(admin::list_users(b.accounts)->size(), 100u);
}

TEST(AdminServer, LineAtTheLimitIsReadAndOnePastItRefused) {
    Broker b;
    // A request line of exactly k_max_line bytes (plus '\n') is read: here an unknown request.
    const std::string at_limit(admin::k_max_line, 'x');
    EXPECT_EQ(last_line(round_trip(b.socket, at_limit + "\n")).rfind("error\tbad-request", 0), 0u);
    const std::string past(admin::k_max_line + 1, 'x');
    EXPECT_EQ(last_line(round_trip(b.socket, past + "\n")).rfind("error\ttoo-large", 0), 0u);
    // Inside an import too.
    const auto answer = round_trip(b.socket, "user\timport\n", "a@example.com," + past + "\n", true);
    EXPECT_EQ(last_line(answer).rfind("error\ttoo-large", 0), 0u) << answer;
}

TEST(AdminServer, RefusesToStartWhenAnotherServerAnswers) {
    Broker b;
    storage::AccountStore accounts(*b.store);
    admin::AdminServer second(b.socket, accounts, {}, {});
    try {
        second.start();
        FAIL() << "started twice on one socket";
    } catch (const admin::AdminStartError& e) {
        EXPECT_NE(std::string(e.what()).find("another starlingd answers"), std::string::npos) << e.what();
    }
    // The first one still works.
    EXPECT_EQ(round_trip(b.socket, "ping\n"), "ok\tpong\n");
}

TEST(AdminServer, RemovesAStaleSocketAtStart) {
    TempDir dir;
    const auto path = dir.path() / "admin.sock";
    {
        // A socket file nobody listens on, as a crashed broker leaves it.
        const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
        ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
        ::close(fd);
    }
    ASSERT_TRUE(std::filesystem::exists(path));
    auto store = storage::Store::open((dir.path() / "db").string(), {.sync_writes = false});
    storage::AccountStore accounts(*store);
    admin::AdminServer server(path, accounts, {}, {});
    ASSERT_NO_THROW(server.start());
    EXPECT_EQ(round_trip(path, "ping\n"), "ok\tpong\n");
}

TEST(AdminServer, RefusesAPathThatIsNotASocket) {
    TempDir dir;
    const auto path = dir.path() / "admin.sock";
    { std::ofstream(path) << "precious"; }
    auto store = storage::Store::open((dir.path() / "db").string(), {.sync_writes = false});
    storage::AccountStore accounts(*store);
    admin::AdminServer server(path, accounts, {}, {});
    EXPECT_THROW(server.start(), admin::AdminStartError);
    EXPECT_TRUE(std::filesystem::exists(path));
}

// SO_PEERCRED: another uid is refused even if the file mode lets it connect.
TEST(AdminServer, RefusesAPeerOfAnotherUid) {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root to become another user";
    Broker b;
    ASSERT_EQ(::chmod(b.socket.c_str(), 0666), 0);  // let the file permission pass, to test the next check
    int pipefd[2];
    ASSERT_EQ(::pipe(pipefd), 0);
    const pid_t pid = ::fork();
    if (pid == 0) {
        ::close(pipefd[0]);
        if (::setuid(65534) != 0) ::_exit(2);
        const int fd = connect_to(b.socket);
        if (fd < 0) ::_exit(3);
        const char req[] = "user\tlist\n";
        // The broker may have answered and closed already: no SIGPIPE, and read on regardless.
        (void)::send(fd, req, sizeof req - 1, MSG_NOSIGNAL);
        char buf[512];
        ssize_t n;
        while ((n = ::read(fd, buf, sizeof buf)) > 0) {
            if (::write(pipefd[1], buf, static_cast<std::size_t>(n)) < 0) ::_exit(5);
        }
        ::_exit(0);
    }
    ::close(pipefd[1]);
    const auto answer = read_all(pipefd[0]);
    ::close(pipefd[0]);
    int status = 0;
    ::waitpid(pid, &status, 0);
    ASSERT_TRUE(WIFEXITED(status));
    ASSERT_EQ(WEXITSTATUS(status), 0);
    EXPECT_EQ(answer.rfind("error\tpermission-denied\t", 0), 0u) << answer;
}

TEST(AdminServer, StopDuringAnImportCancelsIt) {
    Broker b;
    std::string body;
    for (int i = 0; i < 3000; ++i) body += "d" + std::to_string(i) + "@example.com,pw\n";
    const int fd = connect_to(b.socket);
    ASSERT_GE(fd, 0);
    send_all(fd, "user\timport\n");
    send_all(fd, body);
    ::shutdown(fd, SHUT_WR);
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    b.server->stop();
    ::close(fd);
    EXPECT_TRUE(admin::list_users(b.accounts)->empty());
}

}  // namespace
