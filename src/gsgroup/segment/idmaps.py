"""Per-pixel object ids from a segmented run: id maps, colored overlays and a PCA view of E_id."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..model import Gaussians
from ..train.environment import Environment
from ..train.trainer import ViewTensors, render_view
from .segmentation import Segmentation

ALPHA_MIN = 0.5  # pixels with less accumulated opacity get id 0


@dataclass
class IdRender:
    """One view rendered with identities: rgb [H,W,3], ids [H,W] int64 (0 where alpha < 0.5),
    alpha [H,W], features [H,W,E] (rendered identity encodings, or the one-hot labels)."""

    rgb: np.ndarray
    ids: np.ndarray
    alpha: np.ndarray
    features: np.ndarray


@torch.no_grad()
def render_ids(
    gaussians: Gaussians, vt: ViewTensors, seg: Segmentation, background: torch.Tensor | Environment | None = None
) -> IdRender:
    """Render color and object ids of one view in one rasterizer pass.

    With a classifier, the identity encodings are rendered and classified per pixel (argmax).
    Without, the lifted per-Gaussian labels are rendered as one-hot channels.
    """
    out = render_view(
        gaussians, vt, gaussians.sh_degree, background=background, extra_features=id_features(gaussians, seg)
    )
    return ids_from_render(out.image, out.alpha, seg)


def id_features(gaussians: Gaussians, seg: Segmentation) -> torch.Tensor:
    """What is rendered beside the colour: the identity encodings [N,E] with a classifier, else the
    one-hot lifted labels [N,K] (on the Gaussians' device)."""
    if seg.classifier is not None:
        return gaussians.ids
    labels = torch.from_numpy(seg.labels.astype(np.int64)).to(gaussians.means.device)
    return F.one_hot(labels, seg.num_classes).float()


@torch.no_grad()
def ids_from_render(image: torch.Tensor, alpha: torch.Tensor, seg: Segmentation) -> IdRender:
    """IdRender of a render of colour and ``id_features``: image [H,W,3+E], alpha [H,W,1] on any device
    (the classifier on the same one); the arrays come back on the CPU."""
    feats = image[..., 3:]
    scores = seg.classifier(feats) if seg.classifier is not None else feats
    ids = scores.argmax(dim=-1)
    alpha = alpha[..., 0]
    ids[alpha < ALPHA_MIN] = 0
    return IdRender(
        image[..., :3].clamp(0, 1).cpu().numpy(), ids.cpu().numpy(), alpha.cpu().numpy(), feats.cpu().numpy()
    )


def palette(n: int, seed: int = 7) -> np.ndarray:
    """Distinct colors for ids 0..n-1 as uint8 [n,3]; id 0 is black."""
    rng = np.random.default_rng(seed)
    hues = (np.arange(n) * 0.618033988749895 + rng.uniform()) % 1.0
    sat = 0.65 + 0.35 * rng.uniform(size=n)
    val = 0.75 + 0.25 * rng.uniform(size=n)
    h6 = hues * 6
    c = val * sat
    x = c * (1 - np.abs(h6 % 2 - 1))
    zeros = np.zeros(n)
    sector = np.floor(h6).astype(int) % 6
    table = [(c, x, zeros), (x, c, zeros), (zeros, c, x), (zeros, x, c), (x, zeros, c), (c, zeros, x)]
    rgb = np.zeros((n, 3))
    for s, (r, g, b) in enumerate(table):
        sel = sector == s
        rgb[sel] = np.stack([r[sel], g[sel], b[sel]], 1)
    rgb += (val - c)[:, None]
    out = (rgb * 255).round().astype(np.uint8)
    out[0] = 0
    return out


def overlay(rgb: np.ndarray, ids: np.ndarray, strength: float = 0.55) -> np.ndarray:
    """Ids colored over the image: rgb [H,W,3] float, ids [H,W] int -> [H,W,3] float; id 0 untouched."""
    colors = palette(int(ids.max()) + 1 if ids.size else 1)[ids].astype(np.float32) / 255.0
    w = np.where(ids[..., None] > 0, strength, 0.0)
    return (1 - w) * rgb + w * colors


def shared_pca(features: list[np.ndarray], samples: int = 20000, seed: int = 0):
    """One PCA to RGB for all views, so colors agree. features: list of [H,W,E] -> function [H,W,E] -> [H,W,3]."""
    rng = np.random.default_rng(seed)
    pool = np.concatenate([f.reshape(-1, f.shape[-1]) for f in features])
    pool = pool[rng.choice(len(pool), size=min(samples, len(pool)), replace=False)]
    mean = pool.mean(0)
    _, _, vt = np.linalg.svd(pool - mean, full_matrices=False)
    basis = vt[:3].T if vt.shape[0] >= 3 else np.pad(vt.T, ((0, 0), (0, 3 - vt.shape[0])))
    proj = (pool - mean) @ basis
    lo, hi = np.percentile(proj, 1, axis=0), np.percentile(proj, 99, axis=0)

    def apply(f: np.ndarray) -> np.ndarray:
        p = (f.reshape(-1, f.shape[-1]) - mean) @ basis
        return np.clip((p - lo) / np.maximum(hi - lo, 1e-8), 0, 1).reshape(*f.shape[:2], 3)

    return apply
