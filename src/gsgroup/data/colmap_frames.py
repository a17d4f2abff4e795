"""COLMAP dataset folder -> frames: find the sparse model, map camera models onto K and OpenCV
distortion, and pair registered images with their files (pixels are not read here)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gsgroup.data.colmap import ColmapCamera, _model_files, detect_format, read_cameras, read_images
from gsgroup.errors import InputError
from gsgroup.geometry import intrinsics_matrix, quat_to_rotmat

UNDISTORT_HINT = (
    "run `colmap image_undistorter --image_path DATA/images --input_path DATA/sparse/0 "
    "--output_path DATA_undistorted` and load DATA_undistorted"
)


def find_sparse_dir(root: Path) -> Path:
    """The model folder: ``root/sparse/0`` if it holds a model, else ``root/sparse``."""
    sparse = root / "sparse"
    for cand in (sparse / "0", sparse):
        if detect_format(cand):
            return cand
    subs = sorted(p.name for p in sparse.iterdir() if p.is_dir()) if sparse.is_dir() else []
    extra = f" (found sub-folders {', '.join(subs)})" if subs else ""
    raise InputError(
        f"{sparse}: no COLMAP model (cameras and images .bin or .txt) in sparse/0 or sparse{extra}; "
        f"run `colmap mapper` or move the model into {sparse / '0'}"
    )


def camera_calibration(cam: ColmapCamera, cameras_file: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """COLMAP camera -> (K [3,3] float64, OpenCV distortion coefficients or None).

    PINHOLE/SIMPLE_PINHOLE have no distortion; SIMPLE_RADIAL, RADIAL, OPENCV and FULL_OPENCV map onto
    OpenCV's model. Any other model raises InputError.
    """
    p = np.asarray(cam.params, np.float64)
    m = cam.model
    if m in ("SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL"):
        fx = fy = p[0]
        cx, cy = p[1], p[2]
    elif m in ("PINHOLE", "OPENCV", "FULL_OPENCV"):
        fx, fy, cx, cy = p[:4]
    else:
        raise InputError(
            f"{cameras_file}: camera {cam.id} uses the {m} model, which gsgroup does not read; {UNDISTORT_HINT}"
        )
    dist = None
    if m == "SIMPLE_RADIAL":
        dist = np.array([p[3], 0.0, 0.0, 0.0])
    elif m == "RADIAL":
        dist = np.array([p[3], p[4], 0.0, 0.0])
    elif m == "OPENCV":
        dist = p[4:8].copy()
    elif m == "FULL_OPENCV":
        dist = p[4:12].copy()
    K = intrinsics_matrix(fx, fy, cx, cy)
    if not (np.all(np.isfinite(K)) and fx > 0 and fy > 0) or (dist is not None and not np.all(np.isfinite(dist))):
        raise InputError(f"{cameras_file}: camera {cam.id} has invalid parameters {p.tolist()}; re-run COLMAP")
    return K, dist


def colmap_frames(root: Path, images_dir: str = "images") -> tuple[list, Path]:
    """Parse a COLMAP dataset into frames (see ``images.Frame``) without reading pixels.

    Returns (frames, sparse_dir). Registered images whose file is missing are skipped with one warning.
    """
    import warnings

    from gsgroup.data.images import Frame, is_image_file

    sparse = find_sparse_dir(root)
    ext = detect_format(sparse)
    cam_file, img_file, _ = _model_files(sparse, ext)
    cameras = read_cameras(cam_file)
    images = read_images(img_file)
    img_root = root / images_dir
    if not img_root.is_dir():
        raise InputError(f"{img_root}: images folder not found; put the photos there or pass the right --images folder")
    if not any(is_image_file(p) for p in img_root.rglob("*")):
        raise InputError(
            f"{img_root}: the images folder is empty; copy the photos the COLMAP model was built from into it"
        )
    if not images:
        raise InputError(f"{img_file}: the model has no registered images; re-run `colmap mapper`")
    calib: dict[int, tuple[np.ndarray, np.ndarray | None]] = {}
    frames, missing = [], 0
    for im in sorted(images.values(), key=lambda i: i.name):
        if im.camera_id not in cameras:
            raise InputError(
                f"{img_file}: image {im.name!r} references camera {im.camera_id}, which is not in {cam_file.name}; "
                f"re-export the model (cameras and images must come from the same reconstruction)"
            )
        q, t = np.asarray(im.qvec, np.float64), np.asarray(im.tvec, np.float64)
        if not (np.all(np.isfinite(q)) and np.all(np.isfinite(t))) or np.linalg.norm(q) < 1e-12:
            raise InputError(
                f"{img_file}: image {im.name!r} has a non-finite or zero pose (qvec {q.tolist()}, tvec {t.tolist()}); "
                f"re-run COLMAP or remove the image from the model"
            )
        if im.camera_id not in calib:
            calib[im.camera_id] = camera_calibration(cameras[im.camera_id], cam_file)
        K, dist = calib[im.camera_id]
        path = img_root / im.name
        if not path.is_file():
            missing += 1
            continue
        viewmat = np.eye(4)
        viewmat[:3, :3] = quat_to_rotmat(q)
        viewmat[:3, 3] = t
        cam = cameras[im.camera_id]
        frames.append(Frame(path, K, (cam.width, cam.height), dist, viewmat, im.name, None, img_file))
    if missing:
        warnings.warn(
            f"skipped {missing} of {len(images)} images in {img_file}: image file not found in {img_root}",
            stacklevel=3,
        )
    if not frames:
        raise InputError(f"{img_root}: none of the {len(images)} images named in {img_file} exist; check --images")
    return frames, sparse


def colmap_points_file(sparse: Path) -> Path:
    """The points3D file of a model folder (same format as its cameras/images)."""
    return _model_files(sparse, detect_format(sparse) or ".bin")[2]
