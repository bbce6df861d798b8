#!/usr/bin/env bash
# bench_model_load.sh - how the time to load a model grows with its graph: the
# loader and the network's finalize must stay linear in the node count (a
# model file may hold WK_MODEL_MAX_NODES = 100,000 nodes; a quadratic step
# once made `whisker info` take minutes on one). tests/test_model_scale.c
# guards the same by counting work; this shows the seconds.
#
# Writes chain models of each size (ResNet basic blocks of 1x1 convs on a 4x4x3
# input, as an ONNX import of a deep graph gives: conv, batchnorm, relu, conv,
# batchnorm, add, relu, then a global pool and a linear layer) with an inline
# Python writer (no torch), then times `whisker info` and `whisker export` on
# each: the median of RUNS runs. Prints a markdown table with the seconds and
# the microseconds per node, which stay flat when loading is linear.
#
# usage: scripts/bench_model_load.sh [NODES ...]    (default 12500 25000 50000 100000)
# env:   BUILD_DIR (build), RUNS (3), PYTHON (/usr/bin/python3)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${BUILD_DIR:-$root/build}
python=${PYTHON:-/usr/bin/python3}
runs=${RUNS:-3}
sizes=("$@")
[[ ${#sizes[@]} -gt 0 ]] || sizes=(12500 25000 50000 100000)
for n in "${sizes[@]}"; do
  [[ $n =~ ^[0-9]+$ && $n -ge 11 && $n -le 100000 ]] \
    || { echo "bench_model_load.sh: NODES must be 11 to 100000, not '$n'" >&2; exit 2; }
done
cmake --build "$build_dir" --target whisker_cli -j 2 > /dev/null
bin=$build_dir/whisker
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# chain model of about N nodes -> PATH
write_model() {
  "$python" - "$1" "$2" <<'PY'
import json, struct, sys
target, path = int(sys.argv[1]), sys.argv[2]
nodes, tensors = [], []  # tensors: (name, shape, value)
def node(d):
    nodes.append(d)
    return len(nodes)  # node i's output is value i + 1
v, b = 0, 0
while len(nodes) + 7 + 2 <= target:
    c = v
    for k in (1, 2):
        p = f"layer.{b}.conv{k}"
        c = node({"op": "conv", "name": p, "in": [c], "out": 3, "k": [1, 1], "stride": [1, 1],
                  "pad": [0, 0, 0, 0], "dilation": [1, 1], "groups": 1, "bias": False})
        tensors.append((p + ".weight", [3, 3, 1, 1], 0.1))
        p = f"layer.{b}.bn{k}"
        c = node({"op": "batchnorm", "name": p, "in": [c], "eps": 1e-5, "momentum": 0.1})
        # the second batchnorm's gamma 0: each block is the identity, the output finite
        for s, val in (("weight", 1.0 if k == 1 else 0.0), ("bias", 0.0),
                       ("running_mean", 0.0), ("running_var", 1.0)):
            tensors.append((f"{p}.{s}", [3], val))
        if k == 2:
            c = node({"op": "add", "name": f"layer.{b}.add", "in": [c, v]})
        c = node({"op": "act", "name": f"layer.{b}.relu{k}", "in": [c], "act": "relu"})
    v, b = c, b + 1
v = node({"op": "global_avgpool", "name": "pool", "in": [v]})
node({"op": "linear", "name": "fc", "in": [v], "out": 2, "bias": True})
tensors += [("fc.weight", [2, 3], 0.5), ("fc.bias", [2], 0.0)]
arch = {"name": "custom", "width": 1, "num_classes": 2, "input": [4, 4, 3], "nodes": nodes}
header, data, off = {}, bytearray(), 0
for name, shape, val in tensors:
    count = 1
    for d in shape:
        count *= d
    data += struct.pack(f"<{count}f", *([val] * count))
    header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [off, off + 4 * count]}
    off += 4 * count
header["__metadata__"] = {"format": "whisker", "whisker.arch": json.dumps(arch),
                          "whisker.classes": json.dumps(["a", "b"])}
h = json.dumps(header).encode()
h += b" " * (-len(h) % 8)
with open(path, "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h + data)
print(len(nodes))
PY
}

now() { date +%s%N; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# median seconds of RUNS runs of a command
timed() {
  for _ in $(seq 1 "$runs"); do
    local t0 t1
    t0=$(now)
    "$@" > /dev/null
    t1=$(now)
    echo $(((t1 - t0) / 1000))
  done | median | awk '{printf "%.3f", $1 / 1e6}'
}

echo "# $(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)," \
     "median of $runs runs; $bin"
echo
echo "| nodes | info (s) | us/node | export (s) | us/node |"
echo "|------:|---------:|--------:|-----------:|--------:|"
for n in "${sizes[@]}"; do
  model=$tmp/chain_$n.safetensors
  nodes=$(write_model "$n" "$model")
  ti=$(timed "$bin" info "$model")
  te=$(timed "$bin" export "$model" "$tmp/chain_$n.onnx")
  awk -v n="$nodes" -v ti="$ti" -v te="$te" \
    'BEGIN { printf "| %d | %s | %.1f | %s | %.1f |\n", n, ti, ti * 1e6 / n, te, te * 1e6 / n }'
  rm -f "$model" "$tmp/chain_$n.onnx"
done
