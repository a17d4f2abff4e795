"""Parts of one object that 2D masks split off (highlights, shading bands, printed patterns).

A segmenter that groups pixels by colour cuts a highlight or a printed band out of the object it lies
on, and the association then gives it an id of its own. Such a part is **enclosed** by its object:

- in 2D, over all views, most of its border touches the object (``adjacency``: for every pair of
  pixels up to ``reach`` apart with different associated ids, one count for the pair of ids), while
  two objects that merely touch, or an object standing on the floor, share a small part of their
  borders;
- in 3D, its Gaussians lie inside the object's bounding box (an object standing on a table pokes out
  of the table's box, a highlight on a sphere does not).

``enclosed_parts`` grows a set of ids by the ids enclosed by it, until nothing changes.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

SHIFTS = ((1, 0), (0, 1), (1, 1), (1, -1), (2, 0), (0, 2))


def adjacency(masks: Mapping[str, np.ndarray | None], num_labels: int | None = None) -> np.ndarray:
    """Border counts C [L,L] (symmetric, zero diagonal) of associated masks {view: ids [H,W]}:
    C[a,b] = number of pixel pairs (offsets SHIFTS) with ids a and b over all views."""
    used = [np.asarray(m, np.int64) for m in masks.values() if m is not None]
    L = num_labels or (max(int(m.max()) for m in used) + 1 if used else 1)
    C = np.zeros(L * L, np.int64)
    for m in used:
        m = np.clip(m, 0, L - 1)
        for dy, dx in SHIFTS:
            a = m[max(0, -dy) : m.shape[0] - max(0, dy), max(0, -dx) : m.shape[1] - max(0, dx)]
            b = m[max(0, dy) :, max(0, dx) :][: a.shape[0], : a.shape[1]]
            diff = a != b
            C += np.bincount(a[diff] * L + b[diff], minlength=L * L)
    C = C.reshape(L, L)
    return C + C.T


def enclosed_parts(
    C: np.ndarray,
    labels: np.ndarray,
    means: np.ndarray,
    ids: list[int],
    share: float = 0.6,
    pad: float = 0.1,
) -> list[int]:
    """``ids`` plus every id enclosed by them (module docstring), grown until nothing changes.

    C [L,L]: ``adjacency``; labels [N]: each Gaussian's id; means [N,3]. An id j (not 0) joins when
    >= ``share`` of its border counts are with the set, and the 5-95th percentile box of its
    Gaussians lies inside the set's 2-98th percentile box padded by ``pad`` of its size. Borders with
    id 0 (no mask) do not count."""
    chosen = set(int(i) for i in ids)
    L = C.shape[0]
    while True:
        inside = np.zeros(L, bool)
        inside[[i for i in chosen if i < L]] = True
        mine = np.isin(labels, list(chosen))
        if mine.sum() < 5:
            return sorted(chosen)
        lo, hi = np.percentile(means[mine], 2, axis=0), np.percentile(means[mine], 98, axis=0)
        lo, hi = lo - pad * (hi - lo), hi + pad * (hi - lo)
        added = []
        for j in range(1, L):
            if j in chosen or C[j, 1:].sum() == 0:
                continue
            if C[j, inside].sum() < share * C[j, 1:].sum():  # id 0 (no mask) is no evidence either way
                continue
            pts = means[labels == j]
            if len(pts) < 3:
                continue
            jl, jh = np.percentile(pts, 5, axis=0), np.percentile(pts, 95, axis=0)
            if (jl >= lo).all() and (jh <= hi).all():
                added.append(j)
        if not added:
            return sorted(chosen)
        chosen.update(added)


def merge_enclosed(
    masks: dict[str, np.ndarray], owner: np.ndarray, means: np.ndarray, share: float = 0.6
) -> tuple[dict[str, np.ndarray], np.ndarray, int, dict[int, int]]:
    """Merge every enclosed part into its object in associated masks {view: ids [H,W]} (ids 1..K by
    decreasing pixel count) with the Gaussians' owner ids [N] and means [N,3]. Objects are taken
    largest first; each absorbs its ``enclosed_parts``. Returns (masks, owner, K', {part id: object
    id}) with the ids re-ranked 1..K' by pixel count."""
    if not masks:
        return masks, owner, 0, {}
    C = adjacency(masks)
    L = C.shape[0]
    lut = np.arange(max(L, int(owner.max()) + 1 if owner.size else 1))
    for i in range(1, L):  # ids are ranked by pixel count: the largest object first
        if lut[i] != i:
            continue
        for j in enclosed_parts(C, owner, means, [i], share):
            if j != i and lut[j] == j:
                lut[j] = i
    merged = {int(j): int(lut[j]) for j in range(len(lut)) if lut[j] != j}
    if not merged:
        return masks, owner, L - 1, {}
    out = {k: lut[np.asarray(m, np.int64)] for k, m in masks.items()}
    counts = np.bincount(np.concatenate([m.ravel() for m in out.values()]), minlength=len(lut))
    counts[0] = 0
    ranked = [int(i) for i in np.argsort(-counts, kind="stable") if counts[i] > 0]
    rank = np.zeros(len(lut), np.int32)
    rank[ranked] = np.arange(1, len(ranked) + 1)
    owner_out = np.where(owner > 0, rank[lut[np.clip(owner, 0, None)]], 0).astype(np.int32)
    return {k: rank[m] for k, m in out.items()}, owner_out, len(ranked), merged
