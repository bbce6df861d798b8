#!/usr/bin/env bash
# fuzz.sh - builds the libFuzzer targets (fuzz/fuzz_*.c) with clang, ASan and
# UBSan in build-fuzz/, then runs each for SECONDS (default 30), one after the
# other. Fails (exit 1) on any crash, leak, timeout (an input over 10 s), an
# input over 2 GiB of memory or a single allocation over it; the input that
# did it is left in build-fuzz/artifacts/TARGET/ - replay it with
# `build-fuzz/fuzz/TARGET FILE`, fix the bug and commit the file to
# fuzz/regressions/TARGET/ (ctest replays it in every build).
#
#   bash scripts/fuzz.sh               # every target, 30 s each
#   bash scripts/fuzz.sh 600 fuzz_png  # one target, 10 minutes
#   FUZZ_BUILD_DIR=dir FUZZ_JOBS=2 bash scripts/fuzz.sh
#
# The corpus each run grows is kept in build-fuzz/corpus/TARGET (not
# committed); the committed seeds are fuzz/corpus/TARGET. The last lines of
# each log (build-fuzz/logs/TARGET.log) give the executions and coverage.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${FUZZ_BUILD_DIR:-$root/build-fuzz}"
secs="${1:-30}"
shift || true
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
  for f in "$root"/fuzz/fuzz_*.c; do
    t="$(basename "$f" .c)"
    [ "$t" = fuzz_util ] || targets+=("$t")
  done
fi
command -v clang >/dev/null || { echo "fuzz.sh: clang not found (scripts/setup.sh installs it)" >&2; exit 1; }

mkdir -p "$build"
cmake -S "$root" -B "$build" -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DWHISKER_FUZZ=ON -DWHISKER_CUDA=OFF -DBUILD_TESTING=OFF \
  -DWHISKER_WERROR=OFF > "$build/configure.log" 2>&1 || { cat "$build/configure.log"; exit 1; }
cmake --build "$build" -j "${FUZZ_JOBS:-2}" --target "${targets[@]}"

mkdir -p "$build/logs"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
export WHISKER_LOG=error WHISKER_THREADS=1
failed=()
for t in "${targets[@]}"; do
  corpus="$build/corpus/$t" artifacts="$build/artifacts/$t" log="$build/logs/$t.log"
  mkdir -p "$corpus" "$artifacts"
  seeds=("$root/fuzz/corpus/$t")
  [ -d "$root/fuzz/regressions/$t" ] && seeds+=("$root/fuzz/regressions/$t")
  echo "== $t: ${secs}s"
  set +e
  "$build/fuzz/$t" -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -detect_leaks=1 \
    -print_final_stats=1 -artifact_prefix="$artifacts/" "$corpus" "${seeds[@]}" > "$log" 2>&1
  rc=$?
  set -e
  # the last status line (#N DONE/pulse cov: ... ft: ...) and the execution count
  grep -E '^#[0-9]+' "$log" | tail -n 1 || true
  grep -E 'stat::number_of_executed_units|stat::peak_rss_mb' "$log" || true
  if [ "$rc" -ne 0 ]; then
    echo "fuzz.sh: $t FAILED (exit $rc); the end of $log:" >&2
    tail -n 40 "$log" >&2
    failed+=("$t")
  fi
done
if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz.sh: failed: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz.sh: ${#targets[@]} targets, ${secs}s each, no crash"
