// Allow-listed programs run as child processes without blocking the agent's thread: spawned
// with posix_spawn (argv[0] absolute, no shell, no PATH), stdin /dev/null, stdout read through
// a pipe by the io_context (bounded: bytes past max_output are read and discarded), the whole
// process group killed with SIGKILL at the timeout, the child reaped without blocking.
//
// Why posix_spawn and not fork: under qemu-user (the cross-build smoke test), a fork()ed child
// of the emulated agent spins forever before it reaches exec; glibc's posix_spawn uses
// clone(CLONE_VM | CLONE_VFORK), which qemu-user turns into its own vfork path, and that works.
// Lives on: the io_context's thread.
#pragma once

#include <asio.hpp>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace starling::agent {

// What a program did: `status` is its exit status (0..255), 127 if it could not be executed
// (missing: like a shell's "command not found"), 126 if not executable, or -1 when it was
// killed (timeout or a signal) or the spawn itself failed.
struct ProgramResult {
    int status = -1;
    bool timed_out = false;
    std::string out;  // at most max_output bytes of stdout
};

using ProgramDone = std::function<void(ProgramResult)>;

// Starts argv; `done` runs exactly once on io's thread (never from inside this call). If io is
// destroyed first, the child is killed and reaped and `done` is not called.
void spawn_program(asio::io_context& io, const std::vector<std::string>& argv, std::uint32_t timeout_ms,
                   std::uint32_t max_output, ProgramDone done);

// The same, waiting for it (a private io_context): for tests and tools, never the agent's loop.
int run_program(const std::vector<std::string>& argv, std::uint32_t timeout_ms, std::uint32_t max_output,
                std::string& out);

}  // namespace starling::agent
