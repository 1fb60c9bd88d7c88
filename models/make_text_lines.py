#!/usr/bin/env python3
"""Text-line images for calibrating / checking OCR recognition models (PP-OCR rec: 48x320).

Renders N lines of seeded random words (letters, digits, punctuation) with Pillow's bundled
font at random sizes, ink and paper colours, offsets and a slight blur, on WIDTHxHEIGHT
canvases, as PNGs named line_000.png ... Deterministic for a given --seed. Needs Pillow only.

Usage: models/make_text_lines.py OUT_DIR [--count 64] [--size 320x48] [--seed 1]
"""
import argparse
import os
import random
import string

from PIL import Image, ImageDraw, ImageFilter, ImageFont

WORDS = (
    "kestrel edge model int8 float camera frame quantize tensor invoice total amount date "
    "street number phone order price receipt station north south river hotel coffee"
).split()


def font(size):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: one bitmap size
        return ImageFont.load_default()


def line(rng):
    parts = []
    for _ in range(rng.randint(1, 4)):
        kind = rng.random()
        if kind < 0.5:
            w = rng.choice(WORDS)
            parts.append(w.capitalize() if rng.random() < 0.3 else w)
        elif kind < 0.8:
            parts.append(str(rng.randint(0, 99999)))
        else:
            parts.append("".join(rng.choice(string.ascii_letters + string.digits + ".,:-/")
                                 for _ in range(rng.randint(2, 8))))
    return " ".join(parts)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--count", type=int, default=64)
    ap.add_argument("--size", default="320x48")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    rng = random.Random(args.seed)
    os.makedirs(args.out, exist_ok=True)
    for i in range(args.count):
        paper = tuple(rng.randint(170, 255) for _ in range(3))
        ink = tuple(rng.randint(0, 90) for _ in range(3))
        if rng.random() < 0.2:
            paper, ink = ink, paper
        img = Image.new("RGB", (w, h), paper)
        draw = ImageDraw.Draw(img)
        f = font(rng.randint(int(h * 0.45), int(h * 0.75)))
        text = line(rng)
        while draw.textlength(text, font=f) > w - 8 and " " in text:
            text = text.rsplit(" ", 1)[0]
        draw.text((rng.randint(2, 12), rng.randint(0, max(1, h // 5))), text, fill=ink, font=f)
        if rng.random() < 0.5:
            img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0)))
        img.save(os.path.join(args.out, f"line_{i:03d}.png"))
    print(f"{args.out}: {args.count} text lines {w}x{h}")


if __name__ == "__main__":
    main()
