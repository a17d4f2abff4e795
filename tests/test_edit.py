"""Object edits: selection, SH rotation, remove / recolor / transform / duplicate / compose / export /
inpaint, checked against the built-in scene's ground truth on held-out views.

The module fixture builds a tiny segmented run without training: the synthetic scene at 64x48, one
Gaussian per pixel of a few training views back-projected with the exact ground-truth depth, coloured
from the image, with identity encodings 4*onehot(gt id) and an identity classifier W = [I | 0].
"""

from __future__ import annotations

import argparse
import colorsys
import json
import math
import re

import numpy as np
import pytest
import torch

from gsgroup import edit
from gsgroup.data.synthetic import make_scene
from gsgroup.edit import ops
from gsgroup.edit.commands import add_edit_commands
from gsgroup.edit.inpainting import (
    dilate_mask,
    fill_depth,
    hole_mask,
    psnr_in,
)
from gsgroup.edit.select import (
    cleanup_3d,
    ids_in_mask,
    make_selection,
    select_gaussians,
)
from gsgroup.edit.shrot import euler_deg_to_matrix, rotate_sh
from gsgroup.errors import InputError
from gsgroup.geometry import quat_multiply, quat_to_rotmat, rotmat_to_quat
from gsgroup.model import Gaussians, load_ply
from gsgroup.model.ply import ply_property_names
from gsgroup.model.sh import eval_sh, rgb_to_sh
from gsgroup.render import rasterize
from gsgroup.run import DataConfig, Run, RunConfig
from gsgroup.segment.identity import IdentityClassifier
from gsgroup.segment.idmaps import render_ids
from gsgroup.segment.segmentation import Segmentation, load_labels
from gsgroup.train.config import TrainConfig
from gsgroup.train.trainer import render_view, view_tensors

W, H, NVIEWS = 64, 48, 16
K_CLASSES = 7


def _read_rgb(path):
    import cv2

    return cv2.imread(str(path))[:, :, ::-1].astype(np.float32) / 255.0


def build_run(scene, run, stride_views=2):
    """A segmented run of ``scene`` made from ground truth (see the module docstring)."""
    from gsgroup.data.scene import load_scene

    sc = load_scene(scene, eval=True, progress=False)
    pts, cols, labs, sizes = [], [], [], []
    import cv2

    for view in sc.train[::stride_views]:
        depth = np.load(scene / "depth" / f"{view.name}.npy")
        mask = cv2.imread(str(scene / "gt_mask" / f"{view.name}.png"), cv2.IMREAD_UNCHANGED)
        v, u = np.nonzero(depth > 0)
        z = depth[v, u].astype(np.float64)
        K = np.asarray(view.K, np.float64)
        cam = np.stack([(u + 0.5 - K[0, 2]) / K[0, 0] * z, (v + 0.5 - K[1, 2]) / K[1, 1] * z, z], 1)
        R, t = view.viewmat[:3, :3].astype(np.float64), view.viewmat[:3, 3].astype(np.float64)
        pts.append((cam - t) @ R)
        cols.append(view.image[v, u])
        labs.append(mask[v, u].astype(np.int64))
        sizes.append(z / K[0, 0])
    pts, cols, labs, sizes = map(np.concatenate, (pts, cols, labs, sizes))
    n = len(pts)
    quats = torch.zeros(n, 4)
    quats[:, 0] = 1
    enc = torch.zeros(n, 16)
    enc[torch.arange(n), torch.from_numpy(labs)] = 4.0
    g = Gaussians(
        means=torch.from_numpy(pts).float(),
        quats=quats,
        scales=torch.log(torch.from_numpy(0.7 * sizes).float())[:, None].repeat(1, 3),
        opacities=torch.full((n,), 3.0),
        sh0=rgb_to_sh(torch.from_numpy(cols).float())[:, None],
        shN=torch.zeros(n, 15, 3),
        ids=enc,
    )
    clf = IdentityClassifier(K_CLASSES, 16)
    with torch.no_grad():
        clf.linear.weight.copy_(torch.eye(K_CLASSES, 16))
        clf.linear.bias.zero_()
    run.mkdir(parents=True, exist_ok=True)
    r = Run.create(run, RunConfig(DataConfig(str(scene), eval=True), TrainConfig(sh_degree=3)))
    r.save_gaussians(g)
    r.save_segmentation(Segmentation(clf), g)
    return run


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("edit")
    scene = make_scene(root / "scene", seed=0, width=W, height=H, n_views=NVIEWS, progress=False)
    run = build_run(scene, root / "run")
    return {"root": root, "scene": scene, "run": run, "data": Run.open(run)}


def cli(argv):
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    add_edit_commands(sub)
    args = parser.parse_args(argv)
    return args.func(args)


def render_rgb(g, view, background):
    """RGB render [H,W,3] of Gaussians g in one view."""
    return render_view(g, view_tensors(view), g.sh_degree, background=background).image.clamp(0, 1).numpy()


def id_map(g, seg, view, background):
    """Rendered ids [H,W] of Gaussians g with segmentation seg."""
    return render_ids(g, view_tensors(view), seg, background=background).ids


def footprint(data, view, oid, px=2):
    ids = id_map(data.gaussians, data.segmentation, view, data.backdrop)
    return ids == oid, dilate_mask(ids == oid, px)


def tiny_gt_mask(tiny, view):
    import cv2

    return cv2.imread(str(tiny["scene"] / "gt_mask" / f"{view.name}.png"), cv2.IMREAD_UNCHANGED)


def psnr(a, b, mask):
    return psnr_in(a, b, mask)


# ----------------------------------------------------------------------------- SH rotation


@pytest.mark.parametrize("angles", [(0, 0, 90), (30, -50, 110), (180, 0, 0), (12.5, 77, -140)])
def test_sh_rotation_analytic(angles):
    """Rotated coefficients evaluated at d == original evaluated at R^T d, for every degree."""
    R = euler_deg_to_matrix(*angles)
    gen = torch.Generator().manual_seed(1)
    c = torch.randn(300, 16, 3, generator=gen, dtype=torch.float64) * 0.15
    d = torch.nn.functional.normalize(torch.randn(300, 3, generator=gen, dtype=torch.float64), dim=1)
    rot = c.clone()
    rot[:, 1:] = rotate_sh(c[:, 1:], R)
    for deg in (1, 2, 3):
        assert torch.allclose(eval_sh(deg, rot, d), eval_sh(deg, c, d @ torch.from_numpy(R)), atol=1e-10)
    # z-rotation by 90 deg, degree 1 by hand: basis (-y, z, -x) -> with R: x->y, y->-x
    R90 = euler_deg_to_matrix(0, 0, 90)
    one = torch.zeros(1, 3, 3, dtype=torch.float64)
    one[0, 2, 0] = 1.0  # pure -C1*x lobe (coefficient index 3 -> shN index 2)
    out = rotate_sh(one, R90)
    # f(d) = -C1 x ; f'(d) = f(R^T d) = -C1 (R^T d)_x = -C1 y  -> coefficient index 1 (shN index 0)
    assert torch.allclose(out[0, :, 0], torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64), atol=1e-10)


def test_quaternion_composition_matches_matrices():
    R = euler_deg_to_matrix(20, 40, -60)
    q = torch.nn.functional.normalize(torch.randn(50, 4, generator=torch.Generator().manual_seed(2)), dim=1)
    qr = torch.from_numpy(rotmat_to_quat(R)).float()
    got = quat_to_rotmat(quat_multiply(qr, q))
    want = torch.from_numpy(R).float() @ quat_to_rotmat(q)
    assert torch.allclose(got, want, atol=1e-5)


# ----------------------------------------------------------------------------- selection


def test_selection_by_id_pick_and_mask(tiny):
    data = tiny["data"]
    labels = data.labels[0]
    sel = edit.select(data, objects=[1])
    assert np.array_equal(sel.mask, labels == 1)
    info = sel.describe(data.gaussians)
    assert info["ids"] == [1] and info["gaussians"] == int((labels == 1).sum()) and len(info["bbox_min"]) == 3
    view = data.views("test")[0]
    ids = id_map(data.gaussians, data.segmentation, view, data.backdrop)
    assert np.array_equal(edit.id_map(data, view.name), ids)
    ys, xs = np.nonzero(ids == 4)
    assert edit.select(data, pick=(view.name, xs[len(xs) // 2], ys[len(ys) // 2])).ids == [4]
    mask = dilate_mask(ids == 5, 1)
    assert ids_in_mask(ids, mask) == [5]
    assert edit.select(data, mask=(view.name, mask)).ids == [5]
    # picking a background pixel (id 0 in the id map) or one outside the image is refused, naming the pick
    by, bx = np.argwhere(ids == 0)[0]
    with pytest.raises(InputError, match=rf"pick {view.name}:{bx},{by}: that pixel shows background \(id 0\)"):
        edit.select(data, pick=(view.name, bx, by))
    with pytest.raises(InputError, match=rf"pick {view.name}:{W},0: outside the {W}x{H} image"):
        edit.select(data, pick=(view.name, W, 0))
    with pytest.raises(InputError, match="exactly one"):
        edit.select(data, objects=[1], pick=(view.name, 1, 1))
    with pytest.raises(InputError, match="exactly one of --objects 3,5, --pick"):  # the CLI names its flags
        cli(
            [
                "edit",
                "remove",
                str(tiny["run"]),
                "--out",
                str(tiny["root"] / "x"),
                "--objects",
                "1",
                "--pick",
                "a:1,1",
                "--raw",
            ]
        )


def test_threshold_and_cleanup_do_not_swallow_neighbours():
    """Two touching balls A (id 1) and B (id 2): A's interior has unreliable encodings; the clean-up
    must add A's interior and no Gaussian of B."""
    rng = np.random.default_rng(0)

    def ball(c, r, n, shell=True):
        v = rng.normal(size=(n, 3))
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        rad = r if shell else r * rng.uniform(0, 0.85, (n, 1)) ** (1 / 3)
        return c + v * rad

    a_shell, a_in, b_shell, b_in = (
        ball([0, 0, 0], 1, 1500),
        ball([0, 0, 0], 1, 300, False),
        ball([2, 0, 0], 1, 1500),
        ball([2, 0, 0], 1, 300, False),
    )
    pts = np.concatenate([a_shell, a_in, b_shell, b_in])
    truth = np.repeat([1, 1, 2, 2], [1500, 300, 1500, 300])
    n = len(pts)
    enc = torch.zeros(n, 16)
    enc[:1500, 1] = 4
    enc[1500:1800] = torch.from_numpy(rng.normal(0, 0.5, (300, 16))).float()  # unseen interior: noise,
    enc[1500:1800, 0] += 1.5  # leaning to the background
    enc[1800:3300, 2] = 4
    enc[3300:, 2] = 4
    quats = torch.zeros(n, 4)
    quats[:, 0] = 1
    g = Gaussians(
        torch.from_numpy(pts).float(),
        quats,
        torch.full((n, 3), -3.0),
        torch.zeros(n),
        torch.zeros(n, 1, 3),
        torch.zeros(n, 15, 3),
        enc,
    )
    clf = IdentityClassifier(3, 16)
    with torch.no_grad():
        clf.linear.weight.copy_(torch.eye(3, 16))
        clf.linear.bias.zero_()
    seg = Segmentation(clf)
    base = select_gaussians(g, seg, [1], 0.3)
    assert base[:1500].all() and base[1500:1800].mean() < 0.5 and not base[1800:].any()
    full = cleanup_3d(g, base, seg, [1])
    assert full[:1800].mean() > 0.97  # interior caught
    assert not full[truth == 2].any()  # the touching neighbour is untouched


# ----------------------------------------------------------------------------- edits


def test_edits_keep_the_environment(tiny, tmp_path):
    """A run with a learned environment renders it behind the Gaussians, and edited runs keep it."""
    import shutil

    from gsgroup.train.environment import Environment

    run = tmp_path / "run"
    shutil.copytree(tiny["run"], run)
    Environment.constant([0.2, 0.9, 0.4]).save(run / Run.ENVIRONMENT)
    out = tmp_path / "removed"
    assert cli(["edit", "remove", str(run), "--out", str(out), "--objects", "4", "--raw"]) == 0
    assert torch.equal(Environment.load(out / Run.ENVIRONMENT).coeffs, Environment.load(run / Run.ENVIRONMENT).coeffs)
    view = tiny["data"].views("test")[0]
    edited = Run.open(out)
    on_env = render_rgb(edited.gaussians, view, edited.backdrop)
    # reference: the rasterizer's own blend over a constant background of the same colour
    on_colour = render_rgb(edited.gaussians, view, torch.tensor([0.2, 0.9, 0.4]))
    np.testing.assert_allclose(on_env, on_colour, atol=1e-5)
    assert np.abs(on_env - render_rgb(edited.gaussians, view, torch.zeros(3))).max() > 0.8  # not ignored


def test_remove_cli(tiny):
    out = tiny["root"] / "removed"
    assert cli(["edit", "remove", str(tiny["run"]), "--out", str(out), "--objects", "4", "--raw"]) == 0
    info = json.loads((out / Run.EDIT).read_text())
    assert info["edit"] == "remove" and info["selection"]["ids"] == [4] and info["removed"] > 0
    assert info["clean"] is False
    for name in (Run.CONFIG, Run.GAUSSIANS, Run.CLASSIFIER, Run.LABELS, Run.OBJECTS):
        assert (out / name).exists()
    assert list((out / "before_after").glob("*.png")) and list((out / "before").glob("*.png"))
    labels, _ = load_labels(out / Run.LABELS)
    assert len(labels) == len(load_ply(out / Run.GAUSSIANS)) and 4 not in labels
    edited, data = Run.open(out), tiny["data"]
    for view in data.views("test"):
        obj, zone = footprint(data, view, 4)
        if obj.sum() < 5:
            continue
        ids_after = id_map(edited.gaussians, edited.segmentation, view, edited.backdrop)
        assert (ids_after[obj] == 4).mean() < 0.02
        before, after = (
            render_rgb(data.gaussians, view, data.backdrop),
            render_rgb(edited.gaussians, view, data.backdrop),
        )
        assert psnr(after, before, ~zone) >= 35
    # input untouched, refusals
    assert len(load_ply(tiny["run"] / Run.GAUSSIANS)) == len(data.gaussians)
    with pytest.raises(ValueError, match="not empty"):
        cli(["edit", "remove", str(tiny["run"]), "--out", str(out), "--objects", "4", "--raw"])
    with pytest.raises(ValueError, match="input run"):
        cli(["edit", "remove", str(tiny["run"]), "--out", str(tiny["run"]), "--objects", "4", "--raw"])
    assert cli(["edit", "remove", str(tiny["run"]), "--out", str(out), "--objects", "4", "--force", "--raw"]) == 0


def _hue_deg(rgb):
    hsv = np.array([colorsys.rgb_to_hsv(*p) for p in rgb])
    ang = hsv[:, 0] * 2 * np.pi
    w = hsv[:, 1]  # weigh by saturation: grey pixels carry no hue
    return math.degrees(math.atan2((w * np.sin(ang)).sum(), (w * np.cos(ang)).sum())) % 360


def test_recolor_hue_and_outside(tiny):
    out = tiny["root"] / "recolored"
    assert cli(["edit", "recolor", str(tiny["run"]), "--out", str(out), "--objects", "5", "--color", "#2a9d3c"]) == 0
    target = _hue_deg(np.array([[0x2A, 0x9D, 0x3C]]) / 255.0)
    edited, data = Run.open(out), tiny["data"]
    for view in data.views("test"):
        obj, zone = footprint(data, view, 5)
        if obj.sum() < 5:
            continue
        before, after = (
            render_rgb(data.gaussians, view, data.backdrop),
            render_rgb(edited.gaussians, view, data.backdrop),
        )
        err = abs((_hue_deg(after[obj]) - target + 180) % 360 - 180)
        assert err < 10
        assert psnr(after, before, ~zone) >= 40
        # shading survives: luminance variation inside the object stays correlated with the original
        lum = lambda x: x @ np.array([0.299, 0.587, 0.114])
        assert np.corrcoef(lum(before[obj]), lum(after[obj]))[0, 1] > 0.8


def _alpha_centroid(g, sel_mask, viewmat, K):
    """Alpha-weighted pixel centroid of the selected Gaussians rendered alone."""
    sub = g.select(torch.from_numpy(sel_mask))
    means, quats, scales, opac = sub.activated()
    out = rasterize(means, quats, scales, opac, torch.ones(len(sub), 1), viewmat.float(), K.float(), W, H)
    a = out.alpha[..., 0].numpy().astype(np.float64)
    ys, xs = np.mgrid[0:H, 0:W] + 0.5
    return np.array([(a * xs).sum() / a.sum(), (a * ys).sum() / a.sum()])


def test_transform_centroid(tiny):
    """The moved object renders where an equivalent camera (the inverse transform applied to the
    camera) sees the original: x' = sRx + t' -> camera [R_v R | (R_v t' + t_v)/s] (perspective is
    invariant to the uniform scale)."""
    data = tiny["data"]
    out = tiny["root"] / "moved"
    assert (
        cli(
            [
                "edit",
                "transform",
                str(tiny["run"]),
                "--out",
                str(out),
                "--objects",
                "1",
                "--translate",
                "0.3,-0.2,0.1",
                "--rotate-deg",
                "0,0,35",
                "--scale",
                "1.2",
            ]
        )
        == 0
    )
    edited = Run.open(out)
    info = json.loads((out / Run.EDIT).read_text())
    M = np.array(info["transform"]["matrix"])
    s = info["transform"]["scale"]
    sel0 = data.labels[0] == 1
    sel1 = edited.labels[0] == 1
    assert sel0.sum() == sel1.sum()
    c0 = ops.centroid(data.gaussians, sel0)
    assert np.allclose(ops.centroid(edited.gaussians, sel1), M[:3, :3] @ c0 + M[:3, 3], atol=1e-4)
    for view in data.views("test"):
        V = np.asarray(view.viewmat, np.float64)
        ref = np.eye(4)
        ref[:3, :3] = V[:3, :3] @ (M[:3, :3] / s)
        ref[:3, 3] = (V[:3, :3] @ M[:3, 3] + V[:3, 3]) / s
        K = torch.from_numpy(np.asarray(view.K, np.float32))
        got = _alpha_centroid(edited.gaussians, sel1, torch.from_numpy(V), K)
        want = _alpha_centroid(data.gaussians, sel0, torch.from_numpy(ref), K)
        assert np.linalg.norm(got - want) < 2.0


def test_duplicate_new_ids(tiny):
    data = tiny["data"]
    out = tiny["root"] / "dup"
    assert (
        cli(["edit", "duplicate", str(tiny["run"]), "--out", str(out), "--objects", "3,4", "--translate", "0,0,1.5"])
        == 0
    )
    info = json.loads((out / Run.EDIT).read_text())
    assert info["new_ids"] == {"3": K_CLASSES, "4": K_CLASSES + 1}
    edited = Run.open(out)
    lab0 = data.labels[0]
    lab1 = edited.labels[0]
    n0 = len(lab0)
    assert np.array_equal(lab1[:n0], lab0)  # old Gaussians keep their ids
    assert np.array_equal(lab1[n0:], np.where(lab0[np.isin(lab0, [3, 4])] == 3, K_CLASSES, K_CLASSES + 1))
    assert edited.segmentation.classifier.num_classes == K_CLASSES + 2
    view = data.views("test")[0]
    ids = id_map(edited.gaussians, edited.segmentation, view, edited.backdrop)
    old = id_map(data.gaussians, data.segmentation, view, data.backdrop)
    assert (ids == K_CLASSES).sum() > 0 or (ids == K_CLASSES + 1).sum() > 0
    # pixels no copy covers keep their old ids
    copies = edited.gaussians.select(torch.arange(n0, len(lab1)))
    m, q, sc, o = copies.activated()
    cov = rasterize(m, q, sc, o, torch.ones(len(copies), 1), view_tensors(view).viewmat, view_tensors(view).K, W, H)
    free = cov.alpha[..., 0].numpy() < 0.01
    assert (ids[free] == old[free]).mean() > 0.99


def test_compose_from_other_run(tiny):
    data = tiny["data"]
    out = tiny["root"] / "composed"
    assert (
        cli(
            [
                "edit",
                "compose",
                str(tiny["run"]),
                "--out",
                str(out),
                "--from",
                str(tiny["run"]),
                "--objects",
                "5",
                "--translate",
                "0,0,1.2",
            ]
        )
        == 0
    )
    info = json.loads((out / Run.EDIT).read_text())
    assert info["new_ids"] == {"5": K_CLASSES}
    edited = Run.open(out)
    lab = edited.labels[0]
    n0 = len(data.gaussians)
    assert (lab[n0:] == K_CLASSES).all() and np.array_equal(lab[:n0], data.labels[0])
    sel0 = data.labels[0] == 5
    M = np.array(info["transform"]["matrix"])
    for view in data.views("test"):
        V = np.asarray(view.viewmat, np.float64)
        ref = np.eye(4)
        ref[:3, :3] = V[:3, :3] @ M[:3, :3]
        ref[:3, 3] = V[:3, :3] @ M[:3, 3] + V[:3, 3]
        K = torch.from_numpy(np.asarray(view.K, np.float32))
        got = _alpha_centroid(edited.gaussians, lab == K_CLASSES, torch.from_numpy(V), K)
        want = _alpha_centroid(data.gaussians, sel0, torch.from_numpy(ref), K)
        assert np.linalg.norm(got - want) < 2.0


def test_export_plain_and_split(tiny):
    data = tiny["data"]
    out = tiny["root"] / "obj2.ply"
    assert cli(["edit", "export", str(tiny["run"]), "--objects", "2", "--out", str(out), "--plain"]) == 0
    raw = out.read_bytes()
    header = raw[: raw.index(b"end_header")].decode().splitlines()
    props = [ln.split()[2] for ln in header if ln.startswith("property")]
    assert header[:2] == ["ply", "format binary_little_endian 1.0"]
    assert props == ply_property_names(3, 0)  # Inria layout, no obj_dc
    g = load_ply(out)
    assert len(g) == int((data.labels[0] == 2).sum())
    view = data.views("test")[0]
    alone = render_rgb(g, view, data.backdrop)
    from gsgroup.data.synthetic import render_view, scene_spec

    gt = render_view(scene_spec(0), view.K, view.viewmat, W, H, exclude=(1, 3, 4, 5, 6), supersample=1)["mask"] == 2
    others = (tiny_gt_mask(tiny, view) != 2) & ~dilate_mask(gt, 3)  # the floor and other objects, away from it
    assert (alone[others].max(axis=1) > 0.05).mean() < 0.005  # nothing but the object (ground truth, unoccluded)
    assert alone[gt].mean() > 0.1
    split = tiny["root"] / "split"
    assert cli(["edit", "export", str(tiny["run"]), "--split-all", str(split)]) == 0
    files = sorted(split.glob("*.ply"))
    assert len(files) == K_CLASSES and sum(len(load_ply(f)) for f in files) == len(data.gaussians)
    assert load_ply(files[1]).id_dim == 16


def test_lifted_run_remove(tiny, tmp_path):
    """Runs with labels.npy only (lifted): selection by label, labels carried through edits."""
    import shutil

    run = tmp_path / "lifted"
    run.mkdir()
    for name in (Run.CONFIG, Run.GAUSSIANS, Run.LABELS, Run.OBJECTS):
        shutil.copy(tiny["run"] / name, run / name)
    out = tmp_path / "lifted_dup"
    assert cli(["edit", "duplicate", str(run), "--out", str(out), "--objects", "2", "--translate", "0,0,1"]) == 0
    labels, _ = load_labels(out / Run.LABELS)
    n2 = int((load_labels(run / Run.LABELS)[0] == 2).sum())
    assert (labels == K_CLASSES).sum() == n2 and not (out / Run.CLASSIFIER).exists()


def test_inpaint_beats_removal(tiny):
    """Inside the hole, the inpainted run is closer to the ground truth without the object than plain
    removal; outside it, the render stays the pre-edit one."""
    data = tiny["data"]
    out = tiny["root"] / "inpainted"
    assert (
        cli(
            [
                "edit",
                "inpaint",
                str(tiny["run"]),
                "--out",
                str(out),
                "--objects",
                "5",
                "--iterations",
                "150",
                "--dilate",
                "2",
                "--quiet",
            ]
        )
        == 0
    )
    info = json.loads((out / Run.EDIT).read_text())
    edited = Run.open(out)
    g = edited.gaussians
    sel = make_selection(data.gaussians, data.segmentation, [5])
    removed = data.gaussians.select(torch.from_numpy(~sel.mask))
    assert info["new_gaussians"] > 0 and info["consistency"]["views"] > 0
    assert len(g) == len(removed) + info["new_gaussians"]
    assert info["consistency"]["psnr_mean"] > info["consistency_seeded"]["psnr_mean"]
    assert 5 not in edited.labels[0]  # new Gaussians take their neighbours' (background) ids
    gains = []
    for view in data.views("test"):
        obj, _ = footprint(data, view, 5, 0)
        if obj.sum() < 20:
            continue
        hole = hole_mask(id_map(data.gaussians, data.segmentation, view, data.backdrop), [5], 2)
        gt = _read_rgb(tiny["scene"] / "without" / "5" / f"{view.name}.png")
        p_in = psnr(render_rgb(g, view, data.backdrop), gt, hole)
        p_rm = psnr(render_rgb(removed, view, data.backdrop), gt, hole)
        gains.append(p_in - p_rm)
        before = render_rgb(data.gaussians, view, data.backdrop)
        assert psnr(render_rgb(g, view, data.backdrop), before, ~dilate_mask(hole, 2)) >= 35
    assert gains and min(gains) > 1.0


def test_remove_cli_cleans_unless_raw(tiny):
    """`gsgroup edit remove` cleans by default; --raw only deletes."""
    parser = argparse.ArgumentParser()
    add_edit_commands(parser.add_subparsers(dest="command"))
    base = ["edit", "remove", "RUN", "--out", "X", "--objects", "4"]
    assert parser.parse_args(base).raw is False and parser.parse_args(base + ["--raw"]).raw is True


@pytest.mark.slow
def test_remove_clean_is_nearer_the_truth_than_raw(tiny):
    """remove(clean=True) (the scene fill: shadow and never-seen floor) against the scene's truth without
    the object: fewer footprint pixels that still look like the object and a higher PSNR there than the
    raw deletion, nothing changed far from it (edit/quality.py on the test views)."""
    from gsgroup.edit.inpainting import InpaintOptions, dilation_px
    from gsgroup.edit.quality import combine, truth_images, view_scores

    data = tiny["data"]
    sel = edit.select(data, objects=[5])
    raw = edit.remove(data, sel)
    clean = edit.remove(data, sel, clean=True, options=InpaintOptions(iterations=60))
    assert clean.edit["edit"] == "remove" and clean.edit["clean"] is True and raw.edit["clean"] is False
    per = {"raw": [], "clean": []}
    for v in data.views("test"):
        truth, foot, changed = truth_images(tiny["scene"], 5, v.name)
        if foot.sum() < 20:
            continue
        before = render_rgb(data.gaussians, v, data.backdrop)
        for name, r in (("raw", raw), ("clean", clean)):
            after = render_rgb(r.gaussians, v, data.backdrop)
            per[name].append(view_scores(before, after, truth, foot, changed, dilation_px(v.width, None)))
    a, b = combine(per["raw"]), combine(per["clean"])
    assert b["residue_pct"] <= a["residue_pct"] and b["hole_db"] > a["hole_db"]
    assert b["outside_db_min"] > 30


def test_fill_depth_plane_exact():
    """A tilted plane's depth is recovered exactly inside a hole from the ring around it."""
    h, w = 40, 50
    v, u = np.mgrid[0:h, 0:w] + 0.5
    inv = 0.01 * u + 0.02 * v + 0.1
    depth = 1 / inv
    hole = np.zeros((h, w), bool)
    hole[10:25, 15:35] = True
    z = fill_depth(np.where(hole, 0, depth), np.ones((h, w), bool), hole, 3)
    assert np.allclose(z[hole], depth[hole], rtol=1e-6)


def test_export_python_api_refuses_empty(tiny, tmp_path):
    data = tiny["data"]
    # each Gaussian of id 6 has probability softmax(4 * onehot)[6] = e^4 / (e^4 + 6) ~ 0.90 < 0.9999
    msg = f"{tiny['data'].path}: no Gaussian has probability > 0.9999 for ids [6]; lower"
    with pytest.raises(InputError, match=re.escape(msg)), pytest.warns(UserWarning, match="only 0 of the"):
        edit.export(
            data, edit.select(data, objects=[6], options=edit.SelectOptions(threshold=0.9999)), tmp_path / "x.ply"
        )
    assert not (tmp_path / "x.ply").exists()
    sel = edit.select(data, objects=[6], options=edit.SelectOptions(threshold=0.85))
    assert edit.export(data, sel, tmp_path / "y.ply")["gaussians"] > 0
