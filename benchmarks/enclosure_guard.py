"""The depth-step guard of the enclosed-part merge (segment/enclosure.py, AssociateParams.enclose_step) on a
segmented run with classical masks, before/after, on the held-out test views against the exact ground truth
(mIoU, boundary IoU):

  post-hoc    the run's own classifier ids; then every id enclosed by a larger one (borders over the run's
              associated masks, Gaussians inside its box) relabelled to it, without and with the guard
              (rendered depth of the run's Gaussians in the training views): the merge on a trained run
  lifted      association of the run's raw masks with the merge off (enclose 0), on without the guard
              (enclose_step 1) and on with it (default enclose_step), each lifted in closed form
              (segment/lift.py) onto the run's Gaussians: the association's effect, training left out

    python benchmarks/enclosure_guard.py --run DEMO/run --gt DEMO/scene/gt_mask --name enclosure_guard_demo
    python benchmarks/enclosure_guard.py --run TEX/run --gt TEX/scene/gt_mask --name enclosure_guard_textured
Writes benchmarks/results/<--name>.json (with the merges each variant made: {part id: object id}, each
merge's border share and depth-step share, and a sweep of the guard's two thresholds on the lifted path).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, save, table
from _segscore import run_and_scorer


def merges(C, labels, means, steps=None, step_share=None) -> dict[int, int]:
    """{part id: object id}: every id enclosed by a larger one (enclosure.enclosed_parts), largest first."""
    import numpy as np

    from gsgroup.segment.enclosure import STEP_SHARE, merge_table

    lut = merge_table(C, labels, means, steps=steps, step_share=step_share or STEP_SHARE)
    return {int(j): int(lut[j]) for j in np.flatnonzero(lut != np.arange(len(lut)))}


def relabel(merged: dict[int, int], n: int):
    """Lookup table [n] mapping each merged part id to its object id."""
    import numpy as np

    lut = np.arange(n)
    for j, i in merged.items():
        lut[j] = i
    return lut


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="a run made by `gsgroup run` / the demo (with masks/)")
    ap.add_argument("--gt", required=True, help="ground-truth masks of the scene")
    ap.add_argument("--name", default="enclosure_guard", help="results file name")
    args = ap.parse_args()

    import numpy as np

    from gsgroup.data.masks import load_masks
    from gsgroup.segment.associate import AssociateParams, _gaussian_tensors, associate_masks
    from gsgroup.segment.enclosure import STEP_SHARE, adjacency, depth_steps, rendered_depths
    from gsgroup.segment.lift import lift_labels
    from gsgroup.segment.segmentation import Segmentation

    run, views, tests, score = run_and_scorer(args.run, args.gt)

    def evidence(masks, merged: dict, depths) -> list[dict]:
        """Per merge made without the guard: the part's border share with its host and the step share
        of that border (pairwise with the host id), and pixel counts."""
        C = adjacency(masks)
        B, S = depth_steps(masks, depths, C.shape[0])
        px = np.bincount(np.concatenate([np.asarray(m, np.int64).ravel() for m in masks.values()]), minlength=len(C))
        return [
            {
                "part": j,
                "host": i,
                "part_px": int(px[j]),
                "host_px": int(px[i]),
                "border_share": round(float(C[j, i] / max(C[j, 1:].sum(), 1)), 3),
                "step_share": round(float(S[j, i] / max(B[j, i], 1)), 3),
            }
            for j, i in sorted(merged.items())
        ]

    rows, out = [], {"machine": machine(), "run": str(run.path), "step_share": STEP_SHARE}
    seg = run.require_segmentation()
    assoc = load_masks(run.config.data.masks, views)
    C = adjacency(assoc)
    labels, _ = seg.label(run.gaussians)
    means = run.gaussians.means.detach().numpy()
    depths = rendered_depths(views, _gaussian_tensors(run.gaussians))
    steps = depth_steps(assoc, depths, C.shape[0])
    out["post_hoc"] = {"before": score(seg)}
    for key, guard in (("merge", None), ("merge_guard", steps)):
        merged = merges(C, np.asarray(labels), means, guard)
        out["post_hoc"][key] = {**score(seg, relabel(merged, max(C.shape[0], seg.num_classes))), "merged": merged}
        if guard is None:
            out["post_hoc"]["evidence"] = evidence(assoc, merged, depths)
    for k in ("before", "merge", "merge_guard"):
        rows.append({"how": f"post-hoc, {k}", **{m: round(out["post_hoc"][k][m], 4) for m in ("miou", "mbiou")}})
    raw = load_masks(Path(args.run) / "masks", views)
    for key, params in (
        ("lifted_off", AssociateParams(enclose=0.0)),
        ("lifted_merge", AssociateParams(enclose_step=1.0)),
        ("lifted_merge_guard", AssociateParams()),
    ):
        res = associate_masks(views, run.gaussians, raw, params)
        lab, prob = lift_labels(views, run.gaussians, res.masks, progress=False)
        s = score(Segmentation(None, labels=lab.astype(np.int32), prob=prob))
        out[key] = {**s, "objects": res.stats["objects"], "merged": res.stats["enclosed_parts_merged"]}
        if key == "lifted_off":  # which merges the rule makes on this association, their evidence, a sweep
            Ca = adjacency(res.masks)
            unguarded = merges(Ca, res.owner, means)
            guarded = merges(Ca, res.owner, means, depth_steps(res.masks, depths, Ca.shape[0]))
            out["lifted_evidence"] = [
                {**e, "refused": e["part"] not in guarded} for e in evidence(res.masks, unguarded, depths)
            ]
            out["lifted_sweep"], scored = [], {}
            for jump in (0.05, 0.1, 0.2):
                st = depth_steps(res.masks, depths, Ca.shape[0], jump=jump)
                for step_share in (0.05, 0.1, 0.15, 0.2, 0.25, 0.3):
                    merged = merges(Ca, res.owner, means, st, step_share)
                    k = tuple(sorted(merged.items()))
                    if k not in scored:
                        masks = {n: relabel(merged, Ca.shape[0])[m] for n, m in res.masks.items()}
                        lab_s, prob_s = lift_labels(views, run.gaussians, masks, progress=False)
                        scored[k] = score(Segmentation(None, labels=lab_s.astype(np.int32), prob=prob_s))
                    out["lifted_sweep"].append({"jump": jump, "step_share": step_share, "merged": merged, **scored[k]})
        rows.append({"how": key.replace("_", " "), **{m: round(v, 4) for m, v in s.items()}})
    path = save(args.name, out)
    print(table(rows, ["how", "miou", "mbiou"]))
    sweep = [{**r, "merged": len(r["merged"]), "miou": round(r["miou"], 4)} for r in out["lifted_sweep"]]
    print(table(sweep, ["jump", "step_share", "merged", "miou"]))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
