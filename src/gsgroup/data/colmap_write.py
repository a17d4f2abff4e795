"""Write COLMAP sparse models (cameras, images, points3D) in binary or text form.

The layouts are those read by ``gsgroup.data.colmap`` (see its docstring).
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np

from gsgroup.data.colmap import _POINT_HEAD, CAMERA_MODELS, ColmapCamera, ColmapImage, ColmapPoint, _model_files


def _write_cameras_bin(path: Path, cameras: dict[int, ColmapCamera]) -> None:
    out = [struct.pack("<Q", len(cameras))]
    for cam in cameras.values():
        mid, n = CAMERA_MODELS[cam.model]
        params = np.asarray(cam.params, "<f8").reshape(-1)
        if params.size != n:
            raise ValueError(f"camera {cam.id}: model {cam.model} needs {n} params, got {params.size}")
        out.append(struct.pack("<iiQQ", cam.id, mid, cam.width, cam.height))
        out.append(params.tobytes())
    path.write_bytes(b"".join(out))


def _write_images_bin(path: Path, images: dict[int, ColmapImage]) -> None:
    out = [struct.pack("<Q", len(images))]
    rec = np.dtype([("xy", "<f8", (2,)), ("id", "<i8")])
    for im in images.values():
        out.append(struct.pack("<I", im.id))
        out.append(np.asarray(im.qvec, "<f8").reshape(4).tobytes())
        out.append(np.asarray(im.tvec, "<f8").reshape(3).tobytes())
        out.append(struct.pack("<I", im.camera_id))
        out.append(im.name.encode("utf-8") + b"\x00")
        xys = np.asarray(im.xys, np.float64).reshape(-1, 2)
        arr = np.empty(len(xys), rec)
        arr["xy"] = xys
        arr["id"] = np.asarray(im.point3d_ids, np.int64).reshape(-1)
        out.append(struct.pack("<Q", len(arr)))
        out.append(arr.tobytes())
    path.write_bytes(b"".join(out))


def _write_points_bin(path: Path, points: dict[int, ColmapPoint]) -> None:
    out = [struct.pack("<Q", len(points))]
    for p in points.values():
        img = np.asarray(p.image_ids, "<i4").reshape(-1)
        idx = np.asarray(p.point2d_idxs, "<i4").reshape(-1)
        x, y, z = (float(v) for v in p.xyz)
        r, g, b = (int(v) for v in p.rgb)
        out.append(_POINT_HEAD.pack(p.id, x, y, z, r, g, b, float(p.error), len(img)))
        out.append(np.stack([img, idx], 1).tobytes())
    path.write_bytes(b"".join(out))


def _fmt(v) -> str:
    return repr(float(v))


def _write_cameras_txt(path: Path, cameras: dict[int, ColmapCamera]) -> None:
    lines = [
        "# Camera list with one line of data per camera:",
        "#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]",
        f"# Number of cameras: {len(cameras)}",
    ]
    for c in cameras.values():
        lines.append(" ".join([str(c.id), c.model, str(c.width), str(c.height)] + [_fmt(v) for v in c.params]))
    path.write_text("\n".join(lines) + "\n")


def _write_images_txt(path: Path, images: dict[int, ColmapImage]) -> None:
    lines = [
        "# Image list with two lines of data per image:",
        "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME",
        "#   POINTS2D[] as (X, Y, POINT3D_ID)",
        f"# Number of images: {len(images)}",
    ]
    for im in images.values():
        head = [str(im.id)] + [_fmt(v) for v in im.qvec] + [_fmt(v) for v in im.tvec] + [str(im.camera_id), im.name]
        lines.append(" ".join(head))
        xys = np.asarray(im.xys, np.float64).reshape(-1, 2)
        ids = np.asarray(im.point3d_ids, np.int64).reshape(-1)
        lines.append(" ".join(f"{_fmt(x)} {_fmt(y)} {int(i)}" for (x, y), i in zip(xys, ids)))
    path.write_text("\n".join(lines) + "\n")


def _write_points_txt(path: Path, points: dict[int, ColmapPoint]) -> None:
    lines = [
        "# 3D point list with one line of data per point:",
        "#   POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] as (IMAGE_ID, POINT2D_IDX)",
        f"# Number of points: {len(points)}",
    ]
    for p in points.values():
        track = " ".join(f"{int(i)} {int(j)}" for i, j in zip(p.image_ids, p.point2d_idxs))
        fields = [str(p.id)] + [_fmt(v) for v in p.xyz] + [str(int(v)) for v in p.rgb] + [_fmt(p.error)]
        lines.append(" ".join(fields) + (" " + track if track else ""))
    path.write_text("\n".join(lines) + "\n")


def write_model(
    path: str | os.PathLike,
    cameras: dict[int, ColmapCamera],
    images: dict[int, ColmapImage],
    points: dict[int, ColmapPoint],
    binary: bool = True,
) -> None:
    """Write cameras/images/points3D (``.bin`` if ``binary`` else ``.txt``) into folder ``path``."""
    from gsgroup.fileio import atomic_path

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    ext = ".bin" if binary else ".txt"
    cam_p, img_p, pts_p = _model_files(path, ext)
    writers = (
        (_write_cameras_bin, _write_images_bin, _write_points_bin)
        if binary
        else (_write_cameras_txt, _write_images_txt, _write_points_txt)
    )
    for target, writer, data in zip((cam_p, img_p, pts_p), writers, (cameras, images, points)):
        with atomic_path(target) as tmp:
            writer(tmp, data)
