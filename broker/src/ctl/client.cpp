#include "broker/src/ctl/client.hpp"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iostream>

#include "broker/src/admin/protocol.hpp"

namespace starling::ctl {

AdminClient::~AdminClient() {
    if (_fd >= 0) ::close(_fd);
}

ConnectStatus AdminClient::connect(const std::string& path, std::string& detail) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.size() >= sizeof addr.sun_path) {
        detail = "socket path too long";
        return ConnectStatus::error;
    }
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    _fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (_fd < 0) {
        detail = std::strerror(errno);
        return ConnectStatus::error;
    }
    if (::connect(_fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0) return ConnectStatus::connected;
    const int e = errno;
    detail = std::strerror(e);
    ::close(_fd);
    _fd = -1;
    if (e == ENOENT || e == ECONNREFUSED) return ConnectStatus::not_running;
    if (e == EACCES || e == EPERM) return ConnectStatus::permission_denied;
    return ConnectStatus::error;
}

bool AdminClient::send_all(std::string_view data) {
    while (!data.empty()) {
        // MSG_NOSIGNAL: a broker that closed early (bad import line) must not kill us by SIGPIPE.
        const ssize_t n = ::send(_fd, data.data(), data.size(), MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            return false;
        }
        data.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
}

void AdminClient::shutdown_write() { ::shutdown(_fd, SHUT_WR); }

std::optional<std::string> AdminClient::read_line() {
    for (;;) {
        const std::size_t nl = _in.find('\n');
        if (nl != std::string::npos) {
            std::string line = _in.substr(0, nl);
            _in.erase(0, nl + 1);
            return line;
        }
        char buf[16384];
        const ssize_t n = ::read(_fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return std::nullopt;
        _in.append(buf, static_cast<std::size_t>(n));
    }
}

int read_answer(AdminClient& client,
                const std::function<void(std::size_t done, std::size_t total, double s)>& on_progress) {
    namespace p = admin::protocol;
    while (auto line = client.read_line()) {
        const auto f = p::split_line(*line);
        if (f[0] == p::k_out && f.size() >= 2) {
            std::cout << f[1] << '\n';
        } else if (f[0] == p::k_progress && f.size() >= 4) {
            if (on_progress) {
                on_progress(std::stoull(std::string(f[1])), std::stoull(std::string(f[2])),
                            std::stod(std::string(f[3])));
            }
        } else if (f[0] == p::k_ok) {
            if (f.size() >= 2 && !f[1].empty()) std::cout << f[1] << '\n';
            std::cout.flush();
            return 0;
        } else if (f[0] == p::k_error) {
            std::cout.flush();
            std::cerr << "starlingctl: " << (f.size() >= 3 ? f[2] : std::string_view("error")) << '\n';
            return 1;
        }
    }
    std::cout.flush();
    std::cerr << "starlingctl: starlingd closed the admin connection without an answer\n";
    return 1;
}

}  // namespace starling::ctl
