#!/usr/bin/env python3
"""Peer benchmark for multi-output detectors: onnxruntime's own int8 post-training quantization
against onnxruntime float, on the calibration images and held-out images Kestrel uses.

    python3 benches/peers/ort_int8_detect.py MODEL.onnx CALIB_DIR EVAL_DIR --decode ssd-tf \
        --size 300x300 --mean 0.5 --std 0.5 --layout nhwc [--color rgb] \
        [--method minmax|entropy|percentile] [--entropy-bins N] [--float-dw-stem] [--holdout 0.25]
        [--runs 30] [--json OUT.json] [--label TEXT]
    python3 benches/peers/ort_int8_detect.py --make-ssd-eval DIR [--data /tmp/kestrel-eval-data]

Images (both folders, name order): PIL RGB (alpha dropped, as Kestrel's loader does), resized
to --size with PIL bilinear (the identity when already that size), optionally BGR, then
(px / 255 - mean) / std in f32, NCHW or NHWC — the preprocessing flags of
`kestrel-quantize convert --int8` and of benches/peers/ort_int8.py. A dynamic input is fixed to
[1, C, H, W] / [1, H, W, C] from --size and --layout.

Calibration is Kestrel's: of CALIB_DIR's images, the converter calibrates on all but the last
--holdout fraction (its default 0.25, rounded like the converter); onnxruntime calibrates on the
same ones. Every image of EVAL_DIR is held out (none of them is a calibration image).
onnxruntime: quant_pre_process, then quantize_static, QDQ, per-channel weights, QUInt8
activations / QInt8 weights (its x86 default), --method MinMax (default), Entropy or Percentile
(onnxruntime's defaults: 99.999th percentile; for Entropy quantize_static builds a 128-bin
histogram for 128 quantized bins, so its KL search has one candidate, the full range, and gives
MinMax's ranges: --entropy-bins 2048 makes it search). --float-dw-stem leaves depthwise and stem
convolutions float, as Kestrel's converter does by default.

Printed (a markdown table row; everything also in --json), on EVAL_DIR, int8 against float
onnxruntime on the same preprocessed inputs:
- SQNR (dB) of every output: 10 log10(sum f^2 / sum (f - q)^2) over all images;
- score outputs (ssd-tf: sigmoid of class_logits, best non-background class per anchor;
  ssd-mediapipe: sigmoid of the classificators): top-k agreement (k = --topk highest-scoring
  anchors per image, the overlap fraction of the two sets, mean over images) and the max over
  images of |max score float - max score int8|; db: max and mean |dp| of the probability map;
- detection agreement of the decoded heads (int8 against float; a pair matches at IoU >= 0.5,
  same class, one to one, greedy — models/ssdlite-mobilenet-v2/evaluate.py's `compare`):
  precision = matched / int8 boxes, recall = matched / float boxes, at --score-threshold (0.5):
  * ssd-tf: evaluate.py's `decode` (TF anchors and box coder, sigmoid, per-class NMS at 0.6,
    max 100, boxes clipped after NMS) — the numpy reference of make_detect_reference.py;
  * ssd-mediapipe (BlazeFace short range, 128x128): MediaPipe SsdAnchorsCalculator anchors
    (num_layers 4, strides 8, 16, 16, 16, equal strides merged, offset 0.5, fixed 1x1 anchors:
    16x16x2 + 8x8x6 = 896), regressors xywh (+ 6 keypoints, unused) / 128 about the anchor
    centre, sigmoid of the classificators clipped to +-100, greedy NMS at IoU 0.3 (MediaPipe
    blends suppressed boxes instead; plain NMS here), max 100;
  * db (PP-OCR text detection, map [1, 1, H, W]): the map binarized at --db-thresh (0.3):
    mask IoU (sum of intersections / sum of unions over images) and the 8-connected
    components' bounding boxes (min side >= 3 px, PaddleOCR's min_size) matched at IoU 0.5;
  * none: SQNR only.
- Conv share: Conv nodes of the QDQ graph whose data input and weight both come from a
  DequantizeLinear (i.e. run in int8), of all Conv nodes (depthwise ones counted apart);
  ConvTranspose likewise when present;
- latency: 1 intra-op thread, median of --runs, float and int8 interleaved run by run (so that
  a load on the machine hits both alike), on the first held-out image.
"""

import argparse
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "models", "ssdlite-mobilenet-v2"))
from ort_int8 import Reader, session  # noqa: E402
import evaluate as ssd  # noqa: E402  (SSD decode / match / compare and the frame builders)

ref = ssd.ref  # tests/fixtures/make_detect_reference.py (NMS, IoU)


# ----------------------------------------------------------------------------- images

def load(folder, size, mean, std, bgr, layout):
    files = sorted(f for f in os.listdir(folder) if os.path.isfile(os.path.join(folder, f)))
    out = []
    for f in files:
        img = Image.open(os.path.join(folder, f)).convert("RGB")
        if img.size != size:
            img = img.resize(size, Image.BILINEAR)
        a = np.asarray(img, np.float32)
        if bgr:
            a = a[:, :, ::-1]
        a = (a * np.float32(1.0 / 255.0) - mean) / std
        a = a if layout == "nhwc" else a.transpose(2, 0, 1)
        out.append(np.ascontiguousarray(a[None], np.float32))
    return files, out


def make_ssd_eval(data, out):
    """evaluate.py's 130 images + 60 mosaics (300x300 RGB u8) as PNGs (lossless: the same pixels)."""
    ssd.fetch(data)
    imgs = ssd.images(data)
    frames = imgs + ssd.mosaics(imgs)
    if os.path.exists(out) and os.listdir(out):
        raise SystemExit(f"{out} exists and is not empty: give a new folder")
    os.makedirs(out, exist_ok=True)
    for i, (name, im) in enumerate(frames):
        safe = name.replace("[", "_").replace("]", "").replace("/", "_")
        Image.fromarray(im).save(os.path.join(out, f"{i:03d}_{os.path.splitext(safe)[0]}.png"))
    print(f"{out}: {len(frames)} frames ({len(imgs)} images + {len(frames) - len(imgs)} mosaics)")


# ----------------------------------------------------------------------------- model

def prepare(model, tmp, size, layout):
    """Fixes a dynamic input to batch 1 and --size; opset >= 13 (per-channel Q/DQ axes)."""
    m = onnx.load(model)
    inits = {i.name for i in m.graph.initializer}
    (inp,) = [i for i in m.graph.input if i.name not in inits]
    w, h = size
    dims = inp.type.tensor_type.shape.dim
    want = [1, h, w, dims[3].dim_value or 3] if layout == "nhwc" else [1, dims[1].dim_value or 3, h, w]
    changed = False
    for d, v in zip(dims, want):
        if d.dim_value != v:
            if d.dim_value:
                raise SystemExit(f"input {inp.name} is {[x.dim_value for x in dims]}, --size/--layout say {want}")
            d.ClearField("dim_param")
            d.dim_value = v
            changed = True
    opset = next(o.version for o in m.opset_import if o.domain in ("", "ai.onnx"))
    if opset < 13:
        m = onnx.version_converter.convert_version(m, 13)
        changed = True
    if not changed:
        return model, inp.name
    p = os.path.join(tmp, "fixed.onnx")
    onnx.save(m, p)
    return p, inp.name


def conv_share(path):
    m = onnx.load(path)
    producer = {o: n for n in m.graph.node for o in n.output}
    inits = {i.name: i for i in m.graph.initializer}
    res = {}
    for op in ("Conv", "ConvTranspose"):
        total = q = dw = dw_q = 0
        for n in m.graph.node:
            if n.op_type != op:
                continue
            total += 1
            group = next((a.i for a in n.attribute if a.name == "group"), 1)
            quant = all(x in producer and producer[x].op_type == "DequantizeLinear" for x in n.input[:2])
            q += quant
            if group > 1:
                w = producer.get(n.input[1])
                w = inits.get(w.input[0] if w is not None else n.input[1])
                if w is not None and w.dims[1] == 1:
                    dw += 1
                    dw_q += quant
        if total:
            res[op] = dict(total=total, int8=q, depthwise=dw, depthwise_int8=dw_q)
    res["QuantizeLinear"] = sum(n.op_type == "QuantizeLinear" for n in m.graph.node)
    res["DequantizeLinear"] = sum(n.op_type == "DequantizeLinear" for n in m.graph.node)
    return res


def float_dw_stem(path, input_name):
    """Names of the Conv nodes Kestrel's converter leaves float by default: depthwise ones
    (one input channel per group, group > 1) and the stem (a Conv on <= 4 channels of the
    graph input)."""
    m = onnx.load(path)
    inits = {i.name: i for i in m.graph.initializer}
    producer = {o: n for n in m.graph.node for o in n.output}

    def from_input(t):  # the graph input, through layout-only nodes (an NHWC model's Transpose)
        while t != input_name and t in producer and producer[t].op_type in ("Transpose", "Reshape", "Cast", "Identity"):
            t = producer[t].input[0]
        return t == input_name

    out = []
    for n in m.graph.node:
        if n.op_type != "Conv" or n.input[1] not in inits:
            continue
        w = inits[n.input[1]]
        group = next((x.i for x in n.attribute if x.name == "group"), 1)
        if (group > 1 and w.dims[1] == 1) or (w.dims[1] <= 4 and from_input(n.input[0])):
            assert n.name, "unnamed Conv"
            out.append(n.name)
    return out


def latency(f32, i8, name, x, runs):
    for _ in range(5):
        f32.run(None, {name: x})
        i8.run(None, {name: x})
    tf, ti = [], []
    for _ in range(runs):
        for sess, t in ((f32, tf), (i8, ti)):
            s = time.perf_counter()
            sess.run(None, {name: x})
            t.append((time.perf_counter() - s) * 1e3)
    return statistics.median(tf), statistics.median(ti)


# ----------------------------------------------------------------------------- decoders

def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x.astype(np.float64)))


def mediapipe_anchors(input_size=128, strides=(8, 16, 16, 16), per_layer=2, offset=0.5):
    """[N,2] (cy, cx): SsdAnchorsCalculator with fixed_anchor_size (every anchor 1x1), layers
    of equal stride merged into one grid (their anchors together per cell)."""
    out, i = [], 0
    while i < len(strides):
        j = i
        while j < len(strides) and strides[j] == strides[i]:
            j += 1
        fm = math.ceil(input_size / strides[i])
        for y in range(fm):
            for x in range(fm):
                out.extend([((y + offset) / fm, (x + offset) / fm)] * (per_layer * (j - i)))
        i = j
    return np.array(out, np.float64)


BLAZE_ANCHORS = mediapipe_anchors()


def blazeface_decode(reg, cls, thr, scale=128.0, iou=0.3, max_det=100):
    a = BLAZE_ANCHORS
    assert len(a) == len(reg), (len(a), reg.shape)
    r = reg.astype(np.float64)
    cx = r[:, 0] / scale + a[:, 1]
    cy = r[:, 1] / scale + a[:, 0]
    w = r[:, 2] / scale
    h = r[:, 3] / scale
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)
    scores = sigmoid(np.clip(cls[:, 0], -100, 100))
    cand = np.nonzero(scores > thr)[0]
    keep, _ = ref.nms_per_class(boxes[cand], scores[cand], np.ones(len(cand), int), iou, max_det)
    return [(1, float(scores[cand[k]]), np.clip(boxes[cand[k]], 0, 1)) for k in keep]


def ssd_tf_decode(rel, logits, thr):
    return ssd.decode(rel, logits, thr)[0]


def db_boxes(prob, thr):
    from skimage.measure import label, regionprops
    mask = prob > thr
    h, w = mask.shape
    out = []
    for r in regionprops(label(mask, connectivity=2)):
        y0, x0, y1, x1 = r.bbox
        if min(y1 - y0, x1 - x0) < 3:
            continue
        score = float(prob[r.coords[:, 0], r.coords[:, 1]].mean())
        out.append((1, score, np.array([x0 / w, y0 / h, x1 / w, y1 / h], np.float64)))
    return mask, out


def pick(names, shapes, last_dim_pred, prefer):
    for n in names:
        if n in prefer:
            return names.index(n)
    c = [i for i, s in enumerate(shapes) if last_dim_pred(s[-1])]
    if len(c) != 1:
        raise SystemExit(f"cannot tell the outputs apart: {list(zip(names, shapes))}")
    return c[0]


# ----------------------------------------------------------------------------- main

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", nargs="?")
    p.add_argument("calib", nargs="?", help="calibration images (Kestrel's --calib folder)")
    p.add_argument("eval", nargs="?", help="held-out images")
    p.add_argument("--decode", default="none", choices=["ssd-tf", "ssd-mediapipe", "db", "none"])
    p.add_argument("--size", default="224x224", help="WxH")
    p.add_argument("--mean", default="0")
    p.add_argument("--std", default="1")
    p.add_argument("--layout", default="nchw", choices=["nchw", "nhwc"])
    p.add_argument("--color", default="rgb", choices=["rgb", "bgr"])
    p.add_argument("--method", default="minmax", choices=["minmax", "entropy", "percentile"])
    p.add_argument("--entropy-bins", type=int, default=0,
                   help="with --method entropy: histogram bins (e.g. 2048); 0 = quantize_static's default "
                        "(128, which makes entropy give MinMax's ranges)")
    p.add_argument("--holdout", type=float, default=0.25,
                   help="fraction of CALIB (the last by name) Kestrel's converter holds out; 0: calibrate on all")
    p.add_argument("--float-dw-stem", action="store_true",
                   help="leave depthwise and stem convolutions float (Kestrel's int8 defaults), to compare at "
                        "equal coverage (nodes_to_exclude; the int8 session runs without onnxruntime's "
                        "WeightBiasQuantization optimizer, which would quantize them anyway)")
    p.add_argument("--score-threshold", type=float, default=0.5)
    p.add_argument("--db-thresh", type=float, default=0.3)
    p.add_argument("--topk", type=int, default=10)
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--json")
    p.add_argument("--keep", metavar="DIR", help="copy the pre-processed float and the QDQ int8 ONNX here")
    p.add_argument("--label", help="first column of the table row (default: the model file name)")
    p.add_argument("--make-ssd-eval", metavar="DIR",
                   help="write evaluate.py's 130 images + 60 mosaics to DIR as PNGs and exit")
    p.add_argument("--data", default="/tmp/kestrel-eval-data", help="evaluate.py's --data (wheels)")
    a = p.parse_args()
    if a.make_ssd_eval:
        make_ssd_eval(a.data, a.make_ssd_eval)
        return
    if not (a.model and a.calib and a.eval):
        p.error("MODEL CALIB EVAL are required")

    w, h = (int(v) for v in a.size.split("x"))
    mean = np.array([float(v) for v in a.mean.split(",")], np.float32)
    std = np.array([float(v) for v in a.std.split(",")], np.float32)
    bgr = a.color == "bgr"
    _, samples = load(a.calib, (w, h), mean, std, bgr, a.layout)
    n = len(samples)
    held_n = min(max(int(math.floor(n * a.holdout + 0.5)), 1), n - 1) if (a.holdout > 0 and n >= 2) else 0
    calib = samples[: n - held_n]
    eval_files, held = load(a.eval, (w, h), mean, std, bgr, a.layout)

    tmp = tempfile.mkdtemp(prefix="ort-int8-detect-")
    fixed, name = prepare(a.model, tmp, (w, h), a.layout)
    pre = os.path.join(tmp, "pre.onnx")
    q = os.path.join(tmp, "int8.onnx")
    try:
        import sympy  # noqa: F401  (onnxruntime's symbolic shape inference needs it)
        symbolic = True
    except ImportError:  # the input is fixed: ONNX shape inference is enough
        symbolic = False
    quant_pre_process(fixed, pre, skip_symbolic_shape=not symbolic)
    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile}[a.method]
    exclude = float_dw_stem(pre, name) if a.float_dw_stem else []
    if a.method == "entropy" and a.entropy_bins:
        # quantize_static passes no histogram size to its EntropyCalibrater, whose default
        # (num_bins 128 = num_quantized_bins 128) leaves one candidate threshold, the full range:
        # the same ranges as MinMax. --entropy-bins gives the histogram N bins (KL search over
        # 128 quantized bins, TensorRT's scheme), through quantize_static's own create_calibrator.
        qmod = sys.modules["onnxruntime.quantization.quantize"]  # the module (the package's `quantize` is a function)
        orig = qmod.create_calibrator

        def create_calibrator(*args, **kw):
            kw["extra_options"] = dict(kw.get("extra_options") or {}, num_bins=a.entropy_bins)
            return orig(*args, **kw)
        qmod.create_calibrator = create_calibrator
    t0 = time.perf_counter()
    quantize_static(pre, q, Reader(name, calib), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, calibrate_method=method,
                    nodes_to_exclude=exclude)
    # (no CalibMaxIntermediateOutputs: in onnxruntime 1.32 MinMaxCalibrater.collect_data drops
    # every full batch of that many samples unused, calibrating on the remainder only)
    t_quant = time.perf_counter() - t0
    f32 = session(fixed)
    if exclude:
        # onnxruntime's graph optimizer (WeightBiasQuantization, basic level) would quantize the
        # float weights of an excluded Conv that reads a DequantizeLinear output anyway (per
        # tensor, asymmetric: costly on depthwise kernels): off, so excluded means float.
        o = ort.SessionOptions()
        o.intra_op_num_threads = 1
        o.inter_op_num_threads = 1
        i8 = ort.InferenceSession(q, o, providers=["CPUExecutionProvider"],
                                  disabled_optimizers=["WeightBiasQuantization"])
    else:
        i8 = session(q)
    out_names = [o.name for o in f32.get_outputs()]
    assert out_names == [o.name for o in i8.get_outputs()]

    yf = [f32.run(None, {name: x}) for x in held]
    yq = [i8.run(None, {name: x}) for x in held]
    shapes = [list(o.shape) for o in yf[0]]
    method_txt = a.method + (f" ({a.entropy_bins} bins)" if a.method == "entropy" and a.entropy_bins else "")
    res = {"model": a.model, "onnxruntime": ort.__version__, "method": method_txt, "decode": a.decode,
           "calibration_images": len(calib), "calib_folder": a.calib, "calib_folder_images": n,
           "float_dw_stem": a.float_dw_stem, "eval_folder": a.eval, "eval_images": len(held), "quantize_s": round(t_quant, 1),
           "outputs": {}}
    for k, on in enumerate(out_names):
        f = np.concatenate([y[k].astype(np.float64).ravel() for y in yf])
        g = np.concatenate([y[k].astype(np.float64).ravel() for y in yq])
        noise = ((f - g) ** 2).sum()
        res["outputs"][on] = {"shape": shapes[k], "sqnr_db": float(10 * np.log10((f * f).sum() / noise)) if noise > 0 else 200.0,
                              "cosine": float((f * g).sum() / np.sqrt((f * f).sum() * (g * g).sum()))}

    thr = a.score_threshold
    dets_f = dets_q = None
    if a.decode in ("ssd-tf", "ssd-mediapipe"):
        if a.decode == "ssd-tf":
            bi = pick(out_names, shapes, lambda d: d == 4, ("box_encodings",))
            si = pick(out_names, shapes, lambda d: d != 4, ("class_logits",))
            score = lambda y: sigmoid(y[si][0][:, 1:]).max(axis=1)
            dec = lambda y: ssd_tf_decode(y[bi][0], y[si][0], thr)
        else:
            bi = pick(out_names, shapes, lambda d: d >= 4, ("regressors",))
            si = pick(out_names, shapes, lambda d: d == 1, ("classificators",))
            score = lambda y: sigmoid(np.clip(y[si][0][:, 0], -100, 100))
            dec = lambda y: blazeface_decode(y[bi][0], y[si][0], thr)
        kk = a.topk
        overlaps, dmax = [], []
        for y0, y1 in zip(yf, yq):
            s0, s1 = score(y0), score(y1)
            t0_, t1_ = set(np.argsort(-s0, kind="stable")[:kk]), set(np.argsort(-s1, kind="stable")[:kk])
            overlaps.append(len(t0_ & t1_) / kk)
            dmax.append(abs(float(s0.max() - s1.max())))
        res["scores"] = {"output": out_names[si], "topk": kk, "topk_overlap_mean": float(np.mean(overlaps)),
                         "topk_overlap_min": float(np.min(overlaps)), "max_score_abs_diff_max": float(np.max(dmax)),
                         "max_score_abs_diff_mean": float(np.mean(dmax))}
        dets_f = [dec(y) for y in yf]
        dets_q = [dec(y) for y in yq]
    elif a.decode == "db":
        (mi,) = [i for i, s in enumerate(shapes) if len(s) == 4 and s[1] == 1] or [0]
        inter = union = 0
        ious, dps, dets_f, dets_q = [], [], [], []
        for y0, y1 in zip(yf, yq):
            p0, p1 = y0[mi][0, 0], y1[mi][0, 0]
            dps.append(np.abs(p0.astype(np.float64) - p1))
            m0, d0 = db_boxes(p0, a.db_thresh)
            m1, d1 = db_boxes(p1, a.db_thresh)
            i_, u_ = int((m0 & m1).sum()), int((m0 | m1).sum())
            inter += i_
            union += u_
            ious.append(i_ / u_ if u_ else 1.0)
            dets_f.append(d0)
            dets_q.append(d1)
        res["scores"] = {"output": out_names[mi], "max_abs_dp": float(max(d.max() for d in dps)),
                         "mean_abs_dp": float(np.mean([d.mean() for d in dps]))}
        res["mask"] = {"threshold": a.db_thresh, "iou": inter / union if union else 1.0,
                       "iou_per_image_mean": float(np.mean(ious)), "iou_per_image_min": float(np.min(ious)),
                       "float_pixels": int(sum((y[mi][0, 0] > a.db_thresh).sum() for y in yf))}
    if dets_f is not None:
        st, misses = ssd.compare(dets_f, dets_q)
        res["detections"] = dict(st, score_threshold=thr if a.decode != "db" else a.db_thresh, match_iou=ssd.MATCH_IOU,
                                 images_differing=[eval_files[k] for k, _, _ in misses])
    res["conv"] = conv_share(q)
    res["conv_f32"] = conv_share(pre)
    tf, ti = latency(f32, i8, name, held[0], a.runs)
    res["latency_ms"] = {"f32": tf, "int8": ti, "ratio": ti / tf, "threads": 1, "runs": a.runs}

    c = res["conv"]["Conv"]
    conv_txt = f"{c['int8']}/{c['total']} (dw {c['depthwise_int8']}/{c['depthwise']})"
    if "ConvTranspose" in res["conv"]:
        ct = res["conv"]["ConvTranspose"]
        conv_txt += f" + ConvT {ct['int8']}/{ct['total']}"
    sq = ", ".join(f"{k} {v['sqnr_db']:.1f}" for k, v in res["outputs"].items())
    if a.decode in ("ssd-tf", "ssd-mediapipe"):
        s = res["scores"]
        score_txt = f"{100 * s['topk_overlap_mean']:.1f}% | {s['max_score_abs_diff_max']:.3f}"
    elif a.decode == "db":
        s = res["scores"]
        score_txt = f"mask IoU {res['mask']['iou']:.3f} | max/mean \\|Δp\\| {s['max_abs_dp']:.3f}/{s['mean_abs_dp']:.4f}"
    else:
        score_txt = "- | -"
    d = res.get("detections")
    det_txt = (f"{d['precision']:.3f} / {d['recall']:.3f} ({d['matched']} of {d['got']} int8, {d['ref']} float)"
               if d else "-")
    label = a.label or os.path.basename(a.model) + (" (dw+stem float)" if a.float_dw_stem else "")
    print(f"{label}: {len(calib)} calibration images ({a.calib}, {n} minus the last {held_n}), "
          f"{len(held)} held out ({a.eval}); onnxruntime {ort.__version__} QDQ per-channel {method_txt}; "
          f"quantize_static {t_quant:.0f} s")
    print(f"| model | method | SQNR dB per output | top-{a.topk} / db mask | max-score Δ / \\|Δp\\| "
          f"| P / R at IoU 0.5 | Conv int8 | f32 ms | int8 ms | int8/f32 |")
    print("| --- | --- | --- | ---: | ---: | --- | --- | ---: | ---: | ---: |")
    print(f"| {label} | {method_txt} | {sq} | {score_txt} | {det_txt} | {conv_txt} | {tf:.2f} | {ti:.2f} | {ti / tf:.2f} |")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(res, fh, indent=1)
    if a.keep:
        os.makedirs(a.keep, exist_ok=True)
        for f in ("pre.onnx", "int8.onnx"):
            shutil.copy(os.path.join(tmp, f), os.path.join(a.keep, f))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
