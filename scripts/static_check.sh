#!/usr/bin/env bash
# static_check.sh - the clang static analyzer (scan-build) over whisker's own
# C code: the library, the CLI, tools/, tests/ (the GPU emulation's host fakes
# of CUDA, cuDNN, cuBLAS and NCCL in tests/emu included) and fuzz/ (src/cuda's
# host code and the fakes when the CUDA toolkit is present; .cu files go
# through nvcc and are not analysed). The protoc-c output is built but not
# reported on. Fails (exit 1) on any finding, and on a source file the
# analyzer could not analyse; the HTML report is left in BUILD/report/.
#
#   bash scripts/static_check.sh                 # build-scan/
#   SCAN_BUILD_DIR=dir bash scripts/static_check.sh
#
# scan-build comes with Debian's clang-tools (scripts/setup.sh installs it).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${SCAN_BUILD_DIR:-$root/build-scan}"
command -v scan-build >/dev/null ||
  { echo "static_check.sh: scan-build not found (apt-get install clang-tools; scripts/setup.sh does)" >&2; exit 1; }
if ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then
  export PATH="/usr/local/cuda/bin:$PATH"
fi

# Debug: the analyzer follows the assertions as written; warnings are the
# compilers' business (the Release build has -Werror), findings are the analyzer's.
mkdir -p "$build"
scan-build cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Debug -DBUILD_TESTING=ON \
  -DWHISKER_WERROR=OFF > "$build/configure.log" 2>&1 || { cat "$build/configure.log"; exit 1; }
# a clean build, so that every file is analysed again
cmake --build "$build" --target clean > /dev/null
rm -rf "$build/report"
scan-build --status-bugs -o "$build/report" --exclude "$build" \
  cmake --build "$build" -j "$(nproc)" > "$build/scan.log" 2>&1 || {
  grep -E 'warning:|error:|scan-build:' "$build/scan.log" | grep -v '^/usr/' | sort -u
  echo "static_check.sh: the analyzer found the above (full log: $build/scan.log," \
       "HTML report in $build/report/)" >&2
  exit 1
}
# a file clang cannot compile is not analysed, and --status-bugs lets that pass
if grep -q 'The analyzer encountered problems' "$build/scan.log"; then
  grep -E 'error:|scan-build:' "$build/scan.log" | grep -v '^/usr/' | sort -u
  echo "static_check.sh: the analyzer could not analyse the above (full log: $build/scan.log," \
       "clang's inputs in $build/report/*/failures/)" >&2
  exit 1
fi
grep -E '^scan-build:' "$build/scan.log" | tail -2
echo "static_check.sh: no findings"
