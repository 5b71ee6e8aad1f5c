// starlingctl's terminal helpers: reading a password without echo, and the import progress line.
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>

namespace starling::ctl {

// One line from stdin; on a tty, `prompt` goes to stderr and echo is off while typing.
// nullopt at EOF.
std::optional<std::string> read_password(const char* prompt);

// "imported 40000/100000 (12000/s)" on stderr: rewritten in place on a tty, else printed at each
// 10% step (logs and CI stay short).
class ProgressLine {
public:
    ProgressLine();
    void update(std::size_t done, std::size_t total, double seconds);
    // Ends the in-place line (tty) so that the next output starts on its own line.
    void finish();

private:
    bool _tty;
    bool _drawn = false;
    std::size_t _last_decile = 0;
};

}  // namespace starling::ctl
