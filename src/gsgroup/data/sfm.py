"""Structure-from-motion with pycolmap (CPU): a folder of photos or a video -> a COLMAP dataset.

``compute_poses(source, out, SfmOptions())`` runs, each stage recorded in ``DATA/sfm/stages.json`` so
that a second call resumes after the last finished one (``force`` starts over):

1. frames (video only): the sharpest frames, spread evenly in time (``gsgroup.data.video``);
2. features: SIFT keypoints and descriptors of every decodable image -> ``DATA/sfm/database.db``;
3. matching: exhaustive (every pair) up to ``exhaustive_max`` images, else sequential (each image with
   its ``overlap`` successors, plus successors at distances 2^k), always sequential for video frames;
   each pair verified geometrically;
4. mapping: incremental mapping with bundle adjustment; of several disconnected models the largest
   is kept (with a warning) -> ``DATA/sfm/model/``;
5. undistortion to PINHOLE -> ``DATA/images/`` and ``DATA/sparse/0/{cameras,images,points3D}.bin``,
   which ``gsgroup.data.colmap_frames`` (and COLMAP-based tools such as 3DGS) read.

The input folder is only read. Photos that cannot be decoded are skipped and named; fewer than 3
usable images, or fewer than ``min_registered`` of them registered, is an InputError.
"""

from __future__ import annotations

import shutil
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

from gsgroup.errors import InputError
from gsgroup.options import check_bounds, option

from .sfm_inputs import (
    STAGES_FILE,
    SUMMARY_FILE,
    WORK_DIR,
    StageRecord,
    check_count,
    check_output,
    file_key,
    list_photos,
)

CAMERA_MODELS = ["SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV", "FULL_OPENCV"]
EXHAUSTIVE_MAX = 100  # measured: see benchmarks/sfm.py (exhaustive pairs grow as n^2)
CHUNKS = 20  # features, matching and undistortion run in about this many pycolmap calls (progress)


@dataclass
class SfmOptions:
    """Settings of ``gsgroup poses`` (each a CLI flag)."""

    camera_model: str = option("SIMPLE_RADIAL", "COLMAP camera model to estimate", choices=CAMERA_MODELS)
    per_image_camera: bool = option(
        False, "one camera per image (photos from several devices or zoom levels); default: one shared camera"
    )
    matching: str = option(
        "auto",
        "pairs to match: auto = exhaustive for photos up to --exhaustive-max images, else sequential "
        "(file-name order); video frames always sequential",
        choices=["auto", "exhaustive", "sequential"],
    )
    exhaustive_max: int = option(EXHAUSTIVE_MAX, "largest photo set that auto matches exhaustively", min=3)
    overlap: int = option(10, "sequential matching: each image is matched with its next N images", min=1)
    frames: int = option(100, "video input: number of sharp frames to sample, spread evenly in time", min=3)
    max_image_size: int = option(1600, "features are extracted on a copy at most this many pixels wide or high", min=64)
    max_features: int = option(8192, "SIFT features per image at most", min=64)
    min_registered: float = option(0.5, "fail when fewer than this fraction of the images register", min=0.0, max=1.0)
    seed: int = option(0, "random seed of the mapper")
    force: bool = option(False, "start over: delete the previous output of poses in --out")
    progress: bool = True

    def __post_init__(self):
        check_bounds(self)
        if self.camera_model not in CAMERA_MODELS:
            raise InputError(
                f"camera_model {self.camera_model!r}: choose one of {', '.join(CAMERA_MODELS)}", "camera_model"
            )
        if self.matching not in ("auto", "exhaustive", "sequential"):
            raise InputError(f"matching {self.matching!r}: choose auto, exhaustive or sequential", "matching")


def _pycolmap():
    try:
        import pycolmap
    except ImportError:
        raise InputError("gsgroup poses needs pycolmap: pip install pycolmap==4.2.1 (or reinstall gsgroup)") from None
    pycolmap.logging.minloglevel = 2  # errors only: COLMAP's own log would bury the progress bars
    return pycolmap


def _chunks(items: list, n: int = CHUNKS) -> list[list]:
    size = max(1, -(-len(items) // n))
    return [items[i : i + size] for i in range(0, len(items), size)]


def _bar(total: int, desc: str, progress: bool, unit: str = "image"):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not progress)


# ---- stages ------------------------------------------------------------------------------------
def extract(db: Path, image_dir: Path, names: list[str], opts: SfmOptions) -> None:
    """SIFT features of ``names`` (relative to ``image_dir``) into the database ``db``. One shared
    camera (the first image's size and EXIF focal length) unless ``per_image_camera``."""
    pc = _pycolmap()
    reader = pc.ImageReaderOptions()
    reader.camera_model = opts.camera_model
    extraction = pc.FeatureExtractionOptions()
    extraction.max_image_size = opts.max_image_size
    extraction.sift.max_num_features = opts.max_features
    mode = pc.CameraMode.PER_IMAGE if opts.per_image_camera else pc.CameraMode.SINGLE
    with _bar(len(names), "features", opts.progress) as bar:
        for chunk in _chunks(names):
            pc.extract_features(db, image_dir, chunk, mode, reader, extraction)
            if not opts.per_image_camera and reader.existing_camera_id < 0:
                with pc.Database.open(db) as database:
                    reader.existing_camera_id = database.read_all_cameras()[0].camera_id
            bar.update(len(chunk))
    with pc.Database.open(db) as database:
        missing = [n for n in names if not database.exists_image(n)]
    if missing:
        raise InputError(f"{image_dir}: COLMAP could not read {len(missing)} image(s) ({', '.join(missing[:5])})")


def pair_list(names: list[str], method: str, overlap: int) -> list[tuple[str, str]]:
    """Image pairs to match: every pair (``exhaustive``) or, for ``sequential``, each image with its
    ``overlap`` successors and with those at distances 2^k (COLMAP's quadratic overlap, which links
    frames far apart in a slow video)."""
    n = len(names)
    if method == "exhaustive":
        return [(names[i], names[j]) for i in range(n) for j in range(i + 1, n)]
    steps = set(range(1, overlap + 1)) | {2**k for k in range(overlap) if 2**k < n}
    return [(names[i], names[i + s]) for i in range(n) for s in sorted(steps) if i + s < n]


def match(db: Path, work: Path, pairs: list[tuple[str, str]], opts: SfmOptions) -> None:
    """Match and geometrically verify ``pairs`` (pairs already in the database are skipped by COLMAP)."""
    pc = _pycolmap()
    listing = work / "pairs.txt"
    with _bar(len(pairs), "matching", opts.progress, unit="pair") as bar:
        for chunk in _chunks(pairs):
            listing.write_text("".join(f"{a} {b}\n" for a, b in chunk))
            pc.match_image_pairs(db, pairing_options=pc.ImportedPairingOptions(match_list_path=listing))
            bar.update(len(chunk))
    listing.unlink()


def map_images(db: Path, image_dir: Path, work: Path, n_images: int, opts: SfmOptions) -> tuple[dict, list[int]]:
    """Incremental mapping with bundle adjustment; writes the largest model to ``work/model``.
    Returns (its summary, the registered-image counts of every model found, largest first)."""
    pc = _pycolmap()
    options = pc.IncrementalPipelineOptions()
    options.random_seed = opts.seed
    options.min_model_size = 3  # COLMAP drops extra models under 10 images; keep them so the warning counts them
    tmp = work / "models.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with _bar(n_images, "mapping", opts.progress) as bar:
        models = pc.incremental_mapping(db, image_dir, tmp, options, next_image_callback=lambda: bar.update(1))
    if not models:
        shutil.rmtree(tmp, ignore_errors=True)
        raise InputError(
            f"{image_dir}: no image pair could start a reconstruction; the photos need more overlap "
            f"(each part of the scene in 3+ photos, taken a step apart) and texture"
        )
    ranked = sorted(models.values(), key=lambda r: (-r.num_reg_images(), -r.num_points3D()))
    best = ranked[0]
    model = work / "model"
    out_tmp = work / "model.tmp"
    shutil.rmtree(out_tmp, ignore_errors=True)
    out_tmp.mkdir()
    best.write_binary(out_tmp)
    shutil.rmtree(model, ignore_errors=True)
    out_tmp.rename(model)
    shutil.rmtree(tmp, ignore_errors=True)
    summary = model_summary(best)
    return summary, [r.num_reg_images() for r in ranked]


def model_summary(rec) -> dict:
    """Registered image names, point count, mean reprojection error and cameras of a pycolmap model."""
    cams = [
        {
            "model": c.model_name,
            "width": c.width,
            "height": c.height,
            "params": [float(p) for p in c.params],
            "focal_from_exif": bool(c.has_prior_focal_length),
        }
        for c in rec.cameras.values()
    ]
    return {
        "registered": sorted(rec.images[i].name for i in rec.reg_image_ids()),
        "points": int(rec.num_points3D()),
        "mean_reprojection_error": float(rec.compute_mean_reprojection_error()),
        "cameras": cams,
    }


def undistort(work: Path, image_dir: Path, out: Path, opts: SfmOptions) -> None:
    """Undistort the model in ``work/model`` and its images to PINHOLE: ``out/images`` and
    ``out/sparse/0/*.bin``, each moved into place only when complete."""
    pc = _pycolmap()
    rec = pc.Reconstruction(work / "model")
    names = sorted(rec.images[i].name for i in rec.reg_image_ids())
    tmp = work / "undistorted.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    with _bar(len(names), "undistortion", opts.progress) as bar:
        for chunk in _chunks(names):
            pc.undistort_images(tmp, work / "model", image_dir, chunk, jpeg_quality=95)
            bar.update(len(chunk))
    sparse = out / "sparse" / "0"
    for target in (out / "images", sparse):
        shutil.rmtree(target, ignore_errors=True)
    sparse.parent.mkdir(parents=True, exist_ok=True)
    staged = tmp / "sparse0"
    staged.mkdir()
    for name in ("cameras.bin", "images.bin", "points3D.bin"):
        (tmp / "sparse" / name).rename(staged / name)
    staged.rename(sparse)
    (tmp / "images").rename(out / "images")
    shutil.rmtree(tmp, ignore_errors=True)


# ---- the whole command -------------------------------------------------------------------------
def _inputs(source: Path, work: Path, record: StageRecord, opts: SfmOptions) -> tuple[Path, list[str], list[str], str]:
    """(image folder, usable names, undecodable names, input kind) for a photo folder or a video."""
    from .video import is_video, sample_frames

    if is_video(source):
        frames = work / "frames"
        settings = {"video": file_key(source), "frames": opts.frames}
        if not record.done("frames", settings):
            shutil.rmtree(frames, ignore_errors=True)
            names = sample_frames(source, opts.frames, frames, opts.progress)
            check_count(names, source, [])
            record.finish("frames", settings, {"names": names})
        return frames, record.result("frames")["names"], [], "video"
    if source.is_file():
        raise InputError(f"{source}: not a folder of photos nor a video OpenCV knows (.mp4, .mov, ...)")
    names, bad, sizes = list_photos(source)
    if bad:
        warnings.warn(f"skipped {len(bad)} image(s) that cannot be decoded: {', '.join(bad)}", stacklevel=3)
    check_count(names, source, bad)
    if not opts.per_image_camera and len(set(sizes.values())) > 1:
        raise InputError(
            f"{source}: the photos have {len(set(sizes.values()))} different sizes, so they cannot share one camera; "
            f"pass --per-image-camera"
        )
    return source, names, bad, "photos"


def _settings(source: Path, names: list[str], opts: SfmOptions, method: str) -> dict:
    """Per stage, the settings its output depends on (each includes those of the stages before it)."""
    features = {
        "source": str(source.resolve()),
        "images": names,
        "camera_model": opts.camera_model,
        "per_image_camera": opts.per_image_camera,
        "max_image_size": opts.max_image_size,
        "max_features": opts.max_features,
    }
    matching = {**features, "matching": method, "overlap": opts.overlap if method == "sequential" else None}
    mapping = {**matching, "seed": opts.seed}
    return {"features": features, "matching": matching, "mapping": mapping, "undistortion": mapping}


def compute_poses(source: str, out: str, opts: SfmOptions | None = None) -> dict:
    """Camera poses for the photos in folder ``source`` (or the frames of video file ``source``):
    writes a COLMAP dataset to folder ``out`` (see the module docstring) and returns its summary:
    given, registered (counts), failed (names not registered), skipped (names not decodable),
    points, mean_reprojection_error (pixels), models (registered per model found), matching,
    cameras, seconds (per stage). A finished stage of an earlier call with the same settings is reused."""
    opts = opts or SfmOptions()
    source, out = Path(source), Path(out)
    if not source.exists():
        raise InputError(f"{source}: not found; give a folder of photos or a video file")
    _pycolmap()
    check_output(out, source, opts.force)
    work = out / WORK_DIR
    created = not out.exists()
    try:
        return _run(source, out, work, opts)
    except BaseException:
        if not (work / STAGES_FILE).exists():  # no stage finished: leave nothing behind
            shutil.rmtree(out if created else work, ignore_errors=True)
        raise


def _run(source: Path, out: Path, work: Path, opts: SfmOptions) -> dict:
    record = StageRecord(work)
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    work.mkdir(parents=True, exist_ok=True)
    image_dir, names, bad, kind = _inputs(source, work, record, opts)
    seconds["frames" if kind == "video" else "decode check"] = time.perf_counter() - t
    auto = "sequential" if kind == "video" or len(names) > opts.exhaustive_max else "exhaustive"
    method = auto if opts.matching == "auto" else opts.matching
    settings = _settings(source, names, opts, method)
    db = work / "database.db"

    reused = [s for s in ("features", "matching", "mapping") if record.done(s, settings[s])]
    t = time.perf_counter()
    if "features" not in reused:
        db.unlink(missing_ok=True)
        extract(db, image_dir, names, opts)
        record.finish("features", settings["features"])
    seconds["features"] = time.perf_counter() - t

    t = time.perf_counter()
    if "matching" not in reused:
        match(db, work, pair_list(names, method, opts.overlap), opts)
        record.finish("matching", settings["matching"])
    seconds["matching"] = time.perf_counter() - t

    t = time.perf_counter()
    if "mapping" not in reused:
        summary, models = map_images(db, image_dir, work, len(names), opts)
        record.finish("mapping", settings["mapping"], {**summary, "models": models})
    seconds["mapping"] = time.perf_counter() - t
    result = record.result("mapping")
    _check_registration(result, names, image_dir, kind, method, opts)

    t = time.perf_counter()
    if not record.done("undistortion", settings["undistortion"]) or not (out / "images").is_dir():
        undistort(work, image_dir, out, opts)
        record.finish("undistortion", settings["undistortion"])
    else:
        reused.append("undistortion")
    seconds["undistortion"] = time.perf_counter() - t
    registered = set(result["registered"])
    summary = {
        "source": str(source),
        "input": kind,
        "given": len(names),
        "registered": len(registered),
        "failed": [n for n in names if n not in registered],
        "skipped": bad,
        "points": result["points"],
        "mean_reprojection_error": result["mean_reprojection_error"],
        "models": result["models"],
        "matching": method,
        "cameras": result["cameras"],
        "options": {k: v for k, v in asdict(opts).items() if k not in ("progress", "force")},
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
        "reused": reused,
    }
    from gsgroup.fileio import write_json

    write_json(work / SUMMARY_FILE, summary)
    return summary


def _check_registration(result: dict, names: list[str], image_dir: Path, kind: str, method: str, opts) -> None:
    """Warn about extra models; InputError when under ``min_registered`` of the images registered."""
    models, registered = result["models"], set(result["registered"])
    if len(models) > 1:
        warnings.warn(
            f"the photos split into {len(models)} disconnected models of {', '.join(map(str, models))} images; "
            f"kept the largest ({models[0]} of {len(names)} images)",
            stacklevel=3,
        )
    if len(registered) >= opts.min_registered * len(names):
        return
    failed = [n for n in names if n not in registered]
    hint = (
        "use --matching sequential for photos taken in order, "
        if method == "exhaustive" and kind == "photos"
        else "try --matching exhaustive or a larger --overlap, "
    )
    raise InputError(
        f"{image_dir}: only {len(registered)} of {len(names)} images registered (failed: {', '.join(failed[:20])}"
        f"{' ...' if len(failed) > 20 else ''}); {hint}or take photos with more overlap "
        f"(--min-registered {len(registered) / len(names):.2f} keeps this model)"
    )


def poses_if_needed(
    source: str | Path, run_dir: str | Path, seed: int = 0, force: bool = False, progress: bool = True
) -> Path:
    """The dataset folder for ``gsgroup run``: ``source`` itself when it has poses (COLMAP or NeRF);
    for a video, a folder of photos, or a folder whose ``images/`` has no poses beside it,
    ``compute_poses`` into ``run_dir/data`` (resumed when done before) and that folder."""
    from .sfm_inputs import photos_without_poses

    photos = photos_without_poses(Path(source))
    if photos is None:
        return Path(source)
    data = Path(run_dir) / "data"
    print(f"[0/5] camera poses (structure-from-motion, see gsgroup poses -h) -> {data}")
    summary = compute_poses(str(photos), str(data), SfmOptions(seed=seed, force=force, progress=progress))
    print(f"      registered {summary['registered']} of {summary['given']} images, {summary['points']} points")
    return data
