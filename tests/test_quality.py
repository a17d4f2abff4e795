"""Removal/inpainting scores against a truth without the object (edit/quality.py), on hand-made images."""

from __future__ import annotations

import math

import numpy as np

from gsgroup.edit.quality import combine, view_scores


def _images():
    rng = np.random.default_rng(0)
    truth = rng.uniform(0.3, 0.7, (30, 40, 3)).astype(np.float32)
    before = truth.copy()
    foot = np.zeros((30, 40), bool)
    foot[10:20, 10:20] = True
    before[foot] = [0.9, 0.1, 0.1]  # the object
    return before, truth, foot


def test_scores_of_a_perfect_fill_and_of_no_edit():
    before, truth, foot = _images()
    perfect = combine([view_scores(before, truth, truth, foot, foot, 2)])
    assert perfect["residue_pct"] == 0 and perfect["hole_db"] >= 100
    assert math.isinf(perfect["outside_db_min"]) or perfect["outside_db_min"] >= 100
    none = combine([view_scores(before, before, truth, foot, foot, 2)])
    assert none["residue_pct"] == 100
    want = 10 * math.log10(1 / np.mean((before[foot] - truth[foot]) ** 2))
    assert abs(none["hole_db"] - want) < 1e-6


def test_residue_counts_pixels_nearer_the_object():
    before, truth, foot = _images()
    after = truth.copy()
    after[10:12, 10:20] = before[10:12, 10:20] * 0.9 + truth[10:12, 10:20] * 0.1  # 20 of 100 pixels still red
    s = combine([view_scores(before, after, truth, foot, foot, 2)])
    assert abs(s["residue_pct"] - 20.0) < 1e-9
