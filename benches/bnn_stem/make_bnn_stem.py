#!/usr/bin/env python3
"""Writes a binary network with a float stem, seeded random weights, as ONNX (numpy + onnx).

    python3 benches/bnn_stem/make_bnn_stem.py OUT.onnx

The shape of a small binary image classifier (32×32 RGB input, CIFAR-like), PyTorch-export
style (``Sign`` on activations and weights, BatchNorm between):

    Conv 3→64 3×3 (float stem) → BN → Sign
    → binary Conv 64→64 3×3 → BN → Sign → binary Conv 64→64 3×3 → BN → Sign → MaxPool 2
    → binary Conv 64→128 3×3 → BN → Sign → binary Conv 128→128 3×3 → BN → Sign → MaxPool 2
    → Flatten (8192) → binary Gemm 8192→256 → BN → Sign → float Gemm 256→10

Float multiply-accumulates per inference: stem 1.8 M, binary convs 132 M, dense 2.1 M,
classifier 2.6 k. `compare.py` beside this file converts it both ways and times them.
"""

import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

rng = np.random.default_rng(2026)


def f32(a):
    return np.asarray(a, dtype=np.float32)


def bn_params(c):
    gamma = rng.uniform(0.5, 1.5, c)
    beta = rng.normal(0, 0.5, c)
    mean = rng.normal(0, 1.0, c)
    var = rng.uniform(0.5, 2.0, c)
    return [f32(v) for v in (gamma, beta, mean, var)]


class Graph:
    """Nodes and initializers under construction, with numbered names."""

    def __init__(self):
        self.nodes, self.inits, self.count = [], [], 0

    def name(self, prefix):
        self.count += 1
        return f"{prefix}{self.count}"

    def const(self, prefix, arr):
        n = self.name(prefix)
        self.inits.append(numpy_helper.from_array(f32(arr), n))
        return n


def make():
    g = Graph()
    nodes, inits, name, const = g.nodes, g.inits, g.name, g.const

    def bn_sign(x, c):
        g, b, m, v = bn_params(c)
        ins = [x] + [const(p, a) for p, a in (("bn_g", g), ("bn_b", b), ("bn_m", m), ("bn_v", v))]
        y = name("bn")
        nodes.append(helper.make_node("BatchNormalization", ins, [y], name=y))
        s = name("sign")
        nodes.append(helper.make_node("Sign", [y], [s], name=s))
        return s

    def conv(x, c_in, c_out, binary):
        w = const("w", rng.normal(0, 0.3 if not binary else 1.0, (c_out, c_in, 3, 3)))
        if binary:
            wb = name("sign_w")
            nodes.append(helper.make_node("Sign", [w], [wb], name=wb))
            w = wb
        y = name("conv")
        nodes.append(helper.make_node("Conv", [x, w], [y], name=y, pads=[1, 1, 1, 1]))
        return y

    def pool(x):
        y = name("pool")
        nodes.append(helper.make_node("MaxPool", [x], [y], name=y, kernel_shape=[2, 2], strides=[2, 2]))
        return y

    x = bn_sign(conv("x", 3, 64, False), 64)
    x = bn_sign(conv(x, 64, 64, True), 64)
    x = pool(bn_sign(conv(x, 64, 64, True), 64))
    x = bn_sign(conv(x, 64, 128, True), 128)
    x = pool(bn_sign(conv(x, 128, 128, True), 128))
    flat = name("flatten")
    nodes.append(helper.make_node("Flatten", [x], [flat], name=flat, axis=1))
    w = const("w", rng.normal(0, 1.0, (256, 128 * 8 * 8)))
    wb = name("sign_w")
    nodes.append(helper.make_node("Sign", [w], [wb], name=wb))
    d = name("dense")
    nodes.append(helper.make_node("Gemm", [flat, wb], [d], name=d, transB=1))
    x = bn_sign(d, 256)
    w = const("w", rng.normal(0, 0.1, (10, 256)))
    b = const("b", rng.normal(0, 0.1, 10))
    nodes.append(helper.make_node("Gemm", [x, w, b], ["logits"], name="classifier", transB=1))
    return finish(nodes, inits, "bnn-stem", [1, 3, 32, 32], [1, 10])


def finish(nodes, inits, name, x_shape, logits_shape):
    """The checked ONNX model of a graph from input `x` to output `logits` (opset 13)."""
    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, logits_shape)],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="kestrel-benches")
    onnx.checker.check_model(model)
    return model

if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    onnx.save(make(), sys.argv[1])
