"""The gsplat backend against the Numba kernels.

On the CPU: what the adapter hands gsplat (``gsplat_arguments``), fed to gsplat's own pure-PyTorch
reference of the projection and the tile binning (``gsplat.cuda._torch_impl``), gives the same
projected means, depths, conics, culling, radii rule and per-tile depth order as our kernels, on the
rasterizer tests' random scenes. On CUDA (skipped elsewhere): images and every gradient of
``rasterize(backend="gsplat")`` equal the CPU kernels' to 1e-3.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gsgroup.errors import InputError
from gsgroup.render import _kernels as kn
from gsgroup.render import gsplat_backend, rasterize
from gsgroup.render.gsplat_backend import gsplat_arguments, gsplat_available, resolve_device
from gsgroup.render.rasterize import _Frame
from test_rasterize import make_scene

SCENES = [
    (300, 64, 48, 0, "mixed"),
    (200, 100, 75, 1, "opaque"),
    (150, 33, 17, 2, "far_apart"),
    (120, 80, 60, 3, "huge"),
]
needs_gsplat = pytest.mark.skipif(
    not gsplat_available(), reason="gsplat is not installed (pip install 'gsgroup[cuda]')"
)
needs_cuda = pytest.mark.skipif(
    not (torch.cuda.is_available() and gsplat_available()), reason="needs a CUDA GPU and gsplat"
)


def reference_projection(s):
    """gsplat's PyTorch reference projection of the adapter's arguments (in float64)."""
    from gsplat.cuda._torch_impl import _fully_fused_projection, _quat_scale_to_covar_preci

    a = gsplat_arguments(
        s["means"], s["quats"], s["scales"], s["opacities"], s["viewmat"], s["K"], s["width"], s["height"]
    )
    dbl = {k: v.double() if isinstance(v, torch.Tensor) else v for k, v in a.items()}
    covars, _ = _quat_scale_to_covar_preci(dbl["quats"], dbl["scales"], compute_preci=False)
    radii, means2d, depths, conics, _ = _fully_fused_projection(
        dbl["means"],
        covars,
        dbl["viewmats"],
        dbl["Ks"],
        a["width"],
        a["height"],
        a["eps2d"],
        a["near_plane"],
        a["far_plane"],
    )
    return a, radii[0], means2d[0], depths[0], conics[0]


def our_frame(s):
    return _Frame(
        s["means"],
        s["quats"],
        s["scales"],
        s["opacities"],
        s["viewmat"],
        s["K"],
        s["width"],
        s["height"],
        0.01,
        1e10,
        0.3,
    )


@needs_gsplat
@pytest.mark.parametrize("n,w,h,seed,kind", SCENES)
def test_projection_matches_gsplat_reference(n, w, h, seed, kind):
    s = make_scene(n, 3, w, h, seed, kind)
    a, g_radii, g_m2d, g_depth, g_conic = reference_projection(s)
    assert a["sh_degree"] is None and a["rasterize_mode"] == "classic" and a["tile_size"] == kn.TILE
    fr = our_frame(s)
    gp = torch.from_numpy(fr.gp)
    ours = torch.from_numpy(fr.radii) > 0
    valid = (g_depth > a["near_plane"]) & (g_depth < a["far_plane"])  # gsplat's det > 0 holds with eps2d
    assert not (ours & ~valid).any(), "we keep Gaussians gsplat culls by depth"
    assert ours.sum() >= 0.5 * valid.sum() and ours.any()
    v = ours
    scale = lambda x: float(x.abs().max())  # noqa: E731
    assert float((gp[v, kn.GU] - g_m2d[v, 0]).abs().max()) <= 1e-4 * max(w, scale(g_m2d[v, 0]))
    assert float((gp[v, kn.GV] - g_m2d[v, 1]).abs().max()) <= 1e-4 * max(h, scale(g_m2d[v, 1]))
    assert float((gp[v, kn.GZ] - g_depth[v]).abs().max()) <= 1e-4 * scale(g_depth[v])
    for ours_c, theirs in ((kn.GA, 0), (kn.GB, 1), (kn.GC, 2)):
        assert float((gp[v, ours_c] - g_conic[v, theirs]).abs().max()) <= 1e-4 * scale(g_conic[v])
    # our radius rule on gsplat's 2D covariance (the inverse of its conic), and our off-screen culling
    ca, cb, cc = g_conic[:, 0], g_conic[:, 1], g_conic[:, 2]
    det = ca * cc - cb * cb
    c00, c01, c11 = cc / det, -cb / det, ca / det
    mid = 0.5 * (c00 + c11)
    r_exact = 3.0 * torch.sqrt(mid + torch.sqrt((mid * mid - (c00 * c11 - c01 * c01)).clamp_min(0)))
    rad = torch.ceil(r_exact)
    u, vv = g_m2d[:, 0], g_m2d[:, 1]
    on_screen = (u + rad > 0) & (u - rad < w) & (vv + rad > 0) & (vv - rad < h)
    expect = valid & on_screen
    tie = (r_exact - r_exact.round()).abs() < 1e-3  # ceil of a value within float noise of an integer
    agree = (expect == ours) | tie
    assert agree.all(), f"culling differs for {int((~agree).sum())} Gaussians"
    ok = ours & ~tie
    assert torch.equal(torch.from_numpy(fr.radii)[ok].double(), rad[ok])


@needs_gsplat
@pytest.mark.parametrize("n,w,h,seed,kind", SCENES[:3])
def test_tile_lists_match_gsplat_reference(n, w, h, seed, kind):
    """gsplat's reference tile intersection (``_isect_tiles``, sorted by tile then depth) of our
    projected means, radii and depths gives our tiles and front-to-back order in each."""
    from gsplat.cuda._torch_impl import _isect_tiles

    s = make_scene(n, 3, w, h, seed, kind)
    fr = our_frame(s)
    radii = torch.from_numpy(fr.radii).long()
    m2d = torch.from_numpy(np.ascontiguousarray(fr.gp[:, kn.GU : kn.GV + 1]))
    depth = torch.from_numpy(fr.gp[:, kn.GZ]).float()
    tiles_x, tiles_y = math.ceil(w / kn.TILE), math.ceil(h / kn.TILE)
    per_gauss, isect_ids, flat = _isect_tiles(
        m2d[None], radii[:, None].expand(-1, 2)[None], depth[None], kn.TILE, tiles_x, tiles_y
    )
    assert torch.equal(per_gauss[0].long(), torch.from_numpy(fr.ntiles))
    tile = (isect_ids >> 32).numpy()
    flat = flat.numpy()
    for t in range(tiles_x * tiles_y):
        theirs = flat[tile == t].tolist()
        mine = fr.isect_gauss[fr.tile_start[t] : fr.tile_start[t + 1]].tolist()
        assert mine == theirs, f"tile {t}: {mine} vs {theirs}"


def test_backend_argument_and_errors(monkeypatch):
    s = make_scene(80, 4, 40, 30, 5, "opaque")
    args = [s[k] for k in ("means", "quats", "scales", "opacities", "features", "viewmat", "K")]
    a = rasterize(*args, s["width"], s["height"], backend="auto")
    b = rasterize(*args, s["width"], s["height"], backend="cpu")
    assert torch.equal(a.image, b.image) and torch.equal(a.radii, b.radii)
    with pytest.raises(InputError, match="backend"):
        rasterize(*args, s["width"], s["height"], backend="vulkan")
    with pytest.raises(InputError, match="CUDA device|gsgroup\\[cuda\\]"):
        rasterize(*args, s["width"], s["height"], backend="gsplat")  # CPU tensors (or no gsplat)
    monkeypatch.setattr(gsplat_backend, "gsplat_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.raises(InputError, match=r"pip install 'gsgroup\[cuda\]'"):
        resolve_device("cuda")
    assert resolve_device("auto") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(InputError, match="no CUDA GPU.*--device cpu"):
        resolve_device("cuda")
    with pytest.raises(InputError, match="--device"):
        resolve_device("tpu")
    assert resolve_device("cpu") == torch.device("cpu")


# ----------------------------------------------------------------------------- CUDA only


def _render_and_grads(s, device, backend, geometry_grad_channels=None):
    keys = ["means", "quats", "scales", "opacities", "features", "background"]
    inp = {k: s[k].to(device).clone().requires_grad_(k in keys) for k in keys + ["viewmat", "K"]}
    out = rasterize(
        *[inp[k] for k in ("means", "quats", "scales", "opacities", "features", "viewmat", "K")],
        s["width"],
        s["height"],
        background=inp["background"],
        geometry_grad_channels=geometry_grad_channels,
        backend=backend,
    )
    g = torch.Generator().manual_seed(0)
    wi = (torch.rand(out.image.shape, generator=g) - 0.3).to(device)
    wa = (torch.rand(out.alpha.shape, generator=g) - 0.5).to(device)
    wd = ((torch.rand(out.depth.shape, generator=g) - 0.5) * 0.1).to(device)
    ((out.image * wi).sum() + (out.alpha * wa).sum() + (out.depth * wd).sum()).backward()
    res = {"image": out.image, "alpha": out.alpha, "depth": out.depth, "means2d.grad": out.means2d.grad}
    res.update({f"{k}.grad": inp[k].grad for k in keys})
    return {k: v.detach().cpu() for k, v in res.items()}


@needs_cuda
@pytest.mark.parametrize("n,w,h,seed,kind", [(400, 128, 96, 0, "opaque"), (300, 96, 64, 1, "far_apart")])
@pytest.mark.parametrize("geom", [None, 3])
def test_cuda_image_and_gradients_match_cpu(n, w, h, seed, kind, geom):
    """To 1e-3 (mean absolute difference over the largest value). The largest single difference is
    bounded by the screen-extent rule (gsplat_backend docstring): a pixel at 3 to 3.33 sigma of a
    Gaussian may lie in gsplat's tiles and not in ours, where alpha <= exp(-4.5) < 0.012."""
    s = make_scene(n, 6, w, h, seed, kind)
    cpu = _render_and_grads(s, "cpu", "cpu", geom)
    gpu = _render_and_grads(s, "cuda", "gsplat", geom)
    errors = {}
    for k, ref in cpu.items():
        assert gpu[k] is not None, k
        scale = max(float(ref.abs().max()), 1e-8)
        diff = (gpu[k] - ref).abs()
        errors[k] = (float(diff.mean()) / scale, float(diff.max()) / scale)
    print("relative errors (mean, max):", errors)
    for k, (mean, top) in errors.items():
        assert mean <= 1e-3 and top <= 0.012, f"{k}: relative error mean {mean:.3g}, max {top:.3g}"


@needs_cuda
def test_cuda_auto_backend_and_geometry_channels():
    """auto picks gsplat for CUDA tensors; with geometry_grad_channels=3 the identity channels' loss
    leaves the geometry's gradients zero."""
    s = make_scene(200, 8, 64, 48, 4, "opaque")
    means = s["means"].cuda().requires_grad_(True)
    feats = s["features"].cuda().requires_grad_(True)
    out = rasterize(
        means, s["quats"].cuda(), s["scales"].cuda(), s["opacities"].cuda(), feats, s["viewmat"].cuda(),
        s["K"].cuda(), s["width"], s["height"], geometry_grad_channels=3,
    )  # fmt: skip
    assert out.image.device.type == "cuda" and out.image.shape == (48, 64, 8)
    out.image[..., 3:].sum().backward()
    assert float(means.grad.abs().max()) == 0.0 and float(feats.grad[:, 3:].abs().max()) > 0


# ----------------------------------------------------------------------------- the adapter's glue on the CPU


def fake_rasterization(means, quats, scales, opacities, colors, viewmats, Ks, width, height, near_plane, far_plane,
                       eps2d, backgrounds=None, render_mode="RGB", **_):  # fmt: skip
    """gsplat.rasterization's contract (classic, unpacked, one camera) computed by the dense PyTorch
    reference rasterizer: colors [1,H,W,D(+1)], alphas [1,H,W,1], meta with means2d [1,N,2] (in the
    graph) and per-axis radii [1,N,2]; "ED" channels are alpha-normalised depth, as gsplat's."""
    import reference_rasterizer as ref

    proj = ref.project(means, quats, scales, viewmats[0], Ks[0], width, height, near_plane, far_plane, eps2d)
    m2d = proj["mean2d"][None]
    w, t_final = ref.blend_weights({**proj, "mean2d": m2d[0]}, opacities, width, height)
    z = proj["z"][:, None]
    cols = {"RGB": colors, "RGB+ED": torch.cat([colors, z], 1) if colors is not None else z, "ED": z}[render_mode]
    bg = torch.zeros(cols.shape[1]) if backgrounds is None else backgrounds[0]
    if render_mode != "RGB" and backgrounds is not None:
        bg = torch.cat([bg, torch.zeros(1)])
    img = w @ cols + t_final[:, None] * bg[None, : cols.shape[1]]
    alpha = (1 - t_final)[:, None]
    if render_mode != "RGB":
        img = torch.cat([img[:, :-1], img[:, -1:] / alpha.clamp(min=1e-10)], 1)
    radii = torch.stack([proj["radii"], proj["radii"]], -1)[None]
    return img.reshape(1, height, width, -1), alpha.reshape(1, height, width, 1), {"means2d": m2d, "radii": radii}


@pytest.mark.parametrize("geom", [None, 3, 0])
def test_adapter_glue_against_the_cpu_kernels(monkeypatch, geom):
    """The adapter's channel split (geometry pass with depth, detached pass for the other channels),
    alpha/depth assembly, means2d gradient hook and radii, with gsplat's rasterization replaced by the
    dense reference: outputs and every gradient equal the Numba kernels' (geometry_grad_channels
    included) to 1e-4."""
    monkeypatch.setattr(gsplat_backend, "_import_gsplat", lambda: fake_rasterization)
    monkeypatch.setattr(gsplat_backend, "_require_cuda", lambda device, means: None)
    s = make_scene(60, 6, 40, 32, 7, "opaque")
    keys = ["means", "quats", "scales", "opacities", "features", "background"]
    res = []
    for fn in (rasterize, gsplat_backend.rasterize_gsplat):
        inp = {k: s[k].clone().requires_grad_(k in keys) for k in keys + ["viewmat", "K"]}
        args = [inp[k] for k in ("means", "quats", "scales", "opacities", "features", "viewmat", "K")]
        out = fn(*args, s["width"], s["height"], background=inp["background"], geometry_grad_channels=geom)
        g = torch.Generator().manual_seed(1)
        loss = (out.image * torch.rand(out.image.shape, generator=g)).sum() + (out.alpha * 0.3).sum()
        (loss + (out.depth * 0.01).sum()).backward()
        got = {"image": out.image, "alpha": out.alpha, "depth": out.depth, "means2d.grad": out.means2d.grad}
        got.update({f"{k}.grad": inp[k].grad for k in keys})
        res.append((got, out.radii))
    (ours, r_ours), (theirs, r_theirs) = res
    assert r_theirs.dtype == torch.int32 and torch.equal(r_theirs > 0, r_ours > 0)
    for k, ref in ours.items():
        assert theirs[k] is not None, k
        a, b = theirs[k].detach().double(), ref.detach().double()
        err = float((a - b).abs().max()) / max(float(b.abs().max()), 1e-8)
        assert err <= 1e-4, f"{k}: relative error {err:.3g}"
