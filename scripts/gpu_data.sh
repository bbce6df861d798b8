#!/usr/bin/env bash
# gpu_data.sh - the data a GPU machine's end-to-end check needs, small enough
# to travel with the checkout (the device tool carries at most 64 MiB, the
# .gpudeps packages included): into .device-data/ (git-ignored), laid out as
# $WHISKER_DATA is, so scripts/finetune_dogs_vs_cats.sh runs on it as it is:
#   dogs-vs-cats/{train,val}/{cat,dog}/  every photo, shorter side at most 256
#                                        px (never enlarged), JPEG quality 72
#   pretrained/mobilenetv2-12-int8.onnx, pretrained/synset.txt   as they are
# The shorter side 256 is what evaluation resizes to before its 224 centre
# crop, so validation sees nearly the same pixels; training's random crops see
# the photos at most at 256 px. About 40 MiB.
#
#   bash scripts/gpu_data.sh        (then carry [".gpudeps", ".device-data"])
# Needs Pillow (Debian's python3-pil, under /usr/bin/python3).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
data="${WHISKER_DATA:-$root/../shared/data}"
dst="$root/.device-data"
py="${WHISKER_PYTHON:-/usr/bin/python3}"
[ -d "$data/dogs-vs-cats/train" ] || { echo "gpu_data: no $data/dogs-vs-cats" >&2; exit 1; }
rm -rf "$dst.tmp"
mkdir -p "$dst.tmp/pretrained"
cp "$data/pretrained/mobilenetv2-12-int8.onnx" "$data/pretrained/synset.txt" "$dst.tmp/pretrained/"
"$py" - "$data/dogs-vs-cats" "$dst.tmp/dogs-vs-cats" <<'EOF'
import os, sys
from PIL import Image
src, dst = sys.argv[1:3]
n = bad = 0
for split in ("train", "val"):
    for cls in ("cat", "dog"):
        d = os.path.join(src, split, cls)
        os.makedirs(os.path.join(dst, split, cls))
        for name in sorted(os.listdir(d)):
            try:
                im = Image.open(os.path.join(d, name)).convert("RGB")
            except OSError as e:
                print(f"gpu_data: {os.path.join(d, name)}: {e} (left out)", file=sys.stderr)
                bad += 1
                continue
            w, h = im.size
            s = min(w, h)
            if s > 256:
                im = im.resize((round(w * 256 / s), round(h * 256 / s)), Image.BILINEAR)
            im.save(os.path.join(dst, split, cls, os.path.splitext(name)[0] + ".jpg"), "JPEG",
                    quality=72)
            n += 1
print(f"gpu_data: {n} photos written, {bad} left out")
EOF
rm -rf "$dst"
mv "$dst.tmp" "$dst"
mib() { du -scb "$@" 2>/dev/null | tail -1 | awk '{printf "%.1f", $1 / 1048576}'; }
echo "gpu_data: $dst, $(mib "$dst") MiB (with .gpudeps: $(mib "$dst" "$root/.gpudeps") MiB; the device tool carries 64)"
