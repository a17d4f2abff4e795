"""The gsgroup command end to end on a tiny built-in scene."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from gsgroup import __version__
from gsgroup.cli import main
from gsgroup.data.masks import read_mask
from gsgroup.data.synthetic import make_scene
from gsgroup.model import load_ply
from gsgroup.run import Run
from reference_ssim import ssim_map_zero_pad


@pytest.fixture(scope="module")
def tiny_scene(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    return make_scene(root / "scene", width=64, height=48, n_views=10, progress=False)


def test_version():
    out = subprocess.run([sys.executable, "-m", "gsgroup.cli", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == f"gsgroup {__version__}"


def test_train_render_eval_resume(tiny_scene, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", str(tiny_scene), "--out", str(run), "--iterations", "40", "--eval", "--quiet"]) == 0
    for name in (Run.CONFIG, Run.GAUSSIANS, Run.ENVIRONMENT, Run.CHECKPOINT, Run.TRAIN_LOG):
        assert (run / name).exists(), name
    log = [json.loads(line) for line in (run / Run.TRAIN_LOG).read_text().splitlines()]
    assert log[-1]["step"] == 40 and "test_psnr" in log[-1]  # --eval: held-out PSNR logged while training
    config = json.loads((run / Run.CONFIG).read_text())
    assert config["train"]["iterations"] == 40 and config["data"]["eval"] is True
    g = load_ply(run / Run.GAUSSIANS)
    assert g.id_dim == 16 and len(g) > 0
    # a second train into the same folder is refused; --resume continues to a longer schedule
    assert main(["train", str(tiny_scene), "--out", str(run), "--quiet"]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["train", str(tiny_scene), "--out", str(run), "--resume", "--iterations", "50", "--quiet"]) == 0
    assert torch.load(run / Run.CHECKPOINT, weights_only=False)["step"] == 50
    # renders are named after the source images; eval writes metrics.json
    assert main(["render", str(run), "--out", str(tmp_path / "r"), "--split", "test", "--quiet"]) == 0
    names = sorted(p.name for p in (tmp_path / "r" / "rgb").iterdir())
    assert names == ["view_000.png", "view_008.png"]
    assert main(["eval", str(run), "--quiet"]) == 0
    metrics = json.loads((run / Run.METRICS).read_text())
    assert metrics["views"] == 2 and metrics["train"]["views"] == 8
    assert metrics["psnr_gap"] == pytest.approx(metrics["train"]["psnr"] - metrics["psnr"])
    # the test PSNR is that of the written renders against the images (8-bit rounding aside)
    from PIL import Image

    for name in ("view_000", "view_008"):
        render = np.asarray(Image.open(tmp_path / "r" / "rgb" / f"{name}.png"), np.float64) / 255
        image = np.asarray(Image.open(tiny_scene / "images" / f"{name}.png"), np.float64) / 255
        independent = 10 * np.log10(1 / np.mean((render - image) ** 2))
        assert independent == pytest.approx(metrics["per_view"][name]["psnr"], abs=0.15)
        # the SSIM too, from an independent float64 SciPy SSIM (same window, zero padding)
        independent_ssim = ssim_map_zero_pad(render, image).mean()
        assert independent_ssim == pytest.approx(metrics["per_view"][name]["ssim"], abs=2e-3)
        # and 50 iterations render the view far better than its mean colour everywhere (~22 dB / 0.8 vs
        # ~13 dB / 0.35 here): a broken renderer or an untrained model fails this
        flat = np.broadcast_to(image.mean((0, 1)), image.shape)
        assert independent > 10 * np.log10(1 / np.mean((flat - image) ** 2)) + 4
        assert independent_ssim > ssim_map_zero_pad(flat, image).mean() + 0.25
    assert "train - test PSNR gap" in capsys.readouterr().out


def test_no_environment(tiny_scene, tmp_path):
    run = tmp_path / "run"
    args = ["train", str(tiny_scene), "--out", str(run), "--iterations", "20", "--eval", "--quiet", "--eval-every", "0"]
    assert main([*args, "--no-environment"]) == 0
    assert not (run / Run.ENVIRONMENT).exists()
    assert json.loads((run / Run.CONFIG).read_text())["train"]["env_sh_degree"] == -1
    assert all("test_psnr" not in line for line in (run / Run.TRAIN_LOG).read_text().splitlines())


def test_bad_input_gives_one_line_error(tmp_path, capsys):
    assert main(["train", str(tmp_path / "nope"), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "nope" in err
    assert main(["render", str(tmp_path), "--out", str(tmp_path / "r"), "--quiet"]) == 2
    assert Run.CONFIG in capsys.readouterr().err


def test_run_pipeline_outputs(tiny_scene, tmp_path):
    run = tmp_path / "pipe"
    argv = [
        "run",
        str(tiny_scene),
        "--out",
        str(run),
        "--eval",
        "--recon-iterations",
        "60",
        "--id-iterations",
        "20",
        "--quiet",
    ]
    assert main(argv) == 0
    for name in (
        "masks",
        "recon/point_cloud.ply",
        "object_mask/objects.json",
        Run.GAUSSIANS,
        Run.CLASSIFIER,
        Run.LABELS,
        Run.OBJECTS,
        Run.SEG_METRICS,
        Run.METRICS,
    ):
        assert (run / name).exists(), name
    assert load_ply(run / Run.GAUSSIANS).id_dim == 16
    ids = read_mask(run / "renders" / "ids" / "view_000.png")
    assert ids.shape == (48, 64)
    for sub in ("overlay", "features", "rgb"):
        assert (run / "renders" / sub / "view_008.png").exists()
    labels = np.load(run / Run.LABELS)
    assert labels.dtype.names == ("id", "prob") and len(labels) == len(load_ply(run / Run.GAUSSIANS))
    # every stage is skipped the second time
    mtime = (run / Run.CLASSIFIER).stat().st_mtime_ns
    assert main(argv) == 0
    assert (run / Run.CLASSIFIER).stat().st_mtime_ns == mtime
