#!/usr/bin/env python3
"""Calibration / held-out images for int8 conversion of 224x224 image models.

Every colour or grey image bundled with scikit-image (png/jpg in skimage/data) gives three
square crops (centre, top-left and bottom-right at 80% of the short side), each resized to
SIZE and rotated by 0, 90, 180 and 270 degrees: 12 PNGs per image. Images are ordered by a
fixed shuffle so that `kestrel-quantize --holdout F` (which holds out the *last* F of the
files in name order) holds out whole images of mixed kinds. Needs Pillow only; scikit-image is
read from its wheel (unpacked or not), nothing is imported from it.

Usage: models/make_calib_images.py OUT_DIR [--skimage DIR_OR_WHEEL] [--size 224]
Default skimage source: /tmp/wheels/ski/skimage/data, else a scikit_image wheel in /tmp/wheels,
else the installed skimage package.
"""
import argparse
import glob
import io
import os
import random
import sys
import zipfile

from PIL import Image


def sources(path):
    """(name, bytes) of every png/jpg in a skimage data dir or wheel."""
    exts = (".png", ".jpg")
    if os.path.isdir(path):
        for f in sorted(os.listdir(path)):
            if f.lower().endswith(exts):
                with open(os.path.join(path, f), "rb") as fh:
                    yield f, fh.read()
        return
    with zipfile.ZipFile(path) as z:
        for f in sorted(z.namelist()):
            if f.startswith("skimage/data/") and f.lower().endswith(exts):
                yield os.path.basename(f), z.read(f)


def default_source():
    if os.path.isdir("/tmp/wheels/ski/skimage/data"):
        return "/tmp/wheels/ski/skimage/data"
    wheels = glob.glob("/tmp/wheels/scikit_image-*.whl")
    if wheels:
        return wheels[0]
    try:
        import skimage  # noqa: F401

        return os.path.join(os.path.dirname(skimage.__file__), "data")
    except ImportError:
        sys.exit("no scikit-image data found: pass --skimage DIR_OR_WHEEL")


def crops(img):
    w, h = img.size
    s = min(w, h)
    yield "c", img.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
    t = max(1, int(s * 0.8))
    yield "tl", img.crop((0, 0, t, t))
    yield "br", img.crop((w - t, h - t, w, h))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--skimage", default=None)
    ap.add_argument("--size", type=int, default=224)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    items = []
    for name, data in sources(args.skimage or default_source()):
        img = Image.open(io.BytesIO(data))
        if img.mode in ("RGBA", "LA", "P"):
            img = img.convert("RGBA")
            bg = Image.new("RGBA", img.size, (255, 255, 255, 255))
            img = Image.alpha_composite(bg, img)
        img = img.convert("RGB")
        if min(img.size) < 64:
            continue
        items.append((os.path.splitext(name)[0], img))
    if not items:
        sys.exit("no images found")
    random.Random(6).shuffle(items)
    n = 0
    for ix, (name, img) in enumerate(items):
        for tag, crop in crops(img):
            crop = crop.resize((args.size, args.size), Image.BILINEAR)
            for rot in (0, 90, 180, 270):
                crop.rotate(rot, expand=True).save(
                    os.path.join(args.out, f"{ix:03d}_{name}_{tag}_{rot}.png")
                )
                n += 1
    print(f"{args.out}: {n} images from {len(items)} scikit-image pictures")


if __name__ == "__main__":
    main()
