"""``--device`` through the edits that render and fit (#14): selection, the scene fill (``edit remove``),
``edit inpaint``, ``edit restyle`` and their fitting loop, and ``gsgroup view --device``.

``--device cpu`` writes exactly what the default CPU path writes; the fitting loop hands the gsplat path
the same inputs as the Numba one (checked on the CPU with ``gsplat.rasterization`` replaced by the
dense reference rasterizer); ``--device cuda`` without a GPU is one line before any data is read."""

from __future__ import annotations

import json
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from gsgroup.cli import main
from gsgroup.data.synthetic import make_scene
from gsgroup.edit.fitting import PARAMS, fit_gaussians
from gsgroup.model import Gaussians
from gsgroup.render import gsplat_backend
from gsgroup.train.environment import Environment
from test_device_commands import _files, _same
from test_edit import build_run
from test_gsplat_adapter import fake_rasterization
from test_rasterize import make_scene as random_scene

no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")


def _gaussians(n: int, seed: int) -> Gaussians:
    """n random Gaussians in front of test_rasterize's camera, with SH degree 3 colours."""
    s = random_scene(n, 3, 40, 32, seed, "opaque")
    g = torch.Generator().manual_seed(seed)
    return Gaussians(
        means=s["means"],
        quats=s["quats"],
        scales=torch.log(s["scales"]),
        opacities=torch.logit(s["opacities"].clamp(1e-3, 1 - 1e-3)),
        sh0=torch.rand(n, 1, 3, generator=g),
        shN=0.1 * torch.randn(n, 15, 3, generator=g),
        ids=torch.randn(n, 4, generator=g),
    )


def _views(count: int = 3) -> list:
    """count views (test_rasterize's camera, shifted sideways) as the View attributes view_tensors reads."""
    s = random_scene(4, 3, 40, 32, 0, "opaque")
    out = []
    for i in range(count):
        V = s["viewmat"].numpy().copy()
        V[0, 3] += 0.05 * i
        image = np.zeros((32, 40, 3), np.float32)
        out.append(SimpleNamespace(name=f"v{i}", viewmat=V, K=s["K"].numpy(), width=40, height=32, image=image))
    return out


def _fit(background, refreshed: list) -> Gaussians:
    """A few steps of fit_gaussians on a tiny random scene: all parameters, per-pixel weights, a refresh."""
    views = _views()
    rng = np.random.default_rng(0)
    targets = [rng.uniform(0, 1, (32, 40, 3)).astype(np.float32) for _ in views]
    weights = [rng.uniform(0.2, 1, (32, 40)).astype(np.float32) for _ in views]

    def refresh(current, step):
        refreshed.append(current)
        return [np.clip(t[::-1] * 0.9, 0, 1) for t in targets]

    lrs = {"means": 1e-3, "quats": 1e-3, "scales": 5e-3, "opacities": 5e-2, "sh0": 1e-2, "shN": 1e-3}
    return fit_gaussians(
        _gaussians(60, 1), _gaussians(25, 2), views, targets, background, lrs, 4, 0, weights, refresh, 2, device="cpu"
    )


@pytest.mark.parametrize("kind", ["colour", "environment"])
def test_fit_through_gsplat_equals_numba(monkeypatch, kind):
    """fit_gaussians on the gsplat path (faked on the CPU) gives the Numba path's fitted parameters: the
    loop hands the rasterizer the same Gaussians, colours, cameras and background; the results (and what
    ``refresh`` gets) are CPU Gaussians."""
    bg = torch.tensor([0.2, 0.5, 0.9]) if kind == "colour" else Environment(0.3 * torch.randn(16, 3))
    seen_numba, seen_gsplat = [], []
    numba = _fit(bg, seen_numba)
    with monkeypatch.context() as m:
        m.setattr(gsplat_backend, "_import_gsplat", lambda: fake_rasterization)
        m.setattr(gsplat_backend, "_require_cuda", lambda device, means: None)
        m.setattr(sys.modules["gsgroup.render.rasterize"], "_use_gsplat", lambda backend, means: True)
        gsplat = _fit(bg, seen_gsplat)
    start = _gaussians(25, 2)
    moved = 0.0
    for k in PARAMS:
        a, b = getattr(numba, k), getattr(gsplat, k)
        assert a.device.type == b.device.type == "cpu" and not a.requires_grad
        assert torch.allclose(a, b, atol=1e-4), k
        moved = max(moved, float((a - getattr(start, k)).abs().max()))
    assert moved > 1e-3  # the fit did move them
    assert torch.equal(numba.ids, start.ids)  # not fitted: unchanged
    assert len(seen_numba) == len(seen_gsplat) == 1 and seen_gsplat[0].means.device.type == "cpu"


# ----------------------------------------------------------------------------- the commands


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A tiny segmented run built from the synthetic scene's ground truth (test_edit.build_run)."""
    root = tmp_path_factory.mktemp("edit_device")
    scene = make_scene(root / "scene", seed=0, width=48, height=36, n_views=8, progress=False)
    return build_run(scene, root / "run")


def _edit_json(path) -> dict:
    """edit.json without what names the output folder."""
    info = json.loads(path.read_text())
    return {k: v for k, v in info.items() if k not in ("out",)}


def test_edit_device_cpu_writes_what_the_default_writes(tiny_run, tmp_path, monkeypatch):
    """edit remove (the scene fill), inpaint and restyle with --device cpu write byte-identical files
    to the same commands without the flag (auto, which is the CPU without a GPU). The scene fill's two
    fits are cut to 10 steps (``edit remove`` has no --iterations) to keep the test fast."""
    from gsgroup.edit import fitting

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # auto = cpu on a GPU machine too
    fit = fitting.fit_gaussians
    monkeypatch.setattr(fitting, "fit_gaussians", lambda *a, **kw: fit(*a[:6], min(a[6], 10), *a[7:], **kw))
    run = str(tiny_run)
    ops = {
        "remove": ["remove", run, "--objects", "4"],
        "inpaint": ["inpaint", run, "--objects", "5", "--iterations", "10", "--dilate", "2"],
        "restyle": ["restyle", run, "--objects", "3", "--effect", "oil", "--iterations", "10"],
    }
    outs = {}
    for tag, extra in (("default", []), ("cpu", ["--device", "cpu"])):
        for name, argv in ops.items():
            out = str(tmp_path / tag / name)
            assert main(["edit", *argv, "--out", out, "--no-cleanup", "--quiet", *extra]) == 0  # no slow 3D clean-up
        outs[tag] = {k: v for k, v in _files(tmp_path / tag).items() if not k.endswith("edit.json")}
        for name in ops:
            outs[tag][f"{name}/edit.json"] = _edit_json(tmp_path / tag / name / "edit.json")
    a, b = outs["default"], outs["cpu"]
    assert sorted(a) == sorted(b)
    for k in a:
        assert _same(a[k], b[k]), k
    assert {f"{n}/point_cloud.ply" for n in ops} <= set(a)
    assert a["remove/edit.json"]["clean"] is True and a["inpaint/edit.json"]["new_gaussians"] > 0


@no_gpu
def test_view_device_cuda_without_gpu_is_one_line_before_the_run(tmp_path, capsys):
    """gsgroup view --device cuda on a machine without CUDA: one line naming the fix, the run not read
    (a missing one is not what is reported)."""
    assert main(["view", str(tmp_path / "missing"), "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--device cuda" in err[0] and "--device cpu" in err[0] and "missing" not in err[0]


def test_view_device_cuda_without_gsplat_names_the_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(gsplat_backend, "gsplat_available", lambda: False)
    assert main(["view", str(tmp_path / "missing"), "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'gsgroup[cuda]'" in err[0]


def test_viewer_restyle_passes_its_device(tiny_run, monkeypatch):
    """The viewer's restyle and remove get the state's device (``gsgroup view --device``)."""
    from gsgroup import edit
    from gsgroup.viewer.state import ViewerState, open_run

    got = []

    def fake(name):
        def run_it(run, sel, *args, device=None, **kw):
            got.append((name, device))
            return edit.recolor(run, sel, "#ff0000")

        return run_it

    monkeypatch.setattr(edit, "restyle", fake("restyle"))
    monkeypatch.setattr(edit, "remove", fake("remove"))
    state = ViewerState(open_run(tiny_run), device="cuda:1")  # only passed on here
    state.select(3)
    state.restyle(effect="oil", iterations=2)
    state.remove()
    assert got == [("restyle", "cuda:1"), ("remove", "cuda:1")]


# ----------------------------------------------------------------------------- on a GPU (skipped elsewhere)
needs_cuda = pytest.mark.skipif(
    not (torch.cuda.is_available() and gsplat_backend.gsplat_available()), reason="needs a CUDA GPU and gsplat"
)


@needs_cuda
def test_cuda_edits_agree_with_cpu(tiny_run, tmp_path):
    """On the GPU: edit remove (the scene fill), inpaint and restyle with --device cuda write runs whose
    preview renders are within 30 dB PSNR of --device cpu's (the rasterizers differ in faint tails, so
    the fits are not bit for bit); restyle keeps the Gaussian count, and the API returns CPU Gaussians."""
    import cv2

    from gsgroup import edit
    from gsgroup.edit.restyle import RestyleOptions
    from gsgroup.run import Run

    run = str(tiny_run)
    ops = {
        "remove": ["remove", run, "--objects", "5"],
        "inpaint": ["inpaint", run, "--objects", "5", "--iterations", "40", "--dilate", "2"],
        "restyle": ["restyle", run, "--objects", "3", "--effect", "oil", "--iterations", "40"],
    }
    for name, argv in ops.items():
        for dev in ("cpu", "cuda"):
            assert main(["edit", *argv, "--out", str(tmp_path / dev / name), "--quiet", "--device", dev]) == 0
        for p in sorted((tmp_path / "cpu" / name / "after").glob("*.png")):
            a, b = (
                cv2.imread(str(q)).astype(np.float64) / 255 for q in (p, tmp_path / "cuda" / name / "after" / p.name)
            )
            assert 10 * np.log10(1 / max(np.mean((a - b) ** 2), 1e-12)) >= 30, (name, p.name)
    infos = [json.loads((tmp_path / d / "restyle" / "edit.json").read_text()) for d in ("cpu", "cuda")]
    assert infos[0]["gaussians_after"] == infos[1]["gaussians_after"]
    data = Run.open(run)
    sel = edit.select(data, objects=[3], device="cuda")
    out = edit.restyle(data, sel, RestyleOptions(effect="oil", iterations=5), device="cuda")
    assert out.gaussians.means.device.type == "cpu" and len(out.gaussians) == len(data.gaussians)
