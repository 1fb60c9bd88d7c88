#!/usr/bin/env python3
"""Writes a QuickNet-shaped binary network with seeded random weights, as ONNX (numpy + onnx).

    python3 benches/icount/make_quicknet.py OUT.onnx

The shape of Larq's QuickNet-Small (Bannink et al., "Larq Compute Engine", 2021): a float
stem, four sections of binary residual blocks at 56², 28², 14² and 7² (64, 128, 256, 512
channels, four blocks each), float transitions between them, a float classifier. 224×224 RGB
input, PyTorch-export style (``Sign`` on activations and weights):

    stem:        Conv 3→16 3×3 s2 → BN → ReLU → Conv 16→64 3×3 s2 → BN          (56², 64)
    block:       x + BN(ReLU(binary Conv C→C 3×3 (Sign(x), Sign(W))))           × 4 per section
    transition:  MaxPool 2 → Conv C→2C 1×1 → BN                                 (between sections)
    head:        ReLU → GlobalAveragePool → Gemm 512→1000

Binary multiply-accumulates per inference: 16 blocks × 115.6 M = 1.85 G; float: stem 34 M,
transitions 19 M, classifier 0.5 M. The weights are random: this measures executed work, not
accuracy. `benches/icount/README.md` says how to count it.
"""

import os
import sys

import numpy as np
import onnx
from onnx import helper

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bnn_stem"))
from make_bnn_stem import Graph, finish  # noqa: E402  (shared with the bnn_stem network)

rng = np.random.default_rng(2021)


def make():
    g = Graph()
    nodes, inits, name, const = g.nodes, g.inits, g.name, g.const

    def node(op, ins, **attrs):
        y = name(op.lower())
        nodes.append(helper.make_node(op, ins, [y], name=y, **attrs))
        return y

    def bn(x, c):
        g, b = rng.uniform(0.5, 1.5, c), rng.normal(0, 0.5, c)
        m, v = rng.normal(0, 1.0, c), rng.uniform(0.5, 2.0, c)
        return node("BatchNormalization", [x] + [const("bn", a) for a in (g, b, m, v)])

    def conv(x, c_in, c_out, k, stride=1, binary=False):
        w = const("w", rng.normal(0, 1.0 if binary else 0.2, (c_out, c_in, k, k)))
        if binary:
            w = node("Sign", [w])
        p = (k - 1) // 2
        return node("Conv", [x, w], pads=[p] * 4, strides=[stride] * 2)

    x = node("Relu", [bn(conv("x", 3, 16, 3, 2), 16)])
    x = bn(conv(x, 16, 64, 3, 2), 64)
    c = 64
    for section in range(4):
        if section > 0:
            x = node("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])
            x = bn(conv(x, c, 2 * c, 1), 2 * c)
            c *= 2
        for _ in range(4):
            y = conv(node("Sign", [x]), c, c, 3, binary=True)
            x = node("Add", [x, bn(node("Relu", [y]), c)])
    x = node("GlobalAveragePool", [node("Relu", [x])])
    x = node("Flatten", [x], axis=1)
    w = const("w", rng.normal(0, 0.05, (1000, c)))
    b = const("b", rng.normal(0, 0.05, 1000))
    nodes.append(helper.make_node("Gemm", [x, w, b], ["logits"], name="classifier", transB=1))
    return finish(nodes, inits, "quicknet-shaped", [1, 3, 224, 224], [1, 1000])

if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    onnx.save(make(), sys.argv[1])
