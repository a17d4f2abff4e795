"""Independent SSIM references for the tests.

``skimage_ssim_map``: scikit-image's SSIM map with the 3DGS settings (11x11 Gaussian window,
sigma 1.5, population covariance). It pads by reflection, so it equals gsgroup's zero-padded SSIM
only on the interior (pixels >= 5 from every border).

``ssim_map_zero_pad``: the same definition in float64 NumPy with scipy.ndimage filtering and zero
padding (the convention of gsgroup.train.losses.ssim and of the 3DGS reference code), valid on the
whole image. Checked against scikit-image on the interior in tests/test_losses.py.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

SIGMA, TRUNCATE = 1.5, 3.5  # radius int(3.5 * 1.5 + 0.5) = 5: an 11-tap window, as in 3DGS
RADIUS = int(TRUNCATE * SIGMA + 0.5)


def skimage_ssim_map(img: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """SSIM map [H,W,C] of two images [H,W,C] in [0,1] from skimage.metrics.structural_similarity."""
    from skimage.metrics import structural_similarity

    _, smap = structural_similarity(
        np.asarray(img, np.float64),
        np.asarray(ref, np.float64),
        gaussian_weights=True,
        sigma=SIGMA,
        use_sample_covariance=False,
        data_range=1.0,
        channel_axis=2,
        full=True,
    )
    return smap


def ssim_map_zero_pad(img: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """SSIM map [H,W,C] of two images [H,W,C] in [0,1], Gaussian window with zero padding."""
    x, y = np.asarray(img, np.float64), np.asarray(ref, np.float64)

    def blur(a):
        return np.stack(
            [
                ndimage.gaussian_filter(a[..., c], SIGMA, truncate=TRUNCATE, mode="constant", cval=0.0)
                for c in range(a.shape[2])
            ],
            axis=2,
        )

    c1, c2 = 0.01**2, 0.03**2
    ux, uy = blur(x), blur(y)
    vx, vy, vxy = blur(x * x) - ux * ux, blur(y * y) - uy * uy, blur(x * y) - ux * uy
    return (2 * ux * uy + c1) * (2 * vxy + c2) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
