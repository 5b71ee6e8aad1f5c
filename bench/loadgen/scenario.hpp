// The main thread's side of a run: set up the sessions and workers, drive the phases
// (log in, then hold or chat), show progress, collect the results and write the summary.
#pragma once

#include "bench/loadgen/options.hpp"

namespace starling::loadgen {

// Returns the exit status: 0 ok, 1 failures over the thresholds or timeout.
int run_scenario(const Options& opt);

}  // namespace starling::loadgen
