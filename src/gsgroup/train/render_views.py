"""Several views of one size rendered together (``render.rasterize_batch``): what ``render_view`` does
per view, with one gsplat call for all of them on CUDA (``gsgroup render`` / ``eval`` on a GPU)."""

from __future__ import annotations

import torch

from ..model import Gaussians
from ..model.sh import eval_sh
from ..render.batched import rasterize_batch
from .environment import Environment, grid_directions
from .views import ViewTensors

__all__ = ["render_views", "size_chunks"]


def size_chunks(views: list, chunk: int) -> list[list[int]]:
    """Indices of ``views`` in order, cut into runs of at most ``chunk`` views of one (width, height)."""
    out: list[list[int]] = []
    for i, v in enumerate(views):
        if out and len(out[-1]) < chunk and (views[out[-1][0]].width, views[out[-1][0]].height) == (v.width, v.height):
            out[-1].append(i)
        else:
            out.append([i])
    return out


def render_views(
    gaussians: Gaussians | dict,
    vts: list[ViewTensors],
    sh_degree: int,
    background: torch.Tensor | Environment | None = None,
    extra_features: torch.Tensor | None = None,
    backend: str = "auto",
):
    """Render C views of one size as ``render_view`` renders each (SH colour per view, identity
    channels ``extra_features`` [N,E] after it over a zero background, the environment composited
    behind the colour). Returns a RasterOutput with a leading view dimension: image [C,H,W,3+E],
    alpha [C,H,W,1], depth [C,H,W,1], radii [C,N], means2d [C,N,2]."""
    env = background if isinstance(background, Environment) else None
    if env is not None:
        background = None
    g = gaussians if isinstance(gaussians, dict) else gaussians.to_dict()
    dev = vts[0].viewmat.device
    if g["means"].device != dev:
        g = {k: v.to(dev) for k, v in g.items()}
    means = g["means"]
    k = (sh_degree + 1) ** 2
    coeffs = torch.cat([g["sh0"], g["shN"][:, : k - 1]], dim=1)
    feats = []
    for vt in vts:
        dirs = means.detach() - vt.campos
        dirs = dirs / dirs.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        f = eval_sh(sh_degree, coeffs, dirs)
        feats.append(f if extra_features is None else torch.cat([f, extra_features], dim=1))
    if background is not None and extra_features is not None and background.numel() == 3:
        background = torch.cat([background, background.new_zeros(extra_features.shape[1])])
    out = rasterize_batch(
        means,
        g["quats"],
        torch.exp(g["scales"]),
        torch.sigmoid(g["opacities"]),
        torch.stack(feats),
        torch.stack([vt.viewmat for vt in vts]),
        torch.stack([vt.K for vt in vts]),
        vts[0].width,
        vts[0].height,
        backgrounds=background,
        backend=backend,
    )
    if env is None:
        return out
    images = []
    for i, vt in enumerate(vts):
        if vt.env_dirs is None:
            vt.env_dirs = grid_directions(vt.viewmat, vt.K, vt.width, vt.height)
        rgb = out.image[i, ..., :3] + (1.0 - out.alpha[i]) * env.image(vt.env_dirs, vt.width, vt.height)
        images.append(torch.cat([rgb, out.image[i, ..., 3:]], dim=-1))
    return out._replace(image=torch.stack(images))


def iter_renders(
    gaussians: Gaussians,
    views: list,
    device: torch.device | str = "cpu",
    background: torch.Tensor | Environment | None = None,
    extra_features: torch.Tensor | None = None,
    chunk: int = 8,
    batched: bool | None = None,
):
    """Yield (view, ViewTensors, image [H,W,3+E], alpha [H,W,1]) for each of ``views`` (``View``s), in
    order, rendered on ``device`` (``gaussians``, ``background`` and ``extra_features`` already there).
    On the CPU one ``render_view`` per view, as before; elsewhere (or with ``batched``) ``render_views``
    over runs of up to ``chunk`` views of one size (one gsplat call each)."""
    from .trainer import render_view
    from .views import view_tensors

    device = torch.device(device)
    sh = gaussians.sh_degree
    if not (device.type != "cpu" if batched is None else batched):
        for v in views:
            vt = view_tensors(v)
            out = render_view(gaussians, vt, sh, background=background, extra_features=extra_features)
            yield v, vt, out.image, out.alpha
        return
    for idx in size_chunks(views, chunk):
        vts = [view_tensors(views[i], device) for i in idx]
        out = render_views(gaussians, vts, sh, background=background, extra_features=extra_features)
        for j, i in enumerate(idx):
            yield views[i], vts[j], out.image[j], out.alpha[j]


@torch.no_grad()
def score_renders(
    gaussians: Gaussians, views: list, device="cpu", background=None, chunk: int = 8, batched: bool | None = None
) -> dict:
    """PSNR and SSIM of each of ``views`` (``View``s) rendered on ``device``: {view name: {"psnr", "ssim"}}.
    On the CPU exactly ``score_views``; elsewhere (or with ``batched``) the renders come in batches
    (``iter_renders``)."""
    from .losses import psnr, ssim
    from .trainer import score_views
    from .views import view_tensors

    if not (torch.device(device).type != "cpu" if batched is None else batched):
        return score_views(gaussians, [view_tensors(v) for v in views], gaussians.sh_degree, background)
    out = {}
    for v, vt, image, _ in iter_renders(gaussians, views, device, background, chunk=chunk, batched=True):
        img, gt = image.clamp(0, 1), vt.image
        out[v.name] = {"psnr": psnr(img, gt), "ssim": ssim(img, gt).item()}
    return out
