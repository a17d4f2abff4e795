"""A second procedural scene with hard-edged printed textures, made to check methods that were tuned on
the built-in scene (``data.synthetic``): a checkerboard ball, a striped can, a printed box and a small
plain block resting on the box, on a floor of planks.

The built-in scene's textures are smooth (soft bands, soft checkers, noise); here every object carries
sharp, high-contrast patterns that a colour segmenter cuts into many parts (each checker square, each
stripe, each printed patch), so a merge rule that only works when parts are few and faint fails here.
The layout, colours, light and floor differ from the built-in scene too; the ball touches the can and
the block rests on the box, so "touching is not enclosed" is exercised as well.

``make_textured_scene(out_dir)`` writes the same dataset layout as ``synthetic.make_scene`` (images,
gt_mask, depth, ``without/<id>``: exact renders with one object removed, shadow included, COLMAP
model with a point cloud, scene.json), ray cast the same way (``synthetic_raycast``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from gsgroup.data.synthetic import (
    _centre_pass,
    _downsample,
    _point_cloud,
    _prepare_out_dir,
    _Samples,
    _shade,
    _write_view,
    camera_rays,
    make_cameras,
    view_name,
)
from gsgroup.data.synthetic_raycast import FLOOR, cast, normal_local, rot_z, shadow_blockers
from gsgroup.data.synthetic_scene import SceneObject, SceneSpec
from gsgroup.errors import InputError

# id: (name, shape, color, color2, texture, period)
_LOOKS = {
    1: ("checker_ball", "sphere", (0.86, 0.12, 0.10), (0.93, 0.92, 0.88), "ball_checker", 8.0),
    2: ("striped_can", "cylinder", (0.10, 0.22, 0.62), (0.95, 0.80, 0.15), "can_stripes", 0.27),
    3: ("printed_box", "box", (0.92, 0.88, 0.78), (0.12, 0.45, 0.30), "printed", 0.0),
    4: ("block", "box", (0.55, 0.30, 0.62), (0.55, 0.30, 0.62), "plain", 0.0),
}
INK = np.array([0.80, 0.20, 0.15])  # the printed box's second ink


def textured_spec(seed: int = 0) -> SceneSpec:
    """The textured scene for ``seed``: ball touching the can, block resting on the box, on a floor disc."""
    rng = np.random.default_rng([seed, 5151])
    a0 = rng.uniform(0, 2 * np.pi)
    rb, rc, hc = 0.42, 0.28, 0.40
    u = np.array([np.cos(a0), np.sin(a0)])
    pair = 1.2 * np.array([np.cos(a0 + 2.2), np.sin(a0 + 2.2)])
    ball_xy, can_xy = pair - u * (rb + rc) / 2, pair + u * (rb + rc) / 2
    box_xy = 1.25 * np.array([np.cos(a0 - 1.3), np.sin(a0 - 1.3)])
    hx, hy, hz = 0.45, 0.32, 0.30
    yaw_box = float(rng.uniform(0, np.pi))
    off = rng.uniform(-0.08, 0.08, 2)
    placed = {
        1: ((ball_xy[0], ball_xy[1], rb), (rb,), float(rng.uniform(0, np.pi))),
        2: ((can_xy[0], can_xy[1], hc), (rc, hc), float(rng.uniform(0, np.pi))),
        3: ((box_xy[0], box_xy[1], hz), (hx, hy, hz), yaw_box),
        4: ((box_xy[0] + off[0], box_xy[1] + off[1], 2 * hz + 0.12), (0.16, 0.13, 0.12), float(rng.uniform(0, np.pi))),
    }
    objs = tuple(SceneObject(k, name, shape, *placed[k], *look) for k, (name, shape, *look) in _LOOKS.items())
    light = np.array([np.cos(2.4) * np.cos(0.85), np.sin(2.4) * np.cos(0.85), np.sin(0.85)])
    return SceneSpec(
        seed=int(seed),
        objects=objs,
        touching=((1, 2), (3, 4)),
        light_dir=tuple(float(v) for v in light / np.linalg.norm(light)),
        ambient=0.28,
        floor_radius=4.2,
        floor_color=(0.62, 0.50, 0.38),
        floor_color2=(0.48, 0.37, 0.27),
        target=(0.0, 0.0, 0.3),
    )


def _hard(x: np.ndarray) -> np.ndarray:
    return (x > 0).astype(np.float64)


def texture_weight(obj: SceneObject, p: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Weight [N] of ``color2`` (hard 0/1 patterns; the supersampling anti-aliases the edges) at local
    points ``p`` [N,3] with local normals ``n`` [N,3]."""
    if obj.texture == "ball_checker":  # 8 x 6 squares in longitude x latitude
        lon = np.arctan2(p[:, 1], p[:, 0])
        lat = np.arcsin(np.clip(p[:, 2] / obj.size[0], -1, 1))
        return _hard(np.sin(obj.period / 2 * lon) * np.sin(6 * lat + 1e-3))
    if obj.texture == "can_stripes":  # horizontal rings; lids plain
        side = np.abs(n[:, 2]) < 0.999
        return np.where(side, _hard(np.sin(2 * np.pi * p[:, 2] / obj.period)), 1.0)
    if obj.texture == "printed":  # a label band and a logo disc on the long faces; ink 2 in printed()
        return np.zeros(len(p))
    return np.zeros(len(p))


def printed(obj: SceneObject, p: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Albedo [N,3] of the printed box: cream card, a green band round the sides with cream 'text' bars in
    it, a red disc logo on the long faces and a green frame on the lid."""
    hx, hy, hz = obj.size
    col = np.tile(np.asarray(obj.color), (len(p), 1))
    side = np.abs(n[:, 2]) < 0.5
    along = np.where(np.abs(n[:, 0]) > 0.5, p[:, 1], p[:, 0])  # horizontal coordinate in the face
    band = side & (np.abs(p[:, 2] + 0.35 * hz) < 0.22 * hz)
    text = band & (np.sin(2 * np.pi * along / 0.1) > 0.2) & (np.abs(p[:, 2] + 0.35 * hz) < 0.1 * hz)
    col[band & ~text] = obj.color2
    long_face = side & (np.abs(n[:, 1]) > 0.5)
    logo = long_face & ((p[:, 0] - 0.35 * hx) ** 2 + (p[:, 2] - 0.35 * hz) ** 2 < (0.3 * hz) ** 2)
    col[logo] = INK
    lid = n[:, 2] > 0.5
    frame = lid & ((np.abs(p[:, 0]) > 0.8 * hx) | (np.abs(p[:, 1]) > 0.75 * hy))
    col[frame] = obj.color2
    return col


def object_albedo(obj: SceneObject, p: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Albedo [N,3] at local points ``p`` [N,3] with local normals ``n`` [N,3]."""
    if obj.texture == "printed":
        return printed(obj, p, n)
    w = texture_weight(obj, p, n)[:, None]
    return (1 - w) * np.asarray(obj.color) + w * np.asarray(obj.color2)


def floor_albedo(spec: SceneSpec, p: np.ndarray) -> np.ndarray:
    """Planks 0.35 wide along x with dark seams, alternating two woods, a faint grain."""
    x, y = p[:, 0], p[:, 1]
    plank = np.floor(y / 0.35)
    w = (plank % 2)[:, None]
    col = (1 - w) * np.asarray(spec.floor_color) + w * np.asarray(spec.floor_color2)
    grain = 1 + 0.05 * np.sin(9 * x + 3 * plank)[:, None]
    seam = (np.abs(y / 0.35 - np.round(y / 0.35)) < 0.03)[:, None]
    return np.clip(np.where(seam, 0.25, col * grain), 0, 1)


def _trace(spec: SceneSpec, o: np.ndarray, d: np.ndarray, exclude=()) -> _Samples:
    """Cast rays (origin o [3], directions d [N,3]) and gather shading inputs (as ``synthetic._trace``)."""
    objs = [ob for ob in spec.objects if ob.id not in exclude]
    o = np.broadcast_to(o, d.shape)
    t, hit, part = cast(objs, spec.floor_radius, o, d)
    albedo, normal, p = np.zeros((len(d), 3)), np.zeros((len(d), 3)), np.zeros((len(d), 3))
    sel = hit >= 0
    p[sel] = o[sel] + t[sel, None] * d[sel]
    fl = hit == FLOOR
    normal[fl] = (0.0, 0.0, 1.0)
    albedo[fl] = floor_albedo(spec, p[fl])
    for ob in objs:
        s = hit == ob.id
        if s.any():
            pl = rot_z(p[s] - np.asarray(ob.centre), -ob.yaw)
            nl = normal_local(ob.shape, tuple(ob.size), pl, part[s])
            albedo[s] = object_albedo(ob, pl, nl)
            normal[s] = rot_z(nl, ob.yaw)
    L = np.asarray(spec.light_dir, np.float64)
    ndl = np.clip(normal @ L, 0.0, None)
    block = np.zeros(len(d), np.uint16)
    need = sel & (ndl > 0)
    block[need] = shadow_blockers(objs, p[need] + 1e-4 * normal[need], L)
    return _Samples(hit, t, albedo, ndl, block)


def render_textured(spec: SceneSpec, K, viewmat, width: int, height: int, supersample: int = 2):
    """(rgb [H,W,3], mask [H,W] uint8, depth [H,W], {id: rgb without that object}) of one camera."""
    o, d = camera_rays(K, viewmat, width, height, supersample)
    full = _trace(spec, o, d)
    rgb = _downsample(_shade(spec, full, d, "black"), width, height, supersample)
    without = {}
    for ob in spec.objects:
        sel = full.hit == ob.id
        s = full.take(_trace(spec, o, d[sel], exclude=(ob.id,)), sel) if sel.any() else full
        without[ob.id] = _downsample(_shade(spec, s, d, "black", removed=ob.id), width, height, supersample)
    mask, depth = _centre_pass(spec, K, viewmat, width, height)
    return rgb, mask, depth, without


def make_textured_scene(
    out_dir: str | os.PathLike, seed: int = 0, width: int = 200, height: int = 150, n_views: int = 40
) -> Path:
    """Write the textured scene (module docstring) into ``out_dir`` in ``synthetic.make_scene``'s layout
    (test views every 8th); returns its path. Deterministic for given arguments."""
    from gsgroup.data.colmap import ColmapCamera, ColmapImage
    from gsgroup.data.colmap_write import write_model
    from gsgroup.fileio import write_json
    from gsgroup.geometry import rotmat_to_quat

    if width < 8 or height < 8 or n_views < 1:
        raise InputError(f"textured scene {width}x{height}, {n_views} views: use at least 8x8 pixels and 1 view")
    out = Path(out_dir)
    _prepare_out_dir(out)
    spec = textured_spec(seed)
    cams = make_cameras(spec, n_views, width, height)
    pc_views = set(range(0, n_views, max(1, n_views // 8)))
    store, images = {}, {}
    for i, (K, view) in enumerate(cams):
        stem = view_name(i, n_views)
        rgb, mask, depth, without = render_textured(spec, K, view, width, height)
        rgb8 = _write_view(out, stem, rgb, mask, depth, without)
        if i in pc_views:
            store[i] = (rgb8, mask, depth)
        images[i + 1] = ColmapImage(i + 1, rotmat_to_quat(view[:3, :3]), view[:3, 3].copy(), 1, f"{stem}.png")
    points, sigma = _point_cloud(spec, cams, store, width, height, np.random.default_rng([seed, 4242]), 8000)
    K = cams[0][0]
    cameras = {1: ColmapCamera(1, "PINHOLE", width, height, np.array([K[0, 0], K[1, 1], K[0, 2], K[1, 2]]))}
    write_model(out / "sparse" / "0", cameras, images, points, binary=True)
    meta = spec.to_json()
    meta.update(
        generator="gsgroup.data.synthetic_textured",
        background="black",
        width=width,
        height=height,
        n_views=n_views,
        supersample=2,
        views=[view_name(i, n_views) for i in range(n_views)],
        test_views=[view_name(i, n_views) for i in range(0, n_views, 8)],
        without={"views": "all", "objects": [ob.id for ob in spec.objects]},
        point_cloud={"n_points": len(points), "noise_sigma": sigma, "from_views": sorted(pc_views)},
    )
    write_json(out / "scene.json", meta)
    return out
