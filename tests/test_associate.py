"""Cross-view mask association (gsgroup.segment.associate) on "perfect" Gaussians.

The Gaussians are built from the synthetic scene's ground truth (depth pixels back-projected to
3D, small isotropic scales, opacity 0.9), so no training is needed; the reference is the scene's
gt_mask (instance ids, 0 = floor/background, which the masks segment like any object).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from gsgroup.data.masks import read_mask
from gsgroup.data.scene import load_scene
from gsgroup.data.synthetic import make_scene
from gsgroup.errors import InputError
from gsgroup.segment.associate import AssociateParams, AssociationResult, associate_masks
from gsgroup.segment.association_io import resolve_output_dir, write_association
from gsgroup.segment.association_metrics import oracle_association, pairwise_f1

W, H, NV = 80, 60, 16


# ----------------------------------------------------------------------------- fixtures


def perfect_gaussians(root: Path, views, voxel: float = 0.05, opacity: float = 0.9):
    """Back-project every depth pixel of every view, keep one point per ``voxel`` (a single surface layer,
    as a trained model has), isotropic scale 0.6 voxel: (tensors, gt id per Gaussian)."""
    pts, ids = [], []
    for v in views:
        d = np.load(root / "depth" / f"{v.name}.npy")
        gt = read_mask(root / "gt_mask" / f"{v.name}.png")
        ys, xs = np.nonzero(d > 0)
        z = d[ys, xs].astype(np.float64)
        cam = np.linalg.inv(v.K.astype(np.float64)) @ np.stack([xs + 0.5, ys + 0.5, np.ones(len(xs))]) * z
        c2w = np.linalg.inv(v.viewmat.astype(np.float64))
        pts.append((c2w[:3, :3] @ cam).T + c2w[:3, 3])
        ids.append(gt[ys, xs])
    pts, ids = np.concatenate(pts), np.concatenate(ids)
    _, first = np.unique(np.floor(pts / voxel).astype(np.int64), axis=0, return_index=True)
    pts, ids = pts[first], ids[first]
    n = len(pts)
    q = torch.zeros(n, 4)
    q[:, 0] = 1.0
    s = torch.full((n, 3), 0.6 * voxel)
    return (torch.from_numpy(pts.astype(np.float32)), q, s, torch.full((n,), opacity)), ids


def relabel(gt: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """gt ids -> random per-view mask ids 1..K (background included as a mask)."""
    u, inv = np.unique(gt, return_inverse=True)
    return (rng.permutation(len(u)) + 1)[inv].reshape(gt.shape).astype(np.int32)


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    root = tmp_path_factory.mktemp("assoc") / "scene"
    make_scene(root, seed=0, width=W, height=H, n_views=NV, supersample=1, progress=False)
    sc = load_scene(root, eval=False, progress=False, cache_dir=root.parent / "cache")
    views = sc.train
    gt = {v.name: read_mask(root / "gt_mask" / f"{v.name}.png") for v in views}
    meta = json.loads((root / "scene.json").read_text())
    g, gid = perfect_gaussians(root, views)
    return {"root": root, "views": views, "gt": gt, "meta": meta, "g": g, "gid": gid}


@pytest.fixture(scope="module")
def sim_result(scene):
    from gsgroup.data.simulate import simulate_sam_masks

    sim = simulate_sam_masks(scene["gt"], scene["meta"]["touching"], seed=0)
    return sim, associate_masks(scene["views"], scene["g"], sim)


def gt_masks(scene, seed=0):
    rng = np.random.default_rng(seed)
    return {n: relabel(g, rng) for n, g in sorted(scene["gt"].items())}


def majority(ids: np.ndarray, where: np.ndarray) -> int:
    vals, cnt = np.unique(ids[where], return_counts=True)
    return int(vals[np.argmax(cnt)])


# ----------------------------------------------------------------------------- metric


def test_pairwise_f1_hand_made():
    gt = [np.array([[1, 1, 2, 2]])]
    # one predicted group for everything: 6 same-pred pairs, 2 of them same-gt
    r = pairwise_f1(gt, [np.array([[5, 5, 5, 5]])])
    assert r["precision"] == pytest.approx(2 / 6) and r["recall"] == pytest.approx(1.0)
    assert r["f1"] == pytest.approx(2 * (1 / 3) / (1 / 3 + 1))
    # perfect up to renaming
    assert pairwise_f1(gt, [np.array([[7, 7, 3, 3]])])["f1"] == pytest.approx(1.0)
    # a dropped pixel (0) is a singleton: loses the pair (0,1); the (2,3) pair survives
    r = pairwise_f1(gt, [np.array([[0, 4, 9, 9]])])
    assert r["precision"] == pytest.approx(1.0) and r["recall"] == pytest.approx(0.5)
    assert r["pred_zero"] == pytest.approx(0.25)
    # two zeros are not "same" as each other
    r = pairwise_f1([np.array([[3, 3]])], [np.array([[0, 0]])])
    assert r["recall"] == 0.0 and r["f1"] == 0.0
    # pooled over views, ids shared across views; dict inputs are matched by name
    r = pairwise_f1(
        {"b": np.array([[1, 2]]), "a": np.array([[1, 1]])}, {"a": np.array([[8, 8]]), "b": np.array([[8, 6]])}
    )
    # gt: 1 at a0, a1, b0 (3 pairs) ; pred 8 at a0, a1, b0 -> same 3 pairs
    assert r["f1"] == pytest.approx(1.0)
    # valid: only the evaluated pixels count
    r = pairwise_f1(gt, [np.array([[0, 4, 9, 9]])], valid=[np.array([[False, True, True, True]])])
    assert r["recall"] == pytest.approx(1.0) and r["pixels"] == 3


def test_pairwise_f1_against_brute_force():
    rng = np.random.default_rng(3)
    gt = [rng.integers(0, 4, (5, 6)) for _ in range(3)]
    pred = [rng.integers(0, 5, (5, 6)) for _ in range(3)]
    g = np.concatenate([a.ravel() for a in gt])
    q = np.concatenate([a.ravel() for a in pred])
    i, j = np.triu_indices(g.size, 1)
    same_g = g[i] == g[j]
    same_q = (q[i] == q[j]) & (q[i] != 0)
    r = pairwise_f1(gt, pred)
    assert r["precision"] == pytest.approx((same_g & same_q).sum() / same_q.sum())
    assert r["recall"] == pytest.approx((same_g & same_q).sum() / same_g.sum())


# ----------------------------------------------------------------------------- association quality


@pytest.fixture(scope="module")
def perfect_result(scene):
    masks = gt_masks(scene)
    return masks, associate_masks(scene["views"], scene["g"], masks)


def test_perfect_masks_associate_exactly(scene, perfect_result):
    _, r = perfect_result
    f = pairwise_f1(scene["gt"], r.masks)
    assert f["f1"] > 0.97, f
    # every gt object with a visible mask ends up with one id shared by its views
    ids = {}
    for name, gt in scene["gt"].items():
        for k in np.unique(gt):
            sel = gt == k
            if sel.sum() >= 100:
                ids.setdefault(int(k), set()).add(majority(r.masks[name], sel))
    assert all(len(s) == 1 and 0 not in s for s in ids.values()), ids
    assert len({next(iter(s)) for s in ids.values()}) == len(ids)


def test_simulated_sam_masks_f1(scene, sim_result):
    sim, r = sim_result
    valid = {k: v != 0 for k, v in sim.items()}
    f = pairwise_f1(scene["gt"], r.masks, valid)
    oracle = pairwise_f1(scene["gt"], oracle_association(scene["gt"], sim), valid)
    assert f["f1"] > 0.9, f
    assert f["f1"] > oracle["f1"] - 0.04, (f, oracle)


def test_view_order_does_not_matter(scene, sim_result):
    sim, r = sim_result
    views = list(scene["views"])
    np.random.default_rng(1).shuffle(views)
    r2 = associate_masks(views, scene["g"], sim)
    assert r.masks.keys() == r2.masks.keys()
    assert all(np.array_equal(r.masks[n], r2.masks[n]) for n in r.masks)


def test_view_names_do_not_matter(scene, sim_result):
    """Renaming the views reverses every tie-break by name: only a few masks may change."""
    import dataclasses

    sim, r = sim_result
    names = sorted(sim)
    new = {n: f"x{len(names) - i:03d}" for i, n in enumerate(names)}
    views = [dataclasses.replace(v, name=new[v.name]) for v in scene["views"]]
    r2 = associate_masks(views, scene["g"], {new[n]: m for n, m in sim.items()})
    changed = 0
    # map ids of r2 onto ids of r by majority, count masks whose id differs
    for n in names:
        a, b = r.masks[n], r2.masks[new[n]]
        for k in np.unique(sim[n]):
            if k == 0:
                continue
            sel = sim[n] == k
            if np.mean(a[sel] == 0) != np.mean(b[sel] == 0):
                changed += 1
    f = pairwise_f1([r.masks[n] for n in names], [r2.masks[new[n]] for n in names], [r.masks[n] != 0 for n in names])
    assert changed <= 2 and f["f1"] > 0.98, (changed, f)


@pytest.fixture(scope="module")
def edited(scene):
    """Perfect masks with one object split in two (view 3), a touching pair merged into one mask (the view
    where both are largest), a 4-pixel mask inside the floor (view 0), no mask for view 1, and the empty
    sky as a mask of its own in every view: one association for all."""
    masks = gt_masks(scene, seed=5)
    gt = scene["gt"]
    names = sorted(gt)
    ed = {}
    # split
    n = names[3]
    k = max((int(v) for v in np.unique(gt[n]) if v > 0), key=lambda v: (gt[n] == v).sum())
    _, xs = np.nonzero(gt[n] == k)
    left = gt[n] == k
    left[:, int(np.median(xs)) :] = False
    masks[n] = np.where(left, masks[n].max() + 1, masks[n]).astype(np.int32)
    ed["split"] = (n, k, left)
    # merge
    a, b = (int(x) for x in scene["meta"]["touching"][0])
    n = max(
        (x for x in names if x not in (names[0], names[1], names[3])),
        key=lambda x: min((gt[x] == a).sum(), (gt[x] == b).sum()),
    )
    masks[n] = np.where((gt[n] == a) | (gt[n] == b), masks[n].max() + 1, masks[n]).astype(np.int32)
    ed["merge"] = (n, a, b)
    # tiny
    n = names[0]
    ys, xs = np.nonzero(cv2.erode((gt[n] == 0).astype(np.uint8), np.ones((9, 9), np.uint8)))
    y, x = int(ys[len(ys) // 2]), int(xs[len(xs) // 2])
    masks[n] = masks[n].copy()
    masks[n][y - 1 : y + 1, x - 1 : x + 1] = masks[n].max() + 1
    ed["tiny"] = (n, y, x)
    # sky
    sky = {}
    for v in scene["views"]:
        d = np.load(scene["root"] / "depth" / f"{v.name}.npy")
        sky[v.name] = cv2.erode((d == 0).astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        masks[v.name] = np.where(sky[v.name], masks[v.name].max() + 1, masks[v.name]).astype(np.int32)
    ed["sky"] = sky
    # missing
    masks[names[1]] = None
    ed["missing"] = names[1]
    return masks, ed, associate_masks(scene["views"], scene["g"], masks)


def test_split_mask_joins_its_object(scene, edited):
    _, ed, r = edited
    gt = scene["gt"]
    name, k, left = ed["split"]
    obj = {majority(r.masks[n], gt[n] == k) for n in r.masks if n != name and (gt[n] == k).sum() >= 100}
    assert len(obj) == 1 and 0 not in obj
    (oid,) = obj
    assert majority(r.masks[name], left) == oid
    assert majority(r.masks[name], (gt[name] == k) & ~left) == oid


def test_merged_mask_is_split_by_object(scene, edited):
    _, ed, r = edited
    gt = scene["gt"]
    name, a, b = ed["merge"]
    names = sorted(gt)
    i = names.index(name)
    near = [names[i - 1], names[(i + 1) % len(names)]]  # neighbouring cameras (16 views on a circle)
    ida = majority(r.masks[name], gt[name] == a)
    idb = majority(r.masks[name], gt[name] == b)
    assert ida != idb and 0 not in (ida, idb)
    assert ida in {majority(r.masks[n], gt[n] == a) for n in near if n in r.masks}
    assert idb in {majority(r.masks[n], gt[n] == b) for n in near if n in r.masks}
    # the two objects' pixels are separated (a sparse 16-view ring may leave an object in two groups)
    assert np.mean(r.masks[name][gt[name] == a] != idb) > 0.9
    assert np.mean(r.masks[name][gt[name] == b] != ida) > 0.9
    assert r.stats["split"] >= 1


def test_tiny_masks_are_dropped(scene, edited):
    _, ed, r = edited
    name, y, x = ed["tiny"]
    assert (r.masks[name][y - 1 : y + 1, x - 1 : x + 1] == 0).all()
    assert r.stats["tiny"] >= 1
    # its neighbourhood (the floor) is unaffected
    assert r.masks[name][y + 3, x] == majority(r.masks[name], scene["gt"][name] == 0) != 0


def test_void_masks(scene, edited):
    """Masks where nothing is reconstructed (the empty sky) join the background group by default."""
    masks, ed, r = edited
    sky = ed["sky"]
    assert sum(int(s.sum()) for s in sky.values()) > 200
    assert r.stats["void"] >= 1
    for n in r.masks:
        if sky[n].sum() > 20:
            floor = majority(r.masks[n], (scene["gt"][n] == 0) & ~sky[n])
            assert (r.masks[n][sky[n]] == floor).all()
    r = associate_masks(scene["views"], scene["g"], masks, AssociateParams(void="drop"))
    assert all((r.masks[n][sky[n]] == 0).all() for n in r.masks)


def test_missing_and_bad_masks(scene, edited):
    masks, ed, r = edited
    assert ed["missing"] not in r.masks and len(r.masks) == NV - 1
    masks = dict(masks)
    name = sorted(masks)[0]
    masks[name] = np.zeros((H + 1, W), np.int32)
    with pytest.raises(InputError, match=name):
        associate_masks(scene["views"], scene["g"], masks)
    with pytest.raises(InputError):
        AssociateParams(join=2.0).check()
    with pytest.raises(InputError):
        AssociateParams(void="sky").check()


# ----------------------------------------------------------------------------- outputs


def test_objects_json_and_pngs(scene, perfect_result, tmp_path):
    masks, r = perfect_result
    out = write_association(r, tmp_path / "om")
    files = sorted(p.name for p in out.iterdir())
    assert files == sorted([f"{n}.png" for n in masks] + ["objects.json"])
    png = cv2.imread(str(out / f"{sorted(masks)[0]}.png"), cv2.IMREAD_UNCHANGED)
    assert png.dtype == np.uint8 and np.array_equal(png, r.masks[sorted(masks)[0]])
    meta = json.loads((out / "objects.json").read_text())
    objs = {int(k): v for k, v in meta["objects"].items()}
    assert set(objs) == set(r.objects)
    gt = scene["gt"]
    for spec in scene["meta"]["objects"]:
        k = spec["id"]
        views_k = [n for n in sorted(gt) if (gt[n] == k).sum() >= 100]
        if not views_k:
            continue
        oid = majority(np.concatenate([r.masks[n][gt[n] == k] for n in views_k]), np.array(True))
        o = objs[oid]
        assert set(views_k) <= set(o["views"])
        assert o["views"] == sorted(o["views"])
        assert o["pixels"] == sum(int((r.masks[n] == oid).sum()) for n in r.masks)
        # robust bbox of its Gaussians ~ the object's true box (Gaussians only cover visible surface)
        lo, hi = np.array(o["bbox_min"]), np.array(o["bbox_max"])
        tlo, thi = np.array(spec["bbox_min"]), np.array(spec["bbox_max"])
        ext = (thi - tlo).max()
        assert (lo >= tlo - 0.1 * ext).all() and (hi <= thi + 0.1 * ext).all(), (k, lo, hi, tlo, thi)
        assert ((hi - lo) >= 0.3 * (thi - tlo)).all(), (k, lo, hi, tlo, thi)
        # mean colour from the images
        px = np.concatenate([np.asarray(v.image)[r.masks[v.name] == oid] for v in scene["views"]])
        assert np.allclose(o["mean_color"], px.mean(0), atol=1e-3)


def test_png_dtype_rule(tmp_path):
    ids = np.arange(300, dtype=np.int32).reshape(15, 20)
    big = AssociationResult({"a": ids}, {k: {} for k in range(1, 300)})
    write_association(big, tmp_path / "big")
    img = cv2.imread(str(tmp_path / "big" / "a.png"), cv2.IMREAD_UNCHANGED)
    assert img.dtype == np.uint16 and np.array_equal(img, ids)
    small = AssociationResult({"a": ids % 256, "b": np.ones((15, 20), np.int32)}, {k: {} for k in range(1, 256)})
    write_association(small, tmp_path / "small")
    for n in ("a", "b"):
        assert cv2.imread(str(tmp_path / "small" / f"{n}.png"), cv2.IMREAD_UNCHANGED).dtype == np.uint8


def test_resolve_output_dir(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    # never a default inside DATA: --out is required, and an --out inside DATA is refused
    with pytest.raises(InputError, match="--out is required"):
        resolve_output_dir(data, None, False)
    with pytest.raises(InputError, match="inside the dataset folder"):
        resolve_output_dir(data, data / "object_mask", True)
    assert not (data / "object_mask").exists()
    out = tmp_path / "out"
    assert resolve_output_dir(data, out, False) == out
    out.mkdir()
    assert resolve_output_dir(data, out, False) == out  # empty: fine
    (out / "x.png").write_bytes(b"x")
    with pytest.raises(InputError, match="out"):
        resolve_output_dir(data, out, False)
    assert resolve_output_dir(data, out, True) == out
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError):
        resolve_output_dir(data, tmp_path / "file", True)
