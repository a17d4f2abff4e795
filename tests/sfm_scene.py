"""A small ray-cast scene for structure-from-motion tests: a room (floor and four walls) with a box
in it, every face covered by its own random multi-scale noise texture (non-repeating, so SIFT
matches are unambiguous), seen by cameras on an arc around the box. True poses are known."""

from __future__ import annotations

import cv2
import numpy as np

from gsgroup.geometry import look_at

WIDTH, HEIGHT, FOCAL = 640, 480, 560.0
TEXELS = 160  # texture pixels per world unit


def noise_texture(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """[h,w,3] float32 in [0,1]: equal-weight octaves of random noise (mostly grey) upsampled with cubic interpolation."""
    tex = np.zeros((h, w, 3), np.float32)
    for cells in (4, 8, 16, 32, 64, 128):
        cw, ch = max(2, cells * w // max(w, h)), max(2, cells * h // max(w, h))
        grey = rng.random((ch, cw, 1), np.float32)  # mostly brightness: SIFT sees grey levels
        octave = 0.75 * grey + 0.25 * rng.random((ch, cw, 3), np.float32)
        tex += cv2.resize(octave, (w, h), interpolation=cv2.INTER_CUBIC)
    tex -= tex.min((0, 1))
    tex /= tex.max((0, 1))
    return 0.08 + 0.84 * tex


def _faces(rng: np.random.Generator, room: float = 3.0, height: float = 2.5) -> list[tuple]:
    """(origin [3], u [3], v [3], texture, shade): points origin + a*u + b*v for a, b in [0, 1]."""
    r = room
    box = [(-0.5, -0.4, 0.0), (0.5, 0.4, 0.9)]
    (x0, y0, z0), (x1, y1, z1) = box
    quads = [
        ((-r, -r, 0), (2 * r, 0, 0), (0, 2 * r, 0), 1.0),  # floor
        ((-r, -r, 0), (2 * r, 0, 0), (0, 0, height), 0.8),  # walls
        ((-r, r, 0), (2 * r, 0, 0), (0, 0, height), 0.7),
        ((-r, -r, 0), (0, 2 * r, 0), (0, 0, height), 0.9),
        ((r, -r, 0), (0, 2 * r, 0), (0, 0, height), 0.75),
        ((x0, y0, z1), (x1 - x0, 0, 0), (0, y1 - y0, 0), 1.0),  # box top and sides
        ((x0, y0, z0), (x1 - x0, 0, 0), (0, 0, z1 - z0), 0.65),
        ((x0, y1, z0), (x1 - x0, 0, 0), (0, 0, z1 - z0), 0.85),
        ((x0, y0, z0), (0, y1 - y0, 0), (0, 0, z1 - z0), 0.7),
        ((x1, y0, z0), (0, y1 - y0, 0), (0, 0, z1 - z0), 0.95),
    ]
    faces = []
    for o, u, v, shade in quads:
        u, v = np.array(u, float), np.array(v, float)
        size = (max(8, int(np.linalg.norm(u) * TEXELS)), max(8, int(np.linalg.norm(v) * TEXELS)))
        faces.append((np.array(o, float), u, v, noise_texture(rng, *size), shade))
    return faces


def intrinsics() -> np.ndarray:
    """K [3,3] of every view (pixel centres at +0.5, as COLMAP)."""
    return np.array([[FOCAL, 0, WIDTH / 2], [0, FOCAL, HEIGHT / 2], [0, 0, 1.0]])


def cameras(n: int, arc_deg: float = 100.0, radius: float = 2.0, start_deg: float = 0.0) -> np.ndarray:
    """[n,4,4] world-to-camera matrices on an arc around the box, heights alternating, looking at it."""
    views = []
    for i, a in enumerate(np.radians(np.linspace(start_deg, start_deg + arc_deg, n))):
        eye = (radius * np.cos(a), radius * np.sin(a), 1.1 + 0.3 * (i % 2))
        views.append(look_at(eye, (0.0, 0.0, 0.45)))
    return np.stack(views)


def _sample(tex: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bilinear samples [N,3] of ``tex`` at texel coordinates x, y [N] (cv2.remap on a 1024-wide grid)."""
    n = len(x)
    rows = -(-n // 1024)
    maps = [np.zeros(rows * 1024, np.float32) for _ in range(2)]
    maps[0][:n], maps[1][:n] = x, y
    grid = cv2.remap(tex, maps[0].reshape(rows, 1024), maps[1].reshape(rows, 1024), cv2.INTER_LINEAR)
    return grid.reshape(-1, 3)[:n]


def render(faces, viewmat: np.ndarray) -> np.ndarray:
    """[H,W,3] uint8 RGB of the scene seen through ``viewmat`` with ``intrinsics()``."""
    K = intrinsics()
    jj, ii = np.meshgrid(np.arange(WIDTH) + 0.5, np.arange(HEIGHT) + 0.5)
    rays = np.stack([(jj - K[0, 2]) / K[0, 0], (ii - K[1, 2]) / K[1, 1], np.ones_like(jj)], -1).reshape(-1, 3)
    R, t = viewmat[:3, :3], viewmat[:3, 3]
    d = rays @ R  # world directions (R^T applied to each ray)
    o = -R.T @ t
    best = np.full(len(d), np.inf)
    which = np.full(len(d), -1)
    coords = np.zeros((len(d), 2))
    for k, (fo, u, v, _, _) in enumerate(faces):
        n = np.cross(u, v)
        denom = d @ n
        with np.errstate(divide="ignore", invalid="ignore"):
            tt = ((fo - o) @ n) / denom
        p = o + tt[:, None] * d - fo
        a, b = p @ u / (u @ u), p @ v / (v @ v)
        hit = (tt > 1e-6) & (tt < best) & (a >= 0) & (a <= 1) & (b >= 0) & (b <= 1)
        best[hit], which[hit] = tt[hit], k
        coords[hit] = np.stack([a[hit], b[hit]], -1)
    out = np.zeros((len(d), 3), np.float32)
    for k, (_, _, _, tex, shade) in enumerate(faces):
        sel = which == k
        if sel.any():
            out[sel] = _sample(tex, coords[sel, 0] * (tex.shape[1] - 1), coords[sel, 1] * (tex.shape[0] - 1)) * shade
    return (np.clip(out, 0, 1) * 255 + 0.5).astype(np.uint8).reshape(HEIGHT, WIDTH, 3)


def make_views(n: int, seed: int = 0, **arc) -> tuple[list[np.ndarray], np.ndarray]:
    """(n rendered RGB images [H,W,3] uint8, their world-to-camera matrices [n,4,4])."""
    faces = _faces(np.random.default_rng(seed))
    views = cameras(n, **arc)
    return [render(faces, v) for v in views], views


def write_views(folder, n: int, seed: int = 0, prefix: str = "view", **arc) -> dict[str, np.ndarray]:
    """Write ``n`` views as ``<prefix>_<i>.jpg`` into ``folder``; returns {file name: world-to-camera [4,4]}."""
    folder.mkdir(parents=True, exist_ok=True)
    images, views = make_views(n, seed, **arc)
    poses = {}
    for i, (img, v) in enumerate(zip(images, views)):
        name = f"{prefix}_{i:03d}.jpg"
        cv2.imwrite(str(folder / name), img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
        poses[name] = v
    return poses
