#!/usr/bin/env python3
"""A float TFLite of an ONNX model, for LiteRT/XNNPACK to run beside Kestrel where the model
ships no .tflite of its own; checked against onnxruntime before it is written.

    python benches/peers/onnx_to_tflite.py MODEL.onnx --shape x=1,3,640,640 -o OUT.tflite \\
        [--check-input X.npy] [--tol 1e-3]
        # a Python with onnx2tf (pip install onnx2tf: it brings tensorflow, onnxsim, onnxruntime)

1. onnxsim fixes the input shape (`--shape`; onnx2tf keeps open dimensions open, which XNNPACK
   then refuses at run time) and folds the constants.
2. onnx2tf converts it (channels-last TensorFlow, float32 TFLite). onnx2tf downloads sample
   pictures from GitHub for its own accuracy check of image-shaped inputs; here that check gets
   seeded random pictures instead, so the conversion runs offline.
3. The TFLite (LiteRT interpreter with XNNPACK, as `arm-peers` runs it) and onnxruntime run the
   same input: `--check-input` (a .npy in the ONNX layout; use a real picture, random data
   leaves a detector's output near zero) or seeded random normal data. The largest absolute
   difference over the outputs must be at most `--tol`, else nothing is written (exit 1).
OUT is written through a temporary file and a rename: never half a file.
"""
import argparse
import os
import sys
import tempfile

import numpy as np


def parse_shape(text):
    name, _, dims = text.partition("=")
    if not name or not dims:
        raise argparse.ArgumentTypeError(f"--shape {text!r}: expected NAME=D0,D1,...")
    try:
        return name, [int(d) for d in dims.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shape {text!r}: dimensions must be integers")


def in_onnx_layout(y, want_shape):
    """`y` in the ONNX layout of `want_shape` (onnx2tf writes some 4-D outputs channels last),
    or None when neither layout has that shape."""
    if list(y.shape) == list(want_shape):
        return y
    if y.ndim == 4 and [y.shape[0], y.shape[3], y.shape[1], y.shape[2]] == list(want_shape):
        return y.transpose(0, 3, 1, 2)
    return None


def to_onnx_layout(y, want_shape):
    """[`in_onnx_layout`], exiting with a message when the shapes cannot match."""
    out = in_onnx_layout(y, want_shape)
    if out is None:
        raise SystemExit(f"TFLite output shape {list(y.shape)} does not match onnxruntime's {list(want_shape)}")
    return out


def to_onnx_layout_ok(y, want_shape):
    """Whether `y` has `want_shape` in either layout."""
    return in_onnx_layout(y, want_shape) is not None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("--shape", type=parse_shape, required=True, help="NAME=D0,D1,... of the input")
    ap.add_argument("-o", "--out", required=True)
    ap.add_argument("--check-input", help=".npy in the ONNX input's layout and shape")
    ap.add_argument("--tol", type=float, default=1e-3)
    a = ap.parse_args()

    import onnx
    import onnxruntime as ort
    import onnxsim
    import onnx2tf.onnx2tf as o2t
    import tensorflow as tf

    name, shape = a.shape
    if a.check_input:
        x = np.load(a.check_input).astype(np.float32)
        if list(x.shape) != shape:
            sys.exit(f"{a.check_input}: shape {list(x.shape)}, --shape says {shape}")
    else:
        x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)

    try:
        model = onnx.load(a.model)
    except Exception as e:
        sys.exit(f"{a.model}: not a readable ONNX model: {e}")
    if name not in [i.name for i in model.graph.input]:
        sys.exit(f"{a.model}: no input named {name!r}")
    fixed, ok = onnxsim.simplify(model, overwrite_input_shapes={name: shape})
    if not ok:
        sys.exit(f"{a.model}: onnxsim could not check the simplified model")

    with tempfile.TemporaryDirectory() as tmp:
        fixed_path = os.path.join(tmp, "model.onnx")
        onnx.save(fixed, fixed_path)
        rng = np.random.default_rng(0)
        o2t.download_test_image_data = lambda: rng.random((20, 128, 128, 3), dtype=np.float32)
        o2t.convert(input_onnx_file_path=fixed_path, output_folder_path=os.path.join(tmp, "tf"),
                    non_verbose=True)
        tfl = os.path.join(tmp, "tf", "model_float32.tflite")
        if not os.path.exists(tfl):
            sys.exit(f"{a.model}: onnx2tf wrote no float32 TFLite")

        sess = ort.InferenceSession(fixed_path, providers=["CPUExecutionProvider"])
        ref = sess.run(None, {name: x})
        it = tf.lite.Interpreter(model_path=tfl)
        (inp,) = it.get_input_details()
        xt = x.transpose(0, 2, 3, 1) if x.ndim == 4 and list(inp["shape"]) != shape else x
        it.resize_tensor_input(inp["index"], list(xt.shape))
        it.allocate_tensors()
        it.set_tensor(inp["index"], xt)
        it.invoke()
        outs = sorted(it.get_output_details(), key=lambda d: d["name"])
        if len(outs) != len(ref):
            sys.exit(f"TFLite has {len(outs)} outputs, onnxruntime {len(ref)}")
        worst = 0.0
        for r in ref:
            # onnx2tf keeps the output order but renames them: match by shape, then order.
            found = next(((d, y) for d in outs
                          if (y := in_onnx_layout(it.get_tensor(d["index"]), r.shape)) is not None), None)
            if found is None:
                sys.exit(f"no TFLite output has onnxruntime's shape {list(r.shape)}")
            d, y = found
            outs.remove(d)
            diff = float(np.abs(y - r).max())
            print(f"output {list(r.shape)}: max abs diff {diff:.3g} (values {r.min():.4g} .. {r.max():.4g})")
            worst = max(worst, diff)
        if worst > a.tol:
            sys.exit(f"TFLite differs from onnxruntime by {worst:.3g} > --tol {a.tol}: nothing written")

        tmp_out = a.out + ".tmp"
        with open(tfl, "rb") as src, open(tmp_out, "wb") as dst:
            dst.write(src.read())
        os.replace(tmp_out, a.out)
        print(f"wrote {a.out} ({os.path.getsize(a.out)} B; input {name} {xt.shape} channels "
              f"{'last' if xt is not x else 'as the ONNX'})")


if __name__ == "__main__":
    main()
