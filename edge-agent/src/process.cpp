#include "edge-agent/src/process.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <memory>

extern char** environ;

namespace starling::agent {

namespace {

class Child : public std::enable_shared_from_this<Child> {
public:
    Child(asio::io_context& io, pid_t pid, int read_fd, std::uint32_t max_output, ProgramDone done)
        : _pid(pid), _pipe(io, read_fd), _deadline(io), _reap_timer(io), _max(max_output), _done(std::move(done)) {}

    ~Child() {
        // The io_context went away with the child still running: do not leave it behind.
        if (_pid > 0) {
            ::kill(-_pid, SIGKILL);
            int st = 0;
            while (::waitpid(_pid, &st, 0) < 0 && errno == EINTR) {
            }
        }
    }

    void start(std::uint32_t timeout_ms) {
        _deadline.expires_after(std::chrono::milliseconds(timeout_ms));
        _deadline.async_wait([self = shared_from_this()](const asio::error_code& ec) {
            if (ec || self->_finished) return;
            self->_result.timed_out = true;
            ::kill(-self->_pid, SIGKILL);  // its process group: a grandchild holding stdout too
            asio::error_code ignored;
            self->_pipe.close(ignored);
            self->reap();
        });
        read();
    }

private:
    void read() {
        _pipe.async_read_some(asio::buffer(_buf), [self = shared_from_this()](const asio::error_code& ec, std::size_t n) {
            if (self->_finished) return;
            if (n > 0 && self->_result.out.size() < self->_max)
                self->_result.out.append(self->_buf.data(), std::min<std::size_t>(n, self->_max - self->_result.out.size()));
            if (!ec) {
                self->read();  // past the bound: keep draining so the program is not stuck on a full pipe
                return;
            }
            if (ec == asio::error::operation_aborted) return;  // closed at the timeout
            asio::error_code ignored;
            self->_pipe.close(ignored);  // EOF: the program closed its stdout (usually: exited)
            self->reap();
        });
    }

    // Polls waitpid without blocking: 1 ms, doubling up to 50 ms, until it is gone. A program
    // that closed stdout but goes on is still killed by the deadline.
    void reap() {
        if (_finished) return;
        int st = 0;
        pid_t r;
        do {
            r = ::waitpid(_pid, &st, WNOHANG);
        } while (r < 0 && errno == EINTR);
        if (r == _pid || r < 0) {
            if (r > 0 && !_result.timed_out && WIFEXITED(st)) _result.status = WEXITSTATUS(st);
            _pid = 0;
            _finished = true;
            _deadline.cancel();
            auto done = std::move(_done);
            done(std::move(_result));
            return;
        }
        _reap_timer.expires_after(_reap_wait);
        if (_reap_wait < std::chrono::milliseconds(50)) _reap_wait *= 2;
        _reap_timer.async_wait([self = shared_from_this()](const asio::error_code& ec) {
            if (!ec) self->reap();
        });
    }

    pid_t _pid;
    asio::posix::stream_descriptor _pipe;
    asio::steady_timer _deadline;
    asio::steady_timer _reap_timer;
    std::chrono::milliseconds _reap_wait{1};
    std::uint32_t _max;
    ProgramDone _done;
    ProgramResult _result;
    bool _finished = false;
    std::array<char, 1024> _buf{};
};

// posix_spawn's file actions and attributes, released on every path.
struct SpawnSetup {
    posix_spawn_file_actions_t actions{};
    posix_spawnattr_t attr{};
    SpawnSetup() {
        ::posix_spawn_file_actions_init(&actions);
        ::posix_spawnattr_init(&attr);
    }
    ~SpawnSetup() {
        ::posix_spawn_file_actions_destroy(&actions);
        ::posix_spawnattr_destroy(&attr);
    }
    SpawnSetup(const SpawnSetup&) = delete;
    SpawnSetup& operator=(const SpawnSetup&) = delete;
};

}  // namespace

void spawn_program(asio::io_context& io, const std::vector<std::string>& argv, std::uint32_t timeout_ms,
                   std::uint32_t max_output, ProgramDone done) {
    auto fail = [&io, &done](int status) {
        ProgramResult r;
        r.status = status;
        asio::post(io, [done = std::move(done), r = std::move(r)]() mutable { done(std::move(r)); });
    };
    if (argv.empty() || argv[0].empty() || argv[0][0] != '/') return fail(127);
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) return fail(-1);
    SpawnSetup s;
    ::posix_spawn_file_actions_addopen(&s.actions, 0, "/dev/null", O_RDONLY, 0);
    ::posix_spawn_file_actions_adddup2(&s.actions, fds[1], 1);  // dup2 clears O_CLOEXEC on fd 1
    // Its own process group (killed as one at the timeout), no blocked signals, and the default
    // disposition for the signals the agent handles or ignores (ignored ones survive exec).
    sigset_t none;
    sigset_t defaults;
    sigemptyset(&none);
    sigemptyset(&defaults);
    for (int sig : {SIGPIPE, SIGHUP, SIGINT, SIGTERM, SIGCHLD, SIGUSR1, SIGUSR2}) sigaddset(&defaults, sig);
    ::posix_spawnattr_setsigmask(&s.attr, &none);
    ::posix_spawnattr_setsigdefault(&s.attr, &defaults);
    ::posix_spawnattr_setpgroup(&s.attr, 0);
    ::posix_spawnattr_setflags(&s.attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    std::vector<char*> args;
    args.reserve(argv.size() + 1);
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    pid_t pid = 0;
    const int err = ::posix_spawn(&pid, args[0], &s.actions, &s.attr, args.data(), environ);
    ::close(fds[1]);
    if (err != 0) {
        ::close(fds[0]);
        return fail(err == ENOENT || err == ENOTDIR ? 127 : err == EACCES || err == ENOEXEC ? 126 : -1);
    }
    ::fcntl(fds[0], F_SETFL, ::fcntl(fds[0], F_GETFL) | O_NONBLOCK);
    auto child = std::make_shared<Child>(io, pid, fds[0], max_output, std::move(done));
    child->start(timeout_ms);
}

int run_program(const std::vector<std::string>& argv, std::uint32_t timeout_ms, std::uint32_t max_output,
                std::string& out) {
    asio::io_context io;
    ProgramResult result;
    spawn_program(io, argv, timeout_ms, max_output, [&result](ProgramResult r) { result = std::move(r); });
    io.run();
    out = std::move(result.out);
    return result.status;
}

}  // namespace starling::agent
