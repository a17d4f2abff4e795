"""Gaussian scene parameters and their initialisation."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np
import torch
from scipy.spatial import cKDTree

from .sh import rgb_to_sh

FIELDS = ("means", "quats", "scales", "opacities", "sh0", "shN", "ids")


@dataclass
class Gaussians:
    """Raw (unactivated) Gaussian parameters, the layout 3DGS optimises.

    means [N,3]; quats [N,4] (w,x,y,z, unnormalised); scales [N,3] (log);
    opacities [N] (logit); sh0 [N,1,3]; shN [N,K-1,3] with K = (sh_degree+1)^2;
    ids [N,D] identity encodings (D = 16 by default, D may be 0).
    """

    means: torch.Tensor
    quats: torch.Tensor
    scales: torch.Tensor
    opacities: torch.Tensor
    sh0: torch.Tensor
    shN: torch.Tensor
    ids: torch.Tensor

    def __len__(self) -> int:
        return self.means.shape[0]

    @property
    def sh_degree(self) -> int:
        """Largest SH degree the coefficients hold."""
        return int(round(math.sqrt(self.shN.shape[1] + 1))) - 1

    @property
    def id_dim(self) -> int:
        return self.ids.shape[1]

    def to_dict(self) -> dict[str, torch.Tensor]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def detach(self) -> Gaussians:
        """A copy with detached, contiguous tensors."""
        return Gaussians(**{k: v.detach().clone() for k, v in self.to_dict().items()})

    def select(self, mask: torch.Tensor) -> Gaussians:
        """Subset by a bool mask [N] or an index tensor [M]."""
        return Gaussians(**{k: v.detach()[mask] for k, v in self.to_dict().items()})

    def activated(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(means [N,3], unit quats [N,4], linear scales [N,3], opacities [N] in (0,1))."""
        quats = self.quats / self.quats.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return self.means, quats, torch.exp(self.scales), torch.sigmoid(self.opacities)

    def sh_coeffs(self) -> torch.Tensor:
        """All SH coefficients, [N,K,3]."""
        return torch.cat([self.sh0, self.shN], dim=1)


def knn_mean_sq_dist(points: np.ndarray, k: int = 3) -> np.ndarray:
    """Mean squared distance from each point to its k nearest other points. points [P,3] -> [P]."""
    if len(points) < 2:
        return np.full(len(points), 1e-2, dtype=np.float32)
    k = min(k, len(points) - 1)
    dist, _ = cKDTree(points).query(points, k=k + 1, workers=-1)
    return np.mean(dist[:, 1:] ** 2, axis=1).astype(np.float32)


def from_points(
    points: np.ndarray,
    colors: np.ndarray,
    sh_degree: int = 3,
    id_dim: int = 16,
    seed: int = 0,
    init_opacity: float = 0.1,
) -> Gaussians:
    """Initialise Gaussians from a point cloud, as 3DGS does.

    points [P,3], colors [P,3] in [0,1]. Scales are the root of the mean squared distance to the
    3 nearest neighbours (KD-tree); rotations identity; opacity ``init_opacity``.
    """
    points = np.asarray(points, dtype=np.float32)
    n = len(points)
    dist2 = np.maximum(knn_mean_sq_dist(points), 1e-7)
    gen = torch.Generator().manual_seed(seed)
    k = (sh_degree + 1) ** 2
    quats = torch.zeros(n, 4)
    quats[:, 0] = 1.0
    return Gaussians(
        means=torch.from_numpy(points).clone(),
        quats=quats,
        scales=torch.log(torch.sqrt(torch.from_numpy(dist2)))[:, None].repeat(1, 3),
        opacities=torch.full((n,), math.log(init_opacity / (1 - init_opacity))),
        sh0=rgb_to_sh(torch.from_numpy(np.asarray(colors, dtype=np.float32)))[:, None, :].clone(),
        shN=torch.zeros(n, k - 1, 3),
        ids=rgb_to_sh(torch.rand(n, id_dim, generator=gen)),
    )


def random_points_in_frustums(
    viewmats: np.ndarray,
    Ks: np.ndarray,
    sizes: list[tuple[int, int]],
    n: int,
    near: float,
    far: float,
    seed: int = 0,
    min_views: int = 2,
) -> np.ndarray:
    """Random points in the bounding box of the camera frustums, kept where >= min_views cameras see them.

    viewmats [C,4,4] world-to-camera (OpenCV), Ks [C,3,3], sizes [(w,h)]*C. Returns [n,3] float32
    (fewer only if the frustums barely overlap).
    """
    corners = []
    for vm, K, (w, h) in zip(viewmats, Ks, sizes):
        pix = np.array([[0, 0], [w, 0], [0, h], [w, h]], dtype=np.float64)
        rays = np.linalg.solve(K.astype(np.float64), np.c_[pix, np.ones(4)].T).T  # [4,3], z = 1
        cam_pts = np.concatenate([rays * near, rays * far])
        c2w = np.linalg.inv(vm.astype(np.float64))
        corners.append(cam_pts @ c2w[:3, :3].T + c2w[:3, 3])
    corners = np.concatenate(corners)
    lo, hi = corners.min(0), corners.max(0)
    rng = np.random.default_rng(seed)
    kept: list[np.ndarray] = []
    total = 0
    for _ in range(50):
        cand = rng.uniform(lo, hi, size=(max(4 * n, 1000), 3))
        seen = np.zeros(len(cand), dtype=np.int32)
        for vm, K, (w, h) in zip(viewmats, Ks, sizes):
            cam = cand @ vm[:3, :3].T.astype(np.float64) + vm[:3, 3]
            z = cam[:, 2]
            uv = cam[:, :2] / np.maximum(z[:, None], 1e-9) * [K[0, 0], K[1, 1]] + [K[0, 2], K[1, 2]]
            seen += (z > near) & (z < far) & (uv[:, 0] >= 0) & (uv[:, 0] < w) & (uv[:, 1] >= 0) & (uv[:, 1] < h)
        good = cand[seen >= min(min_views, len(viewmats))]
        kept.append(good)
        total += len(good)
        if total >= n:
            break
    return np.concatenate(kept)[:n].astype(np.float32)
