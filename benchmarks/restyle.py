"""Restyle benchmark on a segmented run of the built-in scene (200x150): the red sphere, selected as the demo
does (the ids covering its ground-truth mask in view_000), restyled with every weight-free editor.

Per editor, on the training views:
  fit          PSNR inside the footprint of the restyled render against the last 2D targets
  consistency  PSNR inside the footprint against each view's first 2D edit (of the pre-edit render):
               mean and spread over views, as inpainting reports it (per-view 2D edits disagree, one 3D
               object cannot match them all)
  outside      PSNR outside the footprint (dilated 2% of the width) against the pre-edit render (>= 40 dB)
and on the held-out test views: the 2D edit of the pre-edit test render against the restyled render,
inside the footprint (does the 3D edit generalise to views the fit never saw?).
The iterative dataset update (targets re-made from the current renders every 200 steps) is measured on
watercolor ("watercolor-refresh"); the filters run without it by default.

Writes benchmarks/results/restyle.json and docs/restyle_<editor>.png (before | after, the object in one test
view, enlarged 3x).

    python benchmarks/restyle.py [--work /tmp/restyle_dev] [--run RUN --scene SCENE] [--iterations 600]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, save, table
from gsgroup.run import Run  # noqa: E402

DOCS = Path(__file__).resolve().parent.parent / "docs"


def style_picture(path: Path) -> Path:
    """A procedural 'painting' (bronze-and-teal swirls) used as the style image."""
    import cv2
    import numpy as np

    y, x = np.mgrid[0:128, 0:128] / 128.0
    t = np.sin(9 * x + 4 * np.sin(6 * y)) * 0.5 + 0.5
    a, b = np.array([0.80, 0.50, 0.20]), np.array([0.10, 0.45, 0.50])
    img = t[..., None] * a + (1 - t[..., None]) * b
    cv2.imwrite(str(path), (img[..., ::-1] * 255).astype(np.uint8))
    return path


def write_picture(path: Path, hole, after) -> None:
    """before | after of one view, cropped around the object's footprint and enlarged 3x (small PNG)."""
    import cv2
    import numpy as np

    ys, xs = np.nonzero(hole.hole)
    h, w = hole.hole.shape
    m = max(8, (ys.max() - ys.min()) // 2)
    y0, y1, x0, x1 = max(0, ys.min() - m), min(h, ys.max() + m), max(0, xs.min() - m), min(w, xs.max() + m)
    crops = [img[y0:y1, x0:x1] for img in (hole.rgb0, after)]
    gap = np.ones((y1 - y0, 1, 3), np.float32)
    pic = np.concatenate([crops[0], gap, crops[1]], axis=1)
    pic = cv2.resize(pic, None, fx=3, fy=3, interpolation=cv2.INTER_NEAREST)
    cv2.imwrite(str(path), (np.clip(pic, 0, 1)[..., ::-1] * 255 + 0.5).astype(np.uint8))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="/tmp/restyle_dev")
    ap.add_argument("--run", default=None)
    ap.add_argument("--scene", default=None)
    ap.add_argument("--iterations", type=int, default=600)
    ap.add_argument("--object", type=int, default=1, help="ground-truth id of the object (1 = the sphere)")
    ap.add_argument("--editors", default="watercolor,pencil,oil,cartoon,style,style-flat,watercolor-refresh")
    args = ap.parse_args()

    import cv2
    import numpy as np

    from gsgroup import edit
    from gsgroup.edit.inpainting import psnr_in
    from gsgroup.edit.restyle import Editor, RestyleOptions, footprints, render_all, restyle

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if args.run:
        run, scene = Path(args.run), Path(args.scene)
    else:
        from edit import build

        scene, run = build(work)
    data = Run.open(run)
    gt = cv2.imread(str(scene / "gt_mask" / "view_000.png"), cv2.IMREAD_UNCHANGED) == args.object
    sel = edit.select(data, mask=("view_000", gt))
    style = str(style_picture(work / "style.png"))
    test = footprints(data, sel, data.views("test"))
    results = {"machine": machine(), "run": str(run), "object": args.object, "ids": sel.ids, "editors": {}}
    rows = []
    for name in args.editors.split(","):
        kw = {"iterations": args.iterations}
        if name.startswith("style"):
            kw.update(style_image=style, texture="none" if name == "style-flat" else "stylize")
        else:
            kw.update(effect=name.split("-")[0], refresh_every=200 if name.endswith("-refresh") else None)
        opts = RestyleOptions(**kw)
        t0 = time.perf_counter()
        out = restyle(data, sel, opts)
        seconds = time.perf_counter() - t0
        s = out.edit["restyle"]
        # held-out views: the 2D edit of the pre-edit test render vs the restyled render, inside the footprint
        wanted = Editor(opts).edit([h.rgb0 for h in test], [h.hole for h in test])
        got = render_all(out.gaussians, [h.view for h in test], data.backdrop)
        held = [psnr_in(a, b, h.hole) for a, b, h in zip(got, wanted, test)]
        r = {
            "fit_psnr": s["fit"]["psnr_mean"],
            "consistency_psnr": s["consistency"]["psnr_mean"],
            "consistency_std": s["consistency"]["psnr_std"],
            "outside_psnr": s["outside"]["psnr_mean"],
            "outside_psnr_min": s["outside"]["psnr_min"],
            "test_psnr": float(np.mean(held)),
            "views": s["views"],
            "seconds": round(seconds, 1),
            "options": opts.describe(),
        }
        results["editors"][name] = r
        rows.append({"editor": name, **{k: v for k, v in r.items() if k != "options"}})
        print(rows[-1], flush=True)
        if not name.endswith("-refresh") and name != "style-flat":
            write_picture(DOCS / f"restyle_{name}.png", test[0], got[0])
    results["test_view"] = test[0].view.name if test else None
    path = save("restyle", results)
    cols = ["editor", "fit_psnr", "consistency_psnr", "consistency_std", "outside_psnr", "outside_psnr_min"]
    print(table(rows, cols + ["test_psnr", "views", "seconds"]))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
