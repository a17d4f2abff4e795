"""Rotations for Gaussians: Euler angles, quaternion products and real-SH coefficient rotation.

SH rotation (degrees 1-3) is done per band by least squares on sampled directions: for a rotation
R, the rotated colour function is f'(d) = f(R^T d); with Y_l(d) [M, 2l+1] the band-l basis (the
exact 3DGS sign convention of ``model.sh.eval_sh``), the band's coefficient map is
D_l = lstsq(Y_l(d), Y_l(R^T d)), exact because each band is closed under rotation.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from ..model.sh import C0, C1, C2, C3

BANDS = ((1, 4), (4, 9), (9, 16))  # coefficient index ranges of degrees 1, 2, 3 (index 0 = DC)


def euler_deg_to_matrix(rx: float, ry: float, rz: float) -> np.ndarray:
    """Rotation [3,3] (float64) rotating points about the world x, then y, then z axis (degrees),
    i.e. R = Rz @ Ry @ Rx."""
    return Rotation.from_euler("xyz", [rx, ry, rz], degrees=True).as_matrix()


def matrix_to_quat(R: np.ndarray) -> np.ndarray:
    """Rotation matrix [3,3] -> unit quaternion [4] (w, x, y, z)."""
    x, y, z, w = Rotation.from_matrix(np.asarray(R, np.float64)).as_quat()
    return np.array([w, x, y, z])


def quat_multiply(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hamilton product a*b of wxyz quaternions; a [4] or [N,4], b [N,4] -> [N,4]."""
    a = a.expand_as(b)
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack([
        aw * bw - ax * bx - ay * by - az * bz,
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
    ], dim=-1)


def sh_basis(dirs: np.ndarray) -> np.ndarray:
    """Real SH basis of degrees 0-3 in the 3DGS convention: dirs [M,3] unit -> [M,16] (float64).

    eval_sh(3, coeffs, d) == clamp(basis(d) @ coeffs + 0.5, 0) for every coefficient vector."""
    d = np.asarray(dirs, np.float64)
    x, y, z = d[:, 0], d[:, 1], d[:, 2]
    xx, yy, zz = x * x, y * y, z * z
    return np.stack([
        np.full_like(x, C0),
        -C1 * y, C1 * z, -C1 * x,
        C2[0] * x * y, C2[1] * y * z, C2[2] * (2 * zz - xx - yy), C2[3] * x * z, C2[4] * (xx - yy),
        C3[0] * y * (3 * xx - yy), C3[1] * x * y * z, C3[2] * y * (4 * zz - xx - yy),
        C3[3] * z * (2 * zz - 3 * xx - 3 * yy), C3[4] * x * (4 * zz - xx - yy), C3[5] * z * (xx - yy),
        C3[6] * x * (xx - 3 * yy),
    ], axis=1)


def sh_rotation_matrices(R: np.ndarray, samples: int = 256, seed: int = 0) -> list[np.ndarray]:
    """Per-band coefficient maps [D_1 (3x3), D_2 (5x5), D_3 (7x7)] (float64) for rotation R [3,3]."""
    rng = np.random.default_rng(seed)
    d = rng.normal(size=(samples, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    R = np.asarray(R, np.float64)
    y_new, y_old = sh_basis(d), sh_basis(d @ R)  # rows of d @ R are R^T d
    return [np.linalg.lstsq(y_new[:, a:b], y_old[:, a:b], rcond=None)[0] for a, b in BANDS]


def rotate_sh(shN: torch.Tensor, R: np.ndarray) -> torch.Tensor:
    """Rotate view-dependent SH coefficients shN [N,K-1,3] (K = 4, 9 or 16) by R [3,3].

    Afterwards eval_sh(new, d) == eval_sh(old, R^T d) for every unit direction d."""
    out = shN.clone()
    for (a, b), D in zip(BANDS, sh_rotation_matrices(R)):
        if shN.shape[1] < b - 1:
            break
        Dt = torch.from_numpy(D).to(shN.dtype)
        out[:, a - 1:b - 1] = torch.einsum("ij,njc->nic", Dt, shN[:, a - 1:b - 1])
    return out
