#!/usr/bin/env python3
"""Measures a converted MNIST graph's accuracy on the t10k set with `kestrel infer`.

    cargo build --release -p kestrel-runtime -p kestrel-quantize
    target/release/kestrel-quantize convert models/mnist-bnn/mnist-bnn.onnx -o models/mnist-bnn/mnist-bnn.nnef.tgz
    python3 models/mnist-bnn/evaluate.py models/mnist-bnn/mnist-bnn.nnef.tgz [--kestrel target/release/kestrel]

Writes the 10 000 test images, pre-processed as the model expects ((pixel/255 − 0.1307)/0.3081,
`[N, 1, 28, 28]` f32), to a temporary `.npy`, runs `kestrel infer` on it (the runtime slices
the batch and runs every image), and compares the arg-max of the logits with the labels.
"""

import argparse
import gzip
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
MNIST = os.path.join(HERE, "..", "..", "tests", "fixtures", "mnist")


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("graph")
    ap.add_argument("--kestrel", default=os.path.join(HERE, "..", "..", "target", "release", "kestrel"))
    args = ap.parse_args()
    images = read_idx(os.path.join(MNIST, "t10k-images-idx3-ubyte.gz"))
    labels = read_idx(os.path.join(MNIST, "t10k-labels-idx1-ubyte.gz"))
    x = ((images.astype(np.float32) / 255.0 - 0.1307) / 0.3081)[:, None]
    with tempfile.TemporaryDirectory() as tmp:
        inp, out = os.path.join(tmp, "t10k.npy"), os.path.join(tmp, "logits.npz")
        np.save(inp, x)
        t0 = time.time()
        subprocess.run([args.kestrel, "infer", args.graph, "--input", inp, "--output", out], check=True, stdout=subprocess.DEVNULL)
        seconds = time.time() - t0
        logits = np.load(out)["logits"]
    accuracy = (logits.argmax(1) == labels).mean() * 100
    print(f"t10k accuracy (kestrel): {accuracy:.2f}% on {len(labels)} images ({seconds:.1f} s for the whole set)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
