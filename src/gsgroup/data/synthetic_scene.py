"""Description of the built-in synthetic scene: objects, floor, light, and their textures.

World frame: z up, floor at z = 0. The set of shapes is fixed; the seed moves the objects a little
(ring angle, radius, yaw) while keeping the two touching pairs in contact:
the small box rests on the big box, and the sphere touches the cylinder side.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class SceneObject:
    """One object. ``centre``: world xyz of its bounding-box centre; ``size``: shape parameters
    (see synthetic_raycast); ``yaw``: rotation about z (radians); colors are linear RGB in [0,1]."""

    id: int
    name: str
    shape: str
    centre: tuple
    size: tuple
    yaw: float
    color: tuple
    color2: tuple
    texture: str
    period: float

    def bbox(self) -> tuple[np.ndarray, np.ndarray]:
        """World axis-aligned bounding box (min [3], max [3])."""
        c, y = np.asarray(self.centre, np.float64), self.yaw
        cs, sn = abs(np.cos(y)), abs(np.sin(y))
        if self.shape == "sphere":
            half = np.array([self.size[0]] * 3)
        elif self.shape == "ellipsoid":
            a, b, cz = self.size
            half = np.array([np.hypot(a * cs, b * sn), np.hypot(a * sn, b * cs), cz])
        elif self.shape == "box":
            hx, hy, hz = self.size
            half = np.array([hx * cs + hy * sn, hx * sn + hy * cs, hz])
        else:  # cylinder, cone: vertical axis
            r, h = self.size
            half = np.array([r, r, h])
        return c - half, c + half


@dataclass(frozen=True)
class SceneSpec:
    """The whole scene. ``light_dir``: unit vector towards the (directional) light."""

    seed: int
    objects: tuple
    touching: tuple  # pairs of object ids in contact
    light_dir: tuple
    ambient: float
    floor_radius: float
    floor_color: tuple
    floor_color2: tuple
    target: tuple  # camera look-at point

    def object(self, oid: int) -> SceneObject:
        return next(o for o in self.objects if o.id == oid)

    def to_json(self) -> dict:
        """A JSON-able description (per object: id, name, shape, color, centre, bbox, touches)."""
        objs = []
        for o in self.objects:
            lo, hi = o.bbox()
            d = asdict(o)
            d.update(
                centre=[float(v) for v in o.centre],
                size=[float(v) for v in o.size],
                yaw=float(o.yaw),
                bbox_min=[float(v) for v in lo],
                bbox_max=[float(v) for v in hi],
                touches=sorted({b if a == o.id else a for a, b in self.touching if o.id in (a, b)}),
            )
            objs.append(d)
        return {
            "seed": self.seed,
            "up": [0.0, 0.0, 1.0],
            "light": {
                "type": "directional",
                "direction_to_light": list(self.light_dir),
                "ambient": self.ambient,
                "shading": "lambertian: albedo * (ambient + (1 - ambient) * max(0, n.l) * unshadowed)",
            },
            "floor": {
                "shape": "disc",
                "z": 0.0,
                "radius": self.floor_radius,
                "color": list(self.floor_color),
                "color2": list(self.floor_color2),
                "mask_id": 0,
            },
            "target": list(self.target),
            "objects": objs,
            "touching": [list(p) for p in self.touching],
        }


def _unit(v):
    v = np.asarray(v, np.float64)
    return v / np.linalg.norm(v)


# id: (name, shape, color, color2, texture, period)
_LOOKS = {
    1: ("sphere", "sphere", (0.85, 0.18, 0.12), (0.95, 0.65, 0.35), "bands", 0.32),
    2: ("box", "box", (0.18, 0.32, 0.80), (0.70, 0.78, 0.95), "checker", 0.42),
    3: ("cylinder", "cylinder", (0.15, 0.62, 0.25), (0.75, 0.90, 0.45), "stripes", 0.30),
    4: ("cone", "cone", (0.95, 0.72, 0.12), (0.80, 0.35, 0.10), "spiral", 0.35),
    5: ("ellipsoid", "ellipsoid", (0.58, 0.28, 0.74), (0.90, 0.70, 0.95), "noise", 0.6),
    6: ("small_box", "box", (0.10, 0.68, 0.72), (0.85, 0.95, 0.90), "diagonal", 0.30),
}


def scene_spec(seed: int = 0) -> SceneSpec:
    """The synthetic scene for ``seed``: 6 objects (ids 1..6) on a floor disc, placed on a ring."""
    rng = np.random.default_rng([seed, 7219])
    base = rng.uniform(0, 2 * np.pi)
    angles = base + np.arange(4) * (np.pi / 2) + rng.uniform(-0.15, 0.15, 4)
    radii = 1.35 + rng.uniform(-0.1, 0.1, 4)
    pos = np.stack([radii * np.cos(angles), radii * np.sin(angles)], 1)
    yaws = rng.uniform(0, np.pi, 6)

    # group A: big box with a small box resting on top (touching)
    hx, hy, hz = 0.42, 0.34, 0.30
    box_c = (pos[0, 0], pos[0, 1], hz)
    off = rng.uniform(-0.06, 0.06, 2)
    off = np.array(
        [np.cos(yaws[1]) * off[0] - np.sin(yaws[1]) * off[1], np.sin(yaws[1]) * off[0] + np.cos(yaws[1]) * off[1]]
    )
    s = (0.17, 0.17, 0.15)
    small_c = (pos[0, 0] + off[0], pos[0, 1] + off[1], 2 * hz + s[2])
    # group B: sphere touching the cylinder's side at the sphere's equator
    rs, rc, hc = 0.45, 0.30, 0.45
    u = np.array([np.cos(yaws[2] * 2), np.sin(yaws[2] * 2)])
    sph_xy = pos[1] - u * (rs + rc) / 2
    cyl_xy = pos[1] + u * (rs + rc) / 2

    placed = {  # id: (centre, size, yaw)
        1: ((sph_xy[0], sph_xy[1], rs), (rs,), 0.0),
        2: (box_c, (hx, hy, hz), float(yaws[1])),
        3: ((cyl_xy[0], cyl_xy[1], hc), (rc, hc), float(yaws[3])),
        4: ((pos[2, 0], pos[2, 1], 0.5), (0.42, 0.5), float(yaws[4])),
        5: ((pos[3, 0], pos[3, 1], 0.32), (0.58, 0.36, 0.32), float(yaws[5])),
        6: (small_c, s, float(yaws[0])),
    }
    objs = [SceneObject(k, name, shape, *placed[k], *look) for k, (name, shape, *look) in _LOOKS.items()]
    return SceneSpec(
        seed=int(seed),
        objects=tuple(objs),
        touching=((1, 3), (2, 6)),
        light_dir=tuple(
            float(v) for v in _unit([np.cos(0.6) * np.cos(0.95), np.sin(0.6) * np.cos(0.95), np.sin(0.95)])
        ),
        ambient=0.32,
        floor_radius=4.2,
        floor_color=(0.72, 0.69, 0.62),
        floor_color2=(0.55, 0.56, 0.60),
        target=(0.0, 0.0, 0.3),
    )


# ----------------------------------------------------------------------------- textures

_NOISE_K = np.array([[0.8, 0.5, 0.3], [-0.4, 0.9, 0.2], [0.3, -0.3, 0.9], [0.9, -0.2, -0.4]])
_NOISE_PHASE = np.array([0.3, 1.7, 4.1, 2.6])


def _soft(x, sharp=3.0):
    """Map a value in [-1,1] to [0,1] with a soft step (tanh)."""
    return 0.5 + 0.5 * np.tanh(sharp * x) / np.tanh(sharp)


def _tangent_uv(p, n):
    """Two in-face coordinates [N], [N] for box faces with local normal ``n`` [N,3]."""
    ax = np.argmax(np.abs(n), axis=1)
    u = np.where(ax == 0, p[:, 1], p[:, 0])
    v = np.where(ax == 2, p[:, 1], p[:, 2])
    return u, v


def texture_weight(obj: SceneObject, p: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Blend weight [N] in [0,1] between ``color`` and ``color2`` at local points ``p`` [N,3]
    with local normals ``n`` [N,3]. All patterns are smooth with period >= ``obj.period``."""
    P, tex = obj.period, obj.texture
    two_pi = 2 * np.pi
    if tex == "bands":
        return 0.5 + 0.5 * np.sin(two_pi * p[:, 2] / P)
    if tex == "checker":
        u, v = _tangent_uv(p, n)
        return _soft(np.sin(two_pi * u / P + 0.4) * np.sin(two_pi * v / P + 0.4), 2.0)
    if tex == "diagonal":
        u, v = _tangent_uv(p, n)
        return 0.5 + 0.5 * np.sin(two_pi * (u + v) / P)
    if tex in ("stripes", "spiral"):
        r = obj.size[0]
        theta = np.arctan2(p[:, 1], p[:, 0])
        m = max(1, int(round(two_pi * r / P)))
        if tex == "spiral":
            w = 0.5 + 0.5 * np.sin(two_pi * p[:, 2] / P + 2 * theta)
        else:
            w = _soft(np.sin(m * theta), 2.0)
        cap = np.abs(n[:, 2]) > 0.999
        rho = np.hypot(p[:, 0], p[:, 1])
        return np.where(cap, 0.5 + 0.5 * np.cos(two_pi * rho / P), w)
    if tex == "noise":
        s = np.sin(two_pi * (p @ _NOISE_K.T) / P + _NOISE_PHASE).sum(1)
        return np.clip(0.5 + s / 4.0, 0.0, 1.0)
    raise ValueError(f"unknown texture {tex!r}")


def object_albedo(obj: SceneObject, p: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Albedo [N,3] at local points ``p`` [N,3] with local normals ``n`` [N,3]."""
    w = texture_weight(obj, p, n)[:, None]
    return (1 - w) * np.asarray(obj.color) + w * np.asarray(obj.color2)


def floor_albedo(spec: SceneSpec, p: np.ndarray) -> np.ndarray:
    """Floor albedo [N,3] at world points ``p`` [N,3]: large soft-edged tiles plus a gentle wash."""
    x, y = p[:, 0], p[:, 1]
    tile = 0.9
    chk = _soft(np.sin(np.pi * x / tile) * np.sin(np.pi * y / tile), 4.0)
    wash = 0.5 + 0.25 * (np.sin(0.9 * x + 0.5) + np.sin(0.7 * y - 0.8 * x + 1.3))
    w = (0.35 * chk + 0.65 * wash)[:, None]
    return (1 - w) * np.asarray(spec.floor_color) + w * np.asarray(spec.floor_color2)
