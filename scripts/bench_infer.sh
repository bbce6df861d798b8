#!/usr/bin/env bash
# bench_infer.sh - inference speed of whisker against ONNX Runtime (onnxruntime-node,
# CPU) running the same network, exported by `whisker export`; side by side in one run:
#   (a) one photo, whole process: `whisker classify PHOTO` against tools/ort/classify.js
#       (load the model, decode with sharp/libvips, resize 256, crop 224, normalise,
#       run, print the top class); median wall time of RUNS alternating runs each;
#   (b) forward pass alone at batch 1 and 32, after warm-up: tools/bench_infer.c against
#       tools/ort/bench.js (graph optimisations on); the median of RUNS1 forwards at
#       batch 1 (default 200, about a second) and of RUNS at batch 32, each batch size
#       its own process per program; the two programs in turns ROUNDS times (default
#       5), which one goes first alternating by round; the median over the rounds and
#       the range of the rounds' ratios: the machine's speed drifts by up to a third
#       over minutes, which one program after the other would turn into a bias, and 30
#       forwards at batch 1 (0.15 s) let one noisy moment decide a round.
# Ratios > 1 mean whisker is faster.
#
#   bash scripts/bench_infer.sh                      # the shipped default model
#   MODEL=run/model.safetensors PHOTO=x.jpg THREADS=2 RUNS=20 RUNS1=200 ROUNDS=5 \
#     bash scripts/bench_infer.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
model="${MODEL:-$root/pretrained/default.safetensors}"
photo="${PHOTO:-$root/data/samples/cat.jpg}"
threads="${THREADS:-$(nproc)}"
runs="${RUNS:-10}"
runs1="${RUNS1:-200}"
rounds="${ROUNDS:-5}"
ort="$root/tools/ort"
[ -d "$ort/node_modules/onnxruntime-node" ] && [ -d "$ort/node_modules/sharp" ] \
  || { echo "bench_infer: run 'npm ci --prefix tools/ort' (scripts/setup.sh does)" >&2; exit 1; }
cmake --build "$build" -j "$(nproc)" --target whisker_cli wk_bench_infer > /dev/null
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$build/whisker" export "$model" "$tmp/model.onnx" > /dev/null
# class names (to a file) and preprocessing sizes from the model file's header
# (safetensors: u64 length, JSON), read once
read -r resize crop < <(/usr/bin/python3 - "$model" "$tmp/classes.txt" <<'PY'
import json, struct, sys
with open(sys.argv[1], "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    meta = json.loads(f.read(n))["__metadata__"]
with open(sys.argv[2], "w") as out:
    out.write("\n".join(json.loads(meta["whisker.classes"])) + "\n")
pre = json.loads(meta["whisker.preprocess"])
print(pre["resize"], pre["crop"])
PY
)
export WHISKER_THREADS="$threads"

now() { date +%s%N; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "# machine: $(nproc) cores, $threads threads; model $(basename "$model"); photo $(basename "$photo")"
echo "# (a) whole process, one photo ($runs runs each, alternating)"
"$build/whisker" classify "$photo" --model "$model"
node "$ort/classify.js" "$tmp/model.onnx" "$tmp/classes.txt" "$photo" "$threads" "$resize" "$crop"
: > "$tmp/w"; : > "$tmp/o"
for _ in $(seq 1 "$runs"); do
  t0=$(now); "$build/whisker" classify "$photo" --model "$model" > /dev/null; t1=$(now)
  node "$ort/classify.js" "$tmp/model.onnx" "$tmp/classes.txt" "$photo" "$threads" "$resize" "$crop" > /dev/null
  t2=$(now)
  echo $(( (t1 - t0) / 1000 )) >> "$tmp/w"; echo $(( (t2 - t1) / 1000 )) >> "$tmp/o"
done
w=$(median < "$tmp/w"); o=$(median < "$tmp/o")
printf "classify   whisker %8.1f ms   onnxruntime-node %8.1f ms   ratio %.2fx\n" \
  "$(awk -v a="$w" 'BEGIN {print a / 1000}')" "$(awk -v a="$o" 'BEGIN {print a / 1000}')" \
  "$(awk -v a="$o" -v b="$w" 'BEGIN {print a / b}')"

echo "# (b) forward pass, median of $runs1 (batch 1) and $runs (batch 32) after warm-up, in turns,"
echo "#     median over $rounds rounds"
: > "$tmp/wb"; : > "$tmp/ob"
fwd_whisker() {
  "$build/wk_bench_infer" "$model" --batch "$1" --warmup "$2" --runs "$3" --threads "$threads" \
    | grep -v '^#' >> "$tmp/wb"
}
fwd_ort() {
  node "$ort/bench.js" "$tmp/model.onnx" "$threads" "$1" "$2" "$3" "$crop" | grep -v '^#' >> "$tmp/ob"
}
for round in $(seq 1 "$rounds"); do
  for b in 1 32; do
    if [ "$b" = 1 ]; then n="$runs1"; warm=20; else n="$runs"; warm=5; fi
    if [ $((round % 2)) = 1 ]; then fwd_whisker "$b" "$warm" "$n"; fwd_ort "$b" "$warm" "$n"
    else fwd_ort "$b" "$warm" "$n"; fwd_whisker "$b" "$warm" "$n"; fi
  done
done
# both files: name, batch, median_ms, ... one line per batch per round, rounds in order
paste "$tmp/wb" "$tmp/ob" | awk -F'\t' '
  function med(v, k,    i, j, x, a) {
    for (i = 1; i <= k; i++) a[i] = v[i]
    for (i = 2; i <= k; i++) { x = a[i]; for (j = i - 1; j >= 1 && a[j] > x; j--) a[j + 1] = a[j]; a[j + 1] = x }
    return k % 2 ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2
  }
  { b = $2; n[b]++; if (n[b] == 1) order[++nb] = b
    w[b, n[b]] = $3; o[b, n[b]] = $8; r = $8 / $3
    if (n[b] == 1 || r < lo[b]) lo[b] = r
    if (n[b] == 1 || r > hi[b]) hi[b] = r }
  END {
    for (q = 1; q <= nb; q++) {
      b = order[q]
      for (i = 1; i <= n[b]; i++) { ww[i] = w[b, i]; oo[i] = o[b, i] }
      mw = med(ww, n[b]); mo = med(oo, n[b])
      printf "batch %-3s  whisker %8.2f ms   onnxruntime %8.2f ms   ratio %.2fx (rounds: %.2f-%.2fx)\n", b, mw, mo, mo / mw, lo[b], hi[b]
    }
  }'
