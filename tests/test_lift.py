"""Closed-form label lifting (gsgroup.segment.lift) on a tiny hand-built scene."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from gsgroup.errors import InputError
from gsgroup.geometry import look_at
from gsgroup.model.gaussians import Gaussians
from gsgroup.render import contributions, dominant_gaussian
from gsgroup.segment.lift import accumulate_weights, assign_labels, lift_labels


def make_gaussians(means, scales, opacity=0.9):
    n = len(means)
    quats = torch.zeros(n, 4)
    quats[:, 0] = 1
    return Gaussians(
        means=torch.as_tensor(means, dtype=torch.float32),
        quats=quats,
        scales=torch.log(torch.as_tensor(scales, dtype=torch.float32)),
        opacities=torch.full((n,), math.log(opacity / (1 - opacity))),
        sh0=torch.zeros(n, 1, 3),
        shN=torch.zeros(n, 0, 3),
        ids=torch.zeros(n, 0),
    )


def make_view(name, V, width=64, height=48, fov_scale=0.9):
    f = fov_scale * width
    K = np.array([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]], np.float32)
    return SimpleNamespace(name=name, K=K, viewmat=V, width=width, height=height, image=None)


def two_objects_scene(seed=0):
    """A floor (label 0) and two separated spheres of Gaussians floating above it (labels 1, 2)."""
    rng = np.random.default_rng(seed)
    g = np.linspace(-2, 2, 41)
    fx, fy = np.meshgrid(g, g)
    floor = np.c_[fx.ravel(), fy.ravel(), np.zeros(fx.size)]
    floor_s = np.tile([0.06, 0.06, 0.01], (len(floor), 1))
    objs, labs = [floor], [np.zeros(len(floor), np.int64)]
    scales = [floor_s]
    for lab, c in ((1, (-0.9, 0.0, 0.7)), (2, (0.9, 0.2, 0.6))):
        d = rng.normal(size=(500, 3))
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        objs.append(np.asarray(c) + 0.35 * d)
        labs.append(np.full(500, lab, np.int64))
        scales.append(np.full((500, 3), 0.05))
    means = np.concatenate(objs)
    return make_gaussians(means, np.concatenate(scales)), np.concatenate(labs)


def ring_views(n=6, radius=4.0, heights=(0.8, 2.5), width=96, height=72):
    """n cameras on a ring per height, looking at the scene centre (low ones see under the spheres)."""
    views = []
    for j, hz in enumerate(heights):
        for i in range(n):
            a = 2 * math.pi * (i + 0.5 * j) / n
            eye = (radius * math.cos(a), radius * math.sin(a), hz)
            views.append(make_view(f"v{j}_{i:02d}", look_at(eye, (0, 0, 0.3)).astype(np.float32), width, height))
    return views


def render_true_masks(views, gaussians, true_labels):
    """Mask per view: the true label of each pixel's dominant Gaussian (0 where none)."""
    means, quats, scales, opac = gaussians.activated()
    out = {}
    for v in views:
        dom = dominant_gaussian(
            means, quats, scales, opac, torch.from_numpy(v.viewmat), torch.from_numpy(v.K), v.width, v.height
        ).numpy()
        out[v.name] = np.where(dom >= 0, true_labels[np.maximum(dom, 0)], 0)
    return out


def test_lift_recovers_true_labels():
    gs, truth = two_objects_scene()
    views = ring_views()
    masks = render_true_masks(views, gs, truth)
    assert set(np.unique(np.stack(list(masks.values()))).tolist()) == {0, 1, 2}
    assert all(len(np.unique(m)) >= 2 for m in masks.values())
    A = accumulate_weights(views, gs, masks, progress=False)
    visible = A.sum(1) > 0
    assert visible.sum() > 0.8 * len(truth)
    for bias in (0.0, 0.1):
        labels, prob = lift_labels(views, gs, masks, background_bias=bias, progress=False)
        assert labels.dtype == np.int64 and prob.dtype == np.float32 and labels.shape == truth.shape
        acc = np.mean(labels[visible] == truth[visible])
        assert acc >= 0.99, f"bias {bias}: accuracy {acc:.4f}"
        assert np.all((prob[visible] > 0) & (prob[visible] <= 1 + 1e-6))
        assert np.all(labels[~visible] == 0) and np.all(prob[~visible] == 0)


def test_accumulate_weights_sums_views_and_skips_unmasked():
    gs, truth = two_objects_scene()
    views = ring_views(2)
    masks = render_true_masks(views, gs, truth)
    means, quats, scales, opac = gs.activated()
    ref = sum(
        contributions(
            means,
            quats,
            scales,
            opac,
            torch.from_numpy(v.viewmat),
            torch.from_numpy(v.K),
            v.width,
            v.height,
            torch.from_numpy(masks[v.name]),
            num_labels=3,
        )
        .double()
        .numpy()
        for v in views[:3]
    )
    part = dict(masks)
    part[views[3].name] = None  # a view without masks is skipped
    A = accumulate_weights(views, gs, part, progress=False)
    assert np.allclose(A, ref, rtol=1e-6, atol=1e-9)
    # an all-ignore mask (-1) adds nothing; num_labels may exceed the ids
    part[views[3].name] = np.full((views[3].height, views[3].width), -1)
    A2 = accumulate_weights(views, gs, part, num_labels=5, progress=False)
    assert A2.shape == (len(truth), 5)
    assert np.allclose(A2[:, :3], ref, rtol=1e-6, atol=1e-9) and np.all(A2[:, 3:] == 0)


def test_assign_labels_rule_by_hand():
    A = np.array(
        [
            [0.48, 0.52, 0.0],  # nearly even: object without bias, background with bias 0.1
            [0.10, 0.30, 0.60],  # clear object 2
            [0.0, 0.0, 0.0],  # never seen
            [2.0, 1.0, 1.0],  # background majority
        ]
    )
    lab0, p0 = assign_labels(A, background_bias=0.0)
    assert lab0.tolist() == [1, 2, 0, 0]
    assert np.allclose(p0, [0.52, 0.60, 0.0, 0.5])
    lab1, p1 = assign_labels(A, background_bias=0.1)
    assert lab1.tolist() == [0, 2, 0, 0]
    assert np.allclose(p1, [0.48, 0.60, 0.0, 0.5])
    labn, _ = assign_labels(A, background_bias=-0.3)  # negative: favours objects
    assert labn.tolist() == [1, 2, 0, 1]


def test_background_bias_flips_an_evenly_split_gaussian():
    """One Gaussian straddling a mask edge: ~55% of its weight on object pixels."""
    gs = make_gaussians(np.array([[0.0, 0.0, 0.0], [0.0, 0.0, -10.0]]), np.full((2, 3), 0.3))
    V = np.eye(4, dtype=np.float32)
    V[2, 3] = 3.0
    view = make_view("a", V, width=40, height=40)
    mask = np.zeros((40, 40), np.int64)
    mask[:, :21] = 1  # the Gaussian projects to the centre x = 20: columns < 21 are object
    A = accumulate_weights([view], gs, {"a": mask}, progress=False)
    share = A[0, 1] / A[0].sum()
    assert 0.5 < share < 0.65
    lab, prob = lift_labels([view], gs, {"a": mask}, background_bias=0.0, progress=False)
    assert lab[0] == 1 and abs(prob[0] - share) < 1e-6
    lab, prob = lift_labels([view], gs, {"a": mask}, background_bias=0.3, progress=False)
    assert lab[0] == 0 and abs(prob[0] - (1 - share)) < 1e-6
    # the second Gaussian is behind the camera: invisible
    assert A[1].sum() == 0 and lab[1] == 0 and prob[1] == 0


def test_lift_input_errors():
    gs, _ = two_objects_scene()
    views = ring_views(2, heights=(2.5,))
    with pytest.raises(InputError, match="no view has a mask"):
        lift_labels(views, gs, {}, progress=False)
    with pytest.raises(InputError, match="v0_00"):
        lift_labels(views, gs, {"v0_00": np.zeros((10, 10), np.int64)}, progress=False)
    with pytest.raises(InputError, match="num_labels"):
        lift_labels(views, gs, {"v0_00": np.full((72, 96), 4)}, num_labels=3, progress=False)
