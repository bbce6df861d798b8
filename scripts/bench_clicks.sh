#!/usr/bin/env bash
# bench_clicks.sh - clickstream throughput (a benchmark, not a test): parse +
# render all Balabit sessions (training_files and test_files, about 4.6M rows)
# into memory on one thread, rows/s; then render + write 2000 PNGs, images/s.
# Prints wall and CPU time: on a shared machine the wall time includes waiting
# for a core. Extra arguments go to wk_bench_clicks (--size, --window, --scale,
# --repeat, --png-max).
#
# usage: scripts/bench_clicks.sh [wk_bench_clicks options]
# env:   WHISKER_DATA (../shared/data), WHISKER_CACHE (build/), BUILD_DIR (build/), JOBS (2)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${WHISKER_CACHE:-$root/build}
build_dir=${BUILD_DIR:-$root/build}

balabit=$(WHISKER_CACHE=$cache "$root/scripts/balabit_unpack.sh")
if [[ ! -f $build_dir/CMakeCache.txt ]]; then
  cmake -S "$root" -B "$build_dir" -DCMAKE_BUILD_TYPE=Release -DWHISKER_CUDA=OFF >&2
fi
build_type=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$build_dir/CMakeCache.txt")
[[ $build_type == Release ]] || echo "bench_clicks.sh: warning: a '$build_type' build" >&2
cmake --build "$build_dir" --target wk_bench_clicks -j "${JOBS:-2}" >&2
png_dir=$(mktemp -d "${TMPDIR:-/tmp}/wk_bench_clicks.XXXXXX")
trap 'rm -rf "$png_dir"' EXIT
echo "load average $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores;" \
     "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
"$build_dir/wk_bench_clicks" "$balabit/training_files" "$balabit/test_files" \
  --png-dir "$png_dir" --png-max 2000 "$@"
