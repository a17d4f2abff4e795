"""The learned environment behind the Gaussians (train.environment) and the synthetic backgrounds."""

import numpy as np
import pytest
import torch

from gsgroup.data.scene import load_scene
from gsgroup.data.synthetic import (
    background_color,
    camera_rays,
    intrinsics,
    make_cameras,
    make_scene,
    scene_spec,
)
from gsgroup.geometry import look_at
from gsgroup.model import from_points
from gsgroup.train.config import TrainConfig
from gsgroup.train.densify import DensifyConfig
from gsgroup.train.environment import Environment, pixel_directions
from gsgroup.train.trainer import Trainer, render_view, view_tensors


def _view(width=40, height=30):
    K = intrinsics(width, height)
    V = look_at((3.0, -2.0, 1.5), (0.0, 0.0, 0.3))
    return K, V


def test_pixel_directions_match_the_ray_caster():
    K, V = _view()
    _, d = camera_rays(K, V, 40, 30)  # independent: the synthetic scene's ray generator
    d = d / np.linalg.norm(d, axis=1, keepdims=True)
    ours = pixel_directions(torch.tensor(V, dtype=torch.float32), torch.tensor(K, dtype=torch.float32), 40, 30)
    np.testing.assert_allclose(ours.reshape(-1, 3).numpy(), d, atol=1e-6)


def test_constant_environment_equals_the_rasterizer_background():
    """A constant environment composited per pixel must equal the kernels' own background blend,
    in the image and in every gradient (the env path goes through the rendered alpha)."""
    rng = np.random.default_rng(0)
    pts = rng.normal(0, 0.4, (60, 3)).astype(np.float32)
    g = from_points(pts, rng.uniform(0, 1, (60, 3)).astype(np.float32), 1, 4, seed=0)
    K, V = _view()
    view = type(
        "V",
        (),
        {"name": "v", "image": np.zeros((30, 40, 3), np.float32), "viewmat": V, "K": K, "width": 40, "height": 30},
    )()
    vt = view_tensors(view)
    colour = torch.tensor([0.3, 0.6, 0.9])
    target = torch.rand(30, 40, 3, generator=torch.Generator().manual_seed(1))

    def run(background):
        params = {k: v.clone().requires_grad_(True) for k, v in g.to_dict().items()}
        img = render_view(params, vt, 1, background=background).image
        ((img - target) ** 2).sum().backward()
        return img.detach(), {k: p.grad for k, p in params.items() if p.grad is not None}

    img_env, grads_env = run(Environment.constant(colour, degree=2))
    img_bg, grads_bg = run(colour)
    assert torch.allclose(img_env, img_bg, atol=1e-5)
    assert grads_env.keys() == grads_bg.keys() and "opacities" in grads_env
    for k in grads_bg:
        assert torch.allclose(grads_env[k], grads_bg[k], rtol=1e-4, atol=1e-5), k


def test_environment_colours_follow_directions_only():
    """Two cameras at different places see the same environment colour along the same direction."""
    env = Environment(torch.randn(9, 3, generator=torch.Generator().manual_seed(2)) * 0.3)
    d = torch.nn.functional.normalize(torch.randn(50, 3), dim=-1)
    K = torch.tensor(intrinsics(40, 30), dtype=torch.float32)
    a = env.view_image(torch.tensor(look_at((3, 0, 1), (0, 0, 0)), dtype=torch.float32), K, 40, 30)
    b = env.view_image(torch.tensor(look_at((6, 0, 2), (3, 0, 1)), dtype=torch.float32), K, 40, 30)  # same axes, moved
    assert torch.allclose(a, b, atol=1e-5)
    assert env.colors(d).shape == (50, 3)
    with pytest.raises(ValueError, match=r"\(d\+1\)\^2"):
        Environment(torch.zeros(5, 3))


def test_environment_save_load(tmp_path):
    env = Environment(torch.randn(16, 3))
    env.save(tmp_path / "env.pt")
    assert torch.equal(Environment.load(tmp_path / "env.pt").coeffs, env.coeffs)
    (tmp_path / "bad.pt").write_text("not a tensor")
    with pytest.raises(ValueError, match="bad.pt"):
        Environment.load(tmp_path / "bad.pt")


def test_sky_colours_analytic():
    d = np.array([[0.0, 0.0, 1.0], [0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])
    expect = [
        [0.25, 0.45, 0.85],
        [0.85, 0.9, 0.95],
        [0.4, 0.5, 0.68],
        [0.85 + 0.0512, 0.9 + 0.0512, 1.0],
    ]  # clipped at 1
    np.testing.assert_allclose(background_color("sky", d), expect, atol=1e-12)
    np.testing.assert_allclose(background_color("white", d), 0.96)
    with pytest.raises(ValueError, match="grey"):
        background_color("grey", d)


@pytest.mark.parametrize("background", ["white", "sky"])
def test_synthetic_background_pixels(tmp_path, background):
    """Pixels whose ray hits nothing show the background colour of their direction."""
    from PIL import Image

    root = make_scene(
        tmp_path / "s", width=48, height=36, n_views=2, supersample=1, background=background, progress=False
    )
    img = np.asarray(Image.open(root / "images" / "view_000.png"), np.float64) / 255
    miss = np.load(root / "depth" / "view_000.npy").reshape(-1) == 0
    K, V = make_cameras(scene_spec(0), 2, 48, 36)[0]
    _, d = camera_rays(K, V, 48, 36)
    assert miss.sum() > 20
    np.testing.assert_allclose(img.reshape(-1, 3)[miss], background_color(background, d[miss]), atol=0.6 / 255)


def test_environment_keeps_held_out_views_clean(tmp_path):
    """Under a sky, a fixed black background makes Gaussians paint the sky and veil held-out views;
    the learned environment does not (the issue's failure, small)."""
    make_scene(tmp_path / "sky", width=64, height=48, n_views=16, supersample=1, background="sky", progress=False)
    scene = load_scene(tmp_path / "sky", eval=True, cache_dir=tmp_path / "cache", progress=False)
    scores = {}
    for name, degree in (("env", 3), ("black", -1)):
        cfg = TrainConfig(iterations=400, env_sh_degree=degree, densify=DensifyConfig().scaled(400))
        t = Trainer(scene, cfg)
        t.train(progress=False)
        scores[name] = t.evaluate()["psnr"]
    assert scores["env"] > 25 and scores["env"] > scores["black"] + 2, scores


def test_grid_interpolation_is_close_to_per_pixel():
    """The environment is evaluated on a 4-pixel grid and interpolated: exact on the image's corner
    pixels, and within 1/255 of the per-pixel evaluation everywhere for a sky-like environment."""
    gen = torch.Generator().manual_seed(3)
    env = Environment(torch.randn(16, 3, generator=gen) * 0.1)
    K, V = (torch.tensor(a, dtype=torch.float32) for a in _view(200, 150))
    exact = env.colors(pixel_directions(V, K, 200, 150))
    img = env.view_image(V, K, 200, 150)
    assert img.shape == (150, 200, 3)
    for y, x in ((0, 0), (0, 199), (149, 0), (149, 199)):
        assert torch.allclose(img[y, x], exact[y, x], atol=1e-6)
    assert (img - exact).abs().max() < 1 / 255
