"""2D instance masks on disk: one label image per view, ``<image stem>.png``, 0 = no mask.

Reading rules (``read_mask`` / ``load_masks``), applied to every mask file:

- grey 8- or 16-bit PNG (or any single-channel image OpenCV decodes): the values are the ids;
- grey + alpha: the alpha channel is ignored;
- RGB(A) whose three color channels are equal everywhere: read as grey (alpha ignored);
- RGB(A) color-coded (channels differ): every distinct color is one id, black (0,0,0) is 0 and the
  other colors get ids 1..K in ascending order of the packed value R*2^16 + G*2^8 + B (per channel
  at the file's bit depth). ``load_masks`` builds this table over *all* color-coded files of the
  folder at once, so a color keeps the same id in every view (associated color masks stay associated);
- float (e.g. 32-bit TIFF) or 16-bit: accepted when every value is a non-negative integer;
- anything else (fractional or negative values, other channel counts): InputError naming the file.

Label images only (checked before any id is assigned, so a photo never becomes 400k classes):

- JPEG files (by suffix or content) are refused: lossy compression invents new values along every
  edge, so they cannot hold ids;
- a file with more than ``MAX_LABELS`` (4096) distinct non-zero ids or colors, or a color-coded file
  with more than 255 colors and on average fewer than ``MIN_PIXELS_PER_LABEL`` (16) pixels per color,
  is refused as "looks like a photo, not a label map" (an 8-bit grey map, at most 255 ids, never is).

Size: a mask whose size differs from its view's training size (w, h) is resized with nearest
neighbour when the aspect ratios agree within 1% (typically masks made at the original resolution
while training at ``--resolution 2``); otherwise it is an InputError naming the file and both sizes.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import cv2
import numpy as np

from gsgroup.errors import InputError

MASK_EXTS = (".png", ".tif", ".tiff", ".bmp", ".jpg", ".jpeg")
ASPECT_TOLERANCE = 0.01
MAX_LABELS = 4096  # distinct non-zero ids/colors one mask file may hold
MIN_PIXELS_PER_LABEL = 16  # above 255 colors, fewer pixels per label than this reads as a photo
MASK_NEEDS = (
    "a mask must be a lossless label image: a grey 8/16-bit PNG of integer ids (0 = no mask) or a color-coded PNG"
)
OBJECT_MASK_DIR = "object_mask"  # Gaussian Grouping's layout: DATA/object_mask/<stem>.png, associated ids
OBJECTS_FILE = "objects.json"  # beside associated masks: what each id is (segment.associate.write_association)

__all__ = [
    "read_mask",
    "load_masks",
    "load_object_masks",
    "write_mask",
    "find_mask_file",
    "OBJECT_MASK_DIR",
    "OBJECTS_FILE",
]


# ----------------------------------------------------------------------------- decoding


def _is_jpeg(path: Path) -> bool:
    if path.suffix.lower() in (".jpg", ".jpeg", ".jpe", ".jfif"):
        return True
    try:
        with open(path, "rb") as f:
            return f.read(3) == b"\xff\xd8\xff"
    except OSError:
        return False  # unreadable: read_image_raw names the problem


def _decode(path: Path) -> np.ndarray:
    """Decoded pixels unchanged: [H,W] or [H,W,C] (OpenCV channel order BGR(A)); JPEGs are refused."""
    from gsgroup.data.images import read_image_raw

    if _is_jpeg(path):
        raise InputError(
            f"{path}: mask is a JPEG (lossy, so it cannot hold ids; is this a photo?); {MASK_NEEDS} "
            f"named after its image — pass the mask folder, not the images folder"
        )
    return read_image_raw(path, "mask image", "re-export it as a grey PNG of integer ids")


def _integral(arr: np.ndarray, path: Path) -> np.ndarray:
    """Check that ``arr`` holds non-negative integers; return it as int64."""
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise InputError(f"{path}: mask holds non-integer values; masks must be integer ids (0 = no mask)")
    elif arr.dtype.kind not in "iu":
        raise InputError(f"{path}: unsupported mask pixel type {arr.dtype}; save the mask as a grey 8/16-bit PNG")
    if arr.size and arr.min() < 0:
        raise InputError(f"{path}: mask holds negative values; masks must be ids >= 0 (0 = no mask)")
    if arr.size and arr.max() > np.iinfo(np.int32).max:
        raise InputError(f"{path}: mask ids exceed 2^31; renumber the ids")
    return arr.astype(np.int64)


def _check_label_count(values: np.ndarray, path: Path, what: str) -> None:
    """InputError when ``values`` (ids or packed colors, [H,W] int64 >= 0) hold an implausible
    number of distinct non-zero labels for a label map (module rules)."""
    if values.size and int(values.max()) <= 255:
        return  # at most 255 labels: always plausible
    if values.size and int(values.max()) < (1 << 16):
        k = int(np.count_nonzero(np.bincount(values.ravel())[1:]))
    else:
        u = np.unique(values)
        k = int(u.size - (u[0] == 0 if u.size else 0))
    if k > MAX_LABELS or (what == "colors" and k > 255 and k * MIN_PIXELS_PER_LABEL > values.size):
        raise InputError(
            f"{path}: mask has {k} distinct {what} in {values.shape[1]}x{values.shape[0]} pixels, which looks like "
            f"a photo, not a label map; {MASK_NEEDS} (at most {MAX_LABELS} ids per file) — pass the mask folder, "
            f"not the images folder"
        )


def _split(img: np.ndarray, path: Path) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(grey ids [H,W] int64, None) or (None, packed colors [H,W] int64) for a decoded mask."""
    grey, packed = _split_raw(img, path)
    if grey is not None:
        _check_label_count(grey, path, "ids")
    else:
        _check_label_count(packed, path, "colors")
    return grey, packed


def _split_raw(img: np.ndarray, path: Path) -> tuple[np.ndarray | None, np.ndarray | None]:
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 2:
        return _integral(img, path), None
    if img.ndim != 3 or img.shape[2] not in (2, 3, 4):
        raise InputError(
            f"{path}: mask has {img.shape[2] if img.ndim == 3 else img.ndim} channels; "
            f"save it as a grey PNG of integer ids (or RGB color-coded)"
        )
    if img.shape[2] == 2:  # grey + alpha
        return _integral(img[:, :, 0], path), None
    b, g, r = (_integral(img[:, :, c], path) for c in range(3))
    if np.array_equal(b, g) and np.array_equal(g, r):
        return r, None
    bits = 16 if img.dtype == np.uint16 else 8
    if img.dtype.kind == "f" or max(int(r.max()), int(g.max()), int(b.max())) >= (1 << bits):
        raise InputError(f"{path}: color-coded mask with values beyond {bits} bits; save it as a grey PNG of ids")
    return None, (r << (2 * bits)) | (g << bits) | b


def _palette(colors: list[np.ndarray]) -> np.ndarray:
    """Sorted distinct non-black packed colors over all color-coded masks (id = index + 1)."""
    if not colors:
        return np.zeros(0, np.int64)
    u = np.unique(np.concatenate([np.unique(c) for c in colors]))
    return u[u != 0]


def _apply_palette(packed: np.ndarray, palette: np.ndarray) -> np.ndarray:
    ids = np.searchsorted(palette, packed) + 1
    return np.where(packed == 0, 0, ids)


def _aspect_ok(src: tuple[int, int], dst: tuple[int, int]) -> bool:
    a, b = src[0] / src[1], dst[0] / dst[1]
    return abs(a - b) <= ASPECT_TOLERANCE * b


def _needs_resize(shape: tuple[int, ...], size: tuple[int, int] | None, path: Path) -> bool:
    """Whether a mask of ``shape`` (H, W, ...) must be resized to ``size`` (w, h); InputError when the
    aspect ratios differ."""
    if size is None:
        return False
    w, h = int(size[0]), int(size[1])
    src = (shape[1], shape[0])
    if src == (w, h):
        return False
    if not _aspect_ok(src, (w, h)):
        raise InputError(
            f"{path}: mask is {src[0]}x{src[1]} but its image is {w}x{h} (different aspect ratio); "
            f"regenerate the mask from this image (e.g. `gsgroup masks DATA --out DIR`)"
        )
    return True


def _fit(labels: np.ndarray, size: tuple[int, int] | None, path: Path) -> tuple[np.ndarray, bool]:
    """Resize ``labels`` [H,W] to ``size`` (w, h) with nearest neighbour; (labels int32, resized?)."""
    labels = labels.astype(np.int32, copy=False)
    if not _needs_resize(labels.shape, size, path):
        return labels, False
    out = cv2.resize(labels, (int(size[0]), int(size[1])), interpolation=cv2.INTER_NEAREST_EXACT)
    return out.astype(np.int32, copy=False), True


def _ids(grey, packed, palette: np.ndarray, size: tuple[int, int] | None, path: Path) -> tuple[np.ndarray, bool]:
    """A split mask (``_split``: grey ids or packed colours) as ids [H,W] int32 at ``size`` (colours through
    ``palette``); (ids, resized?)."""
    return _fit(grey if packed is None else _apply_palette(packed, palette), size, path)


# ----------------------------------------------------------------------------- public API


def read_mask(path: str | os.PathLike, size: tuple[int, int] | None = None) -> np.ndarray:
    """Read one mask file as ids [H,W] int32 (0 = no mask), converted by the module's rules.

    ``size``: the view's training size (w, h); a same-aspect mask of another size is resized with
    nearest neighbour (one warning), a different aspect is an InputError. A color-coded file gets
    ids from its own colors only (``load_masks`` shares them across a folder).
    """
    path = Path(path)
    grey, packed = _split(_decode(path), path)
    labels, resized = _ids(grey, packed, _palette([] if packed is None else [packed]), size, path)
    if resized:
        warnings.warn(f"{path}: mask resized (nearest neighbour) to its image size {size[0]}x{size[1]}", stacklevel=2)
    return labels


def find_mask_file(mask_dir: Path, name: str) -> Path | None:
    """``mask_dir/<name>.png`` if present, else ``<name>`` with another supported suffix, else None."""
    for ext in MASK_EXTS:
        for cand in (mask_dir / f"{name}{ext}", mask_dir / f"{name}{ext.upper()}"):
            if cand.is_file():
                return cand
    return None


def load_masks(mask_dir: str | os.PathLike, views, cache: int = 0) -> dict[str, np.ndarray | None]:
    """Masks for ``views`` (objects with ``.name``, ``.width``, ``.height``) from ``mask_dir``.

    Returns {view name: ids [H,W] int32 at the view's (height, width), or None when the view has no
    mask file}. Missing masks and resized masks each give ONE warning with a count. Raises InputError
    when the folder is missing, when no file matches any view, or for a bad file (module rules).
    ``cache`` N > 0: a ``mask_stream.StreamedMasks`` mapping instead, which reads each file once now
    (the same checks) and again on access, keeping the N most recently used decoded.
    """
    mask_dir = Path(mask_dir)
    if not mask_dir.is_dir():
        raise InputError(f"{mask_dir}: mask folder not found; create masks with `gsgroup masks DATA --out {mask_dir}`")
    views = list(views)
    files = {v.name: find_mask_file(mask_dir, v.name) for v in views}
    missing = [n for n, p in files.items() if p is None]
    if views and len(missing) == len(views):
        raise InputError(
            f"{mask_dir}: no mask file matches any image (expected e.g. {views[0].name}.png); "
            f"masks must be named after the image stems"
        )
    if cache > 0:
        from gsgroup.data.mask_stream import StreamedMasks

        out = StreamedMasks(mask_dir, views, files, cache)
        _warn_missing(mask_dir, views, missing)
        return out
    decoded: dict[str, tuple[np.ndarray | None, np.ndarray | None]] = {}
    for v in views:
        if files[v.name] is not None:
            decoded[v.name] = _split(_decode(files[v.name]), files[v.name])
    palette = _palette([p for _, p in decoded.values() if p is not None])

    out: dict[str, np.ndarray | None] = {}
    resized = []
    for v in views:
        if v.name not in decoded:
            out[v.name] = None
            continue
        grey, packed = decoded[v.name]
        labels, was_resized = _ids(grey, packed, palette, (v.width, v.height), files[v.name])
        if was_resized:
            resized.append(v.name)
        out[v.name] = labels
    _warn_resized(mask_dir, views, resized)
    _warn_missing(mask_dir, views, missing)
    return out


def _warn_resized(mask_dir: Path, views: list, resized: list[str]) -> None:
    if resized:
        warnings.warn(
            f"{mask_dir}: {len(resized)} of {len(views)} masks differ in size from their images and were resized "
            f"(nearest neighbour), e.g. {resized[0]}",
            stacklevel=3,
        )


def _warn_missing(mask_dir: Path, views: list, missing: list[str]) -> None:
    if missing:
        warnings.warn(
            f"{mask_dir}: {len(missing)} of {len(views)} views have no mask (e.g. {missing[0]}); "
            f"they are skipped by the identity loss",
            stacklevel=3,
        )


def load_object_masks(data: str | os.PathLike, views) -> dict[str, np.ndarray | None]:
    """Already associated masks in Gaussian Grouping's layout, ``DATA/object_mask/<stem>.png``
    (uint8, 0 = background), used as they are: same id = same object in every view.

    Returns {view name: ids [H,W] int32 or None} like ``load_masks``.
    """
    mask_dir = Path(data) / OBJECT_MASK_DIR
    if not mask_dir.is_dir():
        raise InputError(
            f"{mask_dir}: no associated masks in the dataset; make masks with `gsgroup masks DATA --out DIR` "
            f"and pass that folder instead"
        )
    return load_masks(mask_dir, views)


def write_mask(path: str | os.PathLike, labels: np.ndarray, force_uint16: bool = False) -> None:
    """Write ids [H,W] (integers >= 0) as a PNG, atomically: uint8 when max <= 255, else uint16
    (always uint16 with ``force_uint16``)."""
    from gsgroup.fileio import write_image

    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be [H,W], got shape {labels.shape}")
    if labels.dtype.kind not in "iu":
        raise ValueError(f"labels must be integers, got {labels.dtype}")
    top = int(labels.max()) if labels.size else 0
    if labels.size and labels.min() < 0:
        raise ValueError("labels must be >= 0")
    if top > 65535:
        raise ValueError(f"{path}: {top} exceeds the uint16 PNG range; renumber the ids (at most 65535)")
    dtype = np.uint8 if top <= 255 and not force_uint16 else np.uint16
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"{path}: masks are written as PNG")
    write_image(path, labels.astype(dtype))
