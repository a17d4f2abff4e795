"""Association outputs: the object table and the mask folder (``<stem>.png`` + objects.json)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from gsgroup.errors import InputError

if TYPE_CHECKING:
    from gsgroup.segment.associate import AssociationResult


def association_objects(masks: dict, views: dict, means: np.ndarray, owner: np.ndarray) -> dict[int, dict]:
    """Per id, the objects.json schema of a run (gaussians, bbox_min, bbox_max, mean_color) plus
    pixels (total over views) and views (sorted names): mean_color is the mean RGB in [0,1] over its
    pixels (from each view's ``image`` when present); the box spans the 2nd-98th percentile per axis
    of its Gaussians' means (None without Gaussians). masks {name: [H,W] ids}; views {name: view};
    means [N,3]; owner [N] id of each Gaussian (0 = none)."""
    ids = sorted({int(k) for m in masks.values() for k in np.unique(m) if k > 0})
    K = (max(ids) + 1) if ids else 1
    pixels = np.zeros(K, np.int64)
    csum = np.zeros((K, 3), np.float64)
    cnt = np.zeros(K, np.int64)
    seen: dict[int, list[str]] = {k: [] for k in ids}
    for name in sorted(masks):
        m = masks[name].ravel()
        pixels += np.bincount(m, minlength=K)[:K]
        for k in np.unique(m):
            if k > 0:
                seen[int(k)].append(name)
        img = getattr(views.get(name), "image", None)
        if img is not None:
            img = np.asarray(img, np.float64).reshape(-1, 3)
            for c in range(3):
                csum[:, c] += np.bincount(m, weights=img[:, c], minlength=K)[:K]
            cnt += np.bincount(m, minlength=K)[:K]
    out = {}
    for k in ids:
        pts = means[owner == k]
        lo, hi = (np.percentile(pts, 2, axis=0), np.percentile(pts, 98, axis=0)) if len(pts) else (None, None)
        out[k] = {
            "gaussians": int(len(pts)),
            "bbox_min": None if lo is None else [round(float(x), 5) for x in lo],
            "bbox_max": None if hi is None else [round(float(x), 5) for x in hi],
            "mean_color": [round(float(x), 4) for x in csum[k] / cnt[k]] if cnt[k] else None,
            "pixels": int(pixels[k]),
            "views": seen[k],
        }
    return out


def write_association(result: AssociationResult, out_dir: str | os.PathLike, params: dict | None = None) -> Path:
    """Write ``out_dir/<view name>.png`` (uint8 when there are <= 255 ids, else uint16 for every view;
    0 = no object) and ``out_dir/objects.json`` ({"objects": {id: info}, "stats": ..., "params": ...}),
    each atomically. Returns out_dir."""
    from gsgroup.data.masks import OBJECTS_FILE
    from gsgroup.fileio import write_image, write_json

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    n = max(result.objects) if result.objects else 0
    if n > 65535:
        raise InputError(f"{out}: {n} objects exceed the uint16 PNG range")
    dtype = np.uint8 if n <= 255 else np.uint16
    for name, ids in result.masks.items():
        write_image(out / f"{name}.png", np.asarray(ids).astype(dtype))
    write_json(
        out / OBJECTS_FILE,
        {
            "format": "gaussian-grouping object_mask: <stem>.png ids, 0 = no object",
            "dtype": np.dtype(dtype).name,
            "objects": {str(k): v for k, v in sorted(result.objects.items())},
            "stats": result.stats,
            "params": params or {},
        },
    )
    return out


def resolve_output_dir(data_dir: str | os.PathLike, out: str | os.PathLike | None, force: bool = False) -> Path:
    """Where ``gsgroup associate`` writes: ``out``, which is required and must lie outside DATA
    (gsgroup never writes inside DATA; train takes the result with ``--masks OUT``).

    A folder that already holds files (an earlier association) is refused without ``force``
    (InputError naming it); a path that exists but is not a folder is always refused."""
    from gsgroup.fileio import check_outside

    if out is None:
        raise InputError(
            f"--out is required: the associated masks go to a folder outside {data_dir} "
            "(gsgroup never writes inside DATA); train on them with --masks OUT"
        )
    path = Path(out)
    check_outside(path, data_dir, "the associated masks")
    if path.exists() and not path.is_dir():
        raise InputError(f"{path}: exists and is not a folder; pass another --out")
    if path.is_dir() and any(path.iterdir()) and not force:
        raise InputError(f"{path}: already holds masks; pick an empty --out folder, or --force to overwrite them")
    return path
