"""gsgroup poses: structure-from-motion on a ray-cast scene with known poses (tests/sfm_scene.py),
video frame sampling, and bad input. The reference poses are the ones the scene was rendered with."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

from gsgroup.data.alignment import pose_errors, umeyama
from gsgroup.data.sfm import SfmOptions, compute_poses, pair_list
from gsgroup.data.sfm_inputs import photos_without_poses
from gsgroup.data.video import pick_frames, sample_frames, sharpness
from gsgroup.errors import InputError

pycolmap = pytest.importorskip("pycolmap")

from sfm_scene import cameras, make_views, write_views  # noqa: E402

FAST = {"max_features": 2048, "progress": False}


def _dummy_photos(folder: Path, n: int) -> None:
    """``n`` small noise JPEGs (for input checks that stop before structure-from-motion)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        cv2.imwrite(str(folder / f"view_{i:03d}.jpg"), rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))


def _snapshot(folder: Path) -> dict:
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


def _errors(data: Path, poses: dict) -> dict:
    """Pose errors of the dataset gsgroup's COLMAP loader reads from ``data`` against ``poses``."""
    from gsgroup.data.colmap_frames import colmap_frames

    frames, _ = colmap_frames(data)
    est = np.stack([f.viewmat for f in frames])
    ref = np.stack([poses[f.key] for f in frames])
    return pose_errors(est, ref)


# ---- alignment, pairs, frames: no SfM ----------------------------------------------------------
def test_umeyama_matches_pycolmap_sim3d():
    rng = np.random.default_rng(3)
    src = rng.normal(size=(20, 3))
    q = rng.normal(size=4)
    R = pycolmap.Rotation3d(q / np.linalg.norm(q)).matrix()
    dst = 2.5 * src @ R.T + np.array([1.0, -2.0, 0.5]) + rng.normal(scale=1e-3, size=src.shape)
    s, R_est, t = umeyama(src, dst)
    ref = pycolmap.estimate_sim3d(src, dst)
    assert s == pytest.approx(ref.scale, rel=1e-9)
    np.testing.assert_allclose(R_est, ref.rotation.matrix(), atol=1e-9)
    np.testing.assert_allclose(t, ref.translation, atol=1e-9)


def test_pose_errors_zero_for_a_similar_copy():
    """The same cameras in a world scaled by 3, turned 90 degrees about z and moved: zero error."""
    views = cameras(6)
    s, Rz, T = 3.0, np.array([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]]), np.array([5.0, 1, -2])
    moved = views.copy()  # X' = s Rz X + T; x_cam = R X + t, scaled by s: R Rz^T X' + s t - R Rz^T T
    moved[:, :3, :3] = views[:, :3, :3] @ Rz.T
    moved[:, :3, 3] = s * views[:, :3, 3] - moved[:, :3, :3] @ T
    e = pose_errors(moved, views)
    assert e["rotation_deg"].max() < 1e-5 and e["center"].max() < 1e-9 and e["scale"] == pytest.approx(1 / s)


def test_pair_lists():
    names = [f"{i:03d}" for i in range(40)]
    ex = pair_list(names, "exhaustive", 10)
    assert len(ex) == 40 * 39 // 2 == len(set(ex))
    seq = set(pair_list(names, "sequential", 5))
    gaps = {names.index(b) - names.index(a) for a, b in seq}
    assert gaps == {1, 2, 3, 4, 5, 8, 16}  # the next 5 images and those 2^k ahead (k < 5)
    assert all((names[i], names[i + 1]) in seq for i in range(39))


def test_pick_frames_sharpest_per_segment():
    rng = np.random.default_rng(0)
    scores = rng.random(103)
    picked = pick_frames(scores, 10)
    bounds = np.linspace(0, 103, 11).round().astype(int)
    assert picked == [a + int(np.argmax(scores[a:b])) for a, b in zip(bounds[:-1], bounds[1:])]
    assert pick_frames(scores[:4], 10) == [0, 1, 2, 3]


def test_video_sampling_prefers_sharp_frames(tmp_path):
    images, _ = make_views(4, arc_deg=60.0)
    frames = []
    for img in images:  # each view 3 times: blurred, sharp, blurred
        bgr = cv2.resize(img[:, :, ::-1], (320, 240))
        for blur in (9, 0, 9):
            frames.append(cv2.GaussianBlur(bgr, (blur, blur), 0) if blur else bgr)
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, (320, 240))
    for f in frames:
        writer.write(f)
    writer.release()
    assert sharpness(frames[1]) > 2 * sharpness(frames[0])
    names = sample_frames(video, 4, tmp_path / "frames")
    assert names == [f"frame_{i:06d}.jpg" for i in (1, 4, 7, 10)]  # the sharp copy of every view
    assert sorted(os.listdir(tmp_path / "frames")) == names


# ---- bad input ---------------------------------------------------------------------------------
def test_empty_folder_and_non_images(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="empty, no"):
        compute_poses(empty, tmp_path / "out", SfmOptions(**FAST))
    notes = tmp_path / "notes"
    notes.mkdir()
    for i in range(4):
        (notes / f"n{i}.txt").write_text("not a photo")
    with pytest.raises(InputError, match="4 files, none of them"):
        compute_poses(notes, tmp_path / "out", SfmOptions(**FAST))
    assert not (tmp_path / "out").exists()


def test_too_few_images_names_the_corrupt_ones(tmp_path):
    photos = tmp_path / "photos"
    _dummy_photos(photos, 2)
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.warns(UserWarning, match="broken.jpg"), pytest.raises(InputError, match="2 usable image"):
        compute_poses(photos, tmp_path / "out", SfmOptions(**FAST))
    assert not (tmp_path / "out").exists()


def test_unreadable_video(tmp_path):
    video = tmp_path / "clip.mp4"
    video.write_bytes(os.urandom(4096))
    with pytest.raises(InputError, match="clip.mp4: cannot open the video"):
        compute_poses(video, tmp_path / "out", SfmOptions(**FAST))
    assert not (tmp_path / "out").exists()


def test_output_must_not_overlap_the_input(tmp_path):
    photos = tmp_path / "data" / "images"
    _dummy_photos(photos, 3)
    before = _snapshot(photos)
    with pytest.raises(InputError, match="contains the input"):
        compute_poses(photos, tmp_path / "data", SfmOptions(**FAST))
    with pytest.raises(InputError, match="inside the dataset folder"):
        compute_poses(photos, photos / "out", SfmOptions(**FAST))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("x")
    with pytest.raises(InputError, match="not written by `gsgroup poses`"):
        compute_poses(photos, tmp_path / "other", SfmOptions(**FAST, force=True))
    assert _snapshot(photos) == before and (tmp_path / "other" / "keep.txt").exists()


def test_what_run_gives_to_poses(tmp_path):
    photos = tmp_path / "photos"
    _dummy_photos(photos, 1)
    assert photos_without_poses(photos) == photos
    (photos / "transforms.json").write_text("{}")
    assert photos_without_poses(photos) is None
    _dummy_photos(tmp_path / "colmap" / "images", 1)
    assert photos_without_poses(tmp_path / "colmap") == tmp_path / "colmap" / "images"
    (tmp_path / "colmap" / "sparse").mkdir()
    assert photos_without_poses(tmp_path / "colmap") is None
    video = tmp_path / "a.MOV"
    video.write_bytes(b"x")
    assert photos_without_poses(video) == video and photos_without_poses(tmp_path / "missing") is None


# ---- structure-from-motion ---------------------------------------------------------------------
def test_corrupt_jpeg_is_skipped_and_poses_recovered(tmp_path):
    """Five views and one corrupt JPEG: the JPEG is named and skipped, every view registers, and the
    dataset gsgroup's loader reads has the rendered poses (after a similarity)."""
    photos = tmp_path / "photos"
    poses = write_views(photos, 5, arc_deg=40.0)
    (photos / "view_bad.jpg").write_bytes((photos / "view_000.jpg").read_bytes()[:3000])  # truncated
    before = _snapshot(photos)
    with pytest.warns(UserWarning, match="view_bad.jpg"):
        summary = compute_poses(photos, tmp_path / "data", SfmOptions(**FAST))
    assert summary["skipped"] == ["view_bad.jpg"] and summary["failed"] == []
    assert summary["registered"] == summary["given"] == 5
    e = _errors(tmp_path / "data", poses)
    assert np.median(e["rotation_deg"]) < 1.0 and np.median(e["center"]) < 0.01 * e["extent"]
    assert _snapshot(photos) == before  # the input folder is only read
    with pytest.warns(UserWarning, match="view_bad.jpg"):
        again = compute_poses(photos, tmp_path / "data", SfmOptions(**FAST))
    assert again["reused"] == ["features", "matching", "mapping", "undistortion"] and again["registered"] == 5
    with pytest.warns(UserWarning), pytest.raises(InputError, match="max_features 2048 -> 1024.*--force"):
        compute_poses(photos, tmp_path / "data", SfmOptions(max_features=1024, progress=False))


@pytest.mark.slow
def test_poses_of_a_textured_scene(tmp_path):
    """12 views at 640x480: all register; median rotation error < 1 degree and median centre error
    < 1% of the extent after Umeyama alignment; a second call reuses every stage."""
    from gsgroup.cli import main
    from gsgroup.data.scene import load_scene

    photos = tmp_path / "photos"
    poses = write_views(photos, 12)
    assert main(["poses", str(photos), "--out", str(tmp_path / "data"), "--quiet"]) == 0
    e = _errors(tmp_path / "data", poses)
    assert len(e["center"]) == 12
    assert np.median(e["rotation_deg"]) < 1.0 and np.median(e["center"]) < 0.01 * e["extent"]
    scene = load_scene(tmp_path / "data", cache_dir=tmp_path / "cache", progress=False)
    assert len(scene.train) == 12 and scene.points is not None and len(scene.points) > 1000
    again = compute_poses(photos, tmp_path / "data", SfmOptions(progress=False))
    assert again["reused"] == ["features", "matching", "mapping", "undistortion"] and again["registered"] == 12


@pytest.mark.slow
def test_poses_from_a_video(tmp_path):
    """An .mp4 written from 12 views, each held for 3 frames: 12 frames sampled, all registered."""
    images, _ = make_views(12)
    video = tmp_path / "walk.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, (640, 480))
    for img in images:
        for _ in range(3):
            writer.write(np.ascontiguousarray(img[:, :, ::-1]))
    writer.release()
    summary = compute_poses(video, tmp_path / "data", SfmOptions(frames=12, **FAST))
    assert summary["input"] == "video" and summary["matching"] == "sequential"
    assert summary["given"] == 12 and summary["registered"] == 12
    assert len(os.listdir(tmp_path / "data" / "images")) == 12


@pytest.mark.slow
def test_two_unrelated_sets_keep_the_largest(tmp_path):
    """7 views of one room and 5 of a differently textured one: two models; the 7 are kept with a
    warning that gives the counts. With --min-registered 0.9 the same model is an error naming the 5."""
    photos = tmp_path / "photos"
    write_views(photos, 7, seed=0, prefix="a", arc_deg=60.0)
    write_views(photos, 5, seed=1, prefix="b", arc_deg=40.0)
    with warnings.catch_warnings(record=True), pytest.raises(InputError, match="only 7 of 12") as err:
        compute_poses(photos, tmp_path / "data", SfmOptions(min_registered=0.9, **FAST))
    assert all(f"b_{i:03d}.jpg" in str(err.value) for i in range(5))
    with pytest.warns(UserWarning, match="2 disconnected models of 7, 5 images"):
        summary = compute_poses(photos, tmp_path / "data", SfmOptions(**FAST))  # reuses the mapping
    assert summary["registered"] == 7 and summary["models"] == [7, 5]
    assert summary["failed"] == [f"b_{i:03d}.jpg" for i in range(5)]


@pytest.mark.slow
def test_run_on_photos_computes_poses_first(tmp_path):
    """`gsgroup run PHOTOS` writes RUN/data (poses) and then runs the whole pipeline on it."""
    from gsgroup.cli import main
    from gsgroup.run import Run

    photos = tmp_path / "photos"
    write_views(photos, 6, arc_deg=50.0)
    before = _snapshot(photos)
    argv = ["run", str(photos), "--out", str(tmp_path / "run"), "--quiet", "--resolution", "160"]
    assert main(argv + ["--recon-iterations", "60", "--id-iterations", "20"]) == 0
    assert (tmp_path / "run" / "data" / "sparse" / "0" / "images.bin").is_file()
    assert len(os.listdir(tmp_path / "run" / "data" / "images")) == 6
    assert (tmp_path / "run" / Run.GAUSSIANS).is_file() and _snapshot(photos) == before


def test_exif_focal_length_starts_the_shared_camera(tmp_path):
    """Photos with an EXIF 35 mm-equivalent focal length: the one shared camera starts from it (as
    pycolmap's own EXIF reader computes it), not from the 1.2 * width default."""
    from PIL import Image
    from PIL.ExifTags import IFD

    from gsgroup.data.sfm import extract

    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(1)
    for i in range(3):
        img = cv2.resize(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8), (640, 480))
        exif = Image.Exif()
        exif.get_ifd(IFD.Exif)[0xA405] = 28  # FocalLengthIn35mmFilm
        Image.fromarray(img).save(photos / f"v{i}.jpg", exif=exif)
    db = tmp_path / "database.db"
    extract(db, photos, ["v0.jpg", "v1.jpg", "v2.jpg"], SfmOptions(**FAST))
    with pycolmap.Database.open(db) as database:
        cams = database.read_all_cameras()
        assert database.num_images() == 3
    expected = pycolmap.infer_camera_from_image(photos / "v0.jpg").focal_length
    assert len(cams) == 1 and cams[0].has_prior_focal_length
    assert cams[0].focal_length == pytest.approx(expected) and abs(expected - 1.2 * 640) > 50


FOX = Path(__file__).resolve().parents[2] / "shared" / "data" / "fox"


@pytest.mark.slow
@pytest.mark.skipif(not FOX.exists(), reason="shared fox data not present")
def test_fox_images_alone(tmp_path):
    """fox's 50 photos without their transforms.json: every one registers, and the poses agree with
    the given ones (NeRF loader, OpenGL -> OpenCV) within 1 degree and 1% of the extent (medians)."""
    from gsgroup.data.colmap_frames import colmap_frames
    from gsgroup.data.nerf import nerf_frames

    summary = compute_poses(FOX / "images", tmp_path / "data", SfmOptions(progress=False))
    assert summary["registered"] == summary["given"] == 50 and summary["models"] == [50]
    ref = {Path(f.key).name: f.viewmat for f in nerf_frames(FOX)}
    est = {Path(f.key).name: f.viewmat for f in colmap_frames(tmp_path / "data")[0]}
    names = sorted(est)
    e = pose_errors(np.stack([est[n] for n in names]), np.stack([ref[n] for n in names]))
    assert np.median(e["rotation_deg"]) < 1.0 and np.median(e["center"]) < 0.01 * e["extent"]
