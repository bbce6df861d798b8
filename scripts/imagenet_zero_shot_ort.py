#!/usr/bin/python3
"""The zero-shot dogs-vs-cats check of scripts/imagenet_zero_shot.sh, but on
the int8 MobileNetV2 itself in ONNX Runtime (tools/ort/run.js) with Pillow
preprocessing (resize shorter side to 256 bilinear, centre crop 224, ImageNet
mean/std, as pretrained/README.md describes): the baseline whisker's float
import is compared with. Prints the accuracy by two of tools/zero_shot.c's rules
(ImageNet 281-285 -> cat, 151-268 -> dog): argmax (the top class of the 1000,
then mapped; one in neither group is wrong) and the top class within the two
groups (the larger of the best cat and the best dog logit).

  /usr/bin/python3 scripts/imagenet_zero_shot_ort.py   # needs npm ci --prefix tools/ort
"""
import os
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.environ.get("WHISKER_DATA", os.path.join(ROOT, "..", "shared", "data"))
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


def preprocess(path):
    im = Image.open(path).convert("RGB")
    w, h = im.size
    s = 256 / min(w, h)
    im = im.resize((int(round(w * s)), int(round(h * s))), Image.BILINEAR)
    w, h = im.size
    left, top = w // 2 - 112, h // 2 - 112
    a = np.asarray(im.crop((left, top, left + 224, top + 224)), np.float32) / 255
    return ((a - MEAN) / STD).transpose(2, 0, 1)


def main():
    val = os.path.join(DATA, "dogs-vs-cats", "val")
    model = os.path.join(DATA, "pretrained", "mobilenetv2-12-int8.onnx")
    files = [(os.path.join(val, c, f), c) for c in ("cat", "dog")
             for f in sorted(os.listdir(os.path.join(val, c)))]
    correct = within = 0
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(0, len(files), 100):
            chunk = files[k:k + 100]
            x = np.stack([preprocess(p) for p, _ in chunk]).astype(np.float32)
            x.tofile(os.path.join(tmp, "in.f32"))
            subprocess.run(["node", os.path.join(ROOT, "tools", "ort", "run.js"), model,
                            os.path.join(tmp, "in.f32"), f"{len(chunk)},3,224,224",
                            os.path.join(tmp, "out.f32")], check=True, stdout=subprocess.DEVNULL)
            top = np.fromfile(os.path.join(tmp, "out.f32"), np.float32).reshape(len(chunk), -1)
            for row, (_, label) in zip(top, chunk):
                t = row.argmax()
                group = "cat" if 281 <= t <= 285 else "dog" if 151 <= t <= 268 else None
                correct += group == label
                within += ("cat" if row[281:286].max() > row[151:269].max() else "dog") == label
    print(f"onnxruntime int8 argmax: {100 * correct / len(files):.2f}% of {len(files)}")
    print(f"onnxruntime int8 top class within the groups: {100 * within / len(files):.2f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
