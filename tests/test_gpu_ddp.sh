#!/usr/bin/env bash
# test_gpu_ddp.sh - data-parallel training on GPUs with NCCL (issue 8, GPU side):
#   1. one GPU, `--gpus 0`: the NCCL path in one process (a communicator of one
#      rank, gradients all-reduced in buckets during backward) trains to the
#      same weights as plain `--device cuda:0` (an average over one rank is the
#      identity: agreement to float rounding, relative L2 at most 1e-6), and
#      says so in its log; with --sync-bn the batchnorms run synchronised
#      (kernels/syncbn.cu, sums over NCCL), which over one rank is the
#      batch's own statistics: the weights agree with the plain run's within
#      1e-4 (the statistics are summed in another order and in double);
#   2. with two GPUs or more, `--gpus 0,1` (whisker re-executes itself under
#      mpirun, so it needs Open MPI) trains with 2 ranks, gradients over NCCL,
#      and every rank ends with the same weights (rank 0's model is saved; the
#      ranks' checkpoints cannot be compared, so the run is compared with one
#      process of the whole batch instead, within per-rank batchnorm's reach:
#      both must learn the task); and with --sync-bn, 2 ranks of 8 normalise
#      as one process of 16 does: the weights end where 1.'s synchronised
#      run's did, within 3x the noise floor of that run against the plain one
#      and 1e-4 anyway (scripts/ddp_same.py, as tests/test_dist_train.sh
#      judges the CPU's ranks), and the same run with stepwise calls
#      ($WHISKER_GPU_FUSED_STEP=0) ends where the default step in one call
#      did (relative L2 at most 1e-6);
#   3. with two GPUs: a run killed after its first checkpoint resumes on one
#      GPU (`--device cuda:0`, the same global batch) and completes its epochs;
#      a rank that hangs (SIGSTOP) makes every rank stop within
#      $WHISKER_DIST_TIMEOUT with a message naming what was waited for; a rank
#      that dies (SIGKILL) ends the whole run; and on emulated GPUs
#      ($WK_FAKE_DEVICES set), a rank hung inside an NCCL all-reduce (the fake
#      NCCL's WK_FAKE_NCCL_HANG) makes the other give up at the backend's
#      NCCL deadline, abort its communicator and end the run, and NCCL out of
#      device memory at its first all-reduce (WK_FAKE_NCCL_OOM) fails the run
#      with the advice of a smaller batch; ranks launched
#      with different $WHISKER_GPU_FUSED_STEP are refused before training.
# Skipped (77) without a GPU, without /usr/bin/python3's numpy and PIL (the
# data and the comparison), and for 2. and 3. without a second GPU or mpirun
# (a failure instead with WK_GPU_DDP_NEED_TWO=1: test_gpu_ddp_emu, which runs
# this script on two emulated GPUs, tests/emu/fake, must not pass without them).
set -euo pipefail
bin="${WHISKER_BIN:?}"
src="${WHISKER_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}"
py="${WHISKER_PYTHON:-/usr/bin/python3}"
need_two="${WK_GPU_DDP_NEED_TWO:-}"
skip() {
  [ -z "$need_two" ] || { echo "test_gpu_ddp: FAIL: $* (WK_GPU_DDP_NEED_TWO)" >&2; exit 1; }
  echo "test_gpu_ddp: $*: skipped"
  exit 77
}
"$py" -c 'import PIL, numpy' 2>/dev/null || skip "no PIL/numpy"
n_gpus=$("$bin" system 2>/dev/null | grep -c "^device [0-9]*: .*compute capability" || true)
[ "${n_gpus:-0}" -ge 1 ] || skip "no GPU"
# Two processes must choose the same convolution algorithms for 1.'s 1e-6:
# timing (the default for training) can choose differently from run to run
# between algorithms of about the same speed, which round differently;
# cuDNN's heuristics choose alike in every process.
export WHISKER_CUDNN_ALGO=heuristic
# and none that adds with atomics, whose order changes from run to run
export WHISKER_CUDNN_DETERMINISTIC=1
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do pkill -9 -P "$p" 2>/dev/null || true; kill -9 "$p" 2>/dev/null || true; done
  [ -n "${KEEP:-}" ] || rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "test_gpu_ddp: FAIL: $*" >&2; exit 1; }
# shellcheck source=tests/dist_lib.sh
. "$src/tests/dist_lib.sh"
# stop_at_checkpoint, stopped_pid: tests/stop_lib.sh
# shellcheck source=tests/stop_lib.sh
. "$src/tests/stop_lib.sh"
# the default steps (part 2 sets the stepwise calls for one run itself)
unset WHISKER_GPU_FUSED_STEP WHISKER_GPU_HOST_STEP WHISKER_GPU_HOST_LOSS WHISKER_CUDA_GRAPH
"$py" "$src/scripts/gen_shapes.py" "$tmp/shapes" --train 64 --val 24 > /dev/null
# fp32 (not the default auto, bf16 on a recent GPU): the bounds below are float32's
any_precision=("$tmp/shapes" --model smallcnn --size 32 --lr 0.002 --seed 3 --workers 1 --epochs 2)
common=("${any_precision[@]}" --precision fp32)
l2() { "$py" "$src/scripts/st_compare.py" --l2 --skip optim. "$1/checkpoint.safetensors" \
  "$2/checkpoint.safetensors" | sed -n 's/.*global relative L2 difference \([^ ]*\).*/\1/p'; }

# 1. one GPU: the NCCL path against none
"$bin" train "${common[@]}" --batch 16 --device cuda:0 --out "$tmp/plain" > /dev/null \
  2> "$tmp/plain.err" || { cat "$tmp/plain.err"; fail "plain GPU run"; }
"$bin" train "${common[@]}" --batch 16 --gpus 0 --out "$tmp/nccl" > /dev/null \
  2> "$tmp/nccl.err" || { cat "$tmp/nccl.err"; fail "--gpus 0 run"; }
grep -q "data parallel: 1 rank (nccl)" "$tmp/nccl.err" || { cat "$tmp/nccl.err"; fail "no NCCL line"; }
d=$(l2 "$tmp/plain" "$tmp/nccl")
echo "one GPU: --gpus 0 (NCCL, one rank) vs --device cuda:0: weights differ by $d"
"$py" -c "import sys; sys.exit(0 if float('$d') <= 1e-6 else 1)" || fail "weights differ by $d"

# 1b. one GPU: synchronised batchnorm over a communicator of one rank
"$bin" train "${common[@]}" --batch 16 --gpus 0 --sync-bn --out "$tmp/sync" > /dev/null \
  2> "$tmp/sync.err" || { cat "$tmp/sync.err"; fail "--gpus 0 --sync-bn run"; }
grep -q "synchronised batchnorm" "$tmp/sync.err" || { cat "$tmp/sync.err"; fail "no sync-bn line"; }
d=$(l2 "$tmp/plain" "$tmp/sync")
echo "one GPU: --gpus 0 --sync-bn vs --device cuda:0: weights differ by $d"
"$py" -c "import sys; sys.exit(0 if float('$d') <= 1e-4 else 1)" || fail "weights differ by $d"

# 2. two GPUs
# several ranks need mpirun and whisker's MPI backend (scripts/gpu_check.sh
# builds without it)
mpi_plugin="${WHISKER_MPI_PLUGIN:-$(dirname "$bin")/libwhisker-mpi.so}"
if [ "${n_gpus:-0}" -lt 2 ] || ! command -v mpirun > /dev/null || [ ! -e "$mpi_plugin" ]; then
  [ -z "$need_two" ] || fail "$n_gpus GPU(s), mpirun $(command -v mpirun || echo missing), $mpi_plugin $([ -e "$mpi_plugin" ] && echo there || echo missing): the 2-rank cases cannot run"
  echo "test_gpu_ddp: one GPU (or no mpirun, or built without MPI): the 2-rank cases are skipped"
  echo "test_gpu_ddp: ok"
  exit 0
fi
# as tests/test_dist_train.sh: root in a container, MPI over shared memory only
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl=self,vader
export OMPI_MCA_btl_vader_single_copy_mechanism=none
"$bin" train "${common[@]}" --batch 8 --gpus 0,1 --out "$tmp/two" > /dev/null \
  2> "$tmp/two.err" || { cat "$tmp/two.err"; fail "--gpus 0,1 run"; }
grep -q "data parallel: 2 ranks (mpi, gradients over nccl)" "$tmp/two.err" \
  || { cat "$tmp/two.err"; fail "no 2-rank NCCL line"; }
"$py" - "$tmp/plain/metrics.csv" "$tmp/two/metrics.csv" <<'EOF' || fail "the 2-GPU run did not train"
import csv, sys
a, b = (list(csv.DictReader(open(p))) for p in sys.argv[1:3])
assert len(a) == len(b) == 2, (len(a), len(b))
# the same schedule; the loss falls in both
assert [x["lr"] for x in a] == [x["lr"] for x in b], "schedules differ"
assert float(b[-1]["train_loss"]) < float(b[0]["train_loss"]) + 0.05, b
EOF
echo "two GPUs: --gpus 0,1 trained with NCCL; d(one process) = $(l2 "$tmp/plain" "$tmp/two")"
"$bin" train "${common[@]}" --batch 8 --gpus 0,1 --sync-bn --out "$tmp/two_sync" > /dev/null \
  2> "$tmp/two_sync.err" || { cat "$tmp/two_sync.err"; fail "--gpus 0,1 --sync-bn run"; }
echo "two GPUs: --gpus 0,1 --sync-bn (2 x 8) vs --gpus 0 --sync-bn (1 x 16):"
"$py" "$src/scripts/ddp_same.py" "$tmp/sync" "$tmp/plain" "$tmp/two_sync" \
  || fail "2 x 8 synchronised did not end where 1 x 16 did"
# the stepwise calls ($WHISKER_GPU_FUSED_STEP=0) against the default step in one call, over two
# ranks: the same kernels and collectives (and one more, the check's), so the same weights
WHISKER_GPU_FUSED_STEP=0 "$bin" train "${common[@]}" --batch 8 --gpus 0,1 --sync-bn \
  --out "$tmp/two_sync_stepwise" > /dev/null 2> "$tmp/two_sync_stepwise.err" ||
  { cat "$tmp/two_sync_stepwise.err"; fail "--gpus 0,1 --sync-bn stepwise run"; }
d=$(l2 "$tmp/two_sync" "$tmp/two_sync_stepwise")
echo "two GPUs: --sync-bn stepwise vs in one call: weights differ by $d"
"$py" -c "import sys; sys.exit(0 if float('$d') <= 1e-6 else 1)" || fail "stepwise differs by $d"
# 2b. the 16-bit precisions over two ranks (fp16's loss scaling sees the
# averaged gradients, so every rank skips the same steps): they train, on the
# schedule of the fp32 run, losses within 2% of it
cc=$("$bin" system 2>/dev/null | sed -n 's/^device 0: .*compute capability \([0-9]*\)\..*/\1/p')
half=(fp16)
[ "${cc:-0}" -lt 8 ] || half=(bf16 fp16)
for p in "${half[@]}"; do
  "$bin" train "${any_precision[@]}" --precision "$p" --batch 8 --gpus 0,1 --out "$tmp/two_$p" > /dev/null \
    2> "$tmp/two_$p.err" || { cat "$tmp/two_$p.err"; fail "--gpus 0,1 --precision $p run"; }
done
"$py" - "$tmp" "${half[@]}" <<'EOF' || fail "a 16-bit 2-GPU run strayed from fp32's"
import csv, math, sys
t = sys.argv[1]
ref = list(csv.DictReader(open(f"{t}/two/metrics.csv")))
for p in sys.argv[2:]:
    got = list(csv.DictReader(open(f"{t}/two_{p}/metrics.csv")))
    assert [r["lr"] for r in got] == [r["lr"] for r in ref], (p, "schedules differ")
    a = [float(r["train_loss"]) for r in got]
    b = [float(r["train_loss"]) for r in ref]
    rel = max(abs(x - y) / y for x, y in zip(a, b))
    assert all(math.isfinite(x) for x in a) and rel <= 0.02, (p, a, b)
    print(f"two GPUs, {p}: training losses {a} against fp32's {b}")
EOF

# 3. faults and resume (rank_pid, ends_within: tests/dist_lib.sh)
# 3a. killed after epoch 1 of 3 on two GPUs, resumed on one with the same global batch
base=("$tmp/shapes" --model smallcnn --size 32 --lr 0.002 --seed 3 --workers 1 --precision fp32)
run3=("${base[@]}" --epochs 3)
# (rank 0 stops itself at its first checkpoint, tests/stop_lib.sh; everything is
# killed there)
WHISKER_DIST_TIMEOUT=60 stop_at_checkpoint "$bin" train "${run3[@]}" --batch 8 --gpus 0,1 \
  --out "$tmp/moved" > /dev/null 2> "$tmp/moved.err" &
mp=$!
pids+=("$mp")
sp=$(stopped_pid "$mp" 1200)
[ -n "$sp" ] || { cat "$tmp/moved.err"; fail "the 2-GPU run did not stop at its first checkpoint"; }
kill -9 "$sp"
pkill -9 -P "$mp" 2>/dev/null || true
kill -9 "$mp" 2>/dev/null || true
wait "$mp" 2>/dev/null || true
pids=()
rows=$(($(wc -l < "$tmp/moved/metrics.csv") - 1))
[ "$rows" -lt 3 ] || fail "the 2-GPU run finished before it could be killed"
"$bin" train "${run3[@]}" --batch 16 --device cuda:0 --out "$tmp/moved" --resume > /dev/null \
  2> "$tmp/resume.err" || { cat "$tmp/resume.err"; fail "resume on one GPU"; }
grep -q "resuming" "$tmp/resume.err" || fail "the run did not resume"
[ "$(wc -l < "$tmp/moved/metrics.csv")" -eq 4 ] || fail "the resumed run's metrics.csv lacks epochs"
echo "resumed on one GPU after $rows epoch(s) on two: 3 epochs in metrics.csv"

# spawn NAME TIMEOUT_S: a long 2-GPU run into $tmp/NAME in the background (mpirun's pid in
# mp, kept in pids for the cleanup) with $WHISKER_DIST_TIMEOUT=TIMEOUT_S; its rank 1 in victim
spawn() {
  WHISKER_DIST_TIMEOUT=$2 "$bin" train "${base[@]}" --epochs 1000 --batch 8 --gpus 0,1 \
    --out "$tmp/$1" > /dev/null 2> "$tmp/$1.err" &
  mp=$!
  pids+=("$mp")
  victim=$(rank_pid "$mp" "$tmp/$1" 600)
  [ -n "$victim" ] || { cat "$tmp/$1.err"; fail "rank 1 not found ($1)"; }
}

# 3b. a hung rank: the others give up within the timeout, and the run ends
spawn hang 3
kill -STOP "$victim"
# the 3 s deadline, then MPI_Abort's teardown
ends_within "$mp" "$victim" 30 "hung rank" "$tmp/hang.err"
pids=()
# the wait that gives up is MPI's (metrics, the stop flag) or NCCL's (the
# backend's deadline), depending on where the rank stopped
msg=$(grep -m1 "no answer from the other ranks for 3 s" "$tmp/hang.err") \
  || { cat "$tmp/hang.err"; fail "no timeout message"; }
echo "hung rank: every rank stopped ${secs} s after the SIGSTOP; $msg"

# 3c. a dead rank ends the run (mpirun's own doing, or the survivor's error)
spawn dead 30
kill -9 "$victim"
ends_within "$mp" "" 40 "dead rank" "$tmp/dead.err"
pids=()
echo "dead rank: the run ended ${secs} s after the SIGKILL"

# 3d. emulated GPUs only: rank 1 hangs inside its 5th all-reduce (the fake
# NCCL's fault injection), so rank 0 is the one waiting in NCCL, and it is the
# backend's deadline on the non-blocking communicator that must end the run
if [ -n "${WK_FAKE_DEVICES:-}" ]; then
  WK_FAKE_NCCL_HANG=1:5 WHISKER_DIST_TIMEOUT=3 "$bin" train "${base[@]}" --epochs 1000 --batch 8 \
    --gpus 0,1 --out "$tmp/nccl_hang" > /dev/null 2> "$tmp/nccl_hang.err" &
  mp=$!
  pids+=("$mp")
  ends_within "$mp" "" 60 "rank hung in NCCL" "$tmp/nccl_hang.err"
  pids=()
  grep -q "rank 1 hangs before collective step 5" "$tmp/nccl_hang.err" \
    || { cat "$tmp/nccl_hang.err"; fail "the fault was not injected"; }
  msg=$(grep -m1 "NCCL: .*no answer from the other ranks for 3 s.*NCCL_DEBUG=INFO" \
    "$tmp/nccl_hang.err") || { cat "$tmp/nccl_hang.err"; fail "no NCCL timeout message with its hints"; }
  echo "rank hung in an NCCL all-reduce: the run ended after ${secs} s; $msg"
  # 3f. NCCL finds no device memory at its first all-reduce (the fake's WK_FAKE_NCCL_OOM: recent
  # NCCL allocates its buffers as it connects, at the first collectives): the run fails at once
  # with NCCL's message and the batch advice, as whisker's own allocations would
  rc=0
  WK_FAKE_NCCL_OOM=0:1 timeout 120 "$bin" train "${base[@]}" --epochs 1 --batch 8 --gpus 0 \
    --out "$tmp/nccl_oom" > /dev/null 2> "$tmp/nccl_oom.err" || rc=$?
  [ "$rc" -eq 1 ] || { cat "$tmp/nccl_oom.err"; fail "NCCL out of memory: exit $rc, not 1"; }
  msg=$(grep -m1 "NCCL: .*Failed to CUDA calloc.*try a smaller --batch" "$tmp/nccl_oom.err") \
    || { cat "$tmp/nccl_oom.err"; fail "NCCL out of memory: no message with the batch advice"; }
  echo "NCCL out of device memory at its first all-reduce: exit 1; $msg"
fi

# 3e. ranks that would step differently (one with the stepwise calls, one in one call: their
# NCCL collectives would not pair up) are refused before training, naming the variable
root=()
[ "$(id -u)" != 0 ] || root=(--allow-run-as-root)
rc=0
timeout 120 mpirun "${root[@]}" --oversubscribe -np 1 -x WHISKER_GPU_FUSED_STEP=0 \
  "$bin" train "${common[@]}" --batch 8 --device cuda --out "$tmp/mixed" : \
  -np 1 "$bin" train "${common[@]}" --batch 8 --device cuda --out "$tmp/mixed" \
  > "$tmp/mixed.err" 2>&1 || rc=$?
[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] || { cat "$tmp/mixed.err"; fail "mixed step modes: exit $rc"; }
grep -q 'have \$WHISKER_GPU_FUSED_STEP=0 in their environment, the others not' "$tmp/mixed.err" ||
  { cat "$tmp/mixed.err"; fail "mixed step modes were not refused by name"; }
echo "mixed step modes: refused ($(grep -m1 -o '1 of 2 ranks have [^,]*' "$tmp/mixed.err"))"
# and bench, whose ranks step as training's do, the same (naming the rank)
rc=0
bargs=(bench --model smallcnn --size 32 --batch 4 --steps 1 --warmup 1 --latency-runs 1
  --infer-runs 0 --device cuda)
timeout 120 mpirun "${root[@]}" --oversubscribe -np 1 -x WHISKER_GPU_FUSED_STEP=0 \
  "$bin" "${bargs[@]}" : -np 1 "$bin" "${bargs[@]}" > "$tmp/mixed_bench.err" 2>&1 || rc=$?
[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] ||
  { cat "$tmp/mixed_bench.err"; fail "bench, mixed step modes: exit $rc"; }
grep -q 'whisker bench: rank [01] of 2: 1 of 2 ranks have \$WHISKER_GPU_FUSED_STEP=0' \
  "$tmp/mixed_bench.err" ||
  { cat "$tmp/mixed_bench.err"; fail "bench: mixed step modes were not refused by name"; }
echo "bench, mixed step modes: refused too"

# 3g. emulated GPUs only: a scheduler that gives each rank a GPU of its own (Slurm's
# --gpus-per-task=1: each process sees one, CUDA_VISIBLE_DEVICES naming it) has every rank
# take its device 0, with --device cuda and with --device auto (the rank r of a machine would
# ask for GPU r, which its process does not see, or fall back to the CPU)
if [ -n "${WK_FAKE_DEVICES:-}" ]; then
  for dev in cuda auto; do
    rc=0
    timeout 120 mpirun "${root[@]}" --oversubscribe -np 2 -x CUDA_VISIBLE_DEVICES=3 \
      -x WK_FAKE_DEVICES=1 "$bin" train "${common[@]}" --batch 8 --device "$dev" \
      --out "$tmp/own_$dev" > "$tmp/own_$dev.err" 2>&1 || rc=$?
    [ "$rc" -eq 0 ] || { cat "$tmp/own_$dev.err"; fail "a GPU per process, --device $dev: exit $rc"; }
    grep -q "data parallel: 2 ranks (mpi, gradients over nccl)" "$tmp/own_$dev.err" ||
      { cat "$tmp/own_$dev.err"; fail "a GPU per process, --device $dev: not 2 ranks over NCCL"; }
  done
  echo "a GPU per process (CUDA_VISIBLE_DEVICES=3 in each of 2 ranks): --device cuda and auto train over NCCL"
fi
echo "test_gpu_ddp: ok"
