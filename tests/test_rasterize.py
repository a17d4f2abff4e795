"""Numba rasterizer vs the dense PyTorch reference (tests/reference_rasterizer.py):
forward outputs and every gradient, edge cases, input checks, helpers, thread invariance."""

from __future__ import annotations

import math

import numba
import numpy as np
import pytest
import torch

import reference_rasterizer as ref
from gsgroup.geometry import look_at
from gsgroup.render import contributions, dominant_gaussian, rasterize

TOL = 1e-4


def rel_err(a, b):
    a = a.detach().double()
    b = b.detach().double()
    return float((a - b).abs().max()) / max(float(b.abs().max()), 1e-8) if b.numel() else 0.0


def assert_close(a, b, name, tol=TOL):
    assert a.shape == b.shape, f"{name}: shape {tuple(a.shape)} vs {tuple(b.shape)}"
    e = rel_err(a, b)
    assert e <= tol, f"{name}: relative error {e:.3g} > {tol}"


def make_scene(n, d, width, height, seed, kind="mixed"):
    """Random Gaussians in world space around a look-at camera; returns a dict of float32 tensors."""
    rng = np.random.default_rng(seed)
    V = look_at([0.3, -0.4, -4.0], [0.0, 0.0, 0.5], up=(0.0, 1.0, 0.0))
    f = 0.9 * width
    K = np.array([[f, 0, width / 2 + 1.7], [0, f * 1.05, height / 2 - 1.3], [0, 0, 1]])
    # sample in camera space via pixel + depth, then map to world
    u = rng.uniform(-0.2 * width, 1.2 * width, n)
    v = rng.uniform(-0.2 * height, 1.2 * height, n)
    z = rng.uniform(1.0, 8.0, n)
    log_s = rng.uniform(-6.0, -1.0, (n, 3))
    opac = rng.uniform(0.05, 0.98, n)
    if kind == "mixed":
        m = rng.random(n)
        z[m < 0.06] = rng.uniform(-3.0, 0.005, (m < 0.06).sum())  # behind / at the camera
        off = (m >= 0.06) & (m < 0.12)
        u[off] = rng.choice([-1.0, 1.0], off.sum()) * rng.uniform(3, 6, off.sum()) * width
        big = (m >= 0.12) & (m < 0.15)
        log_s[big] = rng.uniform(-0.5, 1.0, (big.sum(), 3))  # huge
        tiny = (m >= 0.15) & (m < 0.25)
        log_s[tiny] = rng.uniform(-9.0, -7.0, (tiny.sum(), 3))
    elif kind == "opaque":
        u = width / 2 + rng.normal(0, width / 8, n)
        v = height / 2 + rng.normal(0, height / 8, n)
        log_s = rng.uniform(-2.5, -1.2, (n, 3))
        opac = rng.uniform(0.7, 0.999, n)
    elif kind == "far_apart":
        g = int(math.ceil(math.sqrt(n)))
        u = (np.arange(n) % g + 0.5) / g * width
        v = (np.arange(n) // g + 0.5) / g * height
        log_s = rng.uniform(-4.5, -3.5, (n, 3))
    elif kind == "huge":
        log_s[: n // 3] = rng.uniform(0.5, 2.0, (n // 3, 3))
        log_s[n // 3 : 2 * n // 3] = rng.uniform(-10, -8, (2 * n // 3 - n // 3, 3))
    x = (u - K[0, 2]) / K[0, 0] * z
    y = (v - K[1, 2]) / K[1, 1] * z
    pc = np.stack([x, y, z], 1)
    Vinv = np.linalg.inv(V)
    means = pc @ Vinv[:3, :3].T + Vinv[:3, 3]
    quats = rng.normal(size=(n, 4)) * rng.uniform(0.5, 2.0, (n, 1))
    t = lambda a: torch.tensor(np.asarray(a), dtype=torch.float32)  # noqa: E731
    return dict(
        means=t(means.reshape(n, 3)),
        quats=t(quats.reshape(n, 4)),
        scales=t(np.exp(log_s).reshape(n, 3)),
        opacities=t(opac),
        features=t(rng.uniform(0, 1, (n, d))),
        viewmat=t(V),
        K=t(K),
        width=width,
        height=height,
        background=t(rng.uniform(0, 1, d)),
    )


GRAD_KEYS = ["means", "quats", "scales", "opacities", "features", "background"]


def run_both(scene, use_bg=True, seed=0):
    """Render with the kernels (float32) and the reference (float64) with the same random loss;
    return (outputs, grads) for both."""
    h, w = scene["height"], scene["width"]
    d = scene["features"].shape[1]
    g = torch.Generator().manual_seed(seed)
    wi = torch.rand(h, w, d, generator=g, dtype=torch.float64) - 0.3
    wa = torch.rand(h, w, 1, generator=g, dtype=torch.float64) - 0.5
    wd = (torch.rand(h, w, 1, generator=g, dtype=torch.float64) - 0.5) * 0.1
    res = []
    for dtype, fn in ((torch.float32, rasterize), (torch.float64, ref.render)):
        inp = {
            k: scene[k].to(dtype).clone().requires_grad_(k in GRAD_KEYS)
            for k in ["means", "quats", "scales", "opacities", "features", "viewmat", "K", "background"]
        }
        if not use_bg:
            inp["background"] = None
        out = fn(
            inp["means"],
            inp["quats"],
            inp["scales"],
            inp["opacities"],
            inp["features"],
            inp["viewmat"],
            inp["K"],
            w,
            h,
            background=inp["background"],
        )
        if isinstance(out, dict):
            image, alpha, depth, radii, m2d = (out[k] for k in ("image", "alpha", "depth", "radii", "means2d"))
        else:
            image, alpha, depth, radii, m2d = out.image, out.alpha, out.depth, out.radii, out.means2d
        loss = (image.double() * wi).sum() + (alpha.double() * wa).sum() + (depth.double() * wd).sum()
        loss.backward()
        grads = {k: inp[k].grad for k in GRAD_KEYS if inp[k] is not None}
        grads["means2d"] = m2d.grad
        res.append((dict(image=image, alpha=alpha, depth=depth, radii=radii, means2d=m2d), grads))
    return res


SCENES = [
    # (n, d, width, height, seed, kind, use_bg)
    (300, 3, 70, 45, 1, "mixed", True),
    (2000, 19, 70, 45, 2, "mixed", True),
    (500, 1, 64, 48, 3, "mixed", False),
    (200, 3, 40, 33, 4, "opaque", True),
    (30, 3, 96, 80, 5, "far_apart", True),
    (60, 19, 50, 37, 6, "huge", True),
]


@pytest.mark.parametrize("n,d,width,height,seed,kind,use_bg", SCENES)
def test_matches_reference(n, d, width, height, seed, kind, use_bg):
    scene = make_scene(n, d, width, height, seed, kind)
    (o, g), (ro, rg) = run_both(scene, use_bg=use_bg, seed=seed)
    assert o["image"].shape == (height, width, d) and o["image"].dtype == torch.float32
    assert o["alpha"].shape == (height, width, 1) and o["depth"].shape == (height, width, 1)
    assert o["radii"].dtype == torch.int32 and o["means2d"].shape == (n, 2)
    assert torch.equal(o["radii"].long(), ro["radii"]), "radii differ"
    vis = o["radii"] > 0
    assert_close(o["means2d"][vis], ro["means2d"][vis], "means2d")
    for k in ("image", "alpha", "depth"):
        assert_close(o[k], ro[k], k)
    for k in rg:
        assert g[k] is not None, f"no gradient for {k}"
        assert_close(g[k], rg[k], f"grad {k}")
    if kind == "mixed":
        assert (o["radii"] == 0).any() and (o["radii"] > 0).any()
    if kind == "opaque":  # the early stop really happens
        assert float(ro["alpha"].detach().max()) > 0.9998


def test_empty_and_all_culled():
    scene = make_scene(50, 3, 40, 30, 7)
    bg = scene["background"].clone().requires_grad_(True)
    for n in (0, 50):
        s = {
            k: (
                v[:n]
                if isinstance(v, torch.Tensor) and k in ("means", "quats", "scales", "opacities", "features")
                else v
            )
            for k, v in scene.items()
        }
        means = s["means"].clone()
        if n:  # move everything behind the camera
            Vinv = torch.linalg.inv(s["viewmat"].double())
            behind = Vinv[:3, :3] @ torch.tensor([0.1, 0.0, -2.0], dtype=torch.float64) + Vinv[:3, 3]
            means = behind.float().expand(n, 3).contiguous()
        means.requires_grad_(True)
        out = rasterize(
            means, s["quats"], s["scales"], s["opacities"], s["features"], s["viewmat"], s["K"], 40, 30, background=bg
        )
        assert torch.allclose(out.image, bg.detach().expand(30, 40, 3))
        assert float(out.alpha.detach().abs().max()) == 0.0 and float(out.depth.detach().abs().max()) == 0.0
        assert int(out.radii.abs().max()) == 0 if n else out.radii.shape == (0,)
        bg.grad = None
        out.image.sum().backward()
        assert torch.allclose(bg.grad, torch.full((3,), 30.0 * 40.0))
        assert float(means.grad.abs().max()) == 0.0 if n else means.grad.shape == (0, 3)


def _args(scene):
    return [scene[k] for k in ("means", "quats", "scales", "opacities", "features", "viewmat", "K")] + [
        scene["width"],
        scene["height"],
    ]


@pytest.mark.parametrize(
    "idx,bad,word",
    [
        (0, lambda t: t[:, :2], "means"),
        (0, lambda t: t.double(), "means"),
        (1, lambda t: t[:-1], "quats"),
        (1, lambda t: torch.zeros_like(t), "quats"),
        (2, lambda t: t.clone().fill_(float("nan")), "scales"),
        (3, lambda t: t[:, None], "opacities"),
        (4, lambda t: t[:, :0], "features"),
        (4, lambda t: t.clone().index_fill_(0, torch.tensor([3]), float("inf")), "features"),
        (5, lambda t: t[:3], "viewmat"),
        (6, lambda t: t.numpy(), "K"),
        (7, lambda v: 0, "width"),
        (8, lambda v: -5, "height"),
        (7, lambda v: 12.5, "width"),
    ],
)
def test_bad_inputs(idx, bad, word):
    scene = make_scene(20, 3, 32, 24, 8)
    args = _args(scene)
    args[idx] = bad(args[idx])
    with pytest.raises(ValueError, match=word):
        rasterize(*args)


def test_bad_background_and_labels():
    scene = make_scene(20, 3, 32, 24, 8)
    with pytest.raises(ValueError, match="background"):
        rasterize(*_args(scene), background=torch.zeros(4))
    cam = _args(scene)[:4] + _args(scene)[5:]
    with pytest.raises(ValueError, match="labels"):
        contributions(*cam, labels=torch.zeros(23, 32, dtype=torch.long))
    with pytest.raises(ValueError, match="labels"):
        contributions(*cam, labels=torch.full((24, 32), -1, dtype=torch.long))
    with pytest.raises(ValueError, match="num_labels"):
        contributions(*cam, labels=torch.full((24, 32), 3, dtype=torch.long), num_labels=2)


@pytest.mark.parametrize("kind,seed", [("mixed", 9), ("opaque", 10)])
def test_contributions_and_dominant(kind, seed):
    n, w, h = 400, 70, 45
    scene = make_scene(n, 3, w, h, seed, kind)
    cam = _args(scene)[:4] + _args(scene)[5:]
    rng = np.random.default_rng(seed)
    # blocky labels with 5 classes, one of which (label 5) is absent when num_labels=7
    lab = (
        torch.tensor(rng.integers(0, 5, (h // 8 + 1, w // 8 + 1)))
        .repeat_interleave(8, 0)
        .repeat_interleave(8, 1)[:h, :w]
    )
    lab[::7, ::5] = 6
    means = scene["means"].clone().requires_grad_(True)
    cam_g = [means] + cam[1:]
    c = contributions(*cam_g, labels=lab)
    c7 = contributions(*cam_g, labels=lab, num_labels=9)
    assert c.dtype == torch.float32 and c.shape == (n, 7) and not c.requires_grad
    assert c7.shape == (n, 9) and float(c7[:, 7:].abs().max()) == 0.0
    with torch.no_grad():
        proj = ref.project(
            *(scene[k].double() for k in ("means", "quats", "scales", "viewmat", "K")), w, h, 0.01, 1e10, 0.3
        )
        wts, _ = ref.blend_weights(proj, scene["opacities"].double(), w, h)
    onehot = torch.nn.functional.one_hot(lab.reshape(-1), 7).double()
    assert_close(c, wts.T @ onehot, "contributions")
    assert_close(c7[:, :7], c, "contributions num_labels", tol=1e-6)
    dom = dominant_gaussian(*cam_g)
    assert dom.dtype == torch.int64 and dom.shape == (h, w)
    best, arg = wts.max(1)
    want = torch.where(best > 0, arg, torch.full_like(arg, -1)).reshape(h, w)
    # ties are impossible in practice; compare weights rather than ids to be robust to rounding
    agree = (dom == want).double().mean()
    assert agree > 0.999, f"dominant agrees on {agree:.4f} of pixels"
    assert bool(((dom >= 0) == (want >= 0)).all())


def test_thread_count_invariance():
    scene = make_scene(1500, 19, 150, 110, 11)
    results = []
    nt0 = numba.get_num_threads()
    try:
        for nt in sorted({1, min(2, numba.config.NUMBA_NUM_THREADS)}):
            numba.set_num_threads(nt)
            inp = {
                k: scene[k].clone().requires_grad_(k in GRAD_KEYS)
                for k in ["means", "quats", "scales", "opacities", "features", "background"]
            }
            out = rasterize(
                inp["means"],
                inp["quats"],
                inp["scales"],
                inp["opacities"],
                inp["features"],
                scene["viewmat"],
                scene["K"],
                150,
                110,
                background=inp["background"],
            )
            (out.image.square().sum() + out.alpha.sum() + out.depth.sum()).backward()
            results.append([out.image, out.alpha, out.depth, out.means2d.grad] + [inp[k].grad for k in GRAD_KEYS])
    finally:
        numba.set_num_threads(nt0)
    for a, b in zip(results[0], results[-1]):
        assert torch.equal(a, b)


def test_means2d_grad_needs_no_retain_and_no_grad_mode():
    scene = make_scene(100, 3, 48, 32, 12)
    out = rasterize(*_args(scene))
    assert not out.image.requires_grad and not out.means2d.requires_grad
    o = scene["opacities"].clone().requires_grad_(True)
    args = _args(scene)
    args[3] = o
    out = rasterize(*args)
    assert out.means2d.requires_grad and out.means2d.is_leaf
    out.image.sum().backward()
    assert out.means2d.grad is not None and float(out.means2d.grad.abs().max()) > 0
    with torch.no_grad():
        out = rasterize(*args)
    assert not out.image.requires_grad


def test_both_gaussian_evaluation_paths():
    """Gaussians evaluated by recurrences and those evaluated with exp per pixel (needle-like or
    very sharp ones, here with eps2d=0) both match the reference."""
    from gsgroup.render import _kernels as kn
    from gsgroup.render.rasterize import _Frame

    scene = make_scene(400, 3, 64, 48, 13, "mixed")
    fr = _Frame(
        scene["means"],
        scene["quats"],
        scene["scales"],
        scene["opacities"],
        scene["viewmat"],
        scene["K"],
        64,
        48,
        0.01,
        1e10,
        0.0,
    )
    used = (fr.ntiles > 0) & (fr.gp[:, kn.GEX] >= 0)
    rec = fr.gp[used, kn.GREC]
    assert (rec == 0).any() and (rec == 1).any()
    h, w = 48, 64
    outs = []
    for dtype, fn in ((torch.float32, rasterize), (torch.float64, ref.render)):
        inp = {
            k: scene[k].to(dtype).clone().requires_grad_(k in GRAD_KEYS)
            for k in ["means", "quats", "scales", "opacities", "features", "viewmat", "K", "background"]
        }
        out = fn(
            inp["means"],
            inp["quats"],
            inp["scales"],
            inp["opacities"],
            inp["features"],
            inp["viewmat"],
            inp["K"],
            w,
            h,
            background=inp["background"],
            eps2d=0.0,
        )
        image = out["image"] if isinstance(out, dict) else out.image
        image.double().square().sum().backward()
        outs.append((image, {k: inp[k].grad for k in GRAD_KEYS}))
    assert_close(outs[0][0], outs[1][0], "image")
    for k in GRAD_KEYS:
        assert_close(outs[0][1][k], outs[1][1][k], f"grad {k}")


def test_parallel_depth_order_matches_stable_sort():
    """The two-thread depth sort used for large scenes equals numpy's stable argsort (ties by id)."""
    from gsgroup.render import _kernels as kn

    rng = np.random.default_rng(14)
    for n in (0, 1, 2, 7, 5001):
        zs = rng.integers(0, max(n // 3, 1), n).astype(np.float64)  # many ties
        vis = np.flatnonzero(rng.random(n) < 0.8)
        want = vis[np.argsort(zs[vis], kind="stable")]
        assert np.array_equal(kn.depth_order(zs, vis), want)


def test_geometry_grad_channels_detaches_identity_channels():
    """geometry_grad_channels=3 on D=19 == reference with the geometry gradient from the first 3
    channels only and the last 16 channels rendered with detached geometry."""
    scene = make_scene(400, 19, 70, 45, 11)
    h, w = scene["height"], scene["width"]
    g = torch.Generator().manual_seed(3)
    wi = torch.rand(h, w, 19, generator=g, dtype=torch.float64) - 0.3
    keys = ["means", "quats", "scales", "opacities", "features", "background"]
    fast = {k: scene[k].clone().requires_grad_(True) for k in keys}
    out = rasterize(
        fast["means"],
        fast["quats"],
        fast["scales"],
        fast["opacities"],
        fast["features"],
        scene["viewmat"],
        scene["K"],
        w,
        h,
        background=fast["background"],
        geometry_grad_channels=3,
    )
    (out.image.double() * wi).sum().backward()

    slow = {k: scene[k].double().clone().requires_grad_(True) for k in keys}
    geom = [slow[k] for k in ("means", "quats", "scales", "opacities")]
    V, K = scene["viewmat"].double(), scene["K"].double()
    rgb = ref.render(*geom, slow["features"][:, :3], V, K, w, h, background=slow["background"][:3])["image"]
    ids = ref.render(
        *[x.detach() for x in geom], slow["features"][:, 3:], V, K, w, h, background=slow["background"][3:]
    )["image"]
    ((rgb * wi[..., :3]).sum() + (ids * wi[..., 3:]).sum()).backward()
    assert_close(out.image, torch.cat([rgb, ids], -1), "image")
    for k in keys:
        assert_close(fast[k].grad, slow[k].grad, k)
    with pytest.raises(ValueError, match="geometry_grad_channels"):
        rasterize(
            fast["means"],
            fast["quats"],
            fast["scales"],
            fast["opacities"],
            fast["features"],
            scene["viewmat"],
            scene["K"],
            w,
            h,
            geometry_grad_channels=20,
        )
