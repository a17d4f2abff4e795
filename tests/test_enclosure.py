"""Enclosed parts (segment/enclosure.py): a highlight cut out of an object joins it; objects that touch,
and an object standing on the floor, stay apart. Checked against the construction of the masks."""

from __future__ import annotations

import numpy as np

from gsgroup.segment.enclosure import adjacency, enclosed_parts, merge_enclosed

FLOOR, BALL, SHINE, CAN, BOX = 1, 2, 3, 4, 5


def _views():
    """Two 80x120 views: floor everywhere, a ball with a highlight inside it, a can touching the ball,
    a box standing on the floor."""
    out = {}
    for shift in (0, 6):
        yy, xx = np.mgrid[0:80, 0:120]
        m = np.full((80, 120), FLOOR)
        ball = (xx - 40 - shift) ** 2 + (yy - 40) ** 2 < 18**2
        m[ball] = BALL
        m[(xx - 34 - shift) ** 2 + (yy - 34) ** 2 < 5**2] = SHINE
        m[(abs(xx - 66 - shift) < 8) & (abs(yy - 40) < 15)] = CAN  # touches the ball at x = 58
        m[(abs(xx - 100) < 8) & (abs(yy - 60) < 8)] = BOX
        m[:3] = 0  # no mask
        out[f"v{shift}"] = m
    return out


def _gaussians(rng):
    """Means per label: a floor slab, a ball (radius 0.5 at z 0.5), its highlight on the ball's surface,
    a can beside it, a box standing on the floor (pokes out of the floor's thin box)."""
    parts = []

    def add(label, pts):
        parts.append((np.full(len(pts), label), pts))

    add(FLOOR, np.c_[rng.uniform(-3, 3, (2000, 2)), rng.normal(0, 0.01, 2000)])
    d = rng.normal(size=(800, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    add(BALL, 0.5 * d + [0, 0, 0.5])
    add(SHINE, 0.5 * d[(d @ [0.3, -0.3, 0.9]) > 0.95] + [0, 0, 0.5])
    add(CAN, np.c_[rng.uniform(0.5, 0.9, (300, 2)), rng.uniform(0, 0.8, 300)])
    add(BOX, np.c_[rng.uniform(2.0, 2.4, (300, 2)), rng.uniform(0, 0.4, 300)])
    labels = np.concatenate([p[0] for p in parts])
    means = np.concatenate([p[1] for p in parts])
    return labels, means


def test_adjacency_counts_borders():
    m = np.array([[1, 1, 2], [1, 1, 2]])
    C = adjacency({"a": m}, 3)
    assert (C == C.T).all() and C[0].sum() == 0
    # shifts (1,0),(0,1),(1,1),(1,-1),(2,0),(0,2): pairs 1-2 across the column boundary
    assert C[1, 2] == 2 + 1 + 1 + 2  # (0,1) x2 rows, (1,1), (1,-1), (0,2) x2 rows


def test_highlight_joins_touching_objects_do_not():
    labels, means = _gaussians(np.random.default_rng(0))
    C = adjacency(_views())
    assert enclosed_parts(C, labels, means, [BALL]) == [BALL, SHINE]
    assert enclosed_parts(C, labels, means, [CAN]) == [CAN]
    assert enclosed_parts(C, labels, means, [FLOOR]) == [FLOOR]  # the box pokes out of the floor's box
    masks, owner, k, merged = merge_enclosed(_views(), labels, means)
    assert merged == {SHINE: BALL} and k == 4
    ball = masks["v0"][40, 34]
    assert masks["v0"][34, 34] == ball and (owner[labels == SHINE] == ball).all()
