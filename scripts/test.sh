#!/usr/bin/env bash
# test.sh - run the test suites of an existing build (scripts/setup.sh makes it).
#
#   bash scripts/test.sh             # every suite in build/ (GPU suites skip without a GPU)
#   bash scripts/test.sh -L unit     # extra arguments go to ctest
#   BUILD_DIR=build-asan bash scripts/test.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
if [ ! -f "$build/CTestTestfile.cmake" ]; then
  echo "test.sh: no build in $build; run scripts/setup.sh first" >&2
  exit 1
fi
cmake --build "$build" -j "$(nproc)"
cd "$build"
exec ctest --output-on-failure -j "$(nproc)" "$@"
