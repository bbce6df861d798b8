#!/usr/bin/env bash
# test_gpu_cli.sh - the application on a GPU, as a user runs it (issue 7):
#   1. `train --device cuda --precision fp32` ends where the same run on the
#      CPU does, given the same batches: float batches on both
#      (WHISKER_INPUT_U8=0), and the GPU's default 8-bit batches against the
#      CPU fed 8-bit batches too (WHISKER_INPUT_U8=1); "where" as
#      scripts/ddp_same.py judges data-parallel runs: within 3x the CPU's own
#      noise floor (1 thread against 2) and 1e-3;
#   2. `eval` and `classify` on the GPU agree with the CPU (eval on the same
#      8-bit batches; classify, which preprocesses each file itself, in float
#      on both): accuracy and confusion equal, loss within 1e-4, every top
#      class equal, probabilities within 1e-4;
#   3. `--precision bf16` (on a GPU of compute capability 8.0 or more) and
#      `fp16` train (each epoch's training loss within 2% of fp32's);
#   4. `$WHISKER_CUDA_GRAPH=1` captures the step and replays it, and ends with
#      the weights of the uncaptured run (relative L2 at most 1e-6), as do the
#      stepwise calls (`$WHISKER_GPU_FUSED_STEP=0`);
#   5. `finetune --device cuda` from the CPU's model runs both phases, and
#      `--lr-find` sweeps on the GPU (at least 10 rows in lr_find.csv: the
#      sweep stops early where the loss diverges);
#   6. on emulated GPUs only ($WK_FAKE_DEVICES set, the device capped with
#      WK_FAKE_DEVICE_MB): a batch that does not fit fails with a message that
#      suggests a smaller --batch, a network that does not fit whatever the
#      batch with one that says no batch size helps; exit code 1 both.
#   7. `bench --profile` gives the device's time per node, and names the
#      cuDNN algorithms of the slowest convolutions;
#   8. `bench --model FILE` trains and infers the shipped default model there.
# Convolution algorithms by heuristics and deterministic, so that runs repeat.
# Skipped (77) without a GPU or /usr/bin/python3's numpy and PIL; a failure
# instead with WK_GPU_CLI_NEED=1 (test_gpu_cli_emu, on an emulated GPU).
set -euo pipefail
bin="${WHISKER_BIN:?}"
src="${WHISKER_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}"
py="${WHISKER_PYTHON:-/usr/bin/python3}"
fail() { echo "test_gpu_cli: FAIL: $*" >&2; exit 1; }
skip() {
  [ -z "${WK_GPU_CLI_NEED:-}" ] || fail "$* (WK_GPU_CLI_NEED)"
  echo "test_gpu_cli: $*: skipped"
  exit 77
}
"$py" -c 'import PIL, numpy' 2>/dev/null || skip "no PIL/numpy"
cc=$("$bin" system 2>/dev/null | sed -n 's/^device 0: .*compute capability \([0-9]*\)\..*/\1/p')
[ -n "$cc" ] || skip "no GPU"
tmp=$(mktemp -d)
trap '[ -n "${KEEP:-}" ] || rm -rf "$tmp"' EXIT
export WHISKER_CUDNN_ALGO=heuristic WHISKER_CUDNN_DETERMINISTIC=1
unset WHISKER_THREADS WHISKER_INPUT_U8 WHISKER_CUDA_GRAPH WHISKER_GPU_FUSED_STEP
"$py" "$src/scripts/gen_shapes.py" "$tmp/shapes" --train 64 --val 24 > /dev/null
common=("$tmp/shapes" --model smallcnn --size 32 --lr 0.002 --seed 3 --workers 1 --epochs 2
  --batch 16)
# train NAME ARGS...: a run into $tmp/NAME, its stderr in $tmp/NAME.err
train() {
  local name=$1
  shift
  "$bin" train "${common[@]}" "$@" --out "$tmp/$name" > /dev/null 2> "$tmp/$name.err" \
    || { cat "$tmp/$name.err"; fail "train $name"; }
}
same() { "$py" "$src/scripts/ddp_same.py" "$@"; }

# 1. GPU against CPU, the same batches
train cpu_t2 --device cpu --threads 2
train cpu_t1 --device cpu --threads 1
WHISKER_INPUT_U8=0 train gpu_f32in --device cuda --precision fp32 --threads 2
echo "float batches: the GPU against the CPU"
same "$tmp/cpu_t2" "$tmp/cpu_t1" "$tmp/gpu_f32in" || fail "float batches: the GPU ended elsewhere"
WHISKER_INPUT_U8=1 train cpu_u8_t2 --device cpu --threads 2
WHISKER_INPUT_U8=1 train cpu_u8_t1 --device cpu --threads 1
train gpu --device cuda --precision fp32 --threads 2
echo "8-bit batches: the GPU against the CPU"
same "$tmp/cpu_u8_t2" "$tmp/cpu_u8_t1" "$tmp/gpu" || fail "8-bit batches: the GPU ended elsewhere"

# 2. eval and classify: the GPU against the CPU on the same inputs
model="$tmp/cpu_t2/model.safetensors"
"$bin" eval "$tmp/shapes/val" --model "$model" --device cuda --json > "$tmp/eval_gpu.json" \
  2> "$tmp/eval_gpu.err" || { cat "$tmp/eval_gpu.err"; fail "eval on the GPU"; }
WHISKER_INPUT_U8=1 "$bin" eval "$tmp/shapes/val" --model "$model" --device cpu --json \
  > "$tmp/eval_cpu.json" 2> /dev/null || fail "eval on the CPU"
"$bin" classify "$tmp/shapes/val" --model "$model" --device cuda --top 3 --json \
  > "$tmp/cls_gpu.jsonl" 2> "$tmp/cls_gpu.err" || { cat "$tmp/cls_gpu.err"; fail "classify on the GPU"; }
"$bin" classify "$tmp/shapes/val" --model "$model" --device cpu --top 3 --json \
  > "$tmp/cls_cpu.jsonl" 2> /dev/null || fail "classify on the CPU"
"$py" - "$tmp" <<'EOF' || fail "eval or classify: the GPU differs from the CPU"
import json, sys
t = sys.argv[1]
g, c = (json.load(open(f"{t}/eval_{d}.json")) for d in ("gpu", "cpu"))
assert g["n"] == c["n"] == 72, (g["n"], c["n"])
assert g["accuracy"] == c["accuracy"] and g["confusion"] == c["confusion"], (g, c)
assert abs(g["loss"] - c["loss"]) <= 1e-4 * abs(c["loss"]), (g["loss"], c["loss"])
rows = [[json.loads(l) for l in open(f"{t}/cls_{d}.jsonl")] for d in ("gpu", "cpu")]
assert len(rows[0]) == len(rows[1]) == 72, [len(r) for r in rows]
worst = 0.0
for a, b in zip(*rows):
    assert a["file"] == b["file"], (a["file"], b["file"])
    assert a["top"][0]["class"] == b["top"][0]["class"], (a, b)
    pa = {x["class"]: x["probability"] for x in a["top"]}
    pb = {x["class"]: x["probability"] for x in b["top"]}
    assert pa.keys() == pb.keys(), (a, b)
    worst = max(worst, max(abs(pa[k] - pb[k]) for k in pa))
assert worst <= 1e-4, worst
print(f"eval: accuracy {g['accuracy']:.4f} on both, loss {g['loss']:.6f} (GPU) and "
      f"{c['loss']:.6f} (CPU); classify: 72 top classes equal, probabilities within {worst:.2g}")
EOF

# 3. bf16 (Ampere and later) and fp16
half=(fp16)
if [ "$cc" -ge 8 ]; then half=(bf16 fp16); else echo "compute capability $cc: no bf16"; fi
for p in "${half[@]}"; do train "gpu_$p" --device cuda --precision "$p"; done
"$py" - "$tmp" "${half[@]}" <<'EOF' || fail "16-bit training strayed from fp32's"
import csv, math, sys
t = sys.argv[1]
ref = [float(r["train_loss"]) for r in csv.DictReader(open(f"{t}/gpu/metrics.csv"))]
for p in sys.argv[2:]:
    got = [float(r["train_loss"]) for r in csv.DictReader(open(f"{t}/gpu_{p}/metrics.csv"))]
    assert len(got) == len(ref) == 2, (p, got)
    rel = max(abs(a - b) / b for a, b in zip(got, ref))
    assert all(math.isfinite(x) for x in got) and rel <= 0.02, (p, got, ref)
    print(f"{p}: training losses {got} against fp32's {ref} (at most {rel:.2g} apart)")
EOF
[ "$cc" -lt 8 ] || grep -q "running on GPU 0 in bf16" "$tmp/gpu_bf16.err" \
  || fail "the bf16 run did not say bf16"

# 4. CUDA graphs
WHISKER_CUDA_GRAPH=1 train gpu_graph --device cuda --precision fp32
line=$(grep "CUDA graphs: " "$tmp/gpu_graph.err" | tail -1) || true
echo "$line" | grep -Eq "CUDA graphs: [1-9][0-9]* captured, [1-9][0-9]* steps replayed" \
  || { cat "$tmp/gpu_graph.err"; fail "no graph replayed"; }
d=$("$py" "$src/scripts/st_compare.py" --l2 --skip optim. "$tmp/gpu/checkpoint.safetensors" \
  "$tmp/gpu_graph/checkpoint.safetensors" | sed -n 's/.*global relative L2 difference \([^ ]*\).*/\1/p') \
  || fail "comparing the graph run's weights"
echo "${line#*info: }; weights against the uncaptured run: $d"
"$py" -c "import sys; sys.exit(0 if float('$d') <= 1e-6 else 1)" || fail "graph run differs by $d"
# the stepwise calls ($WHISKER_GPU_FUSED_STEP=0, four host waits a step) against the default
# step in one call: the same kernels, so the same weights
WHISKER_GPU_FUSED_STEP=0 train gpu_stepwise --device cuda --precision fp32
d=$("$py" "$src/scripts/st_compare.py" --l2 --skip optim. "$tmp/gpu/checkpoint.safetensors" \
  "$tmp/gpu_stepwise/checkpoint.safetensors" |
  sed -n 's/.*global relative L2 difference \([^ ]*\).*/\1/p') || fail "comparing the stepwise run"
echo "stepwise steps: weights against the steps in one call: $d"
"$py" -c "import sys; sys.exit(0 if float('$d') <= 1e-6 else 1)" || fail "stepwise run differs by $d"

# 5. fine-tuning and the learning-rate sweep on the GPU
"$bin" finetune "$tmp/shapes" --from "$model" --out "$tmp/ft" --epochs 2 --head-epochs 1 \
  --batch 16 --size 32 --workers 1 --device cuda --precision fp32 > /dev/null 2> "$tmp/ft.err" \
  || { cat "$tmp/ft.err"; fail "finetune on the GPU"; }
grep -q "fine-tuning: head trained" "$tmp/ft.err" && [ -s "$tmp/ft/model.safetensors" ] \
  || { cat "$tmp/ft.err"; fail "finetune did not run both phases"; }
echo "finetune: $(tail -1 "$tmp/ft.err")"
common_rate=("${common[@]}")
common=()  # --lr-find chooses the rate: the common arguments without --lr
for ((i = 0; i < ${#common_rate[@]}; i++)); do
  if [ "${common_rate[i]}" = --lr ]; then i=$((i + 1)); else common+=("${common_rate[i]}"); fi
done
train gpu_lrfind --device cuda --precision fp32 --lr-find
common=("${common_rate[@]}")
rows=$(($(wc -l < "$tmp/gpu_lrfind/lr_find.csv") - 1))
[ "$rows" -ge 10 ] || fail "lr_find.csv has $rows rows"
echo "lr-find: $rows steps swept on the GPU"

# 6. out of device memory (emulated GPUs, capped). resnet18 SGD needs about 160 MiB before
# any batch (weights, gradients, momentum, cuBLAS's workspace): at 240 MiB a batch of 64 does
# not fit and 8 does (checked by hand: it trains), so the advice is the smaller batch; at
# 140 MiB the momentum itself does not fit beside the weights, and no batch size helps.
if [ -n "${WK_FAKE_DEVICES:-}" ]; then
  # oom NAME MiB: a resnet18 run at batch 64 on a device of MiB, which must fail with exit 1
  oom() {
    local rc=0
    WK_FAKE_DEVICE_MB=$2 "$bin" train "$tmp/shapes" --model resnet18 --size 64 --batch 64 \
      --epochs 2 --workers 1 --device cuda --precision fp32 --out "$tmp/$1" > /dev/null \
      2> "$tmp/$1.err" || rc=$?
    [ "$rc" -eq 1 ] || { cat "$tmp/$1.err"; fail "out of device memory ($2 MiB): exit $rc, not 1"; }
  }
  oom oom_batch 240
  grep -q "GPU: a batch of 64 does not fit (out of device memory .*); try a smaller --batch" \
    "$tmp/oom_batch.err" || { cat "$tmp/oom_batch.err"; fail "no smaller-batch advice"; }
  oom oom_model 140
  grep -q "GPU: 42 MiB of optimizer state beside the network's weights and gradients does not \
fit (out of device memory .*); no batch size helps" "$tmp/oom_model.err" ||
    { cat "$tmp/oom_model.err"; fail "no advice that the network alone is too large"; }
  echo "out of memory: $(grep -o 'GPU: a batch of 64 does not fit' "$tmp/oom_batch.err") (240 MiB);" \
    "$(grep -o 'GPU: 42 MiB of optimizer state.*does not fit' "$tmp/oom_model.err") (140 MiB)"
fi

# 7. bench --profile on the GPU: the device's time per node (CUDA events), the
#    convolutions' cuDNN algorithms beside the slowest, CUDA graphs off meanwhile
"$bin" bench --device cuda --model resnet18 --size 32 --batch 4 --steps 2 --warmup 1 \
  --latency-runs 1 --infer-runs 0 --profile > "$tmp/prof.out" 2> "$tmp/prof.err" ||
  { cat "$tmp/prof.err"; fail "bench --profile on the GPU"; }
grep -q "time per training step by op (ms; the device's, between CUDA events" "$tmp/prof.err" ||
  { cat "$tmp/prof.err"; fail "bench --profile: no device times"; }
awk '$1 == "conv" && $2 == "forward" && $3 > 0 && $4 == "backward" && $5 > 0 { ok = 1 }
  END { exit !ok }' "$tmp/prof.err" || { cat "$tmp/prof.err"; fail "bench --profile: no conv times"; }
grep -Eq "conv [0-9]x[0-9]/[0-9] .* fwd [a-z_]+.*; dgrad [a-z_0-9]+.*; wgrad [a-z_0-9]+" \
  "$tmp/prof.err" || { cat "$tmp/prof.err"; fail "bench --profile: no algorithms named"; }
echo "bench --profile: $(grep -c "conv [0-9]x[0-9]/" "$tmp/prof.err") of the slowest nodes are convolutions"

# 8. bench --model FILE on the GPU: the shipped default (MobileNetV2 with its batchnorms
#    folded, 224x224, 2 classes) trains and infers there at the file's own size
"$bin" bench --device cuda --model "$src/pretrained/default.safetensors" --batch 2 --steps 1 \
  --warmup 0 --latency-runs 1 --infer-runs 1 --json > "$tmp/file.json" 2> "$tmp/file.err" ||
  { cat "$tmp/file.err"; fail "bench --model FILE on the GPU"; }
"$py" - "$tmp/file.json" <<'PY' || { cat "$tmp/file.json"; fail "bench --model FILE: figures"; }
import json, sys
r = json.load(open(sys.argv[1]))
assert r["impl"].endswith(" cuda") and r["size"] == 224, r
assert r["train_images_per_s"] > 0 and r["infer_images_per_s"] > 0, r
PY
echo "bench --model FILE: $(cat "$tmp/file.json")"
echo "test_gpu_cli: ok"
