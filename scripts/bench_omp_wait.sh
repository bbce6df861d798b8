#!/usr/bin/env bash
# bench_omp_wait.sh - how OpenMP's waiting threads (the ones oneDNN's
# primitives and whisker's CPU kernels run on) cost or gain, on an idle machine
# and on one where another program keeps a core busy: libgomp's own default
# (threads spin some 300,000 rounds after each parallel region, here
# GOMP_SPINCOUNT=300000), passive (OMP_WAIT_POLICY=passive: they sleep at once)
# and short spins (GOMP_SPINCOUNT=N), against what `whisker` sets itself when the
# user set neither variable (src/cli/omp_wait.c: GOMP_SPINCOUNT=3000; the row
# "whisker", run with neither variable set).
#
# Three jobs, each RUNS times per policy in turns (every policy once, then
# again), the median kept:
#   classify  `whisker classify` of the 1,000 dogs-vs-cats/val photos with the
#             shipped model (decode + forward, batches of 16): seconds
#   train     `whisker bench --model resnet18 --batch 16 --size 112 --steps 6`:
#             training images/s
#   latency   the same bench's batch-1 inference latency (median of 30): ms
# "busy": the same with one `yes > /dev/null` running beside it (one core of
# the machine's taken by another program, as a build or a second job does).
#
# usage: scripts/bench_omp_wait.sh            (table: build/bench_omp_wait/table.md)
# env:   BUILD_DIR (build), RUNS (3), WHISKER_DATA (../shared/data),
#        POLICIES ("gomp:300000 passive spin:1000 whisker")
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${BUILD_DIR:-$root/build}
data=${WHISKER_DATA:-$root/../shared/data}
runs=${RUNS:-3}
policies=(${POLICIES:-gomp:300000 passive spin:1000 whisker})
val=$data/dogs-vs-cats/val
[[ -d $val ]] || { echo "bench_omp_wait.sh: $val not found (set WHISKER_DATA)" >&2; exit 2; }
cmake --build "$build_dir" --target whisker_cli -j 2 > /dev/null
bin=$build_dir/whisker
out=$build_dir/bench_omp_wait
mkdir -p "$out"
hog=
trap '[[ -n $hog ]] && kill "$hog" 2>/dev/null; true' EXIT

# run POLICY CMD...: CMD with the policy's environment (whisker's own: neither variable)
run() {
  local p=$1
  shift
  case $p in
    gomp:* | spin:*) env -u OMP_WAIT_POLICY GOMP_SPINCOUNT="${p#*:}" "$@" ;; # gomp: its default
    passive) env -u GOMP_SPINCOUNT OMP_WAIT_POLICY=passive "$@" ;;
    whisker) env -u GOMP_SPINCOUNT -u OMP_WAIT_POLICY "$@" ;;
    *) echo "bench_omp_wait.sh: unknown policy '$p'" >&2; exit 2 ;;
  esac
}

# one_round LOAD: every policy once; appends "load policy classify_s train_ips latency_ms"
one_round() {
  local load=$1 p t0 t1 js
  for p in "${policies[@]}"; do
    t0=$(date +%s.%N)
    run "$p" "$bin" classify "$val" > /dev/null
    t1=$(date +%s.%N)
    js=$(run "$p" "$bin" bench --model resnet18 --batch 16 --size 112 --steps 6 --warmup 2 \
           --infer-runs 0 --json 2>/dev/null)
    /usr/bin/python3 - "$load" "$p" "$t0" "$t1" "$js" >> "$out/runs.txt" <<'PY'
import json, sys
load, p, t0, t1, js = sys.argv[1:]
j = json.loads(js)
print(load, p, "%.3f" % (float(t1) - float(t0)), "%.2f" % j["train_images_per_s"],
      "%.2f" % j["infer_b1_latency_ms"])
PY
  done
}

: > "$out/runs.txt"
for load in idle busy; do
  if [[ $load == busy ]]; then
    yes > /dev/null &
    hog=$!
  fi
  for ((r = 0; r < runs; r++)); do one_round "$load"; done
done
[[ -n $hog ]] && kill "$hog" && hog=

/usr/bin/python3 - "$out/runs.txt" "$(nproc)" "$runs" > "$out/table.md" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
cores, runs = sys.argv[2], sys.argv[3]
print("OpenMP's waiting threads: median of %s runs each, %s cores" % (runs, cores))
print()
print("| machine | policy | classify 1,000 photos (s) | training images/s | batch-1 latency (ms) |")
print("|---|---|---:|---:|---:|")
seen = []
for r in rows:
    if (r[0], r[1]) not in seen: seen.append((r[0], r[1]))
for load, p in seen:
    sel = [r for r in rows if r[0] == load and r[1] == p]
    med = lambda k: statistics.median(float(r[k]) for r in sel)
    print("| %s | %s | %.2f | %.2f | %.2f |" % (load, p, med(2), med(3), med(4)))
PY
cat "$out/table.md"
