"""``--device`` on lift, render, eval, associate and edit (#14): ``--device cpu`` writes exactly what the
default CPU path writes, ``--device cuda`` without a GPU is one line before any data is read; the CUDA
pieces (label weights through gsplat's gradient, batched cameras) checked on the CPU with
``gsplat.rasterization`` replaced by the dense reference rasterizer."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from gsgroup.cli import main
from gsgroup.data.synthetic import make_scene
from gsgroup.render import contributions, gsplat_backend, rasterize
from gsgroup.render.batched import rasterize_batch
from gsgroup.render.weights import label_weights
from gsgroup.run import Run
from test_gsplat_adapter import fake_rasterization
from test_rasterize import make_scene as random_scene

no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")


def batched_fake(means, quats, scales, opacities, colors, viewmats, Ks, width, height, backgrounds=None, **kw):
    """gsplat.rasterization for C cameras: the dense reference of ``fake_rasterization`` per camera, stacked."""
    outs = []
    for c in range(viewmats.shape[0]):
        col = colors[c] if colors.dim() == 3 else colors
        bg = None if backgrounds is None else backgrounds[c : c + 1]
        outs.append(fake_rasterization(means, quats, scales, opacities, col, viewmats[c : c + 1], Ks[c : c + 1],
                                       width, height, backgrounds=bg, **kw))  # fmt: skip
    meta = {k: torch.cat([o[2][k] for o in outs]) for k in ("means2d", "radii")}
    return torch.cat([o[0] for o in outs]), torch.cat([o[1] for o in outs]), meta


@pytest.fixture
def fake_gsplat(monkeypatch):
    monkeypatch.setattr(gsplat_backend, "_import_gsplat", lambda: batched_fake)
    monkeypatch.setattr(gsplat_backend, "_require_cuda", lambda device, means: None)


def _cameras(c: int, seed: int = 0):
    """c random scenes' cameras around one set of Gaussians (test_rasterize's generator)."""
    scenes = [random_scene(80, 5, 40, 32, seed + i, "opaque") for i in range(c)]
    return scenes[0], torch.stack([s["viewmat"] for s in scenes]), torch.stack([s["K"] for s in scenes])


def test_label_weights_through_the_gradient_equal_contributions(fake_gsplat):
    """The GPU path of label_weights (gradient of the rendered one-hot picks, in label chunks) equals
    the Numba contributions kernel."""
    s = random_scene(120, 3, 40, 32, 3, "mixed")
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 40, (32, 40), generator=g)
    labels[labels == 7] = 9  # a label with no pixel
    args = [s[k] for k in ("means", "quats", "scales", "opacities", "viewmat", "K")] + [40, 32, labels]
    ref = contributions(*args, num_labels=42)
    got = label_weights(*args, num_labels=42, backend="gsplat")
    assert got.shape == ref.shape == (120, 42) and float(ref.sum()) > 1
    assert torch.allclose(got, ref, rtol=1e-4, atol=1e-5)
    assert torch.equal(label_weights(*args, num_labels=42, backend="cpu"), ref)


@pytest.mark.parametrize("shared", [True, False])
def test_batched_cameras_equal_per_camera(fake_gsplat, shared):
    """rasterize_batch through one (faked) gsplat call for 3 cameras equals 3 Numba rasterize calls,
    with shared or per-camera features and backgrounds; the CPU loop is bit-identical to them."""
    s, viewmats, Ks = _cameras(3)
    geo = [s[k] for k in ("means", "quats", "scales", "opacities")]
    g = torch.Generator().manual_seed(2)
    feats = s["features"] if shared else torch.rand(3, *s["features"].shape, generator=g)
    bgs = torch.rand(3, feats.shape[-1], generator=g)
    batch = rasterize_batch(*geo, feats, viewmats, Ks, 40, 32, backgrounds=bgs, backend="gsplat")
    cpu = rasterize_batch(*geo, feats, viewmats, Ks, 40, 32, backgrounds=bgs, backend="cpu")
    for c in range(3):
        f = feats if shared else feats[c]
        one = rasterize(*geo, f, viewmats[c], Ks[c], 40, 32, background=bgs[c], backend="cpu")
        for name in ("image", "alpha", "depth"):
            assert torch.equal(getattr(cpu, name)[c], getattr(one, name)), name
            assert torch.allclose(getattr(batch, name)[c], getattr(one, name), atol=1e-4), name
        assert torch.equal(batch.radii[c] > 0, one.radii > 0)
    assert batch.image.shape == (3, 32, 40, feats.shape[-1]) and batch.radii.dtype == torch.int32


def test_batched_errors():
    s, viewmats, Ks = _cameras(2)
    geo = [s[k] for k in ("means", "quats", "scales", "opacities")]
    with pytest.raises(ValueError, match="viewmats"):
        rasterize_batch(*geo, s["features"], viewmats[0], Ks, 40, 32)
    with pytest.raises(ValueError, match="3 cameras"):
        rasterize_batch(*geo, s["features"].expand(3, -1, -1), viewmats, Ks, 40, 32)


def test_render_views_equal_render_view(fake_gsplat, tmp_path):
    """render_views (per-view SH colours, identity channels, the environment behind) through one faked
    gsplat call equals render_view per view."""
    from gsgroup.geometry import camera_center
    from gsgroup.model import Gaussians
    from gsgroup.train.environment import Environment
    from gsgroup.train.render_views import render_views, size_chunks
    from gsgroup.train.trainer import render_view
    from gsgroup.train.views import ViewTensors

    s, viewmats, Ks = _cameras(3, seed=5)
    g = torch.Generator().manual_seed(4)
    n = s["means"].shape[0]
    gauss = Gaussians(
        s["means"], s["quats"], torch.log(s["scales"]), torch.logit(s["opacities"].clamp(1e-3, 1 - 1e-3)),
        torch.rand(n, 1, 3, generator=g), 0.1 * torch.randn(n, 15, 3, generator=g), torch.randn(n, 4, generator=g),
    )  # fmt: skip
    vts = [ViewTensors(f"v{c}", torch.zeros(32, 40, 3), viewmats[c], Ks[c], camera_center(viewmats[c]), 40, 32)
           for c in range(3)]  # fmt: skip
    env = Environment(0.3 * torch.randn(16, 3, generator=g))
    for bg in (env, torch.tensor([0.2, 0.5, 0.9])):
        batch = render_views(gauss, vts, 3, background=bg, extra_features=gauss.ids, backend="gsplat")
        for c, vt in enumerate(vts):
            one = render_view(gauss, vt, 3, background=bg, extra_features=gauss.ids)
            assert torch.allclose(batch.image[c], one.image, atol=1e-4)
            assert torch.allclose(batch.alpha[c], one.alpha, atol=1e-4)
    sizes = [type("V", (), {"width": w, "height": 8}) for w in (8, 8, 8, 9, 8, 8)]
    assert size_chunks(sizes, 2) == [[0, 1], [2], [3], [4, 5]]


# ----------------------------------------------------------------------------- the commands


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny built-in scene and a 30-iteration run of it with a test split."""
    root = tmp_path_factory.mktemp("device")
    scene = make_scene(root / "scene", width=64, height=48, n_views=10, progress=False)
    run = root / "run"
    assert (
        main(["train", str(scene), "--out", str(run), "--iterations", "30", "--eval", "--quiet", "--device", "cpu"])
        == 0
    )
    return scene, run


def _files(folder) -> dict:
    """{relative path: bytes} of every file; torch files (whose archive names the file) as their tensors."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            key = p.relative_to(folder).as_posix()
            out[key] = p.read_bytes() if p.suffix != ".pt" else torch.load(p, weights_only=True)
    return out


def _same(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    return a == b


def test_device_cpu_writes_what_the_default_writes(trained, tmp_path, monkeypatch):
    """lift, render, eval (PSNR and --gt), associate and edit with --device cpu write byte-identical
    files to the same commands without the flag (auto, which is the CPU without a GPU)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # auto = cpu on a GPU machine too
    scene, run = trained
    outs = {}
    for tag, extra in (("default", []), ("cpu", ["--device", "cpu"])):
        d = tmp_path / tag
        lifted = d / "lifted"
        assert main(["lift", str(run), "--masks", str(scene / "gt_mask"), "--out", str(lifted), "--quiet", *extra]) == 0
        assert main(["render", str(lifted), "--out", str(d / "r"), "--split", "all", "--quiet", *extra]) == 0
        assert main(["eval", str(lifted), "--quiet", *extra]) == 0
        assert main(["eval", str(lifted), "--gt", str(scene / "gt_mask"), "--quiet", *extra]) == 0
        assert main(["associate", str(scene), "--masks", str(scene / "gt_mask"), "--model", str(run),
                     "--out", str(d / "assoc"), "--quiet", *extra]) == 0  # fmt: skip
        assert main(["edit", "recolor", str(lifted), "--out", str(d / "removed"), "--objects", "1", "--color", "#2a6fdb",
                     "--quiet", *extra]) == 0  # fmt: skip
        outs[tag] = {k: v for k, v in _files(d).items() if not k.endswith(".json")}
        outs[tag]["metrics"] = json.loads((lifted / Run.METRICS).read_text())
        outs[tag]["seg"] = json.loads((lifted / Run.SEG_METRICS).read_text())
        outs[tag]["objects"] = json.loads((d / "assoc" / "objects.json").read_text())["objects"]  # not its timings
    a, b = outs["default"], outs["cpu"]
    assert sorted(a) == sorted(b)
    for k in a:
        assert _same(a[k], b[k]), k
    assert any(k.startswith("r/ids/") for k in a) and any(k.startswith("removed/after/") for k in a)
    assert any(k.startswith("assoc/") and k.endswith(".png") for k in a) and "lifted/labels.npy" in a


@no_gpu
@pytest.mark.parametrize(
    "argv",
    [
        ["lift", "RUN", "--masks", "M"],
        ["render", "RUN", "--out", "OUT"],
        ["eval", "RUN"],
        ["eval", "RUN", "--gt", "M"],
        ["associate", "DATA", "--masks", "M", "--model", "RUN", "--out", "OUT"],
        ["edit", "remove", "RUN", "--out", "OUT", "--objects", "1"],
        ["edit", "restyle", "RUN", "--out", "OUT", "--objects", "1", "--effect", "oil"],
    ],
)
def test_device_cuda_without_gpu_is_one_line_before_any_data(tmp_path, capsys, argv):
    argv = [str(tmp_path / a) if a in ("RUN", "M", "OUT", "DATA") else a for a in argv]
    assert main([*argv, "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--device cuda" in err[0] and "--device cpu" in err[0]  # not the missing run
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- on a GPU (skipped elsewhere)
needs_cuda = pytest.mark.skipif(
    not (torch.cuda.is_available() and gsplat_backend.gsplat_available()), reason="needs a CUDA GPU and gsplat"
)


@needs_cuda
def test_cuda_label_weights_and_batched_cameras():
    """On the GPU: label weights through gsplat's gradient equal the Numba contributions (up to the faint
    tails gsplat's extent drops or adds), and one batched gsplat call equals per-camera calls."""
    s = random_scene(300, 3, 64, 48, 0, "mixed")
    labels = torch.randint(0, 40, (48, 64), generator=torch.Generator().manual_seed(0))
    cpu = [s[k] for k in ("means", "quats", "scales", "opacities", "viewmat", "K")]
    ref = contributions(*cpu, 64, 48, labels, num_labels=40)
    got = label_weights(*[t.cuda() for t in cpu], 64, 48, labels.cuda(), num_labels=40)
    assert float((got - ref).abs().sum()) <= 1e-2 * float(ref.sum())  # tails: see gsplat_backend
    s, viewmats, Ks = _cameras(6)
    geo = [s[k].cuda() for k in ("means", "quats", "scales", "opacities")]
    feats = torch.rand(6, *s["features"].shape, device="cuda")
    batch = rasterize_batch(*geo, feats, viewmats.cuda(), Ks.cuda(), 40, 32)
    for c in range(6):
        one = rasterize(*geo, feats[c], viewmats[c].cuda(), Ks[c].cuda(), 40, 32)
        assert torch.allclose(batch.image[c], one.image, atol=1e-5) and torch.allclose(batch.alpha[c], one.alpha)


@needs_cuda
def test_cuda_commands_agree_with_cpu(trained, tmp_path):
    """lift, render and eval with --device cuda agree with --device cpu: labels of >= 98% of the
    Gaussians, id maps on >= 99% of the pixels, PSNR within 0.05 dB; the files are the CPU path's."""
    from gsgroup.data.masks import read_mask

    scene, run = trained
    for dev in ("cpu", "cuda"):
        lifted = tmp_path / f"lift_{dev}"
        argv = ["lift", str(run), "--masks", str(scene / "gt_mask"), "--out", str(lifted), "--device", dev]
        assert main([*argv, "--quiet"]) == 0
        assert main(["render", str(lifted), "--out", str(tmp_path / f"r_{dev}"), "--device", dev, "--quiet"]) == 0
        assert main(["eval", str(lifted), "--device", dev, "--quiet"]) == 0
    a, b = (np.load(tmp_path / f"lift_{d}" / Run.LABELS) for d in ("cpu", "cuda"))
    assert np.mean(a["id"] == b["id"]) >= 0.98  # near-ties may flip
    for p in (tmp_path / "r_cpu" / "ids").iterdir():
        assert np.mean(read_mask(p) == read_mask(tmp_path / "r_cuda" / "ids" / p.name)) >= 0.99
    ma, mb = (json.loads((tmp_path / f"lift_{d}" / Run.METRICS).read_text()) for d in ("cpu", "cuda"))
    assert abs(ma["psnr"] - mb["psnr"]) <= 0.05 and abs(ma["train"]["psnr"] - mb["train"]["psnr"]) <= 0.05


def test_batched_render_path_on_the_cpu_is_the_per_view_path(trained):
    """What render/eval do on CUDA (iter_renders / score_renders in batches of views, rasterize_batch),
    run on the CPU, gives the per-view renders and scores bit for bit (environment and identities too)."""
    from gsgroup.segment.idmaps import id_features
    from gsgroup.segment.segmentation import Segmentation
    from gsgroup.train.render_views import iter_renders, score_renders

    _, path = trained
    run = Run.open(path)
    g, views, bg = run.gaussians, run.views("all"), run.backdrop
    extra = g.ids
    per_view = list(iter_renders(g, views, "cpu", bg, extra))
    batched = list(iter_renders(g, views, "cpu", bg, extra, chunk=3, batched=True))
    assert [v.name for v, *_ in batched] == [v.name for v, *_ in per_view] and len(views) == 10
    for (_, _, a, aa), (_, _, b, ba) in zip(per_view, batched):
        assert torch.equal(a, b) and torch.equal(aa, ba)
    assert score_renders(g, views, "cpu", bg, chunk=4, batched=True) == score_renders(g, views, "cpu", bg)
    lifted = Segmentation(None, np.arange(len(g)) % 3)
    assert torch.equal(id_features(g, lifted).argmax(1), torch.arange(len(g)) % 3)  # one-hot labels


def reference_projection(means, covars, quats, scales, viewmats, Ks, width, height, eps2d=0.3, near_plane=0.01,
                         far_plane=1e10, **_):  # fmt: skip
    """gsplat.fully_fused_projection (unpacked) computed by gsplat's PyTorch reference, on the CPU."""
    from gsplat.cuda._torch_impl import _fully_fused_projection, _quat_scale_to_covar_preci

    if covars is None:
        covars, _ = _quat_scale_to_covar_preci(quats, scales, compute_preci=False)
    return _fully_fused_projection(means, covars, viewmats, Ks, width, height, eps2d, near_plane, far_plane)


@pytest.mark.parametrize("seed,kind", [(0, "mixed"), (1, "opaque"), (2, "mixed")])
def test_footprint_through_gsplat_projection_equals_numba(monkeypatch, seed, kind):
    """associate's per-view footprint (unoccluded weight o 2 pi sqrt(det Sigma2d) of each Gaussian) from
    gsplat's projection, as it runs on a GPU, equals the Numba projection's; Gaussians behind the
    camera or off the image are 0 in both."""
    pytest.importorskip("gsplat")  # its PyTorch reference is the GPU path's stand-in (the [cuda] extra)
    from gsgroup.segment.associate import _footprint_gsplat, footprint

    monkeypatch.setattr(gsplat_backend, "_import_projection", lambda: reference_projection)
    s = random_scene(300, 3, 64, 48, seed, kind)
    tensors = tuple(s[k] for k in ("means", "quats", "scales", "opacities"))
    ref = footprint(tensors, s["viewmat"].numpy(), s["K"].numpy(), 64, 48)
    got = _footprint_gsplat(tuple(t.double() for t in tensors), s["viewmat"], s["K"], 64, 48, 0.01, 0.3)
    assert ref.shape == got.shape == (300,) and (ref > 0).sum() > 100
    assert np.array_equal(ref > 0, got > 0)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-9)
