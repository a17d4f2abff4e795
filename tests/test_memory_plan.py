"""The planned memory of a training run, and the refusal when it would not fit."""

from __future__ import annotations

import numpy as np
import pytest

from gsgroup.cli import main
from gsgroup.errors import InputError
from gsgroup.train import memory
from gsgroup.train.memory import GB, MemoryPlan, check_memory, gaussian_bytes, memory_plan
from test_scene import make_colmap


class _View:
    def __init__(self, w, h):
        self.width, self.height = w, h
        self.pixels = np.zeros((h, w, 3), np.uint8)


def test_plan_counts_images_as_held_and_gaussians_at_the_cap():
    views = [_View(160, 90) for _ in range(4)]
    plan = memory_plan(views, 1000, 50_000, 3, 16)
    assert plan.images == 4 * 160 * 90 * 3  # uint8, not float32
    assert plan.gaussians == gaussian_bytes(50_000, 3, 16) == 50 * gaussian_bytes(1000, 3, 16)
    # parameters + gradient + Adam's two moments: at least 4 float32 copies of the 75 floats per Gaussian
    assert gaussian_bytes(1, 3, 16) >= 4 * 4 * (11 + 48 + 16)
    assert "planned memory" in plan.line() and "50,000 Gaussians at the cap" in plan.line()
    assert memory_plan(views, 1000, None, 3, 16).n_gaussians == 1000


def test_refuses_when_it_does_not_fit_and_names_the_cap(capsys):
    plan = MemoryPlan(
        images=GB, gaussians=40 * GB, raster=GB // 10, n_gaussians=10**8, capped=True, available=8 * GB, where="cpu"
    )
    with pytest.raises(InputError, match=r"would need about .* GB but 8.0 GB .*--max-gaussians \d+"):
        check_memory(plan, 3, 0)
    assert "planned memory" in capsys.readouterr().out
    most = plan.max_gaussians(3, 0)
    fits = MemoryPlan(GB, gaussian_bytes(most, 3, 0), GB // 10, most, True, 8 * GB, "cpu")
    check_memory(fits, 3, 0)  # the suggested cap fits
    check_memory(MemoryPlan(GB, 40 * GB, 0, 10**8, True, None, "cpu"), 3, 0)  # unknown memory: no refusal


def test_train_refuses_before_writing(tmp_path, monkeypatch, capsys):
    make_colmap(tmp_path / "data", binary=True)
    monkeypatch.setattr(memory, "available_bytes", lambda device="cpu": 2 * GB)
    out = tmp_path / "run"
    rc = main(["train", str(tmp_path / "data"), "--out", str(out), "--iterations", "5", "--max-gaussians", "100000000"])
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert rc != 0 and last.startswith("gsgroup: error: training would need") and "--max-gaussians" in last
    assert not out.exists()
