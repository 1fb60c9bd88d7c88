#!/usr/bin/env python3
"""Writes the seed corpora kept in git (fuzz/corpus/<target>/seed-*), from the repo's own files.

    python3 fuzz/seeds.py        # from the repository root or from fuzz/

nnef_load and nnef_parse seeds are in the targets''s entry format ([name len u8][name][len u32 LE][data]):
the shipped mnist-bnn graph (tract ops + every Kestrel binary op), a tiny hand-made graph
with Kestrel's binary ops on a 1x8x4x4 input (small enough to mutate fast; also written as
fuzz/tiny-binary.nnef.tgz for checking it loads: `kestrel info fuzz/tiny-binary.nnef.tgz`),
and one with two `kestrel_int8_linear` (i8 between them, channels-last output;
fuzz/tiny-int8.nnef.tgz).
"""
import io
import os
import struct
import tarfile

import numpy as np

FUZZ = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(FUZZ)


def out(target, name, data):
    d = os.path.join(FUZZ, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def entries(files):
    b = b""
    for name, data in files:
        n = name.encode()
        b += bytes([len(n)]) + n + struct.pack("<I", len(data)) + data
    return b


def dat(array):
    """tract's NNEF .dat: 128-byte header, then the data (little endian)."""
    a = np.ascontiguousarray(array)
    kind = {"f": 0, "u": 1, "i": 4}[a.dtype.kind]
    header = struct.pack("<2sBBII", b"\x4e\xef", 1, 0, a.nbytes, a.ndim)
    header += struct.pack("<8I", *(list(a.shape) + [0] * (8 - a.ndim)))
    header += struct.pack("<IHH", a.dtype.itemsize * 8, kind, 0)
    header += b"\0" * (128 - len(header))
    return header + a.tobytes()


TINY_GRAPH = """version 1.0;

extension tract_registry kestrel;
extension tract_registry tract_core;

graph network(x) -> (y) {
  x = external(shape = [1, 8, 4, 4]);
  p = kestrel_bitpack(x);
  m = kestrel_binary_max_pool(p, kernel = [2, 2], stride = [1, 1], padding = [0, 0, 1, 1]);
  w = variable<scalar>(label = "w", shape = [4, 3, 3, 1]);
  wm = variable<scalar>(label = "wm", shape = [4]);
  wb = variable<scalar>(label = "wb", shape = [4]);
  c = kestrel_binary_conv2d(m, w, wm, wb, c_in = 8, stride = [1, 1], dilation = [1, 1], padding = [1, 1, 1, 1], pad_mode = "zero", output = "packed");
  d = variable<scalar>(label = "d", shape = [3, 16]);
  dm = variable<scalar>(label = "dm", shape = [3]);
  db = variable<scalar>(label = "db", shape = [3]);
  y = kestrel_binary_dense(c, d, dm, db, k = 64, output = "float");
}
"""


TINY_INT8_GRAPH = """version 1.0;

extension tract_registry kestrel;

graph network(x) -> (y) {
  x = external(shape = [1, 8, 4, 4]);
  w = variable<scalar>(label = "w", shape = [6, 8]);
  b = variable<scalar>(label = "b", shape = [6]);
  s = variable<scalar>(label = "s", shape = [6]);
  h = kestrel_int8_linear(x, w, b, s, axis = 1, input_zero_point = -3, input_scale = 0.05, low = 0.0, high = 6.0, output = "int8", output_zero_point = -128, output_scale = 0.025);
  w2 = variable<scalar>(label = "w2", shape = [4, 6]);
  b2 = variable<scalar>(label = "b2", shape = [4]);
  s2 = variable<scalar>(label = "s2", shape = [4]);
  y = kestrel_int8_linear(h, w2, b2, s2, axis = 1, output_axis = 3, input_zero_point = -128, input_scale = 0.025, low = -100.0, high = 100.0, output = "float");
}
"""


def tiny_int8_files():
    rng = np.random.default_rng(1)
    return [
        ("graph.nnef", TINY_INT8_GRAPH.encode()),
        ("w.dat", dat(rng.integers(-127, 128, (6, 8)).astype(np.int8))),
        ("b.dat", dat(rng.integers(-500, 500, 6).astype(np.int32))),
        ("s.dat", dat(np.full(6, 1e-3, np.float32))),
        ("w2.dat", dat(rng.integers(-127, 128, (4, 6)).astype(np.int8))),
        ("b2.dat", dat(rng.integers(-500, 500, 4).astype(np.int32))),
        ("s2.dat", dat(np.full(4, 2e-3, np.float32))),
    ]


def tiny_files():
    rng = np.random.default_rng(0)
    return [
        ("graph.nnef", TINY_GRAPH.encode()),
        ("w.dat", dat(rng.integers(0, 256, (4, 3, 3, 1)).astype(np.uint64))),
        ("wm.dat", dat(np.ones(4, np.float32))),
        ("wb.dat", dat(np.zeros(4, np.float32))),
        ("d.dat", dat(rng.integers(0, 16, (3, 16)).astype(np.uint64))),
        ("dm.dat", dat(np.full(3, 0.5, np.float32))),
        ("db.dat", dat(np.arange(3, dtype=np.float32))),
    ]


def tgz_files(path):
    with tarfile.open(path) as t:
        return [(m.name, t.extractfile(m).read()) for m in t.getmembers() if m.isfile()]


def main():
    for name, files in [("tiny-binary", tiny_files()), ("tiny-int8", tiny_int8_files())]:
        for target in ["nnef_load", "nnef_parse"]:
            out(target, name, entries(files))
        with tarfile.open(os.path.join(FUZZ, name + ".nnef.tgz"), "w:gz") as t:
            for member, data in files:
                info = tarfile.TarInfo(member)
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
    mnist = entries(tgz_files(os.path.join(REPO, "models/mnist-bnn/mnist-bnn.nnef.tgz")))
    for target in ["nnef_load", "nnef_parse"]:
        out(target, "mnist-bnn", mnist)

    for name in ["bnn-bad-bipolar", "bnn-sign-input", "int8-collapse", "tiny-fire"]:
        with open(os.path.join(REPO, "tests/fixtures/onnx", name + ".onnx"), "rb") as f:
            out("onnx_load", name, f.read())

    buf = io.BytesIO()
    np.save(buf, np.arange(12, dtype=np.float32).reshape(1, 3, 2, 2))
    out("npy_read", "f32", buf.getvalue())
    buf = io.BytesIO()
    np.save(buf, np.array([[1, -2], [3, 4]], dtype=">i8"))
    out("npy_read", "i64-be", buf.getvalue())
    buf = io.BytesIO()
    np.savez(buf, x=np.zeros((2, 2), np.uint8), y=np.array([True, False]))
    out("npy_read", "npz", buf.getvalue())
    buf = io.BytesIO()
    np.savez_compressed(buf, x=np.ones((3, 3), np.float64))
    out("npy_read", "npz-deflate", buf.getvalue())

    # frame_decode: [format index][width][height][pixels]; formats in PixelFormat::ALL order:
    # i420, nv12, yuyv, rgb24, gray, mjpeg.
    w, h = 6, 4
    out("frame_decode", "i420", bytes([0, w, h]) + bytes(range(w * h + 2 * 3 * 2)))
    out("frame_decode", "nv12", bytes([1, w, h]) + bytes(range(w * h + 3 * 2 * 2)))
    out("frame_decode", "yuyv", bytes([2, w, h]) + bytes(range(w * h * 2)))
    out("frame_decode", "yuyv-odd", bytes([2, 5, 3]) + bytes(range(3 * 3 * 4)))
    from PIL import Image
    for name, mode in [("mjpeg", "RGB"), ("mjpeg-gray", "L")]:
        img = Image.new(mode, (16, 8), "red" if mode == "RGB" else 128)
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=50)
        out("frame_decode", name, bytes([5, 16, 8]) + buf.getvalue())
    config_seeds()
    sidecar_seeds()


def sidecar_seeds():
    """The shipped sidecars (an SSD with generated anchors, a classifier), a YOLO head and an SSD
    head with listed anchor grids."""
    for name, path in [("ssd-generated", "models/ssdlite-mobilenet-v2/ssdlite-mobilenet-v2.kestrel.toml"),
                       ("classify", "models/ppocr-cls/ppocr-cls.kestrel.toml")]:
        with open(os.path.join(REPO, path), "rb") as f:
            out("sidecar_parse", name, f.read())
    out("sidecar_parse", "yolo", b'task = "detect"\nlabels = ["a", "b", "c"]\n[detect]\nhead = "yolo"\n'
        b'version = 8\ncoords = "pixels"\nscore_threshold = 0.25\n')
    out("sidecar_parse", "ssd-grid", b'task = "detect"\n[detect]\nhead = "ssd"\nbox_order = "xywh"\n'
        b'exp_box_size = false\n[[detect.anchor_layers]]\nfeature_map = [2, 3]\n'
        b'sizes = [[0.1, 0.1], [0.2, 0.1]]\n')


def config_seeds():
    """The example of runtime/src/config.rs's module doc, a minimal file and a bad one."""
    import re
    with open(os.path.join(REPO, "runtime/src/config.rs")) as f:
        doc = re.search(r"//! ```toml\n(.*?)//! ```", f.read(), re.S).group(1)
    full = "".join(l[4:] + "\n" if l.startswith("//! ") else "\n" for l in doc.splitlines())
    out("config_parse", "full", full.encode())
    out("config_parse", "minimal", b'source = "synthetic"\nfps = 0\nframes = 10\n')
    out("config_parse", "bad", b'fps = "fast"\nsize = "640"\nmean = [1, 2]\n[extra]\nx = 1\n')


if __name__ == "__main__":
    main()
