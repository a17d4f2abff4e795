"""COLMAP sparse models (cameras, images, points3D): the model types and the binary and text readers.

Binary layout (little endian), as written by COLMAP:

- ``cameras.bin``: uint64 count; per camera: int32 id, int32 model_id, uint64 width,
  uint64 height, float64 params[n(model)].
- ``images.bin``: uint64 count; per image: uint32 id, float64 qvec[4] (w,x,y,z), float64 tvec[3],
  uint32 camera_id, name (bytes, NUL-terminated), uint64 num_points2D, then per point
  float64 x, float64 y, int64 point3D_id (-1 = none).
- ``points3D.bin``: uint64 count; per point: uint64 id, float64 xyz[3], uint8 rgb[3],
  float64 error, uint64 track_length, then per track element int32 image_id, int32 point2D_idx.

The text files hold the same fields, one record per line (two lines per image), with ``#`` comments.
``qvec``/``tvec`` are the world-to-camera rotation (quaternion w,x,y,z) and translation.

Writing lives in ``gsgroup.data.colmap_write``; turning a COLMAP dataset folder into frames in
``gsgroup.data.colmap_frames``.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gsgroup.errors import InputError

# model name -> (model id, number of params)
CAMERA_MODELS: dict[str, tuple[int, int]] = {
    "SIMPLE_PINHOLE": (0, 3),
    "PINHOLE": (1, 4),
    "SIMPLE_RADIAL": (2, 4),
    "RADIAL": (3, 5),
    "OPENCV": (4, 8),
    "OPENCV_FISHEYE": (5, 8),
    "FULL_OPENCV": (6, 12),
    "FOV": (7, 5),
    "SIMPLE_RADIAL_FISHEYE": (8, 4),
    "RADIAL_FISHEYE": (9, 5),
    "THIN_PRISM_FISHEYE": (10, 12),
    "RAD_TAN_THIN_PRISM_FISHEYE": (11, 16),
}
MODEL_BY_ID: dict[int, str] = {mid: name for name, (mid, _) in CAMERA_MODELS.items()}


@dataclass
class ColmapCamera:
    """One COLMAP camera: ``params`` float64 [n(model)] in COLMAP's order (e.g. fx, fy, cx, cy)."""

    id: int
    model: str
    width: int
    height: int
    params: np.ndarray


@dataclass
class ColmapImage:
    """One registered image: world-to-camera ``qvec`` [4] (w,x,y,z) and ``tvec`` [3];
    ``xys`` [M,2] float64 keypoints and ``point3d_ids`` [M] int64 (-1 = unmatched)."""

    id: int
    qvec: np.ndarray
    tvec: np.ndarray
    camera_id: int
    name: str
    xys: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float64))
    point3d_ids: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64))


@dataclass
class ColmapPoint:
    """One 3D point: ``xyz`` [3] float64, ``rgb`` [3] uint8, track ``image_ids``/``point2d_idxs`` [L]."""

    id: int
    xyz: np.ndarray
    rgb: np.ndarray
    error: float
    image_ids: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64))
    point2d_idxs: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64))


@dataclass
class PointArrays:
    """All points of a model as arrays (fast path, no tracks): ids [P] int64, xyz [P,3] float64,
    rgb [P,3] uint8, error [P] float64."""

    ids: np.ndarray
    xyz: np.ndarray
    rgb: np.ndarray
    error: np.ndarray


# ----------------------------------------------------------------------------- helpers


def _model_files(path: Path, ext: str) -> tuple[Path, Path, Path]:
    return path / f"cameras{ext}", path / f"images{ext}", path / f"points3D{ext}"


def detect_format(path: str | os.PathLike) -> str | None:
    """Return ".bin" or ".txt" for the model in folder ``path`` (binary preferred), or None."""
    path = Path(path)
    for ext in (".bin", ".txt"):
        if all(p.is_file() for p in _model_files(path, ext)[:2]):
            return ext
    return None


# ----------------------------------------------------------------------------- reading

_POINT_HEAD = struct.Struct("<Q3d3BdQ")  # id, xyz, rgb, error, track length (43 bytes, packed)


class _Reader:
    """Bounds-checked cursor over a bytes buffer; raises InputError on truncation."""

    def __init__(self, path: Path):
        self.path = path
        self.buf = path.read_bytes()
        self.pos = 0

    def need(self, n: int) -> None:
        if self.pos + n > len(self.buf):
            raise InputError(
                f"{self.path}: truncated or corrupt COLMAP binary file; re-export the model "
                f"(colmap model_converter --output_type BIN) or use the .txt files"
            )

    def unpack(self, st: struct.Struct):
        self.need(st.size)
        v = st.unpack_from(self.buf, self.pos)
        self.pos += st.size
        return v

    def array(self, dtype, count: int) -> np.ndarray:
        dt = np.dtype(dtype)
        self.need(dt.itemsize * count)
        a = np.frombuffer(self.buf, dt, count, self.pos)
        self.pos += dt.itemsize * count
        return a

    def cstring(self) -> str:
        end = self.buf.find(b"\x00", self.pos)
        if end < 0:
            self.need(len(self.buf) + 1)
        s = self.buf[self.pos : end].decode("utf-8")
        self.pos = end + 1
        return s


_U64 = struct.Struct("<Q")
_CAM_HEAD = struct.Struct("<iiQQ")
_IMG_HEAD = struct.Struct("<I4d3dI")


def _bad_model(path: Path, camera_model: int | str) -> InputError:
    return InputError(
        f"{path}: unknown COLMAP camera model {camera_model!r}; re-export the model with a current "
        f"COLMAP or run `colmap image_undistorter` to get a PINHOLE model"
    )


def read_cameras_bin(path: Path) -> dict[int, ColmapCamera]:
    """Read ``cameras.bin`` -> {id: ColmapCamera}."""
    r = _Reader(path)
    (n,) = r.unpack(_U64)
    cams = {}
    for _ in range(n):
        cid, mid, w, h = r.unpack(_CAM_HEAD)
        if mid not in MODEL_BY_ID:
            raise _bad_model(path, mid)
        model = MODEL_BY_ID[mid]
        params = r.array("<f8", CAMERA_MODELS[model][1]).astype(np.float64)
        cams[cid] = ColmapCamera(cid, model, int(w), int(h), params)
    return cams


def read_images_bin(path: Path) -> dict[int, ColmapImage]:
    """Read ``images.bin`` -> {id: ColmapImage}."""
    r = _Reader(path)
    (n,) = r.unpack(_U64)
    rec = np.dtype([("xy", "<f8", (2,)), ("id", "<i8")])
    images = {}
    for _ in range(n):
        iid, qw, qx, qy, qz, tx, ty, tz, cid = r.unpack(_IMG_HEAD)
        name = r.cstring()
        (m,) = r.unpack(_U64)
        pts = r.array(rec, m)
        images[iid] = ColmapImage(
            iid,
            np.array([qw, qx, qy, qz]),
            np.array([tx, ty, tz]),
            cid,
            name,
            pts["xy"].astype(np.float64),
            pts["id"].astype(np.int64),
        )
    return images


def _scan_points_bin(path: Path, with_tracks: bool):
    """Return (structured header array [P], list of [L,2] int32 tracks or None)."""
    r = _Reader(path)
    (n,) = r.unpack(_U64)
    size = _POINT_HEAD.size
    dt = np.dtype([("id", "<u8"), ("xyz", "<f8", (3,)), ("rgb", "u1", (3,)), ("err", "<f8"), ("L", "<u8")])
    assert dt.itemsize == size
    buf, pos, total = r.buf, r.pos, len(r.buf)
    offsets = np.empty(n, np.int64)
    unpack_len = _U64.unpack_from
    for i in range(n):  # variable-length tracks: only the offsets are found in Python
        if pos + size > total:
            r.pos = pos
            r.need(size)
        offsets[i] = pos
        (length,) = unpack_len(buf, pos + size - 8)
        pos += size + 8 * length
    if pos > total:
        r.pos = pos - 1
        r.need(total)
    raw = np.frombuffer(buf, np.uint8)
    head = raw[offsets[:, None] + np.arange(size)].copy().view(dt).reshape(n)
    tracks = None
    if with_tracks:
        tracks = [
            np.frombuffer(buf, "<i4", 2 * int(L), int(o) + size).reshape(-1, 2) for o, L in zip(offsets, head["L"])
        ]
    return head, tracks


def read_points3d_bin(path: Path) -> dict[int, ColmapPoint]:
    """Read ``points3D.bin`` -> {id: ColmapPoint} (with tracks)."""
    head, tracks = _scan_points_bin(path, True)
    return {
        int(h["id"]): ColmapPoint(
            int(h["id"]),
            h["xyz"].astype(np.float64),
            h["rgb"].astype(np.uint8),
            float(h["err"]),
            t[:, 0].astype(np.int64),
            t[:, 1].astype(np.int64),
        )
        for h, t in zip(head, tracks)
    }


def _text_lines(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not a COLMAP text file ({e}); re-export it with `colmap model_converter`") from e
    return text.splitlines()


def _bad_line(path: Path, lineno: int, err: Exception) -> InputError:
    return InputError(
        f"{path}: line {lineno} is malformed ({err}); fix the line or re-export the model with `colmap model_converter`"
    )


def read_cameras_txt(path: Path) -> dict[int, ColmapCamera]:
    """Read ``cameras.txt`` -> {id: ColmapCamera}."""
    cams = {}
    for k, line in enumerate(_text_lines(path), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        f = line.split()
        try:
            cid, model, w, h = int(f[0]), f[1], int(f[2]), int(f[3])
            params = np.array([float(v) for v in f[4:]], np.float64)
        except (ValueError, IndexError) as e:
            raise _bad_line(path, k, e) from e
        if model not in CAMERA_MODELS:
            raise _bad_model(path, model)
        if params.size != CAMERA_MODELS[model][1]:
            raise _bad_line(path, k, ValueError(f"{model} needs {CAMERA_MODELS[model][1]} params, got {params.size}"))
        cams[cid] = ColmapCamera(cid, model, w, h, params)
    return cams


def read_images_txt(path: Path) -> dict[int, ColmapImage]:
    """Read ``images.txt`` (two lines per image; the points line may be empty) -> {id: ColmapImage}."""
    lines = _text_lines(path)
    images = {}
    k = 0
    while k < len(lines):
        line = lines[k].strip()
        k += 1
        if not line or line.startswith("#"):
            continue
        f = line.split(maxsplit=9)
        try:
            iid = int(f[0])
            q = np.array([float(v) for v in f[1:5]])
            t = np.array([float(v) for v in f[5:8]])
            cid = int(f[8])
            name = f[9].strip()
            if q.size != 4 or t.size != 3:
                raise ValueError("expected IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME")
        except (ValueError, IndexError) as e:
            raise _bad_line(path, k, e) from e
        pts_line = lines[k].strip() if k < len(lines) else ""
        k += 1
        if pts_line.startswith("#"):  # no points line at end of a sloppy file
            pts_line, k = "", k - 1
        vals = pts_line.split()
        try:
            if len(vals) % 3:
                raise ValueError("POINTS2D needs triples X Y POINT3D_ID")
            arr = np.array(vals, dtype=np.float64).reshape(-1, 3)
        except ValueError as e:
            if len(vals) >= 10 and vals[0].isdigit():  # next image's line: this image has no points line
                arr, k = np.zeros((0, 3)), k - 1
            else:
                raise _bad_line(path, k, e) from e
        images[iid] = ColmapImage(iid, q, t, cid, name, arr[:, :2].copy(), arr[:, 2].astype(np.int64))
    return images


def _parse_points_txt(path: Path, with_tracks: bool):
    ids, xyz, rgb, err, tracks = [], [], [], [], []
    for k, line in enumerate(_text_lines(path), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        f = line.split()
        try:
            ids.append(int(f[0]))
            xyz.append((float(f[1]), float(f[2]), float(f[3])))
            rgb.append((int(f[4]), int(f[5]), int(f[6])))
            err.append(float(f[7]))
            if with_tracks:
                t = f[8:]
                if len(t) % 2:
                    raise ValueError("TRACK needs pairs IMAGE_ID POINT2D_IDX")
                tracks.append(np.array(t, dtype=np.int64).reshape(-1, 2))
        except (ValueError, IndexError) as e:
            raise _bad_line(path, k, e) from e
    arrays = PointArrays(
        np.array(ids, np.int64),
        np.array(xyz, np.float64).reshape(-1, 3),
        np.clip(np.array(rgb, np.int64).reshape(-1, 3), 0, 255).astype(np.uint8),
        np.array(err, np.float64),
    )
    return arrays, tracks


def read_points3d_txt(path: Path) -> dict[int, ColmapPoint]:
    """Read ``points3D.txt`` -> {id: ColmapPoint} (with tracks)."""
    a, tracks = _parse_points_txt(path, True)
    return {
        int(a.ids[i]): ColmapPoint(int(a.ids[i]), a.xyz[i], a.rgb[i], float(a.error[i]), t[:, 0], t[:, 1])
        for i, t in enumerate(tracks)
    }


def read_points3d_arrays(path: str | os.PathLike) -> PointArrays:
    """Read a ``points3D.bin`` or ``points3D.txt`` file as arrays, skipping tracks (fast for 100k+ points)."""
    path = Path(path)
    if path.suffix == ".bin":
        head, _ = _scan_points_bin(path, False)
        return PointArrays(
            head["id"].astype(np.int64),
            head["xyz"].astype(np.float64),
            head["rgb"].astype(np.uint8),
            head["err"].astype(np.float64),
        )
    return _parse_points_txt(path, False)[0]


def _missing(path: Path) -> InputError:
    return InputError(
        f"{path}: COLMAP model file not found; a sparse model needs cameras, images and points3D "
        f"(.bin or .txt) — re-run `colmap mapper` or `colmap model_converter`"
    )


def read_cameras(path: Path) -> dict[int, ColmapCamera]:
    """Read ``cameras.bin`` or ``cameras.txt`` by suffix."""
    if not path.is_file():
        raise _missing(path)
    return read_cameras_bin(path) if path.suffix == ".bin" else read_cameras_txt(path)


def read_images(path: Path) -> dict[int, ColmapImage]:
    """Read ``images.bin`` or ``images.txt`` by suffix."""
    if not path.is_file():
        raise _missing(path)
    return read_images_bin(path) if path.suffix == ".bin" else read_images_txt(path)


def read_model(
    path: str | os.PathLike,
) -> tuple[dict[int, ColmapCamera], dict[int, ColmapImage], dict[int, ColmapPoint]]:
    """Read a model folder (``.bin`` preferred, else ``.txt``) -> (cameras, images, points)."""
    path = Path(path)
    ext = detect_format(path)
    if ext is None:
        raise _missing(path / "cameras.bin")
    cam_p, img_p, pts_p = _model_files(path, ext)
    cams = read_cameras(cam_p)
    imgs = read_images(img_p)
    if not pts_p.is_file():
        raise _missing(pts_p)
    pts = read_points3d_bin(pts_p) if ext == ".bin" else read_points3d_txt(pts_p)
    return cams, imgs, pts
