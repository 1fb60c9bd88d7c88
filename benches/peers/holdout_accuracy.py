#!/usr/bin/env python3
"""Accuracy of Kestrel graphs on the converter's held-out images, as a board computes them.

    python3 benches/peers/holdout_accuracy.py MODEL.onnx CALIB_DIR GRAPH.nnef.tgz [GRAPH ...] \
        --kestrel K [--runner 'qemu-aarch64 -cpu cortex-a76 -L /usr/aarch64-linux-gnu'] \
        [--env KESTREL_KERNELS=generic-f16] --size 224x224 --mean .. --std .. [--holdout 0.25]

The held-out images are the converter's (`kestrel-quantize convert --int8 --holdout F`: the
last F of the files in name order), preprocessed as `ort_int8.py` does (RGB, bilinear resize,
/255, mean/std, NCHW). The float ONNX model runs in onnxruntime; each graph through `kestrel
infer` (an aarch64 build under `--runner`, or a host build with `--env` naming a kernel, e.g.
`KESTREL_KERNELS=generic-f16`: binary16 depthwise layers computed as a FEAT_FP16 core does).
Prints per graph the SQNR of the first output over all held-out images against the float
model, and the top-1 agreement (arg-max over the last axis).
"""

import argparse
import os
import shlex
import subprocess
import sys
import tempfile

import numpy as np
import onnxruntime as ort

sys.path.insert(0, os.path.dirname(__file__))
from ort_int8 import load  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("onnx")
    p.add_argument("calib")
    p.add_argument("graphs", nargs="+")
    p.add_argument("--kestrel", required=True, help="kestrel binary")
    p.add_argument("--runner", default="", help="command prefix, e.g. qemu-aarch64 -cpu ...")
    p.add_argument("--env", action="append", default=[], help="NAME=VALUE for kestrel")
    p.add_argument("--size", default="224x224")
    p.add_argument("--mean", default="0,0,0")
    p.add_argument("--std", default="1,1,1")
    p.add_argument("--bgr", action="store_true")
    p.add_argument("--holdout", type=float, default=0.25)
    a = p.parse_args()
    w, h = (int(v) for v in a.size.split("x"))
    mean = np.array([float(v) for v in a.mean.split(",")], np.float32)
    std = np.array([float(v) for v in a.std.split(",")], np.float32)
    images = load(a.calib, (w, h), mean, std, a.bgr)
    held = images[len(images) - max(2, int(round(len(images) * a.holdout))):]
    sess = ort.InferenceSession(a.onnx, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    ref = [sess.run(None, {name: x})[0] for x in held]
    env = dict(os.environ)
    env.update(kv.split("=", 1) for kv in a.env)
    runner = shlex.split(a.runner)
    with tempfile.TemporaryDirectory() as tmp:
        for graph in a.graphs:
            got = []
            for i, x in enumerate(held):
                inp, out = os.path.join(tmp, f"{i}.npy"), os.path.join(tmp, f"{i}.npz")
                np.save(inp, x)
                cmd = runner + [a.kestrel, "infer", graph, "--input", inp, "--output", out]
                subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
                with np.load(out) as z:
                    got.append(z[z.files[0]].reshape(ref[i].shape))
            r, g = np.concatenate([v.ravel() for v in ref]), np.concatenate([v.ravel() for v in got])
            sqnr = 10 * np.log10(np.sum(r.astype(np.float64) ** 2) / np.sum((r - g).astype(np.float64) ** 2))
            top1 = np.mean([np.argmax(x, -1).tolist() == np.argmax(y, -1).tolist()
                            for x, y in zip(ref, got)])
            print(f"{graph}: {len(held)} held-out images, SQNR {sqnr:.1f} dB, top-1 {100 * top1:.1f}%")


if __name__ == "__main__":
    main()
