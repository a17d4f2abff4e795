"""Vectorised analytic ray casting for the built-in synthetic scene.

Shapes live in a local frame: origin at the object's centre (its bounding-box centre), local z =
world z (up), rotated by ``yaw`` about z. Supported shapes and their ``size`` parameters:

- ``sphere``: (r,)
- ``ellipsoid``: (a, b, c) semi-axes along local x, y, z
- ``box``: (hx, hy, hz) half sizes
- ``cylinder``: (r, h) radius and half height (capped, vertical axis)
- ``cone``: (r, h) base radius and half height (base disc at z=-h, apex at z=+h)

The floor is the disc z = 0, |xy| <= floor_radius, seen from above only.

Every function works on N rays at once: origins ``o`` [N,3] and directions ``d`` [N,3] (float64,
any length); the returned ray parameter ``t`` is in units of ``d`` (inf = miss).
"""

from __future__ import annotations

import numpy as np

FLOOR = 0  # hit id of the floor; -1 = nothing, 1..n = objects


def rot_z(v: np.ndarray, angle: float) -> np.ndarray:
    """Rotate vectors ``v`` [N,3] by ``angle`` radians about the z axis."""
    c, s = np.cos(angle), np.sin(angle)
    out = np.empty_like(v)
    out[:, 0] = c * v[:, 0] - s * v[:, 1]
    out[:, 1] = s * v[:, 0] + c * v[:, 1]
    out[:, 2] = v[:, 2]
    return out


def _roots(a, b, c):
    """Both real roots (t0 <= t1) of a t^2 + b t + c = 0 per element; nan where none.

    Where |a| is tiny the equation is solved as linear (t0 = t1)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        disc = b * b - 4.0 * a * c
        sq = np.sqrt(np.where(disc >= 0, disc, np.nan))
        q = -0.5 * (b + np.copysign(sq, b))
        r0, r1 = q / a, c / q
        lin = np.abs(a) < 1e-12
        tl = -c / b
        t0 = np.where(lin, tl, np.minimum(r0, r1))
        t1 = np.where(lin, tl, np.maximum(r0, r1))
    return t0, t1


def _nearest(cands, tmin):
    """cands: list of (t [N], valid [N] bool, part int). Return (t [N], part [N] int8) of the nearest
    valid candidate with t > tmin (t = inf, part = -1 where none)."""
    ts = np.stack([np.where(v & (t > tmin), t, np.inf) for t, v, _ in cands])
    k = np.argmin(ts, axis=0)
    t = np.take_along_axis(ts, k[None], 0)[0]
    parts = np.array([p for _, _, p in cands], np.int8)[k]
    parts[~np.isfinite(t)] = -1
    return t, parts


def intersect_local(shape: str, size, o: np.ndarray, d: np.ndarray, tmin: float):
    """Intersect rays (local frame) with a shape; return (t [N], part [N] int8)."""
    ox, oy, oz = o[:, 0], o[:, 1], o[:, 2]
    dx, dy, dz = d[:, 0], d[:, 1], d[:, 2]
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        if shape in ("sphere", "ellipsoid"):
            rad = np.array(size * 3 if shape == "sphere" else size, np.float64)
            os_, ds = o / rad, d / rad
            a = np.einsum("ij,ij->i", ds, ds)
            b = 2.0 * np.einsum("ij,ij->i", os_, ds)
            c = np.einsum("ij,ij->i", os_, os_) - 1.0
            t0, t1 = _roots(a, b, c)
            ok = np.isfinite(t0)
            return _nearest([(t0, ok, 0), (t1, ok, 0)], tmin)
        if shape == "box":
            h = np.array(size, np.float64)
            inv = 1.0 / np.where(d == 0, 1e-30, d)
            ta, tb = (-h - o) * inv, (h - o) * inv
            tlo, thi = np.minimum(ta, tb), np.maximum(ta, tb)
            tnear, tfar = tlo.max(1), thi.min(1)
            ok = tnear <= tfar
            return _nearest([(tnear, ok, 0), (tfar, ok, 0)], tmin)
        if shape == "cylinder":
            r, h = size
            t0, t1 = _roots(dx * dx + dy * dy, 2.0 * (ox * dx + oy * dy), ox * ox + oy * oy - r * r)
            cands = [(t, np.abs(oz + t * dz) <= h, 0) for t in (t0, t1)]
            for zc, part in ((h, 1), (-h, 2)):
                t = (zc - oz) / dz
                x, y = ox + t * dx, oy + t * dy
                cands.append((t, x * x + y * y <= r * r, part))
            return _nearest(cands, tmin)
        if shape == "cone":
            r, h = size
            k2 = (r / (2.0 * h)) ** 2
            w = h - oz
            a = dx * dx + dy * dy - k2 * dz * dz
            b = 2.0 * (ox * dx + oy * dy + k2 * w * dz)
            c = ox * ox + oy * oy - k2 * w * w
            t0, t1 = _roots(a, b, c)
            cands = [(t, np.abs(oz + t * dz) <= h, 0) for t in (t0, t1)]
            t = (-h - oz) / dz
            x, y = ox + t * dx, oy + t * dy
            cands.append((t, x * x + y * y <= r * r, 2))
            return _nearest(cands, tmin)
    raise ValueError(f"unknown shape {shape!r}")


def normal_local(shape: str, size, p: np.ndarray, part: np.ndarray) -> np.ndarray:
    """Unit outward normals [N,3] at local surface points ``p`` [N,3] (``part`` from intersect_local)."""
    if shape in ("sphere", "ellipsoid"):
        rad = np.array(size * 3 if shape == "sphere" else size, np.float64)
        n = p / rad**2
    elif shape == "box":
        q = np.abs(p) / np.array(size, np.float64)
        ax = np.argmax(q, axis=1)
        n = np.zeros_like(p)
        n[np.arange(len(p)), ax] = np.sign(p[np.arange(len(p)), ax])
    elif shape in ("cylinder", "cone"):
        r, h = size
        n = np.zeros_like(p)
        n[:, 0], n[:, 1] = p[:, 0], p[:, 1]
        if shape == "cone":
            n[:, 2] = (r / (2.0 * h)) ** 2 * (h - p[:, 2])
        n[part == 1] = (0.0, 0.0, 1.0)
        n[part == 2] = (0.0, 0.0, -1.0)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return n / np.linalg.norm(n, axis=1, keepdims=True)


def bounding_radius(shape: str, size) -> float:
    """Radius of a sphere about the local origin that encloses the shape."""
    if shape == "sphere":
        return float(size[0])
    if shape == "ellipsoid":
        return float(max(size))
    if shape == "box":
        return float(np.linalg.norm(size))
    return float(np.hypot(size[0], size[1]))  # cylinder, cone


def intersect_object(obj, o: np.ndarray, d: np.ndarray, tmin: float):
    """Intersect world rays with a SceneObject; return (t [N], part [N] int8).

    Only rays that pass through the object's bounding sphere are tested exactly."""
    oc = o - np.asarray(obj.centre, np.float64)
    dd = np.einsum("ij,ij->i", d, d)
    b = np.einsum("ij,ij->i", oc, d)
    cc = np.einsum("ij,ij->i", oc, oc) - (1.001 * bounding_radius(obj.shape, obj.size)) ** 2
    cand = np.flatnonzero((b * b - dd * cc >= 0) & ((cc <= 0) | (b < 0)))
    t = np.full(len(d), np.inf)
    part = np.full(len(d), -1, np.int8)
    if len(cand):
        ol = rot_z(oc[cand], -obj.yaw)
        dl = rot_z(d[cand], -obj.yaw)
        t[cand], part[cand] = intersect_local(obj.shape, tuple(obj.size), ol, dl, tmin)
    return t, part


def intersect_floor(radius: float, o: np.ndarray, d: np.ndarray, tmin: float) -> np.ndarray:
    """Intersect rays with the floor disc z=0 (from above); return t [N] (inf = miss)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        t = -o[:, 2] / d[:, 2]
        x, y = o[:, 0] + t * d[:, 0], o[:, 1] + t * d[:, 1]
        ok = (o[:, 2] > 0) & (d[:, 2] < 0) & (x * x + y * y <= radius * radius) & (t > tmin)
    return np.where(ok, t, np.inf)


def cast(objects, floor_radius: float, o: np.ndarray, d: np.ndarray, tmin: float = 1e-6):
    """Nearest hit of rays against the floor and ``objects`` (list of SceneObject).

    Returns (t [N] float64, hit_id [N] int16: -1 none, 0 floor, k object id, part [N] int8)."""
    t = intersect_floor(floor_radius, o, d, tmin)
    hit = np.where(np.isfinite(t), FLOOR, -1).astype(np.int16)
    part = np.zeros(len(o), np.int8)
    for obj in objects:
        to, po = intersect_object(obj, o, d, tmin)
        closer = to < t
        t = np.where(closer, to, t)
        hit[closer] = obj.id
        part[closer] = po[closer]
    return t, hit, part


def shadow_blockers(objects, p: np.ndarray, light_dir: np.ndarray) -> np.ndarray:
    """Bitmask [N] uint16 of the objects hit by rays from points ``p`` [N,3] towards the light
    (bit ``id - 1`` set when object ``id`` blocks). The floor never blocks (light from above)."""
    d = np.broadcast_to(light_dir, p.shape)
    mask = np.zeros(len(p), np.uint16)
    for obj in objects:
        t, _ = intersect_object(obj, p, d, 1e-7)
        mask |= np.where(np.isfinite(t), np.uint16(1 << (obj.id - 1)), np.uint16(0))
    return mask
