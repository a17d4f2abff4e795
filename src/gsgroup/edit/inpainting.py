"""Remove objects and fill the hole they leave: 2D inpainting of the training views, new Gaussians
seeded in the hole, and a short fine-tune of only those new Gaussians.

1. Remove the selection.
2. Per training view, the hole = pixels whose pre-edit rendered id is a removed id, dilated.
3. 2D-inpaint the pre-edit render in the hole (OpenCV Telea by default, or LaMa, see ``lama``).
4. Seed Gaussians: the surface around the hole (rendered depth of the surviving Gaussians on a ring
   just outside it) is fitted with a plane in inverse depth (1/z = a u + b v + c, exact for a planar
   background), hole pixels are back-projected at that depth, colored from the inpainted image,
   merged over views on a voxel grid. Their identities copy the nearest surviving Gaussian's.
5. Fine-tune only the new Gaussians (Adam on means, rotations, scales, opacities, DC color): L1 to
   the inpainted image inside the hole and to the pre-edit render outside, over all training views.
   Multi-view consistency: PSNR of the final render against each view's inpainted image inside the
   hole, its mean and spread over views (2D inpaintings disagree across views; the fused 3D fill
   cannot match all of them, so a large spread flags inconsistent inpaintings).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from scipy.spatial import cKDTree

from ..errors import InputError
from ..model import Gaussians
from ..model.sh import rgb_to_sh
from ..options import check_bounds, option
from ..run import Run
from ..segment.idmaps import render_ids
from ..segment.segmentation import Segmentation
from ..train.environment import Environment
from ..train.trainer import render_view, view_tensors
from .fitting import fit_gaussians
from .ops import concat, remove
from .select import Selection, selection_info


@dataclass
class InpaintOptions:
    """inpainter 'opencv' | 'lama'; dilate: hole dilation in px (None = 2% of the width, >= 2);
    radius: Telea radius; stride: seed every stride-th hole pixel; max_seeds caps the new Gaussians."""

    inpainter: str = option(
        "opencv",
        "2D inpainter: OpenCV Telea, OpenCV Navier-Stokes or a LaMa checkpoint",
        choices=["opencv", "ns", "lama"],
    )
    scene_fill: bool = option(
        True,
        "fill only what no view saw, remove the shadow, refine the neighbours (edit/fill.py)",
        flag="--no-scene-fill",
    )
    shadows: bool = option(True, "with the scene fill, also repaint the object's shadow", flag="--no-shadows")
    lama_checkpoint: str | None = option(None, "big-lama generator weights (see gsgroup.edit.lama)")
    iterations: int = option(300, "fine-tuning steps of the new Gaussians", min=0)
    dilate: int | None = option(None, "hole dilation in pixels (default 2%% of the width)", min=0)
    radius: int = 5
    stride: int = 2
    max_seeds: int = 30000
    seed_size: float = 0.35  # initial sigma of a new Gaussian, in seed spacings
    seed: int = option(0, "random seed")
    lr_means: float = 2e-4  # times the scene extent
    lr_sh0: float = 0.0025
    lr_opacity: float = 0.05
    lr_scales: float = 0.005
    lr_quats: float = 0.001

    def __post_init__(self):
        check_bounds(self)


def dilation_px(width: int, dilate: int | None) -> int:
    return max(2, round(0.02 * width)) if dilate is None else max(0, int(dilate))


def dilate_mask(mask: np.ndarray, px: int) -> np.ndarray:
    """Binary dilation of mask [H,W] bool by a disc of radius px."""
    if px <= 0:
        return mask.copy()
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * px + 1, 2 * px + 1))
    return cv2.dilate(mask.astype(np.uint8), k) > 0


def hole_mask(id_map: np.ndarray, ids: list[int], px: int) -> np.ndarray:
    """Pixels [H,W] bool whose id is one of ``ids``, dilated by px."""
    return dilate_mask(np.isin(id_map, ids), px)


def opencv_inpaint(image: np.ndarray, hole: np.ndarray, radius: int = 5, method: str = "telea") -> np.ndarray:
    """Telea (or "ns": Navier-Stokes) inpainting. image [H,W,3] float in [0,1], hole [H,W] bool -> [H,W,3] float32."""
    u8 = (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)
    flag = cv2.INPAINT_NS if method == "ns" else cv2.INPAINT_TELEA
    out = cv2.inpaint(u8, hole.astype(np.uint8) * 255, radius, flag)
    res = out.astype(np.float32) / 255.0
    return np.where(hole[..., None], res, image).astype(np.float32)


def make_inpainter(opts: InpaintOptions):
    """A function (image [H,W,3] float, hole [H,W] bool) -> inpainted [H,W,3] float32."""
    if opts.inpainter == "opencv":
        return lambda img, hole: opencv_inpaint(img, hole, opts.radius)
    if opts.inpainter == "ns":
        return lambda img, hole: opencv_inpaint(img, hole, opts.radius, "ns")
    if opts.inpainter == "lama":
        from .lama import LamaInpainter

        if not opts.lama_checkpoint:
            raise InputError("inpainter lama needs a lama_checkpoint (big-lama generator weights)", "inpainter")
        return LamaInpainter.from_checkpoint(opts.lama_checkpoint)
    raise InputError(f"inpainter {opts.inpainter}: use opencv, ns or lama", "inpainter")


def fill_depth(depth: np.ndarray, valid: np.ndarray, hole: np.ndarray, ring_px: int) -> np.ndarray | None:
    """Depth [H,W] inside ``hole`` from a plane fitted (in inverse depth, over pixel coordinates) to
    valid depths on a ring of ``ring_px`` around it. Returns z [H,W] (0 outside the hole), or None."""
    ring = dilate_mask(hole, ring_px) & ~hole & valid & (depth > 0)
    if ring.sum() < 8:
        return None
    coef, keep = plane_fit(depth, ring, robust=False)
    hv, hu = np.nonzero(hole)
    inv_h = np.stack([hu + 0.5, hv + 0.5, np.ones_like(hu, dtype=np.float64)], 1) @ coef
    zr = depth[ring][keep]
    lo, hi = float(zr.min()) * 0.5, float(zr.max()) * 2.0
    z = np.where(inv_h > 1.0 / hi, 1.0 / np.maximum(inv_h, 1e-12), hi)
    out = np.zeros(depth.shape, np.float64)
    out[hv, hu] = np.clip(z, lo, hi)
    return out


def plane_fit(depth: np.ndarray, ring: np.ndarray, robust: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Plane 1/z = a u + b v + c [3] fitted to depth [H,W] at the pixels of ``ring`` [H,W] bool (at least
    8): (``robust``) the plane through 3 ring pixels (64 seeded draws) that holds the most pixels within
    3% of the median inverse depth, then least squares trimming points off it (other objects on the ring)
    three times; returns it and the inliers [ring.sum()] bool, in the order of np.nonzero(ring)."""
    v, u = np.nonzero(ring)
    A = np.stack([u + 0.5, v + 0.5, np.ones_like(u, dtype=np.float64)], 1)
    inv = 1.0 / depth[ring].astype(np.float64)
    tol = 0.03 * float(np.median(inv))
    rng = np.random.default_rng(0)
    keep, best = np.ones(len(inv), bool), -1
    for tri in rng.integers(0, len(inv), (64 if robust else 0, 3)):
        if abs(np.linalg.det(A[tri])) < 1e-9:
            continue
        near = np.abs(A @ np.linalg.solve(A[tri], inv[tri]) - inv) <= tol
        if near.sum() > best and near.sum() >= 8:
            keep, best = near, int(near.sum())
    for _ in range(3):
        coef, *_ = np.linalg.lstsq(A[keep], inv[keep], rcond=None)
        res = np.abs(A @ coef - inv)
        thr = max(2.5 * np.median(res[keep]), 1e-6)
        new = res <= thr
        if new.sum() < 8 or (new == keep).all():
            break
        keep = new
    return coef, keep


def backproject(z: np.ndarray, pixels: tuple[np.ndarray, np.ndarray], K: np.ndarray, viewmat: np.ndarray) -> np.ndarray:
    """World points [M,3] of pixels (rows v, cols u) at camera depths z [H,W]."""
    v, u = pixels
    zz = z[v, u]
    x = (u + 0.5 - K[0, 2]) / K[0, 0] * zz
    y = (v + 0.5 - K[1, 2]) / K[1, 1] * zz
    cam = np.stack([x, y, zz], 1)
    R, t = viewmat[:3, :3].astype(np.float64), viewmat[:3, 3].astype(np.float64)
    return (cam - t) @ R


@dataclass
class ViewHole:
    """Per training view: the pre-edit render rgb0 [H,W,3], hole [H,W] bool, target [H,W,3]
    (inpainted inside the hole, rgb0 outside)."""

    view: object
    rgb0: np.ndarray
    hole: np.ndarray
    target: np.ndarray


def prepare_views(
    g0: Gaussians,
    seg0: Segmentation,
    g1: Gaussians,
    ids: list[int],
    views: list,
    background: torch.Tensor,
    inpainter,
    px: int,
    ring_px: int,
    stride: int,
    device: torch.device | str = "cpu",
):
    """Holes, inpainted targets and seed points/colors for each view (rendered on ``device``, the 2D
    work on the CPU). Returns (holes, points, colors, sizes)."""
    from ..on_device import backdrop_on, gaussians_on, segmentation_on

    holes, pts, cols, sizes = [], [], [], []
    g0, g1, seg0 = gaussians_on(g0, device), gaussians_on(g1, device), segmentation_on(seg0, device)
    background = backdrop_on(background, device)
    with torch.no_grad():
        for view in views:
            vt = view_tensors(view, device)
            r0 = render_ids(g0, vt, seg0, background=background)
            hole = hole_mask(r0.ids, ids, px)
            if not hole.any():
                continue
            target = inpainter(r0.rgb, hole)
            target = np.where(hole[..., None], target, r0.rgb).astype(np.float32)
            holes.append(ViewHole(view, r0.rgb.astype(np.float32), hole, target))
            r1 = render_view(g1, vt, g1.sh_degree, background=background)
            depth = r1.depth[..., 0].cpu().numpy()
            alpha = r1.alpha[..., 0].cpu().numpy()
            z = fill_depth(depth, alpha > 0.5, hole, ring_px)
            if z is None:
                continue
            grid = np.zeros_like(hole)
            grid[::stride, ::stride] = True
            pix = np.nonzero(hole & grid)
            K = np.asarray(view.K, np.float64)
            pts.append(backproject(z, pix, K, np.asarray(view.viewmat)))
            cols.append(target[pix])
            sizes.append(z[pix] / K[0, 0] * stride)
    if not pts:
        return holes, np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0)
    return holes, np.concatenate(pts), np.concatenate(cols), np.concatenate(sizes)


def merge_seeds(points: np.ndarray, colors: np.ndarray, sizes: np.ndarray, max_seeds: int, seed: int):
    """Voxel-grid merge of seed points [M,3] (voxel = median footprint): mean point, color, size."""
    if not len(points):
        return points, colors, sizes
    voxel = float(np.median(sizes))
    key = np.floor(points / voxel).astype(np.int64)
    _, inv, counts = np.unique(key, axis=0, return_inverse=True, return_counts=True)
    inv = inv.ravel()
    n = len(counts)

    def mean(a):
        out = np.zeros((n,) + a.shape[1:])
        np.add.at(out, inv, a)
        return out / counts.reshape((-1,) + (1,) * (a.ndim - 1))

    p, c, s = mean(points), mean(colors), mean(sizes)
    if n > max_seeds:
        keep = np.sort(np.random.default_rng(seed).choice(n, max_seeds, replace=False))
        p, c, s = p[keep], c[keep], s[keep]
    return p, c, s


def seed_gaussians(
    points: np.ndarray, colors: np.ndarray, sizes: np.ndarray, g1: Gaussians, size: float = 0.35
) -> Gaussians:
    """New Gaussians at points [M,3] with colors [M,3], isotropic size [M]; identities of the nearest
    surviving Gaussian of g1; view-dependent SH zero."""
    m = len(points)
    quats = torch.zeros(m, 4)
    quats[:, 0] = 1
    if len(g1) and m:
        _, nn = cKDTree(g1.means.numpy()).query(points, k=1, workers=-1)
        ids = g1.ids[torch.from_numpy(nn)].clone()
    else:
        nn = np.zeros(m, np.int64)
        ids = torch.zeros(m, g1.id_dim)
    g = Gaussians(
        means=torch.from_numpy(points).float(),
        quats=quats,
        scales=torch.log(torch.from_numpy(size * sizes).float().clamp_min(1e-6))[:, None].repeat(1, 3),
        opacities=torch.full((m,), math.log(0.8 / 0.2)),
        sh0=rgb_to_sh(torch.from_numpy(np.clip(colors, 0, 1)).float())[:, None, :],
        shN=torch.zeros(m, g1.shN.shape[1], 3),
        ids=ids,
    )
    g.nearest = nn  # index of the nearest surviving Gaussian (labels for lifted runs)
    return g


def finetune(
    fixed: Gaussians,
    new: Gaussians,
    holes: list[ViewHole],
    background: torch.Tensor | Environment,
    opts: InpaintOptions,
    extent: float,
    progress: bool = False,
    device: torch.device | str = "cpu",
) -> Gaussians:
    """Adam over the new Gaussians only (means, quats, log-scales, opacity logits, DC color): L1 of the
    full render to each view's target (inpainted in the hole, pre-edit render outside), on ``device``;
    see ``fitting.fit_gaussians``."""
    lrs = {
        "means": opts.lr_means * extent,
        "quats": opts.lr_quats,
        "scales": opts.lr_scales,
        "opacities": opts.lr_opacity,
        "sh0": opts.lr_sh0,
    }
    views, targets = [h.view for h in holes], [h.target for h in holes]
    return fit_gaussians(
        fixed, new, views, targets, background, lrs, opts.iterations, opts.seed, progress=progress, device=device
    )


@torch.no_grad()
def render_all(g: Gaussians, views: list, background, device: torch.device | str = "cpu") -> list[np.ndarray]:
    """RGB renders [H,W,3] in [0,1] (numpy, CPU) of Gaussians ``g`` in each view, rendered on ``device``."""
    from ..on_device import backdrop_on, gaussians_on

    g, background = gaussians_on(g, device), backdrop_on(background, device)
    return [
        render_view(g, view_tensors(v, device), g.sh_degree, background=background).image.clamp(0, 1).cpu().numpy()
        for v in views
    ]


def psnr_in(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """PSNR (dB, peak 1) between a and b [H,W,3] over mask [H,W]."""
    if not mask.any():
        return float("nan")
    mse = float(np.mean((a[mask].astype(np.float64) - b[mask].astype(np.float64)) ** 2))
    return 10 * math.log10(1.0 / max(mse, 1e-12))


def consistency(g: Gaussians, holes: list[ViewHole], background: torch.Tensor, device="cpu") -> dict:
    """PSNR of the render (on ``device``) against each view's inpainted image inside its hole: per view,
    mean, std."""
    per = {}
    for h, img in zip(holes, render_all(g, [h.view for h in holes], background, device)):
        per[h.view.name] = round(psnr_in(img, h.target, h.hole), 3)
    vals = np.array(list(per.values()), np.float64)
    return {
        "psnr_mean": float(vals.mean()) if len(vals) else float("nan"),
        "psnr_std": float(vals.std()) if len(vals) else float("nan"),
        "views": len(vals),
        "per_view": per,
    }


def inpaint(run: Run, sel: Selection, opts: InpaintOptions | None = None, progress: bool = False, device="cpu") -> Run:
    """Remove ``sel`` from ``run`` and fill the hole. Returns the edited run; its edit info holds
    "consistency" (see module docstring) and its pictures the inpainted targets and holes of 3 views.
    ``device``: where the renders and the fit run (the 2D inpainting stays on the CPU)."""
    opts = opts or InpaintOptions()
    if opts.scene_fill:
        from .fill import inpaint_scene

        return inpaint_scene(run, sel, opts, progress, device=device)
    g0, seg0 = run.gaussians, run.require_segmentation()
    g1, seg1 = remove(g0, seg0, sel.mask)
    views = run.views("train")
    width = views[0].width
    px = dilation_px(width, opts.dilate)
    inpainter = make_inpainter(opts)
    holes, pts, cols, sizes = prepare_views(
        g0, seg0, g1, sel.ids, views, run.backdrop, inpainter, px, max(3, 2 * px), opts.stride, device
    )
    if not holes:
        raise InputError(f"{run.path}: ids {sel.ids} are not visible in any training view; use remove instead")
    pts, cols, sizes = merge_seeds(pts, cols, sizes, opts.max_seeds, opts.seed)
    new = seed_gaussians(pts, cols, sizes, g1, opts.seed_size)
    nearest = new.nearest
    seeded = concat(g1, new)
    before = consistency(seeded, holes, run.backdrop, device)
    extent = float(run.scene.extent)
    if len(new) and opts.iterations > 0:
        new = finetune(g1, new, holes, run.backdrop, opts, extent, progress, device)
    g = concat(g1, new)
    seg = seg1.append(seg1.labels[nearest]) if seg1.classifier is None else seg1
    after = consistency(g, holes, run.backdrop, device)
    info = {
        "edit": "inpaint",
        **selection_info(run, sel),
        "removed": int(sel.mask.sum()),
        "new_gaussians": len(new),
        "inpainter": opts.inpainter,
        "dilate_px": px,
        "iterations": opts.iterations,
        "views": len(holes),
        "consistency_seeded": {k: v for k, v in before.items() if k != "per_view"},
        "consistency": after,
    }
    edited = run.derive(g, seg, info)
    for h in holes[:3]:
        edited.images[f"inpaint/{h.view.name}_target.png"] = h.target
        edited.images[f"inpaint/{h.view.name}_hole.png"] = h.hole.astype(np.uint8) * 255
    return edited
