"""The memory bank of cross-view association (steps 4-6 of ``segment.associate``): masks grouped
into objects through the Gaussians they select, refined, and turned into final per-view labels."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp
import torch


def camera(view) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """(viewmat [4,4], K [3,3] float32 tensors, width, height) of a view, as the rasterizer takes them."""
    return (
        torch.as_tensor(np.asarray(view.viewmat, np.float32)),
        torch.as_tensor(np.asarray(view.K, np.float32)),
        view.width,
        view.height,
    )


if TYPE_CHECKING:
    from gsgroup.segment.associate import AssociateParams, _Mask, _View


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
            dom = dominant_gaussian(*tensors, *camera(view)).numpy()
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
