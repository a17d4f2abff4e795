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

7. **Enclosed parts** (``enclose`` > 0): an id whose borders over all views lie mostly (>= ``enclose``)
   on one object, whose Gaussians sit inside that object's box and whose shared border shows no depth
   step in the rendered depth (at most ``enclose_step`` of it: a highlight, a shading band, a printed
   pattern the 2D segmenter cut out, not an object in front) is merged into it (``enclosure``).

Steps 4-6 are in ``association_bank``. ``association_io.write_association`` writes ``<stem>.png``
(uint8 up to 255 ids, else uint16; 0 = no object) and ``objects.json``; ``resolve_output_dir``
picks the output folder without overwriting user masks; ``association_metrics.pairwise_f1``
scores an association against ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch

from gsgroup.errors import InputError
from gsgroup.segment.association_bank import _final_labels, _memory_bank, _Problem, _refine, camera
from gsgroup.segment.association_io import association_objects
from gsgroup.segment.enclosure import merge_enclosed, rendered_depths

__all__ = ["AssociateParams", "AssociationResult", "associate_masks"]

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
    enclose: float = 0.6  # merge parts enclosed by an object (segment/enclosure.py); 0 = never
    enclose_step: float = 0.15  # ... unless more of their shared border is a depth step; 1 = no depth guard

    def check(self) -> AssociateParams:
        for name in (
            "min_area core share front keep_mass min_selected void_alpha gate evidence"
            " join merge own single part part_prec enclose_step"
        ).split():
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
    K [3,3]; width, height in pixels. CUDA tensors are projected by gsplat on their device.
    """
    from gsgroup.render import _kernels as kn

    if torch.is_tensor(tensors[0]) and tensors[0].device.type == "cuda":
        return _footprint_gsplat(tensors, viewmat, K, width, height, near, eps2d)

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


def _footprint_gsplat(tensors, viewmat, K, width: int, height: int, near: float, eps2d: float) -> np.ndarray:
    """``footprint`` from gsplat's projection (render.gsplat_backend.project_gsplat) on the tensors' device."""
    from gsgroup.render.gsplat_backend import project_gsplat

    means, quats, scales, opac = tensors
    dev = means.device
    vm, Kt = (torch.as_tensor(x, dtype=means.dtype, device=dev) for x in (viewmat, K))
    radii, uv, conic = project_gsplat(means, quats, scales, vm, Kt, width, height, near, eps2d)
    uv, conic = uv.double(), conic.double()
    det_conic = conic[:, 0] * conic[:, 2] - conic[:, 1] ** 2
    u, v = uv[:, 0], uv[:, 1]
    ok = (radii > 0) & (det_conic > 0) & (u >= 0) & (u <= width) & (v >= 0) & (v <= height)
    out = torch.where(ok, opac.double() * 2.0 * np.pi / det_conic.clamp_min(1e-300).sqrt(), torch.zeros_like(u))
    return out.cpu().numpy()


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


def _view_data(view, mask: np.ndarray, tensors, p: AssociateParams, masks_out: list, vi: int, on=None) -> _View:
    from gsgroup.render.weights import label_weights

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
    on = tensors if on is None else on  # the Gaussian tensors on the compute device
    vm, K, width, height = (x.to(on[0].device) if torch.is_tensor(x) else x for x in camera(view))
    C2 = label_weights(*on, vm, K, width, height, torch.from_numpy(lab2), 2 * L).numpy()
    Cint = sp.csc_matrix(C2[:, :L])
    C = C2[:, :L] + C2[:, L:]
    del C2
    W = C.sum(1)
    cam = (view.viewmat, view.K) if on is tensors else (vm, K)  # on a GPU, gsplat projects there
    fp = footprint(on, *cam, view.width, view.height)
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


# ----------------------------------------------------------------------------- public API


def _ranked_ids(gmaps: dict, owner_g: np.ndarray, vdata: list, mlist: list, p: AssociateParams):
    """Group labels per view -> ids 1..K by decreasing pixel count (void masks: see ``p.void``).
    Returns ({view name: [H,W] int32 ids}, owner id per Gaussian [N] int32, K)."""
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
    owner = np.zeros(owner_g.size, np.int32)
    if owner_g.size and (owner_g >= 0).any():
        ou = np.array([gid.get(g, 0) for g in range(int(owner_g.max()) + 1)], np.int32)
        has = owner_g >= 0
        owner[has] = ou[owner_g[has]]
    return out_masks, owner, len(ranked)


def associate_masks(
    views, gaussians, masks: dict, params: AssociateParams | None = None, progress: bool = False, device="cpu"
) -> AssociationResult:
    """Associate per-view masks across views through the Gaussians (see the module docstring).

    views: objects with name, K [3,3], viewmat [4,4], width, height (and image [H,W,3] in [0,1] for the
    mean colors); gaussians: a ``Gaussians`` (raw parameters) or a tuple (means [N,3], unit quats [N,4],
    linear scales [N,3], opacities [N]); masks: {view name: [H,W] int ids (0 = no mask) or None}.
    Views whose mask is None or missing get no output. Returns an AssociationResult whose masks are
    [H,W] int32 with ids 1..K shared across views (0 = no object / dropped). ``progress``: a bar
    over the views while their masks' Gaussian contributions are computed, on ``device`` (the rest on the CPU).
    """
    import time

    from tqdm import tqdm

    p = (params or AssociateParams()).check()
    t0 = time.perf_counter()
    tensors = _gaussian_tensors(gaussians)
    n_gauss = int(tensors[0].shape[0])
    on = None if torch.device(device).type == "cpu" else tuple(t.to(device) for t in tensors)
    todo = sorted((v for v in views if masks.get(v.name) is not None), key=lambda v: v.name)
    names = [v.name for v in todo]
    if len(set(names)) != len(names):
        raise InputError("associate: two views share a name; view names must be unique")
    vdata, mlist = [], []
    for vi, v in enumerate(tqdm(todo, desc="associate", unit="view", disable=not progress)):
        vdata.append(_view_data(v, np.asarray(masks[v.name]), tensors, p, mlist, vi, on))
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

    out_masks, owner, n_objects = _ranked_ids(gmaps, owner_g, vdata, mlist, p)
    merged = {}
    if p.enclose > 0:
        depths = None if p.enclose_step >= 1 else lambda: rendered_depths(todo, on or tensors)
        out_masks, owner, n_objects, merged = merge_enclosed(
            out_masks, owner, tensors[0].numpy(), p.enclose, depths, p.enclose_step
        )
    states = [m.state for m in mlist]
    stats = {
        "views": len(vdata),
        "masks": len(mlist),
        "kept": states.count("ok"),
        "tiny": states.count("tiny"),
        "unreliable": states.count("unreliable"),
        "void": states.count("void"),
        "bank_groups": n_bank,
        "objects": n_objects,
        "parts": fstats["parts"],
        "split": fstats["split"],
        "unexplained": fstats["unexplained"],
        "enclosed_parts_merged": len(merged),
        "seconds_contributions": round(t_contrib, 3),
        "seconds": round(time.perf_counter() - t0, 3),
    }
    objects = association_objects(out_masks, {v.name: v for v in todo}, tensors[0].numpy(), owner)
    return AssociationResult(out_masks, objects, stats, owner)
