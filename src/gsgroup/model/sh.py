"""Real spherical harmonics up to degree 3, in the 3DGS convention."""

from __future__ import annotations

import torch

C0 = 0.28209479177387814
C1 = 0.4886025119029199
C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
C3 = (
    -0.5900435899266435,
    2.890611442640554,
    -0.4570457994644658,
    0.3731763325901154,
    -0.4570457994644658,
    1.445305721320277,
    -0.5900435899266435,
)


def rgb_to_sh(rgb: torch.Tensor) -> torch.Tensor:
    """Color in [0,1] -> degree-0 SH coefficient. Any shape."""
    return (rgb - 0.5) / C0


def sh_to_rgb(sh0: torch.Tensor) -> torch.Tensor:
    """Degree-0 SH coefficient -> color (inverse of rgb_to_sh). Any shape."""
    return sh0 * C0 + 0.5


def sh_basis(degree: int, dirs: torch.Tensor) -> torch.Tensor:
    """Real SH basis of degrees 0..degree (<= 3) in the 3DGS sign convention.

    dirs [N,3] unit directions (any float dtype) -> [N,(degree+1)^2], so that
    eval_sh(degree, coeffs, dirs) == clamp(einsum("nk,nkc->nc", basis, coeffs) + 0.5, 0)."""
    x, y, z = dirs[:, 0], dirs[:, 1], dirs[:, 2]
    cols = [torch.full_like(x, C0)]
    if degree > 0:
        cols += [-C1 * y, C1 * z, -C1 * x]
    if degree > 1:
        xx, yy, zz = x * x, y * y, z * z
        cols += [C2[0] * x * y, C2[1] * y * z, C2[2] * (2 * zz - xx - yy), C2[3] * x * z, C2[4] * (xx - yy)]
    if degree > 2:
        cols += [
            C3[0] * y * (3 * xx - yy),
            C3[1] * x * y * z,
            C3[2] * y * (4 * zz - xx - yy),
            C3[3] * z * (2 * zz - 3 * xx - 3 * yy),
            C3[4] * x * (4 * zz - xx - yy),
            C3[5] * z * (xx - yy),
            C3[6] * x * (xx - 3 * yy),
        ]
    return torch.stack(cols, dim=0).T  # stacking rows is much faster than columns


def eval_sh(degree: int, coeffs: torch.Tensor, dirs: torch.Tensor) -> torch.Tensor:
    """Evaluate SH color.

    coeffs: [N,K,3] with K >= (degree+1)^2; dirs: [N,3] unit view directions (camera -> Gaussian).
    Returns [N,3] color, clamped at 0 after the +0.5 offset of 3DGS.
    """
    result = C0 * coeffs[:, 0]
    if degree > 0:
        x, y, z = dirs[:, 0:1], dirs[:, 1:2], dirs[:, 2:3]
        result = result - C1 * y * coeffs[:, 1] + C1 * z * coeffs[:, 2] - C1 * x * coeffs[:, 3]
        if degree > 1:
            xx, yy, zz = x * x, y * y, z * z
            xy, yz, xz = x * y, y * z, x * z
            result = (
                result
                + C2[0] * xy * coeffs[:, 4]
                + C2[1] * yz * coeffs[:, 5]
                + C2[2] * (2.0 * zz - xx - yy) * coeffs[:, 6]
                + C2[3] * xz * coeffs[:, 7]
                + C2[4] * (xx - yy) * coeffs[:, 8]
            )
            if degree > 2:
                result = (
                    result
                    + C3[0] * y * (3 * xx - yy) * coeffs[:, 9]
                    + C3[1] * xy * z * coeffs[:, 10]
                    + C3[2] * y * (4 * zz - xx - yy) * coeffs[:, 11]
                    + C3[3] * z * (2 * zz - 3 * xx - 3 * yy) * coeffs[:, 12]
                    + C3[4] * x * (4 * zz - xx - yy) * coeffs[:, 13]
                    + C3[5] * z * (xx - yy) * coeffs[:, 14]
                    + C3[6] * x * (xx - 3 * yy) * coeffs[:, 15]
                )
    return torch.clamp_min(result + 0.5, 0.0)
