"""Removal with the shadow attributed by the estimated light (issue #12, ``edit/shadows.py``) against the
built-in scene's truth without the object.

Selects the object as the demo does (one pixel: the middle of its ground-truth mask in view_000, or
--objects), runs the scene fill (``edit.inpaint`` with its defaults = ``gsgroup edit remove``) once per
--seeds, and scores it on the test views with ``gsgroup/edit/quality.py`` (residue %, hole dB, outside
dB; see benchmarks/edit_truth.py), per view too; --before DIR also scores finished edits made before
the change (DIR/remove: the raw removal, DIR/inpaint: an older scene fill); --without also runs today's
fill without the light (``shadows.USE_LIGHT = False``: shadows attributed by distance alone). The light the
fill estimated (in its edit.json) is compared with scene.json's ``light.direction_to_light`` (used only
here, as the reference). Writes benchmarks/results/<--name>.json and prints a table.

    python benchmarks/edit_shadow_light.py --run /tmp/demo_new/run --scene /tmp/demo_new/scene --object 1 \\
        --before /tmp/demo_new/edits --without --out /tmp/h12d/demo --name edit_shadow_light_demo
    python benchmarks/edit_shadow_light.py --run /tmp/h12/run200 --scene /tmp/h12/scene200 --object 5 \\
        --objects --out /tmp/h12d/obj5 --name edit_shadow_light_builtin5
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, save, table
from edit_truth import gt_pick


def per_view(edited, data, scene: Path, oid: int) -> dict:
    """quality.combine over the test views, plus each view's own residue %, hole dB and outside dB."""
    from gsgroup.edit.api import render_rgb
    from gsgroup.edit.inpainting import dilation_px
    from gsgroup.edit.quality import combine, truth_images, view_scores

    views, named = [], {}
    for v in data.views("test"):
        truth, foot, changed = truth_images(scene, oid, v.name)
        if foot.sum() < 10:
            continue
        s = view_scores(render_rgb(data, v), render_rgb(edited, v), truth, foot, changed, dilation_px(v.width, None))
        views.append(s)
        one = combine([s])
        named[v.name] = {k: round(one[k], 3) for k in ("residue_pct", "hole_db", "outside_db_min")}
    out = combine(views)
    out["per_view"] = named
    return out


def angle(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.degrees(np.arccos(np.clip(a @ b / np.linalg.norm(a) / np.linalg.norm(b), -1, 1))))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True)
    ap.add_argument("--scene", required=True)
    ap.add_argument("--object", type=int, default=1, help="the scene's ground-truth id of the object")
    ap.add_argument("--objects", action="store_true", help="select by id (--object) instead of one pixel")
    ap.add_argument("--before", default=None, help="finished edits to score too: DIR/remove, DIR/inpaint")
    ap.add_argument("--out", required=True, help="folder for the edited runs (outside the run and scene)")
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--name", default="edit_shadow_light")
    ap.add_argument("--without", action="store_true", help="also run the fill without the light (shadows.USE_LIGHT)")
    args = ap.parse_args()

    from gsgroup import edit
    from gsgroup.edit.inpainting import InpaintOptions
    from gsgroup.run import Run

    data, scene, oid = Run.open(args.run), Path(args.scene), args.object
    truth_light = json.loads((scene / "scene.json").read_text())["light"]["direction_to_light"]
    how = {"objects": [oid]} if args.objects else {"pick": gt_pick(scene, oid, "view_000")}
    t0 = time.perf_counter()
    sel = edit.select(data, **how)
    res = {"machine": machine(), "run": args.run, "scene": args.scene, "object": oid, "select": str(how)}
    res.update(ids=sel.ids, gaussians=int(sel.mask.sum()), select_seconds=round(time.perf_counter() - t0, 1))
    rows = []
    if args.before:
        for op, label in (("remove", "remove --raw (before)"), ("inpaint", "scene fill, no light (before)")):
            res[label] = per_view(Run.open(Path(args.before) / op), data, scene, oid)
            rows.append((label, res[label]))
    from gsgroup.edit import shadows

    for use, seed in [(u, s) for s in range(args.seeds) for u in ([False, True] if args.without else [True])]:
        shadows.USE_LIGHT = use
        t = time.perf_counter()
        ed = edit.inpaint(data, sel, InpaintOptions(seed=seed))
        seconds = round(time.perf_counter() - t, 1)
        tag = "light" if use else "nolight"
        edit.save(ed, Path(args.out) / f"inpaint_{tag}_seed{seed}", force=True)
        label = f"scene fill {'with' if use else 'without'} the light (seed {seed})"
        res[label] = per_view(ed, data, scene, oid)
        light = ed.edit.get("light")
        res[label].update(seconds=seconds, light=light, shadow_pixels=ed.edit["shadow_pixels"])
        if light:
            res[label]["light_error_deg"] = round(angle(light["direction"], truth_light), 2)
        res[label]["consistency"] = {k: v for k, v in ed.edit["consistency"].items() if k != "per_view"}
        rows.append((label, res[label]))
        print(label, {k: res[label][k] for k in ("residue_pct", "hole_db", "outside_db_min")}, flush=True)
        save(args.name, {**res, "light_truth": truth_light})  # each finished fill, in case of a stop
    res["light_truth"] = truth_light
    path = save(args.name, res)
    cols = ["edit", "residue %", "hole dB", "outside dB (min)", "light error"]
    focus = "view_008"
    cols += [f"{focus} residue %", f"{focus} hole dB"]
    print(table([_row(k, r, focus) for k, r in rows], cols))
    print(f"wrote {path}")
    return 0


def _row(label: str, r: dict, focus: str) -> dict:
    v = r["per_view"].get(focus, {})
    return {
        "edit": label,
        "residue %": f"{r['residue_pct']:.2f}",
        "hole dB": f"{r['hole_db']:.2f}",
        "outside dB (min)": f"{r['outside_db_min']:.1f}",
        "light error": f"{r['light_error_deg']:.2f} deg{'' if r['light']['confident'] else ' (not used)'}"
        if "light_error_deg" in r
        else "",
        f"{focus} residue %": f"{v['residue_pct']:.2f}" if v else "",
        f"{focus} hole dB": f"{v['hole_db']:.2f}" if v else "",
    }


if __name__ == "__main__":
    sys.exit(main())
