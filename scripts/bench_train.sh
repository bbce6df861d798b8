#!/usr/bin/env bash
# bench_train.sh - whisker's training throughput, batch-1 latency and peak
# memory side by side with PyTorch 1.13 (Debian python3-torch), same model,
# batch, input size and thread count, in one run.
#
#   bash scripts/bench_train.sh [--model resnet18] [--batch 32] [--size 224]
#                               [--threads 2] [--steps 5] [--warmup 2]
#
# Prints a markdown table with the ratios (whisker / PyTorch for images/s,
# PyTorch / whisker for latency and memory: > 1 means whisker is better) and
# writes it to $BUILD_DIR/bench_train/table.md. PyTorch runs twice: its default
# NCHW layout and channels_last; the ratio is taken against the better one.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
py="${WHISKER_PYTHON:-/usr/bin/python3}"
model=resnet18 batch=32 size=224 threads=2 steps=5 warmup=2
while [ $# -gt 0 ]; do
  case "$1" in
    --model) model="$2"; shift 2 ;;
    --batch) batch="$2"; shift 2 ;;
    --size) size="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --steps) steps="$2"; shift 2 ;;
    --warmup) warmup="$2"; shift 2 ;;
    *) echo "bench_train.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -x "$build/whisker" ] || { echo "bench_train.sh: build first (scripts/setup.sh)" >&2; exit 1; }
out="$build/bench_train"
mkdir -p "$out"
args=(--model "$model" --batch "$batch" --size "$size" --threads "$threads" --steps "$steps" --warmup "$warmup")
echo "== whisker" >&2
"$build/whisker" bench "${args[@]}" --json | tee "$out/whisker.json"
echo "== pytorch (NCHW)" >&2
OMP_NUM_THREADS="$threads" "$py" "$root/scripts/bench_train_torch.py" "${args[@]}" 2>/dev/null | tee "$out/torch.json"
echo "== pytorch (channels_last)" >&2
OMP_NUM_THREADS="$threads" "$py" "$root/scripts/bench_train_torch.py" "${args[@]}" --channels-last 2>/dev/null | tee "$out/torch_cl.json"
"$py" - "$out" <<'PY'
import json, os, sys
out = sys.argv[1]
w = json.load(open(os.path.join(out, "whisker.json")))
t = [json.load(open(os.path.join(out, f))) for f in ("torch.json", "torch_cl.json")]
best_ips = max(x["train_images_per_s"] for x in t)
best_lat = min(x["infer_b1_latency_ms"] for x in t)
best_mem = min(x["peak_rss_mb"] for x in t)
rows = ["| | training images/s | batch-1 latency (ms) | peak RSS (MB) |", "|---|---:|---:|---:|"]
for x in [w] + t:
    rows.append("| %s | %.2f | %.2f | %.0f |" % (x["impl"], x["train_images_per_s"],
                                                x["infer_b1_latency_ms"], x["peak_rss_mb"]))
rows.append("| **ratio** (vs PyTorch's better) | **%.2fx** | **%.2fx** | **%.2fx** |" % (
    w["train_images_per_s"] / best_ips, best_lat / w["infer_b1_latency_ms"],
    best_mem / w["peak_rss_mb"]))
head = "%s, batch %d, %dx%d, %d threads" % (w["model"], w["batch"], w["size"], w["size"], w["threads"])
table = head + "\n\n" + "\n".join(rows) + "\n"
open(os.path.join(out, "table.md"), "w").write(table)
print(table)
PY
