#include "broker/src/util/sd_notify.hpp"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>

namespace starling::util {

namespace {

std::optional<unsigned long long> env_number(const char* name) {
    const char* v = std::getenv(name);
    if (v == nullptr || *v < '0' || *v > '9') return std::nullopt;  // strtoull would take "-5"
    char* end = nullptr;
    errno = 0;
    const unsigned long long n = std::strtoull(v, &end, 10);
    if (errno != 0 || end == v || *end != '\0') return std::nullopt;
    return n;
}

}  // namespace

SystemdNotifier::SystemdNotifier() {
    if (const char* s = std::getenv("NOTIFY_SOCKET"); s != nullptr) {
        const std::string path(s);
        // Only absolute paths and abstract names ('@'), as sd_notify(3); sun_path holds 107 bytes.
        if ((path.starts_with('/') || path.starts_with('@')) && path.size() < sizeof(sockaddr_un{}.sun_path))
            _socket = path;
    }
    const auto usec = env_number("WATCHDOG_USEC");
    const auto pid = env_number("WATCHDOG_PID");
    if (usec && *usec > 0 && (!pid || *pid == static_cast<unsigned long long>(::getpid())))
        _watchdog = std::chrono::microseconds(*usec);
}

bool SystemdNotifier::notify(std::string_view state) const noexcept {
    if (_socket.empty()) return false;
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, _socket.data(), _socket.size());
    socklen_t len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + _socket.size());
    if (addr.sun_path[0] == '@') addr.sun_path[0] = '\0';  // abstract namespace: no terminating NUL
    else len += 1;
    const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return false;
    const ssize_t n = ::sendto(fd, state.data(), state.size(), MSG_NOSIGNAL, reinterpret_cast<sockaddr*>(&addr), len);
    ::close(fd);
    return n == static_cast<ssize_t>(state.size());
}

}  // namespace starling::util
