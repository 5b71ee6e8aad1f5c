// The systemd notify protocol (sd_notify(3)) as the service manager sees it: datagrams on the
// socket named by NOTIFY_SOCKET, path or abstract; the watchdog period from WATCHDOG_USEC.
#include "broker/src/util/sd_notify.hpp"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include <gtest/gtest.h>

namespace {

using starling::util::SystemdNotifier;

// A datagram socket bound like systemd's; `name` starting with '@' is abstract.
struct Listener {
    int fd = -1;
    explicit Listener(const std::string& name) {
        fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        sockaddr_un a{};
        a.sun_family = AF_UNIX;
        std::memcpy(a.sun_path, name.data(), name.size());
        socklen_t len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size());
        if (name[0] == '@') a.sun_path[0] = '\0';
        else len += 1;
        EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), len), 0) << std::strerror(errno);
        timeval tv{2, 0};
        ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    }
    ~Listener() { ::close(fd); }
    std::string receive() const {
        char buf[512];
        const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string();
    }
};

struct EnvGuard {
    ~EnvGuard() {
        ::unsetenv("NOTIFY_SOCKET");
        ::unsetenv("WATCHDOG_USEC");
        ::unsetenv("WATCHDOG_PID");
    }
};

TEST(SystemdNotifier, WithoutNotifySocketDoesNothing) {
    EnvGuard g;
    ::unsetenv("NOTIFY_SOCKET");
    SystemdNotifier n;
    EXPECT_FALSE(n.enabled());
    EXPECT_FALSE(n.notify("READY=1"));
    EXPECT_FALSE(n.watchdog());
}

TEST(SystemdNotifier, SendsOneDatagramToAPathSocket) {
    EnvGuard g;
    const std::string path = "/tmp/starling-notify-test-" + std::to_string(::getpid());
    ::unlink(path.c_str());
    Listener l(path);
    ::setenv("NOTIFY_SOCKET", path.c_str(), 1);
    SystemdNotifier n;
    ASSERT_TRUE(n.enabled());
    EXPECT_TRUE(n.notify("READY=1\nSTATUS=serving"));
    EXPECT_EQ(l.receive(), "READY=1\nSTATUS=serving");
    ::unlink(path.c_str());
}

TEST(SystemdNotifier, SendsToAnAbstractSocket) {
    EnvGuard g;
    const std::string name = "@starling-notify-test-" + std::to_string(::getpid());
    Listener l(name);
    ::setenv("NOTIFY_SOCKET", name.c_str(), 1);
    SystemdNotifier n;
    EXPECT_TRUE(n.notify("WATCHDOG=1"));
    EXPECT_EQ(l.receive(), "WATCHDOG=1");
}

TEST(SystemdNotifier, RefusesARelativeOrTooLongSocketName) {
    EnvGuard g;
    ::setenv("NOTIFY_SOCKET", "relative/path", 1);
    EXPECT_FALSE(SystemdNotifier().enabled());
    ::setenv("NOTIFY_SOCKET", ("/" + std::string(107, 'x')).c_str(), 1);
    EXPECT_FALSE(SystemdNotifier().enabled());
    ::setenv("NOTIFY_SOCKET", ("/" + std::string(106, 'x')).c_str(), 1);  // 107 bytes: the most sun_path holds
    EXPECT_TRUE(SystemdNotifier().enabled());
}

TEST(SystemdNotifier, TheWatchdogIsOursOnlyForOurPid) {
    EnvGuard g;
    ::setenv("WATCHDOG_USEC", "3000000", 1);
    EXPECT_EQ(SystemdNotifier().watchdog(), std::chrono::microseconds(3'000'000));
    ::setenv("WATCHDOG_PID", std::to_string(::getpid()).c_str(), 1);
    EXPECT_EQ(SystemdNotifier().watchdog(), std::chrono::microseconds(3'000'000));
    ::setenv("WATCHDOG_PID", std::to_string(::getpid() + 1).c_str(), 1);
    EXPECT_FALSE(SystemdNotifier().watchdog());
    ::unsetenv("WATCHDOG_PID");
    for (const char* bad : {"0", "", "12x", "-5"}) {
        ::setenv("WATCHDOG_USEC", bad, 1);
        EXPECT_FALSE(SystemdNotifier().watchdog()) << bad;
    }
}

}  // namespace
