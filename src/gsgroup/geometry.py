"""Rotations and pinhole cameras, shared by the data loaders, trainer, editor and viewer.

Conventions used throughout gsgroup:

- Quaternions are scalar first, (w, x, y, z), as in COLMAP files and the Gaussians' ``quats``.
  q and -q are the same rotation; functions that return quaternions return unit ones with w >= 0.
- Rotation matrices act on column vectors: p' = R @ p.
- Cameras use OpenCV axes (x right, y down, z forward). A ``viewmat`` is the world-to-camera
  matrix [4,4]: p_cam = R @ p_world + t with R = viewmat[:3, :3], t = viewmat[:3, 3].

The rotation functions and ``camera_center`` take numpy arrays (or anything ``np.asarray``
accepts; computed and returned as float64) or torch tensors (dtype, device and autograd kept),
with any leading batch dimensions ([..., 4], [..., 3, 3]). ``look_at`` and ``intrinsics_matrix``
build single float64 numpy matrices. The Numba kernels in ``render._kernels`` keep their own copy
of quaternion -> matrix, since they must stay self-contained.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = [
    "quat_to_rotmat",
    "rotmat_to_quat",
    "quat_multiply",
    "look_at",
    "camera_center",
    "intrinsics_matrix",
]


def _float(*arrays):
    """(array module, arrays as float arrays of one kind): torch if any input is a tensor (the
    others converted to the first tensor's dtype and device), else float64 numpy."""
    ref = next((a for a in arrays if isinstance(a, torch.Tensor)), None)
    if ref is None:
        return np, [np.asarray(a, np.float64) for a in arrays]
    if not ref.is_floating_point():
        ref = ref.double()
    return torch, [torch.as_tensor(a, dtype=ref.dtype, device=ref.device) for a in arrays]


def quat_to_rotmat(q):
    """Quaternions q [..., 4] (w, x, y, z; normalised here, need not be unit) -> rotation matrices
    [..., 3, 3]. A zero quaternion gives the identity (no NaNs)."""
    xp, (q,) = _float(q)
    q = q / xp.clip(xp.sqrt((q * q).sum(-1)), 1e-12, None)[..., None]
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    m = xp.stack(
        [
            1 - 2 * (y * y + z * z),
            2 * (x * y - w * z),
            2 * (x * z + w * y),
            2 * (x * y + w * z),
            1 - 2 * (x * x + z * z),
            2 * (y * z - w * x),
            2 * (x * z - w * y),
            2 * (y * z + w * x),
            1 - 2 * (x * x + y * y),
        ],
        -1,
    )
    return m.reshape(tuple(q.shape[:-1]) + (3, 3))


def rotmat_to_quat(R):
    """Rotation matrices R [..., 3, 3] -> unit quaternions [..., 4] (w, x, y, z) with w >= 0.

    Shepperd's method: each row of the symmetric matrix 4 q q^T is linear in R; the row with the
    largest diagonal entry (4 q_i^2 >= 1) is a well-conditioned multiple of q, and is normalised.
    For a 180-degree rotation (w = 0) the sign of (x, y, z) is whichever that row gives.
    """
    xp, (R,) = _float(R)
    r00, r01, r02 = R[..., 0, 0], R[..., 0, 1], R[..., 0, 2]
    r10, r11, r12 = R[..., 1, 0], R[..., 1, 1], R[..., 1, 2]
    r20, r21, r22 = R[..., 2, 0], R[..., 2, 1], R[..., 2, 2]
    wx, wy, wz = r21 - r12, r02 - r20, r10 - r01  # 4wx, 4wy, 4wz
    xy, xz, yz = r01 + r10, r02 + r20, r12 + r21  # 4xy, 4xz, 4yz
    ww, xx = 1 + r00 + r11 + r22, 1 + r00 - r11 - r22  # 4w^2, 4x^2
    yy, zz = 1 - r00 + r11 - r22, 1 - r00 - r11 + r22  # 4y^2, 4z^2
    rows = [[ww, wx, wy, wz], [wx, xx, xy, xz], [wy, xy, yy, yz], [wz, xz, yz, zz]]
    M = xp.stack([xp.stack(row, -1) for row in rows], -2)  # [..., 4, 4] = 4 q q^T
    best = xp.stack([ww, xx, yy, zz], -1).argmax(-1)[..., None, None]
    take = np.take_along_axis if xp is np else torch.take_along_dim
    q = take(M, best, -2)[..., 0, :]
    q = q / xp.sqrt((q * q).sum(-1))[..., None]
    return q * (1.0 - 2.0 * (q[..., :1] < 0))


def quat_multiply(a, b):
    """Hamilton product a * b of quaternions (w, x, y, z): [..., 4] x [..., 4] -> [..., 4]
    (batch dimensions broadcast, e.g. a [4] with b [N, 4]). As matrices:
    quat_to_rotmat(a * b) = quat_to_rotmat(a) @ quat_to_rotmat(b). Not normalised."""
    xp, (a, b) = _float(a, b)
    aw, ax, ay, az = a[..., 0], a[..., 1], a[..., 2], a[..., 3]
    bw, bx, by, bz = b[..., 0], b[..., 1], b[..., 2], b[..., 3]
    return xp.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        -1,
    )


def look_at(eye, target, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """World-to-camera matrix [4,4] (float64, OpenCV axes) of a camera at ``eye`` [3] looking at
    ``target`` [3], rolled so that the world direction ``up`` [3] points up in the image (the
    camera's -y axis lies in the plane of the view direction and ``up``).

    The rows of R are the camera axes in world coordinates: x = f x up (right), y = f x x (down),
    z = f (forward), f the unit view direction. If the view direction is (nearly) parallel to
    ``up``, the world axis least aligned with it is used as ``up`` instead. The camera-to-world
    rotation is R^T, its quaternion ``rotmat_to_quat(look_at(...)[:3, :3].T)``.
    """
    eye, target, up = (np.asarray(v, np.float64) for v in (eye, target, up))
    f = target - eye
    f = f / np.linalg.norm(f)
    r = np.cross(f, up)
    if np.linalg.norm(r) < 1e-9 * np.linalg.norm(up):
        r = np.cross(f, np.eye(3)[np.argmin(np.abs(f))])
    r = r / np.linalg.norm(r)
    R = np.stack([r, np.cross(f, r), f])
    view = np.eye(4)
    view[:3, :3] = R
    view[:3, 3] = -R @ eye
    return view


def camera_center(viewmat):
    """Camera centres [..., 3] = -R^T t of world-to-camera matrices [..., 4, 4] (or [..., 3, 4])."""
    xp, (viewmat,) = _float(viewmat)
    R, t = viewmat[..., :3, :3], viewmat[..., :3, 3]
    return -xp.einsum("...ji,...j->...i", R, t)


def intrinsics_matrix(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    """Pinhole camera matrix K [3,3] (float64): [[fx, 0, cx], [0, fy, cy], [0, 0, 1]], pixel
    coordinates with (0, 0) the top-left corner of the top-left pixel."""
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], np.float64)
