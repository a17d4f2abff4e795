"""Selections that take all of an object and nothing else: mask votes, neighbourhoods, floaters, trims.

The identity classifier alone leaves parts of an object behind (faint insides, boundary Gaussians,
highlights whose probabilities stay under the threshold). A run trained on associated masks already
holds more direct evidence: the **mask votes**. For each Gaussian, its blending weight alpha*T summed
over all training pixels (``weight``), and the share of that weight falling on pixels whose
associated mask is one of the chosen ids (``share``) (the FlashSplat quantity, ``segment.lift``).

``refine_selection`` combines them per Gaussian:

1. score = share for Gaussians that the views see well (weight >= ``seen`` x the median weight of
   the object's Gaussians), blended with the classifier probability p of the chosen ids for rarely
   seen ones: score = (w share + w0 p) / (w + w0), w0 = ``seen`` x median weight;
2. the score is smoothed over the k nearest Gaussians (half own score, half the neighbours' mean),
   so lone misvoted Gaussians follow their neighbourhood;
3. selected: smoothed score >= 0.5, or the base (threshold) selection where it is not contradicted
   by well-seen votes (share < ``reject``);
4. floaters: faint (opacity < ``faint``) or large unselected Gaussians within the selection's
   bounding box that vote for the object at all (share > 0.1), or that no view sees, join;
5. straddlers: kept Gaussians whose weight falls partly on the object (``straddle`` <= share < 0.5)
   are marked for trimming: on removal, ``trim_gaussians`` replaces each by the half of it that lies
   away from the object (mean moved 0.8 sigma along that direction, variance there times 0.36),
   so neither its object half stays as residue nor its outside half leaves a hole.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.spatial import cKDTree

from ..geometry import quat_to_rotmat, rotmat_to_quat
from ..model import Gaussians
from ..run import Run
from ..segment.segmentation import Segmentation


@dataclass
class Votes:
    """Per Gaussian: share [N] of its blending weight on the chosen ids' mask pixels, weight [N] total."""

    share: np.ndarray
    weight: np.ndarray


def mask_votes(run: Run, ids: list[int], device: torch.device | str = "cpu") -> Votes | None:
    """The mask votes of ``ids`` from the associated masks the run was trained on (None without them),
    the blending weights summed on ``device`` (``segment.lift.accumulate_weights``)."""
    from pathlib import Path

    from ..data.masks import load_masks
    from ..segment.lift import accumulate_weights

    folder = run.config.data.masks
    if not folder or not Path(folder).is_dir():
        return None
    views = run.views("train")
    masks = load_masks(folder, views)
    A = accumulate_weights(views, run.gaussians, masks, progress=False, device=device)  # [N, L]
    return votes_from_weights(A, ids)


def whole_ids(run: Run, ids: list[int]) -> list[int]:
    """``ids`` plus the parts the run's associated masks split off them (``segment.enclosure``: ids
    whose borders lie mostly on the chosen objects and whose Gaussians sit inside their box)."""
    from pathlib import Path

    from ..data.masks import load_masks
    from ..segment.enclosure import adjacency, enclosed_parts

    folder = run.config.data.masks
    if not folder or not Path(folder).is_dir():
        return sorted(ids)
    C = adjacency(load_masks(folder, run.views("train")))
    labels, _ = run.require_segmentation().label(run.gaussians)
    return enclosed_parts(C, labels, run.gaussians.means.detach().numpy(), ids)


def votes_from_weights(A: np.ndarray, ids: list[int]) -> Votes:
    """Votes from accumulated weights A [N,L] (``segment.lift.accumulate_weights``)."""
    cols = [i for i in ids if 0 <= i < A.shape[1]]
    total = A.sum(axis=1)
    obj = A[:, cols].sum(axis=1) if cols else np.zeros(len(A))
    share = np.divide(obj, total, out=np.zeros_like(total), where=total > 0)
    return Votes(share, total)


def chosen_probability(g: Gaussians, seg: Segmentation, ids: list[int]) -> np.ndarray:
    """Probability [N] that a Gaussian is one of ``ids`` (sum over them; 0/1 for label-only runs)."""
    if seg.classifier is None:
        return np.isin(seg.labels, ids).astype(np.float64)
    return seg.probs(g)[:, ids].sum(dim=1).clamp(0, 1).numpy().astype(np.float64)


@dataclass
class Refined:
    """A refined selection: mask [N] bool, trim indices [M] (kept Gaussians to cut) with unit
    directions away from the object [M,3], and counts for edit.json."""

    mask: np.ndarray
    trim: np.ndarray
    trim_dirs: np.ndarray
    counts: dict
    trim_share: np.ndarray | None = None  # [M] share of each straddler's weight on the object


def refine_selection(
    g: Gaussians,
    seg: Segmentation,
    ids: list[int],
    base: np.ndarray,
    votes: Votes,
    k: int = 8,
    seen: float = 0.05,
    reject: float = 0.05,
    faint: float = 0.2,
    straddle: float = 0.15,
) -> Refined:
    """Combine the base selection [N] bool with the mask votes (module docstring)."""
    base = np.asarray(base, bool)
    n = len(g)
    p = chosen_probability(g, seg, ids)
    w, s = votes.weight, votes.share
    ref = w[base & (w > 0)]
    w0 = seen * (float(np.median(ref)) if len(ref) else float(np.median(w[w > 0])) if (w > 0).any() else 1.0)
    score = (w * s + w0 * p) / (w + w0)
    means = g.means.detach().numpy().astype(np.float64)
    tree = cKDTree(means)
    kk = min(k + 1, n)
    _, nn = tree.query(means, k=kk, workers=-1)
    nn = nn[:, 1:] if kk > 1 else nn
    smooth = 0.5 * score + 0.5 * score[nn].mean(axis=1) if nn.size else score
    well_seen = w >= w0
    sel = (smooth >= 0.5) | (base & ~(well_seen & (s < reject)))
    added_votes = int((sel & ~base).sum())
    dropped = int((base & ~sel).sum())
    # floaters: faint or large Gaussians in the selection's box that lean to the object or are unseen
    if sel.any():
        lo, hi = np.percentile(means[sel], 1, axis=0), np.percentile(means[sel], 99, axis=0)
        pad = 0.1 * (hi - lo)
        inbox = ((means >= lo - pad) & (means <= hi + pad)).all(axis=1)
        opac = torch.sigmoid(g.opacities.detach()).numpy()
        size = torch.exp(g.scales.detach()).max(dim=1).values.numpy()
        big = size > 3 * float(np.median(size[sel]))
        other = (s < 0.1) & well_seen
        floater = inbox & ~sel & ~other & (((opac < faint) | big) & ((s > 0.1) | (w < w0)))
        sel |= floater
    else:
        floater = np.zeros(n, bool)
    grown = grow_by_colour(g, sel, (s >= straddle) | (w < w0), nn, tree)
    sel |= grown
    # straddlers: kept, well seen, partly on the object
    strad = np.flatnonzero(~sel & well_seen & (s >= straddle))
    dirs = np.zeros((len(strad), 3))
    if len(strad) and sel.any():
        sel_pts = means[sel]
        _, j = cKDTree(sel_pts).query(means[strad], k=min(8, len(sel_pts)), workers=-1)
        j = j.reshape(len(strad), -1)
        d = means[strad] - sel_pts[j].mean(axis=1)
        dirs = d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)
    counts = {
        "added_by_votes": added_votes,
        "dropped_by_votes": dropped,
        "floaters_added": int(floater.sum()),
        "added_by_colour": int(grown.sum()),
        "trimmed": len(strad),
    }
    return Refined(sel, strad, dirs, counts, s[strad])


def chroma(g: Gaussians) -> np.ndarray:
    """Shading-invariant colour [N,3] of the Gaussians' DC colour: rgb / (|rgb| + 0.05)."""
    from ..model.sh import sh_to_rgb

    rgb = sh_to_rgb(g.sh0.detach()[:, 0]).clamp(0, 1).numpy().astype(np.float64)
    return rgb / (np.linalg.norm(rgb, axis=1, keepdims=True) + 0.05)


def grow_by_colour(
    g: Gaussians, sel: np.ndarray, cand: np.ndarray, nn: np.ndarray, tree: cKDTree | None = None, rounds: int = 6,
    wide: int = 32,
) -> np.ndarray:  # fmt: skip
    """Unselected candidates [N] bool that join the selection sel [N] bool: a candidate with a selected
    neighbour (nn [N,k] neighbour indices) joins when its chroma is nearer the mean chroma of its
    selected neighbours than of the unselected Gaussians around it. The unselected side counts only
    Gaussians that are no candidates (among the k neighbours, else among the ``wide`` nearest), so that a
    clump of candidates in the object's colour (boundary Gaussians that took it) is compared with what
    lies around it, not with itself; a candidate with none of them that near joins. ``tree``: a cKDTree
    over the means (float64), built here when not given. Returns the joined Gaussians [N] bool."""
    c = chroma(g)
    cand = np.asarray(cand, bool)
    cur = np.asarray(sel, bool).copy()
    means = g.means.detach().numpy().astype(np.float64)
    for _ in range(rounds):
        idx = np.flatnonzero(cand & ~cur & cur[nn].any(axis=1))
        if not len(idx):
            break
        nb = nn[idx]
        m_in = _mean_chroma(c, nb, cur[nb])
        firm = ~cur[nb] & ~cand[nb]  # unselected neighbours that are no candidates
        has_out = firm.any(axis=1)
        m_out = _mean_chroma(c, nb, firm)
        far = np.flatnonzero(~has_out)
        if len(far):
            tree = tree if tree is not None else cKDTree(means)
            _, nw = tree.query(means[idx[far]], k=min(wide + 1, len(c)))
            nw = nw.reshape(len(far), -1)
            firm_w = ~cur[nw] & ~cand[nw]
            m_out[far] = _mean_chroma(c, nw, firm_w)
            has_out[far] = firm_w.any(axis=1)
        d_in = np.linalg.norm(c[idx] - m_in, axis=1)
        d_out = np.linalg.norm(c[idx] - m_out, axis=1)
        join = idx[(d_in < d_out) | ~has_out]
        if not len(join):
            break
        cur[join] = True
    return cur & ~np.asarray(sel, bool)


def _mean_chroma(c: np.ndarray, nb: np.ndarray, use: np.ndarray) -> np.ndarray:
    """Per row of neighbour indices nb [M,k], the mean chroma [M,3] of the neighbours where use [M,k]."""
    w = use.astype(np.float64)[:, :, None]
    return (c[nb] * w).sum(1) / np.maximum(w.sum(1), 1)


def trim_gaussians(g: Gaussians, idx: np.ndarray, dirs: np.ndarray, cut=0.8, keep_var=0.36, opacity_gain=None):
    """Replace Gaussians ``idx`` [M] by their halves away from the object (along unit ``dirs`` [M,3]).

    With covariance S and unit direction d, the kept half is approximated by the Gaussian with mean
    mu + cut * S d / sqrt(d'Sd) and covariance S - (1 - keep_var) (S d)(S d)' / (d'Sd): the variance
    along d shrinks to keep_var of it, nothing changes across it (cut, keep_var: floats or [M]; the
    defaults are the moment-matched half beyond the mean). ``opacity_gain`` [M] multiplies the opacities
    (clipped below 0.99). Returns new Gaussians (g untouched)."""
    out = g.detach()
    if not len(idx):
        return out
    idx_t = torch.from_numpy(np.asarray(idx, np.int64))
    cut = torch.as_tensor(np.broadcast_to(np.asarray(cut, np.float64), (len(idx),)).copy())[:, None]
    keep_var = torch.as_tensor(np.broadcast_to(np.asarray(keep_var, np.float64), (len(idx),)).copy())[:, None, None]
    R = quat_to_rotmat(out.quats[idx_t].double())  # [M,3,3]
    s2 = torch.exp(2 * out.scales[idx_t].double())
    S = R @ torch.diag_embed(s2) @ R.transpose(1, 2)
    d = torch.from_numpy(np.asarray(dirs, np.float64))
    Sd = (S @ d[:, :, None])[:, :, 0]
    dSd = (Sd * d).sum(1).clamp_min(1e-20)
    out.means[idx_t] = (out.means[idx_t].double() + cut * Sd / dSd.sqrt()[:, None]).to(out.means.dtype)
    if opacity_gain is not None:
        o = torch.sigmoid(out.opacities[idx_t].double()) * torch.as_tensor(np.asarray(opacity_gain, np.float64))
        out.opacities[idx_t] = torch.logit(o.clamp(1e-4, 0.99)).to(out.opacities.dtype)
    S_new = S - (1 - keep_var) * Sd[:, :, None] * Sd[:, None, :] / dSd[:, None, None]
    evals, evecs = torch.linalg.eigh(0.5 * (S_new + S_new.transpose(1, 2)))
    det = torch.linalg.det(evecs)
    evecs[:, :, 0] *= torch.sign(det)[:, None]  # a proper rotation
    out.scales[idx_t] = (0.5 * torch.log(evals.clamp_min(1e-20))).to(out.scales.dtype)
    out.quats[idx_t] = torch.from_numpy(rotmat_to_quat(evecs.numpy())).to(out.quats.dtype).reshape(-1, 4)
    return out


def split_parts(share: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """How a straddler splits, with ``share`` [M] of its weight on the object: the plane across the
    direction away from the object at t = Phi^-1(share) standard deviations leaves that share of its mass
    on the object side. The part beyond it, moment-matched (truncated normal): its mean offset
    phi(t) / m and variance 1 + t phi(t) / m - offset^2 (in units of the standard deviation along the
    direction, m = 1 - Phi(t) its mass), and the opacity gain m / sqrt(variance) that keeps its mass.
    Returns (cut [M], keep_var [M], opacity_gain [M]) for ``trim_gaussians``."""
    from scipy.stats import norm

    t = norm.ppf(np.clip(np.asarray(share, np.float64), 1e-3, 1 - 1e-3))
    m = norm.sf(t)
    mu = norm.pdf(t) / m
    var = np.maximum(1 + t * norm.pdf(t) / m - mu**2, 1e-6)
    return mu, var, m / np.sqrt(var)


SPLIT = False  # straddlers halved (trim_gaussians defaults); True: split at their vote share (split_parts), measured no better


def cut_straddlers(g: Gaussians, idx: np.ndarray, dirs: np.ndarray, share: np.ndarray | None) -> Gaussians:
    """Gaussians ``idx`` [M] replaced by their parts away from the object (unit ``dirs`` [M,3]): split at
    their vote ``share`` [M] (``split_parts``) when known and ``SPLIT``, else halved."""
    if SPLIT and share is not None and len(share) == len(idx):
        cut, keep_var, gain = split_parts(share)
        return trim_gaussians(g, idx, dirs, cut, keep_var, gain)
    return trim_gaussians(g, idx, dirs)
