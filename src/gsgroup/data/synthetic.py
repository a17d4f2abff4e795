"""The built-in procedural test scene: a few textured objects on a floor, ray cast on the CPU.

``make_scene(out_dir)`` writes a complete dataset with exact ground truth:

- ``images/view_XXX.png``      RGB 8-bit, anti-aliased (supersample x supersample rays per pixel)
- ``sparse/0/{cameras,images,points3D}.bin``  COLMAP model (PINHOLE, world-to-camera poses,
  OpenCV camera axes x right / y down / z forward) and a noisy colored surface point cloud
- ``gt_mask/view_XXX.png``     uint8 instance ids (0 = floor or nothing, 1..n = objects), centre ray
- ``depth/view_XXX.npy``       float32 [H,W] camera z-depth of the centre ray (0 = nothing hit)
- ``without/<id>/view_XXX.png`` RGB with object ``id`` removed (no shading, no shadow), every view
- ``scene.json``               seed, sizes, light, objects (centre, bbox, color, touches), cameras

Pixel convention: pixel (col i, row j) covers [i, i+1] x [j, j+1]; its centre ray goes through
(i + 0.5, j + 0.5); the principal point is (W/2, H/2) — the COLMAP convention.
Shading is Lambertian with a directional light, ambient term and cast shadows. Rays that hit
nothing see the background: ``"black"`` (default), ``"white"`` (a plain bright studio) or ``"sky"``
(a gradient over the ray's elevation, infinitely far away, so consistent between views).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gsgroup.data.synthetic_raycast import FLOOR, cast, normal_local, rot_z, shadow_blockers
from gsgroup.data.synthetic_scene import SceneObject, SceneSpec, floor_albedo, object_albedo, scene_spec
from gsgroup.errors import InputError
from gsgroup.geometry import camera_center, intrinsics_matrix, look_at, rotmat_to_quat

__all__ = [
    "SceneObject",
    "SceneSpec",
    "scene_spec",
    "SCENE_OBJECTS",
    "render_view",
    "camera_rays",
    "make_cameras",
    "make_scene",
    "view_name",
]

BACKGROUNDS = ("black", "white", "sky", "dusk")
SCENE_OBJECTS = scene_spec(0).objects  # the objects for seed 0 (ids 1..6)
HFOV_DEG = 55.0
_SUBDIRS = ("images", "gt_mask", "depth", "without", "sparse")


# ----------------------------------------------------------------------------- cameras


def intrinsics(width: int, height: int, hfov_deg: float = HFOV_DEG) -> np.ndarray:
    """Pinhole K [3,3] with fx = fy from the horizontal field of view, principal point at the centre."""
    f = 0.5 * width / np.tan(np.radians(hfov_deg) / 2)
    return intrinsics_matrix(f, f, width / 2, height / 2)


def make_cameras(spec: SceneSpec, n_views: int, width: int, height: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``n_views`` cameras (K [3,3], viewmat [4,4]) on a ring around ``spec.target``: azimuth
    evenly spread (with jitter), elevation 20..50 deg and radius 4.7..5.9 quasi-randomly varied."""
    rng = np.random.default_rng([spec.seed, 1811])
    K = intrinsics(width, height)
    az0 = rng.uniform(0, 2 * np.pi)
    ph_e, ph_r = rng.uniform(0, 1, 2)
    cams = []
    for i in range(n_views):
        az = az0 + 2 * np.pi * i / n_views + rng.uniform(-0.3, 0.3) * np.pi / n_views
        el = np.radians(20 + 30 * ((ph_e + 0.6180339887 * i) % 1.0))
        rad = 4.7 + 1.2 * ((ph_r + 0.7548776662 * i) % 1.0)
        eye = np.asarray(spec.target) + rad * np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
        cams.append((K.copy(), look_at(eye, spec.target)))
    return cams


def camera_rays(K: np.ndarray, viewmat: np.ndarray, width: int, height: int, supersample: int = 1):
    """World rays for an image: origin [3] and directions [H*s*W*s, 3] (row-major over the
    supersampled grid), scaled so that the ray parameter t equals the camera z-depth."""
    s = int(supersample)
    K = np.asarray(K, np.float64)
    u = (np.arange(width * s) + 0.5) / s
    v = (np.arange(height * s) + 0.5) / s
    x = (u - K[0, 2]) / K[0, 0]
    y = (v - K[1, 2]) / K[1, 1]
    R = np.asarray(viewmat, np.float64)[:3, :3]
    d = x[None, :, None] * R[0] + y[:, None, None] * R[1] + R[2]  # R^T (x, y, 1)
    return camera_center(viewmat), d.reshape(-1, 3)


# ----------------------------------------------------------------------------- rendering


@dataclass
class _Samples:
    """Per-ray shading inputs: hit id [N] (-1 none, 0 floor, k object), t [N], albedo [N,3],
    n.l [N] (clamped >= 0), shadow blocker bitmask [N] (bit id-1)."""

    hit: np.ndarray
    t: np.ndarray
    albedo: np.ndarray
    ndl: np.ndarray
    block: np.ndarray

    def take(self, other: _Samples, sel: np.ndarray) -> _Samples:
        """Copy of self with rays ``sel`` replaced by ``other`` (whose length is sel.sum())."""
        out = _Samples(self.hit.copy(), self.t.copy(), self.albedo.copy(), self.ndl.copy(), self.block.copy())
        for name in ("hit", "t", "albedo", "ndl", "block"):
            getattr(out, name)[sel] = getattr(other, name)
        return out


def _trace(spec: SceneSpec, o: np.ndarray, d: np.ndarray, exclude=()) -> _Samples:
    """Cast rays (origin o [3] or [N,3], directions d [N,3]) and gather shading inputs."""
    objs = [ob for ob in spec.objects if ob.id not in exclude]
    o = np.broadcast_to(o, d.shape)
    t, hit, part = cast(objs, spec.floor_radius, o, d)
    n_rays = len(d)
    albedo = np.zeros((n_rays, 3))
    normal = np.zeros((n_rays, 3))
    sel = hit >= 0
    p = np.zeros((n_rays, 3))
    p[sel] = o[sel] + t[sel, None] * d[sel]
    fl = hit == FLOOR
    normal[fl] = (0.0, 0.0, 1.0)
    albedo[fl] = floor_albedo(spec, p[fl])
    for ob in objs:
        s = hit == ob.id
        if not s.any():
            continue
        pl = rot_z(p[s] - np.asarray(ob.centre), -ob.yaw)
        nl = normal_local(ob.shape, tuple(ob.size), pl, part[s])
        albedo[s] = object_albedo(ob, pl, nl)
        normal[s] = rot_z(nl, ob.yaw)
    L = np.asarray(spec.light_dir, np.float64)
    ndl = np.clip(normal @ L, 0.0, None)
    block = np.zeros(n_rays, np.uint16)
    need = sel & (ndl > 0)
    block[need] = shadow_blockers(objs, p[need] + 1e-4 * normal[need], L)
    return _Samples(hit, t, albedo, ndl, block)


def background_color(background: str, d: np.ndarray) -> np.ndarray:
    """Colors [N,3] seen along ray directions ``d`` [N,3] that hit nothing.

    "sky": a pale horizon that turns deep blue towards the zenith and blue-grey towards the nadir,
    with a faint glow towards one azimuth. "dusk" (added after the learned environment was fixed,
    to measure it on a background it was not developed on): orange at the horizon, violet above,
    dark slate below, and a small sharp-edged sun disc just below the horizon, finer than the
    environment's SH can hold. Both depend on the direction only."""
    n = len(d)
    if background == "black":
        return np.zeros((n, 3))
    if background == "white":
        return np.full((n, 3), 0.96)
    if background not in ("sky", "dusk"):
        raise InputError(f"unknown background {background!r}; use one of {', '.join(BACKGROUNDS)}")
    u = d / np.linalg.norm(d, axis=1, keepdims=True)
    el = u[:, 2:3]
    if background == "dusk":
        horizon, above, below = np.array([0.98, 0.62, 0.3]), np.array([0.35, 0.25, 0.55]), np.array([0.2, 0.22, 0.3])
        up = horizon + (above - horizon) * np.clip(el / 0.6, 0.0, 1.0) ** 0.7
        down = horizon + (below - horizon) * np.clip(-el / 0.3, 0.0, 1.0)
        sun_dir = np.array([-0.6, 0.78, -0.14]) / np.linalg.norm([-0.6, 0.78, -0.14])
        sun = (u @ sun_dir > np.cos(np.radians(6.0)))[:, None]
        return np.clip(np.where(sun, np.array([1.0, 0.95, 0.8]), np.where(el >= 0, up, down)), 0.0, 1.0)
    horizon, zenith, nadir = np.array([0.85, 0.9, 0.95]), np.array([0.25, 0.45, 0.85]), np.array([0.4, 0.5, 0.68])
    up = horizon + (zenith - horizon) * np.sqrt(np.clip(el, 0.0, 1.0))
    down = horizon + (nadir - horizon) * np.clip(-el / 0.8, 0.0, 1.0)
    glow = 0.08 * np.clip(u[:, 0:1] * 0.8 + u[:, 1:2] * 0.6, 0.0, 1.0) ** 2
    return np.clip(np.where(el >= 0, up, down) + glow, 0.0, 1.0)


def _shade(spec: SceneSpec, s: _Samples, d: np.ndarray, background: str, removed: int = 0) -> np.ndarray:
    """Colors [N,3] from samples of rays ``d`` [N,3]; ``removed`` = object id whose shadows are ignored (0 = none)."""
    keep = np.uint16(0xFFFF ^ (1 << (removed - 1))) if removed else np.uint16(0xFFFF)
    lit = (s.block & keep) == 0
    rgb = s.albedo * (spec.ambient + (1.0 - spec.ambient) * s.ndl * lit)[:, None]
    miss = s.hit < 0
    rgb[miss] = background_color(background, d[miss])
    return rgb


def _downsample(rgb: np.ndarray, width: int, height: int, s: int) -> np.ndarray:
    return rgb.reshape(height, s, width, s, 3).mean(axis=(1, 3)).astype(np.float32)


def _centre_pass(spec: SceneSpec, K, viewmat, width, height, exclude=()):
    o, d = camera_rays(K, viewmat, width, height, 1)
    objs = [ob for ob in spec.objects if ob.id not in exclude]
    t, hit, _ = cast(objs, spec.floor_radius, np.broadcast_to(o, d.shape), d)
    mask = np.where(hit > 0, hit, 0).astype(np.uint8).reshape(height, width)
    depth = np.where(hit >= 0, t, 0.0).astype(np.float32).reshape(height, width)
    return mask, depth


def render_view(
    spec: SceneSpec, K, viewmat, width: int, height: int, exclude=(), supersample: int = 2, background: str = "black"
) -> dict:
    """Render the ground truth for one camera (K [3,3], world-to-camera viewmat [4,4]).

    ``exclude``: object ids left out entirely (no shading, no shadows).
    Returns dict(rgb [H,W,3] float32 in [0,1] (supersampled), mask [H,W] uint8 instance ids of the
    centre ray (0 = floor or nothing), depth [H,W] float32 camera z-depth (0 = nothing hit))."""
    exclude = tuple(int(k) for k in exclude)
    o, d = camera_rays(K, viewmat, width, height, supersample)
    rgb = _downsample(_shade(spec, _trace(spec, o, d, exclude), d, background), width, height, supersample)
    mask, depth = _centre_pass(spec, K, viewmat, width, height, exclude)
    return {"rgb": rgb, "mask": mask, "depth": depth}


def _render_with_removals(spec: SceneSpec, K, viewmat, width, height, supersample, remove_ids, background):
    """Full render plus one RGB per removed object, re-casting only the rays that hit it.

    Equivalent to render_view(..., exclude=(k,)) for each k, but much cheaper."""
    o, d = camera_rays(K, viewmat, width, height, supersample)
    full = _trace(spec, o, d)
    rgb = _downsample(_shade(spec, full, d, background), width, height, supersample)
    without = {}
    for k in remove_ids:
        sel = full.hit == k
        s = full.take(_trace(spec, o, d[sel], exclude=(k,)), sel) if sel.any() else full
        without[k] = _downsample(_shade(spec, s, d, background, removed=k), width, height, supersample)
    mask, depth = _centre_pass(spec, K, viewmat, width, height)
    return rgb, mask, depth, without


# ----------------------------------------------------------------------------- dataset


def view_name(i: int, n_views: int) -> str:
    """Image stem of view ``i``: view_000 ... (zero-padded so sorted order = index order)."""
    return f"view_{i:0{max(3, len(str(n_views - 1)))}d}"


def _to_u8(rgb: np.ndarray) -> np.ndarray:
    return (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _prepare_out_dir(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder; pick another output folder")
    if out.is_dir() and any(out.iterdir()):
        if not (out / "scene.json").is_file():
            raise InputError(f"{out}: folder is not empty and is not a synthetic scene; pick an empty or new folder")
        for sub in _SUBDIRS:  # a previous synthetic scene: replace it
            if (out / sub).is_dir():
                shutil.rmtree(out / sub)
    out.mkdir(parents=True, exist_ok=True)


def _point_cloud(spec, cams, store, width, height, rng, n_points):
    """Back-project random pixels of the stored views (exact depth, 8-bit color), add noise."""
    from gsgroup.data.colmap import ColmapPoint

    lo = np.min([ob.bbox()[0] for ob in spec.objects], 0)
    hi = np.max([ob.bbox()[1] for ob in spec.objects], 0)
    sigma = 0.005 * float(np.linalg.norm(hi - lo))
    per_view = max(1, n_points // max(1, len(store)))
    xyz_all, rgb_all = [], []
    for i, (rgb8, mask, depth) in store.items():
        K, view = cams[i]
        flat_d = depth.reshape(-1)
        obj_px = np.flatnonzero(mask.reshape(-1) > 0)
        any_px = np.flatnonzero(flat_d > 0)
        picks = []
        for pool, n in ((obj_px, per_view // 2), (any_px, per_view - per_view // 2)):
            if len(pool):
                picks.append(rng.choice(pool, size=min(n, len(pool)), replace=False))
        if not picks:
            continue
        px = np.concatenate(picks)
        u, v = px % width + 0.5, px // width + 0.5
        z = flat_d[px].astype(np.float64)
        xc = np.stack([(u - K[0, 2]) / K[0, 0] * z, (v - K[1, 2]) / K[1, 1] * z, z], 1)
        R, t = view[:3, :3], view[:3, 3]
        xyz_all.append((xc - t) @ R)
        rgb_all.append(rgb8.reshape(-1, 3)[px])
    xyz = np.concatenate(xyz_all) if xyz_all else np.zeros((0, 3))
    rgb = np.concatenate(rgb_all) if rgb_all else np.zeros((0, 3), np.uint8)
    xyz = xyz + rng.normal(0.0, sigma, xyz.shape)
    return {
        j + 1: ColmapPoint(j + 1, xyz[j], rgb[j], 1.0, np.zeros(0, np.int64), np.zeros(0, np.int64))
        for j in range(len(xyz))
    }, sigma


def _write_view(out: Path, stem: str, rgb, mask, depth, without: dict) -> np.ndarray:
    """images/, gt_mask/, depth/ and without/<id>/ files of one view; returns the 8-bit image."""
    from gsgroup.fileio import atomic_path, write_image

    rgb8 = _to_u8(rgb)
    write_image(out / "images" / f"{stem}.png", rgb8)
    write_image(out / "gt_mask" / f"{stem}.png", mask)
    with atomic_path(out / "depth" / f"{stem}.npy") as tmp, open(tmp, "wb") as fh:
        np.save(fh, depth)
    for k, img in without.items():
        write_image(out / "without" / str(k) / f"{stem}.png", _to_u8(img))
    return rgb8


def make_scene(
    out_dir: str | os.PathLike,
    seed: int = 0,
    width: int = 200,
    height: int = 150,
    n_views: int = 40,
    supersample: int = 2,
    progress: bool = True,
    background: str = "black",
) -> Path:
    """Write the synthetic dataset (see module docstring) into ``out_dir`` and return its path.

    Deterministic for a given (seed, width, height, n_views, supersample). ``without/<id>`` is
    written for every view and every object. An existing synthetic scene in ``out_dir`` is replaced;
    any other non-empty folder is refused. ``background``: what rays that hit nothing see, one of
    BACKGROUNDS (the point cloud never has points there)."""
    from tqdm import tqdm

    from gsgroup.data.colmap import ColmapCamera, ColmapImage
    from gsgroup.data.colmap_write import write_model
    from gsgroup.fileio import write_json

    if width < 8 or height < 8:
        raise InputError(f"synthetic scene size {width}x{height} is too small; use at least 8x8 pixels")
    if background not in BACKGROUNDS:
        raise InputError(f"unknown background {background!r}; use one of {', '.join(BACKGROUNDS)}")
    if n_views < 1 or supersample < 1:
        raise InputError("synthetic scene needs n_views >= 1 and supersample >= 1")
    out = Path(out_dir)
    _prepare_out_dir(out)
    spec = scene_spec(seed)
    cams = make_cameras(spec, n_views, width, height)
    ids = [ob.id for ob in spec.objects]
    pc_views = set(range(0, n_views, max(1, n_views // 8)))
    store = {}
    images = {}
    for i in tqdm(range(n_views), desc="synthetic views", unit="view", disable=not progress):
        K, view = cams[i]
        stem = view_name(i, n_views)
        rgb, mask, depth, without = _render_with_removals(spec, K, view, width, height, supersample, ids, background)
        rgb8 = _write_view(out, stem, rgb, mask, depth, without)
        if i in pc_views:
            store[i] = (rgb8, mask, depth)
        images[i + 1] = ColmapImage(i + 1, rotmat_to_quat(view[:3, :3]), view[:3, 3].copy(), 1, f"{stem}.png")

    rng = np.random.default_rng([seed, 4242])
    points, sigma = _point_cloud(spec, cams, store, width, height, rng, 8000)
    K = cams[0][0]
    cameras = {1: ColmapCamera(1, "PINHOLE", width, height, np.array([K[0, 0], K[1, 1], K[0, 2], K[1, 2]]))}
    write_model(out / "sparse" / "0", cameras, images, points, binary=True)

    meta = spec.to_json()
    meta.update(
        background=background,
        generator="gsgroup.data.synthetic",
        width=width,
        height=height,
        n_views=n_views,
        supersample=supersample,
        pixel_convention="pixel (i, j) centre at (i + 0.5, j + 0.5); principal point (W/2, H/2)",
        camera={
            "model": "PINHOLE",
            "fx": float(K[0, 0]),
            "fy": float(K[1, 1]),
            "cx": float(K[0, 2]),
            "cy": float(K[1, 2]),
            "hfov_deg": HFOV_DEG,
        },
        views=[view_name(i, n_views) for i in range(n_views)],
        test_views=[view_name(i, n_views) for i in range(0, n_views, 8)],
        without={"views": "all", "objects": ids},
        mask="gt_mask: 0 = floor or nothing, k = object id (centre ray of each pixel)",
        depth="depth/*.npy: float32 [H,W] camera z-depth of the centre ray, 0 where nothing is hit",
        point_cloud={"n_points": len(points), "noise_sigma": sigma, "from_views": sorted(int(v) for v in pc_views)},
    )
    write_json(out / "scene.json", meta)
    return out
