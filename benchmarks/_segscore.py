"""Shared set-up of the enclosure benchmarks: a segmented run, its views and a scorer on the test views."""

from __future__ import annotations

from pathlib import Path


def run_and_scorer(run_path: str, gt_path: str):
    """(run, train views, test views, score): score(seg, lut=None) -> {"miou", "mbiou"} of a Segmentation's
    rendered ids on the test views against the ground-truth masks in ``gt_path`` (ids mapped through
    the lookup table ``lut`` [L] when given)."""
    import numpy as np

    from gsgroup.run import Run
    from gsgroup.segment.idmaps import render_ids
    from gsgroup.segment.metrics import GtMaps, evaluate_segmentation, load_gt_dir
    from gsgroup.train.trainer import view_tensors

    run = Run.open(run_path)
    views, tests = run.views("train"), run.views("test")
    gt_all = load_gt_dir(Path(gt_path))
    gt = GtMaps({v.name: gt_all[v.name] for v in tests})

    def score(seg, lut=None) -> dict:
        preds = {v.name: render_ids(run.gaussians, view_tensors(v), seg, background=run.backdrop).ids for v in tests}
        if lut is not None:
            preds = {k: lut[np.clip(p, 0, len(lut) - 1)] for k, p in preds.items()}
        m = evaluate_segmentation(gt, preds)
        return {"miou": m["miou"], "mbiou": m["mbiou"]}

    return run, views, tests, score
