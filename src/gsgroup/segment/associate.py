"""Cross-view mask association: one id per object across all views, through the 3D Gaussians.

``associate_masks(views, gaussians, masks)`` turns per-view, unassociated 2D masks (SAM, classical;
ids meaningless across views) into Gaussian Grouping's ``object_mask`` layout, where an id means the
same object in every view. Algorithm (a Gaga-style memory bank of Gaussian groups, view-order free):

1. **Mask -> Gaussians.** Per view, one ``contributions`` call gives the summed blending weight
   alpha*T of each Gaussian over each mask's *core* (pixels farther than ``core`` of the image size,
   at least ``core_min_px``, from any other label) and over its border. A Gaussian is decided for a
   mask when its core weight is >= ``share`` of its weight in the view; the heaviest decided ones,
   carrying ``keep_mass`` of that weight, are the mask's *selection* (front-most and heavy: occluded
   Gaussians carry little alpha*T). Each selected Gaussian is weighted by its *visibility* in the
   view, W / ``footprint`` (its weight there over its unoccluded weight).
2. **Dropping.** Masks smaller than ``min_area`` of the image, masks whose selection carries less
   than ``min_selected`` of their core weight (slivers, borders) are dropped (pixels -> 0). Masks with
   mean rendered alpha below ``void_alpha`` (nothing reconstructed, e.g. the empty sky) are *void*:
   by default (``void="background"``) they take the id of the largest group.
3. **Transfers.** F[m,n] = weight of mask m's selection inside the core of mask n (another view):
   where m's Gaussians land. A view u counts as evidence for m only where m's Gaussians show there at
   least ``gate`` times as well as in m's own view (occluded Gaussians land on their occluder, so
   such views are ignored). fwd(m, group) = share of m's landing weight, in the group's views, that
   falls in the group's masks; bwd(m, group) = share of the group's landing weight in m's view that
   falls in m. Borders never count, so eroded / dilated masks still transfer ~1.
4. **Memory bank.** Kept masks are processed largest first (ties by view name and id, so the order
   of the views never matters); a mask joins the group with the best min(fwd, bwd) when it passes
   ``join``, otherwise it founds a new group. A group is the weighted set of its masks' Gaussians.
5. **Refinement** (``rounds`` times): groups whose mutual transfer passes ``merge`` are merged (one
   object grown from two sides); each Gaussian is owned by the group with most votes, groups owning
   less than ``own`` of their votes are dissolved (e.g. a group of "A+B" masks); every mask is
   re-assigned to its best group (leave-one-out), keeping its group when none passes ``join``.
6. **Final labels.** A mask left without a group is a *part* of the group receiving >= ``single`` of
   its fwd transfer (half an object), or, when it merges several groups that each lie mostly inside
   it (fwd >= ``part``, bwd >= ``part_prec``), it is split per pixel by the group owning the pixel's
   dominant Gaussian (``dominant_gaussian``); otherwise it is dropped. Ids are 1..K by decreasing
   pixel count.

``pairwise_f1`` scores an association against ground truth (see its docstring); ``write_association``
writes ``<stem>.png`` (uint8 up to 255 ids, else uint16; 0 = no object) and ``objects.json``;
``resolve_output_dir`` picks the output folder without overwriting user masks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

from gsgroup.errors import InputError

__all__ = [
    "AssociateParams",
    "AssociationResult",
    "associate_masks",
    "write_association",
    "resolve_output_dir",
    "pairwise_f1",
    "oracle_association",
    "association_objects",
]

VOID_MODES = ("background", "drop", "own")


@dataclass
class AssociateParams:
    """Knobs of ``associate_masks`` (defaults tuned on the built-in scene at 200x150)."""

    min_area: float = 0.001  # masks smaller than this fraction of the image are dropped
    core: float = 0.01  # pixels closer than this fraction of the image size to another label are border
    core_min_px: int = 2  # ... and at least this many pixels (0 with core = 0: no border)
    share: float = 0.5  # a Gaussian belongs to a label holding >= this share of its weight in the view
    front: float = 0.0  # optionally, selected Gaussians need at least this visibility in the view
    keep_mass: float = 0.9  # heaviest decided Gaussians carrying this fraction of the label's decided weight
    min_selected: float = 0.3  # masks whose selection carries less of their core weight are unreliable
    void_alpha: float = 0.1  # masks with a lower mean rendered alpha are void (nothing reconstructed)
    void: str = "background"  # void masks: "background" (largest group), "drop", or "own" (one id)
    gate: float = 0.3  # a view is evidence for a mask when its Gaussians are >= this visible there (vs own view)
    evidence: float = 0.02  # a transfer needs this share of a mask's own weight to count as evidence
    join: float = 0.8  # min(fwd, bwd) transfer needed to join a group
    merge: float = 0.75  # mutual group transfer needed to merge two groups
    own: float = 0.5  # groups owning less than this share of their votes are dissolved
    rounds: int = 2  # refinement rounds
    single: float = 0.8  # final: fwd transfer making an unassigned mask a part of a group
    part: float = 0.2  # final: fwd share a group needs to be one part of a merged mask
    part_prec: float = 0.5  # final: bwd share (the group lies inside the mask) of such a part
    split_merged: bool = True  # split masks that merge several groups, per pixel
    min_views: int = 1  # groups seen in fewer views are dropped

    def check(self) -> AssociateParams:
        for name in (
            "min_area",
            "core",
            "share",
            "front",
            "keep_mass",
            "min_selected",
            "void_alpha",
            "gate",
            "evidence",
            "join",
            "merge",
            "own",
            "single",
            "part",
            "part_prec",
        ):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and 0.0 <= float(v) <= 1.0):
                raise InputError(f"associate: parameter '{name}' must be in [0, 1], got {v!r}")
        if self.void not in VOID_MODES:
            raise InputError(f"associate: parameter 'void' must be one of {', '.join(VOID_MODES)}, got {self.void!r}")
        if int(self.rounds) < 0 or int(self.min_views) < 1:
            raise InputError("associate: 'rounds' must be >= 0 and 'min_views' >= 1")
        return self


@dataclass
class AssociationResult:
    """``masks``: {view name: [H,W] int32 associated ids, 0 = no object}; ``objects``: {id: info}
    (see ``association_objects``); ``stats``: counts of masks kept/dropped/split, groups, seconds."""

    masks: dict[str, np.ndarray]
    objects: dict[int, dict]
    stats: dict = field(default_factory=dict)
    owner: np.ndarray | None = None  # [N] int32: final id owning each Gaussian, 0 = none


# ----------------------------------------------------------------------------- per-view data


@dataclass
class _View:
    name: str
    labels: np.ndarray  # [H,W] int32 local labels 0..L-1 (0 = no mask)
    ids: np.ndarray  # [L] original mask id of each local label (ids[0] = 0)
    C: sp.csc_matrix  # [N, L] contribution weights
    Cint: sp.csc_matrix  # [N, L] contribution weights over the labels' core pixels
    W: np.ndarray  # [N] float32 total weight in the view
    fp: np.ndarray  # [N] float32 unoccluded weight (``footprint``), 0 off-screen
    pixels: np.ndarray  # [L] pixel counts
    image: np.ndarray | None = None


@dataclass
class _Mask:
    view: int
    label: int
    pixels: int
    sel: np.ndarray  # Gaussian indices (global), sorted
    sel_w: np.ndarray  # their weights inside the mask's core
    sel_vis: np.ndarray  # their visibility in the view (evidence weight)
    state: str = "ok"  # ok | tiny | unreliable | void


def _gaussian_tensors(gaussians):
    """(means, unit quats, linear scales, opacities) float32 CPU tensors from Gaussians or a tuple."""
    if hasattr(gaussians, "activated"):
        t = gaussians.activated()
    else:
        t = tuple(gaussians)
    return tuple(x.detach().float().cpu().contiguous() for x in t)


def _compact_labels(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[H,W] ids -> (local labels [H,W] int32 with 0 kept as 0, original ids [L] with ids[0] = 0)."""
    u, inv = np.unique(mask, return_inverse=True)
    inv = inv.reshape(mask.shape)
    if u.size == 0 or u[0] != 0:
        u = np.concatenate([[0], u])
        inv = inv + 1
    return inv.astype(np.int32), u.astype(np.int64)


def footprint(tensors, viewmat, K, width: int, height: int, near: float = 0.01, eps2d: float = 0.3) -> np.ndarray:
    """Unoccluded weight of each Gaussian in a view: o * 2 pi sqrt(det Sigma2d), the integral of its alpha
    over the image plane, with Sigma2d from the rasterizer's own EWA projection (``project_fwd``; eps2d
    included). [N] float64; 0 behind the camera (z < near) and for centres outside the image.

    tensors: (means [N,3], unit quats [N,4], linear scales [N,3], opacities [N]) float32; viewmat [4,4];
    K [3,3]; width, height in pixels.
    """
    from gsgroup.render import _kernels as kn

    means, quats, scales, opac = (np.ascontiguousarray(np.asarray(t), np.float32) for t in tensors)
    V = np.ascontiguousarray(np.asarray(viewmat), np.float64)
    Kn = np.asarray(K, np.float64)
    intr = np.array([Kn[0, 0], Kn[1, 1], Kn[0, 2], Kn[1, 2]], np.float64)
    gp = kn.project_fwd(
        means, quats, scales, opac, V, intr, int(width), int(height), float(near), np.inf, float(eps2d)
    )[0]
    # culled Gaussians (behind the camera, 3-sigma box off-screen) have a zero record: weight 0
    u, v, ca, cb, cc, o = (gp[:, c] for c in (kn.GU, kn.GV, kn.GA, kn.GB, kn.GC, kn.GO))
    det_conic = ca * cc - cb * cb  # = 1 / det Sigma2d
    out = np.zeros(len(gp))
    ok = (det_conic > 0) & (u >= 0) & (u <= width) & (v >= 0) & (v <= height)
    out[ok] = o[ok] * 2.0 * np.pi / np.sqrt(det_conic[ok])
    return out


def _select(col_idx: np.ndarray, col_w: np.ndarray, W: np.ndarray, front_ok: np.ndarray, p: AssociateParams):
    """Selection of one label: decided (share >= p.share), front-most (front_ok) Gaussians, heaviest first
    until keep_mass of their weight.

    col_idx [k] Gaussian indices with weight col_w [k] in the label; W [N] total weights; front_ok [N] bool.
    Returns (sorted selected indices, their weights, label weight).
    """
    total = float(col_w.sum())
    dec = (col_w >= p.share * W[col_idx]) & front_ok[col_idx]
    idx, w = col_idx[dec], col_w[dec]
    if idx.size == 0:
        return idx.astype(np.int64), np.zeros(0, np.float32), total
    order = np.argsort(-w, kind="stable")
    cum = np.cumsum(w[order])
    k = int(np.searchsorted(cum, p.keep_mass * cum[-1])) + 1
    top = order[:k]
    srt = np.argsort(idx[top], kind="stable")
    return idx[top][srt].astype(np.int64), w[top][srt].astype(np.float32), total


def _view_data(view, mask: np.ndarray, tensors, p: AssociateParams, masks_out: list, vi: int) -> _View:
    from gsgroup.render import contributions

    if mask.shape != (view.height, view.width):
        raise InputError(
            f"mask of view {view.name} is {mask.shape[1]}x{mask.shape[0]} but the view is "
            f"{view.width}x{view.height}; load masks with gsgroup.data.masks.load_masks"
        )
    labels, ids = _compact_labels(np.asarray(mask))
    L = int(ids.size)
    # pixels within ``core`` px of another label are border pixels: label l + L
    r = max(p.core_min_px, int(round(p.core * max(view.width, view.height)))) if p.core > 0 else 0
    lab2 = labels
    if r > 0:
        import cv2

        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
        lf = labels.astype(np.float32)
        hi = cv2.dilate(lf, k, borderType=cv2.BORDER_REPLICATE)
        lo = cv2.erode(lf, k, borderType=cv2.BORDER_REPLICATE)
        lab2 = np.where((hi != lf) | (lo != lf), labels + L, labels).astype(np.int32)
    means, quats, scales, opac = tensors
    C2 = contributions(
        means,
        quats,
        scales,
        opac,
        torch.as_tensor(np.asarray(view.viewmat, np.float32)),
        torch.as_tensor(np.asarray(view.K, np.float32)),
        view.width,
        view.height,
        torch.from_numpy(lab2),
        num_labels=2 * L,
    ).numpy()
    Cint = sp.csc_matrix(C2[:, :L])
    C = C2[:, :L] + C2[:, L:]
    del C2
    W = C.sum(1)
    fp = footprint(tensors, view.viewmat, view.K, view.width, view.height)
    # visibility: share of a Gaussian's unoccluded weight that the view shows (evidence weight)
    vis = np.clip(np.divide(W, fp, out=np.zeros_like(fp), where=fp > 0), 0.0, 1.0).astype(np.float32)
    front_ok = vis >= p.front if p.front > 0 else np.ones(W.shape, bool)
    Cs = sp.csc_matrix(C)
    del C
    pixels = np.bincount(labels.ravel(), minlength=L)
    mass = np.asarray(Cs.sum(0)).ravel()
    min_px = p.min_area * view.width * view.height
    for lab in range(L):
        a, b = Cint.indptr[lab], Cint.indptr[lab + 1]
        sel, sel_w, total = _select(Cint.indices[a:b], Cint.data[a:b], W, front_ok, p)
        if lab == 0:
            continue
        m = _Mask(vi, lab, int(pixels[lab]), sel, sel_w, vis[sel])
        if pixels[lab] < min_px:
            m.state = "tiny"
        elif mass[lab] < p.void_alpha * pixels[lab]:
            m.state = "void"
        elif sel.size == 0 or sel_w.sum() < p.min_selected * total:
            m.state = "unreliable"
        masks_out.append(m)
    return _View(
        view.name,
        labels,
        ids,
        Cs,
        Cint,
        W.astype(np.float32),
        fp.astype(np.float32),
        pixels,
        np.asarray(view.image) if getattr(view, "image", None) is not None else None,
    )


# ----------------------------------------------------------------------------- memory bank


class _Problem:
    """Mask-level data shared by the passes.

    X [M,N] sparse: each kept mask's selection, weighted by the Gaussians' visibility in its view (the
    mask as a weighted set of Gaussians). F = X @ Cint [M,M]: F[m,n] is the weight that mask m's
    Gaussians carry in the *core* of mask n (in n's view): where m lands in every other view.
    D [M,V]: the weight m's Gaussians carry in the cores of all kept masks of view u.
    """

    def __init__(self, views: list[_View], masks: list[_Mask], n_gauss: int, gate: float = 0.3):
        self.views, self.masks = views, masks
        self.ok = np.array([i for i, m in enumerate(masks) if m.state == "ok"], np.int64)
        M = self.ok.size
        self.mview = np.array([masks[i].view for i in self.ok], np.int64)
        rows, cols, vals = [], [], []
        ccols = []
        for j, i in enumerate(self.ok):
            m = masks[i]
            rows.append(np.full(m.sel.size, j))
            cols.append(m.sel)
            vals.append(m.sel_vis)
            v = views[m.view]
            ccols.append(v.Cint[:, m.label])
        if M:
            self.X = sp.csr_matrix(
                (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                shape=(M, n_gauss),
                dtype=np.float64,
            )
            Cint = sp.hstack(ccols).tocsr().astype(np.float64)  # [N, M]
            self.F = np.asarray((self.X @ Cint).todense())
        else:
            self.X = sp.csr_matrix((0, n_gauss))
            self.F = np.zeros((0, 0))
        V = len(views)
        self.Vind = np.zeros((M, V))  # mask -> its view
        self.Vind[np.arange(M), self.mview] = 1.0
        # visibility gate [M,V]: view u is evidence for mask m when m's Gaussians show there (relative
        # to their unoccluded weight) at least p.gate times as well as in m's own view
        if M:
            Wx = np.asarray(self.X @ np.stack([v.W for v in views], 1).astype(np.float64))
            Px = np.asarray(self.X @ np.stack([v.fp for v in views], 1).astype(np.float64))
            rel = np.divide(Wx, Px, out=np.zeros_like(Wx), where=Px > 0)
            own = np.maximum(rel[np.arange(M), self.mview], 1e-12)
            self.gate = rel >= gate * own[:, None]
        else:
            self.gate = np.zeros((0, V), bool)
        self.gate[np.arange(M), self.mview] = True
        self.F = self.F * self.gate[:, self.mview]  # landing only from views where m shows
        self.D = self.F @ self.Vind  # [M,V]
        self.same_view = self.mview[:, None] == self.mview[None, :]
        self.self_mass = np.maximum(np.diag(self.F).copy(), 1e-12)
        self.pixels = np.array([masks[i].pixels for i in self.ok], np.int64)

    def scores(self, S: np.ndarray, j: int, p: AssociateParams):
        """fwd [G], bwd [G] of kept mask j against groups with membership S [G,M] (0/1).

        fwd: share of j's weight, in the groups' views (j's own view excluded), that lands in the groups'
        masks; bwd: share of the groups' weight in j's view that lands in j. 0 without enough evidence.
        """
        v = self.mview[j]
        other = ~self.same_view[j]
        fnum = S[:, other] @ self.F[j, other]
        gviews = (S @ self.Vind) > 0  # [G,V]
        gviews[:, v] = False
        fden = gviews.astype(np.float64) @ self.D[j]
        bnum = S @ self.F[:, j]
        bden = S @ self.D[:, v]
        mass_g = S @ self.self_mass
        n_g = np.maximum(S.sum(1), 1)
        fwd = np.where(fden >= p.evidence * self.self_mass[j], fnum / np.maximum(fden, 1e-12), 0.0)
        bwd = np.where(bden >= p.evidence * mass_g / n_g, bnum / np.maximum(bden, 1e-12), 0.0)
        return fwd, bwd


def _union_find(n: int, pairs) -> np.ndarray:
    parent = np.arange(n)

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in pairs:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return np.array([find(i) for i in range(n)], np.int64)


def _membership(assign: np.ndarray, n: int) -> np.ndarray:
    S = np.zeros((n, assign.size))
    ok = assign >= 0
    S[assign[ok], np.flatnonzero(ok)] = 1.0
    return S


def _compact(assign: np.ndarray) -> np.ndarray:
    """Renumber the groups of an assignment [M] to 0..G-1 in order of first appearance by group id."""
    out = np.full_like(assign, -1)
    used = np.unique(assign[assign >= 0])
    lut = np.full(int(assign.max()) + 1 if used.size else 1, -1, np.int64)
    lut[used] = np.arange(used.size)
    out[assign >= 0] = lut[assign[assign >= 0]]
    return out


def _memory_bank(prob: _Problem, order: np.ndarray, p: AssociateParams) -> np.ndarray:
    """Pass 1: kept masks in ``order`` join their best group (min(fwd, bwd) >= join) or found one."""
    M = prob.ok.size
    assign = np.full(M, -1, np.int64)
    S = np.zeros((0, M))
    for j in order:
        g = -1
        if S.shape[0]:
            fwd, bwd = prob.scores(S, j, p)
            s = np.minimum(fwd, bwd)
            k = int(np.argmax(s))
            if s[k] >= p.join:
                g = k
        if g < 0:
            S = np.vstack([S, np.zeros((1, M))])
            g = S.shape[0] - 1
        S[g, j] = 1.0
        assign[j] = g
    return assign


def _owners(prob: _Problem, S: np.ndarray):
    """votes [G,N] sparse-free: (owner [N] int64, -1 = none; owned share of each group's votes [G])."""
    votes = sp.csr_matrix(S) @ prob.X  # [G,N]
    votes = votes.tocsc()
    n = votes.shape[1]
    owner = np.full(n, -1, np.int64)
    best = np.zeros(n)
    dense_rows = votes.tocsr()
    for g in range(votes.shape[0]):
        row = dense_rows.getrow(g)
        idx, val = row.indices, row.data
        better = val > best[idx]
        owner[idx[better]] = g
        best[idx[better]] = val[better]
    total = np.asarray(votes.sum(1)).ravel()
    owned = np.bincount(owner[owner >= 0], weights=best[owner >= 0], minlength=votes.shape[0])
    share = np.divide(owned, total, out=np.zeros_like(total), where=total > 0)
    return owner, share


def _merge(prob: _Problem, S: np.ndarray, p: AssociateParams) -> np.ndarray:
    """Roots [G] after merging groups whose mutual transfer (each one's Gaussians landing in the other's
    masks, in the other's views) passes p.merge."""
    G = S.shape[0]
    if G < 2:
        return np.arange(G)
    Fx = np.where(prob.same_view, 0.0, prob.F)
    num = S @ Fx @ S.T  # [g,h]: g's Gaussians landing in h's masks (other views)
    gviews = ((S @ prob.Vind) > 0).astype(np.float64)  # [G,V]
    Dx = prob.D * (1.0 - prob.Vind)  # own view excluded
    den = S @ Dx @ gviews.T
    T = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
    mass = S @ prob.self_mass
    T = np.where(den >= p.evidence * mass[:, None], T, 0.0)
    mutual = np.minimum(T, T.T)
    np.fill_diagonal(mutual, 0.0)
    gi, hi = np.nonzero(np.triu(mutual >= p.merge))
    return _union_find(G, zip(gi.tolist(), hi.tolist()))


def _refine(prob: _Problem, assign: np.ndarray, p: AssociateParams) -> np.ndarray:
    """Merge, dissolve, re-assign (p.rounds times). Returns the assignment [M] (-1 = none)."""
    M = prob.ok.size
    for _ in range(int(p.rounds)):
        if not (assign >= 0).any():
            break
        assign = _compact(assign)
        S = _membership(assign, int(assign.max()) + 1)
        roots = _merge(prob, S, p)
        assign = np.where(assign >= 0, roots[np.maximum(assign, 0)], -1)
        assign = _compact(assign)
        S = _membership(assign, int(assign.max()) + 1)
        _, share = _owners(prob, S)
        alive = share >= p.own
        new = np.full(M, -1, np.int64)
        for j in range(M):
            Sj = S.copy()
            Sj[:, j] = 0.0  # leave-one-out
            fwd, bwd = prob.scores(Sj, j, p)
            s = np.where(alive & (Sj.sum(1) > 0), np.minimum(fwd, bwd), 0.0)
            k = int(np.argmax(s))
            if s[k] >= p.join:
                new[j] = k
            elif assign[j] >= 0 and alive[assign[j]]:
                new[j] = assign[j]
        assign = new
    return _compact(assign) if (assign >= 0).any() else assign


# ----------------------------------------------------------------------------- final labels


def _final_labels(prob: _Problem, assign: np.ndarray, tensors, view_objs, p: AssociateParams):
    """Label every kept mask: its group; or, when unassigned, the group it is a part of (fwd >= single),
    a per-pixel split between the groups it merges, or nothing. Returns ({view idx: [H,W] group, -1 =
    none}, owner [N], stats)."""
    from gsgroup.render import dominant_gaussian

    M = prob.ok.size
    n = int(assign.max()) + 1 if (assign >= 0).any() else 0
    S = _membership(assign, n)
    final = assign.copy()
    splits: dict[int, np.ndarray] = {}
    stats = {"split": 0, "parts": 0, "unexplained": 0}
    if n:
        for j in np.flatnonzero(assign < 0):
            fwd, bwd = prob.scores(S, j, p)
            k = int(np.argmax(fwd))
            if fwd[k] >= p.single:
                final[j] = k
                stats["parts"] += 1
                continue
            parts = np.flatnonzero((fwd >= p.part) & (bwd >= p.part_prec))
            if p.split_merged and parts.size >= 2 and fwd[parts].sum() >= p.single:
                splits[j] = parts
                stats["split"] += 1
            else:
                stats["unexplained"] += 1
    else:
        stats["unexplained"] = M
    # Gaussian owners from every mask that took a whole group
    owner, _ = _owners(prob, _membership(final, n)) if n else (np.full(prob.X.shape[1], -1, np.int64), None)
    out = {}
    for vi, v in enumerate(prob.views):
        lut = np.full(v.ids.size, -1, np.int64)
        js = np.flatnonzero(prob.mview == vi)
        for j in js:
            lut[prob.masks[prob.ok[j]].label] = final[j]
        gmap = lut[v.labels]
        todo = [j for j in js if j in splits]
        if todo:
            view = view_objs[vi]
            means, quats, scales, opac = tensors
            dom = dominant_gaussian(
                means,
                quats,
                scales,
                opac,
                torch.as_tensor(np.asarray(view.viewmat, np.float32)),
                torch.as_tensor(np.asarray(view.K, np.float32)),
                view.width,
                view.height,
            ).numpy()
            pix_owner = np.where(dom >= 0, owner[np.maximum(dom, 0)], -1)
            for j in todo:
                gmap = _split_pixels(gmap, v.labels == prob.masks[prob.ok[j]].label, splits[j], pix_owner)
        out[vi] = gmap
    return out, owner, stats


def _split_pixels(gmap: np.ndarray, region: np.ndarray, parts: np.ndarray, pix_owner: np.ndarray) -> np.ndarray:
    """Pixels of ``region`` [H,W] take the part group owning their dominant Gaussian; the others take the
    nearest such pixel's group."""
    from scipy import ndimage

    gmap = gmap.copy()
    good = region & np.isin(pix_owner, parts)
    if not good.any():
        gmap[region] = parts[0]
        return gmap
    _, (iy, ix) = ndimage.distance_transform_edt(~good, return_indices=True)
    gmap[region] = pix_owner[iy, ix][region]
    return gmap


# ----------------------------------------------------------------------------- public API


def associate_masks(views, gaussians, masks: dict, params: AssociateParams | None = None) -> AssociationResult:
    """Associate per-view masks across views through the Gaussians (see the module docstring).

    views: objects with name, K [3,3], viewmat [4,4], width, height (and image [H,W,3] in [0,1] for the
    mean colors); gaussians: a ``Gaussians`` (raw parameters) or a tuple (means [N,3], unit quats [N,4],
    linear scales [N,3], opacities [N]); masks: {view name: [H,W] int ids (0 = no mask) or None}.
    Views whose mask is None or missing get no output. Returns an AssociationResult whose masks are
    [H,W] int32 with ids 1..K shared across views (0 = no object / dropped).
    """
    import time

    p = (params or AssociateParams()).check()
    t0 = time.perf_counter()
    tensors = _gaussian_tensors(gaussians)
    n_gauss = int(tensors[0].shape[0])
    todo = sorted((v for v in views if masks.get(v.name) is not None), key=lambda v: v.name)
    names = [v.name for v in todo]
    if len(set(names)) != len(names):
        raise InputError("associate: two views share a name; view names must be unique")
    vdata, mlist = [], []
    for vi, v in enumerate(todo):
        vdata.append(_view_data(v, np.asarray(masks[v.name]), tensors, p, mlist, vi))
    t_contrib = time.perf_counter() - t0
    prob = _Problem(vdata, mlist, n_gauss, p.gate)
    # view-order independent order: largest first, ties by view name then original id
    order = np.array(
        sorted(
            range(prob.ok.size),
            key=lambda j: (
                -int(prob.pixels[j]),
                vdata[prob.mview[j]].name,
                int(vdata[prob.mview[j]].ids[mlist[prob.ok[j]].label]),
            ),
        ),
        np.int64,
    )
    assign = _memory_bank(prob, order, p)
    n_bank = int(assign.max()) + 1 if assign.size else 0
    assign = _refine(prob, assign, p)
    gmaps, owner_g, fstats = _final_labels(prob, assign, tensors, todo, p)

    # void masks
    void_group = None
    if p.void != "drop":
        for vi, v in enumerate(vdata):
            void_l = [m.label for m in mlist if m.view == vi and m.state == "void"]
            if void_l:
                void_group = -2
                gmaps[vi] = np.where(np.isin(v.labels, void_l), -2, gmaps[vi])

    # ids 1..K by decreasing pixel count (void: see p.void)
    counts: dict[int, int] = {}
    for g in gmaps.values():
        u, c = np.unique(g[g != -1], return_counts=True)
        for a, b in zip(u.tolist(), c.tolist()):
            counts[a] = counts.get(a, 0) + b
    if void_group is not None and p.void == "background":
        groups = [g for g in counts if g >= 0]
        bg = max(groups, key=lambda g: (counts[g], -g)) if groups else -2
        for vi in gmaps:
            gmaps[vi] = np.where(gmaps[vi] == -2, bg, gmaps[vi])
        counts = {g: c for g, c in counts.items() if g != -2}
        if bg == -2:
            counts[-2] = sum(int((g == -2).sum()) for g in gmaps.values())
    nviews = {g: sum(int((gm == g).any()) for gm in gmaps.values()) for g in counts}
    ranked = sorted((g for g in counts if nviews[g] >= p.min_views), key=lambda g: (-counts[g], g))
    gid = {g: k + 1 for k, g in enumerate(ranked)}
    out_masks = {}
    for vi, gm in gmaps.items():
        keys = np.unique(gm)
        lut_in = np.array(keys, np.int64)
        lut_out = np.array([gid.get(int(g), 0) for g in keys], np.int32)
        out_masks[vdata[vi].name] = lut_out[np.searchsorted(lut_in, gm)]
    owner = np.zeros(n_gauss, np.int32)
    if owner_g.size and (owner_g >= 0).any():
        ou = np.array([gid.get(g, 0) for g in range(int(owner_g.max()) + 1)], np.int32)
        has = owner_g >= 0
        owner[has] = ou[owner_g[has]]
    states = [m.state for m in mlist]
    stats = {
        "views": len(vdata),
        "masks": len(mlist),
        "kept": states.count("ok"),
        "tiny": states.count("tiny"),
        "unreliable": states.count("unreliable"),
        "void": states.count("void"),
        "bank_groups": n_bank,
        "objects": len(ranked),
        "parts": fstats["parts"],
        "split": fstats["split"],
        "unexplained": fstats["unexplained"],
        "seconds_contributions": round(t_contrib, 3),
        "seconds": round(time.perf_counter() - t0, 3),
    }
    objects = association_objects(out_masks, {v.name: v for v in todo}, tensors[0].numpy(), owner)
    return AssociationResult(out_masks, objects, stats, owner)


def association_objects(masks: dict, views: dict, means: np.ndarray, owner: np.ndarray) -> dict[int, dict]:
    """Per id, the objects.json schema of a run (gaussians, bbox_min, bbox_max, mean_color) plus
    pixels (total over views) and views (sorted names): mean_color is the mean RGB in [0,1] over its
    pixels (from each view's ``image`` when present); the box spans the 2nd-98th percentile per axis
    of its Gaussians' means (None without Gaussians). masks {name: [H,W] ids}; views {name: view};
    means [N,3]; owner [N] id of each Gaussian (0 = none)."""
    ids = sorted({int(k) for m in masks.values() for k in np.unique(m) if k > 0})
    K = (max(ids) + 1) if ids else 1
    pixels = np.zeros(K, np.int64)
    csum = np.zeros((K, 3), np.float64)
    cnt = np.zeros(K, np.int64)
    seen: dict[int, list[str]] = {k: [] for k in ids}
    for name in sorted(masks):
        m = masks[name].ravel()
        pixels += np.bincount(m, minlength=K)[:K]
        for k in np.unique(m):
            if k > 0:
                seen[int(k)].append(name)
        img = getattr(views.get(name), "image", None)
        if img is not None:
            img = np.asarray(img, np.float64).reshape(-1, 3)
            for c in range(3):
                csum[:, c] += np.bincount(m, weights=img[:, c], minlength=K)[:K]
            cnt += np.bincount(m, minlength=K)[:K]
    out = {}
    for k in ids:
        pts = means[owner == k]
        lo, hi = (np.percentile(pts, 2, axis=0), np.percentile(pts, 98, axis=0)) if len(pts) else (None, None)
        out[k] = {
            "gaussians": int(len(pts)),
            "bbox_min": None if lo is None else [round(float(x), 5) for x in lo],
            "bbox_max": None if hi is None else [round(float(x), 5) for x in hi],
            "mean_color": [round(float(x), 4) for x in csum[k] / cnt[k]] if cnt[k] else None,
            "pixels": int(pixels[k]),
            "views": seen[k],
        }
    return out


def write_association(result: AssociationResult, out_dir: str | os.PathLike, params: dict | None = None) -> Path:
    """Write ``out_dir/<view name>.png`` (uint8 when there are <= 255 ids, else uint16 for every view;
    0 = no object) and ``out_dir/objects.json`` ({"objects": {id: info}, "stats": ..., "params": ...}),
    each atomically. Returns out_dir."""
    from gsgroup.data.masks import OBJECTS_FILE
    from gsgroup.fileio import write_image, write_json

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    n = max(result.objects) if result.objects else 0
    if n > 65535:
        raise InputError(f"{out}: {n} objects exceed the uint16 PNG range")
    dtype = np.uint8 if n <= 255 else np.uint16
    for name, ids in result.masks.items():
        write_image(out / f"{name}.png", np.asarray(ids).astype(dtype))
    write_json(
        out / OBJECTS_FILE,
        {
            "format": "gaussian-grouping object_mask: <stem>.png ids, 0 = no object",
            "dtype": np.dtype(dtype).name,
            "objects": {str(k): v for k, v in sorted(result.objects.items())},
            "stats": result.stats,
            "params": params or {},
        },
    )
    return out


def resolve_output_dir(data_dir: str | os.PathLike, out: str | os.PathLike | None, force: bool = False) -> Path:
    """Where ``gsgroup associate`` writes: ``out`` when given, else ``DATA/object_mask``.

    A folder that already holds files (user masks, an earlier association) is refused without ``force``
    (InputError naming it); a path that exists but is not a folder is always refused."""
    from gsgroup.data.masks import OBJECT_MASK_DIR

    path = Path(out) if out is not None else Path(data_dir) / OBJECT_MASK_DIR
    if path.exists() and not path.is_dir():
        raise InputError(f"{path}: exists and is not a folder; pass another --out")
    if path.is_dir() and any(path.iterdir()) and not force:
        hint = "pass --out DIR to write elsewhere" if out is None else "pick an empty --out folder"
        raise InputError(f"{path}: already holds masks; {hint}, or --force to overwrite them")
    return path


# ----------------------------------------------------------------------------- metric


def pairwise_f1(gt: dict | list, pred: dict | list, valid: dict | list | None = None) -> dict:
    """Pairwise precision / recall / F1 of an association against ground truth, exact.

    gt, pred: {view name: [H,W] int} (matched by name) or lists of [H,W] arrays in the same order.
    gt ids are instance ids where every value is a class (0, the background, included); pred ids are
    associated ids where 0 (no object / dropped) makes each such pixel a singleton, never "same" as
    another pixel. ``valid``: optional {view name: [H,W] bool} (or list) of the pixels to evaluate,
    e.g. ``input_mask != 0`` to score the association alone (pixels no input mask covers are then
    left out; pixels the association drops still count as singletons). Over all unordered pairs of
    distinct evaluated (view, pixel) samples pooled over the views (the exact value of what sampling
    random pairs estimates): precision = P(same gt | same pred), recall = P(same pred | same gt).
    Returns {"precision", "recall", "f1", "pixels" (evaluated), "pred_zero" (share of them with pred 0)}.
    """

    def as_list(x, names):
        if isinstance(x, dict):
            missing = [n for n in names if n not in x]
            if missing:
                raise ValueError(f"pairwise_f1: no entry for view {missing[0]}")
            return [x[n] for n in names]
        return list(x)

    names = sorted(gt) if isinstance(gt, dict) else None
    gt_l = as_list(gt, names) if names is not None else list(gt)
    pred_l = as_list(pred, names) if names is not None else list(pred)
    if len(gt_l) != len(pred_l):
        raise ValueError(f"pairwise_f1: {len(gt_l)} gt views but {len(pred_l)} predicted views")
    g = np.concatenate([np.asarray(a).ravel().astype(np.int64) for a in gt_l]) if gt_l else np.zeros(0, np.int64)
    q = np.concatenate([np.asarray(a).ravel().astype(np.int64) for a in pred_l]) if pred_l else np.zeros(0, np.int64)
    if g.shape != q.shape:
        raise ValueError(f"pairwise_f1: gt has {g.size} pixels but pred has {q.size}")
    if valid is not None:
        val_l = as_list(valid, names) if names is not None else list(valid)
        keep = np.concatenate([np.asarray(a).ravel().astype(bool) for a in val_l])
        if keep.shape != g.shape:
            raise ValueError(f"pairwise_f1: valid has {keep.size} pixels but gt has {g.size}")
        g, q = g[keep], q[keep]

    def pairs(x):
        x = x.astype(np.float64)
        return float((x * (x - 1) / 2).sum())

    _, gc = np.unique(g, return_counts=True)
    nz = q != 0
    _, qc = np.unique(q[nz], return_counts=True)
    span = int(q.max()) + 1 if q.size else 1
    _, jc = np.unique((g[nz] - (int(g.min()) if g.size else 0)) * span + q[nz], return_counts=True)
    same_gt, same_pred, tp = pairs(gc), pairs(qc), pairs(jc)
    precision = tp / same_pred if same_pred else 1.0
    recall = tp / same_gt if same_gt else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "pixels": int(g.size),
        "pred_zero": float((q == 0).mean()) if q.size else 0.0,
    }


def oracle_association(gt: dict, masks: dict) -> dict:
    """Upper bound for an association of ``masks`` (per-view ids): every input mask takes the gt id most
    of its pixels have (+1, so that gt background 0 stays an object); 0 stays 0. {name: [H,W] int64}."""
    out = {}
    for name, m in masks.items():
        if m is None:
            continue
        m = np.asarray(m).astype(np.int64)
        t = np.asarray(gt[name]).astype(np.int64)
        res = np.zeros(m.shape, np.int64)
        for k in np.unique(m):
            if k == 0:
                continue
            sel = m == k
            res[sel] = np.bincount(t[sel]).argmax() + 1
        out[name] = res
    return out
