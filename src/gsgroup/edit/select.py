"""Selecting objects of a segmented run: by id, by a picked pixel, or by a 2D mask; then a 3D clean-up.

A Gaussian is selected when the classifier probability of one of the chosen ids exceeds
``threshold`` (runs with a classifier.pt), or when its label is a chosen id (lifted runs with only
labels.npy). ``cleanup_3d`` then adds the unseen interior Gaussians: an unselected Gaussian joins
when it lies inside the convex hull of the selected means, most of its k nearest neighbours are
selected, and it is not confidently labelled as another (unchosen) object, so touching neighbours
are not swallowed.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy.spatial import Delaunay, cKDTree

from ..errors import InputError
from ..model import Gaussians
from ..options import check_bounds, option
from ..run import Run
from ..segment.segmentation import Segmentation


@dataclass
class SelectOptions:
    """How chosen ids become a set of Gaussians (see ``make_selection``)."""

    threshold: float = option(
        0.3,
        "a Gaussian is selected when the probability of a chosen id exceeds this",
        min=0.0,
        max=1.0,
        exclusive=True,
    )
    cleanup: bool = option(True, "the 3D clean-up that adds interior Gaussians", flag="--no-cleanup")
    drop_floaters: bool = option(
        False, "also drop isolated selected Gaussians (small connected parts far from the object)"
    )
    votes: bool = option(
        True,
        "refine with the mask votes of the run's associated masks, kNN, colour, floaters and trims (edit/refine.py)",
        flag="--no-votes",
    )
    whole: bool = option(
        True,
        "also take the parts the 2D masks split off the chosen objects (highlights, bands; segment/enclosure.py)",
        flag="--no-whole",
    )

    def __post_init__(self):
        check_bounds(self)


# A selection holding less than this share of the Gaussians whose most likely id is a chosen one
# is suspicious (identities trained too briefly, threshold too high): make_selection warns.
MIN_LABELLED_SHARE = 0.1


def ids_at_pixel(id_map: np.ndarray, x: int, y: int, where: str = "") -> list[int]:
    """The id covering pixel (x, y) of an id map [H,W]; an InputError if outside or background (0)."""
    h, w = id_map.shape
    if not (0 <= x < w and 0 <= y < h):
        raise InputError(f"pick {where}:{x},{y}: outside the {w}x{h} image; X is the column, Y the row", "pick")
    oid = int(id_map[y, x])
    if oid == 0:
        raise InputError(f"pick {where}:{x},{y}: that pixel shows background (id 0); pick a pixel on an object", "pick")
    return [oid]


def ids_in_mask(
    id_map: np.ndarray, mask: np.ndarray, min_share: float = 0.2, inside_share: float = 0.5, where: str = ""
) -> list[int]:
    """Ids (not 0) covering most of a 2D mask. id_map [H,W] int, mask [H,W] bool.

    An id is taken when it covers >= ``min_share`` of the mask's pixels, or when >= ``inside_share`` of
    its visible pixels lie inside the mask; at least the id covering the most mask pixels."""
    if mask.shape != id_map.shape:
        raise InputError(
            f"mask {where}: mask is {mask.shape[1]}x{mask.shape[0]} but the view renders at "
            f"{id_map.shape[1]}x{id_map.shape[0]}; resize the mask to the run's resolution",
            "mask",
        )
    if not mask.any():
        raise InputError(f"mask {where}: the mask is empty; paint the object white (non-zero)", "mask")
    n = int(id_map.max()) + 1
    inside = np.bincount(id_map[mask].ravel(), minlength=n).astype(np.float64)
    total = np.bincount(id_map.ravel(), minlength=n).astype(np.float64)
    inside[0] = 0
    if inside.sum() == 0:
        raise InputError(f"mask {where}: the mask covers only background (id 0); draw it over an object", "mask")
    share = inside / mask.sum()
    own = inside / np.maximum(total, 1)
    chosen = set(np.flatnonzero((share >= min_share) | ((own >= inside_share) & (inside > 0))).tolist())
    chosen.add(int(np.argmax(inside)))
    return sorted(chosen - {0})


def select_gaussians(
    g: Gaussians, seg: Segmentation, ids: list[int], threshold: float = SelectOptions.threshold
) -> np.ndarray:
    """Bool [N]: classifier probability of a chosen id > threshold (or the label is a chosen id)."""
    k = seg.num_classes
    bad = [i for i in ids if i >= k]
    if bad:
        raise InputError(
            f"objects {','.join(map(str, ids))}: the run has ids 0..{k - 1}, no {bad[0]}; see objects.json", "objects"
        )
    if seg.classifier is None:
        return np.isin(seg.labels, ids)
    return (seg.probs(g)[:, ids].max(dim=1).values > threshold).numpy()


def cleanup_3d(
    g: Gaussians,
    selected: np.ndarray,
    seg: Segmentation,
    ids: list[int],
    k: int = 10,
    vote: float = 0.5,
    other_prob: float = 0.5,
    rounds: int = 10,
    own_vote: float = 0.2,
) -> np.ndarray:
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
    labels, prob = seg.label(g)
    core = sel & np.isin(labels, ids)  # the hull of the Gaussians most likely the object
    if core.sum() < 5:
        core = sel
    try:
        hull = Delaunay(means[core])
    except Exception:  # noqa: BLE001 - degenerate (flat) selections have no 3D hull
        return sel
    inside = hull.find_simplex(means) >= 0
    other = (labels != 0) & ~np.isin(labels, ids) & (prob > other_prob)
    own = np.isin(labels, ids)  # most likely a chosen id, below the threshold
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
    trim: np.ndarray | None = None  # kept Gaussians [M] cut to their halves away from the object on removal
    trim_dirs: np.ndarray | None = None  # [M,3] unit directions away from the object (edit/refine.py)
    trim_share: np.ndarray | None = None  # [M] share of each one's mask votes on the object

    def describe(self, g: Gaussians) -> dict:
        """ids, Gaussian counts (by threshold, added by the clean-up, total) and the 3D bounding box."""
        means = g.means.detach().numpy()[self.mask]
        if len(means):  # bbox: of the selection without isolated floaters; bbox_all: of everything selected
            bulk = g.means.detach().numpy()[drop_floaters(g, self.mask)]
            lo, hi = bulk.min(0), bulk.max(0)
            box = {
                "bbox_min": lo.round(4).tolist(),
                "bbox_max": hi.round(4).tolist(),
                "bbox_all_min": means.min(0).round(4).tolist(),
                "bbox_all_max": means.max(0).round(4).tolist(),
            }
        else:
            box = {"bbox_min": None, "bbox_max": None}
        return {
            "ids": self.ids,
            "by": self.by,
            "threshold": self.threshold,
            **self.counts,
            "gaussians": int(self.mask.sum()),
            **box,
        }


def make_selection(
    g: Gaussians, seg: Segmentation, ids: list[int], options: SelectOptions | None = None, by: str = "objects"
) -> Selection:
    """Select the Gaussians of ``ids``: threshold, optionally ``drop_floaters`` (tighter, but a few
    visible Gaussians of the object may stay behind), then the 3D clean-up."""
    opts = options or SelectOptions()
    base = select_gaussians(g, seg, ids, opts.threshold)
    start = drop_floaters(g, base) if opts.drop_floaters else base
    mask = cleanup_3d(g, start, seg, ids) if opts.cleanup else start
    labels, _ = seg.label(g)
    per_id = {str(i): int((mask & (labels == i)).sum()) for i in ids}
    warn_if_sparse(mask, labels, ids, opts.threshold)
    return Selection(
        ids,
        mask,
        by,
        opts.threshold,
        {
            "by_threshold": int(base.sum()),
            "added_by_cleanup": int((mask & ~base).sum()),
            "dropped_floaters": int((base & ~mask).sum()),
            "per_id_label": per_id,
        },
    )


def warn_if_sparse(mask: np.ndarray, labels: np.ndarray, ids: list[int], threshold: float) -> None:
    """Warn when ``mask`` [N] holds less than MIN_LABELLED_SHARE of the Gaussians whose most likely
    id (``labels`` [N]) is one of ``ids``: the probabilities rarely pass ``threshold``."""
    labelled = np.isin(labels, ids)
    n_labelled = int(labelled.sum())
    n_selected = int((mask & labelled).sum())
    if n_labelled and n_selected < MIN_LABELLED_SHARE * n_labelled:
        warnings.warn(
            f"the selection holds only {n_selected} of the {n_labelled} Gaussians whose most likely id is "
            f"{','.join(map(str, ids))} (threshold {threshold}); the identities look undertrained: "
            "lower --threshold or train the identities longer",
            stacklevel=2,
        )


def format_selection(info: dict) -> str:
    """One human-readable line for a Selection.describe() dict."""
    lo, hi = info.get("bbox_min"), info.get("bbox_max")
    box = (
        "empty"
        if lo is None
        else (
            f"[{', '.join(f'{v:.3f}' for v in lo)}] .. [{', '.join(f'{v:.3f}' for v in hi)}]"
            " (without isolated floaters)"
        )
    )
    return (
        f"selected ids {info['ids']} ({info['by']}): {info['gaussians']} Gaussians "
        f"({info.get('by_threshold', info['gaussians'])} above threshold {info['threshold']}, "
        f"+{info.get('added_by_cleanup', 0)} interior), bbox {box}"
    )


def selection_info(run: Run, sel: Selection) -> dict:
    """The part of edit.json every edit shares: source run, selection, Gaussians before the edit."""
    return {
        "source": None if run.path is None else str(run.path.resolve()),
        "selection": sel.describe(run.gaussians),
        "gaussians_before": len(run.gaussians),
    }
