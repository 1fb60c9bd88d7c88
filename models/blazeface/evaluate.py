#!/usr/bin/env python3
"""Detection agreement of Kestrel's BlazeFace graphs with the onnxruntime reference.

    python3 models/blazeface/make_data.py                     # once: /tmp/blazeface-eval (and -calib)
    python3 models/blazeface/evaluate.py [--onnx /tmp/kestrel-models/blazeface.onnx]
        [--eval-dir /tmp/blazeface-eval] [--kestrel target/release/kestrel] [--sidecar TOML]
        [--thresholds 0.5,0.3] [--also ''] [--json OUT.json] [-v] GRAPH.nnef.tgz [GRAPH ...]
        (default graphs: blazeface.nnef.tgz and blazeface-int8.nnef.tgz of this folder, if there)

Needs numpy, pillow, onnxruntime. Frames: the 189 PNGs (128x128 RGB) of make_data.py's
evaluation folder, all in one raw `rgb24` file, one frame each (Kestrel's resize of a 128x128
frame is the identity, so both sides see the same pixels). Two sets: `images` (the 100
lfw_subset faces and scikit-image's 26 pictures) and `mosaics` (25 2x2 and 12 3x3 mosaics of
the faces, 26 2x2 mosaics of the pictures).

Per frame and score threshold T (--thresholds gated, --also reported only):
- reference: onnxruntime on the ONNX graph (input x / 127.5 - 1, NHWC), decoded in numpy with
  the sidecar's parameters (export.py's anchors and MediaPipe decode: (dx, dy, w, h) / 128 on
  1x1 anchors, sigmoid), candidates score >= T with a non-empty box, greedy NMS at IoU 0.3 (a
  box goes when its IoU with a kept one is > 0.3; Kestrel's algorithm, where MediaPipe merges
  the same groups into a weighted box: export.py), at most 100, then boxes clipped to [0, 1];
- Kestrel: `kestrel run --model GRAPH --source file:FRAMES.rgb --pixel-format rgb24 --size
  128x128 --fps 0 --no-config`, its JSON lines parsed (`objects`). The sidecar (GRAPH's own
  `STEM.kestrel.toml` when there, else --sidecar, default this folder's blazeface.kestrel.toml)
  is copied next to a link to the graph with score_threshold = T;
- decoder check: `kestrel infer GRAPH` on the very input tensors `kestrel run` builds, decoded
  by the same numpy reference, vs Kestrel's `run` detections of that graph: isolates Kestrel's
  decoder + NMS from the graph's numerics.

A Kestrel box matches a reference box when their IoU >= 0.5 (one to one, greedy by IoU);
precision = matched / Kestrel's boxes, recall = matched / the reference's; max |score diff|
over the matched pairs. Prints a markdown table; exit status 1 when a graph without "int8" in
its name has precision or recall below --min-f32 (0.99) at a --thresholds threshold.
"""
import argparse
import os
import shutil
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path[:0] = [HERE, os.path.dirname(HERE)]
import detect_tools as tools  # noqa: E402  (kestrel runs, NMS, matching)
from export import BOXES, NUM_ANCHORS, NUM_COORDS, SCORES, SIZE, decode, sigmoid, ssd_anchors  # noqa: E402
from make_data import load_eval  # noqa: E402

IOU_NMS = 0.3     # the sidecar's (MediaPipe's min_suppression_threshold)
MAX_DET = 100
ANCHORS = ssd_anchors()
OUTPUTS = {BOXES: (NUM_ANCHORS, NUM_COORDS), SCORES: (NUM_ANCHORS, 1)}


def detections(raw, logits, thr):
    """The numpy reference. Returns ([(class 0, score, box xyxy clipped)], score margin,
    NMS IoU margin): how close a score came to thr, and a deciding IoU to the NMS threshold."""
    boxes, _ = decode(raw, ANCHORS)
    scores = sigmoid(logits[:, 0])
    valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    cand = np.nonzero((scores >= thr) & valid)[0]
    dets, margin = tools.nms_clip(boxes[cand], scores[cand], np.zeros(len(cand), np.int64), IOU_NMS, MAX_DET)
    s_margin = float(np.min(np.abs(scores[valid] - thr))) if valid.any() else np.inf
    return dets, s_margin, margin


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("graphs", nargs="*")
    ap.add_argument("--onnx", default="/tmp/kestrel-models/blazeface.onnx")
    ap.add_argument("--eval-dir", default="/tmp/blazeface-eval")
    ap.add_argument("--kestrel", default=os.path.join(ROOT, "target", "release", "kestrel"))
    ap.add_argument("--sidecar", default=os.path.join(HERE, "blazeface.kestrel.toml"),
                    help="used for a graph without its own STEM.kestrel.toml")
    ap.add_argument("--thresholds", default="0.5,0.3", help="score thresholds (the f32 gate applies)")
    ap.add_argument("--also", default="", help="more thresholds, reported only, e.g. 0.1")
    ap.add_argument("--min-f32", type=float, default=0.99)
    ap.add_argument("--json")
    ap.add_argument("-v", "--verbose", action="store_true", help="list every unmatched box")
    a = ap.parse_args()
    graphs = a.graphs or [g for g in (os.path.join(HERE, "blazeface.nnef.tgz"),
                                      os.path.join(HERE, "blazeface-int8.nnef.tgz")) if os.path.exists(g)]
    if not graphs:
        sys.exit("no graph given (and none in models/blazeface/)")
    gated = [float(t) for t in a.thresholds.split(",")]
    thresholds = gated + [float(t) for t in a.also.split(",") if t.strip()]

    frames_list = load_eval(a.eval_dir)
    names = [n for n, _ in frames_list]
    mosaic = [("2x2" in n or "3x3" in n) for n in names]
    sets = [("images", [i for i, m in enumerate(mosaic) if not m]), ("mosaics", [i for i, m in enumerate(mosaic) if m])]
    u8 = np.stack([im for _, im in frames_list])
    assert u8.shape[1:] == (SIZE, SIZE, 3), u8.shape
    x, x_run = tools.run_inputs(u8)  # the reference's input (MediaPipe's [-1, 1]), what `kestrel run` feeds the graph
    print(f"{len(names)} frames from {a.eval_dir}: " + ", ".join(f"{len(idx)} {sn}" for sn, idx in sets)
          + f"; input x/127.5-1 vs Kestrel's px*(1/127.5)-1: max abs diff {float(np.max(np.abs(x - x_run))):.1e}")

    results = {"frames": names, "graphs": {}}
    tmp = tempfile.mkdtemp(prefix="kestrel-blazeface-eval-")
    rows, fail = [], False
    try:
        run = tools.Run(a, u8, names, sets, OUTPUTS, tmp)
        raw = tools.onnx_raw(a.onnx, x, OUTPUTS)
        refs = tools.references(detections, raw, thresholds)
        for t, (dets, near_s, near_i) in refs.items():
            print(f"reference T={t}: " + ", ".join(
                f"{sum(len(dets[i]) for i in idx)} faces on {sum(1 for i in idx if dets[i])} {sn}"
                for sn, idx in sets)
                + f"; an anchor's score within 1e-3 of T: {sum(m < 1e-3 for m in near_s)} frames; a deciding NMS "
                f"IoU within 1e-3 of {IOU_NMS}: {sum(m < 1e-3 for m in near_i)} frames")
        for g in graphs:
            side = tools.sidecar_of(g, a.sidecar)[1]
            gname = os.path.basename(g)
            res = results["graphs"][gname] = {"sidecar": side}
            g_rows = run.graph(g, side, res, raw, refs, detections, f" (sidecar {os.path.relpath(side)})")
            rows += g_rows
            fail |= "int8" not in gname and tools.below(g_rows, gated, a.min_f32)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    tools.print_table(rows, "faces")
    return tools.finish(a, results, fail, "an f32 graph's")


if __name__ == "__main__":
    sys.exit(main())
