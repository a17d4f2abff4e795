"""Per-Gaussian, per-label blending weights on any device.

``label_weights`` is ``contributions`` (sum over the pixels of each label of a Gaussian's alpha*T)
for tensors on the CPU (the Numba kernel, unchanged) and, for CUDA tensors, the same quantity from
gsplat: a rendered image is linear in the features, image[p] = sum_i w_i(p) f_i, so with features
F [N,L] the gradient of sum_p image[p, label(p)] with respect to F[i,l] is the sum of w_i(p) over the
pixels p with label l (the FlashSplat observation). Labels are rendered in chunks of ``LABEL_CHUNK``
channels. gsplat's screen extent of a Gaussian differs from ours in the faint tail (see
``gsplat_backend``), so the two agree to about 1e-3 of a Gaussian's weight, not bit for bit.
"""

from __future__ import annotations

import numpy as np
import torch

from .rasterize import _use_gsplat, contributions, rasterize

LABEL_CHUNK = 32  # label channels per rasterizer pass on the GPU

__all__ = ["label_weights", "LABEL_CHUNK"]


def label_weights(
    means, quats, scales, opacities, viewmat, K, width, height, labels, num_labels=None, backend="auto"
) -> torch.Tensor:
    """float32 [N, L] CPU tensor: entry (i, l) is the sum over pixels with label l of Gaussian i's alpha*T.

    means [N,3], quats [N,4], scales [N,3] linear, opacities [N], viewmat [4,4], K [3,3] float32 on
    one device; labels [H,W] integer in [0, L) (any device); L = num_labels or labels.max()+1.
    ``backend``: as ``rasterize`` (auto: gsplat for CUDA tensors, the Numba ``contributions`` otherwise).
    """
    if backend == "cpu" or not _use_gsplat(backend, means):
        return contributions(means, quats, scales, opacities, viewmat, K, width, height, labels.cpu(), num_labels)
    lab = labels.to(means.device).long().reshape(-1)
    top = int(lab.max()) + 1 if lab.numel() else 0
    L = top if num_labels is None else int(num_labels)
    if L < top or (lab.numel() and int(lab.min()) < 0):
        raise ValueError(f"label_weights: labels must lie in [0, {L}), got [{int(lab.min())}, {top - 1}]")
    n = means.shape[0]
    out = np.zeros((n, L), np.float32)
    pixels = torch.arange(lab.numel(), device=means.device)
    geometry = [t.detach() for t in (means, quats, scales, opacities)]
    for lo in range(0, L, LABEL_CHUNK):
        c = min(LABEL_CHUNK, L - lo)
        inside = (lab >= lo) & (lab < lo + c)
        if not bool(inside.any()):
            continue
        features = torch.zeros(n, c, device=means.device, requires_grad=True)
        with torch.enable_grad():
            image = rasterize(*geometry, features, viewmat, K, width, height, backend=backend).image
            picked = image.reshape(-1, c)[pixels[inside], lab[inside] - lo]
            (grad,) = torch.autograd.grad(picked.sum(), features)
        out[:, lo : lo + c] = grad.cpu().numpy()
    return torch.from_numpy(out)
