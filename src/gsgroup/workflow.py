"""The whole pipeline as one call: masks -> reconstruction -> association -> identity training ->
renders and evaluation (``gsgroup run``), each stage a function of ``gsgroup.pipeline``. Each stage
records the settings that produced it (stage.json) and is reused only when they match."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

from .errors import InputError
from .fileio import write_json
from .options import check_bounds, option
from .pipeline import (
    associate_run,
    evaluate_run,
    evaluate_segmentation_run,
    render_split,
    train_run,
)
from .run import DataConfig, Run, RunConfig
from .segment.sam import SAM_CHECKPOINT_URLS, SamOptions
from .train.device import device_option


@dataclass
class PipelineConfig:
    """masks -> short reconstruction -> association -> identity training -> renders and evaluation."""

    data: str = ""
    out: str = ""
    masks: str | None = option(None, "per-view masks to associate (default: generate them)")
    object_masks: str | None = option(
        None, "already associated masks (default DATA/object_mask when present): skips masks and association"
    )
    gt: str | None = option(None, "ground-truth masks for scoring (default DATA/gt_mask when present)")
    resolution: int | None = None
    eval: bool = False
    masks_source: str = option("classical", "2D mask source", choices=["classical", "sam"])
    sam_checkpoint: str | None = option(None, "SAM weights (.pth) for --masks-source sam")
    sam_model: str = option(SamOptions.model_type, "SAM backbone", choices=list(SAM_CHECKPOINT_URLS))
    recon_iterations: int = option(3000, "RGB-only reconstruction length", min=1)
    id_iterations: int = option(2000, "identity training length, continued from it", min=1)
    seed: int = option(0, "random seed")
    force: bool = option(False, "redo every stage")
    progress: bool = True
    device: str = device_option()  # not part of any stage's settings: results do not depend on it
    image_cache: int = option(0, "stream the images from disk, N decoded in memory (0: hold all; see train)", min=0)

    def __post_init__(self):
        check_bounds(self)


STAGE_FILE = "stage.json"  # beside each pipeline stage's output: the settings that produced it


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def _check_stage(name: str, done: bool, where: Path, settings: dict) -> None:
    """InputError when ``where`` holds a stage output made with other ``settings`` than these (or
    with no record of them): reusing it would mix settings, so say what changed and ask for force."""
    if not done:
        return
    record = where / STAGE_FILE
    try:
        stored = json.loads(record.read_text()).get("settings")
    except (OSError, ValueError, AttributeError):
        stored = None
    fix = "pass --force to redo every stage or use another --out"
    if not isinstance(stored, dict):
        raise InputError(f"{where}: holds a {name} without a record of its settings ({record}); {fix}")
    old, new = _flat(stored), _flat(settings)
    changed = [f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    if changed:
        raise InputError(f"{where}: the {name} there was made with other settings ({', '.join(changed)}); {fix}")


def _record_stage(where: Path, settings: dict) -> None:
    from . import __version__

    write_json(where / STAGE_FILE, {"settings": settings, "version": __version__})


def _stage(number: int, title: str, done: bool, where: Path) -> bool:
    """Print the stage header; True when the stage must run."""
    print(f"[{number}/5] {title}: " + (f"already in {where}, skipped" if done else f"-> {where}"))
    return not done


def _run_stages(cfg, data: Path, out: Path, given, raw: Path, masks_done, recon_done, assoc_done, id_done, keys):
    """Stages 1-4 of ``run_pipeline`` (those not done), each recording its settings when it completes."""
    from .data.masks import OBJECT_MASK_DIR
    from .segment.masks import generate_masks
    from .train.config import TrainConfig

    masks_key, recon_key, assoc_key, id_key = keys
    out.mkdir(parents=True, exist_ok=True)
    cache = out / Run.CACHE  # one undistortion cache for every stage
    if given is None and _stage(1, f"2D masks ({cfg.masks_source})", masks_done, raw):
        sam = SamOptions(checkpoint=cfg.sam_checkpoint, model_type=cfg.sam_model) if cfg.masks_source == "sam" else None
        generate_masks(
            data, raw, cfg.masks_source, cfg.resolution, seed=cfg.seed, sam=sam, cache_dir=cache, progress=cfg.progress
        )
        _record_stage(raw, masks_key)
    elif given is not None:
        print(f"[1/5] 2D masks: using associated masks in {given}")

    recon, associated = out / "recon", given or out / OBJECT_MASK_DIR
    data_cfg = DataConfig(str(data.resolve()), cfg.resolution, cfg.eval, image_cache=cfg.image_cache)
    if _stage(2, f"reconstruction, {cfg.recon_iterations} iterations", recon_done, recon):
        train_run(
            RunConfig(data_cfg, TrainConfig.for_length(cfg.recon_iterations, seed=cfg.seed)),
            recon,
            force=True,
            progress=cfg.progress,
            cache_dir=cache,
            device=cfg.device,
        )
        _record_stage(recon, recon_key)

    if given is None and _stage(3, "association", assoc_done, associated):
        stats = associate_run(
            data, raw, Run.open(recon, cache_dir=cache), associated, progress=cfg.progress, device=cfg.device
        )
        _record_stage(associated, assoc_key)
        print(
            f"      {stats['objects']} objects from {stats['kept']} of {stats['masks']} masks in {stats['seconds']} s"
        )

    if _stage(4, f"identity training, {cfg.id_iterations} iterations", id_done, out):
        id_cfg = TrainConfig.for_length(cfg.id_iterations, densify=False, seed=cfg.seed)
        train_run(
            RunConfig(replace(data_cfg, masks=str(associated.resolve())), id_cfg),
            out,
            force=True,
            init_from=recon,
            progress=cfg.progress,
            device=cfg.device,
        )
        _record_stage(out, id_key)


def run_pipeline(cfg: PipelineConfig) -> dict:
    """Run every stage into ``cfg.out``. A stage whose output exists is skipped when the settings
    recorded with it (``stage.json``: its config, the data, resolution and its input stages' settings)
    are the current ones, and refused otherwise, unless ``force`` (then every stage is redone).
    Inputs are checked before anything is written; a call that fails before a stage completes
    leaves no new files. Returns {"reconstruction": test metrics, "segmentation": scores,
    "objects": per-object scores}."""
    from .data.masks import OBJECT_MASK_DIR, OBJECTS_FILE
    from .data.sfm import poses_if_needed
    from .fileio import check_outside

    data, out = Path(cfg.data), Path(cfg.out)
    data = poses_if_needed(data, out, cfg.seed, cfg.force, cfg.progress)  # photos or a video: RUN/data
    if not data.is_dir():
        raise InputError(f"{data}: dataset folder not found; give a COLMAP or NeRF folder")
    check_outside(out, data, "the pipeline run")
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder; pick another --out")
    for what, path in (("masks", cfg.masks), ("object_masks", cfg.object_masks), ("gt", cfg.gt)):
        if path and not Path(path).is_dir():
            raise InputError(f"{path}: {what} folder not found", what)
    given = Path(cfg.object_masks) if cfg.object_masks else None
    if given is None and not cfg.masks and (data / OBJECT_MASK_DIR).is_dir():
        given = data / OBJECT_MASK_DIR  # user-provided associated masks (Gaussian Grouping's layout)

    # what each stage's output depends on; a stage's settings include those of its inputs
    data_key = {"data": str(data.resolve()), "resolution": cfg.resolution}
    raw = Path(cfg.masks) if cfg.masks else out / "masks"
    if cfg.masks:
        masks_key = {"given": str(raw.resolve())}
    else:
        masks_key = {**data_key, "masks_source": cfg.masks_source, "seed": cfg.seed}
        if cfg.masks_source == "sam":
            masks_key.update(sam_checkpoint=cfg.sam_checkpoint, sam_model=cfg.sam_model)
    recon = out / "recon"
    recon_key = {**data_key, "eval": cfg.eval, "recon_iterations": cfg.recon_iterations, "seed": cfg.seed}
    associated = given or out / OBJECT_MASK_DIR
    assoc_key = {"given": str(given.resolve())} if given else {"masks": masks_key, "recon": recon_key}
    id_key = {"object_masks": assoc_key, "recon": recon_key, "id_iterations": cfg.id_iterations, "seed": cfg.seed}

    if cfg.force and out.exists() and data.parent == out:  # keep the dataset poses_if_needed just made
        for p in out.iterdir():
            if p != data:
                shutil.rmtree(p) if p.is_dir() else p.unlink()
    elif cfg.force and out.exists():
        shutil.rmtree(out)
    masks_done = raw.is_dir() and any(p.name != STAGE_FILE for p in raw.iterdir())
    recon_done, assoc_done = (recon / Run.GAUSSIANS).exists(), (associated / OBJECTS_FILE).exists()
    id_done = (out / Run.CLASSIFIER).exists()
    keys = (masks_key, recon_key, assoc_key, id_key)
    if not cfg.masks and given is None:
        _check_stage("2D masks", masks_done, raw, masks_key)
    _check_stage("reconstruction", recon_done, recon, recon_key)
    if given is None:
        _check_stage("association", assoc_done, associated, assoc_key)
    _check_stage("identity run", id_done, out, id_key)

    fresh = not out.exists()
    try:
        _run_stages(cfg, data, out, given, raw, masks_done, recon_done, assoc_done, id_done, keys)
    except BaseException:
        if fresh and not any((out / d / STAGE_FILE).exists() for d in ("masks", "recon", OBJECT_MASK_DIR, ".")):
            shutil.rmtree(out, ignore_errors=True)  # no stage completed: leave no files behind
        raise

    print(f"[5/5] renders and evaluation -> {out / 'renders'}")
    run = Run.open(out)
    render_split(run, out / "renders", "test" if cfg.eval else "train", progress=cfg.progress, device=cfg.device)
    summary: dict = {}
    if cfg.eval:
        summary["reconstruction"] = {
            k: v for k, v in evaluate_run(run, progress=False, device=cfg.device).items() if k != "per_view"
        }
    gt = Path(cfg.gt) if cfg.gt else (data / "gt_mask" if (data / "gt_mask").is_dir() else None)
    if gt is not None:
        seg = evaluate_segmentation_run(run, gt, progress=False, device=cfg.device)
        summary["segmentation"] = {k: seg[k] for k in ("miou", "mbiou", "num_objects", "num_views", "split")}
        summary["objects"] = seg["objects"]
    return summary
