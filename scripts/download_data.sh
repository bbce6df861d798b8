#!/usr/bin/env bash
# download_data.sh - fetch the data sets whisker's scripts use from their public
# origins, in the layout of ../shared/data (see data/README.md).
#
#   bash scripts/download_data.sh [DIR]     # default: ../shared/data beside the repo
#   export WHISKER_DATA=DIR
#
# Needs curl, unzip, tar. Existing folders are left alone (delete one to refetch).
# Not exercised in CI, which has no network beyond the package registries.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="${1:-$root/../shared/data}"
mkdir -p "$dest"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fetch() { echo "download_data: $1"; curl -fL --retry 3 -o "$2" "$1"; }

if [ ! -d "$dest/dogs-vs-cats" ]; then
  fetch https://storage.googleapis.com/mledu-datasets/cats_and_dogs_filtered.zip "$tmp/dvc.zip"
  unzip -q "$tmp/dvc.zip" -d "$tmp"
  d="$tmp/cats_and_dogs_filtered"
  mkdir -p "$tmp/dvc/train" "$tmp/dvc/val"
  mv "$d/train/cats" "$tmp/dvc/train/cat" && mv "$d/train/dogs" "$tmp/dvc/train/dog"
  mv "$d/validation/cats" "$tmp/dvc/val/cat" && mv "$d/validation/dogs" "$tmp/dvc/val/dog"
  mv "$tmp/dvc" "$dest/dogs-vs-cats"
fi

if [ ! -d "$dest/balabit" ]; then
  commit=d00d6f779254a2a917deeab4a5b7a9e8643bd91e
  fetch "https://github.com/balabit/Mouse-Dynamics-Challenge/archive/$commit.tar.gz" "$tmp/bb.tgz"
  tar -xzf "$tmp/bb.tgz" -C "$tmp"
  src="$tmp/Mouse-Dynamics-Challenge-$commit"
  mkdir -p "$tmp/bb"
  tar -cJf "$tmp/bb/balabit-mouse-dynamics.tar.xz" -C "$src" training_files test_files
  cp "$src/public_labels.csv" "$tmp/bb/labels_dev.csv"
  cp "$src/README.md" "$tmp/bb/README.md"
  mv "$tmp/bb" "$dest/balabit"
fi

if [ ! -d "$dest/pretrained" ]; then
  zoo=https://media.githubusercontent.com/media/onnx/models/main/validated/vision/classification
  mkdir -p "$tmp/pt"
  fetch "$zoo/mobilenet/model/mobilenetv2-12-int8.onnx" "$tmp/pt/mobilenetv2-12-int8.onnx"
  fetch https://raw.githubusercontent.com/onnx/models/main/validated/vision/classification/synset.txt \
    "$tmp/pt/synset.txt"
  echo "cc028fe6cae7bc11a4ff53cfc9b79c920e8be65ce33a904ec3e2a8f66d77f95f  $tmp/pt/mobilenetv2-12-int8.onnx" \
    | sha256sum -c - || { echo "download_data: the model's sha256 differs" >&2; exit 1; }
  mv "$tmp/pt" "$dest/pretrained"
fi
echo "download_data: data in $dest (export WHISKER_DATA=$dest)"
