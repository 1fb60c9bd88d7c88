#!/usr/bin/env python3
"""Self-test of icount.py + the qemu plugin: a C loop of known length inside a window.

The loop body is 6 instructions (ldr, add, str, add, cmp, b.ne) at -O1; 1000 iterations in the
window and 10^6 outside it, so a count near 6000 proves the window works and the per-block
counters are exact. Run by .ci/run; needs cc, aarch64-linux-gnu-gcc and qemu-user.
"""
import json, os, subprocess, sys, tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
PROGRAM = r"""
#include <sys/prctl.h>
volatile long s;
int main(void) {
    for (long i = 0; i < 1000000; i++) s += i;
    prctl(0x4B49434E, 1, 0, 0, 0);
    for (long i = 0; i < 1000; i++) s += i;
    prctl(0x4B49434E, 2, 0, 0, 0);
    for (long i = 0; i < 1000000; i++) s += i;
    return 0;
}
"""

with tempfile.TemporaryDirectory() as tmp:
    src, exe, js = (os.path.join(tmp, n) for n in ("loop.c", "loop", "out.json"))
    with open(src, "w") as f:
        f.write(PROGRAM)
    subprocess.run(["aarch64-linux-gnu-gcc", "-O1", "-o", exe, src], check=True)
    subprocess.run([sys.executable, os.path.join(HERE, "icount.py"), "--json", js, "--", exe],
                   check=True, stdout=subprocess.DEVNULL)
    with open(js) as f:
        got = json.load(f)
    main = got["functions"].get("main", 0)
    assert got["window"].startswith("kestrel_icount windows=1"), got["window"]
    # 6 per iteration, plus the few instructions around the prctl calls; nothing of the
    # 2·10^6 iterations outside the window.
    assert 6000 <= main <= 6100, f"main executed {main} instructions in the window"
    assert got["mnemonics"]["cmp"] == 1000, got["mnemonics"]
    print(f"icount self-test ok: {main} instructions in main inside the window")
