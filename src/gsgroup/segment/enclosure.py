"""Parts of one object that 2D masks split off (highlights, shading bands, printed patterns).

A segmenter that groups pixels by colour cuts a highlight or a printed band out of the object it lies
on, and the association then gives it an id of its own. Such a part is **enclosed** by its object:

- in 2D, over all views, most of its border touches the object (``adjacency``: for every pair of
  pixels up to ``reach`` apart with different associated ids, one count for the pair of ids), while
  two objects that merely touch, or an object standing on the floor, share a small part of their
  borders;
- in 3D, its Gaussians lie inside the object's bounding box (an object standing on a table pokes out
  of the table's box, a highlight on a sphere does not);
- in depth (the **step guard**, ``depth_steps``): across the shared border the reconstruction's
  rendered depth is continuous (a highlight, a band or a print lies on the object's surface), while an
  object in front of another shows a step along its outline, except where it stands on it. A part
  whose shared border is a depth step for more than ``step_share`` of its pixel pairs is refused even
  when the box test passes, e.g. because the segmenter glued other objects' sides into the floor's
  segment, which inflates the floor's box up to their height.

``enclosed_parts`` grows a set of ids by the ids enclosed by it, until nothing changes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import torch

SHIFTS = ((1, 0), (0, 1), (1, 1), (1, -1), (2, 0), (0, 2))
STEP_SHIFTS = ((1, 0), (0, 1), (1, 1), (1, -1))  # directions of depth_steps' pixel pairs, times ``reach``
STEP_SHARE = 0.15  # default: refuse a part when more of its shared border than this is a depth step


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


def depth_steps(
    masks: Mapping[str, np.ndarray | None],
    depths: Mapping[str, np.ndarray],
    num_labels: int,
    reach: float = 0.015,
    jump: float = 0.1,
) -> tuple[np.ndarray, np.ndarray]:
    """Border pairs and depth steps (B [L,L], S [L,L]) int64, symmetric, zero diagonal, of associated
    masks {view: ids [H,W]} with rendered depths {view: z [H,W], 0 = nothing rendered}.

    B[a,b] counts the pixel pairs r px apart (directions STEP_SHIFTS; r = ``reach`` of the view's larger
    side, at least 1: 3 px at 200x150) with ids a != b that both have a depth, over all views; S[a,b]
    those of them whose depths differ by more than ``jump`` times the nearer one (a step, not a slope:
    with a 192 px focal length, 3 px on a surface seen 70 / 80 degrees off its normal move z by 4 / 9%).
    r > 1 looks past the border pixels, where the rendered depth blends both sides. Views missing from ``depths`` are skipped; ids are clipped to
    0..L-1."""
    L = int(num_labels)
    B, S = np.zeros(L * L, np.int64), np.zeros(L * L, np.int64)
    for name, m in masks.items():
        if m is None or name not in depths:
            continue
        m = np.clip(np.asarray(m, np.int64), 0, L - 1)
        z = np.asarray(depths[name], np.float64)
        H, W = m.shape
        r = max(1, round(reach * max(H, W)))
        for dy, dx in STEP_SHIFTS:
            dy, dx = dy * r, dx * r
            a_at = (slice(0, H - dy), slice(max(0, -dx), W - max(0, dx)))
            b_at = (slice(dy, H), slice(max(0, dx), W - max(0, -dx)))
            a, b, za, zb = m[a_at], m[b_at], z[a_at], z[b_at]
            pair = (a != b) & (za > 0) & (zb > 0)
            step = pair & (np.abs(za - zb) > jump * np.minimum(za, zb))
            B += np.bincount(a[pair] * L + b[pair], minlength=L * L)
            S += np.bincount(a[step] * L + b[step], minlength=L * L)
    B, S = B.reshape(L, L), S.reshape(L, L)
    return B + B.T, S + S.T


def rendered_depths(views, tensors) -> dict[str, np.ndarray]:
    """{view name: z [H,W] float32}: the alpha-normalised expected depth of the Gaussians (0 where nothing
    is rendered) in each view (name, viewmat [4,4], K [3,3], width, height); tensors: (means [N,3], unit
    quats [N,4], linear scales [N,3], opacities [N]) float32 on the CPU (Numba) or CUDA (gsplat)."""
    from gsgroup.render.rasterize import rasterize

    means = tensors[0]
    zeros = torch.zeros(means.shape[0], 1, dtype=torch.float32, device=means.device)
    out = {}
    with torch.no_grad():
        for v in views:
            vm = torch.as_tensor(np.asarray(v.viewmat, np.float32), device=means.device)
            K = torch.as_tensor(np.asarray(v.K, np.float32), device=means.device)
            r = rasterize(*tensors, zeros, vm, K, v.width, v.height)
            out[v.name] = r.depth[..., 0].float().cpu().numpy()
    return out


def enclosed_parts(
    C: np.ndarray,
    labels: np.ndarray,
    means: np.ndarray,
    ids: list[int],
    share: float = 0.6,
    pad: float = 0.1,
    steps: tuple[np.ndarray, np.ndarray] | None = None,
    step_share: float = STEP_SHARE,
) -> list[int]:
    """``ids`` plus every id enclosed by them (module docstring), grown until nothing changes.

    C [L,L]: ``adjacency``; labels [N]: each Gaussian's id; means [N,3]. An id j (not 0) joins when
    >= ``share`` of its border counts are with the set, and the 5-95th percentile box of its
    Gaussians lies inside the set's 2-98th percentile box padded by ``pad`` of its size. Borders with
    id 0 (no mask) do not count. With ``steps`` = (B, S) [L,L] from ``depth_steps`` (None: no guard),
    j is refused when S[j, set] > ``step_share`` * B[j, set]: its shared border is a depth step."""
    chosen = set(int(i) for i in ids)
    L = C.shape[0]
    if steps is not None:
        B, S = (np.pad(x[:L, :L], (0, max(0, L - x.shape[0]))) for x in steps)
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
            if steps is not None and S[j, inside].sum() > step_share * B[j, inside].sum():
                continue  # a depth step along the shared border: an object in front of the set, not on it
            pts = means[labels == j]
            if len(pts) < 3:
                continue
            jl, jh = np.percentile(pts, 5, axis=0), np.percentile(pts, 95, axis=0)
            if (jl >= lo).all() and (jh <= hi).all():
                added.append(j)
        if not added:
            return sorted(chosen)
        chosen.update(added)


def merge_table(
    C: np.ndarray,
    labels: np.ndarray,
    means: np.ndarray,
    share: float = 0.6,
    steps: tuple[np.ndarray, np.ndarray] | None = None,
    step_share: float = STEP_SHARE,
    size: int = 0,
) -> np.ndarray:
    """Lookup table [max(L, labels.max() + 1, size)] int64 from each id to the object it merges into
    (itself when none): ids 1..L-1 of C [L,L] (``adjacency``) taken in order, each absorbing its
    ``enclosed_parts`` (labels [N], means [N,3], ``steps`` and the thresholds as there). With ids ranked
    by pixel count, the largest object goes first."""
    L = C.shape[0]
    lut = np.arange(max(L, int(labels.max()) + 1 if labels.size else 1, size))
    for i in range(1, L):
        if lut[i] != i:
            continue
        for j in enclosed_parts(C, labels, means, [i], share, steps=steps, step_share=step_share):
            if j != i and lut[j] == j:
                lut[j] = i
    return lut


def merge_enclosed(
    masks: dict[str, np.ndarray],
    owner: np.ndarray,
    means: np.ndarray,
    share: float = 0.6,
    depths: Mapping[str, np.ndarray] | Callable[[], Mapping[str, np.ndarray]] | None = None,
    step_share: float = STEP_SHARE,
) -> tuple[dict[str, np.ndarray], np.ndarray, int, dict[int, int]]:
    """Merge every enclosed part into its object in associated masks {view: ids [H,W]} (ids 1..K by
    decreasing pixel count) with the Gaussians' owner ids [N] and means [N,3]. Objects are taken
    largest first; each absorbs its ``enclosed_parts``. ``depths``: rendered depths {view: z [H,W]}
    (``rendered_depths``), or a function returning them, called only when some part passes the border
    share; they enable the step guard (``depth_steps``, ``step_share``); None = no guard. Returns
    (masks, owner, K', {part id: object id}) with the ids re-ranked 1..K' by pixel count."""
    if not masks:
        return masks, owner, 0, {}
    C = adjacency(masks)
    L = C.shape[0]
    steps = None
    tot = C[:, 1:].sum(1)
    if depths is not None and ((C[1:, 1:] >= share * tot[1:, None]) & (tot[1:, None] > 0)).any():
        steps = depth_steps(masks, depths() if callable(depths) else depths, L)
    lut = merge_table(C, owner, means, share, steps, step_share)
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
