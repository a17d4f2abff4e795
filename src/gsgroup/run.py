"""A run folder, typed: ``RunConfig`` (config.json) and ``Run``, the one place that knows its files.

    run = Run.open("out/run")              # lazy: nothing is read until used
    run.gaussians, run.segmentation, run.backdrop, run.scene, run.view("view_003")
    run.file(Run.OBJECTS)                  # out/run/objects.json

A run folder holds (each written atomically):

    config.json      RunConfig: data (where the images are, resolution, split), train (TrainConfig)
    point_cloud.ply  the Gaussians (Inria 3DGS layout + obj_dc_* identities)
    environment.pt   the learned environment behind the Gaussians (absent: a fixed color)
    checkpoint.pt    trainer state for --resume
    classifier.pt    identity classifier (runs trained with masks), or
    labels.npy       per-Gaussian labels (lifted runs; both are written for trained runs)
    objects.json     per object id: gaussians, bbox_min, bbox_max, mean_color
    train_log.jsonl, metrics.json, seg_metrics.json, edit.json (edited runs), cache/

Edits return in-memory runs (``Run.derive``) that ``save`` writes as new run folders.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field, fields
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from . import __version__
from .data.masks import OBJECTS_FILE
from .data.scene import Scene, View, load_scene
from .errors import InputError
from .fileio import write_image, write_json
from .model import Gaussians, load_ply, save_ply
from .options import option
from .segment.segmentation import (
    Segmentation,
    load_classifier,
    load_labels,
    object_summary,
    save_classifier,
    save_labels,
)
from .train.config import TrainConfig
from .train.environment import Environment


def parse_resolution(text: str) -> int:
    """``--resolution``: 1, 2, 4, 8 (divisors of the image size) or a width in pixels (above 8)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1 or (value not in (1, 2, 4, 8) and value < 9):
        raise argparse.ArgumentTypeError(
            f"'{text}': 1, 2, 4 and 8 divide the image size; a larger number is the width in pixels"
        )
    return value


@dataclass
class DataConfig:
    """Where a run's images come from and how they are loaded."""

    path: str = ""
    resolution: int | None = option(
        None,
        "1/2/4/8 divide the image size; a larger number sets the width (default: at most 1600 wide)",
        type=parse_resolution,
    )
    eval: bool = option(False, "hold out every 8th image (by name) as the test split")
    masks: str | None = None  # associated object masks the identities were trained on
    image_cache: int = option(
        0,
        "0: hold every image in memory (uint8); N > 0: stream the images from disk, keeping the N most "
        "recently used decoded (for captures whose images do not fit; training is bit-identical)",
        min=0,
    )

    def __post_init__(self):
        if not isinstance(self.image_cache, int) or self.image_cache < 0:
            raise InputError(f"image_cache {self.image_cache!r}: must be an integer >= 0", "image_cache")
        if self.resolution is not None:
            try:
                parse_resolution(str(self.resolution))
            except argparse.ArgumentTypeError as e:
                raise InputError(f"resolution {e}", "resolution") from None


@dataclass
class RunConfig:
    """Everything config.json records about a run."""

    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    version: str = __version__
    edited_from: str | None = None  # the source run of an edited run

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict, where: str | os.PathLike = "config.json") -> RunConfig:
        """Read ``to_dict``'s output; unknown or missing keys are a one-line InputError naming ``where``."""
        if not isinstance(d, dict) or not isinstance(d.get("data"), dict) or "path" not in d["data"]:
            raise InputError(f"{where}: has no data.path; it was not written by gsgroup, retrain the run")
        unknown = (set(d) - {"data", "train", "version", "edited_from"}) | (
            set(d["data"]) - {f.name for f in fields(DataConfig)}
        )
        if unknown:
            raise InputError(f"{where}: unknown keys {sorted(unknown)}; written by a newer gsgroup? upgrade it")
        try:
            train = TrainConfig.from_dict(d.get("train", {}))
        except InputError as e:
            raise InputError(f"{where}: {e}") from None
        except TypeError as e:
            raise InputError(f"{where}: bad train settings ({e}); retrain the run") from None
        return cls(DataConfig(**d["data"]), train, d.get("version", "unknown"), d.get("edited_from"))


class Run:
    """A run folder (``path``) or an in-memory run derived from one by an edit (``path`` None).

    ``gaussians``, ``segmentation``, ``backdrop`` and ``scene`` load on first use."""

    CONFIG = "config.json"
    GAUSSIANS = "point_cloud.ply"
    ENVIRONMENT = "environment.pt"
    CHECKPOINT = "checkpoint.pt"
    TRAIN_LOG = "train_log.jsonl"
    CLASSIFIER = "classifier.pt"
    LABELS = "labels.npy"
    OBJECTS = OBJECTS_FILE  # objects.json, as beside associated masks
    METRICS = "metrics.json"
    SEG_METRICS = "seg_metrics.json"
    EDIT = "edit.json"
    CACHE = "cache"

    def __init__(
        self,
        path: str | os.PathLike | None,
        config: RunConfig,
        source: Run | None = None,
        cache_dir: str | os.PathLike | None = None,
    ):
        self.path = None if path is None else Path(path)
        self.config = config
        self.source = source  # the run an in-memory run was derived from (shares its scene)
        self.edit: dict | None = None  # what made a derived run (edit.json)
        self.images: dict[str, np.ndarray] = {}  # pictures of an edit, written by save(): {relative path: image}
        # where load_scene keeps undistorted images (default: path/cache)
        self.cache_dir: Path | None = None if cache_dir is None else Path(cache_dir)

    # ---- opening -------------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> Run:
        """The run folder at ``path``; InputError when it is not one. ``cache_dir``: see ``load_scene``."""
        path = Path(path)
        if not path.is_dir():
            raise InputError(f"{path}: not found or not a folder; give a run folder written by `gsgroup train`")
        cfg = path / cls.CONFIG
        if not cfg.exists():
            raise InputError(f"{cfg}: not found; RUN must be a folder written by `gsgroup train`")
        try:
            d = json.loads(cfg.read_text())
        except json.JSONDecodeError as e:
            raise InputError(f"{cfg}: corrupt JSON ({e}); retrain or restore the file") from None
        return cls(path, RunConfig.from_dict(d, cfg), cache_dir=cache_dir)

    @classmethod
    def check_new(cls, path: str | os.PathLike, force: bool = False) -> None:
        """InputError when a new run may not go to ``path``: not a folder, or holding a run (unless ``force``)."""
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise InputError(f"{path}: exists and is not a folder; pick another output folder")
        if ((path / cls.CONFIG).exists() or (path / cls.CHECKPOINT).exists()) and not force:
            raise InputError(f"{path}: already holds a run; resume it or force a new one (--resume / --force)")

    @classmethod
    def create(
        cls, path: str | os.PathLike, config: RunConfig, force: bool = False, cache_dir: str | os.PathLike | None = None
    ) -> Run:
        """Start a new run in ``path``: refuses a folder holding a run unless ``force`` (then its
        outputs are replaced, and its train log and checkpoint removed); writes config.json."""
        path = Path(path)
        cls.check_new(path, force)
        if (path / cls.CONFIG).exists() or (path / cls.CHECKPOINT).exists():
            for name in (cls.TRAIN_LOG, cls.CHECKPOINT, cls.CLASSIFIER, cls.LABELS, cls.OBJECTS, cls.ENVIRONMENT):
                (path / name).unlink(missing_ok=True)
        run = cls(path, config, cache_dir=cache_dir)
        run.write_config()
        return run

    def file(self, name: str) -> Path:
        """The path of file ``name`` (one of the class constants) in the run folder."""
        if self.path is None:
            raise ValueError("an in-memory run has no folder; save() it first")
        return self.path / name

    def has(self, name: str) -> bool:
        return self.path is not None and (self.path / name).exists()

    def write_config(self) -> None:
        write_json(self.file(self.CONFIG), self.config.to_dict())

    # ---- contents (lazy) -----------------------------------------------------------------------
    def preload(self, **contents) -> Run:
        """Give contents already in memory (scene=, gaussians=, segmentation=...) instead of loading them."""
        self.__dict__.update(contents)
        return self

    def load_scene(self, progress: bool = False, allow_empty_points: bool = True) -> Scene:
        """The scene the run was trained on (the same images, resolution, split and background),
        loaded on the first call with a progress bar when ``progress``."""
        if "scene" not in self.__dict__:
            if self.source is not None:
                scene = self.source.load_scene(progress)
            else:
                d = self.config.data
                scene = load_scene(
                    d.path,
                    resolution=d.resolution,
                    eval=d.eval,
                    background=self.config.train.background,
                    cache_dir=self.cache_dir or self.file(self.CACHE),
                    allow_empty_points=allow_empty_points,
                    progress=progress,
                    image_cache=d.image_cache,
                )
            self.preload(scene=scene)
        return self.__dict__["scene"]

    @cached_property
    def scene(self) -> Scene:
        """``load_scene()`` without a progress bar."""
        return self.load_scene()

    def views(self, split: str = "train") -> list[View]:
        """The views of ``split``: train, test or all."""
        s = self.scene
        if split not in ("train", "test", "all"):
            raise InputError(f"split '{split}': use train, test or all")
        return {"train": s.train, "test": s.test, "all": s.train + s.test}[split]

    def view(self, stem: str) -> View:
        """The view named ``stem`` (train or test)."""
        views = self.views("all")
        for v in views:
            if v.name == stem:
                return v
        names = ", ".join(v.name for v in views[:3])
        raise InputError(f"{self.path}: no view named '{stem}' (e.g. {names}); use an image stem")

    @cached_property
    def gaussians(self) -> Gaussians:
        path = self.file(self.GAUSSIANS)
        if not path.exists():
            raise InputError(f"{path}: not found; train first with `gsgroup train DATA --out {self.path}`")
        return load_ply(path)

    @cached_property
    def backdrop(self) -> torch.Tensor | Environment:
        """What renders show behind the Gaussians: the learned environment, else the color [3]."""
        if self.source is not None:
            return self.source.backdrop
        if self.has(self.ENVIRONMENT):
            return Environment.load(self.file(self.ENVIRONMENT))
        return torch.tensor(self.config.train.background, dtype=torch.float32)

    @cached_property
    def segmentation(self) -> Segmentation | None:
        """The identity classifier (classifier.pt) or lifted labels (labels.npy); None when neither."""
        if self.has(self.CLASSIFIER):
            seg = Segmentation(load_classifier(self.file(self.CLASSIFIER)))
        elif self.has(self.LABELS):
            seg = Segmentation(None, *load_labels(self.file(self.LABELS)))
        else:
            return None
        seg.check(self.gaussians, self.path)
        return seg

    def require_segmentation(self) -> Segmentation:
        """The segmentation, or an InputError saying how to get one."""
        if self.segmentation is None:
            raise InputError(
                f"{self.path}: has no segmentation (classifier.pt or labels.npy); train with masks or run lift"
            )
        return self.segmentation

    @cached_property
    def labels(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-Gaussian (label [N] int32, probability [N] float32) of a segmented run."""
        return self.require_segmentation().label(self.gaussians)

    # ---- writing -------------------------------------------------------------------------------
    def save_gaussians(self, g: Gaussians, plain: bool = False) -> Path:
        """point_cloud.ply (``plain``: without the obj_dc_* identity fields)."""
        save_ply(self.file(self.GAUSSIANS), g, plain=plain)
        self.preload(gaussians=g)
        return self.file(self.GAUSSIANS)

    def save_environment(self, env: Environment | None) -> None:
        if env is not None:
            env.save(self.file(self.ENVIRONMENT))

    def save_segmentation(self, seg: Segmentation, g: Gaussians | None = None) -> None:
        """classifier.pt (with a classifier), labels.npy and objects.json for the Gaussians ``g``."""
        g = self.gaussians if g is None else g
        labels, prob = seg.label(g)
        if seg.classifier is not None:
            save_classifier(self.file(self.CLASSIFIER), seg.classifier)
        save_labels(self.file(self.LABELS), labels, prob)
        write_json(self.file(self.OBJECTS), object_summary(g, labels))
        self.preload(segmentation=seg, labels=(labels, prob))

    # ---- derived runs --------------------------------------------------------------------------
    def derive(
        self, gaussians: Gaussians | None = None, segmentation: Segmentation | None = None, edit: dict | None = None
    ) -> Run:
        """An in-memory run with new Gaussians and/or segmentation, same scene and backdrop.
        ``edit`` (what was done) goes to edit.json when it is saved."""
        config = RunConfig(
            self.config.data,
            self.config.train,
            __version__,
            str(self.path.resolve()) if self.path is not None and edit is not None else self.config.edited_from,
        )
        seg = self.segmentation if segmentation is None else segmentation
        run = Run(None, config, source=self).preload(
            gaussians=self.gaussians if gaussians is None else gaussians, segmentation=seg
        )
        if seg is not None:
            seg.check(run.gaussians, "edited run")
        run.edit = edit
        return run

    def check_target(self, path: str | os.PathLike, force: bool = False) -> None:
        """InputError when ``save(path, force)`` would be refused: ``path`` is (or contains) this run
        or its source, is a file, or is a non-empty folder without ``force``."""
        path = Path(path)
        sources = [r.path.resolve() for r in (self, self.source) if r is not None and r.path is not None]
        if path.resolve() in sources:
            raise InputError(f"out {path}: is the input run; write the result to a new folder", "out")
        if path.exists() and not path.is_dir():
            raise InputError(f"out {path}: exists and is not a folder; pick another output folder", "out")
        if path.is_dir() and any(path.iterdir()):
            if not force:
                raise InputError(
                    f"out {path}: exists and is not empty; force to replace it or pick another folder", "out"
                )
            if any(s.is_relative_to(path.resolve()) for s in sources):
                raise InputError(f"out {path}: contains the input run; pick another folder", "out")

    def save(self, path: str | os.PathLike, force: bool = False, plain: bool = False) -> Run:
        """Write this (derived) run as a new run folder ``path``: config.json, point_cloud.ply,
        environment.pt, the segmentation, objects.json, ``images`` and edit.json. Refuses ``path`` when
        it is the source run, or not empty without ``force`` (then it is replaced). Everything is
        written to a temporary folder beside ``path`` first and moved there at the end: a failure
        leaves no new files and ``path`` as it was. Returns the saved run."""
        path = Path(path)
        self.check_target(path, force)
        new_parent = next((p for p in reversed(path.absolute().parents) if not p.exists()), None)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
        try:
            out = Run(tmp, self.config, source=self)
            out.write_config()
            out.save_gaussians(self.gaussians, plain=plain)
            if isinstance(self.backdrop, Environment):
                out.save_environment(self.backdrop)
            if self.segmentation is not None:
                out.save_segmentation(self.segmentation, self.gaussians)
            for name, image in self.images.items():
                write_image(out.file(name), image)
            if self.edit is not None:
                out.edit = self.edit
                write_json(out.file(self.EDIT), self.edit)
            if path.exists():
                shutil.rmtree(path)
            tmp.replace(path)
        except BaseException:
            shutil.rmtree(new_parent or tmp, ignore_errors=True)
            raise
        os.chmod(path, 0o777 & ~_umask())  # mkdtemp makes 0700; give the folder the usual permissions
        out.path = path
        return out


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
