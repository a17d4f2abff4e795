"""Benchmark of the CPU Gaussian rasterizer (gsgroup.render.rasterize).

Times forward and forward+backward (median of --reps runs after warm-up) on random
Gaussians in the view frustum whose 2D standard deviations are log-uniform in
[0.5, 4] px at 512x512 (radii ~3-13 px; 100k Gaussians cover a 512^2 image several layers
deep), plus small trainer-sized scenes and a speed-up against the dense PyTorch reference.

    python benchmarks/rasterizer.py            # full table (a few minutes)
    python benchmarks/rasterizer.py --quick    # small subset

Writes benchmarks/results/rasterizer.json (atomically) and prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numba
import numpy as np
import torch

from gsgroup.fileio import write_json
from gsgroup.render import rasterize

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent / "tests"))


def make_scene(n, width, height, d, seed=0, sigma_width=512):
    """n random Gaussians in the frustum of a camera at the origin (fov ~ 59 deg); world scales
    are drawn so that 2D sigmas are log-uniform in [0.5, 4] px at a ``sigma_width``-px-wide image."""
    rng = np.random.default_rng(seed)
    fx = 0.9 * width
    z = rng.uniform(2.0, 6.0, n)
    u = rng.uniform(-0.05, 1.05, n) * width
    v = rng.uniform(-0.05, 1.05, n) * height
    means = np.stack([(u - width / 2) / fx * z, (v - height / 2) / fx * z, z], 1)
    sigma_px = np.exp(rng.uniform(np.log(0.5), np.log(4.0), n))
    scales = (sigma_px * z / (0.9 * sigma_width))[:, None] * np.exp(rng.uniform(-0.5, 0.5, (n, 3)))
    K = np.array([[fx, 0, width / 2], [0, fx, height / 2], [0, 0, 1]])
    t = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    return dict(
        means=t(means),
        quats=t(rng.normal(size=(n, 4))),
        scales=t(scales),
        opacities=t(rng.uniform(0.1, 0.99, n)),
        features=t(rng.uniform(0, 1, (n, d))),
        viewmat=t(np.eye(4)),
        K=t(K),
        width=width,
        height=height,
    )


GRAD = ("means", "quats", "scales", "opacities", "features")


def _call(fn, s, grad):
    args = {k: (s[k].clone().requires_grad_(True) if grad and k in GRAD else s[k]) for k in s}
    return fn(
        args["means"],
        args["quats"],
        args["scales"],
        args["opacities"],
        args["features"],
        args["viewmat"],
        args["K"],
        args["width"],
        args["height"],
    )


def _image(out):
    return out["image"] if isinstance(out, dict) else out.image


def time_render(fn, s, reps, wimg):
    """Median wall times (s) of forward (no grad) and forward+backward, and the median CPU
    times (s, all threads; less sensitive to other processes on the machine)."""

    def fwd():
        with torch.no_grad():
            _call(fn, s, False)

    def fwdbwd():
        out = _call(fn, s, True)
        (_image(out) * wimg).sum().backward()

    fwd()
    fwdbwd()
    tf, tb, cf, cb = [], [], [], []
    for _ in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        fwd()
        tf.append(time.perf_counter() - t0)
        cf.append(time.process_time() - c0)
        t0, c0 = time.perf_counter(), time.process_time()
        fwdbwd()
        tb.append(time.perf_counter() - t0)
        cb.append(time.process_time() - c0)
    return tuple(float(np.median(x)) for x in (tf, tb, cf, cb))


def machine_info():
    cpu = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    try:
        layer = numba.threading_layer()
    except ValueError:
        layer = "uninitialised"
    return dict(
        cpu=cpu,
        cores=os.cpu_count(),
        numba_threads=numba.get_num_threads(),
        numba_threading_layer=layer,
        torch_threads=torch.get_num_threads(),
        omp_wait_policy=os.environ.get("OMP_WAIT_POLICY", ""),
        python=platform.python_version(),
        numba=numba.__version__,
        torch=torch.__version__,
        loadavg_at_end=load,
    )


def n_isect(s):
    from gsgroup.render.rasterize import _Frame

    fr = _Frame(
        s["means"],
        s["quats"],
        s["scales"],
        s["opacities"],
        s["viewmat"],
        s["K"],
        s["width"],
        s["height"],
        0.01,
        1e10,
        0.3,
    )
    return int(len(fr.isect_gauss))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small subset")
    ap.add_argument("--reps", type=int, default=5, help="timed runs per case (median), >= 5")
    ap.add_argument("--out", default=str(ROOT / "results" / "rasterizer.json"))
    args = ap.parse_args(argv)
    reps = max(5, args.reps)
    if args.quick:
        cases = [
            (5000, 200, 150, 3, "small"),
            (5000, 200, 150, 19, "small"),
            (10000, 256, 256, 3, "grid"),
            (100000, 512, 512, 19, "grid"),
        ]
        ref_case = (500, 64, 64, 3)
    else:
        cases = [(5000, 200, 150, 3, "small"), (5000, 200, 150, 19, "small")]
        for n in (10_000, 100_000, 300_000):
            for res in (256, 512):
                for d in (3, 19):
                    cases.append((n, res, res, d, "grid"))
        ref_case = (2000, 128, 128, 3)
    rows = []
    for n, w, h, d, kind in cases:
        s = make_scene(n, w, h, d, seed=n + w + d)
        wimg = torch.rand(h, w, d, generator=torch.Generator().manual_seed(0))
        tf, tb, cf, cb = time_render(rasterize, s, reps, wimg)
        ni = n_isect(s)
        row = dict(
            kind=kind,
            n=n,
            width=w,
            height=h,
            d=d,
            fwd_ms=tf * 1e3,
            fwdbwd_ms=tb * 1e3,
            fwd_cpu_ms=cf * 1e3,
            fwdbwd_cpu_ms=cb * 1e3,
            n_isect=ni,
            tile_pairs_per_s_fwd=ni * 256 / tf,
        )
        rows.append(row)
        print(
            f"  N={n:>6} {w}x{h} D={d:>2}: fwd {tf * 1e3:8.1f} ms  fwd+bwd {tb * 1e3:8.1f} ms"
            f"  (cpu {cf * 1e3:.1f} / {cb * 1e3:.1f} ms)",
            flush=True,
        )
    # thread scaling on this machine right now (1 vs all numba threads; on a busy machine the
    # second thread may get no core, then both walls match)
    n, w, h, d = (10000, 256, 256, 19) if args.quick else (100000, 512, 512, 19)
    s = make_scene(n, w, h, d, seed=n + w + d)
    wimg = torch.rand(h, w, d, generator=torch.Generator().manual_seed(0))
    nt_all = numba.get_num_threads()
    scaling = dict(n=n, width=w, height=h, d=d)
    try:
        for nt in (1, nt_all):
            numba.set_num_threads(nt)
            tf, tb, cf, cb = time_render(rasterize, s, reps, wimg)
            scaling[f"threads_{nt}"] = dict(
                fwd_ms=tf * 1e3, fwdbwd_ms=tb * 1e3, fwd_cpu_ms=cf * 1e3, fwdbwd_cpu_ms=cb * 1e3
            )
    finally:
        numba.set_num_threads(nt_all)
    # speed-up over the dense reference (float32, same semantics)
    import reference_rasterizer as ref

    n, w, h, d = ref_case
    s = make_scene(n, w, h, d, seed=7)
    wimg = torch.rand(h, w, d, generator=torch.Generator().manual_seed(0))
    kf, kb = time_render(rasterize, s, reps, wimg)[:2]
    rf, rb = time_render(ref.render, s, reps, wimg)[:2]
    refrow = dict(
        n=n,
        width=w,
        height=h,
        d=d,
        kernel_fwd_ms=kf * 1e3,
        kernel_fwdbwd_ms=kb * 1e3,
        reference_fwd_ms=rf * 1e3,
        reference_fwdbwd_ms=rb * 1e3,
        speedup_fwd=rf / kf,
        speedup_fwdbwd=rb / kb,
    )
    info = machine_info()
    result = dict(
        machine=info,
        reps=reps,
        quick=args.quick,
        rows=rows,
        reference=refrow,
        thread_scaling=scaling,
        targets=dict(fwd_100k_512_d19_ms=150, fwdbwd_100k_512_d19_ms=600, small_5k_200x150_fwdbwd_ms=8),
    )
    write_json(args.out, result)
    print()
    print(
        f"Machine: {info['cpu']}, {info['cores']} cores, numba threads {info['numba_threads']} "
        f"({info['numba_threading_layer']}), load avg (1/5/15 min) at end {info['loadavg_at_end']}"
    )
    print()
    print("| N | image | D | fwd ms | fwd+bwd ms | fwd CPU ms | fwd+bwd CPU ms | intersections | tile-pairs/s (fwd) |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['n']} | {r['width']}x{r['height']} | {r['d']} | {r['fwd_ms']:.1f} | "
            f"{r['fwdbwd_ms']:.1f} | {r['fwd_cpu_ms']:.1f} | {r['fwdbwd_cpu_ms']:.1f} | "
            f"{r['n_isect']} | {r['tile_pairs_per_s_fwd']:.3g} |"
        )
    print()
    print(
        f"Reference (dense PyTorch, float32) at N={n}, {w}x{h}, D={d}: fwd {rf * 1e3:.0f} ms, "
        f"fwd+bwd {rb * 1e3:.0f} ms; kernels {kf * 1e3:.1f} / {kb * 1e3:.1f} ms; "
        f"speed-up x{rf / kf:.0f} (fwd), x{rb / kb:.0f} (fwd+bwd)"
    )
    one, many = scaling["threads_1"], scaling[f"threads_{nt_all}"]
    print(
        f"Thread scaling at N={scaling['n']}, {scaling['width']}x{scaling['height']}, D={scaling['d']}: "
        f"1 thread fwd {one['fwd_ms']:.1f} / fwd+bwd {one['fwdbwd_ms']:.1f} ms wall; {nt_all} threads "
        f"fwd {many['fwd_ms']:.1f} / fwd+bwd {many['fwdbwd_ms']:.1f} ms wall"
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
