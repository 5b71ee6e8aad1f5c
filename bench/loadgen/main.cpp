// starling-loadgen: an XMPP load generator (issue 6). See options.cpp for the command line and
// bench/loadgen/README.md for what it measures and how.
#include <csignal>
#include <cstdio>
#include <exception>

#include "bench/loadgen/options.hpp"
#include "bench/loadgen/scenario.hpp"

int main(int argc, char** argv) {
    using namespace starling::loadgen;
    std::signal(SIGPIPE, SIG_IGN);
    Options opt;
    try {
        if (!parse_options(argc, argv, opt)) return 0;
    } catch (const UsageError& e) {
        std::fprintf(stderr, "starling-loadgen: %s\n(see starling-loadgen --help)\n", e.what());
        return 2;
    }
    try {
        return run_scenario(opt);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "starling-loadgen: %s\n", e.what());
        return 1;
    }
}
