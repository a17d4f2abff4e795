"""gsgroup.train.losses against independent references: SSIM vs scikit-image / a float64 SciPy SSIM,
PSNR vs its definition, and the 3DGS photometric loss as the weighted sum of L1 and 1 - SSIM."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gsgroup.train.losses import alpha_entropy, psnr, rgb_loss, ssim
from reference_ssim import RADIUS, skimage_ssim_map, ssim_map_zero_pad

H, W = 44, 58
TOL = 5e-5  # float32 SSIM vs float64 references; a sigma of 1.3 instead of 1.5 moves these pairs by >= 1e-3


def _pairs():
    """(name, img, ref) pairs [H,W,3] in [0,1]: random and structured, similar and dissimilar."""
    rng = np.random.default_rng(3)
    v, u = np.mgrid[0:H, 0:W] / np.array([H, W])[:, None, None]
    grad = np.stack([u, v, 0.5 * (u + v)], 2)
    checker = np.repeat(((np.indices((H, W)) // 4).sum(0) % 2)[:, :, None], 3, 2).astype(np.float64)
    edge = np.zeros((H, W, 3))
    edge[:, W // 2 :] = [0.9, 0.6, 0.2]
    rings = 0.5 + 0.5 * np.sin(40 * np.hypot(u - 0.4, v - 0.6))[:, :, None] * np.array([1.0, 0.7, -0.5])
    noise = rng.uniform(0, 1, (H, W, 3))
    yield "noise vs noise", noise, rng.uniform(0, 1, (H, W, 3))
    yield "noise vs noisy copy", noise, np.clip(noise + rng.normal(0, 0.1, noise.shape), 0, 1)
    yield "gradient vs darker gradient", grad, 0.7 * grad + 0.05
    yield "checker vs shifted checker", checker, np.roll(checker, 2, axis=1)
    yield "checker vs low contrast", checker, 0.4 + 0.2 * checker
    yield "edge vs shifted edge", edge, np.roll(edge, 3, axis=1)
    yield "rings vs rings + noise", rings, np.clip(rings + rng.normal(0, 0.05, rings.shape), 0, 1)
    yield "constant vs constant", np.full((H, W, 3), 0.3), np.full((H, W, 3), 0.6)
    yield "identical", rings, rings.copy()


PAIRS = list(_pairs())
IDS = [p[0] for p in PAIRS]


def _t(a):
    return torch.from_numpy(np.ascontiguousarray(a, np.float32))


@pytest.mark.parametrize("name,img,ref", PAIRS, ids=IDS)
def test_reference_ssim_matches_skimage_on_interior(name, img, ref):
    """The zero-padded float64 reference equals scikit-image's SSIM map away from the borders."""
    r = RADIUS
    ours, sk = ssim_map_zero_pad(img, ref), skimage_ssim_map(img, ref)
    assert np.allclose(ours[r:-r, r:-r], sk[r:-r, r:-r], rtol=0, atol=1e-10)


@pytest.mark.parametrize("name,img,ref", PAIRS, ids=IDS)
def test_ssim_matches_skimage_where_padding_cannot_matter(name, img, ref):
    """Keep ``ref`` equal to ``img`` in a 2*RADIUS-pixel frame: every window reaching past the image border
    then sees identical images (SSIM 1 whatever the padding), so the mean over the whole skimage map must
    equal gsgroup's mean SSIM."""
    b = 2 * RADIUS
    mixed = img.copy()
    mixed[b:-b, b:-b] = ref[b:-b, b:-b]
    sk = skimage_ssim_map(img, mixed)
    assert np.allclose(sk[:RADIUS], 1) and np.allclose(sk[:, -RADIUS:], 1)  # the premise
    got = ssim(_t(img), _t(mixed)).item()
    assert got == pytest.approx(sk.mean(), abs=TOL), name


@pytest.mark.parametrize("name,img,ref", PAIRS, ids=IDS)
def test_ssim_matches_zero_padded_reference(name, img, ref):
    got = ssim(_t(img), _t(ref)).item()
    expect = ssim_map_zero_pad(img, ref).mean()
    assert got == pytest.approx(expect, abs=TOL), name
    if name == "identical":
        assert got == pytest.approx(1.0, abs=1e-6)


def test_ssim_single_channel_and_order():
    rng = np.random.default_rng(7)
    a, b = rng.uniform(0, 1, (H, W, 1)), rng.uniform(0, 1, (H, W, 1))
    b = 0.5 * a + 0.5 * b
    expect = ssim_map_zero_pad(a, b).mean()
    assert ssim(_t(a), _t(b)).item() == pytest.approx(expect, abs=TOL)
    assert ssim(_t(b), _t(a)).item() == pytest.approx(expect, abs=TOL)  # symmetric


def test_psnr_and_rgb_loss_against_definitions():
    rng = np.random.default_rng(11)
    a = rng.uniform(0, 1, (H, W, 3))
    b = np.clip(a + rng.normal(0, 0.05, a.shape), 0, 1)
    assert psnr(_t(a), _t(b)) == pytest.approx(-10 * math.log10(np.mean((a - b) ** 2)), abs=1e-4)
    over = a.copy()
    over[:4] = 1.7  # psnr clamps the render to [0, 1] first
    assert psnr(_t(over), _t(b)) == pytest.approx(-10 * math.log10(np.mean((np.clip(over, 0, 1) - b) ** 2)), abs=1e-4)
    assert psnr(_t(a), _t(a)) == float("inf")
    w = 0.2
    expect = (1 - w) * np.abs(a - b).mean() + w * (1 - ssim_map_zero_pad(a, b).mean())
    assert rgb_loss(_t(a), _t(b), w).item() == pytest.approx(expect, abs=TOL)


def test_alpha_entropy_analytic_values_and_push():
    """Binary entropy by hand: 0 for empty or covered pixels, ln 2 at 1/2; its gradient moves alpha
    away from 1/2 (down below it, up above it)."""
    a = torch.tensor([[0.0, 1.0], [0.5, 0.25]], requires_grad=True)
    h = lambda p: -(p * math.log(p) + (1 - p) * math.log(1 - p))  # noqa: E731
    expected = (0.0 + 0.0 + math.log(2) + h(0.25)) / 4
    value = alpha_entropy(a)
    assert value.item() == pytest.approx(expected, abs=1e-4)
    value.backward()
    assert a.grad[1, 0].abs() < 1e-6  # a stationary point at 1/2
    assert a.grad[1, 1].item() == pytest.approx(math.log(3) / 4, rel=1e-4)  # d/da = ln((1-a)/a), mean of 4
    b = torch.tensor([0.3, 0.7], requires_grad=True)
    alpha_entropy(b).backward()
    assert b.grad[0] > 0 and b.grad[1] < 0  # gradient descent lowers 0.3 and raises 0.7
