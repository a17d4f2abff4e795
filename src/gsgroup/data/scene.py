"""``load_scene``: a COLMAP or NeRF dataset folder -> train/test views, points and scene extent.

Layouts: ``DATA/sparse/0`` (or ``DATA/sparse``) + ``DATA/images`` (COLMAP), or
``DATA/transforms.json`` / ``DATA/transforms_{train,test}.json`` (NeRF; ``transforms_val.json`` is ignored).

Split (``eval=True``): ``transforms_test.json`` if present; else a list file ``DATA/test.txt`` or
``SPARSE/test.txt`` (one image name or stem per line); else every 8th view by sorted name
(index % 8 == 0 is test, as in 3DGS). With ``eval=False`` every view is for training (test frames of a
``transforms_test.json`` included, as in 3DGS) and ``test`` is empty.

Images may be a scaled copy of what their camera was calibrated for (K is scaled to the pixels), but an
image of another aspect ratio (more than 1 px off after scaling) is an InputError naming it
(``images.check_calibration_size``).

Distorted cameras are undistorted once with OpenCV into ``cache_dir/undistorted`` (never into DATA).
"""

from __future__ import annotations

import logging
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from gsgroup.data import images as imgs
from gsgroup.data.colmap import read_points3d_arrays
from gsgroup.data.colmap_frames import colmap_frames, colmap_points_file
from gsgroup.data.images import Frame
from gsgroup.data.nerf import find_points_file, find_transforms, nerf_frames, read_ply_points
from gsgroup.errors import InputError
from gsgroup.geometry import camera_center

log = logging.getLogger(__name__)
LLFF_HOLD = 8
MAX_THREADS = 2


@dataclass
class View:
    """One camera with its image at training resolution.

    ``K`` [3,3] float32 pinhole intrinsics at (width, height); ``viewmat`` [4,4] float32 world-to-camera
    (OpenCV axes: x right, y down, z forward). The image is held as ``pixels`` [H,W,3|4] RGB(A) in the
    file's own type (uint8 or uint16; float32 for others) and ``image`` converts it on each access to
    float32 [H,W,3] in [0,1], RGBA composited over ``background``: 300 photos at 1600x1066 take 1.5 GB
    instead of 6. Resized images are composited and resized in float, then rounded to the type.
    """

    name: str
    image_path: Path
    K: np.ndarray
    viewmat: np.ndarray
    width: int
    height: int
    pixels: np.ndarray
    background: tuple = (0.0, 0.0, 0.0)

    @property
    def image(self) -> np.ndarray:
        """float32 [H,W,3] in [0,1] (a new array each time)."""
        return imgs.pixels_to_float(self.pixels, self.background)


@dataclass
class Scene:
    """A loaded dataset. ``points``/``colors`` [P,3] float32 (colors in [0,1]) or None; ``center`` [3]
    is the mean training camera centre and ``extent`` 1.1 x the largest distance to it (3DGS)."""

    root: Path
    train: list[View]
    test: list[View]
    points: np.ndarray | None
    colors: np.ndarray | None
    extent: float
    center: np.ndarray
    source: str


# ----------------------------------------------------------------------------- naming and split


def unique_names(keys: list[str]) -> list[str]:
    """View names for image keys (relative paths): the stem when unique, else the relative path
    without suffix with '/' -> '_'; a numeric suffix resolves any remaining clash."""
    stems = [PurePosixPath(k).stem for k in keys]
    if len(set(stems)) == len(stems):
        return stems
    names = [str(PurePosixPath(k).with_suffix("")).replace("/", "_") for k in keys]
    seen: dict[str, int] = {}
    out = []
    for n in names:
        c = seen.get(n, 0)
        seen[n] = c + 1
        out.append(n if c == 0 else f"{n}_{c + 1}")
    return out


def read_test_list(path: Path) -> list[str]:
    """Entries of a test list file: one image name or stem per line; blank lines and # comments skipped."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        s = line.strip()
        if s and not s.startswith("#"):
            out.append(s[2:] if s.startswith("./") else s)
    return out


def _match_keys(name: str, key: str) -> set[str]:
    p = PurePosixPath(key)
    return {name, key, p.name, p.stem, str(p.with_suffix(""))}


def split_indices(names: list[str], keys: list[str], test_list: list[str] | None, list_file: Path | None) -> set[int]:
    """Indices of the test views: those named in ``test_list``, else every 8th by sorted name."""
    if test_list is None:
        order = sorted(range(len(names)), key=lambda i: names[i])
        return {i for j, i in enumerate(order) if j % LLFF_HOLD == 0}
    wanted = set(test_list)
    test = {i for i in range(len(names)) if _match_keys(names[i], keys[i]) & wanted}
    matched = set().union(*(_match_keys(names[i], keys[i]) for i in test)) & wanted if test else set()
    unmatched = wanted - matched
    if not test:
        raise InputError(
            f"{list_file}: none of its {len(wanted)} entries names an image of the dataset; list image names or stems"
        )
    if unmatched:
        warnings.warn(
            f"{list_file}: {len(unmatched)} of {len(wanted)} entries match no image (e.g. {sorted(unmatched)[0]!r})",
            stacklevel=3,
        )
    return test


def camera_extent(viewmats: list[np.ndarray]) -> tuple[float, np.ndarray]:
    """3DGS getNerfppNorm: (radius = 1.1 x max distance of camera centres to their mean, mean [3]).

    A single camera (or coincident centres) gives radius 1.0 instead of 0.
    """
    centers = camera_center(np.stack(viewmats))
    center = centers.mean(0)
    radius = 1.1 * float(np.linalg.norm(centers - center, axis=1).max())
    if not np.isfinite(radius) or radius < 1e-9:
        radius = 1.0
    return radius, center


# ----------------------------------------------------------------------------- images


def _load_view(frame: Frame, name: str, resolution, background, cache_dir: Path) -> View:
    """Read (undistorting via the cache if needed), composite and resize one frame."""
    src_size = imgs.image_size(frame.path)
    imgs.check_calibration_size(frame, src_size)
    K = imgs.scale_intrinsics(frame.K, frame.calib_size, src_size)
    if imgs.has_distortion(frame.dist):
        raw, path, K = imgs.load_undistorted(frame.path, K, frame.dist, cache_dir)
    else:
        raw, path = imgs.read_image_raw(frame.path), frame.path
    h0, w0 = raw.shape[:2]
    if (w0, h0) != src_size:  # header and decoded size disagree: trust the pixels
        imgs.check_calibration_size(frame, (w0, h0))
        K = imgs.scale_intrinsics(K, src_size, (w0, h0))
    w, h = imgs.target_size(w0, h0, resolution)
    if (w, h) == (w0, h0):  # held as decoded, composited per access: the same floats as before
        pixels = imgs.raw_to_pixels(raw)
    else:
        image = imgs.resize(imgs.composite(imgs.raw_to_float(raw), background), (w, h))
        pixels = imgs.quantize(image, raw.dtype)
    K = imgs.scale_intrinsics(K, (w0, h0), (w, h))
    return View(name, Path(path), K.astype(np.float32), frame.viewmat.astype(np.float32), w, h, pixels, background)


def load_views(
    frames: list[Frame], names: list[str], resolution, background, cache_dir: Path, progress: bool, image_cache: int = 0
) -> list[View]:
    """Load all frames with at most 2 threads and a tqdm bar; returns views in input order. With
    ``image_cache`` N > 0 they are ``streaming.StreamedView``s: read from disk per access, N kept decoded."""
    from tqdm import tqdm

    if not frames:
        return []
    load = lambda a: _load_view(a[0], a[1], resolution, background, cache_dir)  # noqa: E731
    if image_cache > 0:
        from gsgroup.data.streaming import PixelCache, StreamedView

        cache, plain = PixelCache(image_cache), load
        load = lambda a: StreamedView(plain(a), lambda: plain(a).pixels, cache)  # noqa: E731
    with ThreadPoolExecutor(max_workers=min(MAX_THREADS, len(frames))) as pool:
        it = pool.map(load, zip(frames, names))
        return list(tqdm(it, total=len(frames), desc="loading images", unit="img", disable=not progress))


# ----------------------------------------------------------------------------- points


def _colmap_points(sparse: Path, allow_empty: bool) -> tuple[np.ndarray | None, np.ndarray | None]:
    pfile = colmap_points_file(sparse)
    hint = "initialise the Gaussians another way with `--init random`"
    if not pfile.is_file():
        if allow_empty:
            return None, None
        raise InputError(f"{pfile}: points3D file not found; re-export the model or {hint}")
    pts = read_points3d_arrays(pfile)
    ok = np.all(np.isfinite(pts.xyz), axis=1)
    if not ok.all():
        warnings.warn(f"{pfile}: dropped {int((~ok).sum())} points with NaN/inf coordinates", stacklevel=3)
    if not ok.any():
        if allow_empty:
            return None, None
        raise InputError(f"{pfile}: the model has zero 3D points; {hint}")
    return pts.xyz[ok].astype(np.float32), (pts.rgb[ok].astype(np.float32) / 255.0)


def _nerf_points(root: Path) -> tuple[np.ndarray | None, np.ndarray | None]:
    pfile = find_points_file(root)
    if pfile is None:
        return None, None
    xyz, rgb = read_ply_points(pfile)
    ok = np.all(np.isfinite(xyz), axis=1)
    if not ok.any():
        return None, None
    if rgb is None:
        rgb = np.full_like(xyz, 0.5)
    return xyz[ok], rgb[ok]


# ----------------------------------------------------------------------------- entry point


def _check_background(background) -> tuple[float, float, float]:
    try:
        bg = tuple(float(v) for v in background)
    except (TypeError, ValueError):
        bg = ()
    if len(bg) != 3 or not all(0.0 <= v <= 1.0 for v in bg):
        raise InputError(f"background {background!r} must be three floats (r, g, b) in [0, 1]")
    return bg


def load_scene(
    path,
    resolution=None,
    eval=False,
    background=(0.0, 0.0, 0.0),
    cache_dir=None,
    allow_empty_points=False,
    images_dir="images",
    progress=True,
    image_cache=0,
) -> Scene:
    """Load a COLMAP or NeRF dataset folder into a Scene (views sorted by name).

    ``resolution``: see ``images.target_size`` (None/-1 auto, 1/2/4/8 divisor, else width).
    ``background``: (r,g,b) in [0,1] for compositing RGBA images. ``cache_dir``: where undistorted copies
    go (default: a folder under the system temp dir). ``image_cache`` N > 0: stream the images from disk,
    N decoded in an LRU cache (``streaming``). Raises InputError on bad input.
    """
    root = Path(path)
    if not root.is_dir():
        raise InputError(f"{root}: dataset folder not found; pass a folder with sparse/ + images/ or transforms.json")
    bg = _check_background(background)
    imgs.target_size(100, 100, resolution)  # validate early
    cache = Path(cache_dir) if cache_dir is not None else imgs.default_cache_dir(root)
    if cache_dir is None:
        log.info("no cache_dir given: undistorted images (if any) go to %s", cache)
    if (root / "sparse").is_dir():
        source = "colmap"
        frames, sparse = colmap_frames(root, images_dir)
        points, colors = _colmap_points(sparse, allow_empty_points)
        list_files = [root / "test.txt", sparse / "test.txt"]
    elif find_transforms(root):
        source = "nerf"
        frames = nerf_frames(root)
        points, colors = _nerf_points(root)
        list_files = [root / "test.txt"]
    else:
        raise InputError(
            f"{root}: not a recognised dataset (no sparse/ folder and no transforms*.json); "
            f"run COLMAP (sparse/0 + images/) or provide a NeRF transforms.json"
        )
    try:
        if cache.resolve().is_relative_to(root.resolve()):
            raise InputError(
                f"{cache}: the cache folder is inside the dataset folder {root}; choose a cache outside DATA"
            )
    except OSError:
        pass

    keys = [f.key for f in frames]
    names = unique_names(keys)
    if not eval:
        test_idx: set[int] = set()
    elif any(f.split == "test" for f in frames):
        test_idx = {i for i, f in enumerate(frames) if f.split == "test"}
    else:
        list_file = next((p for p in list_files if p.is_file()), None)
        test_list = read_test_list(list_file) if list_file else None
        test_idx = split_indices(names, keys, test_list, list_file)
    train_idx = [i for i in range(len(frames)) if i not in test_idx]
    if not train_idx:
        raise InputError(
            f"{root}: the eval split leaves no training images ({len(frames)} in all); add images or drop --eval"
        )

    order = sorted(range(len(frames)), key=lambda i: names[i])
    views = load_views(
        [frames[i] for i in order], [names[i] for i in order], resolution, bg, cache, progress, image_cache
    )
    by_index = dict(zip(order, views))
    train = [by_index[i] for i in order if i not in test_idx]
    test = [by_index[i] for i in order if i in test_idx]
    extent, center = camera_extent([frames[i].viewmat for i in train_idx])
    return Scene(root, train, test, points, colors, float(extent), center.astype(np.float32), source)
