"""Gaussian Grouping training: identities separate objects; outputs survive a round trip."""

import math

import numpy as np
import torch

from gsgroup.data.scene import Scene, View
from gsgroup.geometry import look_at
from gsgroup.model import Gaussians, load_ply, save_ply
from gsgroup.model.sh import rgb_to_sh, sh_to_rgb
from gsgroup.render import dominant_gaussian, rasterize
from gsgroup.segment.grouping import (
    GroupingTrainer, gaussian_labels, load_labels, load_segmentation, object_summary, save_segmentation,
)
from gsgroup.segment.idmaps import render_ids
from gsgroup.train.densify import DensifyConfig
from gsgroup.train.trainer import TrainConfig, view_tensors


def two_blobs(n_per=150, seed=0):
    """Two separated clusters of Gaussians (red at x=-1, blue at x=+1) and each Gaussian's object id."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[-1.0, 0, 0], [1.0, 0, 0]])
    obj = torch.arange(2).repeat_interleave(n_per)
    means = centres[obj] + 0.3 * torch.randn(2 * n_per, 3, generator=g)
    colours = torch.tensor([[0.9, 0.1, 0.1], [0.1, 0.2, 0.9]])[obj]
    n = 2 * n_per
    quats = torch.zeros(n, 4)
    quats[:, 0] = 1
    gauss = Gaussians(
        means=means, quats=quats, scales=torch.full((n, 3), math.log(0.12)), opacities=torch.full((n,), 2.0),
        sh0=rgb_to_sh(colours)[:, None], shN=torch.zeros(n, 15, 3), ids=torch.randn(n, 16, generator=g) * 0.1,
    )
    return gauss, obj


def blob_scene(gauss, obj, n_views=8, w=64, h=48):
    """Views rendered from the Gaussians themselves; masks: object id + 1 of the dominant Gaussian, 0 = empty."""
    K = np.array([[60.0, 0, w / 2], [0, 60.0, h / 2], [0, 0, 1]], np.float32)
    means, quats, scales, opac = gauss.activated()
    rgb = sh_to_rgb(gauss.sh0[:, 0])
    views, masks = [], {}
    for i in range(n_views):
        a = 2 * math.pi * i / n_views
        V = look_at([6 * math.cos(a), 6 * math.sin(a), 2.0], (0.0, 0.0, 0.0)).astype(np.float32)
        out = rasterize(means, quats, scales, opac, rgb, torch.from_numpy(V), torch.from_numpy(K), w, h)
        dom = dominant_gaussian(means, quats, scales, opac, torch.from_numpy(V), torch.from_numpy(K), w, h).numpy()
        mask = np.where(dom >= 0, obj.numpy()[np.maximum(dom, 0)] + 1, 0).astype(np.int32)
        name = f"v{i:02d}"
        views.append(View(name, None, K, V, w, h, out.image.numpy()))
        masks[name] = mask
    scene = Scene(root=None, train=views, test=[], points=None, colors=None, extent=3.0,
                  center=np.zeros(3, np.float32), source="test")
    return scene, masks


def test_two_objects_separate_into_two_ids(tmp_path):
    gauss, obj = two_blobs()
    scene, masks = blob_scene(gauss, obj)
    densify = DensifyConfig(densify_until=0)
    cfg = TrainConfig(iterations=150, sh_degree=0, densify=densify, lr_means=1e-6, lr_means_final=1e-7)
    trainer = GroupingTrainer(scene, cfg, tmp_path, masks, gaussians=gauss)
    assert trainer.num_classes == 3  # largest id (2) + 1
    before = trainer.params["ids"].detach().clone()
    trainer.train(progress=False)
    assert not torch.equal(trainer.params["ids"].detach(), before)  # identity gradients reached the encodings
    labels, prob = gaussian_labels(trainer.params["ids"].detach(), trainer.classifier)
    for k in (0, 1):
        ids_k = labels[obj.numpy() == k]
        majority = np.bincount(ids_k).argmax()
        assert majority == k + 1
        assert (ids_k == majority).mean() > 0.95
    # rendered id maps agree with the masks where the render is opaque (elsewhere ids are 0 by design)
    r = render_ids(trainer.gaussians(), view_tensors(scene.train[0]), trainer.classifier)
    m = masks[scene.train[0].name]
    fg = (m > 0) & (r.alpha >= 0.5)
    assert fg.sum() > 300
    assert (r.ids[fg] == m[fg]).mean() > 0.95


def test_segmentation_outputs_survive_ply_round_trip(tmp_path):
    gauss, obj = two_blobs(n_per=40)
    from gsgroup.segment.identity import IdentityClassifier

    torch.manual_seed(0)
    clf = IdentityClassifier(3, 16)
    save_ply(tmp_path / "point_cloud.ply", gauss)
    save_segmentation(tmp_path, gauss, clf)
    reloaded = load_ply(tmp_path / "point_cloud.ply")
    clf2, labels_none = load_segmentation(tmp_path)
    assert labels_none is None
    a, pa = gaussian_labels(gauss.ids, clf)
    b, pb = gaussian_labels(reloaded.ids, clf2)
    assert np.array_equal(a, b) and np.array_equal(pa, pb)
    stored, prob = load_labels(tmp_path / "labels.npy")
    assert np.array_equal(stored, a) and np.array_equal(prob, pa)
    summary = object_summary(gauss, a)
    assert sum(v["gaussians"] for v in summary.values()) == len(gauss)
    for v in summary.values():
        assert all(lo <= hi for lo, hi in zip(v["bbox_min"], v["bbox_max"]))
