"""Training benchmark: quality, wall time, per-iteration speed and peak memory.

    python benchmarks/train.py                 # built-in scene (3 runs) + fox (1 run, --max-gaussians 60000) + speed (3 runs)
    python benchmarks/train.py --quick         # one short run of each, for a smoke test

Each configuration runs in a fresh subprocess (so peak memory is its own); medians over runs
are written to benchmarks/results/train.json and printed as a table.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, median, save, table  # noqa: E402

FOX = Path(__file__).resolve().parents[2] / "shared" / "data" / "fox"


def run_one(kind: str, iterations: int, seed: int) -> dict:
    """Train one configuration in this process and return its numbers."""
    import numpy as np
    import torch

    from gsgroup.data.scene import load_scene
    from gsgroup.data.synthetic import make_scene
    from gsgroup.train.densify import DensifyConfig
    from gsgroup.train.trainer import TrainConfig, Trainer

    torch.set_num_threads(int(os.environ.get("BENCH_TORCH_THREADS", "1")))  # as `gsgroup train` does
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if kind == "fox":
            scene = load_scene(FOX, resolution=270, eval=True, cache_dir=tmp / "cache", allow_empty_points=True,
                               progress=False)
        else:
            make_scene(tmp / "scene", seed=seed, progress=False)
            scene = load_scene(tmp / "scene", eval=True, cache_dir=tmp / "cache", progress=False)
        densify = DensifyConfig(max_gaussians=60_000 if kind == "fox" else None).scaled(iterations)
        if kind == "speed":  # a fixed count of 5000 Gaussians (a subset of the SfM points): time the iteration
            densify = DensifyConfig(densify_until=0, max_gaussians=5000)
        cfg = TrainConfig(iterations=iterations, seed=seed, densify=densify)
        trainer = Trainer(scene, cfg, tmp / "run")
        times = []
        t0 = time.perf_counter()
        while trainer.step_count < iterations:
            t = time.perf_counter()
            trainer.train_step()
            times.append(time.perf_counter() - t)
        wall = time.perf_counter() - t0
        metrics = trainer.evaluate()
        warm = times[min(50, len(times) // 5):]
        return {
            "scene": kind, "iterations": iterations, "seed": seed,
            "size": f"{scene.train[0].width}x{scene.train[0].height}", "train_views": len(scene.train),
            "test_views": len(scene.test), "gaussians": int(trainer.params["means"].shape[0]),
            "train_s": wall, "ms_per_iter": 1000 * float(np.median(warm)), "it_per_s": len(times) / wall,
            "test_psnr": metrics["psnr"], "test_ssim": metrics["ssim"],
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--scenes", default="builtin,fox,speed")
    parser.add_argument("--builtin-iterations", type=int, default=3000)
    parser.add_argument("--fox-iterations", type=int, default=2000)
    parser.add_argument("--fox-runs", type=int, default=1, help="fox runs take ~10 min each")
    parser.add_argument("--single", nargs=3, metavar=("KIND", "ITERATIONS", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.single:
        print(json.dumps(run_one(args.single[0], int(args.single[1]), int(args.single[2]))))
        return
    runs = 1 if args.quick else args.runs
    iters = {"builtin": args.builtin_iterations, "fox": args.fox_iterations, "speed": 500}
    if args.quick:
        iters = {"builtin": 300, "fox": 200, "speed": 200}
    rows, raw = [], []
    for kind in args.scenes.split(","):
        if kind == "fox" and not FOX.exists():
            print(f"skipping fox: {FOX} not found")
            continue
        results = []
        for r in range(args.fox_runs if kind == "fox" and not args.quick else runs):
            out = subprocess.run([sys.executable, __file__, "--single", kind, str(iters[kind]), str(r)],
                                 capture_output=True, text=True)
            if out.returncode:
                sys.exit(f"benchmark run failed:\n{out.stderr[-3000:]}")
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"  {kind} run {r}: {results[-1]}", flush=True)
        raw += results
        row = {"scene": kind, "size": results[0]["size"], "iterations": iters[kind], "runs": len(results)}
        for key in ("gaussians", "train_s", "ms_per_iter", "it_per_s", "test_psnr", "test_ssim", "peak_rss_mb"):
            row[key] = median([x[key] for x in results])
        rows.append(row)
    cols = ["scene", "size", "iterations", "runs", "gaussians", "train_s", "ms_per_iter", "it_per_s",
            "test_psnr", "test_ssim", "peak_rss_mb"]
    path = save("train", {"machine": machine(), "rows": rows, "runs": raw})
    print(table(rows, cols))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
