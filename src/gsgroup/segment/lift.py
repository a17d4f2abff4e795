"""Closed-form lifting of 2D instance masks onto Gaussians (FlashSplat-style majority vote).

FlashSplat (Shen et al., ECCV 2024) observes that a rendered mask is linear in the per-Gaussian
labels, because each Gaussian's blending weight alpha*T at a pixel does not depend on the labels.
Minimising the disagreement between rendered and given masks over all views therefore decouples
per Gaussian: Gaussian i takes the label l maximising A[i,l] = sum over views and over pixels with
mask label l of its weight alpha_i * T_i (``gsgroup.render.contributions``).

Background bias (our rule). FlashSplat normalises each Gaussian's accumulated weights and adds a
"slackness" to the background entry before the argmax. We use the L1 normalisation: with shares
p[i,l] = A[i,l] / sum_l A[i,l] (so sum_l p = 1) the label is

    argmax_l ( p[i,l] + background_bias * [l == 0] ),

i.e. a Gaussian is an object (l >= 1) only when its best object share beats the background share
by more than ``background_bias``. Positive values keep Gaussians whose votes are split nearly evenly
(boundary Gaussians, floaters) out of objects; 0 is the plain weighted majority vote; negative values
favour objects. Ties go to the lower label (background first).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from tqdm import tqdm

from gsgroup.errors import InputError
from gsgroup.render.weights import label_weights

DEFAULT_BACKGROUND_BIAS = 0.1

__all__ = ["lift_labels", "accumulate_weights", "assign_labels", "DEFAULT_BACKGROUND_BIAS"]


def _check_mask(name: str, mask, width: int, height: int) -> np.ndarray:
    a = np.asarray(mask)
    if a.shape != (height, width):
        raise InputError(
            f"mask for view '{name}' has shape {list(a.shape)}, expected [{height},{width}] "
            "(the view's training size); resize or regenerate the masks"
        )
    if a.dtype.kind not in "iu":
        if a.dtype.kind == "b" or (a.dtype.kind == "f" and np.all(np.isfinite(a)) and np.all(a == np.round(a))):
            a = a.astype(np.int64)
        else:
            raise InputError(f"mask for view '{name}' must hold integer ids, got dtype {a.dtype}")
    return a.astype(np.int64, copy=False)


@torch.no_grad()
def accumulate_weights(
    views: Sequence,
    gaussians,
    masks: Mapping[str, np.ndarray | None],
    num_labels: int | None = None,
    progress: bool = True,
    device: torch.device | str = "cpu",
) -> np.ndarray:
    """A [N, L] float64: per Gaussian and label, alpha*T summed over all pixels of all masked views
    (on ``device``: the Numba kernel on the CPU, gsplat on CUDA, ``render.weights.label_weights``).

    views: objects with name, K [3,3], viewmat [4,4], width, height (``gsgroup.data.scene.View``);
    masks: {view name: [H,W] int ids >= 0, negative = ignore pixel, or None = skip the view};
    views absent from ``masks`` are skipped. L = num_labels or the largest id + 1.
    """
    used = []
    for v in views:
        mk = masks.get(v.name)
        if mk is not None:
            used.append((v, _check_mask(v.name, mk, int(v.width), int(v.height))))
    if not used:
        raise InputError("lift_labels: no view has a mask; pass masks {view name: [H,W] ids} for at least one view")
    top = max(int(mk.max()) for _, mk in used)
    if num_labels is None:
        num_labels = max(top + 1, 1)
    elif int(num_labels) < top + 1:
        raise InputError(
            f"lift_labels: num_labels={num_labels} but the masks hold id {top}; use num_labels >= {top + 1}"
        )
    L = int(num_labels)
    means, quats, scales, opac = (t.detach().float().contiguous().to(device) for t in gaussians.activated())
    n = means.shape[0]
    acc = np.zeros((L, n), dtype=np.float64)  # label-major: per-label rows add contiguously
    it = tqdm(used, desc="lift masks", unit="view", disable=not progress)
    for v, mk in it:
        # compact the view's ids to 0..Lv-1 (Lv = ids present), so the dense per-view output is
        # [N, Lv] rather than [N, L]; negative ids (ignore pixels) share column 0, which is dropped
        shifted = np.maximum(mk, -1) + 1
        present = np.flatnonzero(np.bincount(shifted.ravel(), minlength=L + 1))
        lut = np.zeros(L + 1, dtype=np.int32)
        lut[present] = np.arange(len(present), dtype=np.int32)
        w = label_weights(
            means,
            quats,
            scales,
            opac,
            torch.as_tensor(np.asarray(v.viewmat), dtype=torch.float32, device=means.device),
            torch.as_tensor(np.asarray(v.K), dtype=torch.float32, device=means.device),
            int(v.width),
            int(v.height),
            torch.from_numpy(lut[shifted]),
            num_labels=len(present),
        ).numpy()
        wt = np.ascontiguousarray(w.T)  # [Lv, N]
        keep = present > 0
        acc[present[keep] - 1] += wt[keep]
    return np.ascontiguousarray(acc.T)


def assign_labels(
    weights: np.ndarray, background_bias: float = DEFAULT_BACKGROUND_BIAS
) -> tuple[np.ndarray, np.ndarray]:
    """Labels from accumulated weights A [N,L] (module docstring rule).

    Returns (labels [N] int64, prob [N] float32): prob = the winning label's share A[i,l*] / sum_l A[i,l]
    (unbiased); Gaussians with zero total weight get label 0 and prob 0.
    """
    A = np.asarray(weights, dtype=np.float64)
    if A.ndim != 2 or A.shape[1] < 1:
        raise InputError(f"assign_labels: weights must be [N,L] with L >= 1, got shape {list(A.shape)}")
    total = A.sum(axis=1)
    seen = total > 0
    share = np.zeros_like(A)
    np.divide(A, total[:, None], out=share, where=seen[:, None])
    score = share.copy()
    score[:, 0] += float(background_bias)
    labels = np.argmax(score, axis=1).astype(np.int64)
    labels[~seen] = 0
    prob = np.take_along_axis(share, labels[:, None], axis=1)[:, 0].astype(np.float32)
    prob[~seen] = 0.0
    return labels, prob


def lift_labels(
    views: Sequence,
    gaussians,
    masks: Mapping[str, np.ndarray | None],
    num_labels: int | None = None,
    background_bias: float = DEFAULT_BACKGROUND_BIAS,
    progress: bool = True,
    device: torch.device | str = "cpu",
) -> tuple[np.ndarray, np.ndarray]:
    """Assign each Gaussian a mask label by the weighted majority vote of all views (FlashSplat-style).

    views: list of ``View`` (name, K, viewmat, width, height); gaussians: ``Gaussians`` (raw params);
    masks: {view name: [H,W] int ids (0 = background / unassigned, < 0 = ignore) or None}.
    Returns (labels [N] int64, prob [N] float32), see ``assign_labels``. One ``contributions`` pass
    per view (on ``device``); everything else is vectorised.
    """
    A = accumulate_weights(views, gaussians, masks, num_labels=num_labels, progress=progress, device=device)
    return assign_labels(A, background_bias)
