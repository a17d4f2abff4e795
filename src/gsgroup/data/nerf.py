"""NeRF / Blender / instant-ngp datasets: ``transforms.json`` or ``transforms_{train,test}.json``.

- Intrinsics: ``fl_x``/``fl_y``/``cx``/``cy`` or ``camera_angle_x`` (and ``camera_angle_y``); cx, cy
  default to the image centre; ``w``/``h`` default to the image file's size. Keys may be at the top
  level (shared) or in a frame; a frame's focal (``fl_x`` or ``camera_angle_x``) overrides the
  shared one, and likewise for every other key.
- Distortion ``k1 k2 [k3] p1 p2`` (OpenCV radial-tangential) is undistorted by the scene loader.
- Poses: ``transform_matrix`` is an OpenGL camera-to-world matrix (x right, y up, looking down -z);
  it is converted to an OpenCV world-to-camera matrix (flip the camera's y and z axes, invert).
  Its 3x3 part must be a rotation: entries of R^T R - I within ``ORTHO_TOLERANCE`` (float rounding;
  such a matrix is re-orthonormalised) and det > 0, and the bottom row of a 4x4 is 0 0 0 1; anything
  else (a scaled, sheared or mirrored matrix) is an InputError naming the file and frame.
- ``transforms_val.json`` is ignored (like 3DGS).
- Points: an optional ``points3d.ply`` (ASCII or binary; x,y,z and optional red,green,blue), read
  with the ``plyfile`` package.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np

from gsgroup.data.images import IMAGE_EXTS, Frame, image_size
from gsgroup.errors import InputError
from gsgroup.model.ply import read_ply_vertices

GL_TO_CV = np.diag([1.0, -1.0, -1.0, 1.0])
ORTHO_TOLERANCE = 1e-2


def _rigid_c2w(c2w: np.ndarray, src: Path, where: str) -> np.ndarray:
    """``c2w`` [4,4] or [3,4] checked to be a rigid transform (module rules), rotation re-orthonormalised."""
    if c2w.shape == (4, 4) and np.abs(c2w[3] - [0.0, 0.0, 0.0, 1.0]).max() > 1e-6:
        raise InputError(
            f"{src}: {where} transform_matrix has bottom row {c2w[3].tolist()}, not [0, 0, 0, 1]; "
            f"it must be a camera-to-world pose"
        )
    R = c2w[:3, :3]
    dev = float(np.abs(R.T @ R - np.eye(3)).max())
    det = float(np.linalg.det(R))
    if dev > ORTHO_TOLERANCE or det <= 0:
        kind = "mirrored" if det <= 0 and dev <= ORTHO_TOLERANCE else "scaled or sheared"
        raise InputError(
            f"{src}: {where} transform_matrix rotation is not orthonormal ({kind}: |R^T R - I| = {dev:.3g}, "
            f"det = {det:.3g}); it must be a rigid camera-to-world pose (rotation + translation, no scale)"
        )
    out = np.array(c2w, np.float64)
    if dev > 0:
        u, _, vt = np.linalg.svd(R)
        out[:3, :3] = u @ vt
    return out


def find_transforms(root: Path) -> dict[str, Path]:
    """{"train": path, "test": path} for split files, or {"all": path} for a single transforms.json; {} if none."""
    train, test, single = root / "transforms_train.json", root / "transforms_test.json", root / "transforms.json"
    if train.is_file():
        out = {"train": train}
        if test.is_file():
            out["test"] = test
        return out
    if single.is_file():
        return {"all": single}
    if test.is_file():
        raise InputError(f"{test}: found a test split but no {train.name} or {single.name}; add the training frames")
    return {}


def opengl_c2w_to_opencv_w2c(c2w: np.ndarray) -> np.ndarray:
    """OpenGL camera-to-world [4,4] (or [3,4]) -> OpenCV world-to-camera [4,4] float64."""
    m = np.eye(4)
    m[: c2w.shape[0], :4] = c2w
    return np.linalg.inv(m @ GL_TO_CV)


def resolve_image_path(base: Path, file_path: str) -> Path | None:
    """The image for a frame's ``file_path`` (relative to ``base``; may start with ./ or lack an
    extension: .png, .jpg, .jpeg, .JPG, .PNG are tried), or None if no such file exists."""
    fp = str(file_path).replace("\\", "/")
    while fp.startswith("./"):
        fp = fp[2:]
    p = Path(fp)
    if not p.is_absolute():
        p = base / p
    if p.is_file():
        return p
    for ext in IMAGE_EXTS:
        cand = p.with_name(p.name + ext)
        if cand.is_file():
            return cand
    return None


def _num(d: dict, key: str, src: Path, where: str) -> float | None:
    if key not in d or d[key] is None:
        return None
    try:
        v = float(d[key])
    except (TypeError, ValueError):
        v = float("nan")
    if not math.isfinite(v):
        raise InputError(f"{src}: {where} has a non-numeric or non-finite {key!r} ({d[key]!r}); fix the value")
    return v


def frame_intrinsics(
    top: dict, frame: dict, size: tuple[int, int] | None, src: Path, where: str
) -> tuple[np.ndarray, tuple[int, int], np.ndarray | None]:
    """(K [3,3] float64, calibration size (w,h), OpenCV dist [4|5] or None) for one frame.

    ``size`` is the image file's (w,h), used when ``w``/``h`` are absent (may be None if both are given).
    """

    def get(key):  # frame overrides top level
        v = _num(frame, key, src, where)
        return v if v is not None else _num(top, key, src, where)

    w, h = get("w"), get("h")
    if w is None or h is None:
        if size is None:
            raise InputError(f"{src}: {where} has no 'w'/'h' and no readable image; add w and h")
        w = size[0] if w is None else w
        h = size[1] if h is None else h
    w, h = int(round(w)), int(round(h))

    def focal(level: dict, axis: str, extent: int) -> float | None:
        fl = _num(level, f"fl_{axis}", src, where)
        if fl is not None:
            return fl
        ang = _num(level, f"camera_angle_{axis}", src, where)
        if ang is not None:
            if not 0 < ang < math.pi:
                raise InputError(f"{src}: {where} camera_angle_{axis}={ang} is not in (0, pi); fix the value")
            return 0.5 * extent / math.tan(0.5 * ang)
        return None

    fx = focal(frame, "x", w)
    fx = fx if fx is not None else focal(top, "x", w)
    fy = focal(frame, "y", h)
    if fy is None and fx is not None and any(k in frame for k in ("fl_x", "camera_angle_x")):
        fy = fx  # a frame that sets only its x focal gets square pixels, not the shared y focal
    fy = fy if fy is not None else focal(top, "y", h)
    if fx is None and fy is None:
        raise InputError(f"{src}: {where} has no focal length; add 'fl_x' or 'camera_angle_x'")
    fx = fy if fx is None else fx
    fy = fx if fy is None else fy
    if fx <= 0 or fy <= 0:
        raise InputError(f"{src}: {where} has a non-positive focal length; fix fl_x/fl_y")
    cx, cy = get("cx"), get("cy")
    cx = w / 2.0 if cx is None else cx
    cy = h / 2.0 if cy is None else cy
    K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    if (frame.get("is_fisheye") or top.get("is_fisheye")) or str(
        frame.get("camera_model", top.get("camera_model", ""))
    ).upper() in (
        "OPENCV_FISHEYE",
        "EQUIRECTANGULAR",
    ):
        raise InputError(
            f"{src}: {where} uses a fisheye/equirectangular camera, which gsgroup does not read; "
            f"undistort the images to pinhole first"
        )
    k = [get(n) or 0.0 for n in ("k1", "k2", "p1", "p2", "k3")]
    dist = np.array(k[:4] if k[4] == 0.0 else k)
    for extra in ("k4", "k5", "k6"):
        if (get(extra) or 0.0) != 0.0:
            raise InputError(
                f"{src}: {where} has distortion {extra}, which gsgroup does not read; undistort the images first"
            )
    return K, (w, h), (dist if np.any(dist != 0) else None)


def parse_transforms(path: Path, split: str | None, root: Path | None = None) -> tuple[list[Frame], int]:
    """Frames of one transforms file (images are not decoded; only headers when w/h are missing).

    Returns (frames, number of frames skipped because the image file is missing); one warning
    counts the skipped frames. ``root`` is the folder keys are made relative to (default: the file's folder).
    """
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{path}: not valid JSON ({e}); fix or re-export the file") from e
    if not isinstance(meta, dict) or not isinstance(meta.get("frames"), list):
        raise InputError(
            f"{path}: no 'frames' list; a NeRF transforms file needs frames with file_path and transform_matrix"
        )
    base = path.parent
    root = root or base
    frames, missing = [], 0
    for i, fr in enumerate(meta["frames"]):
        if not isinstance(fr, dict) or "file_path" not in fr or "transform_matrix" not in fr:
            raise InputError(f"{path}: frame {i} lacks 'file_path' or 'transform_matrix'; fix the frame or remove it")
        where = f"frame {i} ({fr['file_path']})"
        try:
            c2w = np.array(fr["transform_matrix"], dtype=np.float64)
        except (TypeError, ValueError) as e:
            raise InputError(f"{path}: {where} has a malformed transform_matrix ({e}); it must be 4x4 numbers") from e
        if c2w.shape not in ((4, 4), (3, 4)):
            raise InputError(f"{path}: {where} transform_matrix has shape {c2w.shape}; it must be 4x4")
        if not np.all(np.isfinite(c2w)):
            raise InputError(f"{path}: {where} transform_matrix contains NaN or inf; fix or remove the frame")
        c2w = _rigid_c2w(c2w, path, where)
        img = resolve_image_path(base, fr["file_path"])
        if img is None:
            missing += 1
            continue
        need_size = any(k not in fr and k not in meta for k in ("w", "h"))
        size = image_size(img) if need_size else None
        K, calib_size, dist = frame_intrinsics(meta, fr, size, path, where)
        try:
            viewmat = opengl_c2w_to_opencv_w2c(c2w)
        except np.linalg.LinAlgError as e:
            raise InputError(f"{path}: {where} transform_matrix is singular; fix or remove the frame") from e
        try:
            key = img.relative_to(root).as_posix()
        except ValueError:
            key = img.name
        frames.append(Frame(img, K, calib_size, dist, viewmat, key, split, path))
    if missing:
        warnings.warn(
            # one absolute path, so Python's warning registry shows it once per process however often it loads
            f"skipped {missing} of {len(meta['frames'])} frames in {Path(path).resolve()}: image file not found",
            stacklevel=2,
        )
    return frames, missing


def nerf_frames(root: Path) -> list[Frame]:
    """All frames of a NeRF dataset; split files set ``Frame.split`` ("train"/"test")."""
    files = find_transforms(root)
    if not files:
        raise InputError(f"{root}: no transforms.json or transforms_train.json; not a NeRF dataset")
    frames = []
    total = 0
    for split, path in files.items():
        fr, missing = parse_transforms(path, None if split == "all" else split, root)
        frames += fr
        total += len(fr) + missing
    if not frames:
        names = ", ".join(str(p) for p in files.values())
        raise InputError(f"{names}: none of the {total} frames has an image file; check the file_path entries")
    return frames


def find_points_file(root: Path) -> Path | None:
    """``points3d.ply`` (or ``points3D.ply``, or nerfstudio's ``ply_file_path``) if present."""
    single = root / "transforms.json"
    if single.is_file():
        try:
            rel = json.loads(single.read_text(encoding="utf-8")).get("ply_file_path")
        except (OSError, ValueError, AttributeError):
            rel = None
        if isinstance(rel, str) and (root / rel).is_file():
            return root / rel
    for name in ("points3d.ply", "points3D.ply"):
        if (root / name).is_file():
            return root / name
    return None


def read_ply_points(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Read the vertex element of a point-cloud PLY (ascii, binary_little_endian or binary_big_endian).

    Returns (xyz [P,3] float32, rgb [P,3] float32 in [0,1] or None when the file has no colors).
    Colors may be ``red green blue`` or ``r g b``; integer colors are scaled by 255 (8-bit) or
    65535 (wider), float colors are taken as [0,1]. Parsing is done by the ``plyfile`` package.
    """
    rec = read_ply_vertices(path, "re-export the point cloud as PLY (x, y, z, red, green, blue)")
    names = rec.dtype.names or ()
    if not all(k in names for k in "xyz"):
        raise InputError(
            f"{path}: vertices have no x, y, z; re-export the point cloud as PLY (x, y, z, red, green, blue)"
        )
    xyz = np.stack([rec["x"], rec["y"], rec["z"]], 1).astype(np.float32)
    rgb = None
    for keys in (("red", "green", "blue"), ("r", "g", "b")):
        if all(k in names for k in keys):
            t = rec.dtype[keys[0]]
            rgb = np.stack([rec[k] for k in keys], 1).astype(np.float64)
            if t.kind in "ui":
                rgb = rgb / (255.0 if t.itemsize == 1 else 65535.0)
            rgb = np.clip(rgb, 0.0, 1.0).astype(np.float32)
            break
    return xyz, rgb
