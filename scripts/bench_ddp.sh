#!/usr/bin/env bash
# bench_ddp.sh - data-parallel training on the CPU, whisker (MPI, train/ddp.c)
# side by side with PyTorch DDP (gloo), same model, per-rank batch, input size
# and threads per rank, in one run.
#
#   bash scripts/bench_ddp.sh [--model resnet18] [--batch 16] [--size 112]
#                             [--ranks 2] [--threads 1] [--steps 5] [--warmup 2]
#
# For each framework: images/s of one process (no data parallelism) and of R
# ranks (images/s over all ranks); the scaling efficiency is R ranks' images/s
# divided by R times one process's. On one machine the ranks share its cores
# and memory bandwidth, so efficiency below 1 is partly the machine's, which is
# why both frameworks run here under the same conditions. Prints a markdown
# table and writes it to $BUILD_DIR/bench_ddp/table.md.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
py="${WHISKER_PYTHON:-/usr/bin/python3}"
model=resnet18 batch=16 size=112 ranks=2 threads=1 steps=5 warmup=2
while [ $# -gt 0 ]; do
  case "$1" in
    --model) model="$2"; shift 2 ;;
    --batch) batch="$2"; shift 2 ;;
    --size) size="$2"; shift 2 ;;
    --ranks) ranks="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --steps) steps="$2"; shift 2 ;;
    --warmup) warmup="$2"; shift 2 ;;
    *) echo "bench_ddp.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -x "$build/whisker" ] || { echo "bench_ddp.sh: build first (scripts/setup.sh)" >&2; exit 1; }
[ -e "$build/libwhisker-mpi.so" ] || { echo "bench_ddp.sh: built without MPI" >&2; exit 1; }
command -v mpirun >/dev/null || { echo "bench_ddp.sh: no mpirun (apt-get install openmpi-bin)" >&2; exit 1; }
out="$build/bench_ddp"
mkdir -p "$out"
[ "$(id -u)" -eq 0 ] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl=self,vader  # shared memory, with cross-memory attach (single copies)
args=(--model "$model" --batch "$batch" --size "$size" --threads "$threads" --steps "$steps" --warmup "$warmup")
w1=$("$build/whisker" bench "${args[@]}" --classes 1000 --latency-runs 1 --json)
wr=$(mpirun -np "$ranks" --oversubscribe --bind-to none "$build/whisker" bench "${args[@]}" \
  --classes 1000 --latency-runs 1 --json)
t1=$("$py" "$root/scripts/bench_ddp_torch.py" "${args[@]}" --ranks 1)
tr=$("$py" "$root/scripts/bench_ddp_torch.py" "${args[@]}" --ranks "$ranks")
printf '%s\n%s\n%s\n%s\n' "$w1" "$wr" "$t1" "$tr" > "$out/results.jsonl"
"$py" - "$out/results.jsonl" "$ranks" <<'PY' | tee "$out/table.md"
import json, sys
w1, wr, t1, tr = (json.loads(l) for l in open(sys.argv[1]))
r = int(sys.argv[2])
print(f"{w1['model']}, batch {w1['batch']} per rank, {w1['size']}x{w1['size']}, "
      f"{w1['threads']} thread(s) per rank, {r} ranks on one machine\n")
print("| | 1 process images/s | %d ranks images/s | scaling efficiency |" % r)
print("|---|---:|---:|---:|")
for name, a, b in (("whisker (MPI)", w1, wr), ("PyTorch DDP (gloo)", t1, tr)):
    e = b["train_images_per_s"] / (r * a["train_images_per_s"])
    print(f"| {name} | {a['train_images_per_s']:.2f} | {b['train_images_per_s']:.2f} | {e:.1%} |")
ratio = wr["train_images_per_s"] / tr["train_images_per_s"]
print(f"| **ratio** whisker / PyTorch, {r} ranks | | **{ratio:.2f}x** | |")
PY
