"""Cost of the backend dispatch of ``rasterize`` on the CPU: ``backend="auto"`` (the default, which
checks the tensors' device) against ``backend="cpu"`` (straight to the Numba kernels), interleaved
in one process so that load from other processes hits both alike; medians of --reps runs.

    python benchmarks/backend_dispatch.py [--reps 40]

Writes benchmarks/results/backend_dispatch.json and prints a table.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, median, save, table
from gsgroup.render import rasterize
from rasterizer import make_scene


def one(s, backend, grad):
    args = {k: (s[k].clone().requires_grad_(grad) if k in ("means", "features") else s[k]) for k in s}
    t = time.perf_counter()
    out = rasterize(*[args[k] for k in ("means", "quats", "scales", "opacities", "features", "viewmat", "K")],
                    args["width"], args["height"], backend=backend)  # fmt: skip
    if grad:
        out.image.sum().backward()
    return time.perf_counter() - t


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=40)
    args = ap.parse_args(argv)
    rows = []
    for n, w, h in ((5000, 200, 150), (100_000, 512, 512)):
        s = make_scene(n, w, h, 3, seed=1)
        reps = args.reps if n < 50_000 else max(5, args.reps // 8)
        for grad in (False, True):
            times = {"auto": [], "cpu": []}
            for b in ("auto", "cpu"):
                one(s, b, grad)  # warm-up
            for _ in range(reps):
                for b in ("auto", "cpu"):
                    times[b].append(one(s, b, grad))
            a, c = median(times["auto"]) * 1e3, median(times["cpu"]) * 1e3
            rows.append(
                dict(n=n, size=f"{w}x{h}", pass_="fwd+bwd" if grad else "fwd", auto_ms=a, cpu_ms=c, ratio=a / c)
            )
    path = save("backend_dispatch", {"machine": machine(), "reps": args.reps, "rows": rows})
    print(table(rows, ["n", "size", "pass_", "auto_ms", "cpu_ms", "ratio"]))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
