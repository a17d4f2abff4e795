"""Images held in memory (uint8) against streamed from disk (``--image-cache N``): peak RSS and the
cost per training iteration.

Each case runs in a fresh child process: it loads the capture at full size (for a distorted capture
such as fox the undistorted copies are read from a cache folder made by a warm-up load, as in a
run), builds the trainer with ``--gaussians`` random Gaussians (no densification) and times
``--steps`` training steps (median, the first left out); the streamed case also times a miss (one
view's pixels read and decoded again, median of 5). The cases alternate, ``--runs`` times each; the
table shows the medians over the runs.

    python benchmarks/streaming.py                       # fox at 1080x1920, held vs --image-cache 8
    python benchmarks/streaming.py --runs 1 --steps 10   # quicker

Writes benchmarks/results/streaming.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, median, save, table
from memory import GB, peak_rss, rss_now

CACHE = "/tmp/gsgroup_streaming_bench_cache"


def child(data: str, image_cache: int, gaussians: int, steps: int) -> dict:
    import torch

    from gsgroup.data.scene import load_scene
    from gsgroup.train.config import TrainConfig
    from gsgroup.train.trainer import Trainer

    torch.set_num_threads(1)
    start = rss_now()
    t0 = time.perf_counter()
    scene = load_scene(data, eval=True, cache_dir=CACHE, progress=False, image_cache=image_cache)
    load_s = time.perf_counter() - t0
    after_load = rss_now()
    cfg = TrainConfig.for_length(1000, densify=False, max_gaussians=gaussians, init="random", init_points=gaussians)
    trainer = Trainer(scene, cfg)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        trainer.train_step()
        times.append(time.perf_counter() - t0)
    cache = getattr(scene.train[0], "cache", None)
    v = scene.train[0]
    decode = []
    if cache is not None:  # the cost of one miss: the view's pixels read and decoded from disk again
        for view in scene.train[:5]:
            t0 = time.perf_counter()
            view._load()
            decode.append(time.perf_counter() - t0)
    return {
        "views": len(scene.train) + len(scene.test),
        "size": f"{v.width}x{v.height}",
        "rss_start_gb": start / GB,
        "rss_after_load_gb": after_load / GB,
        "peak_rss_gb": peak_rss() / GB,
        "load_s": load_s,
        "step_s": median(times[1:] or times),
        "miss_s": median(decode) if decode else None,
        "misses": None if cache is None else cache.misses,
        "hits": None if cache is None else cache.hits,
    }


def run_child(args: list) -> dict:
    cmd = [sys.executable, __file__, "--child", *map(str, args)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "fox"))
    ap.add_argument("--cache", type=int, default=8, help="--image-cache of the streamed case")
    ap.add_argument("--gaussians", type=int, default=20_000)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--child", nargs=4, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        data, cache, n, steps = args.child
        print(json.dumps(child(data, int(cache), int(n), int(steps))))
        return 0
    from gsgroup.data.scene import load_scene

    load_scene(args.data, cache_dir=CACHE, progress=False)  # warm-up: the undistorted copies exist from here on
    cases = (("held (uint8)", 0), (f"streamed, --image-cache {args.cache}", args.cache))
    results = {label: [] for label, _ in cases}
    for _ in range(args.runs):  # interleaved, so a change in the machine's load hits both cases alike
        for label, cache in cases:
            r = run_child([args.data, cache, args.gaussians, args.steps])
            print(json.dumps(r), flush=True)
            results[label].append(r)
    rows = []
    for label, _ in cases:
        runs = results[label]
        ok = [r for r in runs if "error" not in r]
        row = {"case": label, "runs": len(ok)}
        if ok:
            row["images"] = f"{ok[0]['views']} at {ok[0]['size']}"
            for k in ("rss_start_gb", "rss_after_load_gb", "peak_rss_gb", "load_s", "step_s"):
                row[k] = median([r[k] for r in ok])
            row["misses"], row["hits"] = ok[0]["misses"], ok[0]["hits"]
            row["miss_s"] = median([r["miss_s"] for r in ok]) if ok[0]["miss_s"] is not None else None
        row["all"] = runs
        rows.append(row)
    if len(rows) == 2 and "step_s" in rows[0] and "step_s" in rows[1]:
        rows[1]["step_extra_s"] = rows[1]["step_s"] - rows[0]["step_s"]
    payload = {
        "machine": machine(),
        "data": args.data,
        "gaussians": args.gaussians,
        "steps": args.steps,
        "runs": args.runs,
        "rows": rows,
    }
    path = save("streaming", payload)
    cols = ["case", "images", "runs", "rss_after_load_gb", "peak_rss_gb", "load_s", "step_s", "step_extra_s", "miss_s"]
    print(table(rows, cols))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
