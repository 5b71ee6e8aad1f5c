#include "broker/src/ctl/terminal.hpp"

#include <termios.h>
#include <unistd.h>

#include <cstdio>
#include <iostream>

namespace starling::ctl {

std::optional<std::string> read_password(const char* prompt) {
    const bool tty = ::isatty(STDIN_FILENO) != 0;
    termios old{};
    if (tty) {
        std::cerr << prompt << std::flush;
        ::tcgetattr(STDIN_FILENO, &old);
        termios quiet = old;
        quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
        ::tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
    }
    std::string line;
    const bool got = static_cast<bool>(std::getline(std::cin, line));
    if (tty) {
        ::tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
        std::cerr << '\n';
    }
    if (!got) return std::nullopt;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    return line;
}

ProgressLine::ProgressLine() : _tty(::isatty(STDERR_FILENO) != 0) {}

void ProgressLine::update(std::size_t done, std::size_t total, double seconds) {
    if (total == 0) return;
    const std::size_t decile = done * 10 / total;
    if (!_tty) {
        if (decile <= _last_decile) return;
        _last_decile = decile;
    }
    const long rate = seconds > 0 ? static_cast<long>(static_cast<double>(done) / seconds) : 0;
    std::fprintf(stderr, "%simported %zu/%zu (%ld/s)%s", _tty ? "\r" : "", done, total, rate, _tty ? "\x1b[K" : "\n");
    std::fflush(stderr);
    _drawn = true;
}

void ProgressLine::finish() {
    if (_tty && _drawn) std::fputc('\n', stderr);
    _drawn = false;
}

}  // namespace starling::ctl
