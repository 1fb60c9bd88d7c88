#!/usr/bin/env python3
"""Calibration and held-out images for int8 conversion of the PP-OCR text detector
(tests/fixtures/onnx/ppocr-det.onnx, DB head), for Kestrel and for the onnxruntime peer
(benches/peers/ort_int8_detect.py --decode db) alike.

    python3 benches/peers/make_ppdet_images.py [--calib /tmp/ppdet-calib] [--eval /tmp/ppdet-eval]
        [--size 320x320] [--calib-count 80] [--eval-count 40] [--seed 1] [--skimage DIR]

Writes SIZE RGB PNGs named NNN_KIND.png, kinds mixed by a fixed shuffle (so that
`kestrel-quantize --holdout F`, which holds out the last F in name order, holds out all kinds):
- doc:   a synthetic page: paper colour, 3-10 lines of seeded random words / numbers
         (models/make_text_lines.py's `line` and `font`, imported), font 10-28 px, random
         indents, ink, sometimes a rotation of up to 4 degrees, a blur or sensor noise;
- scene: 1-4 such lines on a crop of a scikit-image photograph, on a paper label or straight on
         the picture;
- page:  square crops of scikit-image's `page.png` (a real scanned page), resized to SIZE;
- text:  square crops of scikit-image's `text.png` (a real photo of handwriting on paper);
- plain: a photograph crop without text (false-positive check).
The two sets share no pixels: the calibration set uses the left half of page.png and text.png,
the even photographs (sorted by name) and seed SEED; the held-out set the right halves (plus
both whole pictures letterboxed), the odd photographs and seed SEED + 1000.
Deterministic for a given --seed. Needs Pillow and numpy; scikit-image's data folder is read
from the installed package (or --skimage, or /tmp/kestrel-eval-data/skimage/data).
"""
import argparse
import os
import random
import re
import sys

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "models"))
import make_text_lines as tl  # noqa: E402  (line(rng), font(size): not duplicated here)

TEXT_PICTURES = ("page.png", "text.png")
NOT_PHOTOS = TEXT_PICTURES + ("chessboard_GRAY.png", "chessboard_RGB.png", "logo.png", "microaneurysms.png")


def skimage_dir(arg):
    if arg:
        return arg
    try:
        import skimage
        d = os.path.join(os.path.dirname(skimage.__file__), "data")
        if os.path.exists(os.path.join(d, "page.png")):
            return d
    except ImportError:
        pass
    return "/tmp/kestrel-eval-data/skimage/data"


def rgb(path):
    img = Image.open(path)
    if img.mode in ("RGBA", "LA", "P"):
        img = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", img.size, (255, 255, 255, 255)), img)
    return img.convert("RGB")


def draw_lines(img, rng, box, n_lines, ink=None):
    """Draws n_lines random text lines inside box (x0, y0, x1, y1) of img."""
    d = ImageDraw.Draw(img)
    x0, y0, x1, y1 = box
    y = y0 + rng.randint(0, 8)
    for _ in range(n_lines):
        size = rng.randint(10, 28)
        f = tl.font(size)
        text = tl.line(rng)
        x = x0 + rng.randint(0, max(1, (x1 - x0) // 5))
        while d.textlength(text, font=f) > x1 - x - 2 and " " in text:
            text = text.rsplit(" ", 1)[0]
        if y + size > y1:
            break
        colour = ink or tuple(rng.randint(0, 90) for _ in range(3))
        d.text((x, y), text, fill=colour, font=f)
        y += int(size * rng.uniform(1.3, 2.2))


def doc(rng, w, h):
    paper = tuple(rng.randint(170, 255) for _ in range(3))
    img = Image.new("RGB", (w, h), paper)
    ink = tuple(rng.randint(0, 90) for _ in range(3))
    if rng.random() < 0.15:  # light text on dark paper
        img = Image.new("RGB", (w, h), ink)
        ink = paper
    draw_lines(img, rng, (8, 4, w - 6, h - 4), rng.randint(3, 10), ink)
    if rng.random() < 0.4:
        img = img.rotate(rng.uniform(-4, 4), Image.BILINEAR, fillcolor=img.getpixel((0, 0)))
    if rng.random() < 0.4:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0)))
    if rng.random() < 0.3:
        a = np.asarray(img, np.float32) + np.random.default_rng(rng.randint(0, 2**31)).normal(0, 6, (h, w, 3))
        img = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))
    return img


def photo_crop(rng, photo, w, h):
    pw, ph = photo.size
    s = rng.randint(min(pw, ph) // 2, min(pw, ph))
    x, y = rng.randint(0, pw - s), rng.randint(0, ph - s)
    return photo.crop((x, y, x + s, y + s)).resize((w, h), Image.BILINEAR)


def scene(rng, photo, w, h):
    img = photo_crop(rng, photo, w, h)
    for _ in range(rng.randint(1, 2)):
        bw, bh = rng.randint(w // 3, w - 10), rng.randint(h // 6, h // 2)
        bx, by = rng.randint(0, w - bw), rng.randint(0, h - bh)
        if rng.random() < 0.6:  # a paper label
            paper = tuple(rng.randint(170, 255) for _ in range(3))
            ImageDraw.Draw(img).rectangle((bx, by, bx + bw, by + bh), fill=paper)
            draw_lines(img, rng, (bx + 4, by + 2, bx + bw - 4, by + bh - 2), rng.randint(1, 3))
        else:  # straight on the picture, light or dark ink
            ink = (255, 255, 255) if rng.random() < 0.5 else (10, 10, 10)
            draw_lines(img, rng, (bx, by, bx + bw, by + bh), rng.randint(1, 2), ink)
    return img


def square_crop(rng, pic, w, h):
    pw, ph = pic.size
    s = rng.randint(max(24, min(pw, ph) // 2), min(pw, ph))
    x, y = rng.randint(0, pw - s), rng.randint(0, ph - s)
    return pic.crop((x, y, x + s, y + s)).resize((w, h), Image.BILINEAR)


def letterbox(pic, w, h):
    pw, ph = pic.size
    k = min(w / pw, h / ph)
    r = pic.resize((max(1, round(pw * k)), max(1, round(ph * k))), Image.BILINEAR)
    bg = tuple(int(v) for v in np.median(np.asarray(pic).reshape(-1, 3), axis=0))
    out = Image.new("RGB", (w, h), bg)
    out.paste(r, ((w - r.size[0]) // 2, (h - r.size[1]) // 2))
    return out


def build(sk, held_out, count, seed, w, h):
    rng = random.Random(seed + (1000 if held_out else 0))
    photos = [f for f in sorted(os.listdir(sk)) if f.lower().endswith((".png", ".jpg")) and f not in NOT_PHOTOS]
    photos = [rgb(os.path.join(sk, f)) for f in photos[int(held_out)::2]]
    halves = {}
    for name in TEXT_PICTURES:
        pic = rgb(os.path.join(sk, name))
        pw, ph = pic.size
        halves[name] = pic.crop((pw // 2, 0, pw, ph) if held_out else (0, 0, pw // 2, ph))
    out = []
    if held_out:
        for name in TEXT_PICTURES:
            out.append((name.split(".")[0] + "_whole", letterbox(rgb(os.path.join(sk, name)), w, h)))
    n_page = n_text = max(2, count // 10)
    n_plain = max(1, count // 20)
    n_scene = count * 3 // 10
    while len(out) < count:
        k = len(out)
        if k < n_page + 2 * held_out:
            out.append(("page", square_crop(rng, halves["page.png"], w, h)))
        elif k < n_page + n_text + 2 * held_out:
            out.append(("text", square_crop(rng, halves["text.png"], w, h)))
        elif k < n_page + n_text + n_plain + 2 * held_out:
            out.append(("plain", photo_crop(rng, rng.choice(photos), w, h)))
        elif k < n_page + n_text + n_plain + n_scene + 2 * held_out:
            out.append(("scene", scene(rng, rng.choice(photos), w, h)))
        else:
            out.append(("doc", doc(rng, w, h)))
    order = list(range(len(out)))
    random.Random(seed + 7).shuffle(order)
    return [(f"{i:03d}_{out[j][0]}.png", out[j][1]) for i, j in enumerate(order)]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calib", default="/tmp/ppdet-calib")
    ap.add_argument("--eval", default="/tmp/ppdet-eval")
    ap.add_argument("--size", default="320x320")
    ap.add_argument("--calib-count", type=int, default=80)
    ap.add_argument("--eval-count", type=int, default=40)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--skimage")
    a = ap.parse_args()
    w, h = (int(v) for v in a.size.split("x"))
    sk = skimage_dir(a.skimage)
    for folder, held_out, count in ((a.calib, False, a.calib_count), (a.eval, True, a.eval_count)):
        os.makedirs(folder, exist_ok=True)
        stale = os.listdir(folder)
        if any(not re.fullmatch(r"\d{3}_[a-z_]+\.png", f) for f in stale):
            raise SystemExit(f"{folder} holds files this script did not write: give another folder")
        for f in stale:  # an earlier run's images
            os.remove(os.path.join(folder, f))
        imgs = build(sk, held_out, count, a.seed, w, h)
        for name, img in imgs:
            img.save(os.path.join(folder, name))
        kinds = {}
        for name, _ in imgs:
            k = name[4:-4]
            kinds[k] = kinds.get(k, 0) + 1
        print(f"{folder}: {len(imgs)} images {w}x{h} ({', '.join(f'{v} {k}' for k, v in sorted(kinds.items()))})")


if __name__ == "__main__":
    main()
