"""Identity-encoding losses of Gaussian Grouping: a linear classifier, the 2D mask loss and the
3D neighbourhood-consistency loss.

Class ids. The classifier has K = (largest mask id over the training masks) + 1 outputs
(``num_classes_for``). Id 0 ("background / unassigned": pixels no mask covers) is an ordinary
class, trained with cross-entropy like any other, as in the original Gaussian Grouping. Pixels a
caller wants to exclude (an explicit ignore value in a mask file) are set to ``ignore_index``
(default -1) and contribute nothing to ``loss_2d``; views without masks are skipped by the caller.

3D loss. The original ``loss_cls_3d`` (lkeab/gaussian-grouping, utils/loss_utils.py) finds the k
nearest neighbours of m sampled Gaussians with a dense ``torch.cdist`` [m, N] + ``topk``; here the
neighbours come from a scipy ``cKDTree`` (``NeighbourIndex``) so memory stays O(N + m k), never N x m.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from scipy.spatial import cKDTree

from gsgroup.errors import InputError
from gsgroup.train import _fused

KL_EPS = 1e-10  # the original's epsilon inside both logs

__all__ = [
    "IdentityClassifier",
    "num_classes_for",
    "loss_2d",
    "classifier_loss_2d",
    "classifier_logits",
    "logits_loss_2d",
    "loss_3d",
    "NeighbourIndex",
    "knn_indices",
]


class IdentityClassifier(nn.Module):
    """Linear 1x1 layer from identity encodings (id_dim channels) to K class logits, with bias.

    Same function and default initialisation as the original ``nn.Conv2d(id_dim, K, kernel_size=1)``,
    but channels-last: ``forward(x [..., id_dim]) -> logits [..., K]``; works on a rendered identity
    map E_id [H,W,id_dim] -> [H,W,K] and on per-Gaussian encodings [N,id_dim] -> [N,K].
    """

    def __init__(self, num_classes: int, id_dim: int = 16):
        super().__init__()
        if isinstance(num_classes, bool) or int(num_classes) < 1 or int(num_classes) != num_classes:
            raise InputError(f"IdentityClassifier: num_classes must be a positive int, got {num_classes!r}")
        if isinstance(id_dim, bool) or int(id_dim) < 1 or int(id_dim) != id_dim:
            raise InputError(f"IdentityClassifier: id_dim must be a positive int, got {id_dim!r}")
        self.num_classes = int(num_classes)
        self.id_dim = int(id_dim)
        self.linear = nn.Linear(self.id_dim, self.num_classes, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.id_dim:
            raise InputError(f"IdentityClassifier: input has {x.shape[-1]} channels, expected id_dim={self.id_dim}")
        return self.linear(x)


def num_classes_for(masks: Iterable[np.ndarray | None]) -> int:
    """K = largest id over the given masks + 1 (at least 1). ``None`` entries (views without masks)
    and negative (ignore) values are skipped."""
    top = -1
    for m in masks:
        if m is None:
            continue
        a = np.asarray(m)
        if a.size:
            top = max(top, int(a.max()))
    return max(top + 1, 1)


def loss_2d(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = -1) -> torch.Tensor:
    """Cross-entropy of per-pixel logits against mask ids, divided by ln K (original: ``/ log(num_classes)``).

    logits [H,W,K] float; target [H,W] int64 in [0, K) or ``ignore_index``. The mean runs over the
    non-ignored pixels (with none left the result is a zero that still has a graph). For K = 1 the
    cross-entropy is identically 0 and is returned undivided. Returns a scalar tensor.
    """
    if logits.dim() != 3:
        raise InputError(f"loss_2d: logits must be [H,W,K], got shape {list(logits.shape)}")
    h, w, k = logits.shape
    if tuple(target.shape) != (h, w):
        raise InputError(f"loss_2d: target must be [{h},{w}] to match logits, got {list(target.shape)}")
    if target.dtype.is_floating_point or target.dtype == torch.bool:
        raise InputError(f"loss_2d: target must be an integer tensor, got {target.dtype}")
    target = target.long()
    valid = target != ignore_index
    if bool(valid.any()):
        bad = valid & ((target < 0) | (target >= k))
        if bool(bad.any()):
            raise InputError(
                f"loss_2d: target has ids outside [0, {k}) (max {int(target[valid].max())}); "
                "build the classifier with num_classes = largest mask id + 1"
            )
    else:
        return logits.sum() * 0.0
    ce = F.cross_entropy(logits.reshape(h * w, k), target.reshape(h * w), ignore_index=ignore_index)
    return ce / math.log(k) if k > 1 else ce


class _FusedLoss2d(torch.autograd.Function):
    """Cross-entropy of per-pixel logits, loss and gradients from one Numba kernel: through the 1x1
    classifier (weight [K,E]), or with weight None of features that already are logits less the bias."""

    @staticmethod
    def forward(ctx, features, weight, bias, target, ignore_index):
        f, b, t = features.detach().contiguous().numpy(), bias.detach().contiguous().numpy(), target.numpy()
        if weight is None:
            loss, count, bad, gf, gb = _fused.logits_cross_entropy(f, t, b, ignore_index)
            grads = [gf, None, gb]
        else:
            w = weight.detach().contiguous().numpy()
            loss, count, bad, gf, gw, gb = _fused.classifier_cross_entropy(f, t, w, b, ignore_index)
            grads = [gf, gw, gb]
        if bad:
            top = int(target[(target.long() != ignore_index)].max())
            raise InputError(
                f"loss_2d: target has ids outside [0, {b.shape[0]}) (max {top}); "
                "build the classifier with num_classes = largest mask id + 1"
            )
        ctx.grads = [None if a is None else torch.from_numpy(a) for a in grads]
        return features.new_tensor(loss)

    @staticmethod
    def backward(ctx, grad_loss):
        grads = ctx.grads
        del ctx.grads
        if not bool(grad_loss == 1):
            grads = [None if g is None else g * grad_loss for g in grads]
        need = ctx.needs_input_grad
        return tuple(g if n else None for g, n in zip(grads, need)) + (None, None)


def _fusable(features: torch.Tensor, bias: torch.Tensor, target: torch.Tensor) -> bool:
    """Whether the Numba kernels take these: float32 CPU tensors, [H,W,C] features, [H,W] integer ids
    (uint8/uint16 masks are read as they are, without widening)."""
    ok = features.device.type == "cpu" and features.dtype == bias.dtype == torch.float32
    ok &= target.dtype in (torch.int64, torch.int32, torch.int16, torch.uint8, torch.uint16)
    return ok and features.dim() == 3 and tuple(target.shape) == features.shape[:2]


def _divided(ce: torch.Tensor, k: int) -> torch.Tensor:
    return ce / math.log(k) if k > 1 else ce


def classifier_loss_2d(
    features: torch.Tensor, classifier: IdentityClassifier, target: torch.Tensor, ignore_index: int = -1
) -> torch.Tensor:
    """``loss_2d(classifier(features), target)`` fused: logits, softmax, cross-entropy and the
    gradients for features [H,W,id_dim], the classifier's weight and bias in one Numba kernel
    (``_fused.classifier_cross_entropy``), for float32 CPU tensors; otherwise (other devices or
    dtypes) the plain PyTorch path. target [H,W] integer ids. Returns a scalar tensor."""
    lin = classifier.linear
    if not (_fusable(features, lin.bias, target) and lin.weight.dtype == torch.float32):
        return loss_2d(classifier(features), target.long(), ignore_index)
    if features.shape[-1] != classifier.id_dim:
        raise InputError(
            f"IdentityClassifier: input has {features.shape[-1]} channels, expected id_dim={classifier.id_dim}"
        )
    ce = _FusedLoss2d.apply(features, lin.weight, lin.bias, target.contiguous(), int(ignore_index))
    return _divided(ce, classifier.num_classes)


def logits_loss_2d(
    logits: torch.Tensor, classifier: IdentityClassifier, target: torch.Tensor, ignore_index: int = -1
) -> torch.Tensor:
    """``loss_2d(logits + classifier bias, target)`` for logits [H,W,K] rendered from per-Gaussian
    ``classifier_logits`` (the classifier's weight applied before blending; blending is linear, so
    these equal the classifier applied to the rendered encodings). Fused in one Numba kernel for
    float32 CPU tensors, the plain PyTorch path otherwise. Returns a scalar tensor."""
    bias = classifier.linear.bias
    if not _fusable(logits, bias, target):
        return loss_2d(logits + bias, target.long(), ignore_index)
    if logits.shape[-1] != classifier.num_classes:
        raise InputError(f"logits_loss_2d: {logits.shape[-1]} channels, expected {classifier.num_classes}")
    ce = _FusedLoss2d.apply(logits, None, bias, target.contiguous(), int(ignore_index))
    return _divided(ce, classifier.num_classes)


def classifier_logits(ids: torch.Tensor, classifier: IdentityClassifier) -> torch.Tensor:
    """Per-Gaussian logits less the bias, ids [N,id_dim] -> [N,K]: rendered in place of the
    encodings when K < id_dim (fewer channels to blend; ``logits_loss_2d`` adds the bias)."""
    return ids @ classifier.linear.weight.T


# ----------------------------------------------------------------------------- neighbours


def _as_np64(points: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(points, torch.Tensor):
        points = points.detach().cpu().numpy()
    return np.ascontiguousarray(points, dtype=np.float64)


class NeighbourIndex:
    """A cKDTree over Gaussian means, kept across steps and rebuilt only when N changes or on request.

    Typical use: one instance per training run; call ``invalidate()`` after each densification /
    pruning step (or every few hundred steps, since means drift). Between rebuilds the tree holds the
    positions it was built from; queries use the current positions of the sampled points.
    """

    def __init__(self):
        self.tree: cKDTree | None = None
        self.n = -1
        self.builds = 0

    def invalidate(self) -> None:
        """Force a rebuild on the next ``get``."""
        self.tree = None

    def get(self, means: torch.Tensor | np.ndarray, rebuild: bool = False) -> cKDTree:
        """The tree for means [N,3], rebuilt when N changed, when invalidated, or when ``rebuild``."""
        n = int(means.shape[0])
        if rebuild or self.tree is None or n != self.n:
            self.tree = cKDTree(_as_np64(means))
            self.n = n
            self.builds += 1
        return self.tree

    def query(self, means: torch.Tensor | np.ndarray, points: torch.Tensor | np.ndarray, k: int) -> np.ndarray:
        """Indices [M,k] int64 of the k nearest of means [N,3] to points [M,3] (nearest first)."""
        return knn_indices(self.get(means), points, k)


def knn_indices(tree: cKDTree, points: torch.Tensor | np.ndarray, k: int) -> np.ndarray:
    """k nearest neighbours in ``tree`` of points [M,3] -> int64 [M,k], nearest first (a point of the
    tree finds itself first)."""
    _, idx = tree.query(_as_np64(points), k=k, workers=-1)
    idx = np.asarray(idx, dtype=np.int64)
    return idx.reshape(len(idx), k)


def loss_3d(
    ids: torch.Tensor,
    means: torch.Tensor,
    classifier: nn.Module,
    k: int = 5,
    m: int = 1000,
    generator: torch.Generator | None = None,
    tree: NeighbourIndex | cKDTree | None = None,
    sample: torch.Tensor | None = None,
) -> torch.Tensor:
    """3D neighbourhood-consistency loss of Gaussian Grouping (``loss_cls_3d``), without the dense cdist.

    ids [N,id_dim] identity encodings (gradients flow to them and to ``classifier``); means [N,3]
    (treated as constants). With p = softmax(classifier(ids)) [N,C], m Gaussians s are drawn without
    replacement (``torch.randperm(N, generator)[:m]``, or the given ``sample`` [m] indices) and their
    k nearest Gaussians n_1..n_k in 3D found (the sample itself included, as the original's topk over
    all points includes distance 0). The loss is

        (1/C) * mean_{s, j} sum_c p_s[c] * (log(p_s[c] + 1e-10) - log(p_{n_j}[c] + 1e-10)),

    i.e. KL(p_sample || p_neighbour) averaged over the m*k pairs and divided by the class count C,
    exactly the original's ``kl.sum(-1).mean() / num_classes``. The original then multiplies by
    ``lambda_val`` (reg3d_lambda_val = 2 in its configs); this function does NOT: the caller weights it.
    Deviation: the original first subsamples to ``max_points`` (300k) Gaussians; here neighbours come
    from all N (a KD-tree makes that cheap). The classifier is evaluated only on the sampled Gaussians
    and their neighbours, so memory is O(m k), never N x m.

    ``tree``: a ``NeighbourIndex`` (rebuilt when N changes) or a prebuilt ``cKDTree`` over ``means``;
    None builds a fresh tree. Returns a scalar tensor.
    """
    n = int(ids.shape[0])
    if ids.dim() != 2 or means.dim() != 2 or means.shape != (n, 3):
        raise InputError(f"loss_3d: ids must be [N,D] and means [N,3], got {list(ids.shape)} and {list(means.shape)}")
    if n == 0:
        return ids.sum() * 0.0
    k = int(min(k, n))
    if sample is None:
        sample = torch.randperm(n, generator=generator)[: min(int(m), n)]
    sample = torch.as_tensor(sample, dtype=torch.long)
    if means.device.type != "cpu":  # on a GPU: exact kNN by chunked cdist + topk, no KD-tree
        sample = sample.to(means.device)
        nbr = knn_torch(means.detach(), means.detach()[sample], k)
        return _kl_to_neighbours(ids, classifier, sample, nbr, k)
    if isinstance(tree, NeighbourIndex):
        kd = tree.get(means)
    elif tree is None:
        kd = cKDTree(_as_np64(means))
    else:
        kd = tree
    if kd.n != n:
        raise InputError(f"loss_3d: the KD-tree holds {kd.n} points but there are {n} Gaussians; rebuild it")
    nbr = torch.from_numpy(knn_indices(kd, means.detach()[sample], k))  # [m,k], constants
    return _kl_to_neighbours(ids, classifier, sample, nbr, k)


def knn_torch(means: torch.Tensor, points: torch.Tensor, k: int, chunk: int = 1 << 25) -> torch.Tensor:
    """Indices [M,k] int64 of the k nearest of means [N,3] to points [M,3], nearest first, on their
    device: ``cdist`` + ``topk`` over blocks of means (at most ``chunk`` distances at a time, never
    an N x N matrix), merged block by block."""
    n, m = means.shape[0], points.shape[0]
    step = max(k, chunk // max(1, m))
    best_d = best_i = None
    for lo in range(0, n, step):
        d = torch.cdist(points, means[lo : lo + step])
        kk = min(k, d.shape[1])
        dv, di = torch.topk(d, kk, dim=1, largest=False)
        di = di + lo
        if best_d is not None:
            dv, di = torch.cat([best_d, dv], 1), torch.cat([best_i, di], 1)
            order = torch.argsort(dv, dim=1, stable=True)[:, :k]
            dv, di = torch.gather(dv, 1, order), torch.gather(di, 1, order)
        best_d, best_i = dv, di
    return best_i if best_i is not None else torch.zeros(m, 0, dtype=torch.long, device=means.device)


def _kl_to_neighbours(ids, classifier, sample, nbr, k):
    """loss_3d's KL between each sample's class probabilities and its k neighbours'."""
    sample, nbr = sample.to(ids.device), nbr.to(ids.device)
    # classifier only on the rows needed: the samples and their neighbours
    rows, inv = torch.unique(torch.cat([sample, nbr.reshape(-1)]), return_inverse=True)
    probs = torch.softmax(classifier(ids[rows]), dim=-1)  # [R,C]
    ms = sample.shape[0]
    p_s = probs[inv[:ms]].unsqueeze(1)  # [m,1,C]
    p_n = probs[inv[ms:]].reshape(ms, k, -1)  # [m,k,C]
    kl = p_s * (torch.log(p_s + KL_EPS) - torch.log(p_n + KL_EPS))
    return kl.sum(dim=-1).mean() / probs.shape[-1]
