"""Identity losses (gsgroup.segment.identity) against hand computations and dense brute-force references."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from gsgroup.errors import InputError
from gsgroup.render import rasterize
from gsgroup.segment.identity import (
    IdentityClassifier,
    NeighbourIndex,
    classifier_logits,
    classifier_loss_2d,
    knn_indices,
    logits_loss_2d,
    loss_2d,
    loss_3d,
    num_classes_for,
)

# ----------------------------------------------------------------------------- classifier / loss_2d


def test_classifier_shapes_and_linearity():
    torch.manual_seed(0)
    clf = IdentityClassifier(num_classes=7, id_dim=16)
    x = torch.randn(5, 4, 16)
    y = clf(x)
    assert y.shape == (5, 4, 7)
    W, b = clf.linear.weight, clf.linear.bias
    assert torch.allclose(y, x @ W.T + b, atol=1e-6)
    assert clf(torch.randn(11, 16)).shape == (11, 7)
    with pytest.raises(InputError):
        clf(torch.randn(3, 8))


def test_num_classes_for():
    assert num_classes_for([np.array([[0, 3], [1, 0]]), None, np.array([[5, -1]])]) == 6
    assert num_classes_for([None]) == 1


def test_loss_2d_hand_computation():
    logits = torch.tensor([[[2.0, 0.0, -1.0], [0.5, 0.5, 0.5]], [[0.0, 1.0, 3.0], [1.0, -2.0, 0.0]]])
    target = torch.tensor([[0, 2], [1, -1]])

    # hand: -log softmax at the target, mean over the 3 non-ignored pixels, / ln 3
    def nll(row, t):
        row = [float(v) for v in row]
        return -(row[t] - math.log(sum(math.exp(v) for v in row)))

    expect = (nll([2, 0, -1], 0) + nll([0.5, 0.5, 0.5], 2) + nll([0, 1, 3], 1)) / 3 / math.log(3)
    got = loss_2d(logits, target)
    assert abs(float(got) - expect) < 1e-6
    # no ignore: all four pixels
    target2 = torch.tensor([[0, 2], [1, 0]])
    expect2 = (nll([2, 0, -1], 0) + nll([0.5, 0.5, 0.5], 2) + nll([0, 1, 3], 1) + nll([1, -2, 0], 0)) / 4 / math.log(3)
    assert abs(float(loss_2d(logits, target2)) - expect2) < 1e-6
    # custom ignore index
    t3 = torch.tensor([[0, 2], [1, 255]])
    assert abs(float(loss_2d(logits, t3, ignore_index=255)) - expect) < 1e-6


def test_loss_2d_edge_cases():
    logits = torch.randn(3, 4, 5, requires_grad=True)
    all_ignored = torch.full((3, 4), -1)
    z = loss_2d(logits, all_ignored)
    assert float(z.detach()) == 0.0
    z.backward()
    assert logits.grad is not None and float(logits.grad.abs().sum()) == 0.0
    with pytest.raises(InputError, match="outside"):
        loss_2d(logits, torch.full((3, 4), 5))
    with pytest.raises(InputError):
        loss_2d(logits, torch.zeros(4, 3, dtype=torch.long))
    one = torch.randn(2, 2, 1)
    assert float(loss_2d(one, torch.zeros(2, 2, dtype=torch.long))) == 0.0


def test_loss_2d_gradcheck():
    torch.manual_seed(1)
    logits = torch.randn(3, 2, 4, dtype=torch.float64, requires_grad=True)
    target = torch.tensor([[0, 3], [-1, 1], [2, 2]])
    assert torch.autograd.gradcheck(lambda x: loss_2d(x, target), (logits,))


def _cam(width, height):
    V = torch.eye(4)
    V[2, 3] = 4.0  # camera at z = -4 looking at +z
    f = 0.9 * width
    K = torch.tensor([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]], dtype=torch.float32)
    return V, K


def test_identity_gradients_through_rasterizer():
    """loss_2d on a rendered identity map sends gradients to the per-Gaussian encodings (checked
    against a finite difference) and to the classifier."""
    torch.manual_seed(0)
    n, w, h = 12, 32, 24
    means = torch.cat([torch.rand(n, 2) * 1.6 - 0.8, torch.rand(n, 1) * 0.5], 1)
    quats = torch.zeros(n, 4)
    quats[:, 0] = 1
    scales = torch.full((n, 3), 0.25)
    opac = torch.full((n,), 0.7)
    ids = torch.randn(n, 16, requires_grad=True)
    clf = IdentityClassifier(num_classes=3, id_dim=16)
    V, K = _cam(w, h)
    target = torch.zeros(h, w, dtype=torch.long)
    target[:, w // 2 :] = 1
    target[h // 2 :, :4] = 2

    def loss_fn(e):
        img = rasterize(means, quats, scales, opac, e, V, K, w, h).image
        return loss_2d(clf(img), target)

    loss = loss_fn(ids)
    loss.backward()
    g = ids.grad
    assert g is not None and float(g.abs().max()) > 0
    assert clf.linear.weight.grad is not None and float(clf.linear.weight.grad.abs().max()) > 0
    # finite difference along the gradient direction
    d = g / g.norm()
    eps = 1e-2
    with torch.no_grad():
        fd = (float(loss_fn(ids + eps * d)) - float(loss_fn(ids - eps * d))) / (2 * eps)
    assert abs(fd - float((g * d).sum())) < 2e-3 * max(1.0, abs(fd))


def test_rendered_logits_equal_the_classifier_on_rendered_encodings():
    """What GroupingTrainer renders when K < id_dim: per-Gaussian logits W e blended, plus the bias,
    give the same loss and the same gradients for the encodings, the classifier and the geometry
    as the classifier applied to the blended encodings (the original formulation)."""
    torch.manual_seed(1)
    n, w, h = 12, 32, 24
    means = torch.cat([torch.rand(n, 2) * 1.6 - 0.8, torch.rand(n, 1) * 0.5], 1)
    quats = torch.nn.functional.normalize(torch.randn(n, 4), dim=1)
    scales = torch.rand(n, 3) * 0.2 + 0.1
    opac = torch.rand(n) * 0.8 + 0.1
    ids0 = torch.randn(n, 16)
    target = torch.randint(0, 4, (h, w))
    V, K = _cam(w, h)
    results = []
    for logits_first in (False, True):
        torch.manual_seed(2)
        clf = IdentityClassifier(num_classes=4, id_dim=16)
        ids = ids0.clone().requires_grad_(True)
        mu = means.clone().requires_grad_(True)
        feats = classifier_logits(ids, clf) if logits_first else ids
        img = rasterize(mu, quats, scales, opac, feats, V, K, w, h).image
        loss = logits_loss_2d(img, clf, target) if logits_first else classifier_loss_2d(img, clf, target)
        loss.backward()
        results.append((loss.detach(), ids.grad, mu.grad, clf.linear.weight.grad, clf.linear.bias.grad))
    for a, b in zip(*results):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6 * max(1.0, float(b.abs().max())))


# ----------------------------------------------------------------------------- loss_3d


def brute_loss_3d(ids, means, clf, sample, k):
    """The original loss_cls_3d math, dense: cdist [m,N] + topk, all in float64, without lambda."""
    probs = torch.softmax(clf(ids), dim=-1)
    d = torch.cdist(means[sample], means)
    _, nbr = d.topk(k, largest=False)
    ps = probs[sample].unsqueeze(1)
    pn = probs[nbr]
    kl = ps * (torch.log(ps + 1e-10) - torch.log(pn + 1e-10))
    return kl.sum(-1).mean() / probs.shape[1], nbr


def test_knn_indices_match_brute_force():
    rng = np.random.default_rng(3)
    pts = rng.normal(size=(500, 3))
    q = rng.choice(500, 60, replace=False)
    idx = knn_indices(cKDTree(pts), pts[q], 6)
    d = np.linalg.norm(pts[q][:, None] - pts[None], axis=-1)
    ref = np.argsort(d, axis=1, kind="stable")[:, :6]
    assert np.array_equal(idx, ref)
    assert np.array_equal(idx[:, 0], q)  # each point finds itself first


def test_loss_3d_equals_brute_force_and_gradients():
    torch.manual_seed(0)
    n, k, m = 400, 5, 50
    means = torch.randn(n, 3, dtype=torch.float64)
    ids = torch.randn(n, 16, dtype=torch.float64, requires_grad=True)
    clf = IdentityClassifier(num_classes=6).double()
    gen = torch.Generator().manual_seed(7)
    sample = torch.randperm(n, generator=torch.Generator().manual_seed(7))[:m]
    got = loss_3d(ids, means, clf, k=k, m=m, generator=gen)
    ref, _ = brute_loss_3d(ids, means, clf, sample, k)
    assert abs(got.item() - ref.item()) < 1e-12 * max(1.0, abs(ref.item()))
    assert got.item() > 0
    # gradients equal the dense reference's, for ids and the classifier
    g_ids, g_w = torch.autograd.grad(got, [ids, clf.linear.weight])
    r_ids, r_w = torch.autograd.grad(ref, [ids, clf.linear.weight])
    assert torch.allclose(g_ids, r_ids, atol=1e-12, rtol=1e-9)
    assert torch.allclose(g_w, r_w, atol=1e-12, rtol=1e-9)
    assert float(g_ids.abs().sum()) > 0
    # same result with a prebuilt index / explicit sample
    idx = NeighbourIndex()
    again = loss_3d(ids, means, clf, k=k, sample=sample, tree=idx)
    assert abs(again.item() - ref.item()) < 1e-12
    assert idx.builds == 1
    loss_3d(ids, means, clf, k=k, sample=sample, tree=idx)
    assert idx.builds == 1  # same N: reused
    loss_3d(ids[:300], means[:300], clf, k=k, m=20, tree=idx)
    assert idx.builds == 2  # N changed: rebuilt
    idx.invalidate()
    idx.get(means[:300])
    assert idx.builds == 3


def test_loss_3d_zero_for_constant_predictions_and_small_n():
    clf = IdentityClassifier(num_classes=4)
    ids = torch.ones(30, 16)
    means = torch.randn(30, 3)
    assert abs(loss_3d(ids, means, clf, k=5, m=10).item()) < 1e-7
    # fewer points than k or m: clipped
    assert torch.isfinite(loss_3d(torch.randn(3, 16), torch.randn(3, 3), clf, k=5, m=10))
    with pytest.raises(InputError):
        loss_3d(torch.randn(5, 16), torch.randn(5, 3), clf, tree=cKDTree(np.zeros((4, 3))))


def test_loss_3d_memory_is_flat_for_2m_points():
    """N = 2M, m = 1000: a dense cdist would need N*m*4 = 8 GB; the KD-tree version stays far below."""
    code = textwrap.dedent("""
        import resource, torch
        from gsgroup.segment.identity import IdentityClassifier, loss_3d
        n, m = 2_000_000, 1000
        g = torch.Generator().manual_seed(0)
        means = torch.rand(n, 3, generator=g)
        ids = torch.randn(n, 16, generator=g).requires_grad_(True)
        clf = IdentityClassifier(num_classes=64)
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        loss = loss_3d(ids, means, clf, k=5, m=m, generator=g)
        loss.backward()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print((peak - base) * 1024, float(loss.detach()))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    growth, value = out.stdout.split()
    dense = 2_000_000 * 1000 * 4
    # tree (~100 MB) + ids.grad (128 MB) + scipy query buffers; the dense [m,N] matrix alone is 8 GB
    assert float(growth) < dense / 16, f"RSS grew by {float(growth) / 2**20:.0f} MiB"
    assert np.isfinite(float(value))
