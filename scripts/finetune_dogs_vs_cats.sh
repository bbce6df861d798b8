#!/usr/bin/env bash
# finetune_dogs_vs_cats.sh - reproduces pretrained/default.safetensors, the model
# `whisker classify` uses out of the box:
#   1. import the ONNX Model Zoo's ImageNet MobileNetV2 (int8, dequantized to f32);
#   2. fine-tune it on dogs-vs-cats train (2,000 photos): the new head alone for one
#      epoch, then the whole network for the rest (discriminative rates, one-cycle);
#   3. evaluate on dogs-vs-cats val (1,000 photos) in f32 and, stored as f16, again;
#   4. print the wall times, the accuracies and the sha256.
#
#   bash scripts/finetune_dogs_vs_cats.sh [OUT_DIR]      (default build/finetune-dvc)
#   EPOCHS=4 HEAD_EPOCHS=1 THREADS=2 bash scripts/finetune_dogs_vs_cats.sh
#   INSTALL=1 ...: copy the f16 model to pretrained/default.safetensors
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
data="${WHISKER_DATA:-$root/../shared/data}"
bin="${WHISKER_BIN:-$root/build/whisker}"
out="${1:-$root/build/finetune-dvc}"
epochs="${EPOCHS:-4}" head="${HEAD_EPOCHS:-1}"
export WHISKER_THREADS="${THREADS:-$(nproc)}"
[ -x "$bin" ] || { echo "finetune: no $bin; run scripts/setup.sh first" >&2; exit 1; }
[ -d "$data/dogs-vs-cats/train" ] || { echo "finetune: no $data/dogs-vs-cats (scripts/download_data.sh)" >&2; exit 1; }
mkdir -p "$out"

"$bin" import "$data/pretrained/mobilenetv2-12-int8.onnx" "$out/mobilenetv2-imagenet.safetensors" \
  --labels "$data/pretrained/synset.txt"
start=$SECONDS
"$bin" finetune "$data/dogs-vs-cats" --from "$out/mobilenetv2-imagenet.safetensors" \
  --out "$out/run" --epochs "$epochs" --head-epochs "$head" --batch 32 --seed 1 --overwrite \
  ${FINETUNE_ARGS:-}
secs=$((SECONDS - start))
"$bin" convert "$out/run/model.safetensors" "$out/default.safetensors" --f16
acc32=$("$bin" eval "$data/dogs-vs-cats/val" --model "$out/run/model.safetensors" --json \
        | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["accuracy"])')
acc16=$("$bin" eval "$data/dogs-vs-cats/val" --model "$out/default.safetensors" --json \
        | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["accuracy"])')
echo
echo "fine-tuning wall time  ${secs} s ($epochs epochs, $head head-only; $WHISKER_THREADS threads)"
echo "val accuracy f32       $acc32"
echo "val accuracy f16       $acc16   ($out/default.safetensors, $(stat -c %s "$out/default.safetensors") bytes)"
echo "sha256                 $(sha256sum "$out/default.safetensors" | cut -d' ' -f1)"
if [ "${INSTALL:-0}" = 1 ]; then
  cp "$out/default.safetensors" "$root/pretrained/default.safetensors"
  echo "installed as pretrained/default.safetensors"
fi
