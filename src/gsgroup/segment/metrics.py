"""Segmentation evaluation: Hungarian id matching, IoU and Boundary IoU, ground-truth loading.

Scores follow the LERF-Mask evaluation of Gaussian Grouping (script/eval_lerf_mask.py): per view and
object, IoU of the binary masks and Boundary IoU (Cheng et al. 2021, ``boundary_iou``); an object's
score is the mean over the views in which its ground truth is present, and the reported means are
over objects. Predicted ids are arbitrary: each ground-truth object is first matched to one
predicted id by Hungarian matching that maximises the IoU pooled over all views (``match_ids``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np
from scipy.optimize import linear_sum_assignment

from gsgroup.data.masks import MASK_EXTS, read_mask
from gsgroup.errors import InputError

__all__ = [
    "GtMaps",
    "match_ids",
    "iou",
    "boundary_iou",
    "mask_to_boundary",
    "evaluate_segmentation",
    "load_gt_dir",
]

ASPECT_TOLERANCE = 0.01


# ----------------------------------------------------------------------------- matching


def _confusion(gt_maps: Sequence[np.ndarray], pred_maps: Sequence[np.ndarray]):
    """Pixel counts of (gt id, pred id) pairs over all views.

    Returns (gt_ids [G], pred_ids [P], C [G,P] int64)."""
    gts = [np.asarray(g).ravel() for g in gt_maps]
    prs = [np.asarray(p).ravel() for p in pred_maps]
    if not gts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 0), np.int64)
    gt_ids = np.unique(np.concatenate([np.unique(g) for g in gts])).astype(np.int64)
    pred_ids = np.unique(np.concatenate([np.unique(p) for p in prs])).astype(np.int64)
    G, P = len(gt_ids), len(pred_ids)
    C = np.zeros(G * P, dtype=np.int64)
    for g, p in zip(gts, prs):
        gi = np.searchsorted(gt_ids, g)
        pi = np.searchsorted(pred_ids, p)
        C += np.bincount(gi * P + pi, minlength=G * P)
    return gt_ids, pred_ids, C.reshape(G, P)


def _check_pairs(gt_maps, pred_maps):
    if len(gt_maps) != len(pred_maps):
        raise InputError(f"match_ids: {len(gt_maps)} ground-truth maps but {len(pred_maps)} predicted maps")
    for i, (g, p) in enumerate(zip(gt_maps, pred_maps)):
        if np.shape(g) != np.shape(p):
            raise InputError(
                f"match_ids: map {i}: ground truth {list(np.shape(g))} and prediction "
                f"{list(np.shape(p))} differ in size"
            )


def _match(gt_maps, pred_maps, ignore_gt=(0,), ignore_pred=()):
    """(matches {gt: pred}, pooled IoU {gt: iou}, gt_ids kept)."""
    _check_pairs(gt_maps, pred_maps)
    gt_ids, pred_ids, C = _confusion(gt_maps, pred_maps)
    ga, pa = C.sum(1), C.sum(0)
    union = ga[:, None] + pa[None, :] - C
    IoU = np.divide(C, union, out=np.zeros(C.shape, np.float64), where=union > 0)
    keep_g = ~np.isin(gt_ids, np.asarray(list(ignore_gt), dtype=np.int64))
    keep_p = ~np.isin(pred_ids, np.asarray(list(ignore_pred), dtype=np.int64))
    sub = IoU[np.ix_(keep_g, keep_p)]
    g_idx, p_idx = np.flatnonzero(keep_g), np.flatnonzero(keep_p)
    matches, pooled = {}, {}
    if sub.size:
        rows, cols = linear_sum_assignment(sub, maximize=True)
        for r, c in zip(rows, cols):
            if sub[r, c] > 0:
                matches[int(gt_ids[g_idx[r]])] = int(pred_ids[p_idx[c]])
                pooled[int(gt_ids[g_idx[r]])] = float(sub[r, c])
    return matches, pooled, [int(g) for g in gt_ids[keep_g]]


def match_ids(
    gt_maps: Sequence[np.ndarray],
    pred_maps: Sequence[np.ndarray],
    ignore_gt=(0,),
    ignore_pred=(),
) -> dict[int, int]:
    """Hungarian matching of ground-truth objects to predicted ids over all views.

    gt_maps, pred_maps: lists of [H,W] int maps, pairwise of equal size. The IoU of gt id g and pred id
    p is pooled over views: sum of intersections / sum of unions. Ground-truth ids in ``ignore_gt``
    and predicted ids in ``ignore_pred`` are not matched (their pixels still count as false positives
    / negatives of the others). Returns {gt id: pred id} for pairs with IoU > 0 (a gt object without
    an overlapping free prediction is absent), maximising the total IoU.
    """
    return _match(gt_maps, pred_maps, ignore_gt, ignore_pred)[0]


# ----------------------------------------------------------------------------- per-mask scores


def iou(gt: np.ndarray, pred: np.ndarray) -> float:
    """IoU of two boolean masks [H,W]; 1.0 when both are empty."""
    gt, pred = np.asarray(gt, bool), np.asarray(pred, bool)
    union = np.count_nonzero(gt | pred)
    return 1.0 if union == 0 else np.count_nonzero(gt & pred) / union


def mask_to_boundary(mask: np.ndarray, dilation_ratio: float = 0.02) -> np.ndarray:
    """Inner boundary band of a boolean mask [H,W] -> bool [H,W] (Boundary IoU, Cheng et al. 2021).

    d = max(1, round(dilation_ratio * sqrt(H^2 + W^2))); the band is the mask minus its erosion by
    d iterations of a 3x3 square (a (2d+1)x(2d+1) square), the image padded by one zero pixel so a
    mask cut by the image border also has a boundary there (as the LERF-Mask evaluation code).
    """
    m = np.asarray(mask, bool)
    h, w = m.shape
    d = max(1, int(round(dilation_ratio * np.sqrt(h * h + w * w))))
    padded = cv2.copyMakeBorder(m.astype(np.uint8), 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    eroded = cv2.erode(padded, np.ones((3, 3), np.uint8), iterations=d)[1 : h + 1, 1 : w + 1]
    return m & ~eroded.astype(bool)


def boundary_iou(gt: np.ndarray, pred: np.ndarray, dilation_ratio: float = 0.02) -> float:
    """Boundary IoU of two boolean masks [H,W]: IoU of their ``mask_to_boundary`` bands (each band
    lies inside its own mask, i.e. G_d ∩ G and P_d ∩ P). 1.0 when both bands are empty."""
    gt, pred = np.asarray(gt, bool), np.asarray(pred, bool)
    if gt.shape != pred.shape:
        raise InputError(f"boundary_iou: masks differ in size: {list(gt.shape)} vs {list(pred.shape)}")
    gb = mask_to_boundary(gt, dilation_ratio)
    pb = mask_to_boundary(pred, dilation_ratio)
    union = np.count_nonzero(gb | pb)
    return 1.0 if union == 0 else np.count_nonzero(gb & pb) / union


# ----------------------------------------------------------------------------- evaluation


def _fit_pred(name: str, pred: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    pred = np.asarray(pred)
    if pred.ndim != 2:
        raise InputError(f"prediction for view '{name}' must be a [H,W] id map, got shape {list(pred.shape)}")
    if pred.shape == shape:
        return pred
    (ph, pw), (h, w) = pred.shape, shape
    if abs(pw / ph - w / h) > ASPECT_TOLERANCE * (w / h):
        raise InputError(
            f"prediction for view '{name}' is {pw}x{ph} but its ground truth is {w}x{h} "
            "(different aspect ratio); render the prediction at the ground-truth size"
        )
    return cv2.resize(pred.astype(np.int32), (w, h), interpolation=cv2.INTER_NEAREST)


def _paired_maps(gt_maps: Mapping[str, np.ndarray], pred_maps: Mapping[str, np.ndarray]):
    """(sorted view names, gt maps, predictions fitted to the gt size); InputError when one is missing."""
    missing = [k for k in gt_maps if k not in pred_maps]
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise InputError(
            f"evaluate_segmentation: no prediction for {len(missing)} ground-truth view(s): {shown}; "
            "render predictions for every test view"
        )
    view_names = sorted(gt_maps)
    gts = [np.asarray(gt_maps[k]) for k in view_names]
    for k, g in zip(view_names, gts):
        if g.ndim != 2:
            raise InputError(f"ground truth for view '{k}' must be a [H,W] id map, got shape {list(g.shape)}")
    return view_names, gts, [_fit_pred(k, pred_maps[k], g.shape) for k, g in zip(view_names, gts)]


def evaluate_segmentation(
    gt_maps: Mapping[str, np.ndarray],
    pred_maps: Mapping[str, np.ndarray],
    ignore_gt=(0,),
    ignore_pred=(),
    names: Mapping[int, str] | None = None,
    dilation_ratio: float = 0.02,
) -> dict:
    """Score predicted id maps against ground-truth instance maps, both {view name: [H,W] int}.

    Every gt view must have a prediction (resized with nearest neighbour when only the scale differs).
    Ids are matched with ``match_ids``; for each gt object (ids not in ``ignore_gt``) and each view where
    it is present, IoU and Boundary IoU of (gt == g) vs (pred == matched id) are computed (an unmatched
    object scores 0). Returns a JSON-serialisable dict:
    ``miou``, ``mbiou`` (means over objects of their per-view means), ``num_objects``, ``num_views``,
    ``objects``: [{gt_id, name, pred_id (None if unmatched), iou, biou, iou_pooled, pixels, views}],
    ``views``: [{name, miou, mbiou, num_objects}], ``matches``: {gt id: pred id}.
    ``names`` (gt id -> label, e.g. LERF prompts) defaults to ``gt_maps.names`` when present.
    """
    if names is None:
        names = getattr(gt_maps, "names", None) or {}
    view_names, gts, preds = _paired_maps(gt_maps, pred_maps)
    matches, pooled, obj_ids = _match(gts, preds, ignore_gt, ignore_pred)

    per_obj = {g: {"iou": [], "biou": [], "pixels": 0} for g in obj_ids}
    views_out = []
    for k, g_map, p_map in zip(view_names, gts, preds):
        present = [g for g in np.unique(g_map).tolist() if g in per_obj]
        v_iou, v_biou = [], []
        for g in present:
            gm = g_map == g
            pm = p_map == matches[g] if g in matches else np.zeros_like(gm)
            a, b = iou(gm, pm), boundary_iou(gm, pm, dilation_ratio)
            rec = per_obj[g]
            rec["iou"].append(a)
            rec["biou"].append(b)
            rec["pixels"] += int(np.count_nonzero(gm))
            v_iou.append(a)
            v_biou.append(b)
        views_out.append(
            {
                "name": k,
                "miou": float(np.mean(v_iou)) if v_iou else None,
                "mbiou": float(np.mean(v_biou)) if v_biou else None,
                "num_objects": len(present),
            }
        )
    objects = []
    for g in obj_ids:
        rec = per_obj[g]
        objects.append(
            {
                "gt_id": int(g),
                "name": str(names.get(g, names.get(str(g), g))),
                "pred_id": matches.get(g),
                "iou": float(np.mean(rec["iou"])) if rec["iou"] else 0.0,
                "biou": float(np.mean(rec["biou"])) if rec["biou"] else 0.0,
                "iou_pooled": pooled.get(g, 0.0),
                "pixels": rec["pixels"],
                "views": len(rec["iou"]),
            }
        )
    return {
        "miou": float(np.mean([o["iou"] for o in objects])) if objects else None,
        "mbiou": float(np.mean([o["biou"] for o in objects])) if objects else None,
        "num_objects": len(objects),
        "num_views": len(view_names),
        "objects": objects,
        "views": views_out,
        "matches": {str(g): p for g, p in matches.items()},
    }


# ----------------------------------------------------------------------------- ground truth on disk


class GtMaps(dict):
    """{view name: [H,W] int32 instance ids} with ``names`` {id: label} (LERF prompts) and ``layout``."""

    def __init__(self, *args, names: dict[int, str] | None = None, layout: str = "", **kw):
        super().__init__(*args, **kw)
        self.names = dict(names or {})
        self.layout = layout


def _mask_files(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in MASK_EXTS and not p.name.startswith(".")
    )


def _binary(path: Path) -> np.ndarray:
    m = read_mask(path)
    top = int(m.max()) if m.size else 0
    if top <= 1:
        return m > 0
    return m > (128 if top <= 255 else 32768)  # 8-bit as the LERF-Mask evaluation (> 128)


def _load_lerf(root: Path) -> GtMaps:
    view_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    per_view = {d.name: _mask_files(d) for d in view_dirs}
    per_view = {k: v for k, v in per_view.items() if v}
    prompts = sorted({p.stem for files in per_view.values() for p in files})
    pid = {name: i + 1 for i, name in enumerate(prompts)}
    out = GtMaps(names={i: n for n, i in pid.items()}, layout="lerf")
    for view, files in per_view.items():
        masks = [(pid[f.stem], _binary(f), f) for f in files]
        shape = masks[0][1].shape
        for _, m, f in masks:
            if m.shape != shape:
                raise InputError(
                    f"{f}: size {m.shape[1]}x{m.shape[0]} differs from the other masks of "
                    f"{root / view} ({shape[1]}x{shape[0]}); all prompts of a view need one size"
                )
        lab = np.zeros(shape, np.int32)
        # larger masks first, so where prompts overlap the smaller object stays visible
        for i, m, _ in sorted(masks, key=lambda t: -int(np.count_nonzero(t[1]))):
            lab[m] = i
        out[view] = lab
    return out


def load_gt_dir(path: str | os.PathLike) -> GtMaps:
    """Ground-truth instance maps from a folder -> ``GtMaps`` {view name: [H,W] int32}.

    Layouts: (1) instance images ``path/<stem>.png`` (0 = background, k = object k; the built-in
    scene's ``gt_mask/``; any format ``gsgroup.data.masks.read_mask`` accepts); (2) LERF-Mask
    ``path/test_mask/<view>/<prompt>.png`` (or ``path`` being ``test_mask`` itself): binary masks
    (8-bit: > 128) per prompt and view, merged into one map per view with one id per prompt
    (ids 1..P by sorted prompt name, the same in every view; ``.names`` maps id -> prompt; where
    prompts overlap the smaller mask wins). Raises InputError naming the folder if neither is found.
    """
    root = Path(path)
    if not root.is_dir():
        raise InputError(f"{root}: ground-truth folder not found; pass a folder of instance PNGs or a LERF-Mask scene")
    files = _mask_files(root)
    if files:
        out = GtMaps(layout="instance")
        for f in files:
            if f.stem in out:
                raise InputError(f"{f}: two ground-truth files share the view name '{f.stem}' in {root}; keep one")
            out[f.stem] = read_mask(f).astype(np.int32, copy=False)
        return out
    for cand in (root / "test_mask", root):
        if cand.is_dir():
            subs = [d for d in cand.iterdir() if d.is_dir() and _mask_files(d)]
            if subs:
                return _load_lerf(cand)
    raise InputError(
        f"{root}: no ground-truth masks found; expected instance images <view>.png in it, "
        "or the LERF-Mask layout test_mask/<view>/<prompt>.png"
    )
