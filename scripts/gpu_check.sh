#!/usr/bin/env bash
# gpu_check.sh - on a machine with an NVIDIA GPU, in one go: build whisker with
# the CUDA backend, run the GPU tests (every kernel against the CPU reference,
# whole networks on the GPU against the CPU, NCCL data parallelism
# (test_gpu_ddp.sh), the application's commands on the GPU against the CPU
# (test_gpu_cli.sh)), then the GPU benchmark side by
# side with PyTorch on the same card, the cost of the NCCL data-parallel path
# on one GPU (--gpus 0 against --device cuda:0, alternated, two each), and
# what the batchnorms left alone gain through cuDNN's Ex calls
# (the default against $WHISKER_BN_FUSE=groups), convolutions through cuDNN's graph API (against
# the legacy calls, $WHISKER_CUDNN_API), max pooling on whisker's kernels (against
# $WHISKER_GPU_POOL=cudnn), the step in one call, CUDA graphs (over the one
# call), the staged next batch and batchnorm fusion each gain (against $WHISKER_GPU_FUSED_STEP=0,
# $WHISKER_CUDA_GRAPH=0, $WHISKER_GPU_PREFETCH=0, $WHISKER_BN_FUSE=0),
# and what whisker's batchnorm kernels cost against cuDNN's ($WHISKER_GPU_OWN_BN).
#
#   bash scripts/gpu_check.sh [OUT_DIR]        (default: $OUT, else build-gpu/out)
#   WK_GPU_CHECK=tests bash scripts/gpu_check.sh   build and tests only
#   WK_GPU_CHECK=bench bash scripts/gpu_check.sh   build (kept from a previous
#                                                  call) and benchmarks only
#   WK_GPU_TABLES="graph bn_alone" ...   only these of the benchmark's tables (main:
#       training, inference and memory against PyTorch; the one-variable tables bn_alone,
#       graph, workspace, infer_bn, nccl, pool, fused_step, cuda_graph, prefetch, bn_fuse, own_bn),
#       which run in the order above whatever the order asked for
#   WK_GPU_CHECK=sanitize bash scripts/gpu_check.sh   build, then NVIDIA's compute-
#       sanitizer (memcheck, racecheck, synccheck, initcheck) over the kernel tests
#       and memcheck over a few whole networks; OUT_DIR/sanitize_*.txt
#   WK_GPU_CHECK_EMU=1 WK_GPU_CHECK=tests|sanitize|bench|profile bash scripts/gpu_check.sh
#       a dry run of the script on a machine without a GPU, on whisker's host fakes (the
#       sanitize phase then needs a stand-in compute-sanitizer on PATH). bench and profile
#       shrink every whisker bench to 32 px, batch 2 and one step or run, PyTorch runs on
#       the CPU (bench_gpu_torch.py --device cpu) and the Nsight Compute profile is left
#       out: their tables show the script's flow and parsing, no speed of anything
#   WK_GPU_CHECK=profile bash scripts/gpu_check.sh   build, then whisker's time per node
#       (bench --profile) of ResNet-50 and ResNet-18 training at the benchmark's batch
#       ($WK_NODE_PROFILE=MODEL:PRECISION:BATCH ...) into OUT_DIR/nodes_*.txt, then Nsight
#       Compute's time per kernel over two training steps of ResNet-50 and ResNet-18 in bf16 at batch 128
#       ($WK_PROFILE=MODEL:PRECISION:BATCH ...), summed per kernel by scripts/ncu_summary.py
#       into OUT_DIR/profile_*.md: where a step's time goes
#   WK_GPU_CHECK=finetune bash scripts/gpu_check.sh   end to end: fine-tuning
#       dogs-vs-cats on the GPU with the real loader (scripts/finetune_dogs_vs_cats.sh
#       on .device-data/, made here by scripts/gpu_data.sh: carry both
#       ".gpudeps" and ".device-data"): accuracy, wall time, the share of each
#       epoch spent waiting for the loader, and the GPU's utilisation sampled
#       by nvidia-smi every 200 ms while it trains
# The whole run may not fit one 10-minute call of the device tool: every step
# has its own timeout (against a hang), and a benchmark table that by its usual
# length (an estimate, not a bound) would not finish within $WK_GPU_BUDGET_S
# (560) seconds of the start is skipped with a line saying so (run
# WK_GPU_CHECK=bench next; a warm machine keeps the build). Everything is
# written to OUT_DIR as it comes, so a killed run still leaves what it did.
# The first lines describe the machine: OS, compiler, nvcc, and where cuDNN
# and NCCL were found (beside the toolkit, else in Python's nvidia.cudnn and
# nvidia.nccl wheels, as a PyTorch image has them).
#
# Dependencies: a machine with Debian's build dependencies installed (scripts/
# setup.sh) needs nothing more; a bare GPU image (CUDA, cuDNN, CMake, a C
# compiler, PyTorch, no network) takes the .debs that scripts/gpu_deps.sh
# fetched into .gpudeps/ and unpacks them into a private prefix here.
# Writes OUT_DIR/gpu_check.log (everything), OUT_DIR/bench_gpu.md (the table).
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-${OUT:-$root/build-gpu/out}}"
build="${BUILD_DIR:-$root/build-gpu}"
mkdir -p "$out"
log="$out/gpu_check.log"
exec > >(tee -a "$log") 2>&1
t0=$(date +%s)
budget="${WK_GPU_BUDGET_S:-560}"
[ "${WK_GPU_CHECK_EMU:-0}" = 1 ] && budget="${WK_GPU_BUDGET_S:-3600}" # the emulator is slow
left() { echo $(( budget - ($(date +%s) - t0) )); } # seconds of the budget left
room() { [ "$(left)" -ge "$1" ]; }                  # room N: N more seconds fit
skipped() { echo "== skipped: $1 (about $(left) s left of $budget, it needs about $2: a call with WK_GPU_CHECK=bench, or a larger WK_GPU_BUDGET_S)"; }
py="${WHISKER_PYTHON:-python3}"
# A dry run on this project's build machine: the python3 first on PATH may lack
# PyTorch, which Debian's own python3 has (as the CPU benchmarks use it).
if [ "${WK_GPU_CHECK_EMU:-0}" = 1 ] && [ -z "${WHISKER_PYTHON:-}" ] &&
   ! python3 -c 'import torch' 2>/dev/null && /usr/bin/python3 -c 'import torch' 2>/dev/null; then
  py=/usr/bin/python3
fi
echo "== gpu_check $(date -u +%FT%TZ) on $(hostname)"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
echo "machine: $( (. /etc/os-release && echo "$PRETTY_NAME") 2>/dev/null), $(nproc) cores;" \
  "$(gcc --version 2>/dev/null | head -1); $(cmake --version 2>/dev/null | head -1)"
command -v nvcc >/dev/null || export PATH="/usr/local/cuda/bin:$PATH"
echo "nvcc: $(command -v nvcc || echo none): $(nvcc --version 2>/dev/null | tail -1)"
# cuDNN and NCCL beside the toolkit, else from Python's wheels (PyTorch's)
cuda_root="$(dirname "$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)")/.."
export LD_LIBRARY_PATH="$cuda_root/lib64:$cuda_root/lib:${LD_LIBRARY_PATH:-}"
cuda_args=()
for m in cudnn nccl; do
  if [ -f "$cuda_root/include/$m.h" ]; then echo "$m: beside the toolkit"; continue; fi
  d=$("$py" -c "import nvidia.$m as m; print(list(m.__path__)[0])" 2>/dev/null) || d=""
  so=$(ls "$d/lib/lib$m.so"* 2>/dev/null | head -1)
  if [ -n "$d" ] && [ -f "$d/include/$m.h" ] && [ -n "$so" ]; then
    M=$(echo "$m" | tr a-z A-Z)
    cuda_args+=("-D${M}_INCLUDE_DIR=$d/include" "-D${M}_LIBRARY=$so")
    export LD_LIBRARY_PATH="$d/lib:$LD_LIBRARY_PATH"
    echo "$m: Python's nvidia.$m, $so"
  else
    echo "$m: NOT found (no $m.h beside the toolkit, none in Python's nvidia.$m)"
  fi
done
ldconfig -p 2>/dev/null | grep -E "libcudart\.|libcudnn\.|libnccl\.|libcublas\.|libOpenCL" || true

if [ -d "$root/.gpudeps" ] && { [ -n "${WK_FORCE_DEPS:-}" ] || ! pkg-config --exists libcjson 2>/dev/null; }; then
  prefix=/tmp/wk-deps
  mkdir -p "$prefix"
  for f in "$root"/.gpudeps/*.deb; do dpkg-deb -x "$f" "$prefix"; done
  lib="$prefix/usr/lib/x86_64-linux-gnu"
  export PKG_CONFIG_SYSROOT_DIR="$prefix" PKG_CONFIG_PATH="$lib/pkgconfig:$prefix/usr/share/pkgconfig"
  export CMAKE_PREFIX_PATH="$prefix/usr" LD_LIBRARY_PATH="$lib:${LD_LIBRARY_PATH:-}"
  export PATH="$prefix/usr/bin:$PATH" CPATH="$prefix/usr/include:${CPATH:-}"
  # the .so symlinks of the -dev packages point at absolute paths: make them relative
  for l in "$lib"/*.so; do
    t=$(readlink "$l") || continue
    case "$t" in /*) ln -sf "$(basename "$t")" "$l" ;; esac
  done
  echo "dependencies unpacked into $prefix"
fi

# the benchmark's tables, in the order they run (WK_GPU_TABLES picks some, in that order)
all_tables="main bn_alone graph workspace infer_bn nccl pool fused_step cuda_graph prefetch bn_fuse own_bn"
tables="${WK_GPU_TABLES:-$all_tables}"
for t in $tables; do
  case " $all_tables " in *" $t "*) ;; *) echo "gpu_check: WK_GPU_TABLES: no table '$t' (tables: $all_tables)"; exit 2 ;; esac
done
phase="${WK_GPU_CHECK:-all}"
case "$phase" in all|tests|bench|finetune|sanitize|profile) ;;
  *) echo "gpu_check: WK_GPU_CHECK=$phase: not one of all, tests, bench, finetune, sanitize, profile"; exit 2 ;;
esac
targets=(whisker_cli whisker_cuda_plugin test_gpu_ops test_gpu_net wkt_stop_at)
plugin="$build/libwhisker-cuda.so"
ops_test=test_gpu_ops # every kernel against the CPU, linked with the CUDA libraries
if [ "${WK_GPU_CHECK_EMU:-0}" = 1 ]; then
  # a dry run of this script where there is no GPU: whisker's host fakes of CUDA, cuDNN,
  # cuBLAS and NCCL (tests/emu/fake) stand in for the libraries, one emulated device. It
  # shows the script's own flow works, nothing about a GPU; no benchmarks (the fakes run
  # every kernel on the CPU, in double: a bench or profile dry run shrinks every run, wkbench)
  case "$phase" in tests|sanitize|bench|profile) ;; *) echo "gpu_check: WK_GPU_CHECK_EMU runs the tests, sanitize, bench or profile phase, not $phase"; exit 2 ;; esac
  targets+=(whisker_cuda_emu_plugin test_gpu_ops_fake)
  ops_test=test_gpu_ops_fake # the same tests linked with the fakes
  plugin="$build/libwhisker-cuda-emu.so"
  export WK_FAKE_DEVICES=1 WK_FAKE_LAZY=1
  echo "== WK_GPU_CHECK_EMU: a dry run on emulated devices (tests/emu/fake), not a GPU check"
fi

start=$(date +%s)
gen=(); command -v ninja >/dev/null && gen=(-G Ninja)
# warnings stay in the log but fail nothing: this compiler is not CI's GCC 12
cmake -S "$root" -B "$build" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DWHISKER_MPI=OFF \
  -DWHISKER_WERROR=OFF "${cuda_args[@]}" || { echo "gpu_check: configure failed"; exit 1; }
cmake --build "$build" -j"$(nproc)" --target "${targets[@]}" \
  || { echo "gpu_check: build failed"; exit 1; }
echo "== built in $(( $(date +%s) - start )) s"

rc=0
export CK_FORK=no WHISKER_CUDA_PLUGIN="$plugin"
# wkbench SECONDS ARGS: whisker bench ARGS under a timeout of SECONDS; in a dry run
# (WK_GPU_CHECK_EMU=1) shrunk for the emulator's double-precision host kernels: 32 px, batch 2,
# and one step, warm-up or run wherever ARGS ask for any (0 stays 0: --steps 0 is an
# inference-only network, --infer-runs 0 no inference)
wkbench() {
  local s=$1 a=() v
  shift
  if [ "${WK_GPU_CHECK_EMU:-0}" != 1 ]; then timeout -k 10 "$s" "$build/whisker" bench "$@"; return; fi
  while [ $# -gt 0 ]; do
    case "$1" in
      --size|--batch|--steps|--warmup|--latency-runs|--infer-runs)
        v=$2
        case "$1" in --size) v=32 ;; --batch) v=2 ;; *) [ "$v" = 0 ] || v=1 ;; esac
        a+=("$1" "$v"); shift 2 ;;
      *) a+=("$1"); shift ;;
    esac
  done
  timeout -k 10 "$s" "$build/whisker" bench "${a[@]}"
}
if [ "$phase" = finetune ]; then
  d="$root/.device-data"
  [ -d "$d/dogs-vs-cats/train" ] || { echo "gpu_check: no $d: run scripts/gpu_data.sh where the data is and carry .device-data"; exit 1; }
  echo "== fine-tuning dogs-vs-cats on the GPU (the real loader, $(( $(nproc) - 2 )) workers)"
  nvidia-smi --query-gpu=utilization.gpu --format=csv,noheader,nounits -lms 200 > "$out/gpu_util.txt" 2>/dev/null &
  sampler=$!
  ft_s=$(left); [ "$ft_s" -ge 60 ] || ft_s=60
  # the run's models stay in the build (the device tool brings back 8 files of at most 16 MiB)
  WHISKER_DATA="$d" WHISKER_BIN="$build/whisker" \
    FINETUNE_ARGS="--device cuda --workers $(( $(nproc) - 2 )) ${GPU_FINETUNE_ARGS:-}" \
    timeout -k 10 "$ft_s" bash "$root/scripts/finetune_dogs_vs_cats.sh" "$build/finetune" || rc=1
  kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null
  cp "$build/finetune/run/metrics.csv" "$out/finetune_metrics.csv" 2>/dev/null || true
  {
    echo
    echo "Fine-tuning on the GPU (scripts/finetune_dogs_vs_cats.sh on .device-data, --device cuda):"
    echo
    "$py" - "$build/finetune/run/metrics.csv" "$out/gpu_util.txt" <<'EOF'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
print("| epoch | seconds | images/s | waiting for data | val acc |")
print("|---:|---:|---:|---:|---:|")
for r in rows:
    s, w = float(r["seconds"]), float(r["data_wait_s"])
    print(f"| {r['epoch']} | {s:.1f} | {float(r['images_per_s']):.0f} | {100 * w / s:.1f}% | {100 * float(r['val_acc']):.2f}% |")
u = [float(x) for x in open(sys.argv[2]) if x.strip().replace('.', '', 1).isdigit()]
busy = [x for x in u if x > 0]
if u:
    print(f"\nGPU utilisation (nvidia-smi, every 200 ms over the whole script, import and CPU eval "
          f"included): mean {sum(u) / len(u):.0f}% over {len(u)} samples; mean {sum(busy) / max(len(busy), 1):.0f}% "
          f"over the {len(busy)} samples with any kernel running")
EOF
  } | tee "$out/finetune_gpu.md"
  echo "== gpu_check (finetune) done in $(( $(date +%s) - start )) s, $([ $rc -eq 0 ] && echo ok || echo FAILED)"
  exit $rc
fi
if [ "$phase" = profile ]; then
  # First whisker's own time per node (bench --profile: CUDA events around every node, the
  # algorithms timed as the benchmark times them, its batch): which layers a step's time goes
  # to, forward and backward apart, and the cuDNN algorithms of the slowest convolutions. On
  # the first H100 run ResNet-50's training took 6.7x the time of its inference at the same
  # batch (ResNet-18's 2.1x, PyTorch's 3.0-3.2x): this says where. $WK_NODE_PROFILE lists
  # MODEL:PRECISION:BATCH runs.
  for spec in ${WK_NODE_PROFILE:-resnet50:bf16:256 resnet18:bf16:256 resnet50:fp32:128}; do
    IFS=: read -r m p b <<< "$spec"
    if ! room 60; then skipped "the time per node of $m $p" 60; continue; fi
    echo "== time per node: $m $p, batch $b"
    wkbench "$(( $(left) < 150 ? $(left) : 150 ))" --device cuda \
      --model "$m" --batch "$b" --precision "$p" --size 224 --steps 5 --warmup 3 \
      --latency-runs 1 --infer-runs 0 --profile > "$build/nodes.txt" 2>&1 || rc=1
    grep -v "^step [0-9]*:" "$build/nodes.txt" | tee "$out/nodes_${m}_${p}_$b.txt"
  done
  # and inference's (bench --steps 0: the forwards of a network that only infers, as
  # classify's), where ResNet-18 bf16 ran at 0.51x PyTorch
  for spec in ${WK_NODE_PROFILE_INFER:-resnet18:bf16:256 resnet50:bf16:256}; do
    IFS=: read -r m p b <<< "$spec"
    if ! room 40; then skipped "the inference time per node of $m $p" 40; continue; fi
    echo "== inference time per node: $m $p, batch $b"
    wkbench "$(( $(left) < 100 ? $(left) : 100 ))" --device cuda \
      --model "$m" --batch "$b" --precision "$p" --size 224 --steps 0 --latency-runs 1 \
      --infer-runs 5 --profile > "$build/nodes.txt" 2>&1 || rc=1
    tee "$out/nodes_infer_${m}_${p}_$b.txt" < "$build/nodes.txt"
  done
  # Nsight Compute's duration of every kernel over two training steps (one warm-up) and one
  # batch-1 forward, summed per kernel by scripts/ncu_summary.py: where the step's time goes.
  # cuDNN's heuristics choose the algorithms (timing would add thousands of kernels), so a
  # convolution's share may differ from a timed run's. $WK_PROFILE lists MODEL:PRECISION:BATCH
  # runs; the environment passes through ($WHISKER_BN_FUSE=groups, say).
  if [ "${WK_GPU_CHECK_EMU:-0}" = 1 ]; then
    echo "== a dry run: no Nsight Compute profile (the emulator runs no kernel on a device)"
    echo "== gpu_check (profile) done in $(( $(date +%s) - start )) s, $([ $rc -eq 0 ] && echo ok || echo FAILED)"
    exit $rc
  fi
  ncu=$(command -v ncu || ls "$cuda_root"/bin/ncu 2>/dev/null | head -1)
  [ -n "$ncu" ] || { echo "gpu_check: no ncu beside nvcc"; exit 1; }
  for spec in ${WK_PROFILE:-resnet50:bf16:128 resnet18:bf16:128}; do
    IFS=: read -r m p b <<< "$spec"
    if ! room 90; then skipped "the profile of $m $p" 90; continue; fi
    echo "== profile: $m $p, batch $b"
    csv="$build/profile_${m}_${p}_$b.csv"
    WHISKER_CUDNN_ALGO=heuristic timeout -k 10 "$(( $(left) < 300 ? $(left) : 300 ))" \
      "$ncu" --csv --metrics gpu__time_duration.sum --launch-count 5000 "$build/whisker" bench \
      --device cuda --model "$m" --batch "$b" --precision "$p" --steps 1 --warmup 1 \
      --latency-runs 1 --infer-runs 0 > "$csv" 2>>"$log" || { echo "gpu_check: ncu failed"; rc=1; }
    "$py" "$root/scripts/ncu_summary.py" "$csv" --title "$m $p batch $b" |
      tee "$out/profile_${m}_${p}_$b.md" || rc=1
  done
  echo "== gpu_check (profile) done in $(( $(date +%s) - start )) s, $([ $rc -eq 0 ] && echo ok || echo FAILED)"
  exit $rc
fi
if [ "$phase" = sanitize ]; then
  # NVIDIA's compute-sanitizer over whisker's kernels (test_gpu_ops: each kernel against the
  # CPU) and a few whole networks (cuDNN's and cuBLAS's kernels checked too): out-of-bounds and
  # misaligned accesses (memcheck), reads of device memory never written (initcheck; without
  # the NaN poison, which writes every buffer), barrier misuse (synccheck), shared-memory
  # races (racecheck), in that order of value ($WK_SANITIZE_TOOLS picks some: racecheck over
  # cuDNN is slow). Every buffer is its own cudaMalloc ($WHISKER_GPU_CACHE=0): inside the
  # caching allocator's segments an overrun hits a neighbour and no tool sees it. API errors
  # are not findings (--report-api-errors no): the tests fail calls on purpose (an allocation
  # of SIZE_MAX / 2) and cuDNN probes. It needs a runtime that lets it in (the device tool's
  # KINDS.md: Firecracker machines do, gVisor ones did not).
  cs=$(command -v compute-sanitizer || ls "$cuda_root"/bin/compute-sanitizer \
    "$cuda_root"/compute-sanitizer/compute-sanitizer 2>/dev/null | head -1)
  [ -n "$cs" ] || { echo "gpu_check: no compute-sanitizer beside nvcc"; exit 1; }
  tools="${WK_SANITIZE_TOOLS:-memcheck initcheck synccheck racecheck}"
  incomplete=0
  # sanitize NAME TOOL TEST [POISON]: one run into OUT_DIR/sanitize_NAME_TOOL.txt and a line
  # saying what it found; rc=1 on findings, a failed test or a timeout
  sanitize() {
    case " $tools " in *" $2 "*) ;; *) return ;; esac
    if ! room 60; then skipped "compute-sanitizer $2 on $1" 60; incomplete=$((incomplete + 1)); return; fi
    local f="$out/sanitize_$1_$2.txt" r
    echo "== compute-sanitizer --tool $2: $1"
    WHISKER_GPU_CACHE=0 WHISKER_GPU_POISON="${4:-1}" CK_TAP_LOG_FILE_NAME=- \
      timeout -k 10 "$(( $(left) < 240 ? $(left) : 240 ))" \
      "$cs" --tool "$2" --target-processes all --report-api-errors no --error-exitcode 99 \
      --print-limit 20 \
      "$build/tests/$3" > "$f" 2>&1
    r=$?
    grep -E "(ERROR|RACECHECK) SUMMARY" "$f" | tail -2
    local failed found
    failed=$(grep -c "^not ok" "$f")
    # the summary lines too: a finding in a forked test process may not reach the exit code
    found=$(grep -cE "(ERROR|RACECHECK) SUMMARY: [1-9]" "$f")
    case "$r" in
      0) what="clean" ;;
      99) what="FINDINGS" ;;
      124|137) what="TIMED OUT (incomplete)"; incomplete=$((incomplete + 1)) ;;
      *) what="exit $r" ;;
    esac
    [ "$found" -eq 0 ] || [ "$r" -eq 99 ] || what="$what; FINDINGS in $found summary line(s)"
    [ "$failed" -eq 0 ] || what="$what; $failed test(s) failed"
    echo "== compute-sanitizer --tool $2: $1: $what"
    [ "$r" -eq 0 ] && [ "$found" -eq 0 ] && [ "$failed" -eq 0 ] || rc=1
  }
  sanitize ops memcheck "$ops_test"
  WKT_GPU_NET_ONLY=test_smallcnn,test_misc_ops,test_sync_bn_fp32,test_device_loss_fp32,test_device_step_adamw \
    sanitize nets memcheck test_gpu_net
  sanitize ops initcheck "$ops_test" 0
  sanitize ops synccheck "$ops_test"
  sanitize ops racecheck "$ops_test"
  verdict=clean
  [ "$rc" -eq 0 ] || verdict=FINDINGS
  [ "$incomplete" -eq 0 ] || verdict="$verdict, $incomplete run(s) not done or cut short (WK_SANITIZE_TOOLS=... in another call)"
  echo "== gpu_check (sanitize: $tools) done in $(( $(date +%s) - start )) s, $verdict"
  exit $rc
fi
if [ "$phase" != bench ]; then
for t in "$ops_test" test_gpu_net; do
  echo "== $t"
  # NaN-filled buffers, as ctest runs them; each result printed as it comes (TAP), so a
  # suite cut short by its timeout still shows what finished
  WHISKER_GPU_POISON=1 CK_TAP_LOG_FILE_NAME=- timeout -k 10 "${WK_TEST_TIMEOUT_S:-420}" \
    "$build/tests/$t"
  r=$?
  echo "== $t exit $r"
  [ "$r" -eq 0 ] || rc=1
done
"$build/whisker" system
echo "== test_gpu_ddp"
WHISKER_BIN="$build/whisker" WHISKER_SOURCE_DIR="$root" WHISKER_PYTHON="$py" \
  WKT_STOP_AT_LIB="$build/tests/libwkt_stop_at.so" timeout -k 10 300 bash "$root/tests/test_gpu_ddp.sh"
r=$?
echo "== test_gpu_ddp exit $r"
[ "$r" -eq 0 ] || rc=1 # 77 (skipped) is a failure on a GPU machine: no GPU seen, or no PIL
echo "== test_gpu_cli"
WHISKER_BIN="$build/whisker" WHISKER_SOURCE_DIR="$root" WHISKER_PYTHON="$py" \
  timeout -k 10 300 bash "$root/tests/test_gpu_cli.sh"
r=$?
echo "== test_gpu_cli exit $r"
[ "$r" -eq 0 ] || rc=1
fi
if [ "$phase" = tests ]; then
  echo "== gpu_check (tests) done in $(( $(date +%s) - start )) s, tests $([ $rc -eq 0 ] && echo passed || echo FAILED)"
  exit $rc
fi

echo "== benchmark"
# table NAME SECONDS WHAT: true when $WK_GPU_TABLES asks for table NAME and about SECONDS more
# fit the budget; says so when it is asked for and does not fit
table() {
  case " $tables " in *" $1 "*) ;; *) return 1 ;; esac
  room "$2" && return 0
  skipped "$3 ($1)" "$2"
  return 1
}
: > "$out/bench_gpu.md"
if [ "${WK_GPU_CHECK_EMU:-0}" = 1 ]; then
  {
    echo "A DRY RUN on whisker's emulated device (WK_GPU_CHECK_EMU=1), not a GPU: every whisker"
    echo "run at 32 px, batch 2 and one step, PyTorch on this machine's CPU; the batch columns"
    echo "say what a GPU run uses. The figures measure nothing; the tables show the script works."
    echo
  } | tee -a "$out/bench_gpu.md"
fi
# a / b as "1.23x", "?" when either is missing
ratio() {
  [ -n "${1:-}" ] && [ -n "${2:-}" ] || { echo "?"; return; }
  "$py" -c "print(f'{float(\"$1\") / float(\"$2\"):.2f}x')" 2>/dev/null || echo "?"
}
field() { sed -n "s/.*\"$1\": \([0-9.]*\).*/\1/p"; }
# whisker bench at 224 px, 10 timed steps after 3, JSON; the caller adds the rest
wbench() {
  wkbench 180 --size 224 --steps 10 --warmup 3 --json "$@" 2>>"$log"
}
if table main 340 "the training and inference tables"; then
{
  echo "Training images/s (forward, backward, SGD step; whisker uploads each step's batch as"
  echo "8-bit RGB, as its training does, staged while the step before computes; PyTorch's"
  echo "synthetic batch stays on the GPU):"
  echo
  echo "| model | batch | whisker fp32 | PyTorch fp32 (no TF32) | whisker tf32 | PyTorch tf32 | whisker bf16 autocast | PyTorch bf16 autocast | fp32 ratio | tf32 ratio | bf16 ratio |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  # PyTorch: every configuration in one process (torch loads once)
  torch_dry=() # a dry run: on the CPU, as small as whisker's runs
  [ "${WK_GPU_CHECK_EMU:-0}" = 1 ] && torch_dry=(--device cpu --size 32 --batch 2 --steps 1 --warmup 1)
  torch_all=$(timeout -k 10 360 "$py" "$root/scripts/bench_gpu_torch.py" --all --batch 256 \
    "${torch_dry[@]}" 2>>"$log" | tee "$out/torch.txt")
  tb() { echo "$torch_all" | awk -v m="$1" -v p="$2" -v k="$3" '$1 == m && $2 == p && $3 == k { print $4 }'; }
  # mem_row MODEL BATCH PRECISION trainmem|infermem WHISKER_JSON: a row of the memory tables,
  # whisker's caching allocator peaks against PyTorch's line of that kind
  mem_row() {
    local wm wh tm tr="?"
    wm=$(echo "$5" | field gpu_peak_in_use_mb); wh=$(echo "$5" | field gpu_peak_held_mb)
    tm=$(echo "$torch_all" | awk -v m="$1" -v p="$3" -v k="$4" '$1 == m && $2 == p && $3 == k { print $4, $5 }')
    [ -n "$tm" ] && [ -n "$wm" ] && tr=$(ratio "$wm" "${tm% *}")
    [ -n "$tm" ] && tm="${tm% *} / ${tm#* }"
    echo "| $1 | $2 | $3 | ${wm:-failed} / ${wh:-failed} | ${tm:-failed} | $tr |"
  }
  infer_rows="" mem_rows="" bn_rows=""
  for m in resnet18 resnet50; do
    for b in 256; do # the issue's batch
      wb() { wbench --device cuda --model "$m" --batch "$b" --latency-runs 10 --infer-runs 5 "$@"; }
      j32=$(wb --precision fp32); j19=$(wb --precision tf32); j16=$(wb --precision bf16)
      w32=$(echo "$j32" | field train_images_per_s); w19=$(echo "$j19" | field train_images_per_s)
      w16=$(echo "$j16" | field train_images_per_s)
      t32=$(tb "$m" fp32 train); t19=$(tb "$m" tf32 train); t16=$(tb "$m" bf16 train)
      echo "| $m | $b | ${w32:-failed} | ${t32:-failed} | ${w19:-failed} | ${t19:-failed} | ${w16:-failed} | ${t16:-failed} | $(ratio "$w32" "$t32") | $(ratio "$w19" "$t19") | $(ratio "$w16" "$t16") |"
      i32=$(echo "$j32" | field infer_images_per_s); i19=$(echo "$j19" | field infer_images_per_s)
      i16=$(echo "$j16" | field infer_images_per_s)
      u32=$(tb "$m" fp32 infer); u19=$(tb "$m" tf32 infer); u16=$(tb "$m" bf16 infer)
      for p in fp32 bf16; do
        j=$j32; [ "$p" = bf16 ] && j=$j16
        mem_rows="$mem_rows$(mem_row "$m" "$b" "$p" trainmem "$j")
"
      done
      # how its batchnorms ran: groups fused by cuDNN, groups it refused (their nodes then run
      # one by one, on cuDNN's NCHW kernels), batchnorms on whisker's kernels
      for p in fp32 tf32 bf16; do
        j=$j32; [ "$p" = tf32 ] && j=$j19; [ "$p" = bf16 ] && j=$j16
        bn_rows="$bn_rows| $m | $b | $p | $(echo "$j" | field bn_fused) | $(echo "$j" | field bn_unfused) | $(echo "$j" | field bn_alone) | $(echo "$j" | field bn_own_runs) |
"
      done
      infer_rows="$infer_rows| $m | $b | ${i32:-failed} | ${u32:-failed} | ${i19:-failed} | ${u19:-failed} | ${i16:-failed} | ${u16:-failed} | $(ratio "$i32" "$u32") | $(ratio "$i19" "$u19") | $(ratio "$i16" "$u16") |
"
    done
  done
  echo
  echo "whisker's batchnorms in those training runs (groups relu(bn(x) [+ z]) cuDNN ran fused,"
  echo "groups it refused at this batch (their nodes one by one), batchnorms alone through the Ex"
  echo "calls, batchnorm runs on whisker's kernels):"
  echo
  echo "| model | batch | precision | groups fused | groups refused | alone (Ex) | whisker's kernel runs |"
  echo "|---|---:|---|---:|---:|---:|---:|"
  printf "%s" "$bn_rows"
  echo
  echo "Inference images/s (eval-mode forward):"
  echo
  echo "| model | batch | whisker fp32 | PyTorch fp32 | whisker tf32 | PyTorch tf32 | whisker bf16 autocast | PyTorch bf16 | fp32 ratio | tf32 ratio | bf16 ratio |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  printf "%s" "$infer_rows"
  echo
  echo "Peak GPU memory, MiB in use / held (whisker: its caching allocator over the whole bench,"
  echo "training then inference; PyTorch: max_memory_allocated / max_memory_reserved of training):"
  echo
  echo "| model | batch | precision | whisker | PyTorch | in use, whisker / PyTorch |"
  echo "|---|---:|---|---:|---:|---:|"
  printf "%s" "$mem_rows"
  echo
  echo "Peak GPU memory of a network that only runs inference, MiB in use / held (whisker:"
  echo "bench --steps 0, its values sharing memory by the forward's steps as classify's do;"
  echo "PyTorch: max_memory_allocated / max_memory_reserved of its eval-mode forwards):"
  echo
  echo "| model | batch | precision | whisker | PyTorch | in use, whisker / PyTorch |"
  echo "|---|---:|---|---:|---:|---:|"
  for m in resnet18 resnet50; do
    for p in fp32 bf16; do
      mem_row "$m" 256 "$p" infermem "$(wbench --device cuda --model "$m" --batch 256 \
        --precision "$p" --steps 0 --latency-runs 1 --infer-runs 3)"
    done
  done
} | tee -a "$out/bench_gpu.md"
fi
abench() { wbench --device cuda --latency-runs 3 --infer-runs 0 "$@"; }
# The tables below each set one environment variable off and on around the same training
# bench: abench (above) runs it (JSON), ab_row VAR OFF ON MODEL BATCH PRECISION prints a row of
# "| model | batch | precision | off img/s | on img/s | on / off |".
ab_row() {
  local var=$1 off=$2 on=$3 m=$4 b=$5 p=$6 x0 x1
  x0=$( (export "$var=$off"; abench --model "$m" --batch "$b" --precision "$p") |
    field train_images_per_s)
  x1=$( (export "$var=$on"; abench --model "$m" --batch "$b" --precision "$p") |
    field train_images_per_s)
  echo "| $m | $b | $p | ${x0:-failed} | ${x1:-failed} | $(ratio "$x1" "$x0") |"
}
# ab_infer_row VAR OFF ON MODEL [LABEL]: the same for the inference images/s of an
# inference-only network (bench --steps 0) at batch 256 in bf16, the row named LABEL (MODEL)
ab_infer_row() {
  local var=$1 off=$2 on=$3 m=$4 label=${5:-$4} i0 i1
  i0=$( (export "$var=$off"; wbench --device cuda --model "$m" --batch 256 --precision bf16 \
    --steps 0 --latency-runs 1 --infer-runs 5) | field infer_images_per_s)
  i1=$( (export "$var=$on"; wbench --device cuda --model "$m" --batch 256 --precision bf16 \
    --steps 0 --latency-runs 1 --infer-runs 5) | field infer_images_per_s)
  echo "| $label | 256 | bf16 | ${i0:-failed} | ${i1:-failed} | $(ratio "$i1" "$i0") |"
}
# the batchnorms no group fuses (ResNet's downsample ones) through cuDNN's Ex calls alone
# (the default since 2026-11-23, not yet measured here) against the plain calls
# ($WHISKER_BN_FUSE=groups, the default before): on the first H100 run the plain calls' NCHW
# kernels took about a third of a bf16 ResNet-18 step
if table bn_alone 80 "batchnorms alone through the Ex calls"; then
{
  echo
  echo "Training images/s, the batchnorms no group takes (ResNet's downsample ones) through cuDNN's plain calls (\$WHISKER_BN_FUSE=groups) against alone through its Ex calls (the default):"
  echo
  echo "| model | batch | precision | batchnorm alone plain img/s | alone through Ex img/s | Ex / plain |"
  echo "|---|---:|---|---:|---:|---:|"
  for m in resnet50 resnet18; do ab_row WHISKER_BN_FUSE groups auto "$m" 256 bf16; done
} | tee -a "$out/bench_gpu.md"
fi
# convolutions through cuDNN's graph API ($WHISKER_CUDNN_API=graph, src/cuda/conv_graph.c: every
# engine cuDNN has for the graph, timed as PyTorch's cudnn.benchmark times them) against the
# legacy calls (the default): written without a GPU, never run on one. Should graph win, make it
# the default (wk_read_env in src/cuda/cuda_net.c)
if table graph 120 "convolutions through the graph API"; then
{
  echo
  echo "Training images/s, convolutions through cuDNN's legacy calls (the default) against its graph API (\$WHISKER_CUDNN_API=graph):"
  echo
  echo "| model | batch | precision | legacy calls img/s | graph API img/s | graph / legacy |"
  echo "|---|---:|---|---:|---:|---:|"
  for m in resnet50 resnet18; do ab_row WHISKER_CUDNN_API legacy graph "$m" 256 bf16; done
} | tee -a "$out/bench_gpu.md"
fi
# the convolutions' workspace limit: 1 GiB (the default) against 8 GiB. Timing (training's
# default) considers only the algorithms whose workspace fits the limit, and at batch 256 the
# larger activations of ResNet-50 make some need more (PyTorch's cudnn.benchmark allows what
# the device has free). If 8 GiB wins, raise the default (wk_read_env, src/cuda/cuda_net.c) or
# make it a share of free memory; the memory table's peak then grows by the difference
if table workspace 100 "the convolutions' workspace limit"; then
{
  echo
  echo "Training images/s, the convolutions' workspace at most 1 GiB (\$WHISKER_GPU_WORKSPACE_MB=1024, the default) against 8 GiB (8192):"
  echo
  echo "| model | batch | precision | 1 GiB img/s | 8 GiB img/s | 8 GiB / 1 GiB |"
  echo "|---|---:|---|---:|---:|---:|"
  for m in resnet50 resnet18; do ab_row WHISKER_GPU_WORKSPACE_MB 1024 8192 "$m" 256 bf16; done
} | tee -a "$out/bench_gpu.md"
fi
# inference's batchnorms on whisker's NHWC kernel, a fused group's relu(bn(x) [+ z]) in one pass
# (the default) against cuDNN's batchnorm inference with the nodes one by one
# ($WHISKER_GPU_INFER_BN=cudnn): an inference-only network (bench --steps 0), images/s at batch 256
if table infer_bn 60 "inference's batchnorms on whisker's kernel"; then
{
  echo
  echo "Inference images/s of an inference-only network (bench --steps 0), cuDNN's batchnorm with the nodes one by one (\$WHISKER_GPU_INFER_BN=cudnn) against whisker's kernel, a group in one pass (the default):"
  echo
  echo "| model | batch | precision | inference, cuDNN batchnorm img/s | whisker's, groups whole img/s | whisker's / cuDNN |"
  echo "|---|---:|---|---:|---:|---:|"
  for m in resnet50 resnet18; do ab_infer_row WHISKER_GPU_INFER_BN cudnn own "$m"; done
} | tee -a "$out/bench_gpu.md"
fi
# the NCCL data-parallel path's own cost on one GPU (issue 8: at most 2%)
if table nccl 100 "the NCCL path's cost"; then
{
  echo
  echo "Training images/s, the NCCL data-parallel path on one GPU against the plain one, alternated, two runs each:"
  echo
  echo "| model | batch | precision | --device cuda:0 img/s | --gpus 0 (NCCL, 1 rank) img/s | NCCL path / plain |"
  echo "|---|---:|---|---:|---:|---:|"
  for m in resnet50; do
    b=256
    ips() { wbench --model "$m" --batch "$b" --precision bf16 --latency-runs 3 "$@" |
      field train_images_per_s; }
    p1=$(ips --device cuda:0); n1=$(ips --gpus 0); p2=$(ips --device cuda:0); n2=$(ips --gpus 0)
    ratio="?"
    [ -n "$p1" ] && [ -n "$p2" ] && [ -n "$n1" ] && [ -n "$n2" ] &&
      ratio=$("$py" -c "print(f'{($n1 + $n2) / ($p1 + $p2):.3f}')" 2>/dev/null || echo "?")
    echo "| $m | $b | bf16 | ${p1:-failed}, ${p2:-failed} | ${n1:-failed}, ${n2:-failed} | $ratio |"
  done
} | tee -a "$out/bench_gpu.md"
fi
# max pooling on whisker's NHWC kernels (the default since 2026-11-23, not yet measured here)
# against cuDNN's ($WHISKER_GPU_POOL=cudnn): cuDNN's max-pool backward took 6.5% of the profiled
# ResNet-18 bf16 step on the first H100 run
if table pool 40 "max pooling on whisker's kernels"; then
{
  echo
  echo "Training images/s, cuDNN's max pooling (\$WHISKER_GPU_POOL=cudnn) against whisker's kernels (the default):"
  echo
  echo "| model | batch | precision | cuDNN max pooling img/s | whisker's img/s | whisker's / cuDNN's |"
  echo "|---|---:|---|---:|---:|---:|"
  ab_row WHISKER_GPU_POOL cudnn own resnet18 256 bf16
} | tee -a "$out/bench_gpu.md"
fi
# the training step in one call (the default) against the stepwise calls ($WHISKER_GPU_FUSED_STEP=0:
# four host waits per step instead of one; test_step_budget counts them on the emulated device)
if table fused_step 60 "the step in one call"; then
{
  echo
  echo "Training images/s, the step's calls one by one (\$WHISKER_GPU_FUSED_STEP=0) against the step in one call (the default):"
  echo
  echo "| model | batch | precision | stepwise img/s | one call img/s | one call / stepwise |"
  echo "|---|---:|---|---:|---:|---:|"
  ab_row WHISKER_GPU_FUSED_STEP 0 1 resnet18 256 bf16
  ab_row WHISKER_GPU_FUSED_STEP 0 1 mobilenetv2 32 bf16
} | tee -a "$out/bench_gpu.md"
fi
# the training step as a CUDA graph (opt-in, $WHISKER_CUDA_GRAPH=1) against the same step in one
# call uncaptured
if table cuda_graph 60 "CUDA graphs"; then
{
  echo
  echo "Training images/s, the step in one call (the default) against the step captured as a CUDA graph (\$WHISKER_CUDA_GRAPH=1):"
  echo
  echo "| model | batch | precision | one call img/s | CUDA graph img/s | graph / one call |"
  echo "|---|---:|---|---:|---:|---:|"
  for p in fp32 bf16; do ab_row WHISKER_CUDA_GRAPH 0 1 resnet18 256 "$p"; done
} | tee -a "$out/bench_gpu.md"
fi
# the next batch staged while the step (or an inference forward, as eval's) computes
# ($WHISKER_GPU_PREFETCH=0 turns it off)
if table prefetch 90 "the staged next batch"; then
{
  echo
  echo "Training images/s (and inference images/s of an inference-only network, bench --steps 0),"
  echo "each batch uploaded when its step or forward starts (\$WHISKER_GPU_PREFETCH=0) against the"
  echo "next batch staged while this one computes (the default):"
  echo
  echo "| model | batch | precision | upload at the start img/s | next batch staged img/s | staged / not |"
  echo "|---|---:|---|---:|---:|---:|"
  ab_row WHISKER_GPU_PREFETCH 0 1 resnet50 256 bf16
  for m in resnet18 resnet50; do ab_infer_row WHISKER_GPU_PREFETCH 0 1 "$m" "$m inference"; done
} | tee -a "$out/bench_gpu.md"
fi
# batchnorm fused with relu and the residual add (cuDNN's Ex calls; $WHISKER_BN_FUSE=0 turns it
# off), with how many groups fused (the JSON's bn_fused, bn_unfused)
if table bn_fuse 100 "batchnorm fusion"; then
{
  echo
  echo "Training images/s, batchnorm unfused (\$WHISKER_BN_FUSE=0) against fused with relu and the residual add (the default):"
  echo
  echo "| model | batch | precision | unfused img/s | fused img/s | groups fused | fused / unfused |"
  echo "|---|---:|---|---:|---:|---:|---:|"
  m=resnet50 b=256
  for p in bf16 fp16; do
    j0=$( (export WHISKER_BN_FUSE=0; abench --model "$m" --batch "$b" --precision "$p") )
    j1=$( (export WHISKER_BN_FUSE=auto; abench --model "$m" --batch "$b" --precision "$p") )
    f0=$(echo "$j0" | field train_images_per_s); f1=$(echo "$j1" | field train_images_per_s)
    fg=$(echo "$j1" | field bn_fused); fu=$(echo "$j1" | field bn_unfused)
    echo "| $m | $b | $p | ${f0:-failed} | ${f1:-failed} | ${fg:-?} of $(( ${fg:-0} + ${fu:-0} )) | $(ratio "$f1" "$f0") |"
  done
} | tee -a "$out/bench_gpu.md"
fi
# batchnorm on whisker's kernels ($WHISKER_GPU_OWN_BN=1, what runs where cuDNN refuses 16 bits)
# against cuDNN's, in bf16 (the default), unfused on both sides
if table own_bn 50 "whisker's batchnorm against cuDNN's"; then
{
  echo
  echo "Training images/s, both unfused: cuDNN's batchnorm against whisker's kernels (\$WHISKER_GPU_OWN_BN=1, what runs where cuDNN refuses 16 bits):"
  echo
  echo "| model | batch | precision | cuDNN batchnorm img/s | whisker's batchnorm img/s | whisker's / cuDNN's |"
  echo "|---|---:|---|---:|---:|---:|"
  (export WHISKER_BN_FUSE=0; ab_row WHISKER_GPU_OWN_BN 0 1 resnet50 256 bf16)
} | tee -a "$out/bench_gpu.md"
fi
echo "== gpu_check ($phase) done in $(( $(date +%s) - start )) s, $([ $rc -eq 0 ] && echo ok || echo FAILED)"
exit $rc
