"""Differentiable tile-based Gaussian rasterizer on the CPU (gsplat "classic" semantics).

Forward and backward run as multi-threaded Numba kernels (see ``_kernels``); this module
checks inputs, builds the per-tile intersection lists and wraps everything in one
``torch.autograd.Function``. Tiles are processed in raster order (neighbouring tiles share
Gaussians, which stay in cache) and handed to the threads in small dynamic chunks; results do
not depend on the thread count or the schedule.

Semantics: EWA projection with a perspective Jacobian (x/z, y/z clamped to 1.3 x the
half field of view, as gsplat), ``eps2d`` added to the 2D covariance diagonal,
radius = ceil(3 sqrt(max eigenvalue)), culling of z < near, z > far and of Gaussians whose
3-sigma box is off-screen; 16x16 tiles (a Gaussian is evaluated on every pixel of every
tile its box touches); pixel centres at +0.5; alpha = min(0.99, o exp(-0.5 d^T Sigma^-1 d)),
skipped when alpha < 1/255; front-to-back by view depth; a pixel stops before the
Gaussian that would bring its transmittance below 1e-4.
"""

from __future__ import annotations

import contextlib
from typing import NamedTuple

import numba
import numpy as np
import torch

from ..errors import InputError
from . import _kernels as kn

TILE = kn.TILE
PAR_SORT_MIN = 50_000  # visible Gaussians from which the depth sort runs on two threads
CHUNK = 2  # tiles per dynamically scheduled chunk of the parallel tile loops


class RasterOutput(NamedTuple):
    """Rasterizer outputs.

    image [H,W,D]; alpha [H,W,1]; depth [H,W,1] (alpha-normalised expected z, 0 where alpha is 0);
    radii [N] int32 (0 = culled); means2d [N,2] pixel positions (0 for culled Gaussians); when any
    input requires grad, ``means2d.grad`` holds d loss / d means2d after ``backward()``.
    """

    image: torch.Tensor
    alpha: torch.Tensor
    depth: torch.Tensor
    radii: torch.Tensor
    means2d: torch.Tensor


# ----------------------------------------------------------------------------- input checks


def _check_tensor(name, x, shape):
    """shape: tuple of ints or None (any size, the name is used for matching)."""
    if not isinstance(x, torch.Tensor):
        raise InputError(f"rasterize: argument '{name}' must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype != torch.float32:
        raise InputError(f"rasterize: argument '{name}' must be float32, got {x.dtype}; pass {name}.float()")
    if x.device.type != "cpu":
        raise InputError(f"rasterize: argument '{name}' must be on the CPU, got {x.device}; pass {name}.cpu()")
    if x.dim() != len(shape) or any(s is not None and s != d for s, d in zip(shape, x.shape)):
        want = "[" + ",".join("?" if s is None else str(s) for s in shape) + "]"
        raise InputError(f"rasterize: argument '{name}' must have shape {want}, got {list(x.shape)}")
    if x.numel() and not kn.all_finite(x.detach().reshape(-1).numpy()):
        raise InputError(f"rasterize: argument '{name}' contains NaN or Inf values")


def _check_size(name, v):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0:
        raise InputError(f"rasterize: argument '{name}' must be a positive int, got {v!r}")
    return int(v)


def _check_float(name, v, positive=False):
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise InputError(f"rasterize: argument '{name}' must be a number, got {v!r}") from None
    if not np.isfinite(f) or f < 0 or (positive and f == 0):
        raise InputError(
            f"rasterize: argument '{name}' must be a finite {'positive' if positive else 'non-negative'} number, got {v!r}"
        )
    return f


def _check_camera(means, quats, scales, opacities, viewmat, K, width, height, near, far, eps2d):
    _check_tensor("means", means, (None, 3))
    n = means.shape[0]
    _check_tensor("quats", quats, (n, 4))
    _check_tensor("scales", scales, (n, 3))
    _check_tensor("opacities", opacities, (n,))
    _check_tensor("viewmat", viewmat, (4, 4))
    _check_tensor("K", K, (3, 3))
    width = _check_size("width", width)
    height = _check_size("height", height)
    near = _check_float("near", near, positive=True)
    far = float(far) if far == float("inf") else _check_float("far", far)
    if not far > near:
        raise InputError(f"rasterize: argument 'far' ({far}) must be greater than 'near' ({near})")
    eps2d = _check_float("eps2d", eps2d)
    if n and kn.any_zero_row(quats.detach().numpy()):
        raise InputError("rasterize: argument 'quats' contains all-zero quaternions; initialise them to (1,0,0,0)")
    Kd = K.detach()
    if not (Kd[0, 0] > 0 and Kd[1, 1] > 0):
        raise InputError("rasterize: argument 'K' must have positive focal lengths K[0,0] and K[1,1]")
    return width, height, near, far, eps2d


# ----------------------------------------------------------------------------- projection + binning


def _np32(x):
    return np.ascontiguousarray(x.detach().numpy(), dtype=np.float32)


class _Frame:
    """Projection and tile binning of one camera view (numpy arrays, shared by the kernels)."""

    __slots__ = (
        "means",
        "quats",
        "scales",
        "V",
        "intr",
        "width",
        "height",
        "eps2d",
        "gp",
        "radii",
        "ntiles",
        "goff",
        "tile_start",
        "isect_gauss",
        "isect_pos",
        "tiles_x",
    )

    def __init__(self, means, quats, scales, opacities, viewmat, K, width, height, near, far, eps2d):
        self.means = _np32(means)
        self.quats = _np32(quats)
        self.scales = _np32(scales)
        opac = _np32(opacities)
        self.V = np.ascontiguousarray(viewmat.detach().numpy(), dtype=np.float64)
        Kn = K.detach().numpy().astype(np.float64)
        self.intr = np.array([Kn[0, 0], Kn[1, 1], Kn[0, 2], Kn[1, 2]], np.float64)
        self.width, self.height, self.eps2d = width, height, eps2d
        self.gp, zs, self.radii, rect, self.ntiles = kn.project_fwd(
            self.means, self.quats, self.scales, opac, self.V, self.intr, width, height, near, far, eps2d
        )
        self.tiles_x = (width + TILE - 1) // TILE
        n_tiles = self.tiles_x * ((height + TILE - 1) // TILE)
        csum = np.cumsum(self.ntiles)
        n_isect = int(csum[-1]) if len(csum) else 0
        self.goff = csum - self.ntiles
        vis = np.flatnonzero(self.ntiles)
        if len(vis) < PAR_SORT_MIN:  # same order either way: stable by depth, ties by id
            order = vis[np.argsort(zs[vis], kind="stable")]
        else:
            order = kn.depth_order(zs, vis)
        self.tile_start, self.isect_gauss, self.isect_pos = kn.bin_gaussians(
            order, rect, self.goff, self.tiles_x, n_tiles, n_isect
        )

    def means2d(self):
        """[N,2] float32 pixel positions (0 for culled Gaussians)."""
        return np.ascontiguousarray(self.gp[:, kn.GU : kn.GV + 1], dtype=np.float32)


def _padded_features(features):
    """features [N,D] tensor -> [N, padded(D)] float32 numpy (zero columns appended)."""
    f = features.detach().numpy()
    n, d = f.shape
    out = np.zeros((n, kn.padded(d)), np.float32)
    out[:, :d] = f
    return out


@contextlib.contextmanager
def _dynamic_tiles():
    """Hand out tiles to the threads in small chunks as they become free (balance on busy
    machines and uneven scenes). Only for kernels whose parallel loops all run over tiles:
    every parallel loop in the region is chunked this way. Results do not depend on it."""
    old = numba.set_parallel_chunksize(CHUNK)
    try:
        yield
    finally:
        numba.set_parallel_chunksize(old)


class _RasterizeFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means, quats, scales, opacities, features, background, means2d, frame, n_geom):
        fr = frame
        ctx.n_geom = n_geom
        featp = _padded_features(features)
        bg = _np32(background)
        with _dynamic_tiles():
            image, alpha, depth, Tfin, dsum, last = kn.raster_fwd(
                fr.tile_start, fr.isect_gauss, fr.gp, featp, bg, fr.width, fr.height, fr.tiles_x
            )
        ctx.frame = fr
        ctx.saved = (featp, bg, Tfin, dsum, last)
        h, w = fr.height, fr.width
        return (torch.from_numpy(image), torch.from_numpy(alpha).view(h, w, 1), torch.from_numpy(depth).view(h, w, 1))

    @staticmethod
    def backward(ctx, v_image, v_alpha, v_depth):
        fr = ctx.frame
        featp, bg, Tfin, dsum, last = ctx.saved
        h, w = fr.height, fr.width
        vi = _np32(v_image)
        va = _np32(v_alpha).reshape(h, w)
        vd = _np32(v_depth).reshape(h, w)
        with _dynamic_tiles():
            partial, v_bg = kn.raster_bwd(
                fr.tile_start,
                fr.isect_gauss,
                fr.gp,
                featp,
                bg,
                w,
                h,
                fr.tiles_x,
                Tfin,
                dsum,
                last,
                vi,
                va,
                vd,
                ctx.n_geom,
            )
        need = ctx.needs_input_grad
        v_means, v_quats, v_scales, v_opac, v_feat, v_m2d = kn.project_bwd(
            fr.means,
            fr.quats,
            fr.scales,
            fr.V,
            fr.intr,
            w,
            h,
            fr.eps2d,
            fr.radii,
            fr.goff,
            fr.ntiles,
            fr.isect_pos,
            partial,
            bool(need[4]),
        )

        def out(flag, arr):
            return torch.from_numpy(arr) if flag else None

        return (
            out(need[0], v_means),
            out(need[1], v_quats),
            out(need[2], v_scales),
            out(need[3], v_opac),
            out(need[4], v_feat),
            torch.from_numpy(v_bg.astype(np.float32)) if need[5] else None,
            out(need[6], v_m2d),
            None,
            None,
        )


def rasterize(
    means,
    quats,
    scales,
    opacities,
    features,
    viewmat,
    K,
    width,
    height,
    background=None,
    near=0.01,
    far=1e10,
    eps2d=0.3,
    geometry_grad_channels=None,
    backend="auto",
) -> RasterOutput:
    """Render N Gaussians with D-channel features into one view; differentiable.

    means [N,3] world, quats [N,4] (w,x,y,z, any norm), scales [N,3] linear, opacities [N],
    features [N,D], viewmat [4,4] world-to-camera (OpenCV axes), K [3,3] pinhole,
    background [D] or None (zeros); all float32 CPU tensors.
    ``geometry_grad_channels`` k: only the image gradients of the first k feature channels reach
    means, quats, scales and opacities (and means2d); the other channels (e.g. identity encodings
    rendered beside the color) get gradients for their features only. None = all channels.
    Returns RasterOutput(image [H,W,D], alpha [H,W,1], depth [H,W,1], radii [N] int32,
    means2d [N,2]); see its docstring. Raises ValueError (InputError) naming a bad argument.
    ``backend``: "cpu" (these Numba kernels), "gsplat" (CUDA tensors, ``gsplat_backend``) or "auto"
    (gsplat for CUDA tensors, else the CPU).
    """
    if backend != "cpu" and _use_gsplat(backend, means):
        from .gsplat_backend import rasterize_gsplat

        return rasterize_gsplat(
            means, quats, scales, opacities, features, viewmat, K, width, height,
            background, near, far, eps2d, geometry_grad_channels,
        )  # fmt: skip
    width, height, near, far, eps2d = _check_camera(
        means, quats, scales, opacities, viewmat, K, width, height, near, far, eps2d
    )
    n = means.shape[0]
    _check_tensor("features", features, (n, None))
    d = features.shape[1]
    if d < 1:
        raise InputError("rasterize: argument 'features' must have at least one channel")
    if background is None:
        background = torch.zeros(d, dtype=torch.float32)
    else:
        _check_tensor("background", background, (d,))
    if geometry_grad_channels is None:
        geometry_grad_channels = d
    elif isinstance(geometry_grad_channels, bool) or not 0 <= int(geometry_grad_channels) <= d:
        raise InputError(
            f"rasterize: argument 'geometry_grad_channels' must be in [0, {d}], got {geometry_grad_channels!r}"
        )
    frame = _Frame(means, quats, scales, opacities, viewmat, K, width, height, near, far, eps2d)
    grad = torch.is_grad_enabled() and any(
        t.requires_grad for t in (means, quats, scales, opacities, features, background)
    )
    means2d = torch.from_numpy(frame.means2d())
    if grad:
        means2d.requires_grad_(True)
    image, alpha, depth = _RasterizeFn.apply(
        means, quats, scales, opacities, features, background, means2d, frame, int(geometry_grad_channels)
    )
    return RasterOutput(image, alpha, depth, torch.from_numpy(frame.radii), means2d)


def _use_gsplat(backend, means) -> bool:
    """backend "gsplat", or "auto" with a tensor off the CPU."""
    if backend == "gsplat":
        return True
    if backend != "auto":
        raise InputError(f"rasterize: argument 'backend' must be 'auto', 'cpu' or 'gsplat', got {backend!r}")
    return isinstance(means, torch.Tensor) and means.device.type == "cuda"


# ----------------------------------------------------------------------------- forward-only helpers


def _check_labels(labels, width, height, num_labels):
    if not isinstance(labels, torch.Tensor):
        raise InputError(f"contributions: argument 'labels' must be a torch.Tensor, got {type(labels).__name__}")
    if labels.dtype.is_floating_point or labels.dtype == torch.bool or labels.dtype.is_complex:
        raise InputError(f"contributions: argument 'labels' must be an integer tensor, got {labels.dtype}")
    if tuple(labels.shape) != (height, width):
        raise InputError(
            f"contributions: argument 'labels' must have shape [{height},{width}], got {list(labels.shape)}"
        )
    lab = np.ascontiguousarray(labels.detach().cpu().numpy(), dtype=np.int32)
    if lab.size and lab.min() < 0:
        raise InputError("contributions: argument 'labels' has negative values; labels must be in [0, num_labels)")
    lmax = int(lab.max()) + 1 if lab.size else 0
    if num_labels is None:
        num_labels = lmax
    elif isinstance(num_labels, bool) or not isinstance(num_labels, (int, np.integer)) or num_labels < lmax:
        raise InputError(
            f"contributions: argument 'num_labels' must be an int >= labels.max()+1 = {lmax}, got {num_labels!r}"
        )
    return lab, int(num_labels)


@torch.no_grad()
def contributions(
    means, quats, scales, opacities, viewmat, K, width, height, labels, num_labels=None, near=0.01, far=1e10, eps2d=0.3
) -> torch.Tensor:
    """Per-Gaussian, per-label sum of blending weights.

    labels [H,W] int in [0, L). Returns float32 [N, L]: entry (i, l) is the sum, over pixels
    with label l, of Gaussian i's blending weight alpha_i * T_i. L = num_labels or labels.max()+1.
    """
    width, height, near, far, eps2d = _check_camera(
        means, quats, scales, opacities, viewmat, K, width, height, near, far, eps2d
    )
    lab, L = _check_labels(labels, width, height, num_labels)
    fr = _Frame(means, quats, scales, opacities, viewmat, K, width, height, near, far, eps2d)
    with _dynamic_tiles():
        parts = kn.contrib_tiles(fr.tile_start, fr.isect_gauss, fr.gp, width, height, fr.tiles_x, lab)
    out = kn.contrib_reduce(*parts, L, fr.goff, fr.ntiles, fr.isect_pos)
    return torch.from_numpy(out)


@torch.no_grad()
def dominant_gaussian(
    means, quats, scales, opacities, viewmat, K, width, height, near=0.01, far=1e10, eps2d=0.3
) -> torch.Tensor:
    """Per pixel, the index of the Gaussian with the largest blending weight alpha*T.

    Returns int64 [H,W]; -1 where no Gaussian contributes. Ties go to the front-most one.
    """
    width, height, near, far, eps2d = _check_camera(
        means, quats, scales, opacities, viewmat, K, width, height, near, far, eps2d
    )
    fr = _Frame(means, quats, scales, opacities, viewmat, K, width, height, near, far, eps2d)
    with _dynamic_tiles():
        out = kn.dominant_fwd(fr.tile_start, fr.isect_gauss, fr.gp, width, height, fr.tiles_x)
    return torch.from_numpy(out)
