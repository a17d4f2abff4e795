"""Images read from disk per access, for captures whose images do not fit in memory.

With ``DataConfig.image_cache`` N > 0 (``--image-cache N``) a scene's views are ``StreamedView``s:
each image is decoded once while the scene loads (so a corrupt file is still an error before
training starts) and then dropped; ``pixels`` decodes it again (the undistorted copy from the cache
folder for distorted cameras) on a miss of an LRU cache of the N most recently used images, shared
by the scene's views. The pixels are made by the same code as for held images, so training on a
streamed scene is bit-identical to training on the held one.

``header_footprint`` gives the bytes an image would be held in from its file header alone (PIL reads
the size and mode without decoding the pixels), for the memory plan made before any image is read.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import numpy as np

from gsgroup.data import images as imgs

__all__ = ["PixelCache", "StreamedView", "header_footprint"]


class PixelCache:
    """At most ``capacity`` decoded images, least recently used dropped first; thread-safe."""

    def __init__(self, capacity: int):
        self.capacity = max(0, int(capacity))
        self.items: OrderedDict = OrderedDict()
        self.lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key, load: Callable[[], np.ndarray]) -> np.ndarray:
        """The image under ``key``, from the cache or ``load()`` (then kept, evicting the oldest)."""
        with self.lock:
            if key in self.items:
                self.items.move_to_end(key)
                self.hits += 1
                return self.items[key]
            self.misses += 1
        pixels = load()
        self.put(key, pixels)
        return pixels

    def put(self, key, pixels: np.ndarray) -> None:
        with self.lock:
            if self.capacity == 0:
                return
            self.items[key] = pixels
            self.items.move_to_end(key)
            while len(self.items) > self.capacity:
                self.items.popitem(last=False)


class StreamedView:
    """A ``data.scene.View`` whose ``pixels`` are read from disk on access (through ``cache``).

    Same attributes as View (name, image_path, K, viewmat, width, height, background, ``image``);
    ``nbytes`` is the size of its pixels as held, known without reading them; ``streamed`` is True.
    ``load``: () -> pixels [H,W,3|4], what ``data.scene._load_view`` would hold for this frame."""

    streamed = True

    def __init__(self, view, load: Callable[[], np.ndarray], cache: PixelCache):
        self.name, self.image_path, self.K, self.viewmat = view.name, view.image_path, view.K, view.viewmat
        self.width, self.height, self.background = view.width, view.height, view.background
        self.nbytes = int(view.pixels.nbytes)
        self.dtype, self.channels = view.pixels.dtype, view.pixels.shape[2]
        self._load, self.cache = load, cache
        cache.put(self.name, view.pixels)

    @property
    def pixels(self) -> np.ndarray:
        """[H,W,3|4] as ``View.pixels`` (shared with the cache: do not modify)."""
        return self.cache.get(self.name, self._load)

    @property
    def image(self) -> np.ndarray:
        """float32 [H,W,3] in [0,1] (a new array each time), as ``View.image``."""
        return imgs.pixels_to_float(self.pixels, self.background)

    def __repr__(self) -> str:
        return f"StreamedView({self.name!r}, {self.width}x{self.height})"


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def header_footprint(path: str | Path, resolution) -> tuple[int, int, int]:
    """(width, height, bytes held) of an image at the training ``resolution`` from its header only:
    channels 4 with alpha (3 once resized: composited) else 3, 2 bytes per channel for 16-bit images (PNG bit depth, PIL's I;16
    modes) else 1, as ``images.raw_to_pixels`` / ``quantize`` hold them. Raises InputError when the
    header cannot be read."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as im:
            w, h, mode, alpha = int(im.width), int(im.height), im.mode, "transparency" in im.info
    except (OSError, UnidentifiedImageError, ValueError):
        w, h = imgs.image_size(path)  # formats PIL lacks: decoded (InputError if unreadable)
        mode, alpha = "RGB", False
    depth = 2 if mode.startswith("I;16") else 4 if mode in ("I", "F") else 1  # 32-bit: held as float32
    with open(path, "rb") as f:
        head = f.read(26)
    if head[:8] == PNG_SIGNATURE and len(head) == 26:
        depth = 2 if head[24] == 16 else 1
        alpha = alpha or head[25] in (4, 6)
    tw, th = imgs.target_size(w, h, resolution)
    channels = 4 if (alpha or "A" in mode) and (tw, th) == (w, h) else 3  # resized: composited to RGB
    return tw, th, tw * th * channels * depth


def scene_footprint(path: str | Path, resolution) -> list[tuple[int, int, int]] | None:
    """[(width, height, bytes held)] of every frame of a COLMAP or NeRF dataset at ``resolution``, from
    the image headers (``header_footprint``); None when the folder is not a dataset (``load_scene`` says why)."""
    import warnings

    from gsgroup.data.colmap_frames import colmap_frames
    from gsgroup.data.nerf import find_transforms, nerf_frames

    root = Path(path)
    with warnings.catch_warnings():  # the loader warns about skipped frames itself
        warnings.simplefilter("ignore")
        if (root / "sparse").is_dir():
            frames, _ = colmap_frames(root, "images")
        elif root.is_dir() and find_transforms(root):
            frames = nerf_frames(root)
        else:
            return None
    return [header_footprint(f.path, resolution) for f in frames]
