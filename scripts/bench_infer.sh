#!/usr/bin/env bash
# bench_infer.sh - inference speed of whisker against ONNX Runtime (onnxruntime-node,
# CPU) running the same network, exported by `whisker export`; side by side in one run:
#   (a) one photo, whole process: `whisker classify PHOTO` against tools/ort/classify.js
#       (load the model, decode with sharp/libvips, resize 256, crop 224, normalise,
#       run, print the top class); median wall time of RUNS alternating runs each;
#   (b) forward pass alone at batch 1 and 32, after warm-up: tools/bench_infer.c against
#       tools/ort/bench.js (graph optimisations on), both started at once and handed the
#       machine in turns by scripts/bench_turns.py: TURNS turns each (default 40), a turn
#       being 2 untimed forwards then TURN1 timed ones at batch 1 (default 25, about
#       0.1 s) or TURN32 at batch 32 (default 3), the first of each pair of turns
#       alternating. The ratio is the median over the pairs of ORT's median over
#       whisker's, each pair timed within a fraction of a second: this machine's speed
#       swings by up to a half over seconds, which timing one whole program after the
#       other (this script's method before) turned into a bias either way.
# Ratios > 1 mean whisker is faster.
#
#   bash scripts/bench_infer.sh                      # the shipped default model
#   MODEL=run/model.safetensors PHOTO=x.jpg THREADS=2 RUNS=20 TURNS=40 TURN1=25 TURN32=3 \
#     bash scripts/bench_infer.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
model="${MODEL:-$root/pretrained/default.safetensors}"
photo="${PHOTO:-$root/data/samples/cat.jpg}"
threads="${THREADS:-$(nproc)}"
runs="${RUNS:-10}"
turns="${TURNS:-40}"
turn1="${TURN1:-25}"
turn32="${TURN32:-3}"
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

echo "# (b) forward pass, the two programs in $turns turns each of $turn1 forwards (batch 1)"
echo "#     or $turn32 (batch 32) after warm-up; ratio: median over the pairs of turns"
for b in 1 32; do
  if [ "$b" = 1 ]; then n="$turn1"; warm=20; else n="$turn32"; warm=3; fi
  /usr/bin/python3 "$root/scripts/bench_turns.py" "$turns" "$n" \
    "$build/wk_bench_infer" "$model" --batch "$b" --turns --warmup "$warm" --threads "$threads" -- \
    node "$ort/bench.js" "$tmp/model.onnx" "$threads" "$b" "$warm" turns "$crop" > "$tmp/t"
  w=$(awk '$1 == "wk_bench_infer" {print $3}' "$tmp/t")
  o=$(awk '$1 == "node" {print $3}' "$tmp/t")
  printf "batch %-3s  whisker %8.2f ms   onnxruntime %8.2f ms   %s\n" "$b" "$w" "$o" \
    "$(grep "^ratio" "$tmp/t" | sed "s/A faster/whisker faster/")"
done
