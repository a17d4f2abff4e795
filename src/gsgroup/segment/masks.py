"""``generate_masks``: the driver behind ``gsgroup masks DATA --source classical|sam --out DIR``.

Writes one label PNG per view, ``DIR/<image stem>.png``, at the training resolution (the size
``load_scene(DATA, resolution=R)`` gives), ids per view (unassociated), 0 = no mask, uint8 PNG
(uint16 when a view has more than 255 masks). Every view of the dataset gets a mask (train and test).
"""

from __future__ import annotations

import os
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from gsgroup.errors import InputError
from gsgroup.fileio import check_outside

SOURCES = ("classical", "sam")


def view_seed(seed: int, name: str) -> np.random.SeedSequence:
    """Seed of a view's id permutation: (seed, crc32(name)), independent of the view order."""
    return np.random.SeedSequence([int(seed), zlib.crc32(name.encode("utf-8"))])


def make_segmenter(source: str = "classical", sam=None, classical=None) -> Callable[[np.ndarray], np.ndarray]:
    """A callable image [H,W,3] float in [0,1] -> labels [H,W] int (ids in segmentation order).

    ``sam``: ``segment.sam.SamOptions`` for source "sam" (checked here, before any image is read);
    ``classical``: ``segment.classical.ClassicalParams`` for source "classical".
    """
    if source == "classical":
        from gsgroup.segment.classical import segment_image

        return lambda image: segment_image(image, classical)
    if source == "sam":
        from gsgroup.segment.sam import SamOptions, SamSegmenter

        return SamSegmenter(sam or SamOptions())
    raise InputError(f"source {source!r} is unknown; use one of {', '.join(SOURCES)}", "source")


def generate_masks(
    data: str | os.PathLike,
    out_dir: str | os.PathLike,
    source: str = "classical",
    resolution=None,
    *,
    seed: int = 0,
    sam=None,
    classical=None,
    segmenter: Callable[[np.ndarray], np.ndarray] | None = None,
    cache_dir=None,
    progress: bool = True,
    force: bool = False,
) -> dict:
    """Segment every view of dataset ``data`` and write ``out_dir/<view name>.png``.

    ``source``: "classical" (default, no weights) or "sam" (``sam`` = SamOptions with the checkpoint).
    ``resolution``: as for ``load_scene``. Ids of each view are shuffled by a random permutation
    seeded with (``seed``, view name), so they carry no meaning across views. ``segmenter``: an
    already built callable (image -> labels) that replaces ``source`` (tests, other models).
    An ``out_dir`` that already holds files (other than a ``.cache`` folder) is refused unless ``force``.
    Returns a summary dict: views, masks_mean, masks_max, seconds, out.
    """
    from tqdm import tqdm

    from gsgroup.data.masks import write_mask
    from gsgroup.data.scene import load_scene
    from gsgroup.segment.classical import shuffle_ids

    data, out = Path(data), Path(out_dir)
    if not data.is_dir():
        raise InputError(f"{data}: dataset folder not found; pass a folder with sparse/ + images/ or transforms.json")
    check_outside(out, data, "the masks")
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder; pick another --out")
    if not force and out.is_dir() and any(e.name != ".cache" for e in out.iterdir()):
        raise InputError(f"{out}: already holds files (masks of an earlier run?); pick another --out or pass --force")
    seg = segmenter if segmenter is not None else make_segmenter(source, sam=sam, classical=classical)
    scene = load_scene(
        data, resolution=resolution, eval=False, cache_dir=cache_dir, allow_empty_points=True, progress=progress
    )
    views = scene.train + scene.test
    counts = []
    t0 = time.perf_counter()
    for v in tqdm(views, desc=f"masks ({source})", unit="view", disable=not progress):
        labels = np.asarray(seg(v.image))
        if labels.shape != (v.height, v.width):
            raise RuntimeError(f"segmenter returned {labels.shape} for a {v.width}x{v.height} view")
        labels = shuffle_ids(_compact(labels), np.random.default_rng(view_seed(seed, v.name)))
        write_mask(out / f"{v.name}.png", labels)
        counts.append(int(labels.max()))
    return {
        "views": len(views),
        "masks_mean": float(np.mean(counts)) if counts else 0.0,
        "masks_max": int(max(counts)) if counts else 0,
        "seconds": round(time.perf_counter() - t0, 2),
        "out": str(out),
    }


def _compact(labels: np.ndarray) -> np.ndarray:
    """Renumber the ids > 0 of ``labels`` [H,W] to 1..K (0 stays 0); int32."""
    u, inv = np.unique(labels, return_inverse=True)
    if u[0] != 0:
        inv = inv + 1
    return inv.reshape(labels.shape).astype(np.int32)
