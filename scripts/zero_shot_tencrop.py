#!/usr/bin/python3
"""zero_shot_tencrop.py - the zero-shot dogs-vs-cats check (scripts/imagenet_zero_shot.sh)
with the classic ten-crop evaluation (Krizhevsky et al. 2012): the shorter side resized
to 256, the centre and four corner 224 crops, each also mirrored; the ten views'
probabilities averaged. Pillow makes the crops (lossless PNG in a temporary folder);
whisker's wk_zero_shot runs the imported model on each view (--resize 224 leaves a 224
crop as is) and dumps its probabilities (--dump). Prints each view's accuracy by the
within-the-groups rule and the ten-view average's by all three rules.

  /usr/bin/python3 scripts/zero_shot_tencrop.py   # after bash scripts/imagenet_zero_shot.sh
"""
import os
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("BUILD_DIR", os.path.join(ROOT, "build"))
DATA = os.environ.get("WHISKER_DATA", os.path.join(ROOT, "..", "shared", "data"))
MODEL = os.path.join(BUILD, "zero_shot", "mobilenetv2-imagenet.safetensors")
RESIZE, CROP = 256, 224
CAT, DOG = (281, 285), (151, 268)


def make_views(src, dst):
    views = []
    for cls in sorted(os.listdir(src)):
        for name in sorted(os.listdir(os.path.join(src, cls))):
            im = Image.open(os.path.join(src, cls, name)).convert("RGB")
            w, h = im.size
            s = RESIZE / min(w, h)
            im = im.resize((max(CROP, round(w * s)), max(CROP, round(h * s))), Image.BILINEAR)
            w, h = im.size
            corners = {"centre": ((w - CROP) // 2, (h - CROP) // 2), "top-left": (0, 0),
                       "top-right": (w - CROP, 0), "bottom-left": (0, h - CROP),
                       "bottom-right": (w - CROP, h - CROP)}
            for where, (x, y) in corners.items():
                for mirror in (False, True):
                    view = where + (" mirrored" if mirror else "")
                    if view not in views:
                        views.append(view)
                    d = os.path.join(dst, view.replace(" ", "_"), cls)
                    os.makedirs(d, exist_ok=True)
                    c = im.crop((x, y, x + CROP, y + CROP))
                    if mirror:
                        c = c.transpose(Image.FLIP_LEFT_RIGHT)
                    c.save(os.path.join(d, os.path.splitext(name)[0] + ".png"))
    return views


def rules(p, labels, cat_label, dog_label):
    cat, dog = p[:, CAT[0]:CAT[1] + 1], p[:, DOG[0]:DOG[1] + 1]
    top = p.argmax(1)
    argmax = np.where((top >= CAT[0]) & (top <= CAT[1]), cat_label,
                      np.where((top >= DOG[0]) & (top <= DOG[1]), dog_label, -1))
    within = np.where(cat.max(1) > dog.max(1), cat_label, dog_label)
    summed = np.where(cat.sum(1) > dog.sum(1), cat_label, dog_label)
    return [(name, 100.0 * (r == labels).mean()) for name, r in
            (("argmax", argmax), ("group sum", summed), ("within", within))]


def main():
    val = os.path.join(DATA, "dogs-vs-cats", "val")
    if not os.path.exists(MODEL):
        sys.exit(f"zero_shot_tencrop: {MODEL} is missing: run bash scripts/imagenet_zero_shot.sh first")
    classes = sorted(os.listdir(val))
    cat_label, dog_label = classes.index("cat"), classes.index("dog")
    with tempfile.TemporaryDirectory() as tmp:
        views = make_views(val, tmp)
        total, labels = None, None
        for view in views:
            d = os.path.join(tmp, view.replace(" ", "_"))
            dump = d + ".bin"
            subprocess.run([os.path.join(BUILD, "wk_zero_shot"), MODEL, d, "cat=%d-%d" % CAT,
                            "dog=%d-%d" % DOG, "--resize", str(CROP), "--dump", dump],
                           check=True, stdout=subprocess.DEVNULL)
            raw = open(dump, "rb").read()
            n = len(raw) // (4 * 1001)
            lab = np.frombuffer(raw[:4 * n], dtype=np.int32)
            p = np.frombuffer(raw[4 * n:], dtype=np.float32).reshape(n, 1000)
            assert labels is None or (labels == lab).all(), "views disagree on the image order"
            labels = lab
            total = p.copy() if total is None else total + p
            print("%-20s within %.1f%%" % (view, rules(p, lab, cat_label, dog_label)[2][1]))
        for name, acc in rules(total / len(views), labels, cat_label, dog_label):
            print("ten-crop %-11s %.1f%% of %d images" % (name, acc, len(labels)))


if __name__ == "__main__":
    main()
