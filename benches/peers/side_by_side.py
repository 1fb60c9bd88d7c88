#!/usr/bin/env python3
"""Kestrel beside onnxruntime (and LiteRT/XNNPACK where a .tflite is given) on one model, in one go:
aarch64 instructions per inference on a Cortex-A72 and A76 (qemu, `../shared/tools/arm-peers`) and
x86 latency, one thread, runs alternated between the engines.

    python3 benches/peers/side_by_side.py MODEL.onnx --family NAME --calib DIR \\
        --kestrel-aarch64 K [--input-shape x=1,3,224,224] [--size 224x224] [--mean M --std S] \\
        [--tflite F32.tflite,INT8.tflite] [--out DIR] [--rounds 3] [--readme benches/README.md] \
        [--quantize KESTREL_QUANTIZE] [--kestrel KESTREL]

1. `kestrel-quantize convert` (the release build, `cargo build --release -p kestrel-quantize`):
   DIR/NAME.f32.nnef.tgz, and DIR/NAME.int8.nnef.tgz (`--int8 --calib DIR`, the defaults).
2. onnxruntime's int8 of the same model on the same images (`ort_int8.py --save`, QDQ,
   per-channel, minmax): DIR/NAME.int8.onnx; its SQNR and top-1 against float are printed.
3. `arm-peers compare --kestrel K --kestrel-graphs …` (its standard set plus these models): the
   ARM table. K is an aarch64 `kestrel` built as arm-peers' README says (symbols kept).
4. x86: `kestrel bench G --threads 1 --json` (release build) and `arm-peers latency --engine ort`
   alternated for `--rounds` rounds; the median of each engine's per-round medians.
With `--readme FILE` the two tables replace the block between `<!-- peers:NAME -->` and
`<!-- /peers:NAME -->` in FILE (appended at the end when the markers are absent).
"""
import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ARM_PEERS = os.path.join(REPO, "..", "shared", "tools", "arm-peers", "arm-peers")


def run(cmd, **kw):
    """`cmd`'s standard output; on failure its standard error's tail and a one-line reason."""
    print("+ " + " ".join(cmd), file=sys.stderr)
    done = subprocess.run(cmd, text=True, capture_output=True, **kw)
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-4000:])
        sys.exit(f"side_by_side: {' '.join(cmd[:2])} ... failed with exit status {done.returncode}")
    return done.stdout


def ort_latency_ms(text):
    """Median ms per model from `arm-peers latency` lines, keyed by model path."""
    out = {}
    for line in text.splitlines():
        m = re.match(r"ort \S+ median ([0-9.]+) ms .*\)\s+(\S+)$", line.strip())
        if m:
            out[m.group(2)] = float(m.group(1))
    return out


def last_table(text):
    """The last markdown table (consecutive lines starting with '|') in `text`."""
    tables, cur = [], []
    for line in text.splitlines():
        if line.startswith("|"):
            cur.append(line)
        elif cur:
            tables.append(cur)
            cur = []
    if cur:
        tables.append(cur)
    return "\n".join(tables[-1]) if tables else ""


def replace_block(text, family, block):
    """`text` with the block between the family's markers replaced (or appended)."""
    start, end = f"<!-- peers:{family} -->", f"<!-- /peers:{family} -->"
    new = f"{start}\n{block.rstrip()}\n{end}"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        return head + new + rest.split(end, 1)[1]
    return text.rstrip("\n") + "\n\n" + new + "\n"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model")
    p.add_argument("--family", required=True)
    p.add_argument("--calib", required=True)
    p.add_argument("--kestrel-aarch64", required=True)
    p.add_argument("--input-shape")
    p.add_argument("--size", default="224x224")
    p.add_argument("--mean", default="0")
    p.add_argument("--std", default="1")
    p.add_argument("--tflite", default="")
    p.add_argument("--out", default="/tmp/kestrel-peers")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--readme")
    p.add_argument("--quantize", help="kestrel-quantize binary (default: the release build)")
    p.add_argument("--kestrel", help="x86 kestrel binary (default: the release build)")
    a = p.parse_args()
    os.makedirs(a.out, exist_ok=True)
    q = a.quantize or os.path.join(REPO, "target", "release", "kestrel-quantize")
    k = a.kestrel or os.path.join(REPO, "target", "release", "kestrel")
    for b in (q, k):
        if not os.path.exists(b):
            sys.exit(f"side_by_side: {b} missing: cargo build --release -p kestrel-quantize -p kestrel-runtime")
    f32_onnx = os.path.join(a.out, f"{a.family}.f32.onnx")
    shutil.copyfile(a.model, f32_onnx)
    g = {prec: os.path.join(a.out, f"{a.family}.{prec}.nnef.tgz") for prec in ("f32", "int8")}
    shape = ["--input-shape", a.input_shape] if a.input_shape else []
    run([q, "convert", a.model, "-o", g["f32"], *shape])
    pre = ["--mean", a.mean, "--std", a.std]
    run([q, "convert", a.model, "-o", g["int8"], *shape, "--int8", "--calib", a.calib, *pre])
    int8_onnx = os.path.join(a.out, f"{a.family}.int8.onnx")
    print(run([sys.executable, os.path.join(REPO, "benches", "peers", "ort_int8.py"), a.model, a.calib,
               "--size", a.size, *pre, "--save", int8_onnx]))
    tflites = [t for t in a.tflite.split(",") if t]
    arm = run([ARM_PEERS, "compare", "--kestrel", a.kestrel_aarch64, "--kestrel-graphs",
               f"{g['f32']},{g['int8']}", "--json", os.path.join(a.out, "arm.jsonl"),
               f32_onnx, int8_onnx, *tflites])
    arm_table = last_table(arm)
    kestrel_ms = {prec: [] for prec in g}
    ort_ms = {f32_onnx: [], int8_onnx: []}
    for _ in range(a.rounds):
        for prec, graph in g.items():
            out = run([k, "bench", graph, "--threads", "1", "--runs", "50", "--profile-runs", "0", "--json"])
            kestrel_ms[prec].append(json.loads(out)["latency_ms"]["median"])
        lat = ort_latency_ms(run([ARM_PEERS, "latency", "--engine", "ort", f32_onnx, int8_onnx]))
        for m in ort_ms:
            ort_ms[m].append(lat[m])
    med = statistics.median
    x86 = "\n".join([
        "| engine (x86, 1 thread, median ms) | f32 | int8 |",
        "| --- | ---: | ---: |",
        f"| Kestrel | {med(kestrel_ms['f32']):.2f} | {med(kestrel_ms['int8']):.2f} |",
        f"| onnxruntime | {med(ort_ms[f32_onnx]):.2f} | {med(ort_ms[int8_onnx]):.2f} |",
    ])
    block = f"{a.family}, aarch64 instructions (arm-peers, qemu):\n\n{arm_table}\n\n{a.family}, x86 latency ({a.rounds} alternated rounds):\n\n{x86}\n"
    print(block)
    if a.readme:
        with open(a.readme) as f:
            text = f.read()
        with open(a.readme + ".tmp", "w") as f:
            f.write(replace_block(text, a.family, block))
        os.replace(a.readme + ".tmp", a.readme)


if __name__ == "__main__":
    main()
