"""The CUDA backend of ``rasterize``: gsplat (``pip install 'gsgroup[cuda]'``), same semantics as the CPU kernels.

``rasterize(..., backend="gsplat")`` (or ``"auto"`` with CUDA tensors) lands here. gsplat's
``rasterization`` runs in classic mode with N-D features (``sh_degree=None``, colours evaluated by
the caller), unpacked, with the same camera conventions as the Numba kernels: quaternions (w,x,y,z)
of any norm, linear scales, opacities in [0,1], a world-to-camera ``viewmat`` in OpenCV axes, a
pinhole ``K`` with pixel centres at +0.5, ``eps2d`` on the 2D covariance diagonal, culling outside
(near, far), 16x16 tiles, alpha = min(0.99, o exp(-q/2)) skipped below 1/255, front-to-back by depth.
``gsplat_arguments`` builds exactly what gsplat receives; tests/test_gsplat_adapter.py feeds it to
gsplat's pure-PyTorch reference of the projection and tile binning on the CPU and compares with
our kernels.

Known difference: the screen-space extent. Our kernels give each Gaussian one radius
ceil(3 sqrt(largest eigenvalue of the 2D covariance)); gsplat gives per-axis radii
ceil(e sqrt(cov_xx)), ceil(e sqrt(cov_yy)) with e = min(3.33, sqrt(2 ln(255 o))) (every pixel with
alpha >= 1/255 lies inside). The two can include different tiles for the faint tail of a Gaussian
(alpha between 1/255 and about 1/90), so images agree to about 1e-3, not bit for bit.
``RasterOutput.radii`` here is the larger of gsplat's two radii.

``geometry_grad_channels`` k: the first k channels (and the depth) are rendered with the geometry
attached, the others in a second pass over detached geometry (the same blending weights, so the
same image) whose gradients reach only their features.
"""

from __future__ import annotations

import torch

from ..errors import InputError

TILE = 16
EXTRA_HINT = "pip install 'gsgroup[cuda]'"


def gsplat_available() -> bool:
    """True when the gsplat package imports (its CUDA code compiles on first use)."""
    try:
        import gsplat  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_device(name: str | torch.device | None) -> torch.device:
    """``"cpu"`` | ``"cuda"`` | ``"cuda:N"`` | ``"auto"`` (None) -> torch.device.

    auto: CUDA when torch sees a GPU and gsplat is installed, else the CPU. An explicit ``cuda``
    without a GPU or without gsplat raises InputError naming the fix.
    """
    name = "auto" if name is None else str(name)
    if name == "auto":
        return torch.device("cuda") if torch.cuda.is_available() and gsplat_available() else torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise InputError(
                f"--device {name}: torch {torch.__version__} sees no CUDA GPU; install a CUDA build of torch on a "
                "machine with an NVIDIA GPU, or use --device cpu",
            )
        if not gsplat_available():
            raise InputError(f"--device {name}: the CUDA rasterizer gsplat is not installed; {EXTRA_HINT}")
        return torch.device(name)
    raise InputError(f"--device {name!r}: use cpu, cuda, cuda:N or auto")


def _check(name, x, shape, device):
    if not isinstance(x, torch.Tensor):
        raise InputError(f"rasterize: argument '{name}' must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype != torch.float32:
        raise InputError(f"rasterize: argument '{name}' must be float32, got {x.dtype}; pass {name}.float()")
    if x.device != device:
        raise InputError(f"rasterize: argument '{name}' is on {x.device}, 'means' on {device}; put all on one device")
    if x.dim() != len(shape) or any(s is not None and s != d for s, d in zip(shape, x.shape)):
        want = "[" + ",".join("?" if s is None else str(s) for s in shape) + "]"
        raise InputError(f"rasterize: argument '{name}' must have shape {want}, got {list(x.shape)}")


def gsplat_arguments(
    means, quats, scales, opacities, viewmat, K, width, height, near=0.01, far=1e10, eps2d=0.3
) -> dict:
    """The keyword arguments (all but ``colors``/``backgrounds``/``render_mode``) that the adapter
    passes to ``gsplat.rasterization`` for one view: means [N,3], quats [N,4], scales [N,3],
    opacities [N], viewmats [1,4,4], Ks [1,3,3], sizes, planes, eps2d and the classic, unpacked mode."""
    return dict(
        means=means,
        quats=quats,
        scales=scales,
        opacities=opacities,
        viewmats=viewmat[None],
        Ks=K[None],
        width=int(width),
        height=int(height),
        near_plane=float(near),
        far_plane=float(far),
        eps2d=float(eps2d),
        radius_clip=0.0,
        sh_degree=None,
        packed=False,
        tile_size=TILE,
        rasterize_mode="classic",
        camera_model="pinhole",
    )


def _import_gsplat():
    try:
        from gsplat import rasterization
    except ImportError:
        raise InputError(f"rasterize(backend='gsplat'): gsplat is not installed; {EXTRA_HINT}") from None
    return rasterization


def _import_projection():
    try:
        from gsplat import fully_fused_projection
    except ImportError:
        raise InputError(f"projection on the GPU: gsplat is not installed; {EXTRA_HINT}") from None
    return fully_fused_projection


def project_gsplat(means, quats, scales, viewmat, K, width: int, height: int, near=0.01, eps2d=0.3):
    """gsplat's projection of one view, as the rasterizer's: (radii [N] int, 0 = culled; means2d [N,2]
    pixels; conics [N,3] (a, b, c) of the inverse 2D covariance with eps2d added). means [N,3], quats
    [N,4], scales [N,3] (linear), viewmat [4,4], K [3,3], all on one device."""
    project = _import_projection()
    radii, means2d, _, conics, _ = project(
        means, None, quats, scales, viewmat[None], K[None], int(width), int(height),
        eps2d=float(eps2d), near_plane=float(near), far_plane=1e10,
    )  # fmt: skip
    radii = radii[0]
    return (radii.amax(dim=-1) if radii.dim() == 2 else radii), means2d[0], conics[0]


def _require_cuda(device, means) -> None:
    if device is None or device.type != "cuda":
        where = device if device is not None else type(means).__name__
        raise InputError(
            f"rasterize(backend='gsplat'): tensors must be on a CUDA device, got {where}; use backend='cpu'"
        )


def rasterize_gsplat(
    means,
    quats,
    scales,
    opacities,
    features,
    viewmat,
    K,
    width,
    height,
    background=None,
    near=0.01,
    far=1e10,
    eps2d=0.3,
    geometry_grad_channels=None,
):
    """``rasterize`` on CUDA tensors through gsplat; same arguments and RasterOutput (image [H,W,D],
    alpha [H,W,1], depth [H,W,1], radii [N] int32, means2d [N,2] whose ``.grad`` is filled by backward)."""
    from .rasterize import RasterOutput

    rasterization = _import_gsplat()
    device = means.device if isinstance(means, torch.Tensor) else None
    _require_cuda(device, means)
    _check("means", means, (None, 3), device)
    n = means.shape[0]
    for name, x, shape in (
        ("quats", quats, (n, 4)),
        ("scales", scales, (n, 3)),
        ("opacities", opacities, (n,)),
        ("features", features, (n, None)),
        ("viewmat", viewmat, (4, 4)),
        ("K", K, (3, 3)),
    ):
        _check(name, x, shape, device)
    d = features.shape[1]
    if d < 1:
        raise InputError("rasterize: argument 'features' must have at least one channel")
    if background is None:
        background = torch.zeros(d, dtype=torch.float32, device=device)
    _check("background", background, (d,), device)
    k = d if geometry_grad_channels is None else int(geometry_grad_channels)
    if not 0 <= k <= d:
        raise InputError(f"rasterize: argument 'geometry_grad_channels' must be in [0, {d}], got {k!r}")
    args = gsplat_arguments(means, quats, scales, opacities, viewmat, K, width, height, near, far, eps2d)
    if k > 0:
        colors, alpha, meta = rasterization(
            colors=features[:, :k], backgrounds=background[None, :k], render_mode="RGB+ED", **args
        )
    else:
        colors, alpha, meta = rasterization(colors=features[:, :1], render_mode="ED", **args)
    image, depth = colors[0, ..., :k], colors[0, ..., -1:]
    if k < d:  # channels whose gradients must not move the geometry: the same weights, detached geometry
        detached = {key: args[key].detach() for key in ("means", "quats", "scales", "opacities")}
        rest, _, _ = rasterization(
            colors=features[:, k:], backgrounds=background[None, k:], render_mode="RGB", **{**args, **detached}
        )
        image = torch.cat([image, rest[0]], dim=-1)
    m2d = meta["means2d"]
    means2d = m2d.detach()[0]
    if m2d.requires_grad:

        def keep_grad(grad):
            means2d.grad = grad[0]

        m2d.register_hook(keep_grad)
    radii = meta["radii"][0]
    if radii.dim() == 2:  # gsplat >= 1.5 gives per-axis radii
        radii = radii.max(dim=-1).values
    return RasterOutput(image, alpha[0], depth, radii.to(torch.int32), means2d)
