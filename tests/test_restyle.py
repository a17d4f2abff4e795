"""Restyling an object: the 2D editors (colour transfer checked against its analytic Lab statistics,
effects confined to the mask), the shared fitting loop (recovers known colours, refreshes its
targets), and the whole edit on the tiny ground-truth run of tests/test_edit.py: only the selected
Gaussians change, the renders move towards the 2D edits, nothing outside the footprint changes."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from gsgroup import edit
from gsgroup.data.synthetic import make_scene
from gsgroup.edit import stylize
from gsgroup.edit.fitting import fit_gaussians, merge_subset
from gsgroup.edit.inpainting import psnr_in
from gsgroup.edit.restyle import RestyleOptions, footprints, render_all, restyle
from gsgroup.errors import InputError
from gsgroup.run import Run
from test_edit import NVIEWS, H, W, build_run, cli


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("restyle")
    scene = make_scene(root / "scene", seed=0, width=W, height=H, n_views=NVIEWS, progress=False)
    run = build_run(scene, root / "run", stride_views=3)
    return {"root": root, "scene": scene, "run": run, "data": Run.open(run)}


def _image(seed=0, h=48, w=64):
    rng = np.random.default_rng(seed)
    base = cv2.resize(rng.random((6, 8, 3)).astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    return np.clip(base + 0.05 * rng.standard_normal((h, w, 3)).astype(np.float32), 0, 1)


def _disc(h=48, w=64):
    y, x = np.mgrid[0:h, 0:w]
    return (x - w / 2) ** 2 + (y - h / 2) ** 2 < (0.3 * h) ** 2


# ----------------------------------------------------------------------------- 2D editors


def test_color_transfer_matches_the_style_statistics():
    """Inside the mask the Lab mean/std become the style's (up to 8-bit-free float rounding and the
    gamut clip); outside nothing changes."""
    img, mask = _image(0), _disc()
    style_px = np.stack([np.full(500, 0.8), np.linspace(0.3, 0.6, 500), np.full(500, 0.2)], 1).astype(np.float32)
    style = stylize.lab_stats(style_px)
    out = stylize.color_transfer(img, mask, stylize.lab_stats(img[mask]), style)
    mean, std = stylize.lab_stats(out[mask])
    assert np.allclose(mean, style[0], atol=1.0) and np.allclose(std, style[1], atol=1.0)
    assert np.array_equal(out[~mask], img[~mask])
    # the map is affine per Lab channel: the transfer of a transferred image to the same style is itself
    again = stylize.color_transfer(out, mask, stylize.lab_stats(out[mask]), style)
    assert np.abs(again - out).max() < 0.02


@pytest.mark.parametrize("effect", stylize.EFFECTS)
def test_effects_change_only_the_mask(effect):
    img, mask = _image(1), _disc()
    out = stylize.apply_effect(img, mask, effect)
    assert out.shape == img.shape and out.dtype == np.float32 and out.min() >= 0 and out.max() <= 1
    assert np.array_equal(out[~mask], img[~mask])
    assert np.abs(out[mask] - img[mask]).mean() > 0.01  # it does something
    if effect == "pencil":
        assert np.allclose(out[mask][:, 0], out[mask][:, 1]) and np.allclose(out[mask][:, 1], out[mask][:, 2])


def test_options_need_exactly_one_editor(tmp_path):
    with pytest.raises(InputError, match="exactly one of style_image, effect or instruction"):
        RestyleOptions()
    with pytest.raises(InputError, match="exactly one"):
        RestyleOptions(effect="oil", style_image="x.png")
    with pytest.raises(InputError, match="effect sepia: use one of watercolor"):
        RestyleOptions(effect="sepia")
    with pytest.raises(InputError, match="ip2p_checkpoint missing: an instruction needs"):
        RestyleOptions(instruction="make it bronze")
    with pytest.raises(InputError, match=r"style_image .*nope.png: not found or not an image"):
        stylize.read_style(tmp_path / "nope.png")


# ----------------------------------------------------------------------------- fitting


def test_fit_recovers_colours_and_refreshes(tiny):
    """Half the Gaussians' DC colours are scrambled; fitting them (SH colours only) to renders of the
    original brings the renders back, the others stay bit-identical; the refresh callback runs on its schedule."""
    data = tiny["data"]
    g0, views = data.gaussians, data.views("train")[:3]
    targets = render_all(g0, views, data.backdrop)
    mask = np.zeros(len(g0), bool)
    mask[::2] = True
    scrambled = g0.detach()
    scrambled.sh0[torch.from_numpy(mask)] = torch.randn(
        int(mask.sum()), 1, 3, generator=torch.Generator().manual_seed(0)
    )
    m = torch.from_numpy(mask)
    calls = []

    def refresh(current, step):
        calls.append(step)
        return targets

    before = np.mean(
        [
            psnr_in(a, b, np.ones(a.shape[:2], bool))
            for a, b in zip(render_all(scrambled, views, data.backdrop), targets)
        ]
    )
    free = fit_gaussians(
        scrambled.select(~m),
        scrambled.select(m),
        views,
        targets,
        data.backdrop,
        {"sh0": 0.1, "shN": 0.002},
        60,
        refresh=refresh,
        refresh_every=25,
    )
    fitted = merge_subset(scrambled, mask, free)
    after = np.mean(
        [psnr_in(a, b, np.ones(a.shape[:2], bool)) for a, b in zip(render_all(fitted, views, data.backdrop), targets)]
    )
    assert calls == [25, 50]
    assert after > before + 8, (before, after)
    for k in ("means", "quats", "scales", "opacities", "ids"):
        assert torch.equal(getattr(fitted, k), getattr(scrambled, k))
    assert torch.equal(fitted.sh0[~m], scrambled.sh0[~m])


# ----------------------------------------------------------------------------- the edit


def test_restyle_changes_only_the_object(tiny):
    data = tiny["data"]
    sel = edit.select(data, objects=[1])
    opts = RestyleOptions(effect="cartoon", iterations=60, refresh_every=30)
    out = restyle(data, sel, opts)
    g0, g1, m = data.gaussians, out.gaussians, torch.from_numpy(sel.mask)
    for k in ("means", "quats", "scales", "opacities", "ids"):
        assert torch.equal(getattr(g1, k), getattr(g0, k)), k  # colours only
    assert torch.equal(g1.sh0[~m], g0.sh0[~m]) and torch.equal(g1.shN[~m], g0.shN[~m])
    assert not torch.equal(g1.sh0[m], g0.sh0[m])
    s = out.edit["restyle"]
    assert s["outside"]["psnr_mean"] >= 40 and s["views"] == len(footprints(data, sel, data.views("train")))
    # the restyled renders are closer to the 2D edits than the pre-edit renders were
    holes = footprints(data, sel, data.views("train"))
    targets = [stylize.apply_effect(h.rgb0, h.hole, "cartoon") for h in holes]
    before = np.mean([psnr_in(h.rgb0, t, h.hole) for h, t in zip(holes, targets)])
    assert s["consistency"]["psnr_mean"] > before + 1.0, (before, s["consistency"])
    assert out.edit["effect"] == "cartoon" and out.edit["edit"] == "restyle"


def test_restyle_geometry_and_style_image(tiny):
    data = tiny["data"]
    style = tiny["root"] / "style.png"
    cv2.imwrite(str(style), np.tile(np.array([[[40, 120, 220]]], np.uint8), (16, 16, 1)))  # BGR: orange
    sel = edit.select(data, objects=[2])
    out = restyle(data, sel, RestyleOptions(style_image=str(style), geometry=True, iterations=40, refresh_every=0))
    g0, g1, m = data.gaussians, out.gaussians, torch.from_numpy(sel.mask)
    assert not torch.equal(g1.means[m], g0.means[m]) and torch.equal(g1.means[~m], g0.means[~m])
    assert torch.equal(g1.quats, g0.quats)  # rotations are never fitted
    # the object's mean colour moved towards the style's orange
    view = data.views("test")[0]
    hole = footprints(data, sel, [view])[0]
    after = render_all(g1, [view], data.backdrop)[0][hole.hole].mean(0)
    orange = np.array([220, 120, 40]) / 255
    assert np.linalg.norm(after - orange) < np.linalg.norm(hole.rgb0[hole.hole].mean(0) - orange) - 0.1


def test_cli_restyle_writes_a_run_and_refuses_bad_input(tiny, capsys):
    out, bad, run = tiny["root"] / "restyled", tiny["root"] / "bad", str(tiny["run"])
    assert (
        cli(["edit", "restyle", run, "--out", str(out), *"--objects 3 --effect oil --iterations 20 --quiet".split()])
        == 0
    )
    info = json.loads((out / "edit.json").read_text())
    assert info["edit"] == "restyle" and info["effect"] == "oil" and info["restyle"]["outside"]["psnr_mean"] >= 40
    assert "restyle: PSNR in the footprint" in capsys.readouterr().out
    assert Run.open(out).gaussians.means.shape == tiny["data"].gaussians.means.shape
    with pytest.raises(InputError, match="not found or not an image"):
        cli(["edit", "restyle", run, "--out", str(bad), "--objects", "3", "--style-image", str(bad / "x.png")])
    with pytest.raises(InputError, match="exactly one of style_image"):
        cli(["edit", "restyle", run, "--out", str(bad), "--objects", "3"])
    assert not bad.exists()


# ----------------------------------------------------------------------------- InstructPix2Pix


def test_ip2p_bad_folder_and_missing_extra(tmp_path, monkeypatch):
    from gsgroup.edit.ip2p import load_pipeline

    with pytest.raises(InputError, match=r"ip2p_checkpoint .*: no model_index.json there"):
        load_pipeline(tmp_path)
    (tmp_path / "model_index.json").write_text("{}")
    monkeypatch.setitem(__import__("sys").modules, "diffusers", None)  # as if the extra were not installed
    with pytest.raises(InputError, match=r"pip install 'gsgroup\[ip2p\]'"):
        load_pipeline(tmp_path)


@pytest.mark.slow
def test_ip2p_restyle_with_a_tiny_random_pipeline(tiny):
    """A tiny random InstructPix2Pix pipeline, saved and loaded back from its folder, is restyle's 2D
    editor: the first target of a view equals the pipeline's own output there (same seed), and only
    the selection's colours change."""
    pytest.importorskip("diffusers")
    from diffusers import StableDiffusionInstructPix2PixPipeline

    from gsgroup.edit.ip2p import Ip2pEditor
    from tiny_models import ip2p_pipeline

    folder = ip2p_pipeline(tiny["root"] / "ip2p")
    data = tiny["data"]
    sel = edit.select(data, objects=[1])
    opts = RestyleOptions(
        instruction="make it bronze", ip2p_checkpoint=str(folder), ip2p_steps=2, iterations=10, refresh_every=5
    )
    out = restyle(data, sel, opts)
    m = torch.from_numpy(sel.mask)
    assert torch.equal(out.gaussians.means, data.gaussians.means)
    assert torch.equal(out.gaussians.sh0[~m], data.gaussians.sh0[~m]) and not torch.equal(
        out.gaussians.sh0[m], data.gaussians.sh0[m]
    )
    hole = footprints(data, sel, data.views("train"))[0]
    own = Ip2pEditor(StableDiffusionInstructPix2PixPipeline.from_pretrained(str(folder)))
    want = stylize.paste(
        own(hole.rgb0, "make it bronze", 2, generator=torch.Generator().manual_seed(0)), hole.rgb0, hole.hole
    )
    got = out.images[f"restyle/{hole.view.name}_target.png"]
    assert np.abs(got - want).max() < 1e-5
    assert np.abs(got - hole.rgb0)[hole.hole].mean() > 0.01


def test_viewer_restyle_action(tiny):
    """The viewer's restyle action runs edit.restyle on the selected object and records it as an op."""
    from gsgroup.viewer.state import ViewerState, open_run

    st = ViewerState(open_run(tiny["run"]))
    st.select(4)
    before = st.act["rgb"].copy()
    st.restyle(effect="watercolor", iterations=10)
    assert st.ops[-1]["op"] == "restyle" and st.ops[-1]["effect"] == "watercolor"
    changed = np.abs(st.act["rgb"] - before).max(axis=1) > 0
    assert changed.any() and not changed[st.labels != 4].any()
    with pytest.raises(InputError, match="exactly one of style_image"):
        st.restyle()
    assert st.undo() and np.array_equal(st.act["rgb"], before)
