"""Tests for the built-in synthetic scene (gsgroup.data.synthetic)."""

from __future__ import annotations

import itertools
import json

import cv2
import numpy as np
import pytest

from gsgroup.data.colmap import read_model
from gsgroup.data.synthetic import make_scene, render_view, scene_spec
from gsgroup.errors import InputError
from gsgroup.geometry import intrinsics_matrix, look_at, quat_to_rotmat

W, H, NV = 64, 48, 8


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return make_scene(tmp_path_factory.mktemp("syn") / "scene", seed=0, width=W, height=H, n_views=NV, progress=False)


def _read(path, gray=False):
    im = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert im is not None, path
    return im if gray else im[:, :, ::-1]


def _stems(scene):
    return json.loads((scene / "scene.json").read_text())["views"]


def _poses(scene):
    cams, imgs, pts = read_model(scene / "sparse" / "0")
    cam = cams[1]
    fx, fy, cx, cy = cam.params
    K = intrinsics_matrix(fx, fy, cx, cy)
    views = {}
    for im in imgs.values():
        V = np.eye(4)
        V[:3, :3] = quat_to_rotmat(im.qvec)
        V[:3, 3] = im.tvec
        views[im.name[:-4]] = V
    return K, views, pts


def _ray_sphere_zdepth(K, V, u, v, centre, r):
    """Independent reference: camera z-depth of the first hit of pixel ray (u, v) with a sphere."""
    R, t = V[:3, :3], V[:3, 3]
    c = R @ np.asarray(centre) + t  # sphere centre in camera frame
    d = np.array([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], 1.0])
    a, b, cc = d @ d, -2 * d @ c, c @ c - r * r
    disc = b * b - 4 * a * cc
    if disc < 0:
        return None
    return (-b - np.sqrt(disc)) / (2 * a)  # t along d with d_z = 1 is the z-depth


# ----------------------------------------------------------------------------- analytic ray casting


@pytest.mark.parametrize("shape_id", [1, 2, 3, 4, 5, 6])
def test_depth_from_above_matches_analytic_top(shape_id):
    """Camera straight above an object's centre, looking down: centre-pixel depth = cam height - top."""
    spec = scene_spec(3)
    ob = spec.object(shape_id)
    c = np.asarray(ob.centre)
    half_height = {"sphere": 0, "ellipsoid": 2, "box": 2, "cylinder": 1, "cone": 1}[ob.shape]
    top = c[2] + ob.size[half_height]
    eye = c + np.array([0.0, 0.0, 4.0])
    V = look_at(eye, c, up=(0.0, 1.0, 0.0))
    f = 40.0
    K = np.array([[f, 0, 16.5], [0, f, 16.5], [0, 0, 1]])  # 33x33: pixel 16 centre = principal point
    others = [o.id for o in spec.objects if o.id != shape_id]
    out = render_view(spec, K, V, 33, 33, exclude=others, supersample=1)
    assert out["mask"][16, 16] == shape_id
    assert out["depth"][16, 16] == pytest.approx(eye[2] - top, abs=1e-5)


def test_sphere_depth_is_distance_minus_radius_and_matches_reference_rays():
    spec = scene_spec(0)
    sph = spec.object(1)
    c = np.asarray(sph.centre)
    direction = np.array([np.cos(0.5) * np.cos(1.1), np.cos(0.5) * np.sin(1.1), np.sin(0.5)])
    dist = 3.0
    V = look_at(c + dist * direction, c)
    K = np.array([[50.0, 0, 20.5], [0, 50.0, 15.5], [0, 0, 1]])
    others = [o.id for o in spec.objects if o.id != 1]
    out = render_view(spec, K, V, 41, 31, exclude=others, supersample=1)
    assert out["depth"][15, 20] == pytest.approx(dist - sph.size[0], abs=1e-5)
    # every pixel: sphere hit/miss and depth agree with an independent ray-sphere intersection
    on_sphere = out["mask"] == 1
    for j, i in itertools.product(range(31), range(41)):
        z = _ray_sphere_zdepth(K, V, i + 0.5, j + 0.5, c, sph.size[0])
        if z is None:
            assert not on_sphere[j, i]
        elif on_sphere[j, i]:
            assert out["depth"][j, i] == pytest.approx(z, rel=1e-5)
    assert on_sphere.sum() > 100


def test_shadow_of_sphere_is_ambient_only_and_vanishes_without_it():
    """The floor point below the sphere centre along the light is in shadow: its colour is the
    unshadowed colour times ambient / (ambient + (1 - ambient) * L_z)."""
    spec = scene_spec(0)
    L = np.asarray(spec.light_dir)
    c = np.asarray(spec.object(1).centre)
    away = -L * np.array([1, 1, 0]) / np.hypot(L[0], L[1])
    q = c + 0.35 * away  # a point inside the sphere ...
    p = q - q[2] / L[2] * L  # ... and its shadow on the floor, outside the sphere's footprint
    assert np.hypot(*(p - c)[:2]) > spec.object(1).size[0] + 0.1
    V = look_at(p + np.array([0.0, 0.0, 3.0]) + 0.3 * away, p)
    K = np.array([[30.0, 0, 4.5], [0, 30.0, 4.5], [0, 0, 1]])
    others = tuple(o.id for o in spec.objects if o.id != 1)
    full = render_view(spec, K, V, 9, 9, exclude=others, supersample=1)
    without = render_view(spec, K, V, 9, 9, exclude=others + (1,), supersample=1)
    assert full["mask"][4, 4] == 0 and full["depth"][4, 4] > 0
    ratio = full["rgb"][4, 4] / without["rgb"][4, 4]
    expect = spec.ambient / (spec.ambient + (1 - spec.ambient) * L[2])
    np.testing.assert_allclose(ratio, expect, rtol=1e-5)


# ----------------------------------------------------------------------------- scene layout


@pytest.mark.parametrize("seed", range(20))
def test_layout_touching_pairs_touch_and_others_are_apart(seed):
    spec = scene_spec(seed)
    assert sorted(o.shape for o in spec.objects) == ["box", "box", "cone", "cylinder", "ellipsoid", "sphere"]
    sph, box, cyl, small = spec.object(1), spec.object(2), spec.object(3), spec.object(6)
    assert set(spec.touching) == {(1, 3), (2, 6)}
    # sphere touches the cylinder side: centre-to-axis distance = r_s + r_c, at a height within the cylinder
    dxy = np.hypot(*(np.asarray(sph.centre) - np.asarray(cyl.centre))[:2])
    assert dxy == pytest.approx(sph.size[0] + cyl.size[0], abs=1e-12)
    assert abs(sph.centre[2] - cyl.centre[2]) < cyl.size[1]
    # small box rests on the big box: its bottom equals the big box top, footprint inside the top face
    assert small.centre[2] - small.size[2] == pytest.approx(box.centre[2] + box.size[2], abs=1e-12)
    lo_s, hi_s = small.bbox()
    lo_b, hi_b = box.bbox()
    assert np.all(lo_s[:2] >= lo_b[:2] - 1e-9) and np.all(hi_s[:2] <= hi_b[:2] + 1e-9)
    # footprints (circles enclosing each object seen from above) of non-touching objects are apart
    foot = {
        "sphere": lambda s: s[0],
        "ellipsoid": lambda s: max(s[:2]),
        "box": lambda s: np.hypot(s[0], s[1]),
        "cylinder": lambda s: s[0],
        "cone": lambda s: s[0],
    }
    for a, b in itertools.combinations(spec.objects, 2):
        if (a.id, b.id) in spec.touching:
            continue
        gap = (
            np.hypot(*(np.asarray(a.centre) - np.asarray(b.centre))[:2]) - foot[a.shape](a.size) - foot[b.shape](b.size)
        )
        assert gap > 0.05, (seed, a.name, b.name)
    assert all(o.bbox()[0][2] == pytest.approx(0.0, abs=1e-12) for o in spec.objects if o.id != 6)  # on the floor


def test_seed_moves_objects():
    a, b = scene_spec(0), scene_spec(1)
    assert not np.allclose(a.object(1).centre, b.object(1).centre)


# ----------------------------------------------------------------------------- dataset files


def test_dataset_files_and_determinism(scene, tmp_path):
    stems = _stems(scene)
    assert stems == sorted(stems) and len(stems) == NV
    for s in stems:
        assert _read(scene / "images" / f"{s}.png").shape == (H, W, 3)
        m = _read(scene / "gt_mask" / f"{s}.png", gray=True)
        assert m.shape == (H, W) and m.dtype == np.uint8
        d = np.load(scene / "depth" / f"{s}.npy")
        assert d.shape == (H, W) and d.dtype == np.float32
        assert np.all((d > 0) | (m == 0))
        for k in range(1, 7):
            assert (scene / "without" / str(k) / f"{s}.png").is_file()
    again = make_scene(tmp_path / "again", seed=0, width=W, height=H, n_views=NV, progress=False)
    other = make_scene(tmp_path / "other", seed=1, width=W, height=H, n_views=NV, progress=False)
    same_img = [
        (scene / "images" / f"{s}.png").read_bytes() == (again / "images" / f"{s}.png").read_bytes() for s in stems
    ]
    same_mask = [
        (scene / "gt_mask" / f"{s}.png").read_bytes() == (again / "gt_mask" / f"{s}.png").read_bytes() for s in stems
    ]
    assert all(same_img) and all(same_mask)
    assert (scene / "sparse/0/points3D.bin").read_bytes() == (again / "sparse/0/points3D.bin").read_bytes()
    assert not any(
        (scene / "images" / f"{s}.png").read_bytes() == (other / "images" / f"{s}.png").read_bytes() for s in stems
    )


def test_refuses_foreign_nonempty_folder_and_replaces_own(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "notes.txt").write_text("keep me")
    with pytest.raises(InputError):
        make_scene(tmp_path / "x", n_views=2, width=16, height=12, progress=False)
    out = make_scene(tmp_path / "y", n_views=3, width=16, height=12, progress=False)
    make_scene(out, n_views=2, width=16, height=12, progress=False)
    assert sorted(p.name for p in (out / "images").iterdir()) == ["view_000.png", "view_001.png"]


def test_masks_cover_exactly_the_objects_and_all_are_visible(scene):
    meta = json.loads((scene / "scene.json").read_text())
    ids = {o["id"] for o in meta["objects"]}
    assert ids == set(range(1, 7))
    seen = {k: 0 for k in ids}
    union = set()
    for s in _stems(scene):
        vals = set(np.unique(_read(scene / "gt_mask" / f"{s}.png", gray=True)).tolist())
        union |= vals
        for k in vals - {0}:
            seen[k] += 1
    assert union == ids | {0}
    assert all(n >= 0.8 * NV for n in seen.values()), seen


def test_colmap_model_matches_masks_and_depth(scene):
    meta = json.loads((scene / "scene.json").read_text())
    K, views, pts = _poses(scene)
    assert np.allclose(K[:2, 2], [W / 2, H / 2]) and K[0, 0] == K[1, 1]
    assert sorted(views) == _stems(scene)
    hits = total = 0
    for o in meta["objects"]:
        c = np.asarray(o["centre"])
        half = np.linalg.norm(np.asarray(o["bbox_max"]) - np.asarray(o["bbox_min"])) / 2
        for stem, V in views.items():
            pc = V[:3, :3] @ c + V[:3, 3]
            assert pc[2] > 0
            u, v = K[0, 0] * pc[0] / pc[2] + K[0, 2], K[1, 1] * pc[1] / pc[2] + K[1, 2]
            i, j = int(np.floor(u)), int(np.floor(v))
            assert 0 <= i < W and 0 <= j < H, (o["name"], stem)
            mask = _read(scene / "gt_mask" / f"{stem}.png", gray=True)
            depth = np.load(scene / "depth" / f"{stem}.npy")
            total += 1
            if mask[j, i] != o["id"]:
                continue  # centre hidden behind another object
            hits += 1
            # the visible surface is in front of the centre, by at most the half diagonal
            assert pc[2] - half - 1e-4 <= depth[j, i] < pc[2]
            if o["shape"] == "sphere":
                z = _ray_sphere_zdepth(K, V, i + 0.5, j + 0.5, c, o["size"][0])
                assert depth[j, i] == pytest.approx(z, rel=1e-5)
    assert hits >= 0.9 * total


def test_point_cloud_lies_on_surfaces(scene):
    meta = json.loads((scene / "scene.json").read_text())
    _, _, pts = _poses(scene)
    xyz = np.array([p.xyz for p in pts.values()])
    rgb = np.array([p.rgb for p in pts.values()])
    assert len(xyz) > 1000 and rgb.dtype == np.uint8
    tol = 4 * meta["point_cloud"]["noise_sigma"]
    on_floor = (np.abs(xyz[:, 2]) < tol) & (np.hypot(xyz[:, 0], xyz[:, 1]) < meta["floor"]["radius"] + tol)
    in_box = np.zeros(len(xyz), bool)
    for o in meta["objects"]:
        lo, hi = np.asarray(o["bbox_min"]) - tol, np.asarray(o["bbox_max"]) + tol
        in_box |= np.all((xyz >= lo) & (xyz <= hi), axis=1)
    assert np.mean(on_floor | in_box) > 0.97
    assert in_box.mean() > 0.2  # a good share of the points are on objects


def _shadow_zone(meta, K, V, depth):
    """Pixels whose surface point could be shadowed by an object's bounding sphere, per object id."""
    L = np.asarray(meta["light"]["direction_to_light"])
    jj, ii = np.mgrid[0:H, 0:W]
    xc = np.stack([(ii + 0.5 - K[0, 2]) / K[0, 0] * depth, (jj + 0.5 - K[1, 2]) / K[1, 1] * depth, depth], -1)
    p = (xc - V[:3, 3]) @ V[:3, :3]
    zones = {}
    for o in meta["objects"]:
        lo, hi = np.asarray(o["bbox_min"]), np.asarray(o["bbox_max"])
        c, r = (lo + hi) / 2, np.linalg.norm(hi - lo) / 2 + 0.02
        oc = c - p
        along = oc @ L
        dist2 = np.einsum("hwk,hwk->hw", oc, oc) - along**2
        zones[o["id"]] = (depth > 0) & (along > -r) & (dist2 < r * r)
    return zones


def test_without_changes_object_and_its_shadow_only(scene):
    meta = json.loads((scene / "scene.json").read_text())
    K, views, _ = _poses(scene)
    spec = scene_spec(0)
    kernel = np.ones((5, 5), np.uint8)
    for stem, V in views.items():
        full = _read(scene / "images" / f"{stem}.png").astype(int)
        mask = _read(scene / "gt_mask" / f"{stem}.png", gray=True)
        depth = np.load(scene / "depth" / f"{stem}.npy")
        zones = _shadow_zone(meta, K, V, depth)
        for k in range(1, 7):
            wo = _read(scene / "without" / str(k) / f"{stem}.png").astype(int)
            on_k = mask == k
            if on_k.sum():
                changed = np.any(wo != full, -1)
                assert changed[on_k].mean() > 0.9, (stem, k)
            near = cv2.dilate((on_k | zones[k]).astype(np.uint8), kernel) > 0
            assert np.array_equal(wo[~near], full[~near]), (stem, k)
        # the fast removal path equals a direct render with the object excluded
        if stem == "view_000":
            for k in (1, 2):
                ref = render_view(spec, K, V, W, H, exclude=(k,), supersample=2)["rgb"]
                ref8 = (np.clip(ref, 0, 1) * 255 + 0.5).astype(int)
                wo = _read(scene / "without" / str(k) / f"{stem}.png").astype(int)
                assert np.abs(ref8 - wo).max() <= 1
