"""Scoring an association against ground truth: exact pairwise F1, and the oracle association."""

from __future__ import annotations

import numpy as np


def pairwise_f1(gt: dict | list, pred: dict | list, valid: dict | list | None = None) -> dict:
    """Pairwise precision / recall / F1 of an association against ground truth, exact.

    gt, pred: {view name: [H,W] int} (matched by name) or lists of [H,W] arrays in the same order.
    gt ids are instance ids where every value is a class (0, the background, included); pred ids are
    associated ids where 0 (no object / dropped) makes each such pixel a singleton, never "same" as
    another pixel. ``valid``: optional {view name: [H,W] bool} (or list) of the pixels to evaluate,
    e.g. ``input_mask != 0`` to score the association alone (pixels no input mask covers are then
    left out; pixels the association drops still count as singletons). Over all unordered pairs of
    distinct evaluated (view, pixel) samples pooled over the views (the exact value of what sampling
    random pairs estimates): precision = P(same gt | same pred), recall = P(same pred | same gt).
    Returns {"precision", "recall", "f1", "pixels" (evaluated), "pred_zero" (share of them with pred 0)}.
    """

    def as_list(x, names):
        if isinstance(x, dict):
            missing = [n for n in names if n not in x]
            if missing:
                raise ValueError(f"pairwise_f1: no entry for view {missing[0]}")
            return [x[n] for n in names]
        return list(x)

    names = sorted(gt) if isinstance(gt, dict) else None
    gt_l = as_list(gt, names) if names is not None else list(gt)
    pred_l = as_list(pred, names) if names is not None else list(pred)
    if len(gt_l) != len(pred_l):
        raise ValueError(f"pairwise_f1: {len(gt_l)} gt views but {len(pred_l)} predicted views")
    g = np.concatenate([np.asarray(a).ravel().astype(np.int64) for a in gt_l]) if gt_l else np.zeros(0, np.int64)
    q = np.concatenate([np.asarray(a).ravel().astype(np.int64) for a in pred_l]) if pred_l else np.zeros(0, np.int64)
    if g.shape != q.shape:
        raise ValueError(f"pairwise_f1: gt has {g.size} pixels but pred has {q.size}")
    if valid is not None:
        val_l = as_list(valid, names) if names is not None else list(valid)
        keep = np.concatenate([np.asarray(a).ravel().astype(bool) for a in val_l])
        if keep.shape != g.shape:
            raise ValueError(f"pairwise_f1: valid has {keep.size} pixels but gt has {g.size}")
        g, q = g[keep], q[keep]

    def pairs(x):
        x = x.astype(np.float64)
        return float((x * (x - 1) / 2).sum())

    _, gc = np.unique(g, return_counts=True)
    nz = q != 0
    _, qc = np.unique(q[nz], return_counts=True)
    span = int(q.max()) + 1 if q.size else 1
    _, jc = np.unique((g[nz] - (int(g.min()) if g.size else 0)) * span + q[nz], return_counts=True)
    same_gt, same_pred, tp = pairs(gc), pairs(qc), pairs(jc)
    precision = tp / same_pred if same_pred else 1.0
    recall = tp / same_gt if same_gt else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "pixels": int(g.size),
        "pred_zero": float((q == 0).mean()) if q.size else 0.0,
    }


def oracle_association(gt: dict, masks: dict) -> dict:
    """Upper bound for an association of ``masks`` (per-view ids): every input mask takes the gt id most
    of its pixels have (+1, so that gt background 0 stays an object); 0 stays 0. {name: [H,W] int64}."""
    out = {}
    for name, m in masks.items():
        if m is None:
            continue
        m = np.asarray(m).astype(np.int64)
        t = np.asarray(gt[name]).astype(np.int64)
        res = np.zeros(m.shape, np.int64)
        for k in np.unique(m):
            if k == 0:
                continue
            sel = m == k
            res[sel] = np.bincount(t[sel]).argmax() + 1
        out[name] = res
    return out
