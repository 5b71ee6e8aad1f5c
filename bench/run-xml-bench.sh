#!/usr/bin/env bash
# Builds xml_bench, runs it on one core (5 repetitions, aggregates only) and prints the median
# throughput of each benchmark and Starling's ratios against expat and pugixml.
#
# Usage: bench/run-xml-bench.sh [BUILD_DIR] [-- extra Google Benchmark flags]
#   no BUILD_DIR: the release preset (cmake --preset release; build dir build/release)
#   BUILD_DIR:    configured here if it has no CMakeCache.txt yet (RelWithDebInfo, only the xmpp
#                 core and the benchmarks), then `cmake --build BUILD_DIR --target xml_bench`
# Env: XML_BENCH_CPU (default 1), XML_BENCH_OUT (default BUILD_DIR/bench/xml_bench.json).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

build_dir=""
if [[ $# -gt 0 && $1 != "--" ]]; then
  build_dir=$1
  shift
fi
[[ $# -gt 0 && $1 == "--" ]] && shift

if [[ -z $build_dir ]]; then
  build_dir=build/release
  cmake --preset release >/dev/null
  cmake --build --preset release --target xml_bench
else
  if [[ ! -f $build_dir/CMakeCache.txt ]]; then
    cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DSTARLING_BUILD_TESTS=OFF -DSTARLING_BUILD_BROKER=OFF -DSTARLING_BUILD_AGENT=OFF \
      -DSTARLING_BUILD_SHIM=OFF -DSTARLING_BUILD_BENCH=ON >/dev/null
  fi
  cmake --build "$build_dir" --target xml_bench
fi

bin=$build_dir/bench/xml_bench
out=${XML_BENCH_OUT:-$build_dir/bench/xml_bench.json}
cpu=${XML_BENCH_CPU:-1}

pin=()
if command -v taskset >/dev/null && taskset -c "$cpu" true 2>/dev/null; then
  pin=(taskset -c "$cpu")
else
  echo "run-xml-bench: not pinned (taskset missing or CPU $cpu not available)" >&2
fi

cmd=("${pin[@]}" "$bin" --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
     --benchmark_format=json "--benchmark_out=$out" "$@")
echo "run-xml-bench: ${cmd[*]}" >&2
"${cmd[@]}" >/dev/null

python3 - "$out" <<'EOF'
import json, sys

with open(sys.argv[1]) as f:
    doc = json.load(f)
med = {}
cv = {}
for b in doc["benchmarks"]:
    if b.get("aggregate_name") == "median" and "bytes_per_second" in b:
        med[b["run_name"]] = b["bytes_per_second"] / 1e6  # MB/s, 10^6 bytes
    elif b.get("aggregate_name") == "cv":
        cv[b["run_name"]] = b["cpu_time"]  # spread of the 5 repetitions, stddev / mean
ctx = doc["context"]
print("xml_bench: %s, corpus %s bytes, %s, %d CPUs, load %s" % (
    ctx.get("date", "?"), ctx.get("corpus_bytes", "?"), ctx.get("host_name", "?"),
    ctx.get("num_cpus", 0), ctx.get("load_avg", "?")))
print()
print("| benchmark | median MB/s | cv of 5 reps |")
print("|---|---:|---:|")
for name in ["BM_Starling", "BM_Expat", "BM_Pugixml", "BM_PugixmlMinimal", "BM_Memcpy"]:
    if name in med:
        print("| %s | %.1f | %s |" % (name, med[name],
              "%.1f%%" % (100 * cv[name]) if name in cv else "n/a"))

def ratio(a, b):
    return "%.2fx" % (med[a] / med[b]) if a in med and b in med else "n/a"

def minus_copy(name):
    # pugixml's time per byte without the corpus copy that BM_Memcpy measures alone
    if name not in med or "BM_Memcpy" not in med:
        return None
    return 1.0 / (1.0 / med[name] - 1.0 / med["BM_Memcpy"])

print()
print("| ratio | median |")
print("|---|---:|")
print("| Starling / Expat (goal >= 3x) | %s |" % ratio("BM_Starling", "BM_Expat"))
print("| Starling / Pugixml (parse_default, goal > 1x) | %s |" % ratio("BM_Starling", "BM_Pugixml"))
print("| Starling / PugixmlMinimal (parse_minimal) | %s |" % ratio("BM_Starling", "BM_PugixmlMinimal"))
for name in ["BM_Pugixml", "BM_PugixmlMinimal"]:
    v = minus_copy(name)
    if v:
        print("| Starling / %s without the copy (%.1f MB/s) | %.2fx |"
              % (name[3:], v, med["BM_Starling"] / v))
if not med:
    sys.exit("run-xml-bench: no medians in the output")
missing = {"BM_Starling", "BM_Expat", "BM_Pugixml"} - med.keys()
if missing:
    print("run-xml-bench: no median for " + ", ".join(sorted(missing)) + " (filtered?)",
          file=sys.stderr)
EOF
echo "run-xml-bench: full results in $out"
