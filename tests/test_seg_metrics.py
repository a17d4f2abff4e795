"""Segmentation metrics (gsgroup.segment.metrics) on hand-made maps with known answers."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from gsgroup.errors import InputError
from gsgroup.segment.metrics import (
    boundary_iou,
    evaluate_segmentation,
    iou,
    load_gt_dir,
    mask_to_boundary,
    match_ids,
)


def square(h, w, r0, c0, s):
    m = np.zeros((h, w), bool)
    m[r0 : r0 + s, c0 : c0 + s] = True
    return m


# ----------------------------------------------------------------------------- IoU and matching


def test_iou_hand_values():
    a = square(10, 10, 0, 0, 4)  # 16 px
    b = square(10, 10, 2, 2, 4)  # 16 px, overlap 2x2 = 4
    assert iou(a, b) == pytest.approx(4 / 28)
    assert iou(a, a) == 1.0
    assert iou(np.zeros((3, 3)), np.zeros((3, 3))) == 1.0


def test_match_pooled_iou_and_hungarian():
    # view 1: gt object 1 = left half, 2 = right half; prediction 7 covers gt 1 and a bit of gt 2
    gt1 = np.zeros((4, 8), int)
    gt1[:, 4:] = 2
    gt1[:, :4] = 1
    pr1 = np.full((4, 8), 3)
    pr1[:, :5] = 7
    # view 2: only gt 1 (left quarter), predicted with id 3 -> pooled IoU decides
    gt2 = np.zeros((4, 8), int)
    gt2[:, :2] = 1
    pr2 = np.zeros((4, 8), int)
    pr2[:, :2] = 3
    m = match_ids([gt1, gt2], [pr1, pr2])
    # pooled IoUs: (1,7): I=16, U=(16+8)+(20)-16 = 28 -> 16/28; (1,3): I=8, U=24+(12+8)-8=36 -> 8/36
    # (2,7): I=4, U=16+20-4=32 -> 1/8; (2,3): I=12, U=16+20-12=24 -> 1/2
    # best total: 1->7, 2->3 (16/28 + 1/2) beats 1->3, 2->7 (8/36 + 1/8)
    assert m == {1: 7, 2: 3}
    # ignore_pred removes candidates: with 7 gone, 3 goes to gt 2 (1/2 > 8/36) and gt 1 only
    # overlaps pred 0 with IoU 0 -> unmatched; gt 0 is ignored by default
    assert match_ids([gt1, gt2], [pr1, pr2], ignore_pred=(7,)) == {2: 3}
    assert 0 not in m


def test_permuted_ids_match_back_exactly():
    rng = np.random.default_rng(0)
    gts = []
    for _ in range(3):
        g = np.zeros((40, 50), np.int32)
        for k in range(1, 7):
            r, c = rng.integers(0, 30), rng.integers(0, 40)
            g[r : r + 10, c : c + 10] = k
        gts.append(g)
    perm = {0: 11, 1: 5, 2: 99, 3: 0, 4: 2, 5: 40, 6: 3}
    preds = {f"v{i}": np.vectorize(perm.get)(g) for i, g in enumerate(gts)}
    gt = {f"v{i}": g for i, g in enumerate(gts)}
    present = sorted(set(np.unique(np.stack(gts)).tolist()) - {0})
    assert match_ids(list(gt.values()), list(preds.values())) == {k: perm[k] for k in present}
    res = evaluate_segmentation(gt, preds)
    assert res["miou"] == 1.0 and res["mbiou"] == 1.0
    assert res["num_objects"] == len(present) and res["num_views"] == 3
    json.dumps(res)  # JSON-serialisable


def test_evaluate_segmentation_values():
    gt = np.zeros((20, 20), np.int32)
    gt[0:10, 0:10] = 1
    gt[10:20, 10:20] = 2
    pred = np.zeros((20, 20), np.int32)
    pred[0:10, 0:5] = 4  # half of object 1
    pred[10:20, 10:20] = 8  # all of object 2
    res = evaluate_segmentation({"a": gt}, {"a": pred})
    objs = {o["gt_id"]: o for o in res["objects"]}
    assert objs[1]["pred_id"] == 4 and objs[1]["iou"] == pytest.approx(0.5)
    assert objs[2]["pred_id"] == 8 and objs[2]["iou"] == 1.0 and objs[2]["biou"] == 1.0
    assert objs[1]["pixels"] == 100 and objs[1]["views"] == 1
    assert objs[1]["biou"] == pytest.approx(boundary_iou(gt == 1, pred == 4))
    assert res["miou"] == pytest.approx(0.75)
    assert res["views"][0]["name"] == "a" and res["views"][0]["miou"] == pytest.approx(0.75)
    # an object nobody predicts: matched to the predicted background 0 (tiny IoU) by default,
    # unmatched with score 0 when pred id 0 is excluded; predictions at half resolution are upscaled
    gt3 = gt.copy()
    gt3[0:4, 16:20] = 3
    pred2 = pred.copy()
    pred2[0:10, 0:6] = 4  # even-aligned, so the half-resolution copy upscales back exactly
    half = pred2[::2, ::2]
    res = evaluate_segmentation({"a": gt3}, {"a": half})
    objs = {o["gt_id"]: o for o in res["objects"]}
    assert objs[3]["pred_id"] == 0 and objs[3]["iou"] == pytest.approx(16 / 240)
    res = evaluate_segmentation({"a": gt3}, {"a": half}, ignore_pred=(0,))
    objs = {o["gt_id"]: o for o in res["objects"]}
    assert objs[3]["pred_id"] is None and objs[3]["iou"] == 0.0 and objs[3]["biou"] == 0.0
    assert objs[2]["iou"] == 1.0 and objs[1]["iou"] == pytest.approx(0.6)
    with pytest.raises(InputError, match="no prediction"):
        evaluate_segmentation({"a": gt, "b": gt}, {"a": pred})
    with pytest.raises(InputError, match="aspect"):
        evaluate_segmentation({"a": gt}, {"a": pred[:, :7]})


# ----------------------------------------------------------------------------- boundary IoU


def rect_area(r):
    (r0, r1), (c0, c1) = r
    return max(0, r1 - r0) * max(0, c1 - c0)


def rect_and(a, b):
    return ((max(a[0][0], b[0][0]), min(a[0][1], b[0][1])), (max(a[1][0], b[1][0]), min(a[1][1], b[1][1])))


def ring_iou(outer_a, outer_b, d):
    """Analytic IoU of two square rings (outer rectangle minus the rectangle shrunk by d)."""

    def inner(r):
        return ((r[0][0] + d, r[0][1] - d), (r[1][0] + d, r[1][1] - d))

    ia, ib = inner(outer_a), inner(outer_b)
    inter = (
        rect_area(rect_and(outer_a, outer_b))
        - rect_area(rect_and(outer_a, ib))
        - rect_area(rect_and(ia, outer_b))
        + rect_area(rect_and(ia, ib))
    )
    ring_a = rect_area(outer_a) - rect_area(ia)
    ring_b = rect_area(outer_b) - rect_area(ib)
    return inter / (ring_a + ring_b - inter)


def test_boundary_iou_identical_and_shifted_square():
    h = w = 100
    d = int(round(0.02 * np.hypot(h, w)))  # = 3
    assert d == 3
    a = square(h, w, 30, 30, 40)
    assert boundary_iou(a, a) == 1.0
    # band = square minus its erosion by a 7x7 square: a ring of width 3
    assert mask_to_boundary(a).sum() == 40 * 40 - 34 * 34
    for shift in (1, 2, 5, 8):
        b = square(h, w, 30, 30 + shift, 40)
        expect = ring_iou(((30, 70), (30, 70)), ((30, 70), (30 + shift, 70 + shift)), d)
        assert boundary_iou(a, b) == pytest.approx(expect, abs=1e-12)
    assert boundary_iou(a, square(h, w, 0, 0, 10)) == 0.0


def test_boundary_counts_the_image_border_and_ratio():
    full = np.ones((50, 80), bool)
    d = int(round(0.02 * np.hypot(50, 80)))
    assert mask_to_boundary(full).sum() == 50 * 80 - (50 - 2 * d) * (80 - 2 * d)
    # tiny images use d = 1
    small = np.ones((5, 5), bool)
    assert mask_to_boundary(small).sum() == 25 - 9
    # larger ratio -> thicker band
    a = square(100, 100, 20, 20, 50)
    assert mask_to_boundary(a, 0.05).sum() == 50 * 50 - (50 - 2 * 7) ** 2
    assert boundary_iou(np.zeros((9, 9)), np.zeros((9, 9))) == 1.0


# ----------------------------------------------------------------------------- loading


def test_load_instance_folder(tmp_path):
    a = np.zeros((6, 8), np.uint8)
    a[1:3, 1:3] = 2
    cv2.imwrite(str(tmp_path / "view_000.png"), a)
    cv2.imwrite(str(tmp_path / "view_001.png"), a * 3)
    maps = load_gt_dir(tmp_path)
    assert maps.layout == "instance" and sorted(maps) == ["view_000", "view_001"]
    assert np.array_equal(maps["view_000"], a) and np.array_equal(maps["view_001"], a * 3)


def test_load_lerf_layout(tmp_path):
    h, w = 12, 16
    root = tmp_path / "figurines"
    cup, bear, table = square(h, w, 2, 2, 3), square(h, w, 6, 8, 4), np.zeros((h, w), bool)
    table[5:, :] = True  # overlaps bear: the smaller mask (bear) wins
    for view, prompts in {"frame_001": {"cup": cup, "bear": bear, "table": table}, "frame_002": {"bear": bear}}.items():
        d = root / "test_mask" / view
        d.mkdir(parents=True)
        for name, m in prompts.items():
            cv2.imwrite(str(d / f"{name}.png"), m.astype(np.uint8) * 255)
    maps = load_gt_dir(root)
    assert maps.layout == "lerf"
    assert maps.names == {1: "bear", 2: "cup", 3: "table"}  # ids by sorted prompt name
    m1 = maps["frame_001"]
    assert np.array_equal(m1 == 1, bear) and np.array_equal(m1 == 2, cup)
    assert np.array_equal(m1 == 3, table & ~bear)
    assert np.array_equal(maps["frame_002"], bear.astype(np.int32))
    assert np.array_equal(load_gt_dir(root / "test_mask")["frame_002"], maps["frame_002"])
    # prompt-free scoring: prediction with other ids, names carried into the table
    pred = {"frame_001": np.where(m1 > 0, m1 + 10, 0), "frame_002": maps["frame_002"] * 11}
    res = evaluate_segmentation(maps, pred)
    assert res["miou"] == 1.0
    assert {o["name"] for o in res["objects"]} == {"bear", "cup", "table"}


def test_load_gt_dir_errors(tmp_path):
    with pytest.raises(InputError, match=str(tmp_path / "missing")):
        load_gt_dir(tmp_path / "missing")
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "notes.txt").write_text("x")
    with pytest.raises(InputError, match="test_mask"):
        load_gt_dir(tmp_path / "empty")
