#!/usr/bin/env bash
# imagenet_zero_shot.sh - dogs vs cats with no training: the ONNX Model Zoo's
# int8 ImageNet MobileNetV2, imported by whisker, on the 1,000 validation images
# of $WHISKER_DATA/dogs-vs-cats/val. ImageNet classes 281-285 (tabby, tiger cat,
# Persian, Siamese, Egyptian cat) count as cat, 151-268 (the dog breeds) as dog.
# The headline is the argmax rule (top class of the 1000, then mapped; a top
# class outside both groups is wrong); the group-sum rule and the top class
# within the two groups' classes are printed too (tools/zero_shot.c).
#
#   bash scripts/imagenet_zero_shot.sh          # uses build/ (BUILD_DIR=...)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
data="${WHISKER_DATA:-$root/../shared/data}"
out="$build/zero_shot"
mkdir -p "$out"

cmake --build "$build" -j 2 --target whisker_cli wk_zero_shot >/dev/null
"$build/whisker" import "$data/pretrained/mobilenetv2-12-int8.onnx" \
  "$out/mobilenetv2-imagenet.safetensors" --labels "$data/pretrained/synset.txt"
start=$(date +%s.%N)
"$build/wk_zero_shot" "$out/mobilenetv2-imagenet.safetensors" "$data/dogs-vs-cats/val" \
  cat=281-285 dog=151-268
end=$(date +%s.%N)
printf "seconds     %.1f (threads: %s)\n" "$(echo "$end - $start" | bc)" "${WHISKER_THREADS:-all}"
