"""Cross-view mask association benchmark: pairwise F1 against ground truth, and time.

    python benchmarks/associate.py                       # built-in scene 200x150 x 40 views, 3 seeds of simulated SAM masks + classical masks
    python benchmarks/associate.py --quick               # one seed, and a short reconstruction when none is cached
    python benchmarks/associate.py --model RUN/point_cloud.ply   # use an existing reconstruction of the scene

The reconstruction (``gsgroup train SCENE --iterations N``, in-process) is cached under --cache
(default /tmp/gsgroup_bench_associate) and reused. Masks: ``gsgroup.data.simulate.simulate_sam_masks``
(merges, misses, splits, 1-2 px border noise, random ids per view) for seeds 0..S-1, and the weight-free
``--source classical`` segmenter. Metric (``gsgroup.segment.associate.pairwise_f1``): exact pairwise
precision / recall / F1 over all pairs of (view, pixel) samples; gt background (id 0, floor + sky) is an
object like the others; predicted 0 (dropped) pixels are singletons. "F1" is over the pixels the input
masks cover (the association's own quality); "F1 all" over every pixel (pixels no input mask covers
count as dropped); "oracle" is the same metric for the best possible association of the same masks
(each mask takes its majority gt id). Time: associate_masks alone (contributions included), on a
machine shared with other jobs, so noisy. Writes benchmarks/results/associate.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, median, save, table  # noqa: E402


def scene_and_model(cache: Path, iterations: int, seed: int = 0, model: str | None = None):
    """(scene dir, Gaussians): the built-in scene and its reconstruction, cached."""
    import torch

    from gsgroup.data.scene import load_scene
    from gsgroup.data.synthetic import make_scene
    from gsgroup.model import load_ply, save_ply
    from gsgroup.train.config import TrainConfig
    from gsgroup.train.trainer import Trainer

    scene_dir = cache / f"scene_{seed}"
    if not (scene_dir / "scene.json").is_file():
        make_scene(scene_dir, seed=seed, progress=False)
    if model:
        return scene_dir, load_ply(model), {"model": model}
    ply = cache / f"model_{seed}_{iterations}.ply"
    info = {"model": str(ply), "iterations": iterations}
    if not ply.is_file():
        torch.set_num_threads(2)
        scene = load_scene(scene_dir, eval=False, cache_dir=cache / "cache", progress=False)
        cfg = TrainConfig.for_length(iterations, seed=seed)
        t0 = time.perf_counter()
        g = Trainer(scene, cfg).train(progress=False)
        info["train_seconds"] = round(time.perf_counter() - t0, 1)
        save_ply(ply, g)
    return scene_dir, load_ply(ply), info


def evaluate(views, gaussians, gt, masks, params=None) -> dict:
    """Associate ``masks`` and score them: F1 (input-covered pixels), F1 all, oracle, seconds, stats."""
    from gsgroup.segment.associate import associate_masks
    from gsgroup.segment.association_metrics import oracle_association, pairwise_f1

    t0 = time.perf_counter()
    r = associate_masks(views, gaussians, masks, params)
    seconds = time.perf_counter() - t0
    valid = {n: m != 0 for n, m in masks.items()}
    f = pairwise_f1(gt, r.masks, valid)
    fa = pairwise_f1(gt, r.masks)
    oracle = pairwise_f1(gt, oracle_association(gt, masks), valid)
    return {
        "f1": f["f1"],
        "precision": f["precision"],
        "recall": f["recall"],
        "f1_all": fa["f1"],
        "oracle_f1": oracle["f1"],
        "dropped": f["pred_zero"],
        "seconds": seconds,
        "objects": r.stats["objects"],
        "masks": r.stats["masks"],
        "stats": r.stats,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="one seed of simulated masks; short training if needed")
    ap.add_argument("--seeds", type=int, default=3, help="seeds of simulated SAM masks (default 3)")
    ap.add_argument("--iterations", type=int, default=None, help="training iterations (default 3000, quick 500)")
    ap.add_argument("--model", default=None, help="point_cloud.ply of the built-in scene (seed 0) to use")
    ap.add_argument("--cache", default="/tmp/gsgroup_bench_associate", help="scene + reconstruction cache")
    ap.add_argument("--no-classical", action="store_true", help="skip the classical masks")
    args = ap.parse_args(argv)

    from gsgroup.data.masks import read_mask
    from gsgroup.data.scene import load_scene
    from gsgroup.data.simulate import simulate_sam_masks

    iterations = args.iterations or (500 if args.quick else 3000)
    seeds = 1 if args.quick else args.seeds
    cache = Path(args.cache)
    scene_dir, gaussians, model_info = scene_and_model(cache, iterations, model=args.model)
    views = load_scene(scene_dir, eval=False, cache_dir=cache / "cache", progress=False).train
    gt = {v.name: read_mask(scene_dir / "gt_mask" / f"{v.name}.png") for v in views}
    touching = json.loads((scene_dir / "scene.json").read_text())["touching"]

    from gsgroup.segment.associate import AssociateParams

    no_enclose = AssociateParams(enclose=0.0)  # before #12: enclosed parts kept apart
    runs = []
    for s in range(seeds):
        sim = simulate_sam_masks(gt, touching, seed=s)
        res = evaluate(views, gaussians, gt, sim)
        runs.append({"source": "simulated", "seed": s, **res})
        runs.append({"source": "simulated, no enclose", "seed": s, **evaluate(views, gaussians, gt, sim, no_enclose)})
        print(
            f"simulated seed {s}: F1 {res['f1']:.4f} (oracle {res['oracle_f1']:.4f}), {res['seconds']:.1f} s",
            flush=True,
        )
    if not args.no_classical:
        import numpy as np

        from gsgroup.segment.classical import segment_image, shuffle_ids
        from gsgroup.segment.masks import view_seed

        masks = {
            v.name: shuffle_ids(segment_image(v.image), np.random.default_rng(view_seed(0, v.name))) for v in views
        }
        res = evaluate(views, gaussians, gt, masks)
        runs.append({"source": "classical", "seed": 0, **res})
        runs.append({"source": "classical, no enclose", "seed": 0, **evaluate(views, gaussians, gt, masks, no_enclose)})
        print(f"classical: F1 {res['f1']:.4f} (oracle {res['oracle_f1']:.4f}), {res['seconds']:.1f} s", flush=True)

    cols = ["f1", "precision", "recall", "f1_all", "oracle_f1", "dropped", "seconds", "objects"]
    rows = []
    for src in ("simulated", "simulated, no enclose", "classical", "classical, no enclose"):
        rs = [r for r in runs if r["source"] == src]
        if rs:
            rows.append({"source": src, "runs": len(rs), **{c: median([r[c] for r in rs]) for c in cols}})
    payload = {
        "scene": {"width": 200, "height": 150, "views": len(views), "gaussians": int(gaussians.means.shape[0])},
        "model": model_info,
        "machine": machine(),
        "median": rows,
        "runs": [{k: v for k, v in r.items()} for r in runs],
        "metric": "pairwise F1 over (view, pixel) pairs covered by the input masks; gt background is an object; "
        "dropped (0) pixels are singletons. Machine shared with other jobs: times are noisy.",
    }
    path = save("associate", payload)
    print(table(rows, ["source", "runs"] + cols))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
