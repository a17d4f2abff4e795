"""Several processes (torch.distributed, gloo on the CPU): data parallelism over views.

`gsgroup train --gpus 2` (which launches torchrun) trains on two processes; each step rank r takes
the r-th of two views drawn from the epoch order. The result equals one process that, each step,
averages the gradients of the same two views, and the saved run has the layout of a
single-process run.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from gsgroup.cli import main
from gsgroup.run import Run
from gsgroup.train.checkpoint import read_checkpoint
from gsgroup.train.losses import rgb_loss
from gsgroup.train.trainer import Trainer, render_view
from test_scene import make_colmap

STEPS = 6


def reference_params(run: Run) -> dict:
    """One process, each step: the two next views' gradients averaged, then the optimizer steps."""
    cfg = run.config.train
    torch.set_num_threads(1)  # as pipeline._trainer
    t = Trainer(run.load_scene(progress=False), cfg)
    trainables = list(t.params.values()) + ([t.env.coeffs] if t.env is not None else [])
    for step in range(1, STEPS + 1):
        t.step_count = step
        for group in t.optimizer.param_groups:
            if group["name"] == "means":
                group["lr"] = t.means_lr(step)
        for i in [t.next_view_index() for _ in range(2)]:
            vt = t.views[i]
            out = render_view(t.params, vt, t.sh_degree_at(step), background=t.background_for_step())
            rgb_loss(out.image[..., :3], vt.image, cfg.ssim_weight).backward()
        for p in trainables:
            if p.grad is not None:
                p.grad /= 2
        t.optimizer.step()
        t.optimizer.zero_grad(set_to_none=True)
        if t.env is not None:
            t.env_optimizer.step()
            t.env_optimizer.zero_grad(set_to_none=True)
    return {k: v.detach() for k, v in t.params.items()}, (t.env.coeffs.detach() if t.env is not None else None)


@pytest.mark.slow  # about 50 s: two fresh processes import torch and numba, plus the references
def test_two_gloo_processes_equal_one_process_averaging_two_views(tmp_path):
    data = tmp_path / "data"
    make_colmap(data, n=6, binary=True)
    common = ["--iterations", str(STEPS), "--no-densify", "--quiet", "--seed", "3"]
    two = tmp_path / "two"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    cmd = [sys.executable, "-m", "gsgroup", "train", str(data), "--out", str(two), "--gpus", "2", *common]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.count('"iterations"') == 1  # rank 0 alone reports

    run = Run.open(two)
    state = read_checkpoint(two / Run.CHECKPOINT)
    assert int(state["step"]) == STEPS
    ref, env_ref = reference_params(run)
    for k, v in ref.items():
        torch.testing.assert_close(state["params"][k], v, rtol=1e-5, atol=1e-6, msg=lambda m, k=k: f"{k}: {m}")
    if env_ref is not None:
        torch.testing.assert_close(state["env"]["coeffs"], env_ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(run.gaussians.means, ref["means"], rtol=1e-5, atol=1e-6)  # the PLY too

    one = tmp_path / "one"
    assert main(["train", str(data), "--out", str(one), *common]) == 0
    layout = lambda root: sorted(str(p.relative_to(root)) for p in root.rglob("*") if "cache" not in p.parts)  # noqa: E731
    assert layout(two) == layout(one)


def test_more_processes_than_views_is_one_line(monkeypatch):
    """data_parallel refuses a world larger than the number of training views, in one line."""
    from types import SimpleNamespace

    from gsgroup.errors import InputError
    from gsgroup.train import distributed

    monkeypatch.setattr(distributed, "is_active", lambda: True)
    monkeypatch.setattr(distributed.dist, "get_world_size", lambda: 3)
    monkeypatch.setattr(distributed.dist, "get_rank", lambda: 0)
    with pytest.raises(InputError, match="3 processes need at least 3 training views, the scene has 2"):
        distributed.data_parallel(SimpleNamespace(views=[0, 1]))


def test_launch_drops_the_gpus_flag(monkeypatch):
    """gsgroup train --gpus N runs torchrun with the same command minus --gpus."""
    from gsgroup import cli

    calls = []
    monkeypatch.setattr(cli, "_launch_processes", lambda argv, n: calls.append((argv, n)) or 0)
    monkeypatch.setattr(sys, "argv", ["gsgroup", "train", "D", "--out", "R", "--gpus", "2", "--iterations", "3"])
    assert main(["train", "D", "--out", "R", "--gpus", "2", "--iterations", "3"]) == 0
    assert calls == [(["train", "D", "--out", "R", "--iterations", "3"], 2)]
