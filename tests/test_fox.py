"""Real data: the instant-ngp fox capture (distorted, portrait, missing frames, no point cloud)."""

import dataclasses
from pathlib import Path

import pytest

from gsgroup.data.scene import load_scene
from gsgroup.train.config import TrainConfig
from gsgroup.train.densify import DensifyConfig
from gsgroup.train.losses import psnr
from gsgroup.train.trainer import Trainer, render_view

FOX = Path(__file__).resolve().parents[2] / "shared" / "data" / "fox"


@pytest.mark.slow
@pytest.mark.skipif(not FOX.exists(), reason="shared fox data not present")
def test_fox_trains_from_random_init(tmp_path):
    scene = load_scene(FOX, resolution=135, cache_dir=tmp_path / "cache", allow_empty_points=True, progress=False)
    assert scene.points is None and scene.train[0].width == 135 and scene.train[0].height == 240
    few = dataclasses.replace(scene, train=scene.train[::8])  # 7 frames
    cfg = TrainConfig(iterations=600, init_points=5000, densify=DensifyConfig().scaled(600))
    trainer = Trainer(few, cfg)
    vt = trainer.views[0]

    def score():
        # what the run shows: the Gaussians over the learned environment behind them
        return psnr(render_view(trainer.gaussians(), vt, 0, background=trainer.backdrop).image.detach(), vt.image)

    before = score()
    trainer.train(progress=False)
    after = score()
    assert after > before + 5, (before, after)
    assert after > 18
