"""Trainer behaviour: determinism, schedules, checkpoints, Ctrl-C."""

import json
import math
import os
import signal

import pytest
import torch

from gsgroup.data.scene import load_scene
from gsgroup.data.synthetic import make_scene
from gsgroup.run import Run
from gsgroup.train.config import TrainConfig
from gsgroup.train.densify import Densifier, DensifyConfig, append_gaussians
from gsgroup.train.trainer import Trainer, render_view


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    root = tmp_path_factory.mktemp("s")
    make_scene(root / "scene", width=48, height=36, n_views=8, progress=False)
    return load_scene(root / "scene", eval=True, cache_dir=root / "cache", progress=False)


def cfg(**kw):
    return TrainConfig(
        iterations=30, densify=DensifyConfig(densify_from=5, densify_until=25, densify_every=10, reset_every=1000), **kw
    )


def test_training_is_deterministic_and_reduces_loss(scene, tmp_path):
    a = Trainer(scene, cfg())
    b = Trainer(scene, cfg())
    first = [a.train_step()["loss"] for _ in range(3)]
    for _ in range(27):
        a.train_step()
    for _ in range(30):
        b.train_step()
    for k in a.params:
        assert torch.equal(a.params[k], b.params[k]), k
    last = sum(a.train_step()["loss"] for _ in range(8)) / 8
    assert last < 0.8 * sum(first) / 3


def test_schedules(scene, tmp_path):
    t = Trainer(scene, TrainConfig(iterations=1000, sh_interval=100))
    assert [t.sh_degree_at(s) for s in (0, 99, 100, 250, 999)] == [0, 0, 1, 2, 3]
    e = scene.extent
    assert math.isclose(t.means_lr(0), 1.6e-4 * e, rel_tol=1e-9)
    assert math.isclose(t.means_lr(1000), 1.6e-6 * e, rel_tol=1e-9)
    assert math.isclose(t.means_lr(500), math.sqrt(1.6e-4 * 1.6e-6) * e, rel_tol=1e-9)
    d = DensifyConfig().scaled(3000)
    assert (d.densify_from, d.densify_until, d.densify_every, d.reset_every) == (50, 1500, 100, 300)
    d = DensifyConfig().scaled(60000)
    assert (d.densify_from, d.densify_until, d.densify_every, d.reset_every) == (1000, 30000, 200, 6000)


def test_checkpoint_resume_is_exact(scene, tmp_path):
    a = Trainer(scene, cfg())
    for _ in range(12):
        a.train_step()
    a.save_checkpoint(tmp_path / "ck.pt")
    for _ in range(10):
        a.train_step()
    b = Trainer(scene, cfg())
    b.load_checkpoint(tmp_path / "ck.pt")
    assert b.step_count == 12
    for _ in range(10):
        b.train_step()
    for k in a.params:
        assert torch.equal(a.params[k], b.params[k]), k
    assert torch.equal(a.env.coeffs, b.env.coeffs)  # the learned environment resumes exactly too


def test_ctrl_c_saves_a_checkpoint(scene, tmp_path, monkeypatch, capsys):
    """Ctrl-C during an iteration lets it finish, then saves the checkpoint (never a half-done step)."""
    t = Trainer(scene, cfg())
    real_step = t.train_step

    def step():
        if t.step_count == 7:
            os.kill(os.getpid(), signal.SIGINT)  # arrives mid-iteration
        return real_step()

    monkeypatch.setattr(t, "train_step", step)
    with pytest.raises(KeyboardInterrupt):
        t.train(progress=False, checkpoint_path=tmp_path / Run.CHECKPOINT)
    assert t.step_count == 8
    state = torch.load(tmp_path / Run.CHECKPOINT, weights_only=True)
    assert state["step"] == 8
    assert "SIGINT: stopped at iteration 8" in capsys.readouterr().out
    # and it resumes to what an uninterrupted run reaches
    b = Trainer(scene, cfg())
    b.load_checkpoint(tmp_path / Run.CHECKPOINT)
    b.train(progress=False)
    c = Trainer(scene, cfg())
    c.train(progress=False)
    for k in c.params:
        assert torch.equal(b.params[k], c.params[k]), k


def test_a_raw_keyboard_interrupt_saves_nothing(scene, tmp_path, monkeypatch, capsys):
    """A KeyboardInterrupt raised inside an iteration (a second Ctrl-C) may leave it half done: no save."""
    t = Trainer(scene, cfg())

    def step():
        t.step_count += 1
        raise KeyboardInterrupt

    monkeypatch.setattr(t, "train_step", step)
    with pytest.raises(KeyboardInterrupt):
        t.train(progress=False, checkpoint_path=tmp_path / Run.CHECKPOINT)
    assert not (tmp_path / Run.CHECKPOINT).exists()
    assert "nothing saved" in capsys.readouterr().out


def test_max_gaussians_cap(scene, tmp_path):
    densify = DensifyConfig(densify_from=0, densify_until=100, densify_every=5, grad_threshold=0.0, max_gaussians=3000)
    t = Trainer(scene, TrainConfig(iterations=30, densify=densify))
    for _ in range(30):
        t.train_step()
        assert t.params["means"].shape[0] <= 3000


def test_test_psnr_is_logged_but_not_right_after_an_opacity_reset(scene, tmp_path):
    d = DensifyConfig(densify_from=5, densify_until=50, densify_every=10, reset_every=20)
    assert [Densifier(d, 1.0, 1).steps_since_reset(s) for s in (19, 20, 25, 49, 70)] == [None, 0, 5, 9, 30]
    t = Trainer(scene, TrainConfig(iterations=60, eval_every=10, densify=d))
    t.train(progress=False, log_path=tmp_path / Run.TRAIN_LOG)
    log = [json.loads(line) for line in (tmp_path / Run.TRAIN_LOG).read_text().splitlines()]
    evaluated = [r["step"] for r in log if "test_psnr" in r]
    assert evaluated == [10, 30, 50, 60]  # 20 and 40 are reset steps: those wait 10 steps
    last = t.evaluate()
    assert log[-1]["test_psnr"] == pytest.approx(last["psnr"]) and log[-1]["test_ssim"] == pytest.approx(last["ssim"])


def test_gaussians_no_training_view_sees_are_pruned(scene, tmp_path):
    t = Trainer(scene, cfg())
    for _ in range(5):
        t.train_step()
    weights = t.training_weights()
    # independent check: summed over Gaussians, the weights are the rendered alpha of every view
    with torch.no_grad():
        alpha = sum(float(render_view(t.params, vt, 0).alpha.sum()) for vt in t.views)
    assert float(weights.sum()) == pytest.approx(alpha, rel=1e-4)
    # a Gaussian behind every camera (far below the floor) is never seen: it goes, and only the
    # Gaussians under the threshold go with it, parameters and Adam moments alike
    with torch.no_grad():
        far = {k: v[:1].clone() for k, v in t.params.items()}
        far["means"][:] = torch.tensor([0.0, 0.0, -1e4])
    append_gaussians(t.params, t.optimizer, far)
    t.densifier.grad_sum = torch.cat([t.densifier.grad_sum, torch.zeros(1)])
    t.densifier.count = torch.cat([t.densifier.count, torch.zeros(1)])
    weights = t.training_weights()
    assert weights[-1] == 0
    threshold = min(t.cfg.densify.prune_unseen_weight, float(weights.mean()) / 20)
    expected = int((weights < threshold).sum())
    n = len(weights)
    assert t.prune_unseen() == expected >= 1
    assert t.params["means"].shape[0] == n - expected and t.densifier.count.shape[0] == n - expected
    assert (t.params["means"][:, 2] > -1e3).all()
    state = t.optimizer.state[t.params["means"]]
    assert state["exp_avg"].shape == t.params["means"].shape


def test_config_round_trip_and_old_configs():
    d = TrainConfig(env_sh_degree=2).to_dict()
    assert TrainConfig.from_dict(d) == TrainConfig(env_sh_degree=2)
    old = {k: v for k, v in d.items() if k not in ("env_sh_degree", "lr_env", "eval_every", "alpha_entropy")}
    got = TrainConfig.from_dict(old)
    assert got.env_sh_degree == -1  # written before the environment existed
    assert got.alpha_entropy == 0.0 and TrainConfig().alpha_entropy == 0.01  # a resumed run trains as it began
