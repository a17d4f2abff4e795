"""Enclosed parts (segment/enclosure.py): a highlight cut out of an object joins it; objects that touch,
and an object standing on the floor, stay apart. Checked against the construction of the masks."""

from __future__ import annotations

import numpy as np

from gsgroup.segment.enclosure import adjacency, depth_steps, enclosed_parts, merge_enclosed

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


# ----------------------------------------------------------------------------- the depth-step guard


def test_depth_steps_counts():
    m = np.array([[1, 1, 1, 1, 2, 2, 2, 2]] * 4)
    # reach 2 px (2/8 of the width), pairs across the column boundary: offset (0,2) 4 rows x 2, (2,2) 2 x 2, (2,-2) 2 x 2 = 16
    flat = np.where(m == 1, 5.0, 5.2)  # a slope (4% < 10%)
    B, S = depth_steps({"a": m}, {"a": flat}, 3, reach=2 / 8)
    assert B[1, 2] == B[2, 1] == 16 and S.sum() == 0 and B[0].sum() == 0
    B, S = depth_steps({"a": m}, {"a": np.where(m == 1, 5.0, 4.0)}, 3, reach=2 / 8)  # a step (25%)
    assert S[1, 2] == 16
    hole = flat.copy()
    hole[0] = 0.0  # nothing rendered in row 0: its pairs do not count
    B, S = depth_steps({"a": m}, {"a": hole}, 3, reach=2 / 8)
    assert B[1, 2] == 16 - 2 - 2 - 2  # one pair per offset and boundary column from row 0


SKY, FLOOR_ID, BALL_ID, SHINE_ID, BOX_ID = 0, 1, 2, 3, 4
BALL_C, BALL_R = np.array([-0.8, 0.0, 0.5]), 0.5
BOX_LO, BOX_HI = np.array([0.5, -0.3, 0.0]), np.array([1.1, 0.3, 0.5])
SHINE_DIR = np.array([0.0, -0.8, 0.6])  # the highlight: sphere normals within ~20 degrees of this


def _ray_cast(azimuth: float, width: int = 120, height: int = 90):
    """Exact ids [H,W] and camera z [H,W] (0 = sky) of a floor (z = 0, radius 4), a ball with a highlight
    cap, and a box standing on the floor, seen by a pinhole camera 5 units away at ~31 degrees elevation."""
    eye = np.array([5 * np.sin(azimuth), -5 * np.cos(azimuth), 3.0])
    fwd = np.array([0.0, 0.0, 0.3]) - eye
    fwd /= np.linalg.norm(fwd)
    right = np.cross(fwd, [0, 0, 1.0])
    right /= np.linalg.norm(right)
    R = np.stack([right, np.cross(fwd, right), fwd])  # world -> camera (OpenCV: x right, y down, z forward)
    v, u = np.mgrid[0:height, 0:width] + 0.5
    d = np.stack([(u - width / 2) / 90.0, (v - height / 2) / 90.0, np.ones_like(u)], -1) @ R  # camera z = 1
    t = np.full((height, width), np.inf)
    ids = np.zeros((height, width), int)
    tf = np.where(d[..., 2] < 0, -eye[2] / np.minimum(d[..., 2], -1e-12), np.inf)  # floor
    hit = eye + tf[..., None] * d
    floor = np.isfinite(tf) & (np.hypot(hit[..., 0], hit[..., 1]) < 4)
    t[floor], ids[floor] = tf[floor], FLOOR_ID
    oc = eye - BALL_C  # ball: |eye + t d - c| = r
    a, b, c = (d * d).sum(-1), 2 * (d @ oc), oc @ oc - BALL_R**2
    disc = b * b - 4 * a * c
    tb = np.where(disc > 0, (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a), np.inf)
    ball = (tb > 0) & (tb < t)
    normal = (eye + tb[ball][:, None] * d[ball] - BALL_C) / BALL_R
    t[ball], ids[ball] = tb[ball], np.where(normal @ SHINE_DIR > 0.94, SHINE_ID, BALL_ID)
    with np.errstate(divide="ignore", invalid="ignore"):  # box: slabs
        t0, t1 = (BOX_LO - eye) / d, (BOX_HI - eye) / d
    tn, tx = np.minimum(t0, t1).max(-1), np.maximum(t0, t1).min(-1)
    box = (tn <= tx) & (tn > 0) & (tn < t)
    t[box], ids[box] = tn[box], BOX_ID
    return ids, np.where(np.isfinite(t), t, 0.0)  # t along d (camera z = 1) is the camera z


def _surface_gaussians(rng):
    """Means on the surfaces, labelled as a segmenter that glued another object's side into the floor
    would leave them: the floor's points include a 1 unit high wall (10%), which lifts the floor's box
    above the box's top, so the box test alone lets the box join the floor."""
    floor = np.c_[rng.uniform(-2.8, 2.8, (3000, 2)), np.zeros(3000)]
    wall = np.c_[np.full(330, -2.0), rng.uniform(-2, 2, 330), rng.uniform(0, 1, 330)]
    n = rng.normal(size=(2000, 3))
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    shine = n @ SHINE_DIR > 0.94
    box = rng.uniform(BOX_LO, BOX_HI, (600, 3))
    means = np.concatenate([floor, wall, BALL_C + BALL_R * n[~shine], BALL_C + BALL_R * n[shine], box])
    labels = np.repeat([FLOOR_ID, FLOOR_ID, BALL_ID, SHINE_ID, BOX_ID], [3000, 330, (~shine).sum(), shine.sum(), 600])
    return labels, means


def test_step_guard_keeps_the_highlight_and_refuses_an_object_in_front():
    casts = {f"v{k}": _ray_cast(a) for k, a in enumerate((-0.5, 0.0, 0.4))}
    masks = {k: ids for k, (ids, _) in casts.items()}
    depths = {k: z for k, (_, z) in casts.items()}
    labels, means = _surface_gaussians(np.random.default_rng(1))
    C = adjacency(masks)
    assert C[BOX_ID, FLOOR_ID] > 0.9 * C[BOX_ID, 1:].sum() and C[SHINE_ID, BALL_ID] == C[SHINE_ID, 1:].sum()
    assert BOX_ID in enclosed_parts(C, labels, means, [FLOOR_ID])  # the failure the guard is for
    B, S = steps = depth_steps(masks, depths, C.shape[0])
    assert S[SHINE_ID, BALL_ID] == 0 < B[SHINE_ID, BALL_ID]  # on the ball's surface: no step
    assert S[BOX_ID, FLOOR_ID] > 0.25 * B[BOX_ID, FLOOR_ID]  # its outline against the floor behind it
    assert enclosed_parts(C, labels, means, [FLOOR_ID], steps=steps) == [FLOOR_ID]
    assert enclosed_parts(C, labels, means, [BALL_ID], steps=steps) == [BALL_ID, SHINE_ID]
    for given in (depths, lambda: depths):
        out, owner, k, merged = merge_enclosed(masks, labels, means, depths=given)
        assert merged == {SHINE_ID: BALL_ID} and k == 3
    assert merge_enclosed(masks, labels, means)[3][BOX_ID] == FLOOR_ID  # without depths: no guard


def test_rendered_depths_is_the_camera_z():
    """Alpha-normalised expected depth of Gaussians at one depth is that depth wherever they render."""
    from types import SimpleNamespace

    import torch

    from gsgroup.segment.enclosure import rendered_depths

    n = 5
    means = torch.tensor([[x, 0.0, 0.0] for x in np.linspace(-0.4, 0.4, n)], dtype=torch.float32)
    quats = torch.tensor([[1.0, 0, 0, 0]] * n)
    scales = torch.full((n, 3), 0.1)
    viewmat = torch.eye(4)
    viewmat[2, 3] = 3.0  # world z = 0 is camera z = 3
    K = torch.tensor([[60.0, 0, 32], [0, 60.0, 24], [0, 0, 1]])
    view = SimpleNamespace(name="v", viewmat=viewmat.numpy(), K=K.numpy(), width=64, height=48)
    z = rendered_depths([view], (means, quats, scales, torch.full((n,), 0.9)))["v"]
    assert z.shape == (48, 64) and z[24, 32] > 0 and z[0, 0] == 0
    assert np.allclose(z[z > 0], 3.0, atol=1e-4)
