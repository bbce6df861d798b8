#!/usr/bin/env bash
# bench_ops.sh - the conv benchmark, whisker vs PyTorch, side by side.
#
# Builds wk_bench_ops (Release) in $BUILD_DIR (default build/) when needed, runs
# it and scripts/bench_ops_torch.py with the same threads, batch and reps on
# every conv shape of ResNet-18, and prints a markdown table: per shape and
# direction (forward / backward-data / backward-weights) the median time of
# whisker, of torch in NCHW and in channels_last, and the ratio
#   torch time in its faster layout / whisker time   (> 1: whisker is faster).
# Each time is a median over --reps passes (see the two programs). The two
# run in turns, one shape at a time, --rounds times (whisker shape 1, torch
# shape 1, whisker shape 2, ...), and each cell is the median over the rounds:
# this machine's speed drifts by up to a third over minutes, which one whole
# program after the other would turn into a bias between them.
# The raw TSVs and the table are kept in $BUILD_DIR/bench_ops/.
#
# Exits 1 when whisker's check against its reference fails or a program fails.
#
# usage: scripts/bench_ops.sh [--threads N] [--batch B] [--reps R] [--rounds K]
#                             [--shape NAME] [--impl cpu|ref] [--no-check]
# env:   BUILD_DIR (build), PYTHON (/usr/bin/python3, which has torch 1.13),
#        JOBS (make jobs, 2), CMAKE_ARGS (extra args for a fresh configure)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${BUILD_DIR:-$root/build}
python=${PYTHON:-/usr/bin/python3}
jobs=${JOBS:-2}
threads=$(nproc)
batch=32
reps=10
rounds=3
impl=cpu
shape_args=()
check_args=()

usage() { sed -n '/^# usage:/,/^# env:/p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while [[ $# -gt 0 ]]; do
  case $1 in
    --threads) threads=${2:?}; shift 2 ;;
    --batch) batch=${2:?}; shift 2 ;;
    --reps) reps=${2:?}; shift 2 ;;
    --rounds) rounds=${2:?}; shift 2 ;;
    --shape) shape_args=(--shape "${2:?}"); shift 2 ;;
    --impl) impl=${2:?}; shift 2 ;;
    --no-check) check_args=(--no-check); shift ;;
    -h|--help) usage ;;
    *) echo "bench_ops.sh: unknown option '$1'" >&2; usage ;;
  esac
done

# ---------------------------------------------------------------- build
if [[ ! -f $build_dir/CMakeCache.txt ]]; then
  # shellcheck disable=SC2086  # CMAKE_ARGS is a list of words
  cmake -S "$root" -B "$build_dir" -DCMAKE_BUILD_TYPE=Release ${CMAKE_ARGS:-} >&2
fi
build_type=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$build_dir/CMakeCache.txt")
if [[ $build_type != Release ]]; then
  echo "bench_ops.sh: warning: $build_dir is a '$build_type' build, not Release;" \
       "timings will not be representative (set BUILD_DIR to a Release build)" >&2
fi
cmake --build "$build_dir" --target wk_bench_ops -j "$jobs" >&2

# ---------------------------------------------------------------- run
out_dir=$build_dir/bench_ops
mkdir -p "$out_dir"
load=$(cut -d' ' -f1-3 /proc/loadavg)
if awk -v l="${load%% *}" 'BEGIN { exit !(l > 0.5) }'; then
  echo "bench_ops.sh: warning: load average $load; timings may be disturbed" >&2
fi

rc=0
if [[ ${#shape_args[@]} -gt 0 ]]; then
  shapes=("${shape_args[1]}")
else
  mapfile -t shapes < <("$build_dir/wk_bench_ops" --list)
fi
echo "bench_ops.sh: whisker ($impl) and torch in turns, ${#shapes[@]} shapes, $rounds rounds," \
     "$threads threads, batch $batch, $reps reps" >&2
: >"$out_dir/whisker.tsv"
: >"$out_dir/torch.tsv"
for ((r = 1; r <= rounds; r++)); do
  for s in "${shapes[@]}"; do
    # whisker checks each shape against its reference in the first round only
    chk=("${check_args[@]}")
    [[ $r -gt 1 ]] && chk=(--no-check)
    "$build_dir/wk_bench_ops" --threads "$threads" --batch "$batch" --reps "$reps" \
      --impl "$impl" --shape "$s" "${chk[@]}" >>"$out_dir/whisker.tsv" || rc=1
    "$python" "$root/scripts/bench_ops_torch.py" --threads "$threads" --batch "$batch" \
      --reps "$reps" --shape "$s" 2>/dev/null >>"$out_dir/torch.tsv" || rc=1
  done
done

# ---------------------------------------------------------------- table
# uses[]: how often each shape occurs in one ResNet-18 pass, for the whole-network row.
awk -F'\t' -v threads="$threads" -v batch="$batch" -v reps="$reps" -v load="$load" \
    -v impl="$impl" -v rounds="$rounds" -v torch_tsv="$out_dir/torch.tsv" '
  function cell(a, b, c) { return sprintf("%.2f / %.2f / %.2f", a, b, c) }
  function ratio(tm, wm) { return tm > 0 && wm > 0 ? sprintf("%.2f", tm / wm) : "n/a" }
  function min(a, b) { return a < b ? a : b }
  # the median of the values v[key, 1..cnt[key]] (a few rounds: insertion sort)
  function med(v, cnt, key,    k, i, j, x, a) {
    k = cnt[key]
    for (i = 1; i <= k; i++) a[i] = v[key, i]
    for (i = 2; i <= k; i++) { x = a[i]; for (j = i - 1; j >= 1 && a[j] > x; j--) a[j + 1] = a[j]; a[j + 1] = x }
    return k % 2 ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2
  }
  BEGIN {
    uses["conv1"] = 1; uses["layer1.conv3x3"] = 4
    uses["layer2.conv3x3s2"] = 1; uses["layer2.conv3x3"] = 3; uses["layer2.down1x1s2"] = 1
    uses["layer3.conv3x3s2"] = 1; uses["layer3.conv3x3"] = 3; uses["layer3.down1x1s2"] = 1
    uses["layer4.conv3x3s2"] = 1; uses["layer4.conv3x3"] = 3; uses["layer4.down1x1s2"] = 1
  }
  /^#/ { next }
  FILENAME == torch_tsv {
    for (d = 1; d <= 3; d++) { k = $1 SUBSEP $12 SUBSEP d; tv[k, ++tc[k]] = $(8 + d) }
    next
  }
  {
    if (!($1 in idx)) { idx[$1] = ++n; name[n] = $1; geom[n] = sprintf("%sx%sx%s>%s k%d/%d", $3, $4, $5, $6, $7, $8) }
    for (d = 1; d <= 3; d++) { k = idx[$1] SUBSEP d; wv[k, ++wc[k]] = $(8 + d) }
  }
  END {
    for (k in tc) t[k] = med(tv, tc, k)
    for (k in wc) w[k] = med(wv, wc, k)
    printf "conv2d, ResNet-18 shapes, batch %d, %d threads, median of %d, " \
           "median over %d rounds in turns; load average at start %s\n", batch, threads, reps, rounds, load
    printf "times in ms, each cell fwd / bwd-data / bwd-weights; " \
           "ratio = torch (faster layout) / whisker (%s), > 1: whisker faster\n\n", impl
    print "| shape | HxWxC>O k/s | whisker | torch NCHW | torch channels_last | ratio |"
    print "|---|---|---|---|---|---|"
    for (i = 1; i <= n; i++) {
      s = name[i]; u = (s in uses) ? uses[s] : 1
      for (d = 1; d <= 3; d++) {
        a = ((s, "nchw", d) in t) ? t[s, "nchw", d] : 0
        b = ((s, "channels_last", d) in t) ? t[s, "channels_last", d] : 0
        best[d] = (a > 0 && b > 0) ? min(a, b) : a + b
        sw[d] += w[i, d]; sa[d] += a; sb[d] += b
        uw[d] += u * w[i, d]; ua[d] += u * a; ub[d] += u * b
      }
      printf "| %s | %s | %s | %s | %s | %s / %s / %s |\n", s, geom[i], \
             cell(w[i, 1], w[i, 2], w[i, 3]), \
             cell(t[s, "nchw", 1], t[s, "nchw", 2], t[s, "nchw", 3]), \
             cell(t[s, "channels_last", 1], t[s, "channels_last", 2], t[s, "channels_last", 3]), \
             ratio(best[1], w[i, 1]), ratio(best[2], w[i, 2]), ratio(best[3], w[i, 3])
    }
    # Totals compare against the faster layout overall: a network runs in one layout.
    printf "| **total, each shape once** | | %s | %s | %s | %s / %s / %s |\n", \
           cell(sw[1], sw[2], sw[3]), cell(sa[1], sa[2], sa[3]), cell(sb[1], sb[2], sb[3]), \
           ratio(min(sa[1], sb[1]), sw[1]), ratio(min(sa[2], sb[2]), sw[2]), \
           ratio(min(sa[3], sb[3]), sw[3])
    printf "| **total, ResNet-18 (x uses)** | | %s | %s | %s | %s / %s / %s |\n", \
           cell(uw[1], uw[2], uw[3]), cell(ua[1], ua[2], ua[3]), cell(ub[1], ub[2], ub[3]), \
           ratio(min(ua[1], ub[1]), uw[1]), ratio(min(ua[2], ub[2]), uw[2]), \
           ratio(min(ua[3], ub[3]), uw[3])
    print "\nResNet-18 uses: conv1 x1, layer1.conv3x3 x4, each layerN.conv3x3s2 x1,"
    print "layerN.conv3x3 x3, layerN.down1x1s2 x1. Totals compare with torch'"'"'s faster layout."
  }' "$out_dir/torch.tsv" "$out_dir/whisker.tsv" | tee "$out_dir/table.md"

if [[ $rc -ne 0 ]]; then
  echo "bench_ops.sh: FAILED (a check failed or a program exited nonzero; see above)" >&2
fi
exit "$rc"
