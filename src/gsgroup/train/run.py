"""A run folder: config.json, point_cloud.ply, environment.pt, checkpoint.pt, train_log.jsonl, metrics.json, cache/."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from ..data.scene import Scene, load_scene
from ..errors import InputError
from ..model import Gaussians, load_ply
from .environment import Environment

ENVIRONMENT_FILE = "environment.pt"


def read_config(run: str | os.PathLike) -> dict:
    """The run's config.json as a dict; a clear error when RUN is not a run folder."""
    path = Path(run) / "config.json"
    if not path.exists():
        raise InputError(f"{path}: not found; RUN must be a folder written by `gsgroup train`")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: corrupt JSON ({e}); retrain or restore the file") from None


def load_run_scene(run: str | os.PathLike, config: dict | None = None, progress: bool = True) -> Scene:
    """Reload the scene a run was trained on, at the same resolution, split and background."""
    config = config or read_config(run)
    data = config["data"]
    return load_scene(
        data["path"], resolution=data.get("resolution"), eval=data.get("eval", False),
        background=tuple(config["train"]["background"]), cache_dir=Path(run) / "cache",
        allow_empty_points=True, progress=progress,
    )


def load_run_gaussians(run: str | os.PathLike) -> Gaussians:
    """The run's point_cloud.ply."""
    path = Path(run) / "point_cloud.ply"
    if not path.exists():
        raise InputError(f"{path}: not found; train first with `gsgroup train DATA --out {run}`")
    return load_ply(path)


def load_run_backdrop(run: str | os.PathLike, config: dict | None = None) -> torch.Tensor | Environment:
    """What the run renders behind its Gaussians: its learned environment.pt when it has one,
    else the fixed background colour [3] of its config."""
    path = Path(run) / ENVIRONMENT_FILE
    if path.exists():
        return Environment.load(path)
    config = config or read_config(run)
    return torch.tensor(config["train"]["background"], dtype=torch.float32)
