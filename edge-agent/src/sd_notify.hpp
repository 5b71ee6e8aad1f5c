// systemd's notify protocol (sd_notify(3)) without libsystemd: one datagram to $NOTIFY_SOCKET.
// READY=1 once the agent runs, WATCHDOG=1 from the event loop every WatchdogSec/2 (so a stuck
// loop gets the agent restarted), STOPPING=1 on the way out. No-ops when not under systemd.
#pragma once

#include <chrono>
#include <optional>
#include <string_view>

namespace starling::agent {

// Sends `state` (e.g. "READY=1"); false if there is no NOTIFY_SOCKET or the send failed.
bool sd_notify(std::string_view state) noexcept;
// Half of $WATCHDOG_USEC when the watchdog is on for this process ($WATCHDOG_PID, if set, is ours).
std::optional<std::chrono::microseconds> watchdog_interval() noexcept;

}  // namespace starling::agent
