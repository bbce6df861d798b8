#!/usr/bin/env bash
# setup.sh - install every build and test dependency (Debian 12, as root or via
# sudo), configure and build whisker, then run it once.
#
#   bash scripts/setup.sh            # Release build in build/
#   BUILD_DIR=out bash scripts/setup.sh
#   WHISKER_SKIP_APT=1 bash scripts/setup.sh   # dependencies already installed
#
# Idempotent: apt-get skips what is installed, cmake reuses the build tree.
# CUDA 13, cuDNN 9 and NCCL are not in Debian: when the toolkit is present
# (nvcc on PATH or in /usr/local/cuda) the GPU backend is built, else skipped.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"

packages=(
  build-essential cmake pkg-config          # toolchain
  libdnnl-dev                               # oneDNN: CPU conv, batchnorm, gemm
  libjpeg62-turbo-dev libturbojpeg0-dev     # JPEG decoding
  libpng-dev libstb-dev                     # PNG decoding, image writing
  libcjson-dev                              # model file headers (JSON)
  libprotobuf-c-dev protobuf-c-compiler     # ONNX import/export (protoc-c on src/onnx/onnx.proto)
  python3-onnx                              # ONNX test fixtures (scripts/export_resnet18_onnx.py)
  check libsubunit-dev                      # unit tests
  libopenmpi-dev openmpi-bin                # multi-rank runs: the MPI plugin, mpirun
  python3-torch python3-torchvision         # golden files and benchmarks (scripts/)
  python3-pil                               # reference decodes of the image fixtures
  chromium                                  # headless report check (tests/report_chromium.sh)
  clang libclang-rt-14-dev libomp-dev       # fuzzing: libFuzzer + sanitizers (scripts/fuzz.sh)
  clang-tools                               # scan-build: static analysis (scripts/static_check.sh)
  valgrind                                  # memcheck of a tiny run (scripts/valgrind_e2e.sh)
)

if [ "${WHISKER_SKIP_APT:-0}" != 1 ]; then
  sudo=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || { echo "setup.sh: run as root or install sudo" >&2; exit 1; }
    sudo=sudo
  fi
  missing=()
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup.sh: installing ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
  else
    echo "setup.sh: all Debian packages present"
  fi
fi

# The CUDA toolkit lives outside Debian; find it where NVIDIA's installer puts it.
if ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then
  export PATH="/usr/local/cuda/bin:$PATH"
fi

# ONNX Runtime for Node.js, pinned in tools/ort/package-lock.json: runs whisker's
# ONNX exports in tests/test_onnx_ort.c (skipped without it). Node.js is not
# installed here (Debian's and NodeSource's packages conflict); the CPU build of
# onnxruntime-node is in the npm package itself, so its download step is skipped.
if command -v npm >/dev/null; then
  ONNXRUNTIME_NODE_INSTALL=skip npm ci --prefix "$root/tools/ort" --no-audit --no-fund ||
    echo "setup.sh: npm ci --prefix tools/ort failed: the ONNX Runtime test will be skipped" >&2
else
  echo "setup.sh: npm not found: install Node.js (with npm) and rerun to enable the ONNX" \
       "Runtime test (tests/test_onnx_ort.c); everything else works without it" >&2
fi

cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release ${WHISKER_CMAKE_ARGS:-}
cmake --build "$build" -j "$(nproc)"

echo
echo "setup.sh: built $build/whisker"
"$build/whisker" --version
"$build/whisker" system
# the main job on the shipped default: classify a photo with pretrained/default.safetensors
if [ -f "$root/pretrained/default.safetensors" ]; then
  echo
  echo "setup.sh: $build/whisker classify data/samples/cat.jpg --top 2"
  (cd "$root" && "$build/whisker" classify data/samples/cat.jpg --top 2)
fi
