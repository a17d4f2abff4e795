"""Faults in dataset inputs (issue #13): each is one InputError naming the file, and DATA is left untouched.

Photos passed as masks, images whose aspect ratio differs from their camera, non-rigid NeRF poses,
and the fault classes that already worked (corrupt image, invalid JSON, NaN pose, wrong mask size).
"""

import json
import re
import warnings
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from conftest import opengl_c2w, ring_eyes
from gsgroup.data import load_scene
from gsgroup.data.colmap import ColmapCamera, ColmapImage
from gsgroup.data.colmap_write import write_model
from gsgroup.data.masks import load_masks, read_mask
from gsgroup.errors import InputError
from gsgroup.geometry import look_at, rotmat_to_quat


def snapshot(root: Path):
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


def raises_naming(path: Path, *patterns: str):
    """pytest.raises(InputError) whose one-line message starts with ``path`` and matches ``patterns``."""

    class _Check:
        def __enter__(self):
            self.ctx = pytest.raises(InputError)
            self.info = self.ctx.__enter__()
            return self.info

        def __exit__(self, *exc):
            handled = self.ctx.__exit__(*exc)
            msg = str(self.info.value)
            assert "\n" not in msg, msg
            assert msg.startswith(str(path)), msg
            for p in patterns:
                assert re.search(p, msg), (p, msg)
            return handled

    return _Check()


def make_colmap(root: Path, cam_size=(40, 30), img_size=None, n=3):
    """COLMAP dataset: PINHOLE camera of ``cam_size``, ``n`` random images of ``img_size`` (default cam_size)."""
    w, h = cam_size
    iw, ih = img_size or cam_size
    cam = ColmapCamera(1, "PINHOLE", w, h, np.array([30.0, 30.0, w / 2, h / 2]))
    rng = np.random.default_rng(0)
    images = {}
    for i, eye in enumerate(ring_eyes(n)):
        V = look_at(eye, (0.0, 0.0, 0.0))
        name = f"img_{i:02d}.png"
        images[i + 1] = ColmapImage(i + 1, rotmat_to_quat(V[:3, :3]), V[:3, 3], 1, name)
        (root / "images").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / "images" / name), rng.integers(0, 256, (ih, iw, 3), dtype=np.uint8))
    write_model(root / "sparse" / "0", {1: cam}, images, {}, binary=True)
    return images


def make_nerf(root: Path, img_size=(8, 6), wh=None, n=3, c2ws=None):
    """NeRF dataset with ``n`` frames on a ring; ``wh`` adds top-level w/h; ``c2ws`` overrides poses."""
    root.mkdir(parents=True, exist_ok=True)
    frames = []
    for i in range(n):
        c2w = opengl_c2w(ring_eyes(n)[i]) if c2ws is None else c2ws[i]
        cv2.imwrite(str(root / f"f{i}.png"), np.full((img_size[1], img_size[0], 3), 50, np.uint8))
        frames.append({"file_path": f"./f{i}", "transform_matrix": np.asarray(c2w).tolist()})
    meta = {"camera_angle_x": 1.0, "frames": frames}
    if wh is not None:
        meta["w"], meta["h"] = wh
    (root / "transforms.json").write_text(json.dumps(meta))


def load(data: Path, tmp_path: Path):
    return load_scene(data, cache_dir=tmp_path / "cache", allow_empty_points=True, progress=False)


def views(names, w, h):
    return [SimpleNamespace(name=n, width=w, height=h) for n in names]


# ----------------------------------------------------------------------------- photos as masks


def test_jpeg_photos_as_masks_are_refused(tmp_path):
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(2):
        cv2.imwrite(str(data / "images" / f"v{i}.jpg"), rng.integers(0, 256, (30, 40, 3), dtype=np.uint8))
    before = snapshot(data)
    with raises_naming(data / "images" / "v0.jpg", "JPEG", "lossless label image", "mask folder"):
        load_masks(data / "images", views(["v0", "v1"], 40, 30))
    with raises_naming(data / "images" / "v1.jpg", "JPEG"):
        read_mask(data / "images" / "v1.jpg")
    assert snapshot(data) == before


def test_jpeg_content_under_png_name_is_refused(tmp_path):
    ok, buf = cv2.imencode(".jpg", np.full((30, 40), 3, np.uint8))
    assert ok
    p = tmp_path / "v0.png"
    p.write_bytes(buf.tobytes())
    with raises_naming(p, "JPEG"):
        read_mask(p)


def test_photo_saved_as_png_is_refused(tmp_path):
    """A colour photo (thousands of colours) must not become thousands of classes."""
    data = tmp_path / "images"
    data.mkdir()
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:120, 0:160]
    photo = np.stack([xx * 1.5, yy * 2.0, (xx + yy) * 0.9], -1) + rng.normal(0, 6, (120, 160, 3))
    cv2.imwrite(str(data / "v0.png"), np.clip(photo, 0, 255).astype(np.uint8))
    before = snapshot(data)
    with raises_naming(data / "v0.png", "looks like a photo, not a label map", "lossless label image"):
        load_masks(data, views(["v0"], 160, 120))
    assert snapshot(data) == before


def test_small_photo_refused_by_colours_per_pixel(tmp_path):
    """Below the absolute limit, a colour map with fewer than 16 pixels per colour still reads as a photo."""
    p = tmp_path / "small.png"
    rng = np.random.default_rng(2)
    cv2.imwrite(str(p), rng.integers(0, 256, (40, 50, 3), dtype=np.uint8))  # ~2000 colours in 2000 px
    with raises_naming(p, "looks like a photo"):
        read_mask(p)


def test_grey16_with_implausible_label_count_is_refused(tmp_path):
    p = tmp_path / "depth.png"
    cv2.imwrite(str(p), (np.arange(100 * 80).reshape(80, 100) * 7 % 65536).astype(np.uint16))  # 7999 ids besides 0
    with raises_naming(p, r"7999 distinct ids", "looks like a photo"):
        read_mask(p)


def test_plausible_label_maps_still_read(tmp_path):
    # 8-bit grey, every pixel its own id: never a photo by count
    g = np.arange(256, dtype=np.uint8).reshape(16, 16)
    cv2.imwrite(str(tmp_path / "g.png"), g)
    np.testing.assert_array_equal(read_mask(tmp_path / "g.png"), g)
    # colour-coded, 300 colours in blocks of 4x4 pixels (16 pixels per colour)
    ids = np.repeat(np.repeat(np.arange(300).reshape(15, 20), 4, 0), 4, 1)
    rgb = np.stack([ids % 7 * 30, ids // 7 % 7 * 30, ids // 49 * 30 + 20], -1).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "c.png"), rgb[:, :, ::-1])
    out = read_mask(tmp_path / "c.png")
    assert len(np.unique(out)) == 300 and out.min() == 1
    # 16-bit grey with 4096 distinct ids (the limit) still reads
    big = (np.arange(64 * 64).reshape(64, 64) + 1).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "b.png"), big)
    np.testing.assert_array_equal(read_mask(tmp_path / "b.png"), big)


# ----------------------------------------------------------------------------- aspect ratio and poses


def test_colmap_image_of_other_aspect_is_refused(tmp_path):
    data = tmp_path / "data"
    make_colmap(data, cam_size=(40, 30), img_size=(40, 20))
    before = snapshot(data)
    with raises_naming(data / "images" / "img_00.png", "40x20", "40x30", "aspect ratio", "images.bin"):
        load(data, tmp_path)
    assert snapshot(data) == before


@pytest.mark.parametrize("img_size", [(20, 15), (21, 15), (20, 16)])
def test_colmap_rounded_downscale_is_accepted(tmp_path, img_size):
    """A camera of 41x31 and images downscaled with rounding (under 1 px off the camera's aspect)."""
    make_colmap(tmp_path, cam_size=(41, 31), img_size=img_size, n=2)
    v = load(tmp_path, tmp_path.parent / "cache").train[0]
    assert (v.width, v.height) == img_size
    np.testing.assert_allclose(v.K[0, 0], 30 * img_size[0] / 41, rtol=1e-6)
    np.testing.assert_allclose(v.K[1, 1], 30 * img_size[1] / 31, rtol=1e-6)


def test_nerf_image_of_other_aspect_is_refused(tmp_path):
    data = tmp_path / "data"
    make_nerf(data, img_size=(8, 4), wh=(8, 6))
    before = snapshot(data)
    with raises_naming(data / "f0.png", "8x4", "8x6", "aspect ratio", "transforms.json"):
        load(data, tmp_path)
    assert snapshot(data) == before


def test_nerf_half_size_images_are_accepted(tmp_path):
    make_nerf(tmp_path / "data", img_size=(8, 6), wh=(16, 12))
    v = load(tmp_path / "data", tmp_path).train[0]
    assert (v.width, v.height) == (8, 6)


def test_nerf_scaled_rotation_is_refused(tmp_path):
    data = tmp_path / "data"
    c2ws = [opengl_c2w(e) for e in ring_eyes(3)]
    c2ws[1][:3, :3] *= 3.0
    make_nerf(data, c2ws=c2ws)
    before = snapshot(data)
    with raises_naming(data / "transforms.json", r"frame 1 \(\./f1\)", "not orthonormal", "rigid"):
        load(data, tmp_path)
    assert snapshot(data) == before


def test_nerf_mirrored_rotation_is_refused(tmp_path):
    c2ws = [opengl_c2w(e) for e in ring_eyes(3)]
    c2ws[2][:3, 0] *= -1.0
    make_nerf(tmp_path / "data", c2ws=c2ws)
    with raises_naming(tmp_path / "data" / "transforms.json", "frame 2", "mirrored"):
        load(tmp_path / "data", tmp_path)


def test_nerf_rounded_rotation_is_accepted_and_orthonormalised(tmp_path):
    rng = np.random.default_rng(0)
    c2ws = [opengl_c2w(e) for e in ring_eyes(3)]
    for m in c2ws:
        m[:3, :3] += rng.normal(0, 1e-4, (3, 3))
    make_nerf(tmp_path / "data", c2ws=c2ws)
    s = load(tmp_path / "data", tmp_path)
    for v in s.train:
        R = v.viewmat[:3, :3].astype(np.float64)
        np.testing.assert_allclose(R.T @ R, np.eye(3), atol=1e-6)


# ----------------------------------------------------------------------------- fault classes that already work


def test_corrupt_image_file(tmp_path):
    data = tmp_path / "data"
    make_colmap(data)
    (data / "images" / "img_01.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    before = snapshot(data)
    with raises_naming(data / "images" / "img_01.png", "corrupt or unreadable"):
        load(data, tmp_path)
    assert snapshot(data) == before


def test_invalid_transforms_json(tmp_path):
    data = tmp_path / "data"
    make_nerf(data)
    (data / "transforms.json").write_text('{"camera_angle_x": 1.0, "frames": [')
    before = snapshot(data)
    with raises_naming(data / "transforms.json", "not valid JSON"):
        load(data, tmp_path)
    assert snapshot(data) == before


def test_nan_pose_nerf(tmp_path):
    data = tmp_path / "data"
    c2ws = [opengl_c2w(e) for e in ring_eyes(3)]
    c2ws[0][0, 3] = np.nan
    make_nerf(data, c2ws=c2ws)
    text = (data / "transforms.json").read_text()
    assert "NaN" in text
    before = snapshot(data)
    with raises_naming(data / "transforms.json", "frame 0", "NaN"):
        load(data, tmp_path)
    assert snapshot(data) == before


def test_nan_pose_colmap(tmp_path):
    data = tmp_path / "data"
    images = make_colmap(data)
    images[2] = ColmapImage(2, np.array([np.nan, 0, 0, 0]), np.zeros(3), 1, images[2].name)
    write_model(
        data / "sparse" / "0", {1: ColmapCamera(1, "PINHOLE", 40, 30, np.array([30.0, 30, 20, 15]))}, images, {}
    )
    before = snapshot(data)
    with raises_naming(data / "sparse" / "0" / "images.bin", "img_01.png", "non-finite"):
        load(data, tmp_path)
    assert snapshot(data) == before


def test_wrong_mask_size(tmp_path):
    masks = tmp_path / "masks"
    masks.mkdir()
    cv2.imwrite(str(masks / "v0.png"), np.ones((30, 40), np.uint8))
    cv2.imwrite(str(masks / "v1.png"), np.ones((30, 30), np.uint8))  # other aspect ratio
    before = snapshot(masks)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with raises_naming(masks / "v1.png", "30x30", "40x30", "aspect ratio"):
            load_masks(masks, views(["v0", "v1"], 40, 30))
    assert snapshot(masks) == before
