#!/usr/bin/env bash
# gpu_deps.sh - fetch, on this (Debian 12) machine, the Debian packages whisker
# builds against into .gpudeps/ (git-ignored, about 12 MB), for a GPU machine
# that has CUDA, cuDNN, CMake and a compiler but none of them and no network.
# scripts/gpu_check.sh unpacks them there into a private prefix. Pass .gpudeps
# in the device tool's `carry`. Debian's oneDNN needs libOpenCL.so.1 (its GPU
# runtime) at link time even for the CPU: ocl-icd-libopencl1 brings it.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="$root/.gpudeps"
mkdir -p "$dest"
cd "$dest"
rm -f ./*.deb
apt-get download \
  libdnnl-dev libdnnl2 libjpeg62-turbo-dev libjpeg62-turbo libturbojpeg0-dev libturbojpeg0 \
  libpng-dev libpng16-16 zlib1g-dev libstb-dev libstb0 libcjson-dev libcjson1 \
  libprotobuf-c-dev libprotobuf-c1 protobuf-c-compiler libprotoc32 libprotobuf32 \
  check libsubunit-dev libsubunit0 pkgconf pkgconf-bin libpkgconf3 \
  ocl-icd-libopencl1 2> >(grep -v "unsandboxed" >&2)
du -sh "$dest"
