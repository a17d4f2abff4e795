"""Training benchmark: quality on training and held-out views, wall time, per-iteration speed, peak memory.

    python benchmarks/train.py                 # built-in scene (3 runs) + fox (1 run, --max-gaussians 60000) + speed (3 runs)
    python benchmarks/train.py --scenes fox:1,sky,white,dusk,builtin:1:3000 --iterations 5000 --jobs 2 --name novel_views
    python benchmarks/train.py --no-environment ...   # the same with a fixed black background (plain 3DGS)
    python benchmarks/train.py --quick         # one short run of each, for a smoke test

Scenes: ``builtin`` (the built-in scene, black background), ``sky``, ``white`` and ``dusk`` (the
built-in generator's other backgrounds: a sky gradient, a white studio, and a dusk sky with a sun
disc that was added only after the method was fixed), ``fox`` (the real capture in shared/), and
``speed`` (a fixed 5000 Gaussians, to time the iteration) and ``foxspeed`` (fox with a fixed
60000 Gaussians from the random initialisation, densification off: the iteration at scale). Run r of a synthetic scene uses scene
seed r and training seed r. Each configuration runs in a fresh process (so peak memory is its
own); ``--jobs 2`` runs two at once with one thread each (its times are then not comparable with
a quiet machine's). Medians over runs are written to benchmarks/results/<--name>.json and printed
as a table.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, median, save, table  # noqa: E402
from _step_timing import compare, summarize, train_timed  # noqa: E402

FOX = Path(__file__).resolve().parents[2] / "shared" / "data" / "fox"


SYNTHETIC = {"builtin": "black", "sky": "sky", "white": "white", "dusk": "dusk"}
TIMING = (  # speed columns; id_* (identities) only in the speed row
    "ms_per_iter",
    "raster_ms",
    "ratio",
    "ratio_cpu",
    "id_ms_per_iter",
    "id_raster_ms",
    "id_ratio",
    "id_vs_rgb_ratio",
    "id_vs_rgb_ratio_cpu",
    "id_vs_rgb_ratio_mean",
)


def run_one(
    kind: str, iterations: int, seed: int, environment: bool = True, alpha_entropy: float | None = None
) -> dict:
    """Train one configuration in this process and return its numbers."""
    import torch

    from gsgroup.data.scene import load_scene
    from gsgroup.data.synthetic import make_scene
    from gsgroup.train.config import TrainConfig
    from gsgroup.train.densify import DensifyConfig
    from gsgroup.train.trainer import Trainer

    torch.set_num_threads(int(os.environ.get("BENCH_TORCH_THREADS", "1")))  # as `gsgroup train` does
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if kind in ("fox", "foxspeed"):
            scene = load_scene(
                FOX, resolution=270, eval=True, cache_dir=tmp / "cache", allow_empty_points=True, progress=False
            )
        else:
            make_scene(tmp / "scene", seed=seed, progress=False, background=SYNTHETIC.get(kind, "black"))
            scene = load_scene(tmp / "scene", eval=True, cache_dir=tmp / "cache", progress=False)
        densify = DensifyConfig(max_gaussians=60_000 if kind == "fox" else None).scaled(iterations)
        if kind == "speed":  # a fixed count of 5000 Gaussians (a subset of the SfM points): time the iteration
            densify = DensifyConfig(densify_until=0, max_gaussians=5000)
        if kind == "foxspeed":
            densify = DensifyConfig(densify_until=0, max_gaussians=60_000)
        cfg = TrainConfig(
            iterations=iterations,
            seed=seed,
            densify=densify,
            env_sh_degree=TrainConfig.env_sh_degree if environment else -1,
            init_points=60_000 if kind == "foxspeed" else TrainConfig.init_points,
            **({} if alpha_entropy is None else {"alpha_entropy": alpha_entropy}),  # (older code has no such field)
        )
        trainer = Trainer(scene, cfg)
        trainers = {"rgb": trainer}
        if kind == "speed":  # the same with identities (16-D, L2d every step, L3d every 5), from the true masks
            from gsgroup.data.masks import load_masks
            from gsgroup.segment.grouping import GroupingTrainer

            trainers["id"] = GroupingTrainer(scene, cfg, load_masks(tmp / "scene" / "gt_mask", scene.train))
        rec = train_timed(trainers, iterations, probe_every=2 if kind in ("speed", "foxspeed") else 10)
        times = rec["rgb"]["wall"]
        wall = sum(times)
        metrics = trainer.evaluate()
        train_metrics = trainer.evaluate(trainer.views)
        start = min(50, len(times) // 5)
        timing = summarize(rec["rgb"], start)
        if "id" in rec:
            timing.update({f"id_{k}": v for k, v in summarize(rec["id"], start).items()})
            timing.update({f"id_vs_rgb_{k}": v for k, v in compare(rec["id"], rec["rgb"], start).items()})
        return {
            "scene": kind,
            "iterations": iterations,
            "seed": seed,
            "environment": environment,
            "size": f"{scene.train[0].width}x{scene.train[0].height}",
            "train_views": len(scene.train),
            "test_views": len(scene.test),
            "gaussians": int(trainer.params["means"].shape[0]),
            "train_s": wall,
            **timing,
            "it_per_s": len(times) / wall,
            "train_psnr": train_metrics["psnr"],
            "test_psnr": metrics["psnr"],
            "test_ssim": metrics["ssim"],
            "gap_psnr": train_metrics["psnr"] - metrics["psnr"],
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }


def _worker_init(threads: int | None) -> None:
    """Runs first in each fresh worker process, before numba or torch are imported there."""
    import gsgroup  # noqa: F401  (imported first, as by `gsgroup train`)

    if threads:
        os.environ.update(NUMBA_NUM_THREADS=str(threads), BENCH_TORCH_THREADS=str(threads))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--scenes", default="builtin,fox,speed")
    parser.add_argument("--iterations", type=int, default=None, help="for every scene but speed")
    parser.add_argument("--builtin-iterations", type=int, default=3000)
    parser.add_argument("--fox-iterations", type=int, default=2000)
    parser.add_argument("--fox-runs", type=int, default=1, help="fox runs take ~10 min each")
    parser.add_argument("--no-environment", action="store_true", help="fixed black background (plain 3DGS)")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once (each then on 1 thread)")
    parser.add_argument("--name", default="train", help="results file benchmarks/results/NAME.json")
    parser.add_argument(
        "--add-runs",
        nargs="*",
        default=[],
        metavar="JSON",
        help="JSON lists of per-run results of an earlier invocation to merge into the table",
    )
    parser.add_argument(
        "--alpha-entropy", type=float, default=None, help="TrainConfig.alpha_entropy (default: its default)"
    )
    args = parser.parse_args()
    env_on = not args.no_environment
    iters = {k: args.iterations or args.builtin_iterations for k in SYNTHETIC}
    iters.update(fox=args.iterations or args.fox_iterations, speed=500, foxspeed=120)
    if args.quick:
        iters = {k: 300 for k in SYNTHETIC} | {"fox": 200, "speed": 200, "foxspeed": 60}
    kinds, runs = [], {}
    first = {}
    for item in filter(None, args.scenes.split(",")):  # KIND[:RUNS[:ITERATIONS[:FIRST_SEED]]]
        kind, *rest = item.split(":")
        if kind in ("fox", "foxspeed") and not FOX.exists():
            print(f"skipping fox: {FOX} not found")
            continue
        kinds.append(kind)
        runs[kind] = (
            1 if args.quick else int(rest[0]) if rest and rest[0] else args.fox_runs if kind == "fox" else args.runs
        )
        if len(rest) > 1 and rest[1]:
            iters[kind] = int(rest[1])
        first[kind] = int(rest[2]) if len(rest) > 2 else 0
    jobs = [(k, first[k] + r) for k in kinds for r in range(runs[k])]
    results: dict[str, list] = {k: [] for k in kinds}
    for path in args.add_runs:  # runs of the same configuration measured by an earlier invocation
        for run in json.loads(Path(path).read_text()):
            results.setdefault(run["scene"], []).append(run)
            if run["scene"] not in kinds:
                kinds.append(run["scene"])
    # each run in a fresh process (so its peak memory is its own), --jobs at a time
    spawn = multiprocessing.get_context("spawn")
    threads = 1 if args.jobs > 1 else None
    with ProcessPoolExecutor(args.jobs, spawn, _worker_init, (threads,), max_tasks_per_child=1) as pool:
        futures = {
            pool.submit(run_one, kind, iters[kind], r, env_on, args.alpha_entropy): (kind, r) for kind, r in jobs
        }
        for future in as_completed(futures):
            kind, r = futures[future]
            results[kind].append(future.result())
            print(f"  {kind} run {r}: {json.dumps(results[kind][-1])}", flush=True)
    rows, raw = [], []
    keys = (
        "gaussians",
        "train_s",
        "ms_per_iter",
        "it_per_s",
        "train_psnr",
        "test_psnr",
        "gap_psnr",
        "test_ssim",
        "peak_rss_mb",
        *TIMING,
    )
    for kind in kinds:
        res = results[kind]
        raw += res
        row = {
            "scene": kind,
            "size": res[0]["size"],
            "iterations": res[0]["iterations"],
            "runs": len(res),
            "environment": env_on,
            "alpha_entropy": args.alpha_entropy,
        }
        row.update({key: median([x[key] for x in res if key in x]) for key in keys})
        rows.append(row)
    cols = [
        "scene",
        "size",
        "iterations",
        "runs",
        "gaussians",
        "train_s",
        "ms_per_iter",
        "train_psnr",
        "test_psnr",
        "gap_psnr",
        "test_ssim",
        "peak_rss_mb",
    ]
    path = save(args.name, {"machine": machine(), "jobs": args.jobs, "rows": rows, "runs": raw})
    print(table(rows, cols))
    print("\niteration vs the rasterizer alone (fwd+bwd, same view), medians; ratios per step (robust to load):")
    print(table(rows, ["scene", "gaussians", *TIMING]))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
