#!/usr/bin/env bash
# bench_loader.sh - the data loader benchmark, whisker vs torchvision, side by
# side in one run.
#
# Builds wk_bench_loader (Release) in $BUILD_DIR (default build/) when needed,
# then runs it and scripts/bench_loader_torch.py on the same folder with the
# same transforms: 224x224 RandomResizedCrop + horizontal flip + ColorJitter
# (0.4, 0.4, 0.4, 0.1) + ImageNet normalisation, the same number of workers,
# batch size, warm-up and timed epochs. Prints a markdown table with images/s
# of each and the ratio whisker / torchvision. The raw TSVs and the table are
# kept in $BUILD_DIR/bench_loader/.
#
# usage: scripts/bench_loader.sh [--data DIR] [--workers N] [--batch B] [--size S]
#                                [--epochs E] [--warmup W] [--jitter B,C,S,H]
# env:   WHISKER_DATA (../shared/data next to the repository), BUILD_DIR (build),
#        PYTHON (/usr/bin/python3, which has torch and torchvision), JOBS (2),
#        CMAKE_ARGS (extra args for a fresh configure)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${BUILD_DIR:-$root/build}
python=${PYTHON:-/usr/bin/python3}
jobs=${JOBS:-2}
data=${WHISKER_DATA:-$root/../shared/data}/dogs-vs-cats/train
args=(--workers 2 --batch 32 --size 224 --epochs 2 --warmup 5 --jitter 0.4,0.4,0.4,0.1)

usage() { sed -n '/^# usage:/,/^# env:/p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while [[ $# -gt 0 ]]; do
  case $1 in
    --data) data=${2:?}; shift 2 ;;
    --workers|--batch|--size|--epochs|--warmup|--jitter) args+=("$1" "${2:?}"); shift 2 ;;
    -h|--help) usage ;;
    *) echo "bench_loader.sh: unknown option '$1'" >&2; usage ;;
  esac
done
if [[ ! -d $data ]]; then
  echo "bench_loader.sh: $data not found (set WHISKER_DATA or --data)" >&2
  exit 1
fi

# ---------------------------------------------------------------- build
if [[ ! -f $build_dir/CMakeCache.txt ]]; then
  # shellcheck disable=SC2086  # CMAKE_ARGS is a list of words
  cmake -S "$root" -B "$build_dir" -DCMAKE_BUILD_TYPE=Release ${CMAKE_ARGS:-} >&2
fi
build_type=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$build_dir/CMakeCache.txt")
if [[ $build_type != Release ]]; then
  echo "bench_loader.sh: warning: $build_dir is a '$build_type' build, not Release;" \
       "timings will not be representative (set BUILD_DIR to a Release build)" >&2
fi
cmake --build "$build_dir" --target wk_bench_loader -j "$jobs" >&2

# ---------------------------------------------------------------- run
out_dir=$build_dir/bench_loader
mkdir -p "$out_dir"
load=$(cut -d' ' -f1-3 /proc/loadavg)
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
if awk -v l="${load%% *}" 'BEGIN { exit !(l > 0.5) }'; then
  echo "bench_loader.sh: warning: load average $load; timings may be disturbed" >&2
fi
rc=0
# whisker first: its pre-scan reads every file, so both runs find them in the page cache
"$build_dir/wk_bench_loader" --data "$data" "${args[@]}" >"$out_dir/whisker.tsv" || rc=1
"$python" "$root/scripts/bench_loader_torch.py" --data "$data" "${args[@]}" \
  >"$out_dir/torch.tsv" || rc=1
if [[ $rc -ne 0 ]]; then
  echo "bench_loader.sh: FAILED (a program exited nonzero; see above)" >&2
  exit 1
fi

# ---------------------------------------------------------------- table
awk -F'\t' -v load="$load" -v cpu="$cpu" -v nproc="$(nproc)" -v data="$data" '
  /^#/ { next }
  { name[NR] = $1; workers = $2; batch = $3; size = $4; images[$1] = $5
    seconds[$1] = $6; rate[$1] = $7; prescan[$1] = $8; files = $9 }
  END {
    printf "Data loading, %s (%d files): %dx%d RandomResizedCrop + flip + ColorJitter" \
           "(0.4, 0.4, 0.4, 0.1) + normalise, batch %d, %d workers\n", data, files, size, \
           size, batch, workers
    printf "%s, %d cores, load average at start %s\n\n", cpu, nproc, load
    print "| loader | images | seconds | images/s | pre-scan s |"
    print "|---|---|---|---|---|"
    for (i = 1; i <= NR; i++) if (name[i] != "") {
      n = name[i]
      printf "| %s | %d | %.2f | %.1f | %s |\n", n, images[n], seconds[n], rate[n], prescan[n]
    }
    if (rate["torchvision"] > 0)
      printf "\nwhisker / torchvision: %.2fx images/s\n", rate["whisker"] / rate["torchvision"]
  }' "$out_dir/whisker.tsv" "$out_dir/torch.tsv" | tee "$out_dir/table.md"
