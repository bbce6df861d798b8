#!/usr/bin/env bash
# bench_gpu_memory_emu.sh - the GPU backend's device memory per training image,
# measured without a GPU: `whisker bench --device cuda` on the emulated device
# (tests/emu: host fakes of CUDA, cuDNN, cuBLAS and the kernels under the
# emulator), whose caching allocator (src/cuda/dev_cache.c) is the one a real
# card runs, counting the same requests.
#
# For each model and precision it trains two steps at two batch sizes and
# reads the allocator's peak in use; the difference over the batches' is what
# one more image costs (values, their gradients, the scratch: what the batch
# scales), the rest (weights, gradients, optimizer state, the 16-bit weight
# copy, workspaces) is fixed. "at 256" extrapolates both to batch 256 at the
# chosen size. The same for a network that only runs inference (`bench
# --steps 0`, as classify's: its values share memory by the forward's steps)
# in the last two columns. The fakes' convolution workspaces are not cuDNN's, so the
# fixed part is approximate; the per-image part is whisker's own allocations.
#
#   scripts/bench_gpu_memory_emu.sh [BUILD_DIR] [--size 112] [--models "resnet18 resnet50"]
#                                   [--precisions "fp32 bf16"] [--batches "2 4"]
#
# Per-image memory scales with the pixels: at 224 it is 4x 112's.
set -euo pipefail
build=build
size=112
models="resnet18 resnet50"
precisions="fp32 bf16"
batches="2 4"
while [ $# -gt 0 ]; do
  case "$1" in
  --size) size=$2; shift 2 ;;
  --models) models=$2; shift 2 ;;
  --precisions) precisions=$2; shift 2 ;;
  --batches) batches=$2; shift 2 ;;
  -*) echo "bench_gpu_memory_emu: unknown option $1" >&2; exit 2 ;;
  *) build=$1; shift ;;
  esac
done
bin="$build/whisker"
plugin="$build/libwhisker-cuda-emu.so"
[ -x "$bin" ] || { echo "bench_gpu_memory_emu: no $bin (build first)" >&2; exit 1; }
[ -f "$plugin" ] || { echo "bench_gpu_memory_emu: no $plugin (the emulator needs perl at configure)" >&2; exit 1; }
read -r b1 b2 <<< "$batches"
[ -n "${b2:-}" ] && [ "$b2" -gt "$b1" ] || { echo "bench_gpu_memory_emu: --batches needs two, rising" >&2; exit 2; }

peak() { # model precision batch steps -> MiB at most in use (steps 0: inference only)
  WHISKER_CUDA_PLUGIN="$plugin" WK_FAKE_DEVICES=1 WHISKER_CUDNN_ALGO=heuristic \
    "$bin" bench --device cuda --model "$1" --precision "$2" --batch "$3" --size "$size" \
    --steps "$4" --warmup 0 --latency-runs 1 --infer-runs "$((1 - ($4 > 0)))" --json 2>/dev/null |
    sed -n 's/.*"gpu_peak_in_use_mb": \([0-9.]*\).*/\1/p'
}

echo "GPU memory on the emulated device, ${size}x${size}, batches $b1 and $b2 ($("$bin" --version 2>/dev/null | head -1), $bin)"
printf '| %-9s | %-9s | %12s | %12s | %13s | %12s | %18s | %19s | %18s |\n' model precision \
  "MiB at b$b1" "MiB at b$b2" "MiB per image" "fixed MiB" "at 256, ${size}px MiB" \
  "inference MiB/image" "inference at 256"
printf '|%s|%s|%s|%s|%s|%s|%s|%s|%s|\n' ----------- ----------- -------------: -------------: \
  ---------------: --------------: --------------------: ---------------------: \
  --------------------:
for m in $models; do
  for p in $precisions; do
    m1=$(peak "$m" "$p" "$b1" 2)
    m2=$(peak "$m" "$p" "$b2" 2)
    i1=$(peak "$m" "$p" "$b1" 0)
    i2=$(peak "$m" "$p" "$b2" 0)
    [ -n "$m1" ] && [ -n "$m2" ] && [ -n "$i1" ] && [ -n "$i2" ] ||
      { echo "bench_gpu_memory_emu: $m $p: no figure" >&2; exit 1; }
    awk -v m="$m" -v p="$p" -v a="$m1" -v b="$m2" -v c="$i1" -v d="$i2" -v x="$b1" -v y="$b2" 'BEGIN {
      per = (b - a) / (y - x); fixed = a - per * x
      iper = (d - c) / (y - x); ifixed = c - iper * x
      printf "| %-9s | %-9s | %12.1f | %12.1f | %13.2f | %12.1f | %18.0f | %19.2f | %18.0f |\n", m, p, a, b, per, fixed, fixed + 256 * per, iper, ifixed + 256 * iper }'
  done
done
