#!/usr/bin/env bash
# gen_corpus.sh - (re)makes the committed seed corpus in fuzz/corpus/ from the
# project's own fixtures (tests/fixtures/images, made by
# scripts/gen_image_fixtures.py) and from wk_fuzz_seeds (fuzz/gen_seeds.c: a
# tiny model, its architecture JSON, CSV lists). A few KB per target: the
# fuzzer finds the rest.
#   bash fuzz/gen_corpus.sh [BUILD_DIR]     # default build/ (needs wk_fuzz_seeds built)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${1:-$root/build}"
seeds="$build/fuzz/wk_fuzz_seeds"
[ -x "$seeds" ] || cmake --build "$build" --target wk_fuzz_seeds -j 2
img="$root/tests/fixtures/images"
out="$root/fuzz/corpus"
rm -rf "$out"
mkdir -p "$out"/{fuzz_jpeg,fuzz_png,fuzz_model,fuzz_arch,fuzz_csv}
for f in jpeg_420 jpeg_411 jpeg_progressive jpeg_cmyk jpeg_ycck jpeg_gray jpeg_exif6_be \
         jpeg_exif_bad_offset bad_truncated_progressive; do
  cp "$img/$f.jpg" "$out/fuzz_jpeg/"
done
for f in png_pal2 png_gray2_adam7 png_gray16 png_pal8_trns png_gray8_trns png_graya8 \
         png_exif8 bad_zero_width; do
  cp "$img/$f.png" "$out/fuzz_png/"
done
"$seeds" "$out"
du -sh "$out"/*
