"""Which object casts the darkness on the floor: a light direction estimated from the reconstruction.

The scene fill (``edit/fill.py``) repaints the shadow a removed object baked into the floor. Dark floor
near the object is not always its shadow: a neighbour's shadow may fall there too, and must stay. This
module tells them apart with one distant light, estimated from the reconstruction alone:

1. ``fit_plane``: the supporting surface's plane, robustly fitted to the floor Gaussians' means;
   *blockers* are the Gaussians standing higher above it than the floor's own spread;
2. ``shadow_map``: the blockers' alpha rendered by ``render.rasterize`` from a distant camera along a
   direction; a floor point is shadowed where its projection into that map has alpha over a cut (one
   of ``CUTS``, chosen with the direction: splats seen edge-on pile up alpha past an object's outline);
3. ``estimate_light``: in a few views (``Observation``: a render's rgb, alpha and depth), floor pixels
   (depth on the plane) whose luminance is under ``dark`` x the floor's lit reference are observed shadow;
   each candidate direction on the upper hemisphere (rings 15 degrees apart from 15 degrees elevation,
   then grids of 4 and 1 degree around the best ones) predicts a shadow; the score is the IoU of
   predicted and observed shadow; the best wins, and the estimate is *confident* when its IoU is at
   least 0.7 and no direction 20 degrees or more away comes within 0.1 of it;
4. ``cast_shadow``: per view, the floor pixels a given set of Gaussians shadows (rays through the pixels
   meet the plane; the points are looked up in that set's shadow map).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..render.rasterize import rasterize

LUMA = np.array([0.299, 0.587, 0.114])
USE_LIGHT = True  # False: the scene fill attributes shadows by distance alone, as before (for comparisons)
CUTS = (0.5, 0.7, 0.9, 0.97, 0.99)  # shadow-map alpha over which a floor point is in shadow: calibrated


@dataclass
class Observation:
    """One view of the scene: rgb [H,W,3], alpha [H,W], depth [H,W] (camera z) of a render, K [3,3], viewmat
    [4,4] world-to-camera (OpenCV axes)."""

    rgb: np.ndarray
    alpha: np.ndarray
    depth: np.ndarray
    K: np.ndarray
    viewmat: np.ndarray


@dataclass
class Light:
    """A distant light estimated from a reconstruction. direction [3] unit, towards the light; normal [3],
    offset: the floor plane normal . x + offset = 0 (normal towards the cameras); height: Gaussians higher
    above the plane block light; centre [3], radius: the region the shadow maps cover; score: IoU of the
    predicted and observed shadow; runner_up: the best IoU 20+ degrees away; ratio [3]: shadowed / lit
    floor colour per channel; cut: the shadow-map alpha over which a point is shadowed; confident:
    whether to trust it."""

    direction: np.ndarray
    normal: np.ndarray
    offset: float
    height: float
    centre: np.ndarray
    radius: float
    score: float = 0.0
    runner_up: float = 0.0
    ratio: np.ndarray = field(default_factory=lambda: np.ones(3))
    cut: float = 0.5
    confident: bool = False

    def info(self) -> dict:
        """The estimate as JSON-ready numbers (for edit.json)."""
        return {
            "direction": [round(float(x), 4) for x in self.direction],
            "iou": round(self.score, 3),
            "runner_up_iou": round(self.runner_up, 3),
            "shadow_ratio": [round(float(x), 3) for x in self.ratio],
            "alpha_cut": self.cut,
            "confident": bool(self.confident),
        }


def fit_plane(points: np.ndarray, up: np.ndarray, tol: float | None = None, seed: int = 0) -> tuple[np.ndarray, float]:
    """Plane (normal [3], offset) with normal . x + offset = 0 through most of ``points`` [M,3] (at least 3):
    the best of 200 seeded 3-point planes by the count within ``tol`` (default 1% of the points' spread),
    refined by least squares on its inliers twice; the normal points along ``up`` [3]."""
    pts = np.asarray(points, np.float64)
    if tol is None:
        tol = 0.01 * float(np.linalg.norm(np.percentile(pts, 95, 0) - np.percentile(pts, 5, 0)))
    rng = np.random.default_rng(seed)
    best, keep = -1, np.ones(len(pts), bool)
    for tri in rng.integers(0, len(pts), (200, 3)):
        n = np.cross(pts[tri[1]] - pts[tri[0]], pts[tri[2]] - pts[tri[0]])
        if np.linalg.norm(n) < 1e-12:
            continue
        n /= np.linalg.norm(n)
        near = np.abs((pts - pts[tri[0]]) @ n) <= tol
        if near.sum() > best:
            best, keep = int(near.sum()), near
    for _ in range(2):
        c = pts[keep].mean(0)
        n = np.linalg.svd(pts[keep] - c, full_matrices=False)[2][2]
        keep = np.abs((pts - c) @ n) <= tol
    n = n if n @ up >= 0 else -n
    return n, float(-n @ c)


def light_camera(direction: np.ndarray, centre: np.ndarray, radius: float, size: int):
    """A distant pinhole camera (viewmat [4,4], K [3,3], near) looking at ``centre`` [3] from along
    ``direction`` [3], 100 radii away, whose ``size`` x ``size`` image spans 2 ``radius`` (nearly
    orthographic: the light's rays are parallel to 1%)."""
    z = -np.asarray(direction, np.float64)
    z /= np.linalg.norm(z)
    helper = np.array([1.0, 0, 0]) if abs(z[0]) < 0.9 else np.array([0, 1.0, 0])
    x = np.cross(helper, z)
    x /= np.linalg.norm(x)
    R = np.stack([x, np.cross(z, x), z])
    dist = 100.0 * radius
    V = np.eye(4)
    V[:3, :3], V[:3, 3] = R, -R @ (centre - z * dist)
    f = size / 2 * dist / radius
    K = np.array([[f, 0, size / 2], [0, f, size / 2], [0, 0, 1.0]])
    return V, K, dist - 2 * radius


def project(points: np.ndarray, V: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Pixel coordinates [M,2] (x, y; pixel centres at +0.5) of world points [M,3] in camera (V, K)."""
    cam = points @ V[:3, :3].T + V[:3, 3]
    z = np.maximum(cam[:, 2], 1e-9)
    return np.stack([K[0, 0] * cam[:, 0] / z + K[0, 2], K[1, 1] * cam[:, 1] / z + K[1, 2]], 1)


def shadow_map(blockers, direction, centre, radius, size: int = 128):
    """Alpha [S,S] of ``blockers`` (means [N,3], unit quats [N,4], linear scales [N,3], opacities [N];
    float32, rendered on their device) seen from the distant light camera (``light_camera``), with it (V, K)."""
    V, K, near = light_camera(direction, centre, radius, size)
    if not len(blockers[0]):
        return np.zeros((size, size), np.float32), V, K
    dev = blockers[0].device
    with torch.no_grad():
        out = rasterize(
            *blockers,
            torch.ones(len(blockers[0]), 1, device=dev),
            torch.from_numpy(V).float().to(dev),
            torch.from_numpy(K).float().to(dev),
            size,
            size,
            near=near,
        )
    return out.alpha[..., 0].cpu().numpy(), V, K


def sample(image: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Bilinear samples [M] of image [S,S] at pixel coordinates xy [M,2] (0 outside)."""
    s = image.shape[0]
    p = np.clip(np.nan_to_num(xy - 0.5, nan=-2.0), -2.0, s + 1.0)
    x0, y0 = np.floor(p[:, 0]).astype(np.int64), np.floor(p[:, 1]).astype(np.int64)
    fx, fy = p[:, 0] - x0, p[:, 1] - y0
    pad = np.pad(image, 1)
    out = np.zeros(len(xy))
    for dx, dy, w in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        xi, yi = np.clip(x0 + dx + 1, 0, s + 1), np.clip(y0 + dy + 1, 0, s + 1)
        out += w * pad[yi, xi]
    return out


def shadowed(points: np.ndarray, blockers, direction, centre, radius, size: int = 256, cut: float = 0.5) -> np.ndarray:
    """[M] bool: floor points [M,3] whose light along ``direction`` the ``blockers`` (see ``shadow_map``) stop
    (shadow-map alpha over ``cut``)."""
    alpha, V, K = shadow_map(blockers, direction, centre, radius, size)
    return sample(alpha, project(points, V, K)) > cut


def plane_depth(K: np.ndarray, viewmat: np.ndarray, width: int, height: int, normal, offset) -> tuple:
    """Where each pixel's ray (through its centre) meets the plane normal . x + offset = 0: world points
    [H,W,3] and camera z [H,W] (0 where the ray runs parallel to or away from the plane)."""
    K, V = np.asarray(K, np.float64), np.asarray(viewmat, np.float64)
    u, v = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    d_cam = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1)
    R, t = V[:3, :3], V[:3, 3]
    origin = -R.T @ t
    d = d_cam @ R  # world directions, camera z = 1
    denom = d @ normal
    with np.errstate(divide="ignore", invalid="ignore"):
        z = -(normal @ origin + offset) / denom
    z = np.where(np.isfinite(z) & (z > 0), z, 0.0)
    return origin + d * z[..., None], z


def floor_pixels(obs: Observation, normal, offset, tol: float = 0.03) -> tuple[np.ndarray, np.ndarray]:
    """Pixels [H,W] bool of one view that show the floor plane (alpha > 0.9, rendered depth within ``tol``
    of the plane's), and the plane's world points [H,W,3]."""
    h, w = obs.depth.shape
    pts, z = plane_depth(obs.K, obs.viewmat, w, h, normal, offset)
    on = (z > 0) & (obs.alpha > 0.9) & (np.abs(obs.depth - z) <= tol * z)
    return on, pts


def blocker_tensors(g, light: Light, device="cpu"):
    """(means, quats, scales, opacities) of the Gaussians of ``g`` (on the CPU) that stand over ``light.height``
    above the floor plane: the ones that can cast a shadow on it; on ``device``."""
    means, quats, scales, opac = (t.detach() for t in g.activated())
    keep = torch.from_numpy(means.numpy().astype(np.float64) @ light.normal + light.offset > light.height)
    return tuple(t[keep].to(device) for t in (means, quats, scales, opac))


def hemisphere(normal: np.ndarray, step_deg: float = 10.0) -> np.ndarray:
    """Unit directions [D,3] on the hemisphere around ``normal``: rings of elevation 15, 25, ... degrees
    and the zenith, about ``step_deg`` apart along each ring."""
    e1 = np.cross(normal, [1.0, 0, 0] if abs(normal[0]) < 0.9 else [0, 1.0, 0])
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(normal, e1)
    out = [normal]
    for el in np.radians(np.arange(15.0, 90.0, step_deg)):
        n = max(1, int(round(360.0 / step_deg * np.cos(el))))
        az = np.arange(n) * 2 * np.pi / n
        out += list(np.cos(el) * (np.cos(az)[:, None] * e1 + np.sin(az)[:, None] * e2) + np.sin(el) * normal)
    return np.asarray(out)


def around(direction: np.ndarray, half_deg: float, step_deg: float) -> np.ndarray:
    """Unit directions [D,3] on a square grid of tangent offsets (``step_deg`` apart, up to ``half_deg``)
    around ``direction`` [3]."""
    e1 = np.cross(direction, [1.0, 0, 0] if abs(direction[0]) < 0.9 else [0, 1.0, 0])
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(direction, e1)
    k = np.tan(np.radians(np.arange(-half_deg, half_deg + 1e-9, step_deg)))
    a, b = np.meshgrid(k, k)
    d = direction + a.reshape(-1, 1) * e1 + b.reshape(-1, 1) * e2
    return d / np.linalg.norm(d, axis=1, keepdims=True)


def observed_shadow(obs: list[Observation], normal, offset, dark: float = 0.6, stride: int = 2):
    """Floor points of the views (every ``stride``-th pixel on the plane): world points [M,3], colours
    [M,3] and whether each is observed shadow [M] bool (luminance under ``dark`` x the view's lit
    reference, the 75th percentile of its floor pixels' luminance)."""
    pts, cols, dark_pts = [], [], []
    for o in obs:
        on, p = floor_pixels(o, normal, offset)
        if on.sum() < 20:
            continue
        lum = o.rgb @ LUMA
        ref = float(np.percentile(lum[on], 75))
        grid = np.zeros_like(on)
        grid[::stride, ::stride] = True
        sel = on & grid
        pts.append(p[sel])
        cols.append(o.rgb[sel])
        dark_pts.append(lum[sel] < dark * ref)
    if not pts:
        return np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0, bool)
    return np.concatenate(pts), np.concatenate(cols), np.concatenate(dark_pts)


def floor_light(g, floor: np.ndarray, obs: list[Observation]) -> Light:
    """The floor plane fitted to the means of ``floor`` [N] bool Gaussians (normal towards the cameras of
    ``obs``), with the height over which Gaussians block light: 3 robust standard deviations of the
    opaque floor Gaussians' heights (the direction is still a placeholder: the normal)."""
    means = g.means.detach().numpy().astype(np.float64)
    fm = means[floor]
    if len(fm) > 20000:
        fm = fm[np.random.default_rng(0).choice(len(fm), 20000, replace=False)]
    cams = np.array(
        [-np.asarray(o.viewmat, np.float64)[:3, :3].T @ np.asarray(o.viewmat, np.float64)[:3, 3] for o in obs]
    )
    normal, offset = fit_plane(fm, cams.mean(0) - fm.mean(0))
    opaque = (torch.sigmoid(g.opacities.detach()).numpy() > 0.5) & floor
    h = means[opaque] @ normal + offset if opaque.sum() >= 10 else fm @ normal + offset
    spread = 1.4826 * float(np.median(np.abs(h - np.median(h))))
    extent = float(np.linalg.norm(np.percentile(fm, 95, 0) - np.percentile(fm, 5, 0)))
    height = max(float(np.median(h)) + 3 * spread, 0.005 * extent)
    return Light(normal.copy(), normal, offset, height, fm.mean(0), extent)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two bool arrays (0 when both are empty)."""
    return float((a & b).sum()) / max(int((a | b).sum()), 1)


def estimate_light(
    g, floor: np.ndarray, obs: list[Observation], dark: float = 0.6, size: int = 256, min_iou: float = 0.7,
    margin: float = 0.1, step_deg: float = 15.0, device="cpu",
) -> Light | None:  # fmt: skip
    """The light direction that best explains the floor's darkness in ``obs`` (module docstring, step 3).
    g: the Gaussians; floor [N] bool: those of the supporting surface (the plane's; the others above it
    are the blockers). Returns a Light (confident when its IoU >= ``min_iou`` and every direction 20+
    degrees away scores under IoU - ``margin``), or None without enough floor or shadow (maps on ``device``)."""
    light = floor_light(g, floor, obs)
    P, C, D = observed_shadow(obs, light.normal, light.offset, dark)
    if len(P) < 100 or D.sum() < 20:
        return None
    light.centre = P.mean(0)
    light.radius = float(np.linalg.norm(P - light.centre, axis=1).max()) * 1.02
    blockers = blocker_tensors(g, light, device)
    dirs, scores = [], []

    def score(cands):
        for d in cands:
            alpha, V, K = shadow_map(blockers, d, light.centre, light.radius, size)
            a = sample(alpha, project(P, V, K))
            dirs.append(d)
            scores.append(max((iou(a > c, D), c) for c in CUTS))

    score(hemisphere(light.normal, step_deg))
    first = np.argsort([s[0] for s in scores])[::-1]
    tops = []
    for i in first:
        if all(np.degrees(np.arccos(np.clip(dirs[i] @ t, -1, 1))) >= 10 for t in tops):
            tops.append(dirs[i])
        if len(tops) == 3:
            break
    for t in tops:
        score(around(t, 8.0, 4.0))
    score(around(dirs[int(np.argmax([s[0] for s in scores]))], 2.0, 1.0))
    ious = np.array([s[0] for s in scores])
    best = int(np.argmax(ious))
    d = dirs[best]
    far = np.degrees(np.arccos(np.clip(np.asarray(dirs) @ d, -1, 1))) >= 20
    light.direction, light.score, light.cut = d / np.linalg.norm(d), float(ious[best]), scores[best][1]
    light.runner_up = float(np.max(ious[far])) if far.any() else 0.0
    pred = shadowed(P, blockers, light.direction, light.centre, light.radius, size, light.cut)
    if (pred & D).sum() >= 10 and (~pred & ~D).sum() >= 10:
        light.ratio = np.median(C[pred & D], 0) / np.maximum(np.median(C[~pred & ~D], 0), 1e-3)
    light.confident = light.score >= min_iou and light.runner_up <= light.score - margin
    return light


def cast_shadow(g, light: Light, views: list, size: int = 256, device="cpu") -> list[np.ndarray]:
    """Per view of ``views`` (objects with K [3,3], viewmat [4,4], width, height), the pixels [H,W] bool
    whose ray meets the floor plane at a point that the Gaussians ``g`` (those of them above
    ``light.height``) shadow from ``light.direction``. One shadow map (rendered on ``device``) serves all views."""
    alpha, V, K = shadow_map(blocker_tensors(g, light, device), light.direction, light.centre, light.radius, size)
    out = []
    for v in views:
        pts, z = plane_depth(v.K, v.viewmat, v.width, v.height, light.normal, light.offset)
        dark = sample(alpha, project(pts.reshape(-1, 3), V, K)).reshape(z.shape) > light.cut
        out.append(dark & (z > 0))
    return out


@dataclass
class Attribution:
    """Per training view (by name), the floor pixels [H,W] bool shadowed by the removed Gaussians
    (``removed``) and by the remaining ones (``remaining``), under a confident ``light``."""

    light: Light
    removed: dict
    remaining: dict

    def shade(self, name: str, floor: np.ndarray) -> np.ndarray:
        """Per-pixel shading [H,W,3] of one view: ``light.ratio`` on the ``floor`` [H,W] bool pixels that
        the remaining objects shadow, 1 elsewhere (an image divided by it is lit everywhere)."""
        on = (self.remaining[name] & floor)[..., None]
        return np.where(on, np.clip(self.light.ratio, 0.05, 1.0), 1.0).astype(np.float32)


def shaded_fill(inpainter, rgb: np.ndarray, hole: np.ndarray, shade: np.ndarray) -> np.ndarray:
    """2D fill [H,W,3] of rgb [H,W,3] inside hole [H,W] bool made on the lit image rgb / shade (shade
    [H,W,3], ``Attribution.shade``) and shaded back: a filled pixel in another object's shadow is as dark
    as that shadow, whatever its sources."""
    return (inpainter(np.clip(rgb / shade, 0, 1), hole) * shade).astype(np.float32)


def attribute(g0, seg0, g1, ids, views: list, background, px: int, n_obs: int = 6, device="cpu"):
    """The fill's light (``estimate_light`` on ``n_obs`` evenly spread training views of the pre-edit
    Gaussians g0; the floor = Gaussians labelled with the surface ids around the removed ids' footprint)
    and, when it is confident, the Attribution of every view's floor shadow to the removed Gaussians
    (g0's labelled ``ids``) and the remaining ones (g1), rendered on ``device``. Returns (Light or None,
    Attribution or None)."""
    from ..on_device import backdrop_on, gaussians_on, segmentation_on
    from ..segment.idmaps import id_features, ids_from_render
    from ..train.trainer import render_view, view_tensors
    from .fill import surface_ids
    from .inpainting import dilate_mask

    if not USE_LIGHT:
        return None, None
    labels = seg0.label(g0)[0]
    removed = np.isin(labels, ids)
    obs, surface = [], [0]
    gd, segd, bgd = gaussians_on(g0, device), segmentation_on(seg0, device), backdrop_on(background, device)
    with torch.no_grad():
        for view in views[:: max(1, len(views) // n_obs)][:n_obs]:
            r = render_view(gd, view_tensors(view, device), gd.sh_degree, bgd, extra_features=id_features(gd, segd))
            idr = ids_from_render(r.image, r.alpha, segd)
            depth = r.depth[..., 0].cpu().numpy()
            foot = np.isin(idr.ids, ids)
            if foot.sum() >= 10:
                surface = np.union1d(surface, surface_ids(idr.ids, dilate_mask(foot, px), depth=depth))
            K, V = np.asarray(view.K, np.float64), np.asarray(view.viewmat, np.float64)
            obs.append(Observation(np.clip(idr.rgb, 0, 1), idr.alpha, depth, K, V))
    floor = np.isin(labels, surface) & ~removed
    if floor.sum() < 100:
        return None, None
    light = estimate_light(g0, floor, obs, device=device)
    if light is None or not light.confident:
        return light, None
    mine = cast_shadow(g0.select(torch.from_numpy(removed)), light, views, device=device)
    theirs = cast_shadow(g1, light, views, device=device)
    names = [v.name for v in views]
    return light, Attribution(light, dict(zip(names, mine)), dict(zip(names, theirs)))
