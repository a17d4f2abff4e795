"""The pipeline's stages as Python functions over runs: train, render, evaluate, associate, lift
(``gsgroup.workflow.run_pipeline`` composes them). The CLI and the demo call these; nothing here parses argv.

    from gsgroup.pipeline import train_run
    from gsgroup.run import DataConfig, RunConfig
    from gsgroup.train.config import TrainConfig

    run, summary = train_run(RunConfig(DataConfig("data/fox", eval=True), TrainConfig.for_length(3000)), "out/fox")
    evaluate_run(run)["psnr"]
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from .errors import InputError
from .fileio import write_json
from .on_device import backdrop_on, gaussians_on, resolve_device, segmentation_on
from .run import Run, RunConfig
from .segment.idmaps import id_features, ids_from_render
from .train import distributed
from .train.memory import check_config_before_loading as check_memory_first
from .train.render_views import iter_renders, score_renders
from .train.trainer import mean_scores


def _as_run(run: Run | str | os.PathLike, progress: bool | None = None) -> Run:
    """A Run (opened from a path); with ``progress`` not None its scene is loaded now, with a bar when True."""
    run = run if isinstance(run, Run) else Run.open(run)
    if progress is not None:
        run.load_scene(progress)
    return run


@contextlib.contextmanager
def _no_debris(*paths: str | os.PathLike):
    """On a failure (Ctrl-C included) inside the block, remove those of ``paths`` that did not exist
    before it: a command that fails while checking its inputs leaves no new files behind."""
    new = [Path(p) for p in paths if not Path(p).exists()]
    try:
        yield
    except BaseException:
        for p in new:
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            elif p.exists():
                p.unlink()
        raise


# ---- train -----------------------------------------------------------------------------------
def _initial_state(init_from: str | os.PathLike | None, id_dim: int, seed: int):
    """(Gaussians, checkpoint to take Adam moments from) of ``init_from``: a run folder or a PLY.
    Identities are re-initialised when their size differs (then no checkpoint)."""
    from .model import load_ply
    from .model.sh import rgb_to_sh

    if init_from is None:
        return None, None
    path = Path(init_from)
    if path.is_dir():
        src = Run.open(path)
        g = src.gaussians
        same = src.config.train.identity.id_dim == id_dim and src.has(Run.CHECKPOINT)
        ckpt = src.file(Run.CHECKPOINT) if same else None
    else:
        g, ckpt = load_ply(path), None
    if g.id_dim != id_dim:
        g.ids = rgb_to_sh(torch.rand(len(g), id_dim, generator=torch.Generator().manual_seed(seed)))
    return g, ckpt


def _trainer(run: Run, scene, gaussians=None):
    """The Trainer (GroupingTrainer when the run has masks) of a run on its loaded scene."""
    from .data.masks import load_masks
    from .segment.grouping import GroupingTrainer
    from .train.trainer import Trainer

    d, cfg = run.config.data, run.config.train
    run.preload(scene=scene)
    print(
        f"scene: {len(scene.train)} train / {len(scene.test)} test views at "
        f"{scene.train[0].width}x{scene.train[0].height}, "
        f"{0 if scene.points is None else len(scene.points)} SfM points, extent {scene.extent:.3f}"
    )
    # The heavy work runs in the rasterizer's own threads; PyTorch's many small ops per iteration are
    # faster on one thread (measured at 5k Gaussians, 200x150: 23.5 ms/iteration vs 27.8 ms with two).
    torch.set_num_threads(1)
    if not d.masks:
        trainer = Trainer(scene, cfg, gaussians=gaussians)
    else:
        trainer = GroupingTrainer(
            scene, cfg, load_masks(d.masks, scene.train, cache=d.image_cache), gaussians=gaussians
        )
        print(f"identities: {trainer.masked_views} masked views, {trainer.num_classes} classes")
    return trainer


def _ready(trainer, scene, cfg, device: str | None) -> None:
    """Move a built trainer (checkpoint loaded) to ``device`` (train.device: cpu, cuda, auto); InputError when
    the exact plan (images, Gaussians at the cap) would not fit (printed before loading: check_memory_first)."""
    from .train.device import move_trainer
    from .train.memory import check_memory, memory_plan

    dev = resolve_device(device)
    if dev != trainer.params["means"].device:
        move_trainer(trainer, dev)
    n = trainer.params["means"].shape[0]
    cap = cfg.densify.max_gaussians if cfg.densify.densify_until > 0 else n  # without densification: fixed
    plan = memory_plan(scene.train + scene.test, n, cap, cfg.sh_degree, cfg.identity.id_dim, dev)
    check_memory(plan, cfg.sh_degree, cfg.identity.id_dim, quiet=True)


def _fit(run: Run, trainer, progress: bool, checkpoint_every: int, plain: bool) -> tuple[Run, dict]:
    """Train to the configured length, then write checkpoint, Gaussians, environment, segmentation."""
    t0 = time.perf_counter()
    trainer.train(
        progress=progress,
        log_path=run.file(Run.TRAIN_LOG),
        checkpoint_path=run.file(Run.CHECKPOINT),
        checkpoint_every=checkpoint_every,
    )
    seconds = time.perf_counter() - t0
    trainer.save_checkpoint(run.file(Run.CHECKPOINT))
    g = trainer.gaussians()
    g = type(g)(**{k: v.cpu() for k, v in g.to_dict().items()})  # trained on any device, written from the CPU
    run.save_gaussians(g, plain=plain)
    run.save_environment(trainer.env)
    if hasattr(trainer, "classifier"):
        from .segment.segmentation import Segmentation

        run.save_segmentation(Segmentation(trainer.classifier.cpu()), g)
    summary = {"iterations": trainer.step_count, "gaussians": len(g), "train_seconds": round(seconds, 1)}
    if trainer.test_views:
        summary.update({f"test_{k}": v for k, v in trainer.evaluate().items()})
    return run, summary


def train_run(
    config: RunConfig,
    out: str | os.PathLike,
    force: bool = False,
    init_from: str | os.PathLike | None = None,
    checkpoint_every: int = 0,
    plain: bool = False,
    progress: bool = True,
    cache_dir: str | os.PathLike | None = None,
    device: str | None = "cpu",
) -> tuple[Run, dict]:
    """Train a new run into folder ``out`` (refused when it holds a run, unless ``force``).
    ``device``: cpu, cuda, cuda:N or auto (train.device).

    ``init_from``: start from a trained run folder (taking its Adam moments) or a PLY instead of
    SfM points; ``plain``: write point_cloud.ply without identities; ``cache_dir``: where undistorted
    images go (default out/cache). The data, masks and ``init_from`` are checked before anything is
    written: a failure there leaves no new files. Ctrl-C leaves a checkpoint to ``resume_run`` from.
    Returns the Run and a summary: iterations, Gaussians, seconds and the test scores."""
    cfg = config.train
    if init_from is not None and Path(init_from).resolve() in (Path(out).resolve(), Path(out, Run.GAUSSIANS).resolve()):
        raise InputError(f"init_from {init_from}: is the output run; write the new run to another folder", "init_from")
    g, init_ckpt = _initial_state(init_from, cfg.identity.id_dim, cfg.seed)
    if init_from is not None:
        cfg = replace(cfg, lr_means=cfg.lr_means_final * 10)  # refining a reconstruction: start where a run ends
    config = replace(config, train=cfg)
    writer = distributed.rank() == 0  # with several processes (train.distributed) rank 0 alone writes the run
    if writer:
        Run.check_new(out, force)
    cache = Path(cache_dir) if cache_dir is not None else Path(out, Run.CACHE)
    existed = Path(out).exists()
    with _no_debris(out, cache):  # validate the data, masks and initial state before writing anything
        probe = Run(out, config, cache_dir=cache)
        check_memory_first(config.data, cfg, 0 if g is None else len(g), device)  # before any image is decoded
        scene = probe.load_scene(progress, allow_empty_points=cfg.init != "points")
        trainer = _trainer(probe, scene, g)
        if init_ckpt is not None:
            trainer.load_checkpoint(init_ckpt, weights_only=True)
        _ready(trainer, scene, cfg, device)
    distributed.data_parallel(trainer)
    if not writer:
        trainer.train(progress=False)
        return probe, {
            "iterations": trainer.step_count,
            "gaussians": len(trainer.params["means"]),
            "rank": distributed.rank(),
        }
    run = Run.create(out, config, force=force, cache_dir=cache).preload(scene=scene)
    try:
        return _fit(run, trainer, progress, checkpoint_every, plain)
    except BaseException:
        if not existed and not run.has(Run.CHECKPOINT):  # nothing to resume from: leave no debris
            shutil.rmtree(out, ignore_errors=True)
        raise


def resume_run(
    run: Run | str | os.PathLike,
    iterations: int | None = None,
    checkpoint_every: int = 0,
    plain: bool = False,
    progress: bool = True,
    device: str | None = "cpu",
) -> tuple[Run, dict]:
    """Continue a run from its checkpoint.pt, to ``iterations`` steps (default: its configured length),
    on ``device`` (cpu, cuda, auto: the run may have been trained on another one)."""
    ckpt = (run.path if isinstance(run, Run) else Path(run)) / Run.CHECKPOINT
    if not ckpt.exists():
        raise InputError(f"{ckpt}: no checkpoint to resume from; start a new run instead of resuming")
    run = _as_run(run)
    if iterations:
        run.config.train.iterations = iterations
    check_memory_first(run.config.data, run.config.train, 0, device)  # before any image is decoded
    trainer = _trainer(run, run.load_scene(progress, allow_empty_points=run.config.train.init != "points"))
    trainer.load_checkpoint(ckpt)
    _ready(trainer, trainer.scene, run.config.train, device)
    distributed.data_parallel(trainer)
    if distributed.rank() != 0:  # several processes: rank 0 alone writes
        trainer.train(progress=False)
        return run, {"iterations": trainer.step_count, "rank": distributed.rank()}
    if iterations:
        run.write_config()  # only once the run, its data and checkpoint have loaded
    print(f"resumed at iteration {trainer.step_count}")
    return _fit(run, trainer, progress, checkpoint_every, plain)


# ---- render / evaluate -----------------------------------------------------------------------
def _split(run: Run, split: str) -> list:
    views = run.views(split)
    if not views:
        raise InputError(f"{run.path}: the '{split}' split is empty (train with eval to hold out test views)")
    return views


def render_split(
    run: Run | str | os.PathLike, out: str | os.PathLike, split: str = "test", progress: bool = True, device="cpu"
) -> list[Path]:
    """Render a run's views of one split: out/rgb/<stem>.png, and for segmented runs also
    out/ids/<stem>.png (uint16 ids, 0 where alpha < 0.5), out/overlay/ and out/features/ (shared PCA of E_id).
    ``device``: cpu, cuda, cuda:N or auto (on CUDA the views render in batches). Returns the written RGB paths."""
    from tqdm import tqdm

    from .data.masks import write_mask
    from .fileio import write_image
    from .segment.idmaps import overlay, shared_pca

    dev = resolve_device(device)
    run, out = _as_run(run, progress), Path(out)
    views, g, seg = _split(run, split), gaussians_on(run.gaussians, dev), segmentation_on(run.segmentation, dev)
    renders = iter_renders(g, views, dev, backdrop_on(run.backdrop, dev), None if seg is None else id_features(g, seg))
    paths, features = [], {}
    with torch.no_grad():
        for view, _, image, alpha in tqdm(renders, total=len(views), desc=f"render {split}", disable=not progress):
            path = out / "rgb" / f"{view.name}.png"
            if seg is None:
                write_image(path, image.clamp(0, 1).cpu().numpy())
            else:
                r = ids_from_render(image, alpha, seg)
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


def evaluate_run(run: Run | str | os.PathLike, progress: bool = True, device: str | None = "cpu") -> dict:
    """PSNR / SSIM of a run on its test split, and on its training views beside it to show the gap;
    writes RUN/metrics.json: {"psnr", "ssim", "views"} of the test split, "train" (the same on the
    training views), "psnr_gap" (train - test), "gaussians", "per_view" (test views); ``device`` as render_split."""
    dev = resolve_device(device)
    run = _as_run(run, progress)
    if not run.views("test"):
        raise InputError(f"{run.path}: no test views; train with eval to hold out every 8th image")
    g, bg = gaussians_on(run.gaussians, dev), backdrop_on(run.backdrop, dev)
    per_view = score_renders(g, run.views("test"), dev, bg)
    test = mean_scores(per_view)
    train = mean_scores(score_renders(g, run.views("train"), dev, bg))
    metrics = {
        **test,
        "train": train,
        "psnr_gap": train["psnr"] - test["psnr"],
        "gaussians": len(g),
        "per_view": per_view,
    }
    write_json(run.file(Run.METRICS), metrics)
    return metrics


def evaluate_segmentation_run(
    run: Run | str | os.PathLike, gt_dir: str | os.PathLike, progress: bool = True, device: str | None = "cpu"
) -> dict:
    """Score a segmented run's test-view id maps (rendered on ``device``) against ground truth -> RUN/seg_metrics.json."""
    from .segment.metrics import GtMaps, evaluate_segmentation, load_gt_dir

    dev = resolve_device(device)
    run = _as_run(run, progress)
    seg = run.require_segmentation()
    gt_all = load_gt_dir(Path(gt_dir))
    views = [v for v in run.views("test") if v.name in gt_all] or [v for v in run.views("train") if v.name in gt_all]
    if not views:
        raise InputError(
            f"{gt_dir}: no ground-truth mask matches a view name of {run.path} (e.g. {run.views('train')[0].name}.png)"
        )
    g, seg = gaussians_on(run.gaussians, dev), segmentation_on(seg, dev)
    renders = iter_renders(g, views, dev, backdrop_on(run.backdrop, dev), id_features(g, seg))
    with torch.no_grad():
        preds = {v.name: ids_from_render(image, alpha, seg).ids for v, _, image, alpha in renders}
    gt = GtMaps({v.name: gt_all[v.name] for v in views}, names=getattr(gt_all, "names", None))
    result = evaluate_segmentation(gt, preds)
    result["split"] = "test" if views[0] in run.views("test") else "train"
    write_json(run.file(Run.SEG_METRICS), result)
    return result


# ---- segment ---------------------------------------------------------------------------------
def associate_run(
    data: str | os.PathLike,
    masks_dir: str | os.PathLike,
    run: Run | str | os.PathLike,
    out: str | os.PathLike,
    progress: bool = True,
    device: str | None = "cpu",
) -> dict:
    """Associate per-view masks across views through the run's Gaussians (their weights summed on ``device``);
    writes out/<stem>.png + objects.json."""
    from .data.masks import load_masks
    from .fileio import check_outside
    from .segment.associate import associate_masks
    from .segment.association_io import write_association

    dev = resolve_device(device)
    check_outside(out, data, "the associated masks")
    run = _as_run(run, progress)
    if Path(run.config.data.path).resolve() != Path(data).resolve():
        print(f"note: {run.path} was trained on {run.config.data.path}, not {data}; using its views and poses")
    views = run.views("all")
    result = associate_masks(views, run.gaussians, load_masks(masks_dir, views), progress=progress, device=dev)
    write_association(result, out)
    return result.stats


def lift_run(
    run: Run | str | os.PathLike,
    masks_dir: str | os.PathLike,
    out: str | os.PathLike | None = None,
    background_bias: float | None = None,
    force: bool = False,
    progress: bool = True,
    device: str | None = "cpu",
) -> dict:
    """FlashSplat-style closed-form labels for a trained run, written into ``out`` (default: the run
    itself; another folder gets a copy of the run with the labels); the weights are summed on ``device``."""
    from .data.masks import load_masks
    from .segment.lift import DEFAULT_BACKGROUND_BIAS, lift_labels
    from .segment.segmentation import Segmentation

    dev = resolve_device(device)
    run = _as_run(run, progress)
    target = Path(out) if out is not None else run.path
    in_place = target.resolve() == run.path.resolve()
    if in_place and run.has(Run.CLASSIFIER):
        raise InputError(
            f"{run.path}: holds a trained identity classifier; write lifted labels to another folder (out)"
        )
    if in_place and run.has(Run.LABELS) and not force:
        raise InputError(f"{run.file(Run.LABELS)}: exists; force to replace it or write to another folder (out)")
    bias = DEFAULT_BACKGROUND_BIAS if background_bias is None else background_bias
    t0 = time.perf_counter()
    labels, prob = lift_labels(
        run.views("train"),
        run.gaussians,
        load_masks(masks_dir, run.views("train")),
        background_bias=bias,
        progress=progress,
        device=dev,
    )
    seconds = time.perf_counter() - t0
    seg = Segmentation(None, labels, prob)
    if in_place:
        run.save_segmentation(seg)
    else:
        run.derive(segmentation=seg).save(target, force=force)
    return {
        "gaussians": len(labels),
        "objects": int(len(set(labels.tolist()) - {0})),
        "seconds": round(seconds, 2),
        "out": str(target),
    }
