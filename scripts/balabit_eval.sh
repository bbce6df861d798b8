#!/usr/bin/env bash
# balabit_eval.sh - the Balabit Mouse Dynamics protocol with `whisker clicks
# eval`: unpacks the archive into the cache (scripts/balabit_unpack.sh), builds
# whisker when needed, trains one model over the 10 users on training_files
# only, scores every labelled session of labels_dev.csv as "not its claimed
# user" and prints session-level ROC AUC, EER and wall time. The model and the
# per-session scores go to $WHISKER_CACHE/balabit_run/.
#
# usage: scripts/balabit_eval.sh [whisker clicks eval options, e.g. --epochs 4 --json]
# env:   WHISKER_DATA (../shared/data), WHISKER_CACHE (build/), BUILD_DIR (build/),
#        LABELS (the labels CSV; $WHISKER_DATA/balabit/labels_dev.csv), JOBS (2)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
data=${WHISKER_DATA:-$root/../shared/data}
cache=${WHISKER_CACHE:-$root/build}
build_dir=${BUILD_DIR:-$root/build}
labels=${LABELS:-$data/balabit/labels_dev.csv}

balabit=$(WHISKER_DATA=$data WHISKER_CACHE=$cache "$root/scripts/balabit_unpack.sh")
if [[ ! -f $build_dir/CMakeCache.txt ]]; then
  cmake -S "$root" -B "$build_dir" -DCMAKE_BUILD_TYPE=Release -DWHISKER_CUDA=OFF >&2
fi
cmake --build "$build_dir" --target whisker_cli -j "${JOBS:-2}" >&2
echo "balabit_eval.sh: load average $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores" >&2
WHISKER_LOG=${WHISKER_LOG:-info} "$build_dir/whisker" clicks eval "$balabit" --labels "$labels" \
  --out "$cache/balabit_run" "$@"
