#!/usr/bin/env python3
"""Executed aarch64 instructions per inference of several graphs, side by side, per CPU.

    python3 benches/icount/compare.py --kestrel AARCH64_KESTREL [--cpu cortex-a72,cortex-a76] \
        [--runs 3] [--top 8] [--json FILE] BASELINE.nnef.tgz OTHER.nnef.tgz ...

Runs `kestrel bench GRAPH --threads 1 --warmup 1 --runs R --profile-runs 0` under the icount
plugin (icount.py) for every graph and CPU, divides the window's count by R, and prints each
graph's instructions per inference and its ratio to the first graph (e.g. int8 vs f32), plus
the functions that execute the most. One inference is deterministic, so R = 1 is exact; more
runs only confirm it.
"""
import argparse, json, os, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from icount import count  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kestrel", required=True, help="an aarch64 kestrel binary")
    ap.add_argument("--cpu", default="cortex-a72,cortex-a76")
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--top", type=int, default=8)
    ap.add_argument("--json")
    ap.add_argument("graphs", nargs="+")
    a = ap.parse_args()
    results = {}
    for cpu in a.cpu.split(","):
        base = None
        print(f"== {cpu}")
        for g in a.graphs:
            cmd = [a.kestrel, "--threads", "1", "bench", g, "--warmup", "1",
                   "--runs", str(a.runs), "--profile-runs", "0"]
            _, total, funcs, mnems = count(cmd, cpu)
            per = total / a.runs
            base = base or per
            results.setdefault(cpu, {})[g] = {
                "per_inference": per,
                "ratio": per / base,
                "functions": {k: v / a.runs for k, v in funcs.most_common(40)},
                "mnemonics": {k: v / a.runs for k, v in mnems.most_common(40)},
            }
            print(f"{per / 1e6:10.1f} M instructions/inference  {per / base:5.2f}x  {g}")
            for fn, n in funcs.most_common(a.top):
                print(f"      {n / a.runs / 1e6:8.2f} M {100 * n / total:5.1f}%  {fn}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
