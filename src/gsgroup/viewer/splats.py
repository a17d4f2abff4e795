"""What the browser draws, and what a click hits: splat arrays and ray picking (numpy, no viser).

``activated``/``covariances`` turn raw Gaussian parameters into the arrays viser's splat renderer
takes (centres, 3x3 covariances, RGB from the DC SH term, opacities). ``ray_weights`` composites a
click ray: every Gaussian whose Mahalanobis distance d_i to the ray is below ``max_sigma``
contributes alpha_i = opacity_i * exp(-d_i^2 / 2) at its closest point along the ray; sorted front
to back, its blending weight is T_i alpha_i (T_i = prod_{j<i} (1 - alpha_j)), as in the rasteriser.
``pick`` returns the first Gaussian at which the accumulated opacity reaches ``min_alpha``, so
faint Gaussians in front do not steal the click.
"""

from __future__ import annotations

import numpy as np
import torch

from ..geometry import quat_to_rotmat
from ..model import Gaussians
from ..model.sh import sh_to_rgb


@torch.no_grad()
def activated(g: Gaussians) -> dict[str, np.ndarray]:
    """Activated parameters as numpy: means [N,3], R [N,3,3], sigma [N,3] (std devs), opacity [N],
    rgb [N,3] in [0,1] (DC term only)."""
    return {
        "means": g.means.detach().numpy().astype(np.float64),
        "R": quat_to_rotmat(g.quats.detach().numpy()),
        "sigma": np.exp(g.scales.detach().numpy().astype(np.float64)),
        "opacity": torch.sigmoid(g.opacities.detach()).numpy().astype(np.float64),
        "rgb": sh_to_rgb(g.sh0.detach()[:, 0]).clamp(0, 1).numpy().astype(np.float64),
    }


def covariances(R: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Covariances [N,3,3] = R diag(sigma^2) R^T from rotations [N,3,3] and std devs [N,3]."""
    Rs = R * sigma[:, None, :]
    return Rs @ np.swapaxes(Rs, 1, 2)


def ray_weights(
    act: dict[str, np.ndarray], origin, direction, visible: np.ndarray | None = None, max_sigma: float = 2.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The Gaussians a ray passes within ``max_sigma`` (Mahalanobis) of, front to back.

    act: ``activated(g)``; origin, direction [3] (world); visible [N] bool (hidden Gaussians are
    transparent). Returns (index [M] int, alpha [M], weight [M] = T_i alpha_i), sorted by depth,
    with alpha_i = opacity_i exp(-d_i^2/2) at the point of the ray closest to Gaussian i."""
    o = np.asarray(origin, np.float64)
    d = np.asarray(direction, np.float64)
    d = d / max(np.linalg.norm(d), 1e-12)
    means, R, sigma, opac = act["means"], act["R"], act["sigma"], act["opacity"]
    cand = np.arange(len(means)) if visible is None else np.flatnonzero(visible)
    # cheap pre-filter: Euclidean distance to the ray < max_sigma * largest std dev
    rel = means[cand] - o
    t_mu = rel @ d
    reach = max_sigma * sigma[cand].max(axis=1)
    perp = np.linalg.norm(rel - t_mu[:, None] * d, axis=1)
    cand = cand[(perp < reach) & (t_mu > -reach)]
    # exact: in each Gaussian's whitened frame, o' = S^-1 R^T (o - mu), d' = S^-1 R^T d
    Rt = np.swapaxes(R[cand], 1, 2)
    o_loc = np.einsum("nij,nj->ni", Rt, o - means[cand]) / sigma[cand]
    d_loc = np.einsum("nij,j->ni", Rt, d) / sigma[cand]
    dd = np.maximum((d_loc * d_loc).sum(1), 1e-24)
    od = (o_loc * d_loc).sum(1)
    t = -od / dd
    m2 = np.maximum((o_loc * o_loc).sum(1) - od**2 / dd, 0.0)
    ok = (m2 < max_sigma**2) & (t > 0)
    cand, t, m2 = cand[ok], t[ok], m2[ok]
    order = np.argsort(t, kind="stable")
    cand, m2 = cand[order], m2[order]
    alpha = np.clip(opac[cand] * np.exp(-0.5 * m2), 0.0, 0.999)
    trans = np.concatenate([[1.0], np.cumprod(1.0 - alpha)[:-1]])
    return cand, alpha, trans * alpha


def pick(
    act: dict[str, np.ndarray],
    origin,
    direction,
    visible: np.ndarray | None = None,
    max_sigma: float = 2.0,
    min_alpha: float = 0.5,
) -> int:
    """Index of the Gaussian a ray hits, or -1 for none: the first (front to back) at which the
    accumulated opacity 1 - prod(1 - alpha_j) reaches ``min_alpha``; if it never does, the one with
    the largest blending weight T_i alpha_i. Arguments as ``ray_weights``."""
    cand, alpha, weight = ray_weights(act, origin, direction, visible, max_sigma)
    if not len(cand):
        return -1
    acc = 1.0 - np.cumprod(1.0 - alpha)
    hit = np.flatnonzero(acc >= min_alpha)
    if len(hit):
        return int(cand[hit[0]])
    return int(cand[np.argmax(weight)])


def project(points: np.ndarray, position, wxyz, fov_y: float, width: int, height: int) -> np.ndarray:
    """Pixel coordinates [M,2] (x right, y down) of world points [M,3] seen by an OpenCV pinhole
    camera at ``position`` with camera-to-world rotation ``wxyz`` and vertical field of view fov_y (rad)."""
    R = quat_to_rotmat(wxyz)
    cam = (np.asarray(points, np.float64) - np.asarray(position, np.float64)) @ R
    f = 0.5 * height / np.tan(0.5 * fov_y)
    return np.stack([f * cam[:, 0] / cam[:, 2] + 0.5 * width, f * cam[:, 1] / cam[:, 2] + 0.5 * height], axis=1)


def pack_geometry(act: dict[str, np.ndarray]) -> np.ndarray:
    """viser's splat buffer [N,8] uint32 without the colours (column 7 zero): centres as float32
    (columns 0-2), column 3 zero (the renderer's), the covariance's upper triangle as float16
    (columns 4-6). Rounded as viser's ``add_gaussian_splats`` rounds float32 centres and the float32
    covariances of ``covariances``, so the bytes are the ones it would send."""
    n = len(act["means"])
    buf = np.zeros((n, 8), np.uint32)
    buf[:, 0:3] = np.ascontiguousarray(act["means"], np.float32).view(np.uint32)
    cov = covariances(act["R"], act["sigma"]).astype(np.float32).reshape(n, 9)[:, [0, 1, 2, 4, 5, 8]]
    buf[:, 4:7] = np.ascontiguousarray(cov, np.float16).view(np.uint32)
    return buf


def pack_colors(rgb: np.ndarray, opacity: np.ndarray) -> np.ndarray:
    """viser's RGBA word [N] uint32 from rgb [N,3] and opacity [N] in [0,1] (float32, truncated to
    uint8 as viser's ``colors_to_uint8`` does)."""
    rgba = np.empty((len(rgb), 4), np.uint8)
    rgba[:, :3] = np.clip(np.asarray(rgb, np.float32) * 255.0, 0, 255).astype(np.uint8)
    rgba[:, 3] = np.clip(np.asarray(opacity, np.float32) * 255.0, 0, 255).astype(np.uint8)
    return rgba.view(np.uint32)[:, 0]


def unpack(buffer: np.ndarray) -> dict[str, np.ndarray]:
    """The arguments of viser's ``add_gaussian_splats`` that pack (losslessly) into ``buffer`` [M,8]
    uint32: centers [M,3] float32, covariances [M,3,3] float16, rgbs [M,3] and opacities [M,1] uint8."""
    buffer = np.ascontiguousarray(buffer, np.uint32)
    triu = buffer[:, 4:7].copy().view(np.float16)
    cov = np.empty((len(buffer), 3, 3), np.float16)
    for k, (i, j) in enumerate(((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2))):
        cov[:, i, j] = cov[:, j, i] = triu[:, k]
    rgba = buffer[:, 7:8].copy().view(np.uint8)
    return {
        "centers": buffer[:, 0:3].copy().view(np.float32),
        "covariances": cov,
        "rgbs": rgba[:, :3].copy(),
        "opacities": rgba[:, 3:4].copy(),
    }
