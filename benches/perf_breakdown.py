#!/usr/bin/env python3
"""Where each proxy's CPU goes per request, from load.sh's PERF recordings.

    benches/perf_breakdown.py DIR

DIR holds perf-<target>-<path>-<round>.data (perf record -g at FREQ Hz,
frame-pointer builds) and perf-<target>-<path>-<round>.n (requests served
during that recording), as `PERF=DIR benches/load.sh` leaves them. Prints,
per path, CPU microseconds per request by category for bare Pingora and
Fixative, and the difference: the measured cause of the gap.

Categories, for each sample (call stack, innermost frame first):
  - "Fixative <hook>": the stack is inside one of Fixative's ProxyHttp hooks
    (everything under it: our code, Pingora's header calls, the allocator);
  - "Fixative response_body_filter": inside the body filter (the HTML
    rewriter, XMP insertion), which Pingora calls without a hook frame;
  - "Fixative connection guard", "Fixative, other": Fixative code outside
    the hooks, by the innermost frame (the guard's own work around the
    client socket; the access-log writer, background tasks);
  - "kernel: <call>": kernel time, by the C library call that entered it
    (send, recv, writev, epoll_wait, ...; scheduling at its exit included);
  - "allocator" (outside the hooks), "Pingora headers", "Pingora", "tokio",
    "other": the rest, by the innermost frame that belongs to one of them.
Sampling overhead inflates every figure alike (by 1.2-1.5x in our runs);
compare columns, not absolute values, with load.sh's cpu/req.
"""

import collections
import glob
import os
import re
import subprocess
import sys

FREQ = float(os.environ.get("PERF_FREQ", "999"))
HOOK = re.compile(r"FixativeProxy as pingora_proxy::proxy_trait::ProxyHttp>::(\w+)")
# The connection gate wraps every connection's whole life: not a cause.
GATE = re.compile(r"conn::Gate<.*>::process_new|conn::Gate<.*> as pingora_core::apps::ServerApp")
KERNEL_DSO = re.compile(r"kernel\.kallsyms|vmlinux|^\[kernel")
LIBC_PREFIX = re.compile(r"^(__GI_|__libc_|__)+")
BODY_FILTER = re.compile(r"fixative_proxy::bodies::filter")
ALLOC = re.compile(r"^(mi_|_mi_|malloc|free|realloc|calloc|__libc_malloc|cfree|__rust_alloc|__rust_dealloc)")
ORDER = [
    ("Pingora headers", re.compile(r"pingora_http::")),
    ("Pingora", re.compile(r"pingora")),
    ("tokio", re.compile(r"tokio::")),
]


def samples(path):
    """Yields each sample's frames as (symbol, dso), innermost first."""
    out = subprocess.run(
        ["perf", "script", "-i", path, "-F", "ip,sym,dso"],
        capture_output=True, text=True, errors="replace", check=False,
    ).stdout
    frames = []
    for line in out.splitlines():
        line = line.strip()
        if not line:
            if frames:
                yield frames
                frames = []
            continue
        m = re.match(r"^[0-9a-f]+\s+(.*?)\s+\((.*)\)$", line)
        if m:
            frames.append((m.group(1), m.group(2)))
        else:
            parts = line.split(None, 1)
            frames.append((parts[1] if len(parts) > 1 else "?", ""))
    if frames:
        yield frames


def category(frames):
    hooks = [HOOK.search(s) for s, _ in frames]
    hooks = [h.group(1) for h in hooks if h]
    if hooks:
        return f"Fixative {hooks[-1]}"  # the outermost hook
    if any(BODY_FILTER.search(s) for s, _ in frames):
        return "Fixative response_body_filter"
    leaf_sym, leaf_dso = frames[0]
    if KERNEL_DSO.search(leaf_dso):
        # Named by the C library call that entered the kernel (the kernel's
        # own entry frames are generic).
        for s, dso in frames:
            if not KERNEL_DSO.search(dso):
                if "libc" in dso:
                    return "kernel: " + LIBC_PREFIX.sub("", s).split("@")[0]
                break
        return "kernel: other (interrupts, scheduling)"
    if ALLOC.search(leaf_sym):
        return "allocator"
    # Otherwise the innermost frame of Fixative, Pingora or tokio decides
    # (the connection guard's frame wraps Pingora's socket reads and
    # writes: those are Pingora's and tokio's, as in bare Pingora).
    for s, _ in frames:
        if GATE.search(s):
            continue
        if "fixative" in s:
            return "Fixative connection guard" if "conn::Guarded" in s else "Fixative, other"
        for name, pat in ORDER:
            if pat.search(s):
                return name
    return "other"


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    runs = collections.defaultdict(lambda: collections.Counter())
    requests = collections.Counter()
    for data in sorted(glob.glob(os.path.join(sys.argv[1], "perf-*-*-*.data"))):
        m = re.match(r"perf-(bare|fixative)-(.+)-(\d+)\.data$", os.path.basename(data))
        nfile = data[: -len(".data")] + ".n"
        if not m or not os.path.exists(nfile):
            continue
        target, path = m.group(1), m.group(2)
        n = int(open(nfile).read().split()[0] or 0)
        if n <= 0:
            continue
        requests[(path, target)] += n
        for frames in samples(data):
            runs[(path, target)][category(frames)] += 1
    us = 1e6 / FREQ
    for path in dict.fromkeys(p for p, _ in runs):
        bare, fix = runs[(path, "bare")], runs[(path, "fixative")]
        nb, nf = requests[(path, "bare")] or 1, requests[(path, "fixative")] or 1
        rows = sorted(set(bare) | set(fix), key=lambda c: -(fix[c] / nf - bare[c] / nb))
        print(f"\nCPU per request by cause, /{path} (perf, {FREQ:.0f} Hz, call graphs; "
              f"{nb} bare and {nf} Fixative requests sampled)")
        print(f"{'cause':<44} {'bare us':>8} {'Fixative us':>12} {'difference':>11}")
        for c in rows:
            b, f = bare[c] * us / nb, fix[c] * us / nf
            print(f"{c:<44} {b:>8.2f} {f:>12.2f} {f - b:>+11.2f}")
        tb, tf = sum(bare.values()) * us / nb, sum(fix.values()) * us / nf
        print(f"{'total':<44} {tb:>8.2f} {tf:>12.2f} {tf - tb:>+11.2f}")


if __name__ == "__main__":
    main()
