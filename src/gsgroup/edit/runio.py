"""Reading a segmented run for editing and writing the edited run folder.

An edited run is a valid run: config.json (the source's, plus "edited_from"), point_cloud.ply,
the segmentation (classifier.pt — copied or extended —, labels.npy and objects.json recomputed for
the new Gaussians), edit.json, and before/, after/, before_after/ renders of a few views.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from ..fileio import write_image, write_json
from ..model import Gaussians, save_ply
from ..segment.grouping import (
    gaussian_labels,
    load_labels,
    load_segmentation,
    object_summary,
    save_classifier,
    save_labels,
)
from ..segment.idmaps import render_ids
from ..train.environment import Environment
from ..train.run import ENVIRONMENT_FILE, load_run_backdrop, load_run_gaussians, load_run_scene, read_config
from ..train.trainer import render_view, view_tensors
from .ops import Seg
from .select import Segmentation, segmentation_for


@dataclass
class RunData:
    """A loaded segmented run. ``scene`` is loaded lazily by ``views()``."""

    path: Path
    config: dict
    gaussians: Gaussians
    seg: Seg
    _scene: object = None

    @cached_property
    def background(self) -> torch.Tensor | Environment:
        """What renders show behind the Gaussians: the learned environment or a colour [3]."""
        return load_run_backdrop(self.path, self.config)

    def scene(self):
        if self._scene is None:
            self._scene = load_run_scene(self.path, self.config, progress=False)
        return self._scene

    def views(self, split: str = "train") -> list:
        s = self.scene()
        return {"train": s.train, "test": s.test, "all": s.train + s.test}[split]

    def view(self, stem: str):
        """The view named ``stem`` (train or test)."""
        for v in self.views("all"):
            if v.name == stem:
                return v
        names = [v.name for v in self.views("all")]
        raise InputError(f"{self.path}: no view named '{stem}' (e.g. {', '.join(names[:3])}); use an image stem")

    def segmentation(self, g: Gaussians | None = None) -> Segmentation:
        g = self.gaussians if g is None else g
        return segmentation_for(g, self.seg.classifier, self.seg.labels, self.path)


def load_run(run: str | Path) -> RunData:
    """Load a segmented run (config, Gaussians, classifier or lifted labels)."""
    run = Path(run)
    config = read_config(run)
    g = load_run_gaussians(run)
    classifier, _ = load_segmentation(run)
    if classifier is not None:
        seg = Seg(classifier)
    elif (run / "labels.npy").exists():
        labels, prob = load_labels(run / "labels.npy")
        seg = Seg(None, labels, prob)
    else:
        raise InputError(f"{run}: has no segmentation (classifier.pt or labels.npy); train with --masks or run lift")
    data = RunData(run, config, g, seg)
    data.segmentation()  # validates sizes
    return data


def check_out(run: Path, out: Path, force: bool) -> None:
    """Refuse --out == RUN, and an existing non-empty --out without --force (then it is emptied)."""
    if out.resolve() == Path(run).resolve():
        raise InputError(f"--out {out}: is the input run; edits write a new run folder, pick another --out")
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: exists and is not a folder; pick another --out")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise InputError(f"--out {out}: exists and is not empty; pass --force to replace it or pick another --out")
        if Path(run).resolve().is_relative_to(out.resolve()):
            raise InputError(f"--out {out}: contains the input run; pick another --out")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def seg_labels(g: Gaussians, seg: Seg) -> tuple[np.ndarray, np.ndarray]:
    """Per-Gaussian (labels [N] int32, prob [N] float32) of the edited Gaussians."""
    if seg.classifier is not None:
        return gaussian_labels(g.ids, seg.classifier)
    return seg.labels.astype(np.int32), seg.prob.astype(np.float32)


def write_run(src: RunData, out: Path, g: Gaussians, seg: Seg, info: dict, plain: bool = False) -> dict:
    """Write the edited run folder: config.json, point_cloud.ply, segmentation files and edit.json."""
    config = dict(src.config)
    config["edited_from"] = str(src.path.resolve())
    write_json(out / "config.json", config)
    save_ply(out / "point_cloud.ply", g, plain=plain)
    if isinstance(src.background, Environment):
        src.background.save(out / ENVIRONMENT_FILE)
    labels, prob = seg_labels(g, seg)
    if seg.classifier is not None:
        save_classifier(out / "classifier.pt", seg.classifier)
    save_labels(out / "labels.npy", labels, prob)
    objects = object_summary(g, labels)
    write_json(out / "objects.json", objects)
    info = dict(info)
    info.setdefault("gaussians_before", len(src.gaussians))
    info["gaussians_after"] = len(g)
    info["objects_after"] = {k: v["gaussians"] for k, v in objects.items()}
    write_json(out / "edit.json", info)
    return info


def preview_views(src: RunData, count: int = 3) -> list:
    """A few views for before/after pictures: test views first, then evenly spaced train views."""
    test = list(src.views("test"))
    train = list(src.views("train"))
    picked = test[:count]
    if len(picked) < count and train:
        step = max(1, len(train) // (count - len(picked)))
        picked += train[::step][: count - len(picked)]
    return picked


@torch.no_grad()
def render_rgb(g: Gaussians, view, background: torch.Tensor) -> np.ndarray:
    """RGB render [H,W,3] in [0,1] of one View."""
    return render_view(g, view_tensors(view), g.sh_degree, background=background).image.clamp(0, 1).numpy()


def write_before_after(src: RunData, out: Path, before: Gaussians, after: Gaussians, count: int = 3) -> list[str]:
    """out/before/<stem>.png, out/after/<stem>.png and out/before_after/<stem>.png (both halves)."""
    names = []
    for view in preview_views(src, count):
        a = render_rgb(before, view, src.background)
        b = render_rgb(after, view, src.background)
        gap = np.ones((a.shape[0], 2, 3), np.float32)
        write_image(out / "before" / f"{view.name}.png", a)
        write_image(out / "after" / f"{view.name}.png", b)
        write_image(out / "before_after" / f"{view.name}.png", np.concatenate([a, gap, b], axis=1))
        names.append(view.name)
    return names


def id_map(g: Gaussians, seg: Seg, view, background: torch.Tensor) -> np.ndarray:
    """Rendered per-pixel ids [H,W] of one View (0 where alpha < 0.5)."""
    labels = None if seg.classifier is not None else seg.labels
    return render_ids(g, view_tensors(view), seg.classifier, labels, background=background).ids


def dump(info: dict) -> str:
    return json.dumps(info, indent=None, default=str)
