"""Rotations for Gaussians: Euler angles and real-SH coefficient rotation (quaternions: ``gsgroup.geometry``).

SH rotation (degrees 1-3) is done per band by least squares on sampled directions: for a rotation
R, the rotated color function is f'(d) = f(R^T d); with Y_l(d) [M, 2l+1] the band-l basis (the
exact 3DGS sign convention of ``model.sh.eval_sh``), the band's coefficient map is
D_l = lstsq(Y_l(d), Y_l(R^T d)), exact because each band is closed under rotation.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from ..model.sh import sh_basis

BANDS = ((1, 4), (4, 9), (9, 16))  # coefficient index ranges of degrees 1, 2, 3 (index 0 = DC)


def euler_deg_to_matrix(rx: float, ry: float, rz: float) -> np.ndarray:
    """Rotation [3,3] (float64) rotating points about the world x, then y, then z axis (degrees),
    i.e. R = Rz @ Ry @ Rx."""
    return Rotation.from_euler("xyz", [rx, ry, rz], degrees=True).as_matrix()


def sh_rotation_matrices(R: np.ndarray, samples: int = 256, seed: int = 0) -> list[np.ndarray]:
    """Per-band coefficient maps [D_1 (3x3), D_2 (5x5), D_3 (7x7)] (float64) for rotation R [3,3]."""
    rng = np.random.default_rng(seed)
    d = rng.normal(size=(samples, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    R = np.asarray(R, np.float64)
    y_new = sh_basis(3, torch.from_numpy(d)).numpy()
    y_old = sh_basis(3, torch.from_numpy(d @ R)).numpy()  # rows of d @ R are R^T d
    return [np.linalg.lstsq(y_new[:, a:b], y_old[:, a:b], rcond=None)[0] for a, b in BANDS]


def rotate_sh(shN: torch.Tensor, R: np.ndarray) -> torch.Tensor:
    """Rotate view-dependent SH coefficients shN [N,K-1,3] (K = 4, 9 or 16) by R [3,3].

    Afterwards eval_sh(new, d) == eval_sh(old, R^T d) for every unit direction d."""
    out = shN.clone()
    for (a, b), D in zip(BANDS, sh_rotation_matrices(R)):
        if shN.shape[1] < b - 1:
            break
        Dt = torch.from_numpy(D).to(shN.dtype)
        out[:, a - 1 : b - 1] = torch.einsum("ij,njc->nic", Dt, shN[:, a - 1 : b - 1])
    return out
