"""NeRF/Blender/instant-ngp loading: poses, intrinsics, file paths, missing frames, RGBA, PLY, fox."""

import json
import math
import os
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import opengl_c2w, ring_eyes
from gsgroup.data import load_scene
from gsgroup.data.nerf import opengl_c2w_to_opencv_w2c, parse_transforms, read_ply_points
from gsgroup.errors import InputError
from gsgroup.geometry import camera_center

FOX = Path(__file__).resolve().parents[2] / "shared" / "data" / "fox"


def write_png(path, rgb_or_rgba_uint8):
    a = np.asarray(rgb_or_rgba_uint8)
    bgr = a[:, :, [2, 1, 0, 3]] if a.shape[2] == 4 else a[:, :, ::-1]
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.ascontiguousarray(bgr))


def project(K, viewmat, X):
    p = viewmat[:3, :3] @ np.asarray(X, float) + viewmat[:3, 3]
    assert p[2] > 0, "point behind the camera"
    uv = K @ (p / p[2])
    return uv[:2]


def test_opengl_to_opencv_identity_camera():
    # Camera at z=4 looking down -z at the origin (OpenGL identity rotation), y world up.
    c2w = np.eye(4)
    c2w[2, 3] = 4.0
    V = opengl_c2w_to_opencv_w2c(c2w)
    K = np.array([[100.0, 0, 50], [0, 100.0, 40], [0, 0, 1]])
    np.testing.assert_allclose(project(K, V, [0, 0, 0]), [50, 40], atol=1e-12)
    np.testing.assert_allclose(project(K, V, [0, 1, 0]), [50, 40 - 100 * 1 / 4], atol=1e-12)  # up -> smaller v
    np.testing.assert_allclose(project(K, V, [1, 0, 0]), [50 + 100 / 4, 40], atol=1e-12)  # right -> larger u
    np.testing.assert_allclose(V[:3, :3], np.diag([1, -1, -1]), atol=1e-15)


def test_opengl_to_opencv_blender_z_up():
    # Blender convention: world z up, camera on -y looking at the origin.
    c2w = opengl_c2w([0, -5, 0])
    V = opengl_c2w_to_opencv_w2c(c2w)
    K = np.array([[200.0, 0, 100], [0, 200.0, 80], [0, 0, 1]])
    np.testing.assert_allclose(project(K, V, [0, 0, 0]), [100, 80], atol=1e-9)
    u, v = project(K, V, [0, 0, 1])
    assert abs(u - 100) < 1e-9 and v == pytest.approx(80 - 200 / 5)
    # general position: the origin still lands on the principal point
    V2 = opengl_c2w_to_opencv_w2c(opengl_c2w([3, -2, 1.5]))
    np.testing.assert_allclose(project(K, V2, [0, 0, 0]), [100, 80], atol=1e-9)
    assert project(K, V2, [0, 0, 0.5])[1] < 80
    # camera centre of the world-to-camera matrix equals the transform's translation
    np.testing.assert_allclose(camera_center(V2), [3, -2, 1.5], atol=1e-12)


def make_nerf(root: Path, frames, top=None, size=(40, 30), name="transforms.json", alpha=None):
    """Write a transforms file; frames: list of (file_path_in_json, real_file_or_None, eye, extra_keys)."""
    root.mkdir(parents=True, exist_ok=True)
    out = []
    w, h = size
    for fp, real, eye, extra in frames:
        if real is not None:
            img = np.zeros((h, w, 3 if alpha is None else 4), np.uint8)
            img[..., 0] = 200
            img[..., 1] = 100
            if alpha is not None:
                img[..., 3] = alpha
            write_png(root / real, img)
        out.append({"file_path": fp, "transform_matrix": opengl_c2w(eye).tolist(), **extra})
    meta = dict(top or {})
    meta["frames"] = out
    (root / name).write_text(json.dumps(meta))
    return root / name


def test_intrinsics_camera_angle_vs_fl(tmp_path):
    ang = 0.9
    f_expected = 0.5 * 40 / math.tan(0.5 * ang)
    eyes = ring_eyes(3)
    frames = [(f"./im/{i}.png", f"im/{i}.png", e, {}) for i, e in enumerate(eyes)]
    a = make_nerf(tmp_path / "a", frames, {"camera_angle_x": ang})
    b = make_nerf(
        tmp_path / "b", frames, {"fl_x": f_expected, "fl_y": f_expected, "cx": 20, "cy": 15, "w": 40, "h": 30}
    )
    fa, _ = parse_transforms(a, None)
    fb, _ = parse_transforms(b, None)
    for x, y in zip(fa, fb):
        np.testing.assert_allclose(x.K, y.K, rtol=1e-12)
        assert x.calib_size == (40, 30)
    np.testing.assert_allclose(fa[0].K, [[f_expected, 0, 20], [0, f_expected, 15], [0, 0, 1]])
    # camera_angle_y gives its own focal
    c = make_nerf(tmp_path / "c", frames, {"camera_angle_x": ang, "camera_angle_y": 0.5})
    fc, _ = parse_transforms(c, None)
    assert fc[0].K[1, 1] == pytest.approx(0.5 * 30 / math.tan(0.25))


def test_per_frame_overrides(tmp_path):
    eyes = ring_eyes(2)
    frames = [
        ("im/0.png", "im/0.png", eyes[0], {}),
        ("im/1.png", "im/1.png", eyes[1], {"fl_x": 77.0, "fl_y": 66.0, "cx": 10.0, "k1": 0.0}),
    ]
    p = make_nerf(tmp_path, frames, {"fl_x": 50.0, "cx": 21.0, "cy": 14.0})
    fr, _ = parse_transforms(p, None)
    np.testing.assert_allclose(fr[0].K, [[50, 0, 21], [0, 50, 14], [0, 0, 1]])
    np.testing.assert_allclose(fr[1].K, [[77, 0, 10], [0, 66, 14], [0, 0, 1]])


def test_missing_extension_and_missing_frames_warning(tmp_path):
    eyes = ring_eyes(6)
    frames = [
        ("./train/r_0", "train/r_0.png", eyes[0], {}),
        ("train/r_1", "train/r_1.jpg", eyes[1], {}),
        ("./train/r_2.png", "train/r_2.png", eyes[2], {}),
        ("./train/r_3", None, eyes[3], {}),
        ("./train/r_4.png", None, eyes[4], {}),
        ("./train/r_5", "train/r_5.JPG", eyes[5], {}),
    ]
    p = make_nerf(tmp_path, frames, {"camera_angle_x": 0.8})
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        scene = load_scene(tmp_path, progress=False, cache_dir=tmp_path.parent / "cache")
    msgs = [str(x.message) for x in w]
    assert len(msgs) == 1, msgs
    assert "skipped 2 of 6 frames" in msgs[0] and str(p) in msgs[0]
    assert [v.name for v in scene.train] == ["r_0", "r_1", "r_2", "r_5"]
    assert scene.train[1].image_path.name == "r_1.jpg" and scene.train[3].image_path.name == "r_5.JPG"
    assert scene.source == "nerf" and scene.points is None and scene.test == []
    # the same dataset loaded again, by a relative path, warns with the same (absolute) text: Python
    # shows it once per process, not once per load as in `gsgroup run`'s three stages
    cwd = os.getcwd()
    try:
        os.chdir(tmp_path.parent)
        with warnings.catch_warnings(record=True) as w2:
            warnings.simplefilter("always")
            load_scene(tmp_path.name, progress=False, cache_dir=tmp_path.parent / "cache")
    finally:
        os.chdir(cwd)
    assert [str(x.message) for x in w2] == msgs


def test_rgba_composited_on_background(tmp_path):
    frames = [(f"im/{i}", f"im/{i}.png", e, {}) for i, e in enumerate(ring_eyes(2))]
    make_nerf(tmp_path / "d", frames, {"camera_angle_x": 0.8}, alpha=64)
    bg = (0.0, 1.0, 0.25)
    scene = load_scene(tmp_path / "d", background=bg, progress=False, cache_dir=tmp_path / "c")
    a = 64 / 255
    expected = np.array([200 / 255 * a + bg[0] * (1 - a), 100 / 255 * a + bg[1] * (1 - a), 0 * a + bg[2] * (1 - a)])
    img = scene.train[0].image
    assert img.shape == (30, 40, 3) and img.dtype == np.float32
    np.testing.assert_allclose(img.reshape(-1, 3), np.broadcast_to(expected, (1200, 3)), atol=1e-6)
    black = load_scene(tmp_path / "d", progress=False, cache_dir=tmp_path / "c").train[0].image
    np.testing.assert_allclose(black[0, 0], expected - np.array(bg) * (1 - a), atol=1e-6)


def test_split_files_and_names(tmp_path):
    """transforms_train/test: test split used with eval=True, merged into train otherwise; val ignored."""
    root = tmp_path / "blender"
    eyes = ring_eyes(5)
    make_nerf(
        root,
        [(f"./train/r_{i}", f"train/r_{i}.png", eyes[i], {}) for i in range(3)],
        {"camera_angle_x": 0.7},
        name="transforms_train.json",
    )
    make_nerf(
        root,
        [(f"./test/r_{i}", f"test/r_{i}.png", eyes[3 + i], {}) for i in range(2)],
        {"camera_angle_x": 0.7},
        name="transforms_test.json",
    )
    make_nerf(root, [("./val/r_0", "val/r_0.png", eyes[0], {})], {"camera_angle_x": 0.7}, name="transforms_val.json")
    s = load_scene(root, eval=True, progress=False, cache_dir=tmp_path / "c")
    assert [v.name for v in s.train] == ["train_r_0", "train_r_1", "train_r_2"]  # stems clash -> folder prefix
    assert [v.name for v in s.test] == ["test_r_0", "test_r_1"]
    s2 = load_scene(root, eval=False, progress=False, cache_dir=tmp_path / "c")
    assert len(s2.train) == 5 and s2.test == []


def test_nan_pose_names_file_and_frame(tmp_path):
    p = make_nerf(
        tmp_path, [(f"im/{i}.png", f"im/{i}.png", e, {}) for i, e in enumerate(ring_eyes(3))], {"camera_angle_x": 0.8}
    )
    meta = json.loads(p.read_text())
    meta["frames"][1]["transform_matrix"][0][3] = float("nan")
    p.write_text(json.dumps(meta))  # json.dumps writes NaN, which Python's json reads back
    with pytest.raises(InputError, match=r"transforms\.json.*frame 1 \(im/1\.png\)"):
        load_scene(tmp_path, progress=False, cache_dir=tmp_path.parent / "c")


def test_no_focal_is_an_error(tmp_path):
    make_nerf(tmp_path, [("im/0.png", "im/0.png", [0, -3, 0], {})], {})
    with pytest.raises(InputError, match="transforms.json.*focal"):
        load_scene(tmp_path, progress=False, cache_dir=tmp_path.parent / "c")


@pytest.mark.parametrize("fmt", ["ascii", "binary_little_endian", "binary_big_endian"])
def test_ply_points(tmp_path, fmt):
    rng = np.random.default_rng(1)
    xyz = rng.normal(size=(7, 3)).astype(np.float32)
    rgb = rng.integers(0, 256, (7, 3)).astype(np.uint8)
    head = (
        f"ply\nformat {fmt} 1.0\nelement vertex 7\nproperty float x\nproperty float y\nproperty float z\n"
        "property float nx\nproperty uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n"
    )
    if fmt == "ascii":
        body = "".join(
            f"{a[0]!r} {a[1]!r} {a[2]!r} 0 {c[0]} {c[1]} {c[2]}\n" for a, c in zip(xyz.tolist(), rgb.tolist())
        ).encode()
    else:
        o = "<" if fmt == "binary_little_endian" else ">"
        rec = np.zeros(
            7,
            [
                ("x", o + "f4"),
                ("y", o + "f4"),
                ("z", o + "f4"),
                ("nx", o + "f4"),
                ("r", "u1"),
                ("g", "u1"),
                ("b", "u1"),
            ],
        )
        rec["x"], rec["y"], rec["z"] = xyz.T
        rec["r"], rec["g"], rec["b"] = rgb.T
        body = rec.tobytes()
    (tmp_path / "p.ply").write_bytes(head.encode() + body)
    got_xyz, got_rgb = read_ply_points(tmp_path / "p.ply")
    np.testing.assert_array_equal(got_xyz, xyz)
    np.testing.assert_allclose(got_rgb, rgb / 255.0, atol=1e-7)


def test_ply_points_colour_types_element_order_and_errors(tmp_path):
    """16-bit and float colours, no colours, a face element before the vertices, and one-line errors."""
    plyfile = pytest.importorskip("plyfile")
    rec = np.zeros(3, [("x", "f8"), ("y", "f8"), ("z", "f8"), ("red", "u2"), ("green", "u2"), ("blue", "u2")])
    rec["x"], rec["red"], rec["blue"] = [1, 2, 3], [65535, 0, 13107], [0, 65535, 0]
    faces = np.array([([0, 1, 2],)], [("vertex_indices", "O")])
    plyfile.PlyData(
        [plyfile.PlyElement.describe(faces, "face"), plyfile.PlyElement.describe(rec, "vertex")], byte_order=">"
    ).write(str(tmp_path / "u16.ply"))
    xyz, rgb = read_ply_points(tmp_path / "u16.ply")
    np.testing.assert_array_equal(xyz[:, 0], [1, 2, 3])
    np.testing.assert_allclose(rgb, [[1, 0, 0], [0, 0, 1], [0.2, 0, 0]], atol=1e-7)
    frec = np.array([(0.0, 1.0, 2.0, 0.25, 0.5, 1.5)], [(k, "f4") for k in ("x", "y", "z", "r", "g", "b")])
    plyfile.PlyData([plyfile.PlyElement.describe(frec, "vertex")], text=True).write(str(tmp_path / "f.ply"))
    np.testing.assert_allclose(read_ply_points(tmp_path / "f.ply")[1], [[0.25, 0.5, 1.0]])
    plyfile.PlyData(
        [plyfile.PlyElement.describe(frec[["x", "y", "z"]].astype([(k, "f4") for k in "xyz"]), "vertex")]
    ).write(str(tmp_path / "plain.ply"))
    assert read_ply_points(tmp_path / "plain.ply")[1] is None
    head = "ply\nformat binary_little_endian 1.0\nelement vertex 4\nproperty float x\nproperty float y\nproperty float z\nend_header\n"
    bad = {
        "trunc.ply": (head.encode() + bytes(20), "truncated"),
        "noxyz.ply": (b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float u\nend_header\n1\n", "no x, y, z"),
        "junk.ply": (b"PK\x03\x04", "not a PLY"),
        "text.ply": (
            b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nproperty float y\nproperty float z\n"
            b"end_header\n1 2 nan?\n",
            "malformed",
        ),
    }
    for name, (raw, what) in bad.items():
        (tmp_path / name).write_bytes(raw)
        with pytest.raises(InputError, match=what) as e:
            read_ply_points(tmp_path / name)
        assert name in str(e.value) and "re-export" in str(e.value) and "\n" not in str(e.value)


def test_points3d_ply_loaded_into_scene(tmp_path):
    make_nerf(
        tmp_path, [(f"im/{i}.png", f"im/{i}.png", e, {}) for i, e in enumerate(ring_eyes(2))], {"camera_angle_x": 0.8}
    )
    (tmp_path / "points3d.ply").write_text(
        "ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\nproperty float y\nproperty float z\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n1 2 3 255 0 0\n-1 0 0.5 0 51 255\n"
    )
    s = load_scene(tmp_path, progress=False, cache_dir=tmp_path.parent / "c")
    np.testing.assert_array_equal(s.points, [[1, 2, 3], [-1, 0, 0.5]])
    np.testing.assert_allclose(s.colors, [[1, 0, 0], [0, 0.2, 1]], atol=1e-7)


# ----------------------------------------------------------------------------- real data: fox

needs_fox = pytest.mark.skipif(not (FOX / "transforms.json").is_file(), reason="shared fox data not present")


@needs_fox
def test_fox_transforms_parsing():
    """Parse fox's transforms.json only (no pixels): 50 of 67 frames, shared intrinsics and distortion."""
    meta = json.loads((FOX / "transforms.json").read_text())
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        frames, missing = parse_transforms(FOX / "transforms.json", None)
    assert missing == 17 and len(frames) == 50
    assert len(w) == 1 and "skipped 17 of 67 frames" in str(w[0].message)
    f0 = frames[0]
    np.testing.assert_allclose(f0.K, [[meta["fl_x"], 0, meta["cx"]], [0, meta["fl_y"], meta["cy"]], [0, 0, 1]])
    assert f0.calib_size == (1080, 1920)
    np.testing.assert_allclose(f0.dist, [meta["k1"], meta["k2"], meta["p1"], meta["p2"]])
    by_path = {fr["file_path"]: np.array(fr["transform_matrix"]) for fr in meta["frames"]}
    for f in frames:
        R = f.viewmat[:3, :3]
        np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-5)
        assert np.linalg.det(R) == pytest.approx(1.0, abs=1e-5)
        c2w = by_path[f.key]
        np.testing.assert_allclose(
            camera_center(f.viewmat), c2w[:3, 3], atol=1e-5
        )  # same camera centre (fox R is orthonormal to ~1e-7)
        np.testing.assert_allclose(R.T[:, 2], -c2w[:3, 2], atol=1e-5)  # OpenCV forward = OpenGL -z


@needs_fox
@pytest.mark.slow
def test_fox_loads(tmp_path):
    before = {p.name: p.stat().st_mtime_ns for p in FOX.rglob("*")}
    meta = json.loads((FOX / "transforms.json").read_text())
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        s = load_scene(FOX, resolution=270, cache_dir=tmp_path / "cache", progress=False)
    skip = [str(x.message) for x in w if "skipped" in str(x.message)]
    assert len(skip) == 1 and "skipped 17 of 67 frames" in skip[0]
    assert len(s.train) == 50 and s.test == [] and s.points is None and s.source == "nerf"
    for v in s.train:
        assert (v.width, v.height) == (270, 480) and v.image.shape == (480, 270, 3)
        assert v.image_path.parent == tmp_path / "cache" / "undistorted"  # undistorted copy, in the cache
        assert 0.0 <= v.image.min() and v.image.max() <= 1.0 and v.image.std() > 0.02
    K = s.train[0].K
    # K scaled by 270/1080 = 0.25; the undistorted pinhole may zoom slightly (< 5 %) to crop invalid borders
    assert K[0, 0] == pytest.approx(meta["fl_x"] * 0.25, rel=0.05) and K[1, 1] == pytest.approx(
        meta["fl_y"] * 0.25, rel=0.05
    )
    assert K[0, 2] == pytest.approx(meta["cx"] * 0.25, abs=10) and K[1, 2] == pytest.approx(meta["cy"] * 0.25, abs=10)
    centres = camera_center(np.stack([v.viewmat for v in s.train]))
    assert s.extent == pytest.approx(1.1 * np.linalg.norm(centres - centres.mean(0), axis=1).max(), rel=1e-5)
    assert 0.5 < s.extent < 50
    assert len(list((tmp_path / "cache" / "undistorted").iterdir())) == 50
    after = {p.name: p.stat().st_mtime_ns for p in FOX.rglob("*")}
    assert before == after  # DATA untouched
