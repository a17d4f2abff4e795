"""Removal and inpainting against the built-in scene's exact truth without the object (issue #12).

On a segmented run of the built-in scene (built as in benchmarks/edit.py, or --run/--scene), for one
object and the held-out test views, with the footprint = the scene's ground-truth mask of the object:

  residue %     footprint pixels that still look like the object: the edited render is closer to the
                pre-edit render than to the truth without the object (scene/without/<id>)
  outside dB    PSNR outside what the object changed in the truth (footprint and shadow, dilated 2% of
                the width) against the pre-edit render
  hole dB       PSNR inside the footprint against the truth without the object
  consistency   PSNR of the filled render against each training view's 2D target inside its hole

"before": the classifier-only selection (--no-votes) and the old fill (--no-scene-fill: Telea on the
pre-edit render, new Gaussians fitted alone); "after": the defaults. `remove --raw` only deletes the
selected Gaussians; `remove` (default) also clears the shadow and the never-seen surface with the scene
fill, the same computation as `inpaint` with its defaults, so one set of runs scores both. Inpainting
runs --seeds times (the fit's seed; one reconstruction), and the table shows medians. Also compares 2D
inpainters (Telea, Navier-Stokes; --skip-ns), --seeds runs each, inside the scene fill.
Writes benchmarks/results/<--name>.json (default edit_truth).

    python benchmarks/edit_truth.py [--work /tmp/edit_dev] [--object 5] [--seeds 3] [--iterations 300]
    python benchmarks/edit_truth.py --run TEX/run --scene TEX/scene --object 1 --pick-gt --skip-old --skip-ns \
        --name edit_truth_textured     # a run of data/synthetic_textured.py's scene, classical masks
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, save, table


def scores(edited, data, scene: Path, oid: int) -> dict:
    """Residue %, outside dB (min over views), hole dB (mean) of an edited run (gsgroup/edit/quality.py)."""
    from gsgroup.edit.api import render_rgb
    from gsgroup.edit.inpainting import dilation_px
    from gsgroup.edit.quality import combine, truth_images, view_scores

    per = []
    for v in data.views("test"):
        truth, foot, changed = truth_images(scene, oid, v.name)
        if foot.sum() < 10:
            continue
        before, after = render_rgb(data, v), render_rgb(edited, v)
        per.append(view_scores(before, after, truth, foot, changed, dilation_px(v.width, None)))
    return combine(per)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="/tmp/edit_dev")
    ap.add_argument("--run", default=None)
    ap.add_argument("--scene", default=None)
    ap.add_argument("--object", type=int, default=5, help="object id (the scene's ground-truth id)")
    ap.add_argument("--ids", default=None, help="run ids of the object (default: --object)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--iterations", type=int, default=300)
    ap.add_argument("--skip-old", action="store_true", help="skip the old fill (before)")
    ap.add_argument("--skip-ns", action="store_true", help="skip the Navier-Stokes comparison")
    ap.add_argument("--pick-gt", action="store_true", help="select by one pixel: the middle of --object's gt mask")
    ap.add_argument("--name", default="edit_truth", help="results file name")
    ap.add_argument("--remove-only", action="store_true", help="only the raw removals (trimmed and split straddlers)")
    ap.add_argument("--seed", type=int, default=None, help="only this fit seed (run seeds in parallel, then --combine)")
    ap.add_argument("--combine", default=None, help="medians over files NAME_seed*.json written with --seed")
    ap.add_argument("--score-edits", default=None, help="only score DIR/remove and DIR/inpaint (e.g. DEMO/edits)")
    args = ap.parse_args()
    if args.score_edits:
        return score_edits(args)
    if args.combine:
        return combine_seeds(args)

    import numpy as np

    from gsgroup import edit
    from gsgroup.edit.inpainting import InpaintOptions
    from gsgroup.run import Run

    if args.run:
        run, scene = Path(args.run), Path(args.scene)
    else:
        from edit import build

        scene, run = build(Path(args.work))
    data = Run.open(run)
    oid = args.object
    how = {"objects": [int(i) for i in args.ids.split(",")] if args.ids else [oid]}
    if args.pick_gt:
        how = {"pick": gt_pick(Path(scene), oid, data.views("test")[0].name)}
    results = {"machine": machine(), "run": str(run), "object": oid, "select": how, "iterations": args.iterations}
    rows = []
    plain = edit.select(data, **how, options=edit.SelectOptions(votes=False))
    t0 = time.perf_counter()
    sel = edit.select(data, **how)
    results["ids"] = sel.ids
    results["select_seconds"] = round(time.perf_counter() - t0, 1)
    results["selection"] = {"plain": int(plain.mask.sum()), "refined": int(sel.mask.sum()), **sel.counts}
    for name, s in (("before", plain), ("after", sel)):
        r = scores(edit.remove(data, s), data, scene, oid)
        results[f"remove_{name}"] = r
        rows.append({"edit": f"remove --raw ({name})", "seeds": 1, **_fmt(r)})
        print(f"remove --raw ({name})", _fmt(r), results["selection"], flush=True)
    from gsgroup.edit import refine

    refine.SPLIT = True  # straddlers split at their vote share instead of halved (edit/refine.py)
    r = scores(edit.remove(data, sel), data, scene, oid)
    refine.SPLIT = False
    results["remove_after_split"] = r
    rows.append({"edit": "remove --raw (after, straddlers split)", "seeds": 1, **_fmt(r)})
    print("remove --raw (after, split)", _fmt(r), flush=True)
    if args.remove_only:
        path = save(args.name, results)
        print(table(rows, ["edit", "seeds", "residue %", "outside dB (min)", "hole dB", "consistency dB"]))
        print(f"wrote {path}")
        return 0

    def fill(opts_list, label):
        runs = []
        for opts in opts_list:
            t = time.perf_counter()
            ed = edit.inpaint(data, sel if opts.scene_fill else plain, opts)
            r = scores(ed, data, scene, oid)
            r["seconds"] = round(time.perf_counter() - t, 1)
            r["consistency"] = {k: v for k, v in ed.edit["consistency"].items() if k != "per_view"}
            runs.append(r)
        med = {k: float(np.median([r[k] for r in runs])) for k in ("residue_pct", "outside_db_min", "hole_db")}
        med["consistency_psnr_mean"] = float(np.median([r["consistency"]["psnr_mean"] for r in runs]))
        med["consistency_psnr_std"] = float(np.median([r["consistency"]["psnr_std"] for r in runs]))
        results[label] = {"median": med, "runs": runs}
        rows.append({"edit": label, "seeds": len(runs), **_fmt(med)})
        print(label, _fmt(med), flush=True)

    it = args.iterations
    if not args.skip_old:
        fill([InpaintOptions(iterations=it, scene_fill=False)], "inpaint (before: old fill)")
    seeds = [args.seed] if args.seed is not None else range(args.seeds)
    if args.seed is not None:
        args.name, args.skip_ns = f"{args.name}_seed{args.seed}", True
    fill([InpaintOptions(iterations=it, seed=s) for s in seeds], "remove (default) = inpaint (scene fill)")
    if not args.skip_ns:
        opts = [InpaintOptions(iterations=it, inpainter="ns", seed=s) for s in range(args.seeds)]
        fill(opts, "inpaint (scene fill, NS)")
    path = save(args.name, results)
    print(table(rows, ["edit", "seeds", "residue %", "outside dB (min)", "hole dB", "consistency dB"]))
    print(f"wrote {path}")
    return 0


def score_edits(args) -> int:
    """Score finished edits (the demo's: --run DEMO/run --scene DEMO/scene --object 1 --score-edits
    DEMO/edits) and write benchmarks/results/edit_truth_demo.json."""
    from gsgroup.run import Run

    data = Run.open(args.run)
    results, rows = {"machine": machine(), "run": args.run, "object": args.object}, []
    for op in ("remove", "inpaint"):
        edited = Run.open(Path(args.score_edits) / op)
        info = json.loads(edited.file(Run.EDIT).read_text())
        r = scores(edited, data, Path(args.scene), args.object)
        r["selection"] = info["selection"]
        if op == "inpaint":
            r["consistency_psnr_mean"] = info["consistency"]["psnr_mean"]
            r["consistency_psnr_std"] = info["consistency"]["psnr_std"]
        results[op] = r
        rows.append({"edit": op, "seeds": 1, **_fmt(r)})
    path = save("edit_truth_demo", results)
    print(table(rows, ["edit", "seeds", "residue %", "outside dB (min)", "hole dB", "consistency dB"]))
    print(f"wrote {path}")
    return 0


def combine_seeds(args) -> int:
    """Medians over results/<combine>_seed*.json (one fit seed each, same selection and raw removals)."""
    import numpy as np

    from _common import RESULTS

    files = sorted(Path(RESULTS).glob(f"{args.combine}_seed*.json"))
    parts = [json.loads(f.read_text()) for f in files]
    label = "remove (default) = inpaint (scene fill)"
    runs = [r for p in parts for r in p[label]["runs"]]
    med = {k: float(np.median([r[k] for r in runs])) for k in ("residue_pct", "outside_db_min", "hole_db")}
    for k in ("psnr_mean", "psnr_std"):
        med[f"consistency_{k}"] = float(np.median([r["consistency"][k] for r in runs]))
    out = {k: v for k, v in parts[0].items() if k != label}
    out[label] = {"median": med, "runs": runs, "from": [f.name for f in files]}
    rows = [{"edit": f"remove --raw ({n})", "seeds": 1, **_fmt(out[f"remove_{n}"])} for n in ("before", "after")]
    rows.append({"edit": "remove --raw (after, straddlers split)", "seeds": 1, **_fmt(out["remove_after_split"])})
    rows.append({"edit": label, "seeds": len(runs), **_fmt(med)})
    path = save(args.combine, out)
    print(table(rows, ["edit", "seeds", "residue %", "outside dB (min)", "hole dB", "consistency dB"]))
    print(f"wrote {path}")
    return 0


def gt_pick(scene: Path, oid: int, view: str) -> tuple[str, int, int]:
    """(view, x, y): the pixel of view's ground-truth mask of ``oid`` farthest from its border (as the demo picks)."""
    import cv2
    import numpy as np

    from gsgroup.data.masks import read_mask

    inside = cv2.distanceTransform((read_mask(scene / "gt_mask" / f"{view}.png") == oid).astype(np.uint8), 2, 3)
    y, x = np.unravel_index(int(np.argmax(inside)), inside.shape)
    return view, int(x), int(y)


def _fmt(r: dict) -> dict:
    cons = r.get("consistency_psnr_mean")
    return {
        "residue %": f"{r['residue_pct']:.2f}",
        "outside dB (min)": f"{r['outside_db_min']:.1f}",
        "hole dB": f"{r['hole_db']:.2f}",
        "consistency dB": "" if cons is None else f"{cons:.2f} ± {r['consistency_psnr_std']:.2f}",
    }


if __name__ == "__main__":
    sys.exit(main())
