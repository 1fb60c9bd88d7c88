#!/usr/bin/env python3
"""A binary network with a float stem against its float twin, one thread, side by side.

    python3 benches/bnn_stem/compare.py [--rounds 7] [--runs 200] [--work DIR]
        [--quantize target/release/kestrel-quantize] [--kestrel target/release/kestrel]

Writes the model of `make_bnn_stem.py` (numpy + onnx), converts it twice with
`kestrel-quantize convert` (binary ops, and `--binary off`: tract's f32 ops), then times both
graphs with `kestrel bench --threads 1 --json`, alternating the two per round so that a load
change on the machine hits both. Prints each round's medians, the median of the per-round
ratios, and the binary graph's profile (where its time goes). Use release (or bench-profile)
binaries: a debug build's kernels carry checks that distort the figure.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def run(cmd):
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr}")
    return done.stdout


def bench(kestrel, graph, runs, profile=False):
    cmd = [kestrel, "bench", graph, "--threads", "1", "--runs", str(runs), "--json"]
    if not profile:
        cmd += ["--profile-runs", "0"]
    return json.loads(run(cmd))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--runs", type=int, default=200)
    p.add_argument("--work", help="folder for the model and graphs (default: a temporary one)")
    p.add_argument("--quantize", default=os.path.join(ROOT, "target/release/kestrel-quantize"))
    p.add_argument("--kestrel", default=os.path.join(ROOT, "target/release/kestrel"))
    a = p.parse_args()
    work = a.work or tempfile.mkdtemp(prefix="kestrel-bnn-stem-")
    os.makedirs(work, exist_ok=True)
    model = os.path.join(work, "bnn-stem.onnx")
    run([sys.executable, os.path.join(HERE, "make_bnn_stem.py"), model])
    graphs = {}
    for label, extra in (("binary", []), ("float", ["--binary", "off"])):
        graphs[label] = os.path.join(work, f"bnn-stem.{label}.nnef.tgz")
        run([a.quantize, "convert", model, "-o", graphs[label]] + extra)
    medians = {"binary": [], "float": []}
    ratios = []
    for r in range(a.rounds):
        m = {k: bench(a.kestrel, g, a.runs)["latency_ms"]["median"] for k, g in graphs.items()}
        for k in m:
            medians[k].append(m[k])
        ratios.append(m["float"] / m["binary"])
        print(f"round {r + 1}: float {m['float']:.3f} ms, binary {m['binary']:.3f} ms, {ratios[-1]:.1f}×")
    print(
        f"median: float {statistics.median(medians['float']):.3f} ms, "
        f"binary {statistics.median(medians['binary']):.3f} ms, "
        f"binary is {statistics.median(ratios):.1f}× faster (median of per-round ratios)"
    )
    profile = bench(a.kestrel, graphs["binary"], a.runs, profile=True)
    print("binary graph by op kind:")
    for op in profile["by_op"]:
        print(f"  {100 * op['share']:5.1f}%  {op['ms']:7.3f} ms  {op['op']}")


if __name__ == "__main__":
    main()
