"""The light direction estimated from a reconstruction (``edit/shadows.estimate_light``) against the
built-in scene's true light (scene.json ``light.direction_to_light``, used only here, as the reference):
angle error, IoU of predicted and observed floor shadow, the runner-up 20+ degrees away, whether the
fill would trust it, and the seconds it takes (median of --repeats; 6 training views rendered once
beforehand, as ``shadows.attribute`` does). The floor = the Gaussians of the most common label.
Appends one row per run to benchmarks/results/<--name>.json (rows of other runs are kept).

    python benchmarks/light_estimate.py --run /tmp/demo_new/run --scene /tmp/demo_new/scene
    python benchmarks/light_estimate.py --run /tmp/h12/run200 --scene /tmp/h12/scene200
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, machine, save, table


def observations(run, n: int = 6):
    """Renders (rgb, alpha, depth) of n evenly spread training views of the run's Gaussians."""
    import torch

    from gsgroup.edit.shadows import Observation
    from gsgroup.train.trainer import render_view, view_tensors

    g, views, obs = run.gaussians, run.views("train"), []
    with torch.no_grad():
        for v in views[:: max(1, len(views) // n)][:n]:
            r = render_view(g, view_tensors(v), g.sh_degree, background=run.backdrop)
            rgb = r.image[..., :3].numpy().clip(0, 1)
            K, V = np.asarray(v.K, np.float64), np.asarray(v.viewmat, np.float64)
            obs.append(Observation(rgb, r.alpha[..., 0].numpy(), r.depth[..., 0].numpy(), K, V))
    return obs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True)
    ap.add_argument("--scene", required=True)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--name", default="light_estimate")
    args = ap.parse_args()

    from gsgroup.edit.shadows import estimate_light
    from gsgroup.run import Run

    run = Run.open(args.run)
    truth = np.asarray(json.loads((Path(args.scene) / "scene.json").read_text())["light"]["direction_to_light"])
    labels = run.require_segmentation().label(run.gaussians)[0]
    floor = labels == np.bincount(labels).argmax()
    obs = observations(run)
    times, light = [], None
    for _ in range(args.repeats):
        t = time.perf_counter()
        light = estimate_light(run.gaussians, floor, obs)
        times.append(time.perf_counter() - t)
    err = float(np.degrees(np.arccos(np.clip(light.direction @ truth / np.linalg.norm(truth), -1, 1))))
    row = {
        "run": args.run,
        "gaussians": len(run.gaussians),
        "error_deg": round(err, 2),
        **light.info(),
        "truth": [round(float(x), 4) for x in truth],
        "seconds_median": round(statistics.median(times), 2),
        "repeats": args.repeats,
    }
    path = RESULTS / f"{args.name}.json"
    old = json.loads(path.read_text())["rows"] if path.exists() else []
    rows = [r for r in old if r["run"] != args.run] + [row]
    save(args.name, {"machine": machine(), "rows": rows})
    cols = ["run", "gaussians", "error_deg", "iou", "runner_up_iou", "alpha_cut", "confident", "seconds_median"]
    print(table(rows, cols))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
