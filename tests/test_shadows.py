"""The light estimate and cast shadows (edit/shadows.py) against the built-in scene's ground truth: Gaussians
made from the generator's exact depth (one per pixel of a few views, as tests/test_edit.py builds its runs),
the generator's own renders (with its ray-cast shadows) as the observed views; the light direction is
checked against scene.json's ``light.direction_to_light`` and the cast shadows against
``synthetic_raycast.shadow_blockers``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from gsgroup.data.synthetic import make_cameras, render_view
from gsgroup.data.synthetic_raycast import shadow_blockers
from gsgroup.data.synthetic_scene import scene_spec
from gsgroup.edit.shadows import Observation, cast_shadow, estimate_light, fit_plane, hemisphere, iou, shaded_fill
from gsgroup.model import Gaussians
from gsgroup.model.sh import rgb_to_sh

W, H, NVIEWS = 100, 75, 10


def backproject(depth, K, V):
    """World points [M,3] of the pixels with depth > 0, and those pixels (rows, cols)."""
    v, u = np.nonzero(depth > 0)
    z = depth[v, u].astype(np.float64)
    cam = np.stack([(u + 0.5 - K[0, 2]) / K[0, 0] * z, (v + 0.5 - K[1, 2]) / K[1, 1] * z, z], 1)
    return (cam - V[:3, 3]) @ V[:3, :3], (v, u)


class Cam:
    def __init__(self, K, V):
        self.K, self.viewmat, self.width, self.height = K, V, W, H


@pytest.fixture(scope="module")
def scene():
    spec = scene_spec(0)
    cams = make_cameras(spec, NVIEWS, W, H)
    pts, cols, labs, sizes, obs = [], [], [], [], []
    for K, V in cams:
        r = render_view(spec, K, V, W, H, supersample=1)
        p, pix = backproject(r["depth"], K, V)
        pts.append(p)
        cols.append(r["rgb"][pix])
        labs.append(r["mask"][pix])
        sizes.append(r["depth"][pix] / K[0, 0])
        obs.append(Observation(r["rgb"], (r["depth"] > 0).astype(np.float32), r["depth"], K, V))
    pts, cols, labs, sizes = map(np.concatenate, (pts, cols, labs, sizes))
    n = len(pts)
    g = Gaussians(
        means=torch.from_numpy(pts).float(),
        quats=torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1),
        scales=torch.log(torch.from_numpy(0.35 * sizes).float())[:, None].repeat(1, 3),
        opacities=torch.full((n,), 3.0),
        sh0=rgb_to_sh(torch.from_numpy(cols).float())[:, None],
        shN=torch.zeros(n, 0, 3),
        ids=torch.zeros(n, 0),
    )
    truth = np.asarray(spec.to_json()["light"]["direction_to_light"], np.float64)
    return {"spec": spec, "cams": cams, "g": g, "labels": labs, "obs": obs, "truth": truth / np.linalg.norm(truth)}


def test_fit_plane_recovers_a_noisy_plane_with_outliers():
    rng = np.random.default_rng(1)
    n_true = np.array([0.1, -0.2, 1.0]) / np.linalg.norm([0.1, -0.2, 1.0])
    xy = rng.uniform(-3, 3, (2000, 2))
    z = (-0.5 - n_true[0] * xy[:, 0] - n_true[1] * xy[:, 1]) / n_true[2]
    pts = np.c_[xy, z] + rng.normal(0, 0.005, (2000, 3))
    pts = np.r_[pts, rng.uniform(-3, 3, (500, 3)) + [0, 0, 2]]  # objects above it
    n, d = fit_plane(pts, up=np.array([0, 0, 1.0]))
    assert np.degrees(np.arccos(n @ n_true)) < 0.5
    assert abs(d - 0.5) < 0.01


def test_hemisphere_covers_the_upper_half_evenly():
    d = hemisphere(np.array([0, 0, 1.0]), 10.0)
    assert np.allclose(np.linalg.norm(d, axis=1), 1) and (d[:, 2] > 0.25).all()
    probe = np.random.default_rng(0).normal(size=(500, 3))
    probe[:, 2] = np.abs(probe[:, 2])
    probe /= np.linalg.norm(probe, axis=1, keepdims=True)
    probe = probe[probe[:, 2] > np.sin(np.radians(15))]
    nearest = np.degrees(np.arccos(np.clip(probe @ d.T, -1, 1))).min(1)
    assert nearest.max() < 10.0


@pytest.fixture(scope="module")
def light(scene):
    return estimate_light(scene["g"], scene["labels"] == 0, scene["obs"][::2])


def test_estimated_light_is_the_scenes(scene, light):
    err = np.degrees(np.arccos(np.clip(light.direction @ scene["truth"], -1, 1)))
    assert err < 3.0
    assert light.confident and light.score > 0.7
    spec = scene["spec"]
    lit = spec.ambient + (1 - spec.ambient) * scene["truth"][2]
    assert np.allclose(light.ratio, spec.ambient / lit, atol=0.05)  # shadowed / lit floor, Lambertian


def test_cast_shadow_agrees_with_ray_casting(scene, light):
    """The estimated light's cast shadows (the removed sphere's, the other objects') on the floor pixels of
    views it was not estimated from, against ray casting towards the true light."""
    spec, g, labels = scene["spec"], scene["g"], scene["labels"]
    cams = [Cam(K, V) for K, V in scene["cams"][1::3]]
    mine = cast_shadow(g.select(torch.from_numpy(labels == 1)), light, cams)
    others = cast_shadow(g.select(torch.from_numpy(labels > 1)), light, cams)
    for cam, o, m, rest in zip(cams, scene["obs"][1::3], mine, others):
        floor = (render_view(spec, cam.K, cam.viewmat, W, H, supersample=1)["mask"] == 0) & (o.depth > 0)
        p, pix = backproject(np.where(floor, o.depth, 0), cam.K, cam.viewmat)
        bits = shadow_blockers(spec.objects, p, scene["truth"])
        by_one, by_rest = (bits & 1) > 0, (bits & ~np.uint16(1)) > 0
        assert by_one.sum() > 20 and by_rest.sum() > 20
        only, truth_only = m[pix] & ~rest[pix], by_one & ~by_rest
        assert np.mean(m[pix] == by_one) > 0.99 and np.mean(rest[pix] == by_rest) > 0.99
        assert iou(m[pix], by_one) > 0.7 and iou(rest[pix], by_rest) > 0.7 and iou(only, truth_only) > 0.7


def test_shaded_fill_keeps_a_neighbours_shadow_dark():
    """A never-seen hole across the edge of another object's shadow on a plain floor: filled on the lit
    image and shaded back, each pixel gets the analytic floor colour (lit, or lit x ratio in the
    shadow); a plain 2D fill mixes the two."""
    from gsgroup.edit.inpainting import opencv_inpaint
    from gsgroup.edit.shadows import Attribution, Light

    h, w = 60, 80
    yy, xx = np.mgrid[:h, :w]
    lit, ratio = np.array([0.7, 0.68, 0.6]), np.array([0.36, 0.36, 0.37])
    band = (xx > 30) & (xx < 55)  # the neighbour's shadow
    truth = np.where(band[..., None], lit * ratio, lit).astype(np.float32)
    hole = (xx - 45) ** 2 + (yy - 30) ** 2 < 14**2
    rgb = np.where(hole[..., None], 0.2, truth).astype(np.float32)  # the hole holds garbage
    light = Light(np.array([0, 0, 1.0]), np.array([0, 0, 1.0]), 0.0, 0.01, np.zeros(3), 1.0, ratio=ratio)
    att = Attribution(light, {"v": np.zeros_like(band)}, {"v": band})
    inpaint = lambda img, m: opencv_inpaint(img, m, 5)  # noqa: E731
    shaded = shaded_fill(inpaint, rgb, hole, att.shade("v", np.ones_like(band)))
    plain = inpaint(rgb, hole)
    inner = hole & ~(np.abs(xx - 30.5) < 3) & ~(np.abs(xx - 54.5) < 3)  # away from the shadow's edges
    assert np.abs(shaded - truth)[inner].max() < 0.03
    assert np.abs(plain - truth)[inner].max() > 0.1


def test_fill_keeps_the_neighbours_shadow(tmp_path):
    """The scene fill's 2D targets for removing the sphere (which touches the cylinder, whose shadow falls
    across the sphere's footprint) against the scene's truth without the sphere: with the estimated
    light's attribution no view is worse and they are closer on average than with the distance rule.
    A run made from the scene's exact depth (tests/test_edit.py's build_run, splats at 0.35 pixel)."""
    import math

    from gsgroup import edit
    from gsgroup.data.synthetic import make_scene
    from gsgroup.edit.api import trimmed
    from gsgroup.edit.fill import fill_views
    from gsgroup.edit.inpainting import InpaintOptions, dilate_mask, dilation_px, make_inpainter
    from gsgroup.edit.ops import remove
    from gsgroup.edit.quality import truth_images
    from gsgroup.edit.shadows import attribute
    from gsgroup.run import Run
    from test_edit import build_run

    scene = make_scene(tmp_path / "scene", seed=0, width=W, height=H, n_views=12, progress=False)
    run = Run.open(build_run(scene, tmp_path / "run", stride_views=1))
    g = run.gaussians.detach()
    g.scales += math.log(0.5)
    run.save_gaussians(g)
    run = Run.open(run.path)
    sel = edit.select(run, objects=[1])
    g0, seg0 = run.gaussians, run.require_segmentation()
    g1, seg1 = remove(trimmed(run, sel), seg0, sel.mask)
    views, px = run.views("train"), dilation_px(W, None)
    light, att = attribute(g0, seg0, g1, sel.ids, views, run.backdrop, px)
    truth_dir = np.asarray(json.loads((scene / "scene.json").read_text())["light"]["direction_to_light"])
    assert att is not None and np.degrees(np.arccos(light.direction @ truth_dir)) < 6
    psnr = {}
    for name, a in (("distance", None), ("light", att)):
        fills = fill_views(
            g0, seg0, g1, seg1, sel.ids, views, run.backdrop, make_inpainter(InpaintOptions()), px, True, attribution=a
        )
        for f in fills:
            truth = truth_images(scene, 1, f.view.name)[0]
            m = dilate_mask(f.hole, 4)
            psnr.setdefault(name, []).append(-10 * np.log10(np.mean((f.target[m] - truth[m]) ** 2)))
    old, new = np.array(psnr["distance"]), np.array(psnr["light"])
    assert (new >= old - 0.05).all() and new.mean() > old.mean() + 1.0
