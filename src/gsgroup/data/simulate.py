"""Simulated SAM masks: realistic, unassociated 2D masks made from ground-truth instance masks.

For each view (its own random stream, seeded by (seed, crc32(view name)), so a view's masks do not
depend on which other views are simulated), starting from the ground-truth segments — every object
id present and the background (id 0, floor and sky), which SAM's "everything" mode also returns as
masks and Gaussian Grouping treats as a class of its own:

1. merge: each pair of touching objects both visible in the view becomes one mask with
   probability ``MERGE_RATE`` (0.1);
2. miss: each mask (after merging) is dropped — its pixels become 0 — with probability
   ``MISS_RATE`` (0.075, i.e. 5-10% of the masks);
3. split: each kept mask is cut in two by a straight line through its centroid at a random angle
   with probability ``SPLIT_RATE`` (0.1); both halves get their own id;
4. borders: each resulting mask is eroded or dilated (equal odds) by 1 or 2 pixels (equal odds),
   with an elliptical (disc) structuring element of radius r;
5. flatten: masks are painted largest first, smaller ones on top (like ``segment.sam.flatten_masks``),
   so a dilated small mask overlaps its larger neighbour and an eroded mask leaves a gap of 0
   where no other mask reaches;
6. ids: the masks of a view get the ids 1..M in a fresh random order (a random permutation per
   view), so ids say nothing across views.

Consequences the tests check: a pixel with id k lies within 2 px (disc) of mask k's ground-truth
segment, and a pixel deeper than 2 px inside a kept, unsplit segment carries that segment's id.
"""

from __future__ import annotations

import json
import os
import zlib
from pathlib import Path

import cv2
import numpy as np

from gsgroup.errors import InputError
from gsgroup.fileio import check_outside

MERGE_RATE = 0.1
MISS_RATE = 0.075
SPLIT_RATE = 0.1
MAX_BORDER = 2

__all__ = [
    "simulate_sam_masks",
    "simulate_view",
    "write_simulated_masks",
    "disc",
    "MERGE_RATE",
    "MISS_RATE",
    "SPLIT_RATE",
]


def disc(r: int) -> np.ndarray:
    """Elliptical structuring element of radius ``r`` ((2r+1) x (2r+1) uint8)."""
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def _move_border(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Erode or dilate a boolean mask [H,W] by 1 or 2 px (random)."""
    r = int(rng.integers(1, MAX_BORDER + 1))
    m = mask.astype(np.uint8)
    out = cv2.dilate(m, disc(r)) if rng.random() < 0.5 else cv2.erode(m, disc(r), borderType=cv2.BORDER_REPLICATE)
    return out.astype(bool)


def _split(mask: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """Cut a boolean mask [H,W] by a random line through its centroid; returns the non-empty parts."""
    ys, xs = np.nonzero(mask)
    cy, cx = ys.mean(), xs.mean()
    theta = rng.uniform(0.0, np.pi)
    side = (xs - cx) * np.cos(theta) + (ys - cy) * np.sin(theta) >= 0
    parts = []
    for s in (side, ~side):
        if s.any():
            part = np.zeros_like(mask)
            part[ys[s], xs[s]] = True
            parts.append(part)
    return parts


def simulate_view(gt: np.ndarray, touching, rng: np.random.Generator) -> np.ndarray:
    """Simulated SAM labels [H,W] int32 (0 = no mask, ids 1..M) for one ground-truth mask [H,W]
    (0 = background, k = object k), following the module's steps."""
    gt = np.asarray(gt)
    present = [int(k) for k in np.unique(gt)]
    groups = {k: {k} for k in present}  # segment -> set of gt ids (union-find by sets)
    for a, b in touching:
        a, b = int(a), int(b)
        if a in groups and b in groups and rng.random() < MERGE_RATE:
            ga, gb = groups[a], groups[b]
            if ga is not gb:
                ga |= gb
                for k in gb:
                    groups[k] = ga
    segments = []
    seen = set()
    for k in present:
        g = groups[k]
        if id(g) not in seen:
            seen.add(id(g))
            segments.append(sorted(g))
    masks = []
    for seg in segments:
        m = np.isin(gt, seg)
        if rng.random() < MISS_RATE:
            continue
        parts = _split(m, rng) if rng.random() < SPLIT_RATE else [m]
        for part in parts:
            moved = _move_border(part, rng)
            if moved.any():
                masks.append(moved)
    order = np.argsort([-int(m.sum()) for m in masks], kind="stable")
    ids = rng.permutation(len(masks)) + 1
    out = np.zeros(gt.shape, np.int32)
    for j in order:  # largest first, smaller on top
        out[masks[j]] = ids[j]
    return out


def view_rng(seed: int, name: str) -> np.random.Generator:
    """The random stream of view ``name``: seeded by (seed, crc32(name))."""
    return np.random.default_rng([int(seed), zlib.crc32(name.encode("utf-8"))])


def simulate_sam_masks(gt_masks: dict, touching, seed: int = 0) -> dict[str, np.ndarray]:
    """Simulated SAM masks for ``gt_masks`` {view name: [H,W] uint8 instance ids, 0 = background}.

    ``touching``: pairs (a, b) of object ids in contact (scene.json "touching"). Deterministic for a
    given seed. Returns {view name: [H,W] int32 ids, 0 = no mask}; see the module docstring.
    """
    touching = [tuple(int(v) for v in p) for p in touching]
    return {name: simulate_view(gt, touching, view_rng(seed, name)) for name, gt in gt_masks.items()}


def write_simulated_masks(scene_dir: str | os.PathLike, out_dir: str | os.PathLike, seed: int = 0) -> dict[str, int]:
    """Read ``scene_dir/gt_mask/*.png`` and ``scene_dir/scene.json`` (built-in scene), write the
    simulated masks to ``out_dir/<stem>.png`` (uint8, or uint16 past 255 ids).

    Returns {view name: number of masks}. ``out_dir`` must not lie inside ``scene_dir``.
    """
    from gsgroup.data.masks import read_mask, write_mask

    scene_dir, out_dir = Path(scene_dir), Path(out_dir)
    meta_path, gt_dir = scene_dir / "scene.json", scene_dir / "gt_mask"
    if not meta_path.is_file() or not gt_dir.is_dir():
        raise InputError(
            f"{scene_dir}: not a built-in scene (needs scene.json and gt_mask/); make one with `gsgroup synthetic`"
        )
    check_outside(out_dir, scene_dir, "the masks")
    try:
        touching = json.loads(meta_path.read_text(encoding="utf-8")).get("touching", [])
    except (OSError, ValueError) as e:
        raise InputError(f"{meta_path}: cannot read scene.json ({e}); regenerate the scene") from e
    files = sorted(p for p in gt_dir.iterdir() if p.suffix.lower() == ".png")
    if not files:
        raise InputError(f"{gt_dir}: no ground-truth masks (*.png); regenerate the scene")
    gt = {p.stem: read_mask(p) for p in files}
    sim = simulate_sam_masks(gt, touching, seed)
    for name, labels in sim.items():
        write_mask(out_dir / f"{name}.png", labels)
    return {name: int(len(np.unique(labels[labels > 0]))) for name, labels in sim.items()}
