"""Memory benchmark: peak RSS of the CPU rasterizer and of training steps at 1920x1080, and the
memory of a capture's images held as uint8 against float32.

Each case runs in a fresh child process and reports its peak resident set (``ru_maxrss``), the
resident set before the measured work, the tile intersections and the median time of the reps:

    python benchmarks/memory.py                   # 100k and 1M Gaussians fwd+bwd, 2 training steps at 1M, fox images
    python benchmarks/memory.py --quick           # 100k only
    python benchmarks/memory.py --data ../shared/data/fox --resolution 1

Writes benchmarks/results/memory.json and prints a table; planned bytes (gsgroup.train.memory)
are printed beside the measured ones.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, median, save, table

GB = 1024**3


def rss_now() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def make_gaussians(n, width, height, seed=0):
    """n random Gaussians in the frustum of a camera at the origin whose 2D sigmas are log-uniform in
    [0.5, 4] px at this resolution (a trained scene's small splats), opacities in [0.1, 0.99]:
    (means, quats, scales, opacities, viewmat, K), as benchmarks/rasterizer.py's scenes."""
    from rasterizer import make_scene

    s = make_scene(n, width, height, 1, seed, sigma_width=width)
    return s["means"], s["quats"], s["scales"], s["opacities"], s["viewmat"], s["K"]


def child_raster(n, width, height, d, reps):
    from gsgroup.render import rasterize
    from gsgroup.render.rasterize import _Frame

    means, quats, scales, opac, V, K = make_gaussians(n, width, height)
    feats = torch.rand(n, d, generator=torch.Generator().manual_seed(1))
    wimg = torch.rand(height, width, d, generator=torch.Generator().manual_seed(2))
    n_isect = len(_Frame(means, quats, scales, opac, V, K, width, height, 0.01, 1e10, 0.3).isect_gauss)
    before = rss_now()
    times = []
    for _ in range(reps):
        params = [x.clone().requires_grad_(True) for x in (means, quats, scales, opac, feats)]
        t0 = time.perf_counter()
        out = rasterize(*params, V, K, width, height)
        (out.image * wimg).sum().backward()
        times.append(time.perf_counter() - t0)
        del out, params
    return {"rss_before_gb": before / GB, "n_isect": n_isect, "seconds": median(times[1:] or times)}


def child_train(n, width, height, reps):
    """``reps`` training steps (3DGS losses, Adam, densification statistics) on one view."""
    from gsgroup.data.scene import Scene, View
    from gsgroup.model import from_points
    from gsgroup.train.config import TrainConfig
    from gsgroup.train.trainer import Trainer

    means, quats, scales, opac, V, K = make_gaussians(n, width, height)
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    view = View("v", Path("v.png"), K.numpy(), V.numpy(), width, height, pixels)
    scene = Scene(Path("."), [view], [], None, None, 1.0, np.zeros(3, np.float32), "synthetic")
    g = from_points(means.numpy(), rng.uniform(0, 1, (n, 3)).astype(np.float32), 3, 0, 0)
    g.scales = scales.log()
    cfg = TrainConfig(iterations=1000)
    torch.set_num_threads(1)
    trainer = Trainer(scene, cfg, gaussians=g)
    before = rss_now()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        trainer.train_step()
        times.append(time.perf_counter() - t0)
    return {"rss_before_gb": before / GB, "seconds": median(times[1:] or times)}


def child_images(data, resolution):
    from gsgroup.data.scene import load_scene

    before = rss_now()
    scene = load_scene(data, resolution=resolution, progress=False, cache_dir="/tmp/gsgroup_memory_bench_cache")
    views = scene.train + scene.test
    held = sum(v.pixels.nbytes for v in views)
    as_float = sum(v.height * v.width * 3 * 4 for v in views)
    return {
        "views": len(views),
        "size": f"{views[0].width}x{views[0].height}",
        "held_gb": held / GB,
        "float32_gb": as_float / GB,
        "rss_before_gb": before / GB,
        "rss_after_gb": rss_now() / GB,
    }


def run_child(args: list[str]) -> dict:
    cmd = [sys.executable, __file__, "--child", json.dumps(args)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        return {"error": (res.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "fox"))
    ap.add_argument("--resolution", type=int, default=1)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        kind, *rest = json.loads(args.child)
        fn = {"raster": child_raster, "train": child_train, "images": child_images}[kind]
        out = fn(*rest)
        out["peak_rss_gb"] = peak_rss() / GB
        print(json.dumps(out))
        return 0
    from gsgroup.train.memory import memory_plan

    w, h = 1920, 1080
    ns = [100_000] if args.quick else [100_000, 1_000_000]
    rows = []
    for n in ns:
        r = run_child(["raster", n, w, h, 3, args.reps])
        r.update(case="rasterize fwd+bwd", n=n, size=f"{w}x{h}")
        rows.append(r)
        print(json.dumps(r), flush=True)
    if not args.quick:
        r = run_child(["train", 1_000_000, w, h, args.reps])
        view = SimpleNamespace(width=w, height=h, pixels=np.zeros((h, w, 3), np.uint8))
        planned = memory_plan([view], 1_000_000, None, 3, 0).total  # with headroom, as gsgroup train prints
        r.update(case="train_step (SH 3)", n=1_000_000, size=f"{w}x{h}", planned_gb=planned / GB)
        rows.append(r)
        print(json.dumps(r), flush=True)
    images = None
    if Path(args.data).is_dir():
        images = run_child(["images", args.data, args.resolution])
        print(json.dumps(images), flush=True)
    payload = {"machine": machine(), "reps": args.reps, "rows": rows, "images": images}
    path = save("memory", payload)
    print(table(rows, ["case", "n", "size", "n_isect", "seconds", "rss_before_gb", "peak_rss_gb", "planned_gb"]))
    if images and "error" not in images:
        print(
            f"\nimages of {args.data} ({images['views']} at {images['size']}): held {images['held_gb']:.3f} GB "
            f"(uint8) vs {images['float32_gb']:.3f} GB as float32"
        )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
