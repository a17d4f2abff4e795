"""load_scene on synthetic COLMAP/NeRF datasets: sizes, intrinsics, split, extent, undistortion, bad input."""

import json
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import opengl_c2w, ring_eyes
from gsgroup.data import load_scene, target_size
from gsgroup.data.colmap import ColmapCamera, ColmapImage, ColmapPoint
from gsgroup.data.colmap_write import write_model
from gsgroup.errors import InputError
from gsgroup.geometry import camera_center, look_at, rotmat_to_quat


def make_colmap(root: Path, n=5, size=(41, 31), camera=None, n_points=10, binary=True, names=None, sparse="sparse/0"):
    """A COLMAP dataset of ``n`` cameras on a ring (radius 4, z=1) looking at the origin, random images."""
    w, h = size
    camera = camera or ColmapCamera(1, "PINHOLE", w, h, np.array([30.0, 32.0, w / 2, h / 2]))
    rng = np.random.default_rng(0)
    names = names or [f"img_{i:02d}.png" for i in range(n)]
    images = {}
    for i, (eye, name) in enumerate(zip(ring_eyes(n), names)):
        V = look_at(eye, (0.0, 0.0, 0.0))
        images[i + 1] = ColmapImage(i + 1, rotmat_to_quat(V[:3, :3]), V[:3, 3], camera.id, name)
        (root / "images" / name).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / "images" / name), rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    points = {
        j: ColmapPoint(j, rng.normal(size=3), rng.integers(0, 256, 3).astype(np.uint8), 0.1)
        for j in range(1, n_points + 1)
    }
    write_model(root / sparse, {camera.id: camera}, images, points, binary=binary)
    return camera, images, points


def snapshot(root: Path):
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


# ----------------------------------------------------------------------------- resolution


def test_target_size_rules():
    assert target_size(1000, 600, None) == (1000, 600)
    assert target_size(1000, 600, -1) == (1000, 600)
    assert target_size(1600, 900, -1) == (1600, 900)
    assert target_size(3200, 1800, None) == (1600, 900)  # 3DGS: wider than 1600 -> 1600 wide
    assert target_size(4000, 3001, -1) == (1600, round(3001 / 2.5))
    assert target_size(1000, 600, 1) == (1000, 600)
    assert target_size(1000, 600, 2) == (500, 300)
    assert target_size(1001, 751, 2) == (round(500.5), round(375.5))  # odd sizes: Python round
    assert target_size(1001, 751, 4) == (250, 188)
    assert target_size(1001, 751, 8) == (125, 94)
    assert target_size(1080, 1920, 270) == (270, 480)  # larger number sets the width
    assert target_size(1000, 600, 500) == (500, 300)
    assert target_size(999, 333, 3) == (3, 1)  # 3 is not a divisor: it is a width, like 3DGS
    for bad in (0, -2, 2.5):
        with pytest.raises(InputError, match="resolution"):
            target_size(100, 100, bad)


@pytest.mark.parametrize("binary", [True, False])
def test_colmap_scene_sizes_intrinsics_points(tmp_path, binary):
    data = tmp_path / "data"
    cam, images, points = make_colmap(data, binary=binary)
    s = load_scene(data, resolution=2, progress=False, cache_dir=tmp_path / "cache")
    assert s.source == "colmap" and len(s.train) == 5 and s.test == []
    v = s.train[0]
    w, h = round(41 / 2), round(31 / 2)
    assert (v.width, v.height) == (w, h) and v.image.shape == (h, w, 3) and v.image.dtype == np.float32
    sx, sy = w / 41, h / 31  # real per-axis ratios
    np.testing.assert_allclose(v.K, [[30 * sx, 0, 20.5 * sx], [0, 32 * sy, 15.5 * sy], [0, 0, 1]], rtol=1e-6)
    assert v.K.dtype == np.float32 and v.viewmat.dtype == np.float32
    np.testing.assert_allclose(v.viewmat, look_at(ring_eyes(5)[0], (0.0, 0.0, 0.0)), atol=1e-6)
    assert v.image_path == data / "images" / "img_00.png"  # pinhole: the original is read
    # full-resolution pixels equal the file (RGB order)
    full = load_scene(data, resolution=1, progress=False).train[0]
    ref = cv2.imread(str(data / "images" / "img_00.png"))[:, :, ::-1] / 255.0
    np.testing.assert_allclose(full.image, ref, atol=1e-6)
    # INTER_AREA downscale of the file, held as uint8: rounded to the nearest 1/255
    assert v.pixels.dtype == np.uint8
    np.testing.assert_allclose(
        v.image, cv2.resize(ref.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA), atol=0.5 / 255 + 1e-6
    )
    ids = sorted(points)
    np.testing.assert_allclose(s.points, np.array([points[i].xyz for i in ids]), rtol=1e-6)
    np.testing.assert_allclose(s.colors, np.array([points[i].rgb for i in ids]) / 255.0, atol=1e-7)
    assert s.points.dtype == np.float32 and s.colors.dtype == np.float32
    # extent: 5 centres on a circle of radius 4 -> mean at (0,0,1), radius 1.1*4
    assert s.extent == pytest.approx(4.4, rel=1e-6)
    np.testing.assert_allclose(s.center, [0, 0, 1], atol=1e-6)


def test_sparse_without_0_and_simple_pinhole(tmp_path):
    cam = ColmapCamera(4, "SIMPLE_PINHOLE", 20, 10, np.array([25.0, 10.0, 5.0]))
    make_colmap(tmp_path, n=3, size=(20, 10), camera=cam, sparse="sparse")
    s = load_scene(tmp_path, progress=False)
    np.testing.assert_allclose(s.train[0].K, [[25, 0, 10], [0, 25, 5], [0, 0, 1]])


def test_downscaled_images_scale_intrinsics(tmp_path):
    """Images smaller than the COLMAP camera (e.g. an images_2 folder): K follows the pixels."""
    make_colmap(tmp_path, n=2, size=(40, 30))
    for p in (tmp_path / "images").iterdir():
        cv2.imwrite(str(p), cv2.resize(cv2.imread(str(p)), (20, 15)))
    v = load_scene(tmp_path, progress=False).train[0]
    assert (v.width, v.height) == (20, 15)
    np.testing.assert_allclose(v.K, [[15, 0, 10], [0, 16, 7.5], [0, 0, 1]])


# ----------------------------------------------------------------------------- split


def test_eval_every_8th_by_sorted_name(tmp_path):
    names = [f"v{i:02d}.png" for i in range(17)][::-1]  # written in reverse order
    make_colmap(tmp_path, n=17, names=names, size=(8, 6))
    s = load_scene(tmp_path, eval=True, progress=False)
    assert [v.name for v in s.test] == ["v00", "v08", "v16"]
    assert [v.name for v in s.train] == [f"v{i:02d}" for i in range(17) if i % 8]
    cams = [camera_center(v.viewmat) for v in s.train]
    c = np.mean(cams, 0)
    assert s.extent == pytest.approx(1.1 * max(np.linalg.norm(np.array(cams) - c, axis=1)), rel=1e-5)  # train cameras
    s2 = load_scene(tmp_path, eval=False, progress=False)
    assert len(s2.train) == 17 and s2.test == []


@pytest.mark.parametrize("where", ["test.txt", "sparse/0/test.txt"])
def test_test_list_overrides(tmp_path, where):
    make_colmap(tmp_path, n=10, size=(8, 6))
    (tmp_path / where).write_text("# held out\nimg_03\n\n./img_05.png\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = load_scene(tmp_path, eval=True, progress=False)
    assert [v.name for v in s.test] == ["img_03", "img_05"]
    assert len(s.train) == 8
    assert load_scene(tmp_path, eval=False, progress=False).test == []


def test_test_list_matching_nothing_is_an_error(tmp_path):
    make_colmap(tmp_path, n=3, size=(8, 6))
    (tmp_path / "test.txt").write_text("nope\n")
    with pytest.raises(InputError, match="test.txt"):
        load_scene(tmp_path, eval=True, progress=False)


def test_nerf_single_file_every_8th(tmp_path):
    frames = []
    for i in range(9):
        c2w = opengl_c2w(ring_eyes(9)[i])
        cv2.imwrite(str(tmp_path / f"f{i}.png"), np.full((6, 8, 3), 50, np.uint8))
        frames.append({"file_path": f"./f{i}", "transform_matrix": c2w.tolist()})
    (tmp_path / "transforms.json").write_text(json.dumps({"camera_angle_x": 1.0, "frames": frames}))
    s = load_scene(tmp_path, eval=True, progress=False)
    assert [v.name for v in s.test] == ["f0", "f8"]
    np.testing.assert_allclose(
        s.train[0].viewmat, look_at(ring_eyes(9)[1], (0.0, 0.0, 0.0)), atol=1e-6
    )  # round trip of the convention


# ----------------------------------------------------------------------------- undistortion

W, H = 160, 120
K0 = np.array([[110.0, 0, 81.0], [0, 108.0, 59.0], [0, 0, 1]])
DIST = np.array([-0.28, 0.07, 0.0015, -0.001])
# ideal (undistorted) normalised image positions of bright dots, spread towards the corners
DOTS = np.array([[x, y] for x in (-0.5, -0.2, 0.15, 0.45) for y in (-0.38, 0.0, 0.36)])


def distort_normalised(x, y, dist):
    """Forward OpenCV/COLMAP radial-tangential model (k1, k2, p1, p2) on normalised coordinates."""
    k1, k2, p1, p2 = dist
    r2 = x * x + y * y
    rad = 1 + k1 * r2 + k2 * r2 * r2
    return x * rad + 2 * p1 * x * y + p2 * (r2 + 2 * x * x), y * rad + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y


def distorted_dots_image():
    """uint16 image whose pixel p shows Gaussian dots placed at ideal normalised positions DOTS,
    i.e. the picture a camera with (K0, DIST) takes of them. The inverse of the distortion is found
    by fixed-point iteration of the analytic forward model (independent of OpenCV)."""
    u, v = np.meshgrid(np.arange(W, dtype=np.float64), np.arange(H, dtype=np.float64))
    xd, yd = (u - K0[0, 2]) / K0[0, 0], (v - K0[1, 2]) / K0[1, 1]
    x, y = xd.copy(), yd.copy()
    for _ in range(200):
        fx, fy = distort_normalised(x, y, DIST)
        x, y = x + (xd - fx), y + (yd - fy)
    fx, fy = distort_normalised(x, y, DIST)
    assert max(np.abs(fx - xd).max(), np.abs(fy - yd).max()) < 1e-10
    sig = 1.6 / K0[0, 0]
    img = np.zeros((H, W))
    for cx, cy in DOTS:
        img += np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * sig**2))
    img = np.clip(img, 0, 1)
    return (np.repeat(img[:, :, None], 3, 2) * 65535 + 0.5).astype(np.uint16)


def dot_centroids(gray, guesses, r=4):
    out = []
    for gx, gy in guesses:
        x0, y0 = int(round(gx)), int(round(gy))
        win = gray[y0 - r : y0 + r + 1, x0 - r : x0 + r + 1].astype(np.float64)
        win = np.clip(win - 0.05, 0, None)
        yy, xx = np.mgrid[y0 - r : y0 + r + 1, x0 - r : x0 + r + 1]
        out.append([(win * xx).sum() / win.sum(), (win * yy).sum() / win.sum()])
    return np.array(out)


def ideal_pixels(K):
    return DOTS @ np.diag([K[0, 0], K[1, 1]]) + K[:2, 2]


def check_undistorted(view):
    K = view.K.astype(np.float64)
    expected = ideal_pixels(K)
    got = dot_centroids(view.image[:, :, 0], expected)
    err = np.linalg.norm(got - expected, axis=1)
    assert err.max() < 0.5, err
    # and the distortion was real: in the raw image the dots are far from where the pinhole K0 puts them
    raw = distorted_dots_image()[:, :, 0] / 65535.0
    raw_err = np.linalg.norm(dot_centroids(raw, ideal_pixels(K0), r=6) - ideal_pixels(K0), axis=1)
    assert raw_err.max() > 3.0


def write_dots(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), distorted_dots_image())


def test_colmap_opencv_undistorted_into_cache_once(tmp_path):
    data, cache = tmp_path / "data", tmp_path / "cache"
    cam = ColmapCamera(1, "OPENCV", W, H, np.r_[K0[0, 0], K0[1, 1], K0[0, 2], K0[1, 2], DIST])
    make_colmap(data, n=2, size=(W, H), camera=cam)
    for p in (data / "images").iterdir():
        write_dots(p)
    before = snapshot(data)
    s = load_scene(data, resolution=1, cache_dir=cache, progress=False)
    v = s.train[0]
    assert v.image_path.parent == cache / "undistorted" and v.image_path.suffix == ".png"
    check_undistorted(v)
    cached = {p: p.stat().st_mtime_ns for p in (cache / "undistorted").iterdir()}
    assert len(cached) == 2
    s2 = load_scene(data, resolution=2, cache_dir=cache, progress=False)  # second load reuses the cache
    assert {p: p.stat().st_mtime_ns for p in (cache / "undistorted").iterdir()} == cached
    np.testing.assert_allclose(s2.train[0].K[0], v.K[0] * (s2.train[0].width / W), rtol=1e-6)
    assert snapshot(data) == before  # DATA untouched
    # a corrupt cache entry is replaced, not trusted
    v.image_path.write_bytes(b"garbage")
    s3 = load_scene(data, resolution=1, cache_dir=cache, progress=False)
    np.testing.assert_allclose(s3.train[0].image, v.image, atol=1e-6)


@pytest.mark.parametrize("model", ["SIMPLE_RADIAL", "RADIAL"])
def test_colmap_radial_models(tmp_path, model):
    params = [100.0, W / 2, H / 2, -0.2] + ([0.03] if model == "RADIAL" else [])
    cam = ColmapCamera(1, model, W, H, np.array(params))
    make_colmap(tmp_path / "d", n=1, size=(W, H), camera=cam)
    v = load_scene(tmp_path / "d", cache_dir=tmp_path / "c", progress=False).train[0]
    assert v.image_path.parent == tmp_path / "c" / "undistorted"
    # the returned pinhole K undistorts: a corner pixel of the output maps back inside the source image
    n = np.linalg.inv(v.K.astype(np.float64)) @ np.array([0.0, 0.0, 1.0])
    dist = np.array([params[3], params[4] if model == "RADIAL" else 0.0, 0, 0])
    Ksrc = np.array([[100.0, 0, W / 2], [0, 100.0, H / 2], [0, 0, 1]])
    uv, _ = cv2.projectPoints(n.reshape(1, 1, 3), np.zeros(3), np.zeros(3), Ksrc, dist)
    assert -1 <= uv[0, 0, 0] <= W and -1 <= uv[0, 0, 1] <= H


def test_nerf_distortion_undistorted(tmp_path):
    data = tmp_path / "data"
    write_dots(data / "images" / "a.png")
    c2w = np.eye(4)
    c2w[2, 3] = 3.0
    meta = {
        "fl_x": K0[0, 0],
        "fl_y": K0[1, 1],
        "cx": K0[0, 2],
        "cy": K0[1, 2],
        "w": W,
        "h": H,
        "k1": DIST[0],
        "k2": DIST[1],
        "p1": DIST[2],
        "p2": DIST[3],
        "frames": [{"file_path": "images/a", "transform_matrix": c2w.tolist()}],
    }
    (data / "transforms.json").write_text(json.dumps(meta))
    before = snapshot(data)
    v = load_scene(data, cache_dir=tmp_path / "cache", progress=False).train[0]
    assert v.image_path.parent == tmp_path / "cache" / "undistorted"
    check_undistorted(v)
    assert snapshot(data) == before


# ----------------------------------------------------------------------------- bad input


def test_missing_path(tmp_path):
    with pytest.raises(InputError, match="nowhere"):
        load_scene(tmp_path / "nowhere")


def test_unrecognised_layout(tmp_path):
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(InputError, match=f"{tmp_path}.*not a recognised dataset"):
        load_scene(tmp_path)


def test_empty_images_folder(tmp_path):
    make_colmap(tmp_path, n=2, size=(8, 6))
    for p in (tmp_path / "images").iterdir():
        p.unlink()
    with pytest.raises(InputError, match="images.*empty"):
        load_scene(tmp_path, progress=False)


def test_corrupt_image(tmp_path):
    make_colmap(tmp_path, n=2, size=(8, 6))
    (tmp_path / "images" / "img_01.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(InputError, match="img_01.png"):
        load_scene(tmp_path, progress=False)


def test_pose_references_missing_camera(tmp_path):
    cam, images, points = make_colmap(tmp_path, n=2, size=(8, 6))
    images[2].camera_id = 9
    write_model(tmp_path / "sparse" / "0", {cam.id: cam}, images, points)
    with pytest.raises(InputError, match=r"images\.bin.*camera 9"):
        load_scene(tmp_path, progress=False)


@pytest.mark.parametrize("binary", [True, False])
def test_zero_points(tmp_path, binary):
    cam, images, _ = make_colmap(tmp_path, n=2, size=(8, 6), binary=binary)
    write_model(tmp_path / "sparse" / "0", {cam.id: cam}, images, {}, binary=binary)
    with pytest.raises(InputError, match=r"points3D\.(bin|txt).*--init random"):
        load_scene(tmp_path, progress=False)
    s = load_scene(tmp_path, allow_empty_points=True, progress=False)
    assert s.points is None and s.colors is None and len(s.train) == 2


@pytest.mark.parametrize("binary", [True, False])
def test_nan_colmap_pose(tmp_path, binary):
    cam, images, points = make_colmap(tmp_path, n=3, size=(8, 6), binary=binary)
    images[2].tvec = np.array([0.0, np.nan, 1.0])
    write_model(tmp_path / "sparse" / "0", {cam.id: cam}, images, points, binary=binary)
    with pytest.raises(InputError, match=r"images\.(bin|txt).*img_01\.png"):
        load_scene(tmp_path, progress=False)


def test_unsupported_camera_model(tmp_path):
    cam = ColmapCamera(1, "OPENCV_FISHEYE", 8, 6, np.array([5.0, 5, 4, 3, 0.1, 0, 0, 0]))
    make_colmap(tmp_path, n=2, size=(8, 6), camera=cam)
    with pytest.raises(InputError, match=r"cameras\.bin.*OPENCV_FISHEYE.*image_undistorter"):
        load_scene(tmp_path, progress=False)


def test_missing_colmap_images_skipped_with_one_warning(tmp_path):
    make_colmap(tmp_path, n=4, size=(8, 6))
    (tmp_path / "images" / "img_02.png").unlink()
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        s = load_scene(tmp_path, progress=False)
    assert [str(x.message) for x in w if "skipped" in str(x.message)] == [
        f"skipped 1 of 4 images in {tmp_path / 'sparse' / '0' / 'images.bin'}: image file not found in {tmp_path / 'images'}"
    ]
    assert [v.name for v in s.train] == ["img_00", "img_01", "img_03"]


def test_cache_inside_data_refused(tmp_path):
    make_colmap(tmp_path, n=2, size=(8, 6))
    with pytest.raises(InputError, match="cache"):
        load_scene(tmp_path, cache_dir=tmp_path / "cache", progress=False)


def test_bad_background(tmp_path):
    make_colmap(tmp_path, n=2, size=(8, 6))
    with pytest.raises(InputError, match="background"):
        load_scene(tmp_path, background=(0, 0, 2), progress=False)
