"""Gaussian Grouping training: identity encodings learned jointly with appearance, and its outputs.

``GroupingTrainer`` renders the 16-D identities in the same rasterizer pass as colour (features
[N, 3+16]), maps the rendered E_id through a linear classifier to K classes and adds
λ2d·L2d (cross-entropy / ln K against the associated masks) every iteration and λ3d·L3d (KL to the
5 nearest Gaussians of 1000 sampled ones) every ``l3d_every`` iterations.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..data.scene import Scene
from ..errors import InputError
from ..fileio import atomic_path, write_json
from ..model import Gaussians
from ..model.sh import sh_to_rgb
from ..train.trainer import TrainConfig, Trainer
from .identity import IdentityClassifier, NeighbourIndex, loss_2d, loss_3d, num_classes_for

LABEL_DTYPE = np.dtype([("id", "<i4"), ("prob", "<f4")])


class GroupingTrainer(Trainer):
    """A Trainer that also learns identity encodings from associated masks.

    masks: {training view name: [H,W] int ids or None}. Views without a mask get no L2d.
    """

    def __init__(self, scene: Scene, cfg: TrainConfig, out_dir, masks: dict[str, np.ndarray | None],
                 gaussians: Gaussians | None = None, num_classes: int | None = None):
        super().__init__(scene, cfg, out_dir, gaussians)
        id_dim = self.params["ids"].shape[1]
        if id_dim == 0:
            raise InputError("identity training needs Gaussians with identity encodings; use --id-dim > 0")
        self.masks = [None if masks.get(v.name) is None else torch.from_numpy(np.asarray(masks[v.name])).long()
                      for v in self.views]
        if all(m is None for m in self.masks):
            raise InputError("no training view has a mask; check the --masks folder and the image names")
        self.num_classes = num_classes or num_classes_for(masks.values())
        self.classifier = IdentityClassifier(self.num_classes, id_dim)
        self.cls_optimizer = torch.optim.Adam(self.classifier.parameters(), lr=cfg.lr_classifier)
        self.neighbours = NeighbourIndex()
        self.generator = torch.Generator().manual_seed(cfg.seed)

    def extra_state(self) -> dict:
        return {"classifier": self.classifier.state_dict(), "cls_optimizer": self.cls_optimizer.state_dict(),
                "id_generator": self.generator.get_state()}

    def load_extra_state(self, state: dict) -> None:
        if "classifier" not in state:
            raise InputError("the checkpoint has no identity classifier; it was trained without masks")
        self.classifier.load_state_dict(state["classifier"])
        self.cls_optimizer.load_state_dict(state["cls_optimizer"])
        self.generator.set_state(state["id_generator"])

    def extra_features(self) -> torch.Tensor:
        return self.params["ids"]

    def extra_loss(self, step: int, index: int, features: torch.Tensor) -> torch.Tensor | None:
        cfg = self.cfg
        loss = None
        mask = self.masks[index]
        if mask is not None and cfg.lambda_2d > 0:
            loss = cfg.lambda_2d * loss_2d(self.classifier(features), mask)
        if cfg.lambda_3d > 0 and step % cfg.l3d_every == 0:
            if step % 100 == 0:
                self.neighbours.invalidate()  # means drift: refresh the KD-tree now and then
            l3d = cfg.lambda_3d * loss_3d(self.params["ids"], self.params["means"], self.classifier, k=cfg.l3d_k,
                                          m=cfg.l3d_m, generator=self.generator, tree=self.neighbours)
            loss = l3d if loss is None else loss + l3d
        return loss

    def after_step(self, densified: bool) -> None:
        self.cls_optimizer.step()
        self.cls_optimizer.zero_grad(set_to_none=True)
        if densified:
            self.neighbours.invalidate()

    def save(self, plain: bool = False) -> Path:
        path = super().save(plain=plain)
        save_segmentation(self.out_dir, self.gaussians(), self.classifier)
        return path


@torch.no_grad()
def gaussian_labels(ids: torch.Tensor, classifier: IdentityClassifier) -> tuple[np.ndarray, np.ndarray]:
    """Per-Gaussian argmax class and its probability. ids [N,D] -> (labels [N] int32, prob [N] float32)."""
    probs = torch.softmax(classifier(ids), dim=-1)
    prob, label = probs.max(dim=-1)
    return label.numpy().astype(np.int32), prob.numpy().astype(np.float32)


def save_classifier(path: str | os.PathLike, classifier: IdentityClassifier) -> None:
    """classifier.pt: {"num_classes", "id_dim", "state_dict"}, atomically."""
    with atomic_path(path) as tmp:
        torch.save({"num_classes": classifier.num_classes, "id_dim": classifier.id_dim,
                    "state_dict": classifier.state_dict()}, tmp)


def load_classifier(path: str | os.PathLike) -> IdentityClassifier:
    """Read classifier.pt written by save_classifier."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: not found; train with masks (`gsgroup train DATA --masks DIR`) to get identities")
    try:
        state = torch.load(path, weights_only=True)
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
    arr = np.load(path)
    if arr.dtype != LABEL_DTYPE:
        raise InputError(f"{path}: unexpected layout {arr.dtype}; expected fields id and prob")
    return arr["id"].copy(), arr["prob"].copy()


def object_summary(gaussians: Gaussians, labels: np.ndarray) -> dict:
    """For each id: Gaussian count, 3D bounding box (min/max of the means) and opacity-weighted mean colour."""
    means = gaussians.means.numpy()
    rgb = sh_to_rgb(gaussians.sh0[:, 0]).clamp(0, 1).numpy()
    opac = torch.sigmoid(gaussians.opacities).numpy()
    out = {}
    for i in np.unique(labels):
        sel = labels == i
        w = opac[sel] / max(opac[sel].sum(), 1e-12)
        out[str(int(i))] = {
            "gaussians": int(sel.sum()),
            "bbox_min": means[sel].min(0).round(5).tolist(),
            "bbox_max": means[sel].max(0).round(5).tolist(),
            "mean_color": (w @ rgb[sel]).round(4).tolist(),
        }
    return out


def save_segmentation(run: str | os.PathLike, gaussians: Gaussians, classifier: IdentityClassifier) -> None:
    """Write classifier.pt, labels.npy and objects.json into ``run``."""
    run = Path(run)
    labels, prob = gaussian_labels(gaussians.ids, classifier)
    save_classifier(run / "classifier.pt", classifier)
    save_labels(run / "labels.npy", labels, prob)
    write_json(run / "objects.json", object_summary(gaussians, labels))


def load_segmentation(run: str | os.PathLike) -> tuple[IdentityClassifier | None, np.ndarray | None]:
    """A run's way to label pixels: its identity classifier (classifier.pt) when trained with
    identities, else its per-Gaussian labels (labels.npy, e.g. from lifting); (None, None) if neither."""
    run = Path(run)
    if (run / "classifier.pt").exists():
        return load_classifier(run / "classifier.pt"), None
    if (run / "labels.npy").exists():
        return None, load_labels(run / "labels.npy")[0]
    return None, None
