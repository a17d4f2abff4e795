"""Enclosed-part merging (segment/enclosure.py) on a segmented run of the built-in scene with classical masks.

Two measurements on the held-out test views against the exact ground truth (mIoU, boundary IoU):

  post-hoc    the run's own classifier ids, then every id enclosed by a larger one (borders over the
              run's associated masks, Gaussians inside its box) relabelled to it: what the merge does
              to a trained run without retraining
  lifted      association of the run's raw masks with and without the merge (AssociateParams.enclose
              0.6 / 0), each lifted in closed form (segment/lift.py) onto the run's Gaussians: the
              association's effect with the identity training left out

    python benchmarks/enclosure.py --run demo_out/run --gt demo_out/scene/gt_mask
    python benchmarks/enclosure.py --run TEX/run --gt TEX/scene/gt_mask --name enclosure_textured
Writes benchmarks/results/<--name>.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, save, table
from _segscore import run_and_scorer


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="a run made by `gsgroup run` / the demo (with masks/)")
    ap.add_argument("--gt", required=True, help="ground-truth masks of the scene")
    ap.add_argument("--name", default="enclosure", help="results file name (enclosure_textured for the textured scene)")
    args = ap.parse_args()

    import numpy as np

    from gsgroup.data.masks import load_masks
    from gsgroup.segment.associate import AssociateParams, associate_masks
    from gsgroup.segment.enclosure import adjacency, merge_table
    from gsgroup.segment.lift import lift_labels
    from gsgroup.segment.segmentation import Segmentation

    run, views, tests, score = run_and_scorer(args.run, args.gt)

    rows, out = [], {"machine": machine(), "run": str(run.path)}
    seg = run.require_segmentation()
    C = adjacency(load_masks(run.config.data.masks, views))
    labels, _ = seg.label(run.gaussians)
    means = run.gaussians.means.detach().numpy()
    lut = merge_table(C, labels, means, size=seg.num_classes)
    out["post_hoc"] = {
        "before": score(seg),
        "after": score(seg, lut),
        "merged": {int(j): int(lut[j]) for j in np.flatnonzero(lut != np.arange(len(lut)))},
    }
    rows += [
        {"how": f"post-hoc, {k}", **{m: round(v, 4) for m, v in out["post_hoc"][k].items()}}
        for k in ("before", "after")
    ]
    raw = load_masks(Path(args.run) / "masks", views)
    for enc in (0.0, 0.6):
        res = associate_masks(views, run.gaussians, raw, AssociateParams(enclose=enc))
        lab, prob = lift_labels(views, run.gaussians, res.masks, progress=False)
        s = score(Segmentation(None, labels=lab.astype(np.int32), prob=prob))
        out[f"lifted_enclose_{enc}"] = {
            **s,
            "objects": res.stats["objects"],
            "merged": res.stats["enclosed_parts_merged"],
        }
        rows.append({"how": f"lifted, enclose {enc}", **{m: round(v, 4) for m, v in s.items()}})
    seg_file = Path(args.run) / "seg_metrics.json"  # the trained run's own score (the pipeline's, merge on)
    if seg_file.exists():
        import json

        trained = json.loads(seg_file.read_text())
        out["trained"] = {"miou": trained["miou"], "mbiou": trained["mbiou"]}
        rows.insert(0, {"how": "trained run (enclose 0.6)", **{m: round(v, 4) for m, v in out["trained"].items()}})
    path = save(args.name, out)
    print(table(rows, ["how", "miou", "mbiou"]))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
