"""Image helpers shared by the scene loaders: sizes, reading, compositing, resizing, undistortion.

Conventions: images are float32 arrays [H,W,C] in [0,1], RGB(A) channel order. Intrinsics ``K`` are
3x3 pinhole matrices in pixels; ``dist`` holds OpenCV distortion coefficients (k1, k2, p1, p2[, k3...]).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from gsgroup.errors import InputError

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".JPG", ".PNG", ".JPEG")
MAX_AUTO_WIDTH = 1600  # 3DGS rule: with resolution -1/None, wider images are scaled to this width
UNDISTORT_VERSION = 1  # bump to invalidate cached undistorted images after an algorithm change


@dataclass
class Frame:
    """One source image before loading (what the COLMAP and NeRF parsers produce).

    ``K`` [3,3] float64 pinhole part of the calibration, valid for an image of ``calib_size`` (W,H);
    ``dist`` OpenCV coefficients (k1,k2,p1,p2[,k3..k6]) or None; ``viewmat`` [4,4] float64
    world-to-camera in OpenCV axes; ``key`` the image's name relative to its folder (for naming
    and test lists); ``split`` "train"/"test" when the dataset fixes it, else None;
    ``source`` the file the frame came from (for messages).
    """

    path: Path
    K: np.ndarray
    calib_size: tuple[int, int]
    dist: np.ndarray | None
    viewmat: np.ndarray
    key: str
    split: str | None = None
    source: Path | None = None


def is_image_file(path: Path) -> bool:
    """True for a file whose suffix is a supported image type (case-insensitive)."""
    return path.is_file() and path.suffix.lower() in {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp"}


def target_size(width: int, height: int, resolution: int | None) -> tuple[int, int]:
    """Training size (w, h) for an image of size (width, height).

    ``resolution``: None or -1 -> original size, but scaled to 1600 wide when wider (3DGS rule);
    1, 2, 4 or 8 -> divide the size by it; any other positive number -> that width.
    Rounding: w = round(width / s), h = round(height / s) for the scale factor s (at least 1 pixel).
    Masks and any other per-view raster must use this same function to land on the same size.
    """
    width, height = int(width), int(height)
    if width <= 0 or height <= 0:
        raise InputError(f"image size {width}x{height} is not positive; check the image and camera files")
    if resolution is None:
        resolution = -1
    if isinstance(resolution, float):
        if not resolution.is_integer():
            raise InputError(f"resolution {resolution} is not an integer; use -1, 1, 2, 4, 8 or a width in pixels")
        resolution = int(resolution)
    if resolution == -1:
        s = width / MAX_AUTO_WIDTH if width > MAX_AUTO_WIDTH else 1.0
    elif resolution in (1, 2, 4, 8):
        s = float(resolution)
    elif resolution > 0:
        s = width / resolution
    else:
        raise InputError(f"resolution {resolution} is invalid; use -1 (auto), 1, 2, 4, 8 or a width in pixels")
    return max(1, round(width / s)), max(1, round(height / s))


def scale_intrinsics(K: np.ndarray, src_size: tuple[int, int], dst_size: tuple[int, int]) -> np.ndarray:
    """Scale K [3,3] from image size (W,H) to (w,h): rows 0 and 1 multiplied by w/W and h/H."""
    K = np.array(K, np.float64)
    sx = dst_size[0] / src_size[0]
    sy = dst_size[1] / src_size[1]
    K[0] *= sx
    K[1] *= sy
    return K


def check_calibration_size(frame: Frame, size: tuple[int, int]) -> None:
    """InputError when the image file's ``size`` (w,h) has another aspect ratio than the size its
    camera was calibrated for (``frame.calib_size``): scaling K to it would stretch the pixels.

    A rounding difference is accepted: the image's size differs by under 1 px from the camera's
    size scaled by either the width or the height ratio (e.g. 1000x667 -> 250x166 or 250x167).
    """
    (cw, ch), (w, h) = frame.calib_size, size
    if (cw, ch) == (w, h):
        return
    if cw <= 0 or ch <= 0:
        raise InputError(f"{frame.source or frame.path}: camera of {frame.key!r} has size {cw}x{ch}; fix the camera")
    err = min(abs(h - ch * w / cw), abs(w - cw * h / ch))
    if err >= 1.0:
        raise InputError(
            f"{frame.path}: image is {w}x{h} but its camera in {frame.source or 'the model'} is {cw}x{ch} "
            f"(different aspect ratio, frame {frame.key!r}); use the images the cameras were calibrated with, "
            f"or fix the camera's size and intrinsics"
        )


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) of an image file from its header only (EXIF orientation ignored)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as im:
            return int(im.width), int(im.height)
    except (OSError, UnidentifiedImageError, ValueError):
        h, w = read_image_raw(path).shape[:2]  # formats PIL lacks; raises InputError if unreadable
        return int(w), int(h)


def read_image_raw(
    path: str | os.PathLike, what: str = "image", fix: str = "re-export the image or remove it from the dataset"
) -> np.ndarray:
    """Decode an image file unchanged (uint8 or uint16, [H,W], [H,W,3] BGR or [H,W,4] BGRA).

    EXIF orientation is ignored, like COLMAP and 3DGS. Raises InputError if unreadable.
    """
    path = Path(path)
    try:
        data = np.fromfile(path, np.uint8)
    except OSError as e:
        raise InputError(f"{path}: cannot read {what} ({e}); check the file permissions") from e
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if img is None or img.size == 0:
        raise InputError(f"{path}: corrupt or unreadable {what}; {fix}")
    return img


def raw_to_float(img: np.ndarray) -> np.ndarray:
    """Decoded image (uint8/uint16/float, BGR(A) or gray) -> float32 [H,W,3|4] RGB(A) in [0,1]."""
    if img.dtype == np.uint8:
        out = img.astype(np.float32) / 255.0
    elif img.dtype == np.uint16:
        out = img.astype(np.float32) / 65535.0
    else:
        out = np.clip(img.astype(np.float32), 0.0, 1.0)
    if out.ndim == 2:
        out = out[:, :, None]
    c = out.shape[2]
    if c == 1:
        return np.repeat(out, 3, axis=2)
    if c == 2:  # gray + alpha
        return np.concatenate([np.repeat(out[:, :, :1], 3, axis=2), out[:, :, 1:]], axis=2)
    if c == 3:
        return out[:, :, ::-1].copy()
    return out[:, :, [2, 1, 0, 3]].copy()


def raw_to_pixels(img: np.ndarray) -> np.ndarray:
    """Decoded image (BGR(A) or gray) -> [H,W,3|4] RGB(A) of its own type, for holding in memory:
    uint8 and uint16 stay as they are (a quarter or half of float32), other types become float32
    clipped to [0,1]. ``pixels_to_float(raw_to_pixels(img), bg)`` equals ``composite(raw_to_float(img), bg)``
    bit for bit."""
    if img.dtype not in (np.uint8, np.uint16):
        img = np.clip(img.astype(np.float32), 0.0, 1.0)
    if img.ndim == 2:
        img = img[:, :, None]
    c = img.shape[2]
    if c == 1:
        return np.ascontiguousarray(np.repeat(img, 3, axis=2))
    if c == 2:  # gray + alpha
        return np.ascontiguousarray(np.concatenate([np.repeat(img[:, :, :1], 3, axis=2), img[:, :, 1:]], axis=2))
    return np.ascontiguousarray(img[:, :, [2, 1, 0]] if c == 3 else img[:, :, [2, 1, 0, 3]])


PIXEL_SCALE = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}


def pixels_to_float(pixels: np.ndarray, background=(0.0, 0.0, 0.0)) -> np.ndarray:
    """[H,W,3|4] RGB(A) pixels (uint8, uint16 or float) -> float32 [H,W,3] in [0,1], RGBA composited
    over ``background`` (the per-step conversion of the images held in memory)."""
    scale = PIXEL_SCALE.get(pixels.dtype)
    out = pixels.astype(np.float32) / scale if scale else pixels.astype(np.float32, copy=False)
    return composite(out, background)


def quantize(image: np.ndarray, dtype) -> np.ndarray:
    """float [H,W,C] in [0,1] -> the nearest uint8 / uint16 values (float32 for other types), for holding
    a resized image in memory; off by at most half a step (1/510 for uint8)."""
    scale = PIXEL_SCALE.get(np.dtype(dtype))
    if scale is None:
        return np.ascontiguousarray(image, np.float32)
    return np.ascontiguousarray(np.rint(np.clip(image, 0.0, 1.0) * scale).astype(dtype))


def composite(image: np.ndarray, background=(0.0, 0.0, 0.0)) -> np.ndarray:
    """[H,W,3|4] float RGB(A) -> [H,W,3] float32 RGB, alpha blended over the ``background`` color."""
    if image.shape[2] == 3:
        return image.astype(np.float32, copy=False)
    rgb, a = image[:, :, :3], image[:, :, 3:4]
    bg = np.asarray(background, np.float32).reshape(1, 1, 3)
    return (rgb * a + bg * (1.0 - a)).astype(np.float32)


def resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize [H,W,C] float32 to ``size`` = (w, h); INTER_AREA for downscaling, INTER_LINEAR otherwise."""
    h, w = image.shape[:2]
    if (w, h) == tuple(size):
        return image
    interp = cv2.INTER_AREA if size[0] <= w and size[1] <= h else cv2.INTER_LINEAR
    out = cv2.resize(image, tuple(int(v) for v in size), interpolation=interp)
    if out.ndim == 2:
        out = out[:, :, None]
    return np.clip(out, 0.0, 1.0, out=out)


def has_distortion(dist: np.ndarray | None) -> bool:
    """True if any distortion coefficient is non-zero."""
    return dist is not None and bool(np.any(np.asarray(dist) != 0))


def undistorted_intrinsics(K: np.ndarray, dist: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """New pinhole K [3,3] for undistorting an image of ``size`` (w,h) without invalid borders.

    Uses cv2.getOptimalNewCameraMatrix with alpha=0 (every output pixel sees the input image),
    falling back to the original K if OpenCV returns something degenerate.
    """
    K = np.asarray(K, np.float64)
    newK, _ = cv2.getOptimalNewCameraMatrix(K, np.asarray(dist, np.float64), tuple(size), 0.0, tuple(size))
    newK = np.asarray(newK, np.float64)
    ok = np.all(np.isfinite(newK)) and newK[0, 0] > 0 and newK[1, 1] > 0
    # guard against wild zoom (strong distortion): keep the focal within a factor 2 of the original
    ok = ok and 0.5 < newK[0, 0] / K[0, 0] < 2.0 and 0.5 < newK[1, 1] / K[1, 1] < 2.0
    return newK if ok else K.copy()


def undistort(raw: np.ndarray, K: np.ndarray, dist: np.ndarray, newK: np.ndarray) -> np.ndarray:
    """Undistort a decoded image [H,W(,C)] (any dtype) from (K, dist) into pinhole ``newK``, same size."""
    h, w = raw.shape[:2]
    m1, m2 = cv2.initUndistortRectifyMap(
        np.asarray(K, np.float64),
        np.asarray(dist, np.float64),
        None,
        np.asarray(newK, np.float64),
        (w, h),
        cv2.CV_32FC1,
    )
    return cv2.remap(raw, m1, m2, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def default_cache_dir(root: Path) -> Path:
    """Cache folder used when the caller gives none: under the system temp dir, keyed by DATA's path."""
    key = hashlib.sha1(str(Path(root).resolve()).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / "gsgroup_cache" / f"{Path(root).name}-{key}"


def cache_path_for(src: Path, K: np.ndarray, dist: np.ndarray, cache_dir: Path) -> Path:
    """Path of the cached undistorted copy of ``src``; the name hashes the source file identity
    (path, size, mtime) and the calibration, so any change makes a new entry."""
    st = src.stat()
    h = hashlib.sha1()
    h.update(str(src.resolve()).encode())
    h.update(f"{st.st_size}:{st.st_mtime_ns}:{UNDISTORT_VERSION}".encode())
    h.update(np.asarray(K, np.float64).tobytes())
    h.update(np.asarray(dist, np.float64).tobytes())
    suffix = ".jpg" if src.suffix.lower() in (".jpg", ".jpeg") else ".png"
    return Path(cache_dir) / "undistorted" / f"{src.stem}-{h.hexdigest()[:16]}{suffix}"


def _write_raw(path: Path, raw: np.ndarray) -> None:
    from gsgroup.fileio import atomic_path

    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if path.suffix == ".jpg" else [cv2.IMWRITE_PNG_COMPRESSION, 1]
    ok, buf = cv2.imencode(path.suffix, raw, params)
    if not ok:
        raise OSError(f"could not encode the undistorted image {path}")
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.tobytes())


def load_undistorted(
    src: Path, K: np.ndarray, dist: np.ndarray, cache_dir: Path
) -> tuple[np.ndarray, Path, np.ndarray]:
    """Undistort ``src`` once into ``cache_dir`` and return (decoded raw image, cached path, new K [3,3]).

    ``K`` [3,3] and ``dist`` must be at the source image's own size. A valid cached copy (decodes, same
    size) is reused; otherwise it is (re)computed and written atomically. ``src`` is never modified.
    """
    K = np.asarray(K, np.float64)
    cached = cache_path_for(src, K, dist, cache_dir)
    raw = None
    if cached.is_file():
        data = np.fromfile(cached, np.uint8)
        raw = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if raw is None:
        src_raw = read_image_raw(src)
        h, w = src_raw.shape[:2]
        newK = undistorted_intrinsics(K, dist, (w, h))
        raw = undistort(src_raw, K, dist, newK)
        _write_raw(cached, raw)
        return raw, cached, newK
    h, w = raw.shape[:2]
    return raw, cached, undistorted_intrinsics(K, dist, (w, h))
