"""Selecting objects of a segmented run: by id, by a picked pixel, or by a 2D mask; then a 3D clean-up.

A Gaussian is selected when the classifier probability of one of the chosen ids exceeds
``threshold`` (runs with a classifier.pt), or when its label is a chosen id (lifted runs with only
labels.npy). ``cleanup_3d`` then adds the unseen interior Gaussians: an unselected Gaussian joins
when it lies inside the convex hull of the selected means, most of its k nearest neighbours are
selected, and it is not confidently labelled as another (unchosen) object, so touching neighbours
are not swallowed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from scipy.spatial import Delaunay, cKDTree

from ..errors import InputError
from ..model import Gaussians
from ..segment.identity import IdentityClassifier


@dataclass
class Segmentation:
    """A run's segmentation: an identity classifier (then labels/prob come from it) or lifted labels."""

    classifier: IdentityClassifier | None
    labels: np.ndarray  # [N] int32 argmax label per Gaussian
    prob: np.ndarray  # [N] float32 probability of that label (1 for lifted labels)

    @property
    def num_classes(self) -> int:
        if self.classifier is not None:
            return self.classifier.num_classes
        return int(self.labels.max()) + 1 if len(self.labels) else 1

    @torch.no_grad()
    def probs(self, g: Gaussians) -> torch.Tensor:
        """Per-Gaussian class probabilities [N,K] (one-hot labels for lifted runs)."""
        if self.classifier is not None:
            return torch.softmax(self.classifier(g.ids), dim=-1)
        return torch.nn.functional.one_hot(torch.from_numpy(self.labels.astype(np.int64)), self.num_classes).float()


def segmentation_for(g: Gaussians, classifier: IdentityClassifier | None, labels: np.ndarray | None,
                     run: Path | None = None) -> Segmentation:
    """Build a Segmentation for ``g`` from a classifier or per-Gaussian labels [N]."""
    if classifier is not None:
        if g.id_dim != classifier.id_dim:
            raise InputError(f"{run}: point_cloud.ply has {g.id_dim} identity fields but classifier.pt expects "
                             f"{classifier.id_dim}; re-run identity training")
        with torch.no_grad():
            p, lab = torch.softmax(classifier(g.ids), dim=-1).max(dim=-1)
        return Segmentation(classifier, lab.numpy().astype(np.int32), p.numpy().astype(np.float32))
    if labels is None:
        raise InputError(f"{run}: has no segmentation (classifier.pt or labels.npy); train with --masks or run lift")
    labels = np.asarray(labels, dtype=np.int32)
    if len(labels) != len(g):
        raise InputError(f"{run}: labels.npy has {len(labels)} entries for {len(g)} Gaussians; re-run lift")
    return Segmentation(None, labels, np.ones(len(labels), np.float32))


def parse_objects(text: str) -> list[int]:
    """'3,5' -> [3, 5]."""
    try:
        ids = sorted({int(t) for t in str(text).replace(" ", "").split(",") if t != ""})
    except ValueError:
        raise InputError(f"--objects '{text}': give comma-separated integer ids, e.g. --objects 3,5") from None
    if not ids or min(ids) < 0:
        raise InputError(f"--objects '{text}': give at least one non-negative id, e.g. --objects 3,5")
    return ids


def parse_pick(text: str) -> tuple[str, int, int]:
    """'view_003:120,80' -> ('view_003', 120, 80) (x = column, y = row, pixels)."""
    try:
        stem, xy = str(text).rsplit(":", 1)
        x, y = (round(float(v)) for v in xy.split(","))
    except ValueError:
        raise InputError(f"--pick '{text}': use <image stem>:X,Y, e.g. --pick view_003:120,80") from None
    return stem, x, y


def ids_at_pixel(id_map: np.ndarray, x: int, y: int, where: str = "") -> list[int]:
    """The id covering pixel (x, y) of an id map [H,W]; an InputError if outside or background (0)."""
    h, w = id_map.shape
    if not (0 <= x < w and 0 <= y < h):
        raise InputError(f"--pick {where}:{x},{y}: outside the {w}x{h} image; X is the column, Y the row")
    oid = int(id_map[y, x])
    if oid == 0:
        raise InputError(f"--pick {where}:{x},{y}: that pixel shows background (id 0); pick a pixel on an object")
    return [oid]


def ids_in_mask(id_map: np.ndarray, mask: np.ndarray, min_share: float = 0.2, inside_share: float = 0.5,
                where: str = "") -> list[int]:
    """Ids (not 0) covering most of a 2D mask. id_map [H,W] int, mask [H,W] bool.

    An id is taken when it covers >= ``min_share`` of the mask's pixels, or when >= ``inside_share`` of
    its visible pixels lie inside the mask; at least the id covering the most mask pixels."""
    if mask.shape != id_map.shape:
        raise InputError(f"--mask {where}: mask is {mask.shape[1]}x{mask.shape[0]} but the view renders at "
                         f"{id_map.shape[1]}x{id_map.shape[0]}; resize the mask to the run's resolution")
    if not mask.any():
        raise InputError(f"--mask {where}: the mask is empty; paint the object white (non-zero)")
    n = int(id_map.max()) + 1
    inside = np.bincount(id_map[mask].ravel(), minlength=n).astype(np.float64)
    total = np.bincount(id_map.ravel(), minlength=n).astype(np.float64)
    inside[0] = 0
    if inside.sum() == 0:
        raise InputError(f"--mask {where}: the mask covers only background (id 0); draw it over an object")
    share = inside / mask.sum()
    own = inside / np.maximum(total, 1)
    chosen = set(np.flatnonzero((share >= min_share) | ((own >= inside_share) & (inside > 0))).tolist())
    chosen.add(int(np.argmax(inside)))
    return sorted(chosen - {0})


def select_gaussians(g: Gaussians, seg: Segmentation, ids: list[int], threshold: float = 0.3) -> np.ndarray:
    """Bool [N]: classifier probability of a chosen id > threshold (or the label is a chosen id)."""
    k = seg.num_classes
    bad = [i for i in ids if i >= k]
    if bad:
        raise InputError(f"--objects {','.join(map(str, ids))}: the run has ids 0..{k - 1}, no {bad[0]}; "
                         f"see objects.json")
    if seg.classifier is None:
        return np.isin(seg.labels, ids)
    return (seg.probs(g)[:, ids].max(dim=1).values > threshold).numpy()


def cleanup_3d(g: Gaussians, selected: np.ndarray, seg: Segmentation, ids: list[int], k: int = 10,
               vote: float = 0.5, other_prob: float = 0.5, rounds: int = 10, own_vote: float = 0.2) -> np.ndarray:
    """Add unseen interior Gaussians to a selection. selected [N] bool -> [N] bool (a superset).

    A Gaussian joins when (1) it lies inside the convex hull of the selected means (of those whose most likely id is chosen), (2) at least
    ``vote`` of its k nearest Gaussians are selected, and (3) it is not labelled as an unchosen
    object (id not 0) with probability > ``other_prob``. Gaussians whose most likely id is a chosen
    one (but below the threshold) join, inside the hull or not, when at least ``own_vote`` of their
    neighbours are selected. Repeated ``rounds`` times (the selection grows inwards)."""
    sel = np.asarray(selected, bool).copy()
    if sel.sum() < 5 or len(g) <= k:
        return sel
    means = g.means.detach().numpy().astype(np.float64)
    core = sel & np.isin(seg.labels, ids)  # the hull of the Gaussians most likely the object
    if core.sum() < 5:
        core = sel
    try:
        hull = Delaunay(means[core])
    except Exception:  # noqa: BLE001 - degenerate (flat) selections have no 3D hull
        return sel
    inside = hull.find_simplex(means) >= 0
    other = (seg.labels != 0) & ~np.isin(seg.labels, ids) & (seg.prob > other_prob)
    own = np.isin(seg.labels, ids)  # most likely a chosen id, below the threshold
    cand = np.flatnonzero((inside | own) & ~sel & ~other)
    if not len(cand):
        return sel
    _, nn = cKDTree(means).query(means[cand], k=k + 1, workers=-1)
    nn = nn[:, 1:]
    need = np.where(own[cand], own_vote, vote)
    for _ in range(rounds):
        join = sel[nn].mean(axis=1) >= need
        new = cand[join & ~sel[cand]]
        if not len(new):
            break
        sel[new] = True
    return sel


def drop_floaters(g: Gaussians, selected: np.ndarray, min_share: float = 0.05, link: float = 2.0) -> np.ndarray:
    """Remove spatially isolated Gaussians from a selection. selected [N] bool -> [N] bool (a subset).

    Selected means are linked when closer than ``link`` x the 90th percentile of the nearest-neighbour
    spacing; the connected parts (but the largest) holding less than ``min_share`` of the selection (faint floaters, unseen
    Gaussians under the floor whose identities are noise) are dropped."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    idx = np.flatnonzero(selected)
    if len(idx) < 20:
        return np.asarray(selected, bool).copy()
    pts = g.means.detach().numpy().astype(np.float64)[idx]
    tree = cKDTree(pts)
    d, _ = tree.query(pts, k=2, workers=-1)
    r = link * float(np.percentile(d[:, 1], 90))
    pairs = tree.query_pairs(r, output_type="ndarray")
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(len(idx), len(idx)))
    _, comp = connected_components(graph, directed=False)
    size = np.bincount(comp)
    out = np.zeros(len(selected), bool)
    out[idx[(size[comp] >= min_share * len(idx)) | (comp == np.argmax(size))]] = True
    return out


@dataclass
class Selection:
    """The result of a selection: chosen ids, the Gaussian mask [N] and a description for edit.json."""

    ids: list[int]
    mask: np.ndarray
    by: str
    threshold: float
    counts: dict = field(default_factory=dict)

    def describe(self, g: Gaussians) -> dict:
        """ids, Gaussian counts (by threshold, added by the clean-up, total) and the 3D bounding box."""
        means = g.means.detach().numpy()[self.mask]
        if len(means):  # bbox: of the selection without isolated floaters; bbox_all: of everything selected
            bulk = g.means.detach().numpy()[drop_floaters(g, self.mask)]
            lo, hi = bulk.min(0), bulk.max(0)
            box = {"bbox_min": lo.round(4).tolist(), "bbox_max": hi.round(4).tolist(),
                   "bbox_all_min": means.min(0).round(4).tolist(), "bbox_all_max": means.max(0).round(4).tolist()}
        else:
            box = {"bbox_min": None, "bbox_max": None}
        return {"ids": self.ids, "by": self.by, "threshold": self.threshold, **self.counts,
                "gaussians": int(self.mask.sum()), **box}


def make_selection(g: Gaussians, seg: Segmentation, ids: list[int], threshold: float = 0.3, by: str = "objects",
                   cleanup: bool = True, floaters: bool = False) -> Selection:
    """Select the Gaussians of ``ids``: threshold, optionally ``drop_floaters`` (tighter, but a few
    visible Gaussians of the object may stay behind), then the 3D clean-up."""
    base = select_gaussians(g, seg, ids, threshold)
    start = drop_floaters(g, base) if floaters else base
    mask = cleanup_3d(g, start, seg, ids) if cleanup else start
    per_id = {str(i): int((mask & (seg.labels == i)).sum()) for i in ids}
    return Selection(ids, mask, by, threshold,
                     {"by_threshold": int(base.sum()), "added_by_cleanup": int((mask & ~base).sum()),
                      "dropped_floaters": int((base & ~mask).sum()),
                      "per_id_label": per_id})


def format_selection(info: dict) -> str:
    """One human-readable line for a Selection.describe() dict."""
    lo, hi = info.get("bbox_min"), info.get("bbox_max")
    box = "empty" if lo is None else (f"[{', '.join(f'{v:.3f}' for v in lo)}] .. [{', '.join(f'{v:.3f}' for v in hi)}]"
                                      " (without isolated floaters)")
    return (f"selected ids {info['ids']} ({info['by']}): {info['gaussians']} Gaussians "
            f"({info.get('by_threshold', info['gaussians'])} above threshold {info['threshold']}, "
            f"+{info.get('added_by_cleanup', 0)} interior), bbox {box}")
