"""The demo: the whole pipeline on the built-in scene, four edits of its sphere, an HTML report."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np

from . import edit
from .data.masks import read_mask
from .data.synthetic import make_scene
from .fileio import write_image
from .report import write_report
from .run import Run
from .segment.idmaps import palette
from .workflow import PipelineConfig, run_pipeline


def run_demo(out: str | Path, cfg: PipelineConfig | None = None) -> Path:
    """Build the built-in scene in out/scene, run the pipeline into out/run (``cfg`` sets its
    options; data, out, eval and the mask folders are the demo's), edit the sphere into out/edits/
    and write out/report.html. Returns the report's path."""
    out = Path(out)
    cfg = cfg or PipelineConfig()
    scene_dir, run_dir = out / "scene", out / "run"
    if cfg.force and out.exists():
        shutil.rmtree(out)
    if not (scene_dir / "scene.json").exists():
        print(f"building the built-in scene in {scene_dir}")
        make_scene(scene_dir, seed=cfg.seed, progress=cfg.progress)
    summary = run_pipeline(
        replace(
            cfg,
            data=str(scene_dir),
            out=str(run_dir),
            eval=True,
            resolution=None,
            masks=None,
            object_masks=None,
            gt=None,
            force=False,
        )
    )
    rec, seg = summary["reconstruction"], summary["segmentation"]
    print(
        f"test PSNR {rec['psnr']:.2f} dB, SSIM {rec['ssim']:.4f}; segmentation mIoU {seg['miou']:.3f}, "
        f"boundary IoU {seg['mbiou']:.3f}"
    )
    recon_images, seg_images, mask_images = _run_images(scene_dir, run_dir, out)
    pick, edit_images = _demo_edits(scene_dir, Run.open(run_dir), out)
    report = write_report(
        out / "report.html",
        "gsgroup demo: reconstruct, group, segment, edit",
        [
            {"title": "Reconstruction (held-out test views)", "metrics": rec, "images": recon_images},
            {"title": "2D masks before and after association", "images": mask_images},
            {
                "title": "3D segmentation (held-out test views)",
                "metrics": seg,
                "text": "Per-pixel object ids rendered from the Gaussians' identity encodings, scored against the "
                "scene's exact ground-truth masks (Hungarian matching).",
                "images": seg_images,
            },
            {
                "title": "Edits of the sphere, picked by one pixel (before | after)",
                "images": edit_images,
                "text": "gsgroup edit remove --raw / recolor / inpaint / restyle --effect watercolor RUN " + pick + "; "
                "each wrote a new run folder under edits/ (remove without --raw also clears the shadow and the "
                "never-seen floor: the same scene fill as inpaint). Selecting by text (gsgroup select RUN --text 'red ball') "
                "needs a Grounding DINO checkpoint: pip install 'gsgroup[text]', download "
                "IDEA-Research/grounding-dino-tiny once and pass --detector-checkpoint DIR.",
            },
            {
                "title": "Removal and inpainting against the truth without the sphere (held-out test views)",
                "images": _truth_comparison(scene_dir, Run.open(run_dir), out),
                "text": "residue: footprint pixels closer to the pre-edit render than to the truth without the "
                "sphere; hole: PSNR inside the footprint against that truth (the scene renders it exactly).",
            },
        ],
    )
    print(f"open {report}")
    print(f"explore and edit the objects in your browser: gsgroup view {run_dir}")
    return report


def _run_images(scene_dir: Path, run_dir: Path, out: Path) -> tuple[list, list, list]:
    """The report's (caption, image) lists: test views against their renders, object overlays with the
    identity features, and the first three views' masks before and after association."""
    renders = run_dir / "renders"
    names = sorted(p.stem for p in (renders / "rgb").glob("*.png"))
    recon_images, seg_images, mask_images = [], [], []
    for name in names:
        recon_images += [
            (f"{name} ground truth", scene_dir / "images" / f"{name}.png"),
            (f"{name} render", renders / "rgb" / f"{name}.png"),
        ]
        seg_images += [
            (f"{name} objects", renders / "overlay" / f"{name}.png"),
            (f"{name} identity features (PCA)", renders / "features" / f"{name}.png"),
        ]
    for name in names[:3]:
        mask_images += [
            (f"{name} classical masks (ids differ per view)", _colorize(run_dir / "masks" / f"{name}.png", out)),
            (f"{name} associated (one id per object)", _colorize(run_dir / "object_mask" / f"{name}.png", out)),
        ]
    return recon_images, seg_images, mask_images


def _demo_edits(scene_dir: Path, run: Run, out: Path) -> tuple[str, list]:
    """Remove, recolor, inpaint and restyle (watercolor) the red sphere (object 1 of the built-in scene), picked by one pixel
    (the middle of its ground-truth mask in the first test view; the selection takes the parts the
    masks split off it too). Returns the selection text and the report's before/after images."""
    import cv2

    view = "view_000"
    inside = cv2.distanceTransform((read_mask(scene_dir / "gt_mask" / f"{view}.png") == 1).astype(np.uint8), 2, 3)
    y, x = np.unravel_index(int(np.argmax(inside)), inside.shape)
    images, sel = [], None
    edits = {
        "remove": lambda s: edit.remove(run, s),
        "recolor": lambda s: edit.recolor(run, s, "#2a6fdb"),
        "inpaint": lambda s: edit.inpaint(run, s),
        "restyle": lambda s: edit.restyle(run, s, edit.RestyleOptions(effect="watercolor", iterations=300)),
    }
    for op, apply in edits.items():
        target = out / "edits" / op
        if not (target / Run.EDIT).exists():
            print(f"edit {op} --pick {view}:{x},{y} -> {target}")
            sel = sel or edit.select(run, pick=(view, int(x), int(y)))
            edit.save(apply(sel), target, force=True)
        images += [(f"{op}: {p.stem}", p) for p in sorted((target / "before_after").glob("*.png"))[:2]]
    return f"--pick {view}:{x},{y}", images


def _truth_comparison(scene_dir: Path, run: Run, out: Path, oid: int = 1, count: int = 2) -> list:
    """Before | remove | inpaint | truth without the object, for the first ``count`` test views showing
    it, with the residue and hole PSNR (edit/quality.py) in the captions."""
    from .edit.api import render_rgb
    from .edit.inpainting import dilation_px
    from .edit.quality import combine, truth_images, view_scores

    edited = {op: Run.open(out / "edits" / op) for op in ("remove", "inpaint")}
    images = []
    for v in run.views("test"):
        truth, foot, changed = truth_images(scene_dir, oid, v.name)
        if foot.sum() < 50 or len(images) >= count:
            continue
        before = render_rgb(run, v)
        after = {op: render_rgb(r, v) for op, r in edited.items()}
        s = {
            op: combine([view_scores(before, a, truth, foot, changed, dilation_px(v.width, None))])
            for op, a in after.items()
        }
        gap = np.ones((before.shape[0], 2, 3), np.float32)
        strip = np.concatenate([before, gap, after["remove"], gap, after["inpaint"], gap, truth], axis=1)
        path = out / "report_files" / f"truth_{v.name}.png"
        write_image(path, (np.clip(strip, 0, 1) * 255 + 0.5).astype(np.uint8))
        caption = (
            f"{v.name}: before | remove --raw (residue {s['remove']['residue_pct']:.1f}%, "
            f"hole {s['remove']['hole_db']:.1f} dB) | inpaint = remove (residue {s['inpaint']['residue_pct']:.1f}%, "
            f"hole {s['inpaint']['hole_db']:.1f} dB) | truth without the sphere"
        )
        images.append((caption, path))
    return images


def _colorize(mask_png: Path, out: Path) -> Path:
    """A color picture of a label PNG, for the report (written under out/report_files)."""
    ids = read_mask(mask_png)
    path = out / "report_files" / f"{mask_png.parent.name}_{mask_png.stem}.png"
    write_image(path, palette(int(ids.max()) + 1)[ids])
    return path
