"""Pipeline stages as functions over run folders: render, evaluate, associate, lift.

The CLI (``gsgroup.cli``) and the benchmarks call these; each reads a run folder written by
``gsgroup train`` and writes its outputs atomically.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from .errors import InputError


def render_split(run: Path, out: Path, split: str, progress: bool = True) -> list[Path]:
    """Render a run's views of one split: out/rgb/<stem>.png, and for segmented runs also
    out/ids/<stem>.png (uint16 ids, 0 where alpha < 0.5), out/overlay/ and out/features/ (shared PCA of E_id).
    Returns the written RGB paths."""
    import numpy as np
    import torch
    from tqdm import tqdm

    from .data.masks import write_mask
    from .fileio import write_image
    from .segment.grouping import load_segmentation
    from .segment.idmaps import overlay, render_ids, shared_pca
    from .train.run import load_run_backdrop, load_run_gaussians, load_run_scene, read_config
    from .train.trainer import render_view, view_tensors

    config = read_config(run)
    scene = load_run_scene(run, config, progress=progress)
    views = {"train": scene.train, "test": scene.test, "all": scene.train + scene.test}[split]
    if not views:
        raise InputError(f"{run}: the '{split}' split is empty (train with --eval to hold out test views)")
    g = load_run_gaussians(run)
    classifier, labels = load_segmentation(run)
    bg = load_run_backdrop(run, config)
    paths, features = [], {}
    with torch.no_grad():
        for view in tqdm(views, desc=f"render {split}", disable=not progress):
            vt = view_tensors(view)
            path = out / "rgb" / f"{view.name}.png"
            if classifier is None and labels is None:
                write_image(path, render_view(g, vt, g.sh_degree, background=bg).image.clamp(0, 1).numpy())
            else:
                r = render_ids(g, vt, classifier, labels, background=bg)
                write_image(path, r.rgb)
                write_mask(out / "ids" / f"{view.name}.png", r.ids.astype(np.uint16), force_uint16=True)
                write_image(out / "overlay" / f"{view.name}.png", overlay(r.rgb, r.ids))
                features[view.name] = r.features
            paths.append(path)
    if features:
        to_rgb = shared_pca(list(features.values()))
        for name, f in features.items():
            write_image(out / "features" / f"{name}.png", to_rgb(f))
    return paths


def evaluate_run(run: Path, progress: bool = True) -> dict:
    """PSNR / SSIM of a run on its test split, and on its training views beside it to show the gap;
    writes RUN/metrics.json: {"psnr", "ssim", "views"} of the test split, "train" (the same on the
    training views), "psnr_gap" (train - test), "gaussians", "per_view" (test views)."""
    from .fileio import write_json
    from .train.run import load_run_backdrop, load_run_gaussians, load_run_scene, read_config
    from .train.trainer import mean_scores, score_views, view_tensors

    config = read_config(run)
    scene = load_run_scene(run, config, progress=progress)
    if not scene.test:
        raise InputError(f"{run}: no test views; train with --eval to hold out every 8th image")
    g = load_run_gaussians(run)
    bg = load_run_backdrop(run, config)
    per_view = score_views(g, [view_tensors(v) for v in scene.test], g.sh_degree, bg)
    test = mean_scores(per_view)
    train = mean_scores(score_views(g, [view_tensors(v) for v in scene.train], g.sh_degree, bg))
    metrics = {**test, "train": train, "psnr_gap": train["psnr"] - test["psnr"], "gaussians": len(g),
               "per_view": per_view}
    write_json(run / "metrics.json", metrics)
    return metrics


def evaluate_segmentation_run(run: Path, gt_dir: Path, progress: bool = True) -> dict:
    """Score a segmented run's test-view id maps against ground-truth masks; writes RUN/seg_metrics.json."""
    from .fileio import write_json
    from .segment.grouping import load_segmentation
    from .segment.idmaps import render_ids
    from .segment.metrics import GtMaps, evaluate_segmentation, load_gt_dir
    from .train.run import load_run_backdrop, load_run_gaussians, load_run_scene, read_config
    from .train.trainer import view_tensors

    config = read_config(run)
    classifier, labels = load_segmentation(run)
    if classifier is None and labels is None:
        raise InputError(f"{run}: has no segmentation (classifier.pt or labels.npy); train with --masks or run lift")
    gt_all = load_gt_dir(gt_dir)
    scene = load_run_scene(run, config, progress=progress)
    views = [v for v in scene.test if v.name in gt_all] or [v for v in scene.train if v.name in gt_all]
    if not views:
        raise InputError(f"{gt_dir}: no ground-truth mask matches a view name of {run} (e.g. {scene.train[0].name}.png)")
    g = load_run_gaussians(run)
    bg = load_run_backdrop(run, config)
    preds = {v.name: render_ids(g, view_tensors(v), classifier, labels, background=bg).ids for v in views}
    gt = GtMaps({v.name: gt_all[v.name] for v in views}, names=getattr(gt_all, "names", None))
    result = evaluate_segmentation(gt, preds)
    result["split"] = "test" if views[0] in scene.test else "train"
    write_json(run / "seg_metrics.json", result)
    return result


def associate_run(data: Path, masks_dir: Path, run: Path, out: Path, progress: bool = True) -> dict:
    """Associate per-view masks across views through RUN's Gaussians; writes out/<stem>.png + objects.json."""
    from .data.masks import load_masks
    from .segment.associate import associate_masks, write_association
    from .train.run import load_run_gaussians, load_run_scene, read_config

    config = read_config(run)
    if Path(config["data"]["path"]).resolve() != data.resolve():
        print(f"note: {run} was trained on {config['data']['path']}, not {data}; using its views and poses")
    scene = load_run_scene(run, config, progress=progress)
    views = scene.train + scene.test
    masks = load_masks(masks_dir, views)
    result = associate_masks(views, load_run_gaussians(run), masks)
    write_association(result, out)
    return result.stats


def lift_run(run: Path, masks_dir: Path, out: Path, background_bias: float, force: bool, progress: bool) -> dict:
    """FlashSplat-style closed-form labels for a trained run; writes a segmented run folder ``out``."""
    from .data.masks import load_masks
    from .fileio import write_json
    from .segment.grouping import object_summary, save_labels
    from .segment.lift import lift_labels
    from .train.run import ENVIRONMENT_FILE, load_run_gaussians, load_run_scene, read_config

    config = read_config(run)
    if (out / "labels.npy").exists() and not force:
        raise InputError(f"{out / 'labels.npy'}: exists; pass --force to replace it or --out another folder")
    if (out / "classifier.pt").exists():
        raise InputError(f"{out}: holds a trained identity classifier; write lifted labels with --out to another folder")
    g = load_run_gaussians(run)
    scene = load_run_scene(run, config, progress=progress)
    masks = load_masks(masks_dir, scene.train)
    t0 = time.perf_counter()
    labels, prob = lift_labels(scene.train, g, masks, background_bias=background_bias, progress=progress)
    seconds = time.perf_counter() - t0
    if out.resolve() != run.resolve():
        out.mkdir(parents=True, exist_ok=True)
        for name in ("config.json", "point_cloud.ply", ENVIRONMENT_FILE):
            if (run / name).exists():
                shutil.copyfile(run / name, out / name)
    save_labels(out / "labels.npy", labels, prob)
    write_json(out / "objects.json", object_summary(g, labels))
    return {"gaussians": len(labels), "objects": int(len(set(labels.tolist()) - {0})), "seconds": round(seconds, 2),
            "out": str(out)}
