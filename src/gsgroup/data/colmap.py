"""Read and write COLMAP sparse models (cameras, images, points3D) in binary and text form.

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
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gsgroup.errors import InputError
from gsgroup.geometry import intrinsics_matrix, quat_to_rotmat

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


# ----------------------------------------------------------------------------- writing


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


_POINT_HEAD = struct.Struct("<Q3d3BdQ")  # id, xyz, rgb, error, track length (43 bytes, packed)


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


# ----------------------------------------------------------------------------- reading


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
            head["id"].astype(np.int64), head["xyz"].astype(np.float64), head["rgb"].astype(np.uint8), head["err"].astype(np.float64)
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


def read_model(path: str | os.PathLike) -> tuple[dict[int, ColmapCamera], dict[int, ColmapImage], dict[int, ColmapPoint]]:
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


# ----------------------------------------------------------------------------- scene frames

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
        raise InputError(f"{img_root}: the images folder is empty; copy the photos the COLMAP model was built from into it")
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
