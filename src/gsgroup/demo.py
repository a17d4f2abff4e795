"""The demo: the whole pipeline on the built-in scene, three edits of its sphere, an HTML report."""

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
                "title": "Edits of the sphere, selected by a 2D mask (before | after)",
                "images": edit_images,
                "text": "gsgroup edit remove / recolor / inpaint RUN " + pick + "; each wrote a new run folder "
                "under edits/.",
            },
        ],
    )
    print(f"open {report}")
    print(f"explore and edit the objects in your browser: gsgroup view {run_dir}")
    return report


def _demo_edits(scene_dir: Path, run: Run, out: Path) -> tuple[str, list]:
    """Remove, recolor and inpaint the red sphere (object 1 of the built-in scene), selected with a 2D
    mask of it in the first test view (the ids covering most of the mask, so an object that the
    masks split in two parts is still taken whole). Returns the selection text and the report's
    before/after images."""
    view = "view_000"
    mask = out / "report_files" / "sphere_mask.png"
    write_image(mask, (read_mask(scene_dir / "gt_mask" / f"{view}.png") == 1).astype(np.uint8) * 255)
    images, sel = [], None
    edits = {
        "remove": lambda s: edit.remove(run, s),
        "recolor": lambda s: edit.recolor(run, s, "#2a6fdb"),
        "inpaint": lambda s: edit.inpaint(run, s),
    }
    for op, apply in edits.items():
        target = out / "edits" / op
        if not (target / Run.EDIT).exists():
            print(f"edit {op} --mask-view {view} --mask {mask} -> {target}")
            sel = sel or edit.select(run, mask=(view, mask))
            edit.save(apply(sel), target, force=True)
        images += [(f"{op}: {p.stem}", p) for p in sorted((target / "before_after").glob("*.png"))[:2]]
    return f"--mask-view {view} --mask {mask.name}", images


def _colorize(mask_png: Path, out: Path) -> Path:
    """A color picture of a label PNG, for the report (written under out/report_files)."""
    ids = read_mask(mask_png)
    path = out / "report_files" / f"{mask_png.parent.name}_{mask_png.stem}.png"
    write_image(path, palette(int(ids.max()) + 1)[ids])
    return path
