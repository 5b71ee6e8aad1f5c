// The service manager's notification protocol (sd_notify(3), systemd.service Type=notify),
// written out instead of linking libsystemd: one datagram of "KEY=VALUE\n" lines sent to the
// AF_UNIX socket named by $NOTIFY_SOCKET (a path, or "@name" for the abstract namespace).
// Without $NOTIFY_SOCKET (not started by systemd) every call is a no-op.
//
// Thread-safe: each call opens, sends and closes its own socket; the environment is read once,
// at construction, on the main thread.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace starling::util {

class SystemdNotifier {
public:
    // Reads NOTIFY_SOCKET and, for the watchdog, WATCHDOG_USEC (and WATCHDOG_PID: the watchdog
    // is ours only when it names this process or is absent).
    SystemdNotifier();

    bool enabled() const noexcept { return !_socket.empty(); }
    // Sends `state` ("READY=1", "WATCHDOG=1", "STOPPING=1", "STATUS=..."; several joined by
    // '\n'). False when not enabled or the send failed (systemd then acts on its own timeouts).
    bool notify(std::string_view state) const noexcept;

    // The watchdog period systemd expects (WatchdogSec=), when it asked for pings.
    std::optional<std::chrono::microseconds> watchdog() const noexcept { return _watchdog; }

private:
    std::string _socket;
    std::optional<std::chrono::microseconds> _watchdog;
};

}  // namespace starling::util
