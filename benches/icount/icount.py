#!/usr/bin/env python3
"""Count the aarch64 instructions a program executes under qemu-user, inside its marked windows.

    python3 benches/icount/icount.py [--cpu cortex-a72] [--top 15] [--filter REGEX] [--json FILE] \
        -- BINARY ARGS...

Builds the qemu plugin (kestrel_icount.c, next to this file) on first use, runs BINARY under
`qemu-aarch64 -plugin`, and prints the instructions executed inside the program's windows (for
`kestrel bench`: its timed runs, with KESTREL_ICOUNT_WINDOW=1 set for you), by function and by
mnemonic. Same figures as ../shared/tools/arm-icount, without its instruction log, so a whole
model can be counted: loading and optimising a MobileNet under qemu logged 28 GB there.

Functions come from the binary's symbol table (`aarch64-linux-gnu-nm`); a stripped binary still
gets exact totals and mnemonics, its functions show as "(stripped)". Code outside the binary
(libc's memcpy, ...) shows as "(shared libraries)".
"""
import argparse, bisect, collections, json, os, re, subprocess, sys, tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
PIE_BASE = 0x5500000000  # where qemu-aarch64 loads a position-independent main binary


def plugin():
    """The plugin's .so, rebuilt when the C file is newer."""
    src = os.path.join(HERE, "kestrel_icount.c")
    cache = os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "kestrel")
    os.makedirs(cache, exist_ok=True)
    so = os.path.join(cache, "kestrel_icount.so")
    if not os.path.exists(so) or os.path.getmtime(so) < os.path.getmtime(src):
        subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-o", so + ".tmp", src], check=True)
        os.replace(so + ".tmp", so)
    return so


def symbols(binary):
    out = subprocess.run(["aarch64-linux-gnu-nm", "-n", "-C", "--defined-only", binary],
                         capture_output=True, text=True)
    addrs, names = [], []
    for line in out.stdout.splitlines():
        parts = line.split(" ", 2)
        if len(parts) == 3 and parts[1] in "tTwW":
            addrs.append(int(parts[0], 16))
            names.append(parts[2])
    return addrs, names


def extent(binary):
    """(is PIE, highest address of the binary's loadable segments)."""
    with open(binary, "rb") as f:
        pie = f.read(18)[16] == 3
    out = subprocess.run(["aarch64-linux-gnu-readelf", "-lW", binary], capture_output=True,
                         text=True).stdout
    top = 0
    for line in out.splitlines():
        f = line.split()
        if f[:1] == ["LOAD"] and len(f) >= 6:
            top = max(top, int(f[2], 16) + int(f[5], 16))
    return pie, top


def short(name):
    """A demangled Rust name without its hash and generic noise, for the table."""
    name = re.sub(r"::h[0-9a-f]{16}$", "", name)
    return name if len(name) <= 110 else name[:107] + "..."


def count(cmd, cpu="cortex-a72", flt=None):
    """Runs `cmd` under qemu with the plugin; (window header, total, by function, by mnemonic)."""
    binary = cmd[0]
    pie, top = extent(binary)
    base = PIE_BASE if pie else 0
    addrs, names = symbols(binary)
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "blocks.txt")
        env = dict(os.environ, KESTREL_ICOUNT_WINDOW="1")
        run = subprocess.run(["qemu-aarch64", "-cpu", cpu, "-L", "/usr/aarch64-linux-gnu",
                              "-plugin", f"{plugin()},out={out}"] + list(cmd), env=env)
        if run.returncode != 0:
            sys.exit(f"icount: the program exited with {run.returncode}")
        header = ""
        funcs, mnems = collections.Counter(), collections.Counter()
        total = 0
        with open(out) as f:
            for line in f:
                if line.startswith("#"):
                    header = line[1:].strip()
                    continue
                vaddr, n, mn = line.split()
                vaddr, n, mn = int(vaddr, 16) - base, int(n), mn.split(",")
                if not 0 <= vaddr < top:
                    fn = "(shared libraries)"
                elif not addrs:
                    fn = "(stripped)"
                else:
                    i = bisect.bisect_right(addrs, vaddr) - 1
                    fn = short(names[i]) if i >= 0 else "(no symbol)"
                if flt and not flt.search(fn):
                    continue
                funcs[fn] += n * len(mn)
                total += n * len(mn)
                for m in mn:
                    mnems[m] += n
    return header, total, funcs, mnems


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpu", default="cortex-a72")
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--filter", help="count only functions whose name matches this regex")
    ap.add_argument("--json", help="also write the figures here")
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.cmd[1:] if a.cmd[:1] == ["--"] else a.cmd
    if not cmd:
        ap.error("give the binary to run after --")
    flt = re.compile(a.filter) if a.filter else None
    header, total, funcs, mnems = count(cmd, a.cpu, flt)
    print(f"icount: {header}; cpu {a.cpu}{'; filter ' + a.filter if flt else ''}")
    print(f"total executed instructions: {total}")
    print("by function:")
    for fn, n in funcs.most_common(a.top):
        print(f"  {n:>14} {100 * n / max(total, 1):5.1f}%  {fn}")
    print("by mnemonic:")
    for m, n in mnems.most_common(a.top):
        print(f"  {n:>14} {100 * n / max(total, 1):5.1f}%  {m}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"window": header, "cpu": a.cpu, "total": total,
                       "functions": dict(funcs), "mnemonics": dict(mnems)}, f, indent=1)


if __name__ == "__main__":
    main()
