"""The fused training kernels (gsgroup.train._fused) against their plain-PyTorch paths and
independent references: L1 + SSIM loss and gradient vs PyTorch autograd and a float64 SciPy SSIM
(central differences), FusedAdam vs torch.optim.Adam step by step (per-group learning rates, a
changing learning rate, parameters without gradients, densification's row edits), and the fused
classifier cross-entropy vs loss_2d(classifier(x)) with autograd. Results must not depend on the
thread count."""

from __future__ import annotations

import numba
import numpy as np
import pytest
import torch

from gsgroup.errors import InputError
from gsgroup.segment.identity import IdentityClassifier, classifier_loss_2d, logits_loss_2d, loss_2d
from gsgroup.train import _fused
from gsgroup.train.adam import FusedAdam
from gsgroup.train.densify import append_gaussians, keep_gaussians
from gsgroup.train.losses import _gauss_1d, rgb_loss, rgb_loss_torch
from reference_ssim import ssim_map_zero_pad


def _images(h, w, c, seed, noise=0.1):
    rng = np.random.default_rng(seed)
    v, u = np.mgrid[0:h, 0:w] / np.array([h, w])[:, None, None]
    base = 0.5 + 0.4 * np.sin(9 * u[..., None] + 5 * v[..., None] + np.arange(c))
    ref = np.clip(base + rng.normal(0, 0.05, base.shape), 0, 1)
    img = np.clip(base + rng.normal(0, noise, base.shape), 0, 1)
    img[: h // 3, : w // 3] = ref[: h // 3, : w // 3]  # exact ties: L1's gradient is 0 there
    return torch.from_numpy(img.astype(np.float32)), torch.from_numpy(ref.astype(np.float32))


@pytest.mark.parametrize("h,w,c,weight", [(44, 58, 3, 0.2), (150, 200, 3, 0.2), (7, 9, 3, 0.5), (31, 17, 1, 1.0)])
def test_fused_rgb_loss_matches_pytorch_autograd(h, w, c, weight):
    img, ref = _images(h, w, c, seed=h)
    a = img.clone().requires_grad_(True)
    b = img.clone().requires_grad_(True)
    fused, plain = rgb_loss(a, ref, weight), rgb_loss_torch(b, ref, weight)
    assert fused.grad_fn is not None and "Fused" in type(fused.grad_fn).__name__
    (3.0 * fused).backward()  # an outer factor reaches the gradient
    (3.0 * plain).backward()
    assert fused.dtype == torch.float32 and fused.shape == ()
    assert fused.item() == pytest.approx(plain.item(), abs=1e-6)
    scale = b.grad.abs().max().item()
    assert torch.allclose(a.grad, b.grad, rtol=0, atol=1e-5 * scale)


def test_fused_rgb_loss_matches_float64_reference_and_finite_differences():
    """Value against SciPy's float64 SSIM; gradient entries against central differences of it."""
    img, ref = _images(23, 27, 3, seed=5)
    x, y, w = img.double().numpy(), ref.double().numpy(), 0.2

    def loss64(a):
        return (1 - w) * np.abs(a - y).mean() + w * (1 - ssim_map_zero_pad(a, y).mean())

    g = img.clone().requires_grad_(True)
    value = rgb_loss(g, ref, w)
    value.backward()
    assert value.item() == pytest.approx(loss64(x), abs=2e-6)
    rng = np.random.default_rng(0)
    eps = 1e-4
    for i, j, k in zip(rng.integers(0, 23, 12), rng.integers(0, 27, 12), rng.integers(0, 3, 12)):
        if abs(x[i, j, k] - y[i, j, k]) < 2 * eps:
            continue  # L1's kink
        plus, minus = x.copy(), x.copy()
        plus[i, j, k] += eps
        minus[i, j, k] -= eps
        numeric = (loss64(plus) - loss64(minus)) / (2 * eps)
        assert g.grad[i, j, k].item() == pytest.approx(numeric, rel=1e-3, abs=1e-9)


def test_plain_path_for_other_dtypes_and_constant_refs():
    img, ref = _images(20, 24, 3, seed=2)
    loss64 = rgb_loss(img.double(), ref.double())
    assert loss64.dtype == torch.float64 and loss64.grad_fn is None
    assert loss64.item() == pytest.approx(rgb_loss_torch(img, ref).item(), abs=1e-6)
    r = ref.clone().requires_grad_(True)  # a reference with a gradient takes the PyTorch path
    out = rgb_loss(img, r)
    out.backward()
    assert r.grad is not None and out.item() == pytest.approx(rgb_loss_torch(img, ref).item(), abs=1e-6)


def _thread_counts():
    return sorted({1, min(2, numba.config.NUMBA_NUM_THREADS), numba.config.NUMBA_NUM_THREADS})


def test_fused_kernels_do_not_depend_on_the_thread_count():
    img, ref = _images(64, 80, 3, seed=9)
    x, y = img.reshape(64, -1).numpy(), ref.reshape(64, -1).numpy()
    rng = np.random.default_rng(1)
    f = rng.normal(size=(40, 30, 16)).astype(np.float32)
    t = rng.integers(-1, 6, (40, 30))
    wgt, bias = rng.normal(size=(6, 16)).astype(np.float32), rng.normal(size=6).astype(np.float32)
    results = []
    old = numba.get_num_threads()
    try:
        for n in _thread_counts():
            numba.set_num_threads(n)
            loss, grad = _fused.l1_ssim(x, y, _gauss_1d().numpy(), 3, 0.2)
            ce = _fused.classifier_cross_entropy(f, t, wgt, bias, -1)
            results.append((loss, grad, ce[0], ce[3], ce[4], ce[5]))
    finally:
        numba.set_num_threads(old)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert np.array_equal(a, b)


# ----------------------------------------------------------------------------- Adam


SHAPES = {"means": (50, 3), "quats": (50, 4), "opacities": (50,), "sh0": (50, 1, 3), "ids": (50, 16)}


def _setup(cls):
    params = {
        k: torch.nn.Parameter(torch.randn(s, generator=torch.Generator().manual_seed(i)))
        for i, (k, s) in enumerate(SHAPES.items())
    }
    groups = [{"params": [p], "lr": 1e-3 * (i + 1), "name": k} for i, (k, p) in enumerate(params.items())]
    return params, cls(groups, eps=1e-15)


def test_fused_adam_matches_torch_adam_step_by_step_through_densification():
    (pa, oa), (pb, ob) = _setup(torch.optim.Adam), _setup(FusedAdam)
    for it in range(40):
        for opt in (oa, ob):  # a schedule on one group, as the means' learning rate
            opt.param_groups[0]["lr"] = 1e-2 * 0.9**it
        n = pa["means"].shape[0]
        for i, k in enumerate(SHAPES):
            if k == "ids" and it < 5:
                continue  # no gradient: skipped, step count unchanged
            g = torch.randn((n, *SHAPES[k][1:]), generator=torch.Generator().manual_seed(100 * it + i))
            pa[k].grad, pb[k].grad = g.clone(), g.clone()
        oa.step()
        ob.step()
        oa.zero_grad(set_to_none=True)
        ob.zero_grad(set_to_none=True)
        if it == 10:  # densification: append rows (zero moments), then drop some
            new = {
                k: torch.randn((7, *s[1:]), generator=torch.Generator().manual_seed(k.__len__()))
                for k, s in SHAPES.items()
            }
            append_gaussians(pa, oa, new)
            append_gaussians(pb, ob, new)
            keep = torch.arange(57) % 4 != 1
            keep_gaussians(pa, oa, keep)
            keep_gaussians(pb, ob, keep)
        for k in SHAPES:
            assert torch.allclose(pa[k], pb[k], rtol=1e-6, atol=1e-7), (it, k)
            sa, sb = oa.state[pa[k]], ob.state[pb[k]]
            assert bool(sa) == bool(sb)
            if not sa:
                continue
            assert sa["step"].item() == sb["step"].item()
            for key in ("exp_avg", "exp_avg_sq"):  # float rounding (torch's lerp may use an FMA)
                assert torch.allclose(sa[key], sb[key], rtol=1e-5, atol=1e-6 * sa[key].abs().max().item()), key
    assert oa.state[pa["ids"]]["step"].item() == 35
    # the state dicts are interchangeable: torch's Adam continues from FusedAdam's state
    pc, oc = _setup(torch.optim.Adam)
    for k in SHAPES:
        pc[k].data = pb[k].detach().clone()
    for g, p in zip(oc.param_groups, pc.values()):
        g["params"] = [p]
    oc.load_state_dict(ob.state_dict())
    assert set(oc.state_dict()["state"]) == set(ob.state_dict()["state"])


def test_fused_adam_falls_back_for_unsupported_options():
    p = torch.nn.Parameter(torch.ones(4, dtype=torch.float64))
    q = torch.nn.Parameter(torch.ones(4, dtype=torch.float64))
    a, b = FusedAdam([p], lr=0.1, weight_decay=0.1), torch.optim.Adam([q], lr=0.1, weight_decay=0.1)
    for _ in range(3):
        p.grad, q.grad = torch.full_like(p, 0.5), torch.full_like(q, 0.5)
        a.step()
        b.step()
    assert torch.equal(p, q)


# ----------------------------------------------------------------------------- classifier cross-entropy


@pytest.mark.parametrize("k,dtype,ignored", [(7, torch.int64, 0.2), (12, torch.uint8, 0.0), (1, torch.int64, 0.1)])
def test_fused_classifier_loss_matches_autograd(k, dtype, ignored):
    torch.manual_seed(k)
    clf_a, clf_b = IdentityClassifier(k, 16), IdentityClassifier(k, 16)
    clf_b.load_state_dict(clf_a.state_dict())
    feats = torch.randn(30, 40, 16)
    target = torch.randint(0, k, (30, 40))
    if ignored:
        target[torch.rand(30, 40) < ignored] = -1
    fa, fb = feats.clone().requires_grad_(True), feats.clone().requires_grad_(True)
    fused = classifier_loss_2d(fa, clf_a, target.to(dtype) if not ignored else target)
    plain = loss_2d(clf_b(fb), target)
    (2.0 * fused).backward()
    (2.0 * plain).backward()
    assert fused.item() == pytest.approx(plain.item(), abs=1e-5)
    for a, b in ((fa.grad, fb.grad), (clf_a.linear.weight.grad, clf_b.linear.weight.grad)):
        assert torch.allclose(a, b, rtol=0, atol=1e-5 * max(b.abs().max().item(), 1e-12))
    assert torch.allclose(clf_a.linear.bias.grad, clf_b.linear.bias.grad, rtol=0, atol=1e-6)


def test_fused_classifier_loss_edge_cases():
    clf = IdentityClassifier(3, 4)
    feats = torch.randn(5, 6, 4, requires_grad=True)
    none = classifier_loss_2d(feats, clf, torch.full((5, 6), -1))
    none.backward()
    assert none.item() == 0.0 and torch.count_nonzero(feats.grad) == 0
    with pytest.raises(InputError, match=r"outside \[0, 3\).*max 5"):
        classifier_loss_2d(feats, clf, torch.full((5, 6), 5))
    with pytest.raises(InputError, match="expected id_dim=4"):
        classifier_loss_2d(torch.randn(5, 6, 3), clf, torch.zeros(5, 6, dtype=torch.int64))
    plain = classifier_loss_2d(feats.double(), clf.double(), torch.zeros(5, 6, dtype=torch.int64))
    assert plain.dtype == torch.float64  # other dtypes: the PyTorch path


@pytest.mark.parametrize("k,ignored", [(5, 0.2), (1, 0.0)])
def test_fused_logits_loss_matches_autograd(k, ignored):
    """logits_loss_2d (bias added inside the kernel) against loss_2d(logits + bias) by autograd."""
    torch.manual_seed(k)
    clf_a, clf_b = IdentityClassifier(k, 16), IdentityClassifier(k, 16)
    clf_b.load_state_dict(clf_a.state_dict())
    z = torch.randn(30, 40, k) * 3
    target = torch.randint(0, k, (30, 40))
    target[torch.rand(30, 40) < ignored] = -1
    za, zb = z.clone().requires_grad_(True), z.clone().requires_grad_(True)
    fused = logits_loss_2d(za, clf_a, target.to(torch.uint8) if not ignored else target)
    plain = loss_2d(zb + clf_b.linear.bias, target)
    (3.0 * fused).backward()
    (3.0 * plain).backward()
    assert fused.item() == pytest.approx(plain.item(), abs=1e-5)
    assert torch.allclose(za.grad, zb.grad, rtol=0, atol=1e-6)
    assert torch.allclose(clf_a.linear.bias.grad, clf_b.linear.bias.grad, rtol=0, atol=1e-6)
    with pytest.raises(InputError, match=rf"outside \[0, {k}\)"):
        logits_loss_2d(za, clf_a, torch.full((30, 40), k))
