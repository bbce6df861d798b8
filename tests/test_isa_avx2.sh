#!/usr/bin/env bash
# test_isa_avx2.sh - whisker on a CPU without AVX-512, as most desktop and laptop
# CPUs are: oneDNN capped at AVX2 (ONEDNN_MAX_CPU_ISA=AVX2, which makes it pick
# the kernels it would pick there, and makes whisker's own AVX-512 kernels step
# aside, as they follow oneDNN's ISA). No primitive may run on oneDNN's
# reference kernels, which are hundreds of times slower: its AVX2 kernels block
# activations by 8, so nChw16c ones (evaluation's blocked layout, the 1x1 +
# depthwise pairs, training's blocked backward-weights) fell to them, and
# classify took 2.6 s a photo with the shipped model. Run with ONEDNN_VERBOSE=1,
# which names the kernel of every primitive run:
#   1. bench trains and evaluates MobileNetV2 and ResNet-18 (built-in);
#   2. bench trains and evaluates the shipped default model (batchnorms folded:
#      its convolutions take their ReLU6 as a post-op in training);
#   3. classify names the sample cat a cat with the shipped default model.
# Skipped (77) on a CPU without AVX2 (the cap cannot raise the ISA).
set -euo pipefail
bin="${WHISKER_BIN:?}"
src="${WHISKER_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}"
fail() { echo "test_isa_avx2: FAIL: $*" >&2; exit 1; }
grep -qw avx2 /proc/cpuinfo 2>/dev/null || { echo "test_isa_avx2: no AVX2 here: skipped"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export WHISKER_THREADS=2 ONEDNN_MAX_CPU_ISA=AVX2 ONEDNN_VERBOSE=1

# runs whisker ARGS into $tmp/NAME.{out,err}; fails on a nonzero exit, on an ISA
# other than AVX2, and on any primitive run by a reference kernel
check() {
  local name=$1
  shift
  "$bin" "$@" > "$tmp/$name.out" 2> "$tmp/$name.err" ||
    { tail -5 "$tmp/$name.err"; fail "$name: whisker $* exited $?"; }
  grep -q "^onednn_verbose,info,cpu,isa:Intel AVX2$" "$tmp/$name.out" ||
    fail "$name: oneDNN did not run capped at AVX2: $(grep isa: "$tmp/$name.out")"
  local n
  n=$(awk -F, '$1 == "onednn_verbose" && $2 == "exec" { n++ } END { print n + 0 }' "$tmp/$name.out")
  [ "$n" -gt 0 ] || fail "$name: no primitive ran"
  # the primitive, its kernel, its direction and its shapes (not the time), once each
  awk -F, '$1 == "onednn_verbose" && $2 == "exec" && $5 ~ /^ref/ { print $4, $5, $6, $(NF - 1) }' \
    "$tmp/$name.out" | sort | uniq -c > "$tmp/$name.ref"
  if [ -s "$tmp/$name.ref" ]; then
    head -5 "$tmp/$name.ref"
    fail "$name: $(wc -l < "$tmp/$name.ref") primitives ran on oneDNN's reference kernels"
  fi
  echo "$name: $n primitives, none on a reference kernel"
}

# 1. the built-in networks, training then evaluation
for m in mobilenetv2 resnet18; do
  check "$m" bench --model "$m" --size 64 --batch 4 --steps 1 --warmup 0 --latency-runs 1 \
    --infer-runs 1
done
# 2. the shipped default model (224x224)
check default bench --model "$src/pretrained/default.safetensors" --batch 2 --steps 1 \
  --warmup 0 --latency-runs 1 --infer-runs 1
# 3. classify with it
check classify classify "$src/data/samples/cat.jpg" --model "$src/pretrained/default.safetensors"
grep -q "cat.jpg	cat 0.9" "$tmp/classify.out" || { cat "$tmp/classify.out"; fail "classify: not a cat"; }
echo "test_isa_avx2: ok"
