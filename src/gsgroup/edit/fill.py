"""Filling the hole a removal leaves with the scene itself (the default of ``inpainting.inpaint``).

What the removal reveals and other training views saw is already in the surviving Gaussians, so only
the part no view saw needs new content (Gaussian Grouping's "unseen region"):

1. per training view, from the render **after** removal: the hole (the removed ids' footprint in the
   pre-edit id render, dilated), the **unseen** part of it (accumulated alpha after removal < 0.9),
   and the **shadow** the object cast (``shadow_mask``: pixels near the footprint with the chroma of
   the surrounding surface but under ``dark`` x its brightness, connected to the hole and nearer to it
   than to any other object, whose own shadow stays; the reconstruction baked the shadow into the
   floor and it has to go with the object). When a light direction estimated from the reconstruction
   explains the floor's darkness (``shadows.attribute``), the shadow is instead the dark floor that the
   object's Gaussians shadow and no remaining Gaussian does: a neighbour's shadow across the footprint
   stays, and the never-seen floor under it is filled dark (``shadows.shaded_fill``);
2. 2D-inpaint only unseen + shadow (dilated by a pixel or two) + **leftovers** (``leftover_mask``: hole
   pixels whose colour after removal is nearer the object's own than the surface around the hole, i.e.
   Gaussians of the object that its selection missed) of the after-removal render; the rest of the hole
   keeps what the surviving Gaussians show;
3. seed new Gaussians in the unseen part (plane-fitted depth, see ``inpainting.prepare_views``) and
   fit them to the targets under a loss weighted to the hole and shadow and a ring around them (weight
   1 there, 0.25 elsewhere; ``fitting.fit_gaussians`` with per-pixel weights): first alone, all parameters, for half the
   steps; then **together with their neighbours** (surviving Gaussians of the surface the object
   stood on, within two seed spacings of the back-projected hole and shadow pixels), colours only,
   after ``relight`` has multiplied their colours by the target/render ratio on their shadow pixels,
   so the shadowed floor is relit without moving any geometry.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
from scipy.spatial import cKDTree

from ..model import Gaussians
from ..segment.idmaps import id_features, ids_from_render, render_ids
from ..segment.segmentation import Segmentation
from ..train.trainer import render_view, view_tensors
from .inpainting import (
    backproject,
    consistency,
    dilate_mask,
    dilation_px,
    fill_depth,
    make_inpainter,
    merge_seeds,
    plane_fit,
    seed_gaussians,
)
from .shadows import attribute, shaded_fill


@dataclass
class FillView:
    """One training view: rgb0 (pre-edit) and rgb1 (after removal) [H,W,3], hole, unseen, shadow
    [H,W] bool, target [H,W,3], weight [H,W] float (the loss region), depth1 [H,W] (after removal)."""

    view: object
    rgb0: np.ndarray
    rgb1: np.ndarray
    hole: np.ndarray
    unseen: np.ndarray
    shadow: np.ndarray
    target: np.ndarray
    weight: np.ndarray
    depth1: np.ndarray
    ids0: np.ndarray


def shadow_mask(
    rgb: np.ndarray,
    hole: np.ndarray,
    other: np.ndarray,
    reach: float = 1.5,
    dark: float = 0.7,
    chroma_tol: float = 0.08,
    allowed: np.ndarray | None = None,
) -> np.ndarray:
    """The shadow a removed object cast, in one view. rgb [H,W,3] after removal, hole [H,W] bool (the
    footprint), other [H,W] bool (pixels of other objects, never shadow) -> [H,W] bool.

    Near zone: the hole dilated by ``reach`` x its equivalent radius. Reference: the brighter half of
    the zone's surface pixels outside the hole (median colour). Shadow: zone pixels whose chroma is
    within ``chroma_tol`` of the reference chroma and whose luminance is under ``dark`` x the
    reference's, in components touching the hole. Lambertian shadows keep the surface's chroma and
    only darken it, which is what separates them from dark objects nearby. ``allowed`` [H,W] bool: where
    shadow may be at all (``shadows.Attribution``: the removed object's cast shadow, no other's)."""
    if not hole.any():
        return np.zeros_like(hole)
    r = max(3, int(round(reach * np.sqrt(hole.sum() / np.pi))))
    zone = dilate_mask(hole, r) & ~other
    ring = zone & ~hole
    if ring.sum() < 20:
        return np.zeros_like(hole)
    lum = rgb @ np.array([0.299, 0.587, 0.114])
    ring_lum = lum[ring]
    bright = ring & (lum >= np.median(ring_lum))
    ref = np.median(rgb[bright], axis=0)
    ref_lum = float(ref @ np.array([0.299, 0.587, 0.114]))
    chroma = rgb / (rgb.sum(axis=2, keepdims=True) + 1e-3)
    ref_chroma = ref / (ref.sum() + 1e-3)
    near_chroma = np.linalg.norm(chroma - ref_chroma, axis=2) < chroma_tol
    cand = zone & near_chroma & (lum < dark * ref_lum)
    if allowed is not None:
        cand &= allowed
    if not cand.any():
        return cand
    n, comp = cv2.connectedComponents((cand | hole).astype(np.uint8), connectivity=8)
    touching = np.unique(comp[hole])
    return cand & np.isin(comp, touching[touching > 0])


def leftover_mask(
    rgb0: np.ndarray, rgb1: np.ndarray, foot: np.ndarray, hole: np.ndarray, keep: np.ndarray
) -> np.ndarray:
    """Hole pixels [H,W] bool that still show the removed object after removal: Gaussians of its colour
    that its selection missed (a dark underside the masks gave the floor). rgb0 / rgb1 [H,W,3] before /
    after removal, foot [H,W] bool (the object's pixels before), hole [H,W] bool, keep [H,W] bool (never
    leftover: other objects and what the removal revealed). A pixel of the hole is leftover when its
    colour after removal is nearer (RGB) to the object's own pixels before than to the surface around the
    hole after removal (a ring of the hole's width, shadows included)."""
    ring = dilate_mask(hole, max(3, int(round(np.sqrt(hole.sum() / np.pi))))) & ~hole & ~keep
    cand = hole & ~keep
    if ring.sum() < 20 or foot.sum() < 5 or not cand.any():
        return np.zeros_like(hole)
    d_obj = cKDTree(rgb0[foot].astype(np.float64)).query(rgb1[cand].astype(np.float64))[0]
    d_surf = cKDTree(rgb1[ring].astype(np.float64)).query(rgb1[cand].astype(np.float64))[0]
    out = np.zeros_like(hole)
    out[cand] = d_obj < d_surf
    return out


def surface_ids(ids: np.ndarray, hole: np.ndarray, px: int = 3, depth: np.ndarray | None = None) -> np.ndarray:
    """The ids [K] of the surface an object stands on in one view: those covering >= 25% of a ring of
    ``px`` around its hole in the pre-edit id map ``ids`` [H,W] (0 always counts as surface). With
    ``depth`` [H,W] (after removal), only ring pixels on the plane fitted to the ring count, so a
    neighbour touching the object (its side stands off the plane) is no surface."""
    ring = dilate_mask(hole, px) & ~hole
    if depth is not None and (ring & (depth > 0)).sum() >= 8:
        ring &= depth > 0
        on = np.zeros_like(ring)
        on[ring] = plane_fit(depth, ring)[1]
        ring = on
    vals, counts = np.unique(ids[ring], return_counts=True)
    keep = vals[counts >= 0.25 * max(counts.sum(), 1)] if len(vals) else vals
    return np.union1d(keep, [0])


def nearer_other(
    ids: np.ndarray, foot: np.ndarray, surface: np.ndarray, revealed: np.ndarray | None = None
) -> np.ndarray:
    """Pixels [H,W] bool that are not the removed object's to repaint: other objects' pixels (ids that are
    neither in ``surface`` [K] nor removed, and ``revealed`` [H,W] bool: parts of other objects that the
    removal uncovered) and every pixel nearer to one of them than to the footprint (their own shadows)."""
    objects = ~np.isin(ids, surface) & ~foot
    if revealed is not None:
        objects |= revealed
        foot = foot & ~revealed
    if not objects.any():
        return objects
    d_obj = cv2.distanceTransform((~foot).astype(np.uint8), cv2.DIST_L2, 3)
    d_other = cv2.distanceTransform((~objects).astype(np.uint8), cv2.DIST_L2, 3)
    return objects | (d_other < d_obj)


def touching(mask: np.ndarray, zone: np.ndarray) -> np.ndarray:
    """The connected parts [H,W] bool of mask [H,W] bool that overlap zone [H,W] bool, whole: an object
    near the hole is no source for the 2D fill anywhere, so the fill's border holds surface only."""
    n, comp = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    hit = np.unique(comp[mask & zone])
    return np.isin(comp, hit[hit > 0])


def closed(mask: np.ndarray) -> np.ndarray:
    """mask [H,W] bool with its enclosed islands filled (unmasked parts that touch no image border)."""
    n, comp = cv2.connectedComponents((~mask).astype(np.uint8), connectivity=4)
    edge = np.unique(np.r_[comp[0], comp[-1], comp[:, 0], comp[:, -1]])
    return mask | ((comp > 0) & ~np.isin(comp, edge))


def fill_views(
    g0: Gaussians,
    seg0: Segmentation,
    g1: Gaussians,
    seg1: Segmentation,
    ids: list[int],
    views: list,
    background,
    inpainter,
    px: int,
    shadows: bool = True,
    ring_px: int | None = None,
    attribution=None,
    device: torch.device | str = "cpu",
) -> list[FillView]:
    """Per training view in which the removed ids show: holes, unseen parts, shadows, inpainted targets
    and loss weights (module docstring, steps 1-2). With an ``attribution`` (``shadows.attribute``), the
    shadow is dark floor that the removed Gaussians shadow and no other does, and the 2D fill is made
    on the image divided by the remaining objects' shading, which it then multiplies back. Renders on
    ``device``; the masks and the 2D fill on the CPU."""
    from ..on_device import backdrop_on, gaussians_on, segmentation_on

    out = []
    ring_px = ring_px if ring_px is not None else 2 * px
    g0, g1, background = gaussians_on(g0, device), gaussians_on(g1, device), backdrop_on(background, device)
    seg0, seg1 = segmentation_on(seg0, device), segmentation_on(seg1, device)
    with torch.no_grad():
        for view in views:
            vt = view_tensors(view, device)
            r0 = render_ids(g0, vt, seg0, background=background)
            foot = np.isin(r0.ids, ids)
            if not foot.any():
                continue
            hole = dilate_mask(foot, px)
            r1 = render_view(g1, vt, g1.sh_degree, background=background, extra_features=id_features(g1, seg1))
            after = ids_from_render(r1.image, r1.alpha, seg1)
            rgb1, alpha1 = after.rgb.astype(np.float32), after.alpha
            # parts of other objects the removal uncovered (a neighbour's hidden base): neither a hole to
            # fill nor a source for the fill, and the shadow next to them is theirs
            depth1 = r1.depth[..., 0].cpu().numpy()
            surface = surface_ids(r0.ids, hole, depth=depth1)
            revealed = hole & ~np.isin(after.ids, surface) & ~np.isin(after.ids, ids)
            revealed = dilate_mask(revealed, 1) & hole
            other = nearer_other(r0.ids, foot, surface, revealed)
            unseen = dilate_mask(hole & (alpha1 < 0.9), 1) & dilate_mask(hole, 1) & ~other
            solid = (~np.isin(r0.ids, surface) & ~foot) | revealed
            shade = np.ones_like(rgb1)
            if attribution is not None and shadows:
                mine, theirs = attribution.removed[view.name], attribution.remaining[view.name]
                shadow = shadow_mask(rgb1, hole, solid, allowed=dilate_mask(mine, 2) & ~theirs)
                # footprint floor as dark as a shadow that no other object's shadow explains: the removed one's
                shadow |= shadow_mask(rgb1, hole, solid, dark=0.5, allowed=hole & ~dilate_mask(theirs, 3))
                shadow = dilate_mask(shadow, 2) & ~solid & ~theirs
                shade = attribution.shade(view.name, ~solid)
            else:
                shadow = shadow_mask(rgb1, hole, other) if shadows else np.zeros_like(hole)
                shadow = dilate_mask(shadow, 2) & ~other  # with its penumbra
            region = unseen | shadow | leftover_mask(r0.rgb, rgb1, foot, hole, solid)
            objects = solid & ~region
            # other objects are no source for the fill: inpaint them too, keep them as they were
            source_free = closed(region | touching(dilate_mask(objects, 2), dilate_mask(region, 3 * px)))
            target = shaded_fill(inpainter, rgb1, source_free, shade) if region.any() else rgb1
            target = np.where(region[..., None], target, rgb1).astype(np.float32)
            weight = np.where(dilate_mask(hole | shadow, 2 * ring_px), 1.0, 0.25).astype(np.float32)
            out.append(
                FillView(
                    view,
                    r0.rgb.astype(np.float32),
                    rgb1,
                    hole,
                    unseen,
                    shadow,
                    target,
                    weight,
                    depth1,
                    r0.ids,
                )
            )
    return out


def neighbours(g1: Gaussians, fills: list[FillView], stride: int, radius: float = 2.0) -> np.ndarray:
    """Surviving Gaussians [N] bool near the hole and shadow: within ``radius`` pixel footprints of the
    back-projected (after-removal depth) hole and shadow pixels of any view."""

    if not len(g1):
        return np.zeros(0, bool)
    pts, sizes = [], []
    for f in fills:
        grid = np.zeros_like(f.hole)
        grid[::stride, ::stride] = True
        pix = np.nonzero((f.hole | f.shadow) & grid & (f.depth1 > 0))
        if not len(pix[0]):
            continue
        K = np.asarray(f.view.K, np.float64)
        pts.append(backproject(f.depth1.astype(np.float64), pix, K, np.asarray(f.view.viewmat)))
        sizes.append(f.depth1[pix] / K[0, 0] * stride)
    if not pts:
        return np.zeros(len(g1), bool)
    pts, sizes = np.concatenate(pts), np.concatenate(sizes)
    d, _ = cKDTree(pts).query(g1.means.detach().numpy().astype(np.float64), k=1, workers=-1)
    return d <= radius * float(np.median(sizes))


def seeds(fills: list[FillView], ring_px: int, stride: int):
    """Seed points [M,3], colours [M,3] and sizes [M] at the unseen pixels of each view (depth from a
    plane fitted around the whole hole, ``inpainting.fill_depth``)."""

    pts, cols, sizes = [], [], []
    for f in fills:
        if not f.unseen.any():
            continue
        z = fill_depth(f.depth1, f.depth1 > 0, f.hole, ring_px)
        if z is None:
            continue
        grid = np.zeros_like(f.hole)
        grid[::stride, ::stride] = True
        pix = np.nonzero(f.unseen & f.hole & grid)
        K = np.asarray(f.view.K, np.float64)
        pts.append(backproject(z, pix, K, np.asarray(f.view.viewmat)))
        cols.append(f.target[pix])
        sizes.append(z[pix] / K[0, 0] * stride)
    if not pts:
        return np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0)
    return np.concatenate(pts), np.concatenate(cols), np.concatenate(sizes)


def fill_hole(
    g0: Gaussians,
    seg0: Segmentation,
    g1: Gaussians,
    seg1: Segmentation,
    ids: list[int],
    views: list,
    background,
    opts,
    extent,
    inpainter,
    px: int,
    progress: bool = False,
    device: torch.device | str = "cpu",
):
    """Steps 1-3 of the module docstring (renders and fits on ``device``). g1, seg1: the Gaussians after removal. Returns (Gaussians:
    g1's, refined, then the new ones; the number of new ones; nearest survivor of each new one [M];
    the views; the number of refined survivors; the consistency before fitting; the estimated light or
    None), or None when the ids show in no view."""
    from .fitting import fit_gaussians, merge_subset
    from .ops import concat

    ring = max(3, 2 * px)
    light, att = attribute(g0, seg0, g1, ids, views, background, px, device=device) if opts.shadows else (None, None)
    fills = fill_views(
        g0, seg0, g1, seg1, ids, views, background, inpainter, px, opts.shadows, attribution=att, device=device
    )
    if not fills:
        return None
    pts, cols, sizes = merge_seeds(*seeds(fills, ring, opts.stride), opts.max_seeds, opts.seed)
    new = seed_gaussians(pts, cols, sizes, g1, opts.seed_size)
    nearest = new.nearest
    surface = np.unique(np.concatenate([surface_ids(f.ids0, f.hole, depth=f.depth1) for f in fills]))
    near = neighbours(g1, fills, opts.stride) & np.isin(seg1.label(g1)[0], surface)
    g1 = relight(g1, near, fills)
    allg = concat(g1, new)
    seeded = consistency(allg, fills, background, device)
    full = {
        "means": opts.lr_means * extent,
        "quats": opts.lr_quats,
        "scales": opts.lr_scales,
        "opacities": opts.lr_opacity,
        "sh0": opts.lr_sh0,
    }
    colour = {"sh0": 4 * opts.lr_sh0, "shN": opts.lr_sh0 / 5}
    half = opts.iterations // 2
    # the new Gaussians alone, all parameters; then new and neighbouring ones, colours only
    for free, lrs, steps in (
        (np.r_[np.zeros(len(g1), bool), np.ones(len(new), bool)], full, opts.iterations - half),
        (np.r_[near, np.ones(len(new), bool)], colour, half),
    ):
        if not free.any() or steps <= 0:
            continue
        mask_t = torch.from_numpy(free)
        fitted = fit_gaussians(
            allg.select(~mask_t),
            allg.select(mask_t),
            [f.view for f in fills],
            [f.target for f in fills],
            background,
            lrs,
            steps,
            opts.seed,
            weights=[f.weight for f in fills],
            progress=progress,
            desc="fill",
            device=device,
        )
        allg = merge_subset(allg, free, fitted)
    return allg, len(new), nearest, fills, int(near.sum()), seeded, light


def inpaint_scene(run, sel, opts, progress: bool = False, device="cpu"):
    """``inpainting.inpaint`` with the scene fill (module docstring): remove ``sel`` (straddlers
    trimmed), fill, and return the edited run with "consistency" in its edit info. ``device``: where
    the renders and fits run."""
    from ..errors import InputError
    from .api import trimmed
    from .ops import remove
    from .select import selection_info

    g0, seg0 = run.gaussians, run.require_segmentation()
    g1, seg1 = remove(trimmed(run, sel), seg0, sel.mask)
    views = run.views("train")
    px = dilation_px(views[0].width, opts.dilate)
    done = fill_hole(
        g0,
        seg0,
        g1,
        seg1,
        sel.ids,
        views,
        run.backdrop,
        opts,
        float(run.scene.extent),
        make_inpainter(opts),
        px,
        progress,
        device,
    )
    if done is None:
        raise InputError(f"{run.path}: ids {sel.ids} are not visible in any training view; use remove instead")
    g, n_new, nearest, fills, n_near, seeded, light = done
    seg = seg1.append(seg1.labels[nearest]) if seg1.classifier is None else seg1
    after = consistency(g, fills, run.backdrop, device)
    info = {
        "edit": "inpaint",
        **selection_info(run, sel),
        "removed": int(sel.mask.sum()),
        "new_gaussians": n_new,
        "refined_neighbours": n_near,
        "fill": "scene",
        "inpainter": opts.inpainter,
        "dilate_px": px,
        "iterations": opts.iterations,
        "views": len(fills),
        "unseen_pixels": int(sum(f.unseen.sum() for f in fills)),
        "shadow_pixels": int(sum(f.shadow.sum() for f in fills)),
        "light": light.info() if light is not None else None,
        "consistency_seeded": {k: v for k, v in seeded.items() if k != "per_view"},
        "consistency": after,
    }
    edited = run.derive(g, seg, info)
    for f in fills[:3]:
        edited.images[f"inpaint/{f.view.name}_target.png"] = f.target
        edited.images[f"inpaint/{f.view.name}_hole.png"] = f.hole.astype(np.uint8) * 255
        edited.images[f"inpaint/{f.view.name}_unseen.png"] = f.unseen.astype(np.uint8) * 255
        edited.images[f"inpaint/{f.view.name}_shadow.png"] = f.shadow.astype(np.uint8) * 255
    return edited


def relight(g1: Gaussians, near: np.ndarray, fills: list[FillView]) -> Gaussians:
    """Brighten the shadowed neighbours before fitting: each Gaussian of ``near`` [N] bool whose mean
    projects onto shadow pixels gets its DC colour times the geometric mean, over those pixels and
    views, of target / after-removal render (per channel, clipped to [1, 4]). Returns new Gaussians."""
    from ..model.sh import rgb_to_sh, sh_to_rgb

    idx = np.flatnonzero(near)
    if not len(idx):
        return g1
    means = g1.means.detach().numpy()[idx].astype(np.float64)
    ks, logs = [], []
    for f in fills:
        if not f.shadow.any():
            continue
        V, K = np.asarray(f.view.viewmat, np.float64), np.asarray(f.view.K, np.float64)
        cam = means @ V[:3, :3].T + V[:3, 3]
        z = np.maximum(cam[:, 2], 1e-6)
        u = np.floor(K[0, 0] * cam[:, 0] / z + K[0, 2]).astype(np.int64)
        v = np.floor(K[1, 1] * cam[:, 1] / z + K[1, 2]).astype(np.int64)
        h, w = f.shadow.shape
        hit = np.flatnonzero((cam[:, 2] > 1e-6) & (u >= 0) & (u < w) & (v >= 0) & (v < h))
        hit = hit[f.shadow[v[hit], u[hit]]]
        ks.append(hit)
        logs.append(np.log(np.maximum(f.target[v[hit], u[hit]], 0.02) / np.maximum(f.rgb1[v[hit], u[hit]], 0.02)))
    if not ks or not sum(len(k) for k in ks):
        return g1
    k, lg = np.concatenate(ks), np.concatenate(logs)
    count = np.bincount(k, minlength=len(idx))
    has = np.flatnonzero(count)
    mean = np.stack([np.bincount(k, lg[:, c], minlength=len(idx)) for c in range(3)], 1)[has] / count[has, None]
    gain = torch.from_numpy(np.clip(np.exp(mean), 1.0, 4.0)).float()
    out = g1.detach()
    sel = torch.from_numpy(idx[has])
    out.sh0[sel, 0] = rgb_to_sh((sh_to_rgb(out.sh0[sel, 0]).clamp(0, 1) * gain).clamp(0, 1))
    return out
