"""Object-editing benchmark on a real segmented run of the built-in scene (200x150), held-out views.

Builds (or reuses) the scene and a segmented run (`gsgroup run --object-masks gt_mask`), then runs each
edit through the Python API and scores it on the test views:

  remove     share of the object's former pixels that still show its id; PSNR outside its dilated
             footprint against the pre-edit render
  inpaint    PSNR inside the hole against the ground truth without the object (scene/without/<id>),
             inpaint vs plain removal (the margin); PSNR outside the hole vs pre-edit; multi-view
             consistency (PSNR of the fine-tuned render against each training view's inpainting)
  recolor    circular mean hue error of the object's pixels; PSNR outside the footprint vs pre-edit
  transform  / compose: rendered (alpha-weighted) centroid of the moved object vs the same object
             rendered from the equivalent camera (exact for a similarity transform), in pixels
  export     the PLY reloads with the Inria header and the object's Gaussian count
  SH rotation max |eval(rotated, d) - eval(original, R^T d)| over random coefficients and directions

Writes benchmarks/results/edit.json (atomically) and prints a table.

    python benchmarks/edit.py [--work /tmp/edit_dev] [--run RUN --scene SCENE] [--iterations 300]
"""

from __future__ import annotations

import argparse
import colorsys
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, save, table
from gsgroup.run import Run  # noqa: E402


def build(work: Path) -> tuple[Path, Path]:
    from gsgroup.data.synthetic import make_scene
    from gsgroup.workflow import PipelineConfig, run_pipeline

    scene, run = work / "scene200", work / "run200"
    if not (scene / "scene.json").exists():
        make_scene(scene, seed=0, width=200, height=150, n_views=40, progress=False)
    if not (run / Run.CLASSIFIER).exists():
        run_pipeline(
            PipelineConfig(
                str(scene),
                str(run),
                eval=True,
                object_masks=str(scene / "gt_mask"),
                recon_iterations=2000,
                id_iterations=600,
                progress=False,
            )
        )
    return scene, run


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="/tmp/edit_dev")
    ap.add_argument("--run", default=None)
    ap.add_argument("--scene", default=None)
    ap.add_argument("--iterations", type=int, default=300, help="inpaint fine-tuning steps")
    ap.add_argument("--remove-id", type=int, default=5)
    ap.add_argument("--recolor-id", type=int, default=3)
    ap.add_argument("--move-id", type=int, default=4)
    args = ap.parse_args()

    import cv2
    import numpy as np
    import torch

    from gsgroup import edit
    from gsgroup.edit import ops
    from gsgroup.edit.inpainting import InpaintOptions, dilate_mask, dilation_px, hole_mask, psnr_in
    from gsgroup.edit.shrot import euler_deg_to_matrix, rotate_sh
    from gsgroup.model import load_ply
    from gsgroup.model.ply import ply_property_names
    from gsgroup.model.sh import eval_sh
    from gsgroup.render import rasterize
    from gsgroup.segment.idmaps import render_ids
    from gsgroup.train.trainer import render_view, view_tensors

    def render_rgb(g, view, background):
        return render_view(g, view_tensors(view), g.sh_degree, background=background).image.clamp(0, 1).numpy()

    def id_map(g, seg, view, background):
        return render_ids(g, view_tensors(view), seg, background=background).ids

    if args.run:
        run, scene = Path(args.run), Path(args.scene)
    else:
        scene, run = build(Path(args.work))
    data = Run.open(run)
    seg = data.segmentation
    views = data.views("test")
    bg = data.backdrop
    px = dilation_px(views[0].width, None)
    before = {v.name: render_rgb(data.gaussians, v, bg) for v in views}
    ids0 = {v.name: id_map(data.gaussians, seg, v, bg) for v in views}
    rows, results = [], {"machine": machine(), "run": str(run), "test_views": [v.name for v in views], "dilate_px": px}

    def read_rgb(path):
        return cv2.imread(str(path))[:, :, ::-1].astype(np.float32) / 255.0

    # ---- remove
    oid = args.remove_id
    sel = edit.select(data, objects=[oid])
    g_rm, seg_rm = ops.remove(data.gaussians, seg, sel.mask)
    still, total, outs = 0, 0, []
    for v in views:
        obj = ids0[v.name] == oid
        if obj.sum() < 10:
            continue
        after_ids = id_map(g_rm, seg_rm, v, bg)
        still += int((after_ids[obj] == oid).sum())
        total += int(obj.sum())
        outs.append(psnr_in(render_rgb(g_rm, v, bg), before[v.name], ~dilate_mask(obj, px)))
    r = {
        "edit": "remove",
        "object": oid,
        "gaussians": int(sel.mask.sum()),
        "interior_added": sel.counts["added_by_cleanup"],
        "id_pixels_left_pct": 100.0 * still / max(total, 1),
        "psnr_outside_min": min(outs),
        "psnr_outside_mean": float(np.mean(outs)),
        "pass": still / max(total, 1) < 0.02 and min(outs) >= 35,
    }
    results["remove"] = r
    rows.append(
        {
            "edit": "remove",
            "metric": "id px left %, PSNR outside (min)",
            "value": f"{r['id_pixels_left_pct']:.2f} %, {r['psnr_outside_min']:.2f} dB",
            "pass": r["pass"],
        }
    )

    # ---- inpaint
    t0 = time.perf_counter()
    inpainted = edit.inpaint(data, sel, InpaintOptions(iterations=args.iterations))
    g_in, info = inpainted.gaussians, inpainted.edit
    seconds = time.perf_counter() - t0
    p_in, p_rm, p_out = [], [], []
    for v in views:
        hole = hole_mask(ids0[v.name], [oid], px)
        if (ids0[v.name] == oid).sum() < 10:
            continue
        gt = read_rgb(scene / "without" / str(oid) / f"{v.name}.png")
        img = render_rgb(g_in, v, bg)
        p_in.append(psnr_in(img, gt, hole))
        p_rm.append(psnr_in(render_rgb(g_rm, v, bg), gt, hole))
        p_out.append(psnr_in(img, before[v.name], ~dilate_mask(hole, px)))
    margin = float(np.mean(p_in) - np.mean(p_rm))
    r = {
        "edit": "inpaint",
        "object": oid,
        "psnr_hole_inpaint": float(np.mean(p_in)),
        "psnr_hole_removal": float(np.mean(p_rm)),
        "margin_db": margin,
        "psnr_hole_inpaint_per_view": p_in,
        "psnr_hole_removal_per_view": p_rm,
        "psnr_outside_min": min(p_out),
        "new_gaussians": info["new_gaussians"],
        "iterations": args.iterations,
        "seconds": round(seconds, 1),
        "consistency": {k: v for k, v in info["consistency"].items() if k != "per_view"},
        "consistency_seeded": info["consistency_seeded"],
        "pass": margin > 0 and min(p_out) >= 35,
    }
    results["inpaint"] = r
    rows.append(
        {
            "edit": "inpaint",
            "metric": "hole PSNR vs GT: inpaint / removal (margin); outside min",
            "value": f"{r['psnr_hole_inpaint']:.2f} / {r['psnr_hole_removal']:.2f} (+{margin:.2f}); {r['psnr_outside_min']:.2f} dB",
            "pass": r["pass"],
        }
    )
    rows.append(
        {
            "edit": "inpaint",
            "metric": "multi-view consistency PSNR mean ± std (train views)",
            "value": f"{r['consistency']['psnr_mean']:.2f} ± {r['consistency']['psnr_std']:.2f} dB over {r['consistency']['views']}",
            "pass": "",
        }
    )

    # ---- recolor
    oid = args.recolor_id
    target = np.array([0x2A, 0x6F, 0xDB]) / 255.0
    sel = edit.select(data, objects=[oid])
    g_rc = ops.recolor(data.gaussians, sel.mask, target)
    th = colorsys.rgb_to_hsv(*target)[0] * 360
    errs, outs = [], []
    for v in views:
        obj = ids0[v.name] == oid
        if obj.sum() < 10:
            continue
        img = render_rgb(g_rc, v, bg)
        hsv = np.array([colorsys.rgb_to_hsv(*p) for p in img[obj]])
        ang = hsv[:, 0] * 2 * np.pi
        hue = math.degrees(math.atan2((hsv[:, 1] * np.sin(ang)).sum(), (hsv[:, 1] * np.cos(ang)).sum())) % 360
        errs.append(abs((hue - th + 180) % 360 - 180))
        outs.append(psnr_in(img, before[v.name], ~dilate_mask(obj, px)))
    r = {
        "edit": "recolor",
        "object": oid,
        "target": "#2a6fdb",
        "hue_error_deg_max": max(errs),
        "psnr_outside_min": min(outs),
        "pass": max(errs) < 10 and min(outs) >= 40,
    }
    results["recolor"] = r
    rows.append(
        {
            "edit": "recolor",
            "metric": "hue error (max), PSNR outside (min)",
            "value": f"{max(errs):.2f} deg, {min(outs):.2f} dB",
            "pass": r["pass"],
        }
    )

    # ---- transform / compose: centroid against the equivalent camera
    def alpha_centroid(g, mask, V, K, w, h):
        sub = g.select(torch.from_numpy(mask))
        m, q, s, o = sub.activated()
        a = rasterize(m, q, s, o, torch.ones(len(sub), 1), torch.from_numpy(V).float(), K, w, h).alpha[..., 0].numpy()
        ys, xs = np.mgrid[0:h, 0:w] + 0.5
        return np.array([(a * xs).sum(), (a * ys).sum()]) / max(a.sum(), 1e-9)

    oid = args.move_id
    sel = edit.select(data, objects=[oid])
    tf = ops.Transform(
        euler_deg_to_matrix(0, 0, 40), np.array([0.25, -0.15, 0.1]), 1.15, ops.centroid(data.gaussians, sel.mask)
    )
    g_tf = ops.transform(data.gaussians, sel.mask, tf)
    g_cp, _, _ = ops.compose(
        data.gaussians,
        seg,
        ops.transform(data.gaussians.select(torch.from_numpy(sel.mask)), None, tf),
        data.labels[0][sel.mask],
        [oid],
    )
    new_mask = np.r_[np.zeros(len(data.gaussians), bool), np.ones(int(sel.mask.sum()), bool)]
    M = tf.matrix()
    for name, g_e, mask_e in (("transform", g_tf, sel.mask), ("compose", g_cp, new_mask)):
        errs = []
        for v in views:
            V = np.asarray(v.viewmat, np.float64)
            ref = np.eye(4)
            ref[:3, :3] = V[:3, :3] @ (M[:3, :3] / tf.s)
            ref[:3, 3] = (V[:3, :3] @ M[:3, 3] + V[:3, 3]) / tf.s
            K = torch.from_numpy(np.asarray(v.K, np.float32))
            got = alpha_centroid(g_e, mask_e, V, K, v.width, v.height)
            want = alpha_centroid(data.gaussians, sel.mask, ref, K, v.width, v.height)
            errs.append(float(np.linalg.norm(got - want)))
        results[name] = {
            "edit": name,
            "object": oid,
            "centroid_error_px_max": max(errs),
            "per_view": errs,
            "pass": max(errs) < 2,
        }
        rows.append(
            {
                "edit": name,
                "metric": "rendered centroid error (max px)",
                "value": f"{max(errs):.3f}",
                "pass": max(errs) < 2,
            }
        )

    # ---- export
    out = Path(args.work) / "bench_export.ply"
    info = edit.export(data, edit.select(data, objects=[args.move_id]), out, plain=True, force=True)
    raw = out.read_bytes()
    props = [ln.split()[2] for ln in raw[: raw.index(b"end_header")].decode().splitlines() if ln.startswith("property")]
    g_ex = load_ply(out)
    ok = props == ply_property_names(g_ex.sh_degree, 0) and len(g_ex) == info["gaussians"]
    results["export"] = {
        "edit": "export",
        "object": args.move_id,
        "gaussians": len(g_ex),
        "inria_header": ok,
        "pass": ok,
    }
    rows.append(
        {"edit": "export", "metric": "reloads, Inria header, count", "value": f"{len(g_ex)} Gaussians", "pass": ok}
    )

    # ---- SH rotation
    R = euler_deg_to_matrix(33, -71, 128)
    c = torch.randn(2000, 16, 3, dtype=torch.float64) * 0.2
    d = torch.nn.functional.normalize(torch.randn(2000, 3, dtype=torch.float64), dim=1)
    rot = c.clone()
    rot[:, 1:] = rotate_sh(c[:, 1:], R)
    err = float((eval_sh(3, rot, d) - eval_sh(3, c, d @ torch.from_numpy(R))).abs().max())
    results["sh_rotation"] = {"max_abs_error": err, "pass": err < 1e-9}
    rows.append({"edit": "SH rotation", "metric": "max |f'(d) - f(R^T d)|", "value": f"{err:.2e}", "pass": err < 1e-9})

    path = save("edit", results)
    print(table(rows, ["edit", "metric", "value", "pass"]))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
