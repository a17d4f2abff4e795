"""COLMAP model reading/writing: round trips, the documented text format, and the binary byte layout."""

import struct

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from gsgroup.data.colmap import (
    ColmapCamera,
    ColmapImage,
    ColmapPoint,
    read_model,
    read_points3d_arrays,
)
from gsgroup.data.colmap_write import write_model
from gsgroup.errors import InputError


def make_model(seed=0, n_points=20):
    rng = np.random.default_rng(seed)
    cams = {
        1: ColmapCamera(1, "PINHOLE", 640, 480, np.array([500.5, 501.25, 320.0, 240.5])),
        2: ColmapCamera(2, "SIMPLE_RADIAL", 100, 80, np.array([90.0, 50.0, 40.0, -0.01])),
        7: ColmapCamera(7, "OPENCV", 1920, 1080, np.array([1000.0, 1001.0, 960.0, 540.0, 0.1, -0.02, 0.001, 0.002])),
    }
    images = {}
    for i, cid in zip((1, 2, 5), (1, 2, 7)):
        q = Rotation.random(random_state=seed + i).as_quat()[[3, 0, 1, 2]]
        m = 4 + i
        images[i] = ColmapImage(
            i,
            q * np.sign(q[0]),
            rng.normal(size=3),
            cid,
            f"sub dir/img_{i}.jpg",
            rng.uniform(0, 500, (m, 2)),
            rng.integers(-1, n_points, m).astype(np.int64),
        )
    images[9] = ColmapImage(9, np.array([1.0, 0, 0, 0]), np.zeros(3), 1, "no_points.png")  # empty 2D points line
    points = {}
    for j in range(1, n_points + 1):
        L = int(rng.integers(0, 4))
        points[j * 3] = ColmapPoint(
            j * 3,
            rng.normal(size=3),
            rng.integers(0, 256, 3).astype(np.uint8),
            float(rng.uniform(0, 2)),
            rng.integers(1, 10, L).astype(np.int64),
            rng.integers(0, 100, L).astype(np.int64),
        )
    return cams, images, points


def assert_models_equal(a, b):
    ca, ia, pa = a
    cb, ib, pb = b
    assert ca.keys() == cb.keys() and ia.keys() == ib.keys() and pa.keys() == pb.keys()
    for k in ca:
        x, y = ca[k], cb[k]
        assert (x.id, x.model, x.width, x.height) == (y.id, y.model, y.width, y.height)
        np.testing.assert_array_equal(x.params, y.params)
    for k in ia:
        x, y = ia[k], ib[k]
        assert (x.id, x.camera_id, x.name) == (y.id, y.camera_id, y.name)
        np.testing.assert_array_equal(x.qvec, y.qvec)
        np.testing.assert_array_equal(x.tvec, y.tvec)
        np.testing.assert_array_equal(np.reshape(x.xys, (-1, 2)), np.reshape(y.xys, (-1, 2)))
        np.testing.assert_array_equal(x.point3d_ids, y.point3d_ids)
    for k in pa:
        x, y = pa[k], pb[k]
        assert x.id == y.id and x.error == y.error
        np.testing.assert_array_equal(x.xyz, y.xyz)
        np.testing.assert_array_equal(x.rgb, y.rgb)
        np.testing.assert_array_equal(x.image_ids, y.image_ids)
        np.testing.assert_array_equal(x.point2d_idxs, y.point2d_idxs)


@pytest.mark.parametrize("binary", [True, False])
def test_roundtrip(tmp_path, binary):
    model = make_model()
    write_model(tmp_path, *model, binary=binary)
    ext = ".bin" if binary else ".txt"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{n}{ext}" for n in ("cameras", "images", "points3D"))
    back = read_model(tmp_path)
    assert_models_equal(model, back)  # text uses repr(float): exact
    arr = read_points3d_arrays(tmp_path / f"points3D{ext}")
    ids = sorted(model[2])
    np.testing.assert_array_equal(arr.ids, ids)
    np.testing.assert_array_equal(arr.xyz, np.array([model[2][i].xyz for i in ids]))
    np.testing.assert_array_equal(arr.rgb, np.array([model[2][i].rgb for i in ids]))


def test_bin_and_txt_agree(tmp_path):
    model = make_model(seed=3)
    write_model(tmp_path / "b", *model, binary=True)
    write_model(tmp_path / "t", *model, binary=False)
    assert_models_equal(read_model(tmp_path / "b"), read_model(tmp_path / "t"))


HAND_CAMERAS = """# Camera list with one line of data per camera:
#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]
# Number of cameras: 2
1 SIMPLE_PINHOLE 3072 2304 2559.81 1536 1152
2 PINHOLE 3072 2304 2560.56 2560.56 1536 1152
"""
HAND_IMAGES = """# Image list with two lines of data per image:
#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME
#   POINTS2D[] as (X, Y, POINT3D_ID)
# Number of images: 2, mean observations per image: 2
1 0.851773 0.0165051 0.503764 -0.142941 -0.737434 1.02973 3.74354 1 P1180141.JPG
2362.39 248.498 58396 1784.7 268.254 59027 1784.7 268.254 -1
2 0.851773 0.0165051 0.503764 -0.142941 -0.737434 1.02973 3.74354 2 P1180142.JPG

"""
HAND_POINTS = """# 3D point list with one line of data per point:
#   POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] as (IMAGE_ID, POINT2D_IDX)
# Number of points: 3, mean track length: 3.3334
63390 1.67241 0.292931 -0.17774 218 223 227 0.0164529 1 0 2 1
63376 2.01848 0.108877 -0.0260841 170 183 178 0.0263593 2 3
"""


def test_hand_written_text_model(tmp_path):
    (tmp_path / "cameras.txt").write_text(HAND_CAMERAS)
    (tmp_path / "images.txt").write_text(HAND_IMAGES)
    (tmp_path / "points3D.txt").write_text(HAND_POINTS)
    cams, imgs, pts = read_model(tmp_path)
    assert cams[1].model == "SIMPLE_PINHOLE" and (cams[1].width, cams[1].height) == (3072, 2304)
    np.testing.assert_array_equal(cams[1].params, [2559.81, 1536, 1152])
    np.testing.assert_array_equal(cams[2].params, [2560.56, 2560.56, 1536, 1152])
    assert imgs[1].name == "P1180141.JPG" and imgs[1].camera_id == 1
    np.testing.assert_array_equal(imgs[1].qvec, [0.851773, 0.0165051, 0.503764, -0.142941])
    np.testing.assert_array_equal(imgs[1].tvec, [-0.737434, 1.02973, 3.74354])
    np.testing.assert_array_equal(imgs[1].xys, [[2362.39, 248.498], [1784.7, 268.254], [1784.7, 268.254]])
    np.testing.assert_array_equal(imgs[1].point3d_ids, [58396, 59027, -1])
    assert imgs[2].xys.shape == (0, 2) and imgs[2].name == "P1180142.JPG"
    np.testing.assert_array_equal(pts[63390].xyz, [1.67241, 0.292931, -0.17774])
    np.testing.assert_array_equal(pts[63390].rgb, [218, 223, 227])
    np.testing.assert_array_equal(pts[63390].image_ids, [1, 2])
    np.testing.assert_array_equal(pts[63390].point2d_idxs, [0, 1])
    assert pts[63376].error == 0.0263593
    # converting the hand-written text to binary and back preserves everything
    write_model(tmp_path / "bin", cams, imgs, pts, binary=True)
    assert_models_equal((cams, imgs, pts), read_model(tmp_path / "bin"))


def test_binary_byte_layout(tmp_path):
    """Bytes of a one-camera/one-image/one-point model, packed by hand from COLMAP's layout."""
    cam = ColmapCamera(3, "OPENCV", 640, 480, np.arange(1.0, 9.0))
    img = ColmapImage(
        5,
        np.array([0.5, 0.5, -0.5, 0.5]),
        np.array([1.0, -2.0, 3.5]),
        3,
        "a/b.png",
        np.array([[10.5, 20.25], [1.0, 2.0]]),
        np.array([7, -1], np.int64),
    )
    pt = ColmapPoint(
        7, np.array([0.1, 0.2, 0.3]), np.array([1, 2, 255], np.uint8), 0.75, np.array([5, 6]), np.array([0, 9])
    )
    write_model(tmp_path, {3: cam}, {5: img}, {7: pt}, binary=True)
    cam_ref = struct.pack("<Q", 1) + struct.pack("<iiQQ", 3, 4, 640, 480) + struct.pack("<8d", *range(1, 9))
    img_ref = (
        struct.pack("<Q", 1)
        + struct.pack("<I", 5)
        + struct.pack("<4d", 0.5, 0.5, -0.5, 0.5)
        + struct.pack("<3d", 1.0, -2.0, 3.5)
        + struct.pack("<I", 3)
        + b"a/b.png\x00"
        + struct.pack("<Q", 2)
        + struct.pack("<ddq", 10.5, 20.25, 7)
        + struct.pack("<ddq", 1.0, 2.0, -1)
    )
    pt_ref = (
        struct.pack("<Q", 1)
        + struct.pack("<Q", 7)
        + struct.pack("<3d", 0.1, 0.2, 0.3)
        + bytes([1, 2, 255])
        + struct.pack("<d", 0.75)
        + struct.pack("<Q", 2)
        + struct.pack("<ii", 5, 0)
        + struct.pack("<ii", 6, 9)
    )
    assert (tmp_path / "cameras.bin").read_bytes() == cam_ref
    assert (tmp_path / "images.bin").read_bytes() == img_ref
    assert (tmp_path / "points3D.bin").read_bytes() == pt_ref


def test_truncated_binary_names_file(tmp_path):
    write_model(tmp_path, *make_model(), binary=True)
    p = tmp_path / "points3D.bin"
    p.write_bytes(p.read_bytes()[:-5])
    with pytest.raises(InputError, match="points3D.bin"):
        read_model(tmp_path)
    with pytest.raises(InputError, match="points3D.bin"):
        read_points3d_arrays(p)
    c = tmp_path / "cameras.bin"
    c.write_bytes(c.read_bytes()[:30])
    with pytest.raises(InputError, match="cameras.bin"):
        read_model(tmp_path)


def test_malformed_text_line_names_file(tmp_path):
    (tmp_path / "cameras.txt").write_text("1 PINHOLE 10 10 5 5\n")  # 2 params, PINHOLE needs 4
    (tmp_path / "images.txt").write_text("")
    (tmp_path / "points3D.txt").write_text("")
    with pytest.raises(InputError, match="cameras.txt.*line 1"):
        read_model(tmp_path)
