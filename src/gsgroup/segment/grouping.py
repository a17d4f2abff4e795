"""Gaussian Grouping training: identity encodings learned jointly with appearance.

``GroupingTrainer`` renders the 16-D identities in the same rasterizer pass as color (features
[N, 3+16]), maps the rendered E_id through a linear classifier to K classes and adds
λ2d·L2d (cross-entropy / ln K against the associated masks) every iteration and λ3d·L3d (KL to the
5 nearest Gaussians of 1000 sampled ones) every ``l3d_every`` iterations.
"""

from __future__ import annotations

import numpy as np
import torch

from ..data.scene import Scene
from ..errors import InputError
from ..model import Gaussians
from ..train.adam import FusedAdam
from ..train.config import TrainConfig
from ..train.trainer import Trainer
from .identity import (
    IdentityClassifier,
    NeighbourIndex,
    classifier_logits,
    classifier_loss_2d,
    logits_loss_2d,
    loss_3d,
    num_classes_for,
)


def compact_mask(labels) -> torch.Tensor:
    """[H,W] integer ids -> a uint8 tensor when they fit, else uint16 (else int32); values unchanged."""
    arr = np.asarray(labels)
    top = int(arr.max()) if arr.size else 0
    if arr.size and int(arr.min()) < 0:
        return torch.from_numpy(arr.astype(np.int32))
    dtype = np.uint8 if top <= 255 else np.uint16 if top <= 65535 else np.int32
    return torch.from_numpy(np.ascontiguousarray(arr, dtype=dtype))


class StreamedList:
    """``GroupingTrainer.masks`` for streamed masks: item i is ``compact_mask`` of view names[i]'s mask,
    read through ``masks`` (a StreamedMasks) on access; None for a view without one."""

    def __init__(self, masks, names: list[str]):
        self.source, self.names = masks, names

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: int) -> torch.Tensor | None:
        labels = self.source[self.names[i]]
        return None if labels is None else compact_mask(labels)

    def __iter__(self):
        return (self[i] for i in range(len(self)))


class GroupingTrainer(Trainer):
    """A Trainer that also learns identity encodings from associated masks.

    masks: {training view name: [H,W] int ids or None}. Views without a mask get no L2d.
    """

    def __init__(
        self,
        scene: Scene,
        cfg: TrainConfig,
        masks: dict[str, np.ndarray | None],
        gaussians: Gaussians | None = None,
        num_classes: int | None = None,
    ):
        super().__init__(scene, cfg, gaussians)
        id_dim = self.params["ids"].shape[1]
        if id_dim == 0:
            raise InputError("identity training needs Gaussians with identity encodings; use --id-dim > 0")
        if getattr(masks, "streamed", False):  # data.mask_stream.StreamedMasks: read per step
            self.masks = StreamedList(masks, [v.name for v in self.views])
            found = max(masks.max_id + 1, 1)
            self.masked_views = sum(masks.files.get(v.name) is not None for v in self.views)
        else:  # held as uint8 (<= 255 ids) or uint16, converted to int64 per step (a quarter or eighth of int64)
            self.masks = [None if masks.get(v.name) is None else compact_mask(masks[v.name]) for v in self.views]
            found = num_classes_for(masks.values())
            self.masked_views = sum(m is not None for m in self.masks)
        if self.masked_views == 0:
            raise InputError("no training view has a mask; check the --masks folder and the image names")
        self.num_classes = num_classes or found
        self.classifier = IdentityClassifier(self.num_classes, id_dim)
        self.render_logits = self.num_classes < id_dim
        self.cls_optimizer = FusedAdam(self.classifier.parameters(), lr=cfg.identity.lr_classifier)
        self.neighbours = NeighbourIndex()
        self.generator = torch.Generator().manual_seed(cfg.seed)

    def extra_state(self) -> dict:
        return {
            "classifier": self.classifier.state_dict(),
            "cls_optimizer": self.cls_optimizer.state_dict(),
            "id_generator": self.generator.get_state(),
            # the KD-tree is rebuilt only now and then: an exact resume needs the positions it was built from
            "neighbour_points": torch.from_numpy(self.neighbours.tree.data.copy())
            if self.neighbours.tree is not None
            else torch.empty(0, 3, dtype=torch.float64),
        }

    def load_extra_state(self, state: dict) -> None:
        if "classifier" not in state:
            raise InputError("the checkpoint has no identity classifier; it was trained without masks")
        self.classifier.load_state_dict(state["classifier"])
        self.cls_optimizer.load_state_dict(state["cls_optimizer"])
        self.generator.set_state(state["id_generator"])
        points = state.get("neighbour_points")
        self.neighbours.invalidate()
        if points is not None and len(points):
            self.neighbours.get(points.numpy())

    def extra_features(self) -> torch.Tensor:
        """The encodings [N,id_dim], or with fewer classes than encoding channels their logits
        [N,K] (the same loss and gradients, as blending is linear, with fewer channels to blend)."""
        if self.render_logits:
            return classifier_logits(self.params["ids"], self.classifier)
        return self.params["ids"]

    def extra_loss(self, step: int, index: int, features: torch.Tensor) -> torch.Tensor | None:
        cfg = self.cfg.identity
        loss = None
        mask = self.masks[index]
        if mask is not None and cfg.lambda_2d > 0:
            loss_fn = logits_loss_2d if self.render_logits else classifier_loss_2d
            loss = cfg.lambda_2d * loss_fn(features, self.classifier, mask)
        if cfg.lambda_3d > 0 and step % cfg.l3d_every == 0:
            if step % 100 == 0:
                self.neighbours.invalidate()  # means drift: refresh the KD-tree now and then
            l3d = cfg.lambda_3d * loss_3d(
                self.params["ids"],
                self.params["means"],
                self.classifier,
                k=cfg.l3d_k,
                m=cfg.l3d_m,
                generator=self.generator,
                tree=self.neighbours,
            )
            loss = l3d if loss is None else loss + l3d
        return loss

    def after_step(self, densified: bool) -> None:
        self.cls_optimizer.step()
        self.cls_optimizer.zero_grad(set_to_none=True)
        if densified:
            self.neighbours.invalidate()
