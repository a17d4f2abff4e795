"""Compare two sets of camera poses up to a similarity (structure-from-motion fixes neither the
scale, nor the orientation, nor the origin of its world): Umeyama alignment of the camera centres,
then per-camera rotation and centre errors."""

from __future__ import annotations

import numpy as np

from gsgroup.errors import InputError
from gsgroup.geometry import camera_center


def umeyama(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares similarity with ``dst ≈ s * R @ src + t`` (Umeyama 1991, no reflection).

    ``src``, ``dst``: [N,3] corresponding points, N >= 3 and not all on a line. Returns
    (s float, R [3,3] float64 rotation, t [3] float64).
    """
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 3 or len(src) < 3:
        raise InputError(f"umeyama needs two [N,3] arrays with N >= 3, got {src.shape} and {dst.shape}")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    xs, xd = src - mu_s, dst - mu_d
    cov = xd.T @ xs / len(src)
    U, D, Vt = np.linalg.svd(cov)
    S = np.eye(3)
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:
        S[2, 2] = -1.0
    R = U @ S @ Vt
    var_s = (xs**2).sum() / len(src)
    if var_s <= 0:
        raise InputError("umeyama: the source points all coincide")
    s = float(np.trace(np.diag(D) @ S) / var_s)
    t = mu_d - s * R @ mu_s
    return s, R, t


def pose_errors(est_viewmats: np.ndarray, ref_viewmats: np.ndarray) -> dict:
    """Errors of estimated world-to-camera matrices against reference ones, after aligning the
    estimated camera centres onto the reference centres with ``umeyama``.

    ``est_viewmats``, ``ref_viewmats``: [N,4,4] (or [N,3,4]) OpenCV world-to-camera, same cameras in
    the same order. Returns {"rotation_deg": [N], "center": [N] (reference units), "extent": the
    largest distance of a reference centre from their mean, "scale", "R", "t"}.
    """
    est, ref = np.asarray(est_viewmats, np.float64), np.asarray(ref_viewmats, np.float64)
    c_est, c_ref = camera_center(est), camera_center(ref)
    s, R, t = umeyama(c_est, c_ref)
    aligned = s * c_est @ R.T + t
    # camera-to-world rotations: the estimated one, carried into the reference world by R
    rot_est = R @ np.transpose(est[:, :3, :3], (0, 2, 1))
    rot_ref = np.transpose(ref[:, :3, :3], (0, 2, 1))
    rel = np.einsum("nji,njk->nik", rot_ref, rot_est)  # R_ref^T R_est
    cos = np.clip((np.trace(rel, axis1=1, axis2=2) - 1.0) / 2.0, -1.0, 1.0)
    return {
        "rotation_deg": np.degrees(np.arccos(cos)),
        "center": np.linalg.norm(aligned - c_ref, axis=1),
        "extent": float(np.linalg.norm(c_ref - c_ref.mean(0), axis=1).max()),
        "scale": s,
        "R": R,
        "t": t,
    }
