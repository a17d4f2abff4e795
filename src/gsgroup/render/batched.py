"""Several cameras at once: ``rasterize_batch``.

On the gsplat backend (CUDA tensors) one ``gsplat.rasterization`` call renders all C cameras
(``viewmats [C,4,4]``, ``Ks [C,3,3]``, per-camera colours ``[C,N,D]``), which shares the launch and
projection overhead; on the CPU it loops the Numba kernel camera by camera (the same result as C
``rasterize`` calls, bit for bit). Outputs carry a leading camera dimension.
"""

from __future__ import annotations

import torch

from ..errors import InputError
from .rasterize import RasterOutput, _use_gsplat, rasterize

__all__ = ["rasterize_batch"]


def _per_camera(x, c: int, name: str, rank: int):
    """``x`` [C,...] as given, or a shared [...] tensor repeated (as a view) for C cameras."""
    if x is None:
        return None
    if x.dim() == rank + 1:
        if x.shape[0] != c:
            raise InputError(f"rasterize_batch: argument '{name}' has {x.shape[0]} cameras, viewmats {c}")
        return x
    return x.expand(c, *x.shape)


def rasterize_batch(
    means,
    quats,
    scales,
    opacities,
    features,
    viewmats,
    Ks,
    width,
    height,
    backgrounds=None,
    near=0.01,
    far=1e10,
    eps2d=0.3,
    backend="auto",
) -> RasterOutput:
    """Render N Gaussians into C cameras of one size; differentiable in the inputs.

    means [N,3], quats [N,4], scales [N,3], opacities [N] as ``rasterize``; features [N,D] (shared) or
    [C,N,D] (per camera, e.g. view-dependent SH colours); viewmats [C,4,4]; Ks [C,3,3] or [3,3];
    backgrounds [C,D], [D] or None (zeros). Returns RasterOutput(image [C,H,W,D], alpha [C,H,W,1],
    depth [C,H,W,1], radii [C,N] int32, means2d [C,N,2]); ``means2d.grad`` is not filled.
    ``backend``: "cpu" (a loop over the Numba kernel), "gsplat" (one call for all cameras) or "auto".
    """
    if not isinstance(viewmats, torch.Tensor) or viewmats.dim() != 3 or tuple(viewmats.shape[1:]) != (4, 4):
        raise InputError(f"rasterize_batch: argument 'viewmats' must be a [C,4,4] tensor, got {_shape(viewmats)}")
    c = viewmats.shape[0]
    if c == 0:
        raise InputError("rasterize_batch: argument 'viewmats' holds no camera")
    if not isinstance(features, torch.Tensor) or features.dim() not in (2, 3):
        raise InputError(f"rasterize_batch: argument 'features' must be [N,D] or [C,N,D], got {_shape(features)}")
    feats = _per_camera(features, c, "features", 2)
    Ks = _per_camera(Ks, c, "Ks", 2)
    bgs = _per_camera(backgrounds, c, "backgrounds", 1)
    if backend != "cpu" and _use_gsplat(backend, means):
        return _gsplat_batch(means, quats, scales, opacities, feats, viewmats, Ks, width, height, bgs, near, far, eps2d)
    outs = [
        rasterize(
            means,
            quats,
            scales,
            opacities,
            feats[i],
            viewmats[i],
            Ks[i],
            width,
            height,
            None if bgs is None else bgs[i],
            near,
            far,
            eps2d,
            backend="cpu",
        )  # fmt: skip
        for i in range(c)
    ]
    return RasterOutput(*(torch.stack(parts) for parts in zip(*outs)))


def _shape(x) -> str:
    return str(list(x.shape)) if isinstance(x, torch.Tensor) else type(x).__name__


def _gsplat_batch(means, quats, scales, opacities, feats, viewmats, Ks, width, height, bgs, near, far, eps2d):
    """One gsplat.rasterization call for all cameras (classic, unpacked, RGB+ED as ``rasterize_gsplat``)."""
    from . import gsplat_backend as gb

    rasterization = gb._import_gsplat()
    device = means.device if isinstance(means, torch.Tensor) else None
    gb._require_cuda(device, means)
    gb._check("means", means, (None, 3), device)
    n, c = means.shape[0], viewmats.shape[0]
    d = feats.shape[-1]
    for name, x, shape in (
        ("quats", quats, (n, 4)),
        ("scales", scales, (n, 3)),
        ("opacities", opacities, (n,)),
        ("features", feats, (c, n, None)),
        ("viewmats", viewmats, (c, 4, 4)),
        ("Ks", Ks, (c, 3, 3)),
    ):
        gb._check(name, x, shape, device)
    if d < 1:
        raise InputError("rasterize_batch: argument 'features' must have at least one channel")
    if bgs is None:
        bgs = torch.zeros(c, d, dtype=torch.float32, device=device)
    gb._check("backgrounds", bgs, (c, d), device)
    args = gb.gsplat_arguments(means, quats, scales, opacities, viewmats[0], Ks[0], width, height, near, far, eps2d)
    args.update(viewmats=viewmats, Ks=Ks)
    colors, alpha, meta = rasterization(colors=feats, backgrounds=bgs, render_mode="RGB+ED", **args)
    radii = meta["radii"]
    if radii.dim() == 3:  # gsplat >= 1.5 gives per-axis radii
        radii = radii.max(dim=-1).values
    return RasterOutput(colors[..., :d], alpha, colors[..., d:], radii.to(torch.int32), meta["means2d"].detach())
