"""Gaussian Grouping training: identities separate objects; outputs survive a round trip."""

import json
import math

import numpy as np
import torch

from gsgroup.data.scene import Scene, View
from gsgroup.geometry import look_at
from gsgroup.model import Gaussians
from gsgroup.model.sh import rgb_to_sh, sh_to_rgb
from gsgroup.render import dominant_gaussian, rasterize
from gsgroup.run import Run, RunConfig
from gsgroup.segment.grouping import GroupingTrainer
from gsgroup.segment.idmaps import render_ids
from gsgroup.segment.segmentation import Segmentation, load_labels
from gsgroup.train.config import TrainConfig
from gsgroup.train.densify import DensifyConfig
from gsgroup.train.trainer import view_tensors


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
        means=means,
        quats=quats,
        scales=torch.full((n, 3), math.log(0.12)),
        opacities=torch.full((n,), 2.0),
        sh0=rgb_to_sh(colours)[:, None],
        shN=torch.zeros(n, 15, 3),
        ids=torch.randn(n, 16, generator=g) * 0.1,
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
    scene = Scene(
        root=None,
        train=views,
        test=[],
        points=None,
        colors=None,
        extent=3.0,
        center=np.zeros(3, np.float32),
        source="test",
    )
    return scene, masks


def test_two_objects_separate_into_two_ids(tmp_path):
    gauss, obj = two_blobs()
    scene, masks = blob_scene(gauss, obj)
    densify = DensifyConfig(densify_until=0)
    cfg = TrainConfig(iterations=150, sh_degree=0, densify=densify, lr_means=1e-6, lr_means_final=1e-7)
    trainer = GroupingTrainer(scene, cfg, masks, gaussians=gauss)
    assert trainer.num_classes == 3  # largest id (2) + 1
    before = trainer.params["ids"].detach().clone()
    trainer.train(progress=False)
    assert not torch.equal(trainer.params["ids"].detach(), before)  # identity gradients reached the encodings
    labels, _ = Segmentation(trainer.classifier).label(trainer.gaussians())
    for k in (0, 1):
        ids_k = labels[obj.numpy() == k]
        majority = np.bincount(ids_k).argmax()
        assert majority == k + 1
        assert (ids_k == majority).mean() > 0.95
    # rendered id maps agree with the masks where the render is opaque (elsewhere ids are 0 by design)
    r = render_ids(trainer.gaussians(), view_tensors(scene.train[0]), Segmentation(trainer.classifier))
    m = masks[scene.train[0].name]
    fg = (m > 0) & (r.alpha >= 0.5)
    assert fg.sum() > 300
    assert (r.ids[fg] == m[fg]).mean() > 0.95


def test_segmentation_outputs_survive_ply_round_trip(tmp_path):
    gauss, obj = two_blobs(n_per=40)
    from gsgroup.segment.identity import IdentityClassifier

    torch.manual_seed(0)
    clf = IdentityClassifier(3, 16)
    run = Run.create(tmp_path, RunConfig())
    run.save_gaussians(gauss)
    run.save_segmentation(Segmentation(clf))
    reloaded = Run.open(tmp_path)
    assert reloaded.segmentation.classifier is not None and reloaded.segmentation.labels is None
    with torch.no_grad():  # independent of Segmentation.label: softmax of the linear layer by hand
        p = torch.softmax(gauss.ids @ clf.linear.weight.T + clf.linear.bias, dim=-1)
    pa, a = p.max(dim=-1)
    b, pb = reloaded.labels
    assert np.array_equal(a.numpy(), b) and np.allclose(pa.numpy(), pb, atol=1e-6)
    stored, prob = load_labels(tmp_path / Run.LABELS)
    assert np.array_equal(stored, b) and np.array_equal(prob, pb)
    summary = json.loads((tmp_path / Run.OBJECTS).read_text())
    assert set(summary) == {str(i) for i in np.unique(b)}
    assert sum(v["gaussians"] for v in summary.values()) == len(gauss)
    for v in summary.values():
        assert all(lo <= hi for lo, hi in zip(v["bbox_min"], v["bbox_max"]))


def test_identity_training_resumes_exactly(tmp_path):
    """Stopped half-way and resumed from its checkpoint, identity training ends where an uninterrupted
    run does (the L3d KD-tree is rebuilt only now and then, so its build positions are saved too)."""
    gauss, obj = two_blobs(n_per=60)
    scene, masks = blob_scene(gauss, obj, n_views=4, w=40, h=30)
    # positions move fast, so a KD-tree rebuilt at resume would find other neighbours
    cfg = TrainConfig(
        iterations=40, sh_degree=0, densify=DensifyConfig(densify_until=0), lr_means=0.02, lr_means_final=0.02
    )

    whole = GroupingTrainer(scene, cfg, masks, gaussians=gauss)
    whole.train(progress=False)
    first = GroupingTrainer(scene, cfg, masks, gaussians=gauss)
    first.train(iterations=22, progress=False)
    first.save_checkpoint(tmp_path / "ck.pt")
    second = GroupingTrainer(scene, cfg, masks, gaussians=gauss)
    second.load_checkpoint(tmp_path / "ck.pt")
    second.train(progress=False)
    for k in whole.params:
        assert torch.equal(whole.params[k], second.params[k]), k
    for k, v in whole.classifier.state_dict().items():
        assert torch.equal(v, second.classifier.state_dict()[k]), k
