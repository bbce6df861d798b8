#!/usr/bin/env bash
# valgrind_e2e.sh - a tiny end-to-end run under valgrind's memcheck: train
# smallcnn for 1 epoch on a few generated 32-px pictures, then classify them,
# each with --leak-check=full --error-exitcode=1 (any invalid access, use of
# an uninitialised value, or definite/possible leak fails the script).
#
#   bash scripts/valgrind_e2e.sh            # uses build/ (scripts/setup.sh makes it)
#   BUILD_DIR=dir bash scripts/valgrind_e2e.sh
#
# scripts/valgrind.supp suppresses what third-party libraries do (oneDNN's JIT
# and OpenMP runtime); nothing in whisker's own frames is suppressed. oneDNN is
# held to AVX2 (valgrind does not emulate AVX-512). Logs go to
# BUILD_DIR/valgrind/. Takes a few minutes on 2 cores: not part of CI.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
bin="$build/whisker"
[ -x "$bin" ] || { echo "valgrind_e2e.sh: no $bin; run scripts/setup.sh first" >&2; exit 1; }
command -v valgrind >/dev/null || { echo "valgrind_e2e.sh: valgrind not installed" >&2; exit 1; }
out="$build/valgrind"
rm -rf "$out"
mkdir -p "$out"
/usr/bin/python3 "$root/scripts/gen_shapes.py" "$out/data" --train 8 --val 2 > /dev/null
export WHISKER_THREADS=1 OMP_NUM_THREADS=1 ONEDNN_MAX_CPU_ISA=AVX2 WHISKER_LOG=warn
vg=(valgrind --tool=memcheck --leak-check=full --errors-for-leak-kinds=definite,possible
    --error-exitcode=1 --track-origins=yes --smc-check=all-non-file
    --suppressions="$root/scripts/valgrind.supp" --gen-suppressions=all)

step() {
  local name="$1"; shift
  local start=$SECONDS
  if "${vg[@]}" --log-file="$out/$name.log" "$@" > "$out/$name.out" 2> "$out/$name.err"; then
    echo "valgrind_e2e: $name: clean ($(( SECONDS - start )) s): $(grep -E 'ERROR SUMMARY' "$out/$name.log" | sed 's/^==[0-9]*== //')"
  else
    echo "valgrind_e2e: $name FAILED; $out/$name.log:" >&2
    grep -E 'ERROR SUMMARY|definitely lost|possibly lost|Invalid|uninitialised' "$out/$name.log" >&2 || true
    cat "$out/$name.err" >&2
    exit 1
  fi
}
step train "$bin" train "$out/data" --out "$out/run" --model smallcnn --size 32 --epochs 1 \
  --batch 4 --workers 1
step classify "$bin" classify "$out/data/val" --model "$out/run/model.safetensors" --top 2
echo "valgrind_e2e: ok"
