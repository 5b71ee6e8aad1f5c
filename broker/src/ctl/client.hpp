// starlingctl's end of the admin socket (broker/src/admin/README.md): blocking POSIX I/O, one
// request per connection.
#pragma once

#include <cstdio>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace starling::ctl {

enum class ConnectStatus {
    connected,
    not_running,        // no socket file, or nobody listens on it (stale)
    permission_denied,  // the socket is not ours: the broker runs as another user
    error,
};

class AdminClient {
public:
    AdminClient() = default;
    ~AdminClient();
    AdminClient(AdminClient&& o) noexcept : _fd(o._fd), _in(std::move(o._in)) { o._fd = -1; }
    AdminClient(const AdminClient&) = delete;
    AdminClient& operator=(const AdminClient&) = delete;

    // `detail` gets errno's text on failure.
    ConnectStatus connect(const std::string& path, std::string& detail);

    // Sends `data` whole. False when the broker closed (it may have answered: read on).
    bool send_all(std::string_view data);
    // Ends our side: the broker sees EOF (the end of an import stream).
    void shutdown_write();
    // The next line without '\n'; nullopt at EOF or error.
    std::optional<std::string> read_line();

private:
    int _fd = -1;
    std::string _in;
};

// Reads the answer to one request (out/progress/ok/error lines) and reports it: "out" text to
// stdout, progress through `on_progress` (may be empty), the final message to stdout (ok) or
// stderr (error). Returns the exit code: 0 ok, 1 error or no answer.
int read_answer(AdminClient& client, const std::function<void(std::size_t done, std::size_t total, double s)>& on_progress);

}  // namespace starling::ctl
