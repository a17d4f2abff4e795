"""How finished a removal or inpainting looks, against a truth without the object (the built-in scene
writes it: ``without/<id>/<view>.png``).

Per view, with foot [H,W] bool the object's footprint (its ground-truth mask) and changed [H,W] bool
everything the object changed in the truth (footprint and its shadow):

- residue: the share of footprint pixels that still look like the object: the edited render is
  closer (RGB distance) to the pre-edit render than to the truth without the object;
- hole PSNR: inside the footprint, the edited render against the truth without the object;
- outside PSNR: outside ``changed`` dilated by ``px``, the edited render against the pre-edit render.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np


def view_scores(
    before: np.ndarray, after: np.ndarray, truth: np.ndarray, foot: np.ndarray, changed: np.ndarray, px: int
) -> dict:
    """Residue pixel counts, hole and outside squared errors of one view (images [H,W,3] in [0,1]);
    combine views with ``combine``."""
    from .inpainting import dilate_mask

    like = ((after - before) ** 2).sum(-1) < ((after - truth) ** 2).sum(-1)
    out = ~dilate_mask(changed | foot, px)
    return {
        "residue": int(like[foot].sum()),
        "foot": int(foot.sum()),
        "hole_mse": float(np.mean((after[foot] - truth[foot]) ** 2)) if foot.any() else float("nan"),
        "out_mse": float(np.mean((after[out] - before[out]) ** 2)) if out.any() else float("nan"),
    }


def _db(mse: float) -> float:
    return 10 * math.log10(1.0 / max(mse, 1e-12))


def combine(per_view: list[dict]) -> dict:
    """residue_pct (pooled over views), hole_db (mean of per-view PSNRs), outside_db_min (worst view)."""
    foot = sum(v["foot"] for v in per_view)
    return {
        "residue_pct": 100.0 * sum(v["residue"] for v in per_view) / max(foot, 1),
        "hole_db": float(np.mean([_db(v["hole_mse"]) for v in per_view])),
        "outside_db_min": float(min(_db(v["out_mse"]) for v in per_view)),
        "hole_db_per_view": [round(_db(v["hole_mse"]), 3) for v in per_view],
    }


def truth_images(scene: str | Path, oid: int, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(truth without object ``oid`` [H,W,3], its footprint [H,W] bool, what it changed [H,W] bool) for
    view ``name`` of a built-in scene folder."""
    import cv2

    from ..data.masks import read_mask

    def load_image(path: Path) -> np.ndarray:
        return cv2.imread(str(path), cv2.IMREAD_COLOR)[:, :, ::-1].astype(np.float32) / 255.0

    scene = Path(scene)
    truth = load_image(scene / "without" / str(oid) / f"{name}.png")
    image = load_image(scene / "images" / f"{name}.png")
    foot = read_mask(scene / "gt_mask" / f"{name}.png") == oid
    return truth, foot, foot | (np.abs(image - truth).max(axis=-1) > 0.02)
