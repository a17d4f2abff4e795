"""--device: moving a trainer between devices, the GPU kNN of L3d, loading across devices.

On the CPU the mechanics are checked against staying put; tests that need CUDA skip without it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from gsgroup.data.scene import load_scene
from gsgroup.segment.identity import IdentityClassifier, _kl_to_neighbours, knn_torch, loss_3d
from gsgroup.train.config import TrainConfig
from gsgroup.train.device import move_trainer
from gsgroup.train.trainer import Trainer
from test_scene import make_colmap

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_knn_torch_matches_kd_tree_in_chunks():
    rng = np.random.default_rng(0)
    means = torch.from_numpy(rng.normal(size=(3000, 3)))
    pts = means[torch.from_numpy(rng.choice(3000, 200, replace=False))]
    _, ref = cKDTree(means.numpy()).query(pts.numpy(), k=5)
    for chunk in (1 << 25, 200 * 64, 200 * 7):  # one block; 47 blocks; 429 blocks of 7 (merged k at a time)
        assert np.array_equal(knn_torch(means, pts, 5, chunk=chunk).numpy(), ref)


def test_l3d_with_torch_neighbours_equals_the_kd_tree_path():
    g = torch.Generator().manual_seed(0)
    means = torch.randn(500, 3, generator=g, dtype=torch.float64).float()
    ids = torch.randn(500, 8, generator=g)
    clf = IdentityClassifier(6, 8)
    sample = torch.randperm(500, generator=g)[:100]
    ref = loss_3d(ids, means, clf, k=5, sample=sample)
    got = _kl_to_neighbours(ids, clf, sample, knn_torch(means, means[sample], 5), 5)
    assert torch.equal(got, ref)


def _trainer(data, cache):
    scene = load_scene(data, progress=False, cache_dir=cache)
    return Trainer(scene, TrainConfig.for_length(40, seed=1))


def test_move_trainer_keeps_training_exactly(tmp_path):
    """Moving (here CPU -> CPU: new Parameters, optimizer state re-pointed, views rebuilt) mid-run
    changes nothing: 3 + 3 steps equal 6 steps without the move."""
    make_colmap(tmp_path / "data", n=4)
    torch.set_num_threads(1)
    a, b = _trainer(tmp_path / "data", tmp_path / "c"), _trainer(tmp_path / "data", tmp_path / "c")
    for _ in range(3):
        a.train_step()
    old = a.params["means"]
    move_trainer(a, "cpu")
    assert a.params["means"] is not old and a.optimizer.param_groups[0]["params"][0] is a.params["means"]
    assert a.optimizer.state[a.params["means"]]["exp_avg"].shape == a.params["means"].shape
    for _ in range(3):
        a.train_step()
    for _ in range(6):
        b.train_step()
    for k in b.params:
        assert torch.equal(a.params[k], b.params[k]), k
    assert torch.equal(a.env.coeffs, b.env.coeffs)


@needs_cuda
def test_train_on_cuda_and_load_on_cpu(tmp_path):
    from gsgroup.pipeline import train_run
    from gsgroup.run import DataConfig, Run, RunConfig

    make_colmap(tmp_path / "data", n=4, size=(64, 48))
    cfg = RunConfig(DataConfig(str(tmp_path / "data")), TrainConfig.for_length(50, seed=0))
    _, summary = train_run(cfg, tmp_path / "run", device="cuda", progress=False)
    run = Run.open(tmp_path / "run")
    assert run.gaussians.means.device.type == "cpu" and len(run.gaussians) == summary["gaussians"]
    from gsgroup.train.checkpoint import read_checkpoint

    assert read_checkpoint(tmp_path / "run" / Run.CHECKPOINT)["params"]["means"].device.type == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
@pytest.mark.parametrize("command", ["train", "run"])
def test_device_cuda_without_gpu_is_one_line_before_any_work(tmp_path, capsys, command):
    from gsgroup.cli import main

    out = tmp_path / "out"
    assert main([command, str(tmp_path / "no_such_data"), "--out", str(out), "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--device cuda" in err[0] and "--device cpu" in err[0]  # not the missing data
    assert not out.exists()
