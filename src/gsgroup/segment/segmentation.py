"""A run's segmentation: how its Gaussians map to object ids, and its files.

``Segmentation`` holds either an identity classifier (trained runs: a Gaussian's label is the
argmax of the classifier on its encoding, so labels follow the encodings through edits) or fixed
per-Gaussian labels with probabilities (lifted runs, kept parallel to the Gaussians).
Files: classifier.pt (``save_classifier``), labels.npy (``save_labels``) and objects.json
(``object_summary``); the names are ``gsgroup.run.Run``'s.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from ..fileio import atomic_path
from ..model import Gaussians
from ..model.sh import sh_to_rgb
from .identity import IdentityClassifier

LABEL_DTYPE = np.dtype([("id", "<i4"), ("prob", "<f4")])


@dataclass
class Segmentation:
    """An identity classifier, or lifted labels [N] int32 with probabilities [N] float32."""

    classifier: IdentityClassifier | None = None
    labels: np.ndarray | None = None
    prob: np.ndarray | None = None

    def __post_init__(self):
        if self.classifier is None:
            if self.labels is None:
                raise ValueError("Segmentation: give a classifier or per-Gaussian labels")
            self.labels = np.asarray(self.labels, np.int32)
            self.prob = (
                np.ones(len(self.labels), np.float32) if self.prob is None else np.asarray(self.prob, np.float32)
            )

    @property
    def num_classes(self) -> int:
        if self.classifier is not None:
            return self.classifier.num_classes
        return int(self.labels.max()) + 1 if len(self.labels) else 1

    def check(self, g: Gaussians, where: str | os.PathLike = "") -> None:
        """InputError when the segmentation does not fit the Gaussians ``g``."""
        if self.classifier is not None and g.id_dim != self.classifier.id_dim:
            raise InputError(
                f"{where}: the Gaussians have {g.id_dim} identity fields but the classifier expects "
                f"{self.classifier.id_dim}; re-run identity training"
            )
        if self.classifier is None and len(self.labels) != len(g):
            raise InputError(f"{where}: {len(self.labels)} labels for {len(g)} Gaussians; re-run lift")

    @torch.no_grad()
    def probs(self, g: Gaussians) -> torch.Tensor:
        """Per-Gaussian class probabilities [N,K] (one-hot for lifted labels)."""
        if self.classifier is not None:
            return torch.softmax(self.classifier(g.ids.detach()), dim=-1)
        return torch.nn.functional.one_hot(torch.from_numpy(self.labels.astype(np.int64)), self.num_classes).float()

    def label(self, g: Gaussians) -> tuple[np.ndarray, np.ndarray]:
        """Per-Gaussian (label [N] int32, its probability [N] float32)."""
        if self.classifier is None:
            return self.labels, self.prob
        prob, label = self.probs(g).max(dim=-1)
        return label.numpy().astype(np.int32), prob.numpy().astype(np.float32)

    def subset(self, keep: np.ndarray) -> Segmentation:
        """The segmentation of the Gaussians kept by ``keep`` [N] bool."""
        if self.classifier is not None:
            return self
        return Segmentation(None, self.labels[keep], self.prob[keep])

    def append(self, labels: np.ndarray) -> Segmentation:
        """Lifted labels: the segmentation after appending Gaussians with ``labels`` [M] (prob 1)."""
        if self.classifier is not None:
            return self
        labels = np.asarray(labels, np.int32)
        return Segmentation(
            None, np.concatenate([self.labels, labels]), np.concatenate([self.prob, np.ones(len(labels), np.float32)])
        )


def save_classifier(path: str | os.PathLike, classifier: IdentityClassifier) -> None:
    """classifier.pt: {"num_classes", "id_dim", "state_dict"}, atomically."""
    with atomic_path(path) as tmp:
        torch.save(
            {"num_classes": classifier.num_classes, "id_dim": classifier.id_dim, "state_dict": classifier.state_dict()},
            tmp,
        )


def load_classifier(path: str | os.PathLike) -> IdentityClassifier:
    """Read classifier.pt written by save_classifier."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: not found; train with masks (`gsgroup train DATA --masks DIR`) to get identities")
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
        clf = IdentityClassifier(state["num_classes"], state["id_dim"])
        clf.load_state_dict(state["state_dict"])
    except Exception as e:  # noqa: BLE001 - any unpickling problem is a corrupt file to the user
        raise InputError(f"{path}: not a gsgroup classifier ({e}); retrain identities") from None
    return clf


def save_labels(path: str | os.PathLike, labels: np.ndarray, prob: np.ndarray) -> None:
    """labels.npy: a structured array [N] with fields id (int32) and prob (float32)."""
    arr = np.zeros(len(labels), dtype=LABEL_DTYPE)
    arr["id"], arr["prob"] = labels, prob
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, arr)


def load_labels(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read labels.npy -> (labels [N] int32, prob [N] float32)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: not found; run `gsgroup train --masks` or `gsgroup lift` first")
    try:
        arr = np.load(path)
    except (ValueError, OSError) as e:
        raise InputError(f"{path}: not a labels file ({e}); re-run lift") from None
    if arr.dtype != LABEL_DTYPE:
        raise InputError(f"{path}: unexpected layout {arr.dtype}; expected fields id and prob")
    return arr["id"].copy(), arr["prob"].copy()


def object_entry(points: np.ndarray, weights: np.ndarray, rgb: np.ndarray) -> dict:
    """One object of objects.json: {"gaussians", "bbox_min", "bbox_max", "mean_color"} of its
    points [M,3] (Gaussian means), opacity weights [M] and colors [M,3] in [0,1]."""
    w = weights / max(float(weights.sum()), 1e-12)
    return {
        "gaussians": int(len(points)),
        "bbox_min": points.min(0).round(5).tolist() if len(points) else None,
        "bbox_max": points.max(0).round(5).tolist() if len(points) else None,
        "mean_color": (w @ rgb).round(4).tolist() if len(points) else None,
    }


def object_summary(gaussians: Gaussians, labels: np.ndarray) -> dict:
    """objects.json of a run: {id (str): object_entry} for every label in ``labels`` [N]."""
    means = gaussians.means.detach().numpy()
    rgb = sh_to_rgb(gaussians.sh0.detach()[:, 0]).clamp(0, 1).numpy()
    opac = torch.sigmoid(gaussians.opacities.detach()).numpy()
    return {
        str(int(i)): object_entry(means[labels == i], opac[labels == i], rgb[labels == i]) for i in np.unique(labels)
    }
