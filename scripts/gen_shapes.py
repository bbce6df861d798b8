#!/usr/bin/python3
"""A small synthetic image-classification set: coloured shapes on noisy
backgrounds, one folder per class, train/ and val/.

  /usr/bin/python3 scripts/gen_shapes.py OUT_DIR [--train 60] [--val 20] [--size 64] [--seed 1]

Classes: circle, square, triangle. Shape colour, size, position and the
background are random; the set is a deterministic function of the seed. Used
by the end-to-end tests (tests/test_e2e.sh) to train, evaluate and classify in
seconds."""
import argparse
import os
import random

from PIL import Image, ImageDraw


def shape(draw, kind, rng, size):
    r = rng.randint(size // 6, size // 3)
    cx, cy = rng.randint(r, size - r), rng.randint(r, size - r)
    col = tuple(rng.randint(40, 255) for _ in range(3))
    if kind == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=col)
    elif kind == "square":
        draw.rectangle([cx - r, cy - r, cx + r, cy + r], fill=col)
    else:
        draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=col)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--train", type=int, default=60)
    ap.add_argument("--val", type=int, default=20)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    for split, n in (("train", a.train), ("val", a.val)):
        for kind in ("circle", "square", "triangle"):
            d = os.path.join(a.out, split, kind)
            os.makedirs(d, exist_ok=True)
            for i in range(n):
                bg = tuple(rng.randint(0, 60) for _ in range(3))
                img = Image.new("RGB", (a.size, a.size), bg)
                shape(ImageDraw.Draw(img), kind, rng, a.size)
                img.save(os.path.join(d, "%s_%03d.png" % (kind, i)))


if __name__ == "__main__":
    main()
