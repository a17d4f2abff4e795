"""Issue #13 (4, 7, 10): the pipeline reuses a stage only when the settings that made it are the
same; association never writes into DATA; a failing command leaves no new files behind."""

import json

import numpy as np
import pytest

import gsgroup.run as run_module
from gsgroup.cli import main
from gsgroup.data.synthetic import make_scene
from gsgroup.edit import api as edit_api
from gsgroup.errors import InputError
from gsgroup.pipeline import train_run
from gsgroup.run import DataConfig, Run, RunConfig
from gsgroup.segment.segmentation import Segmentation
from gsgroup.train.config import TrainConfig
from gsgroup.workflow import STAGE_FILE, PipelineConfig, run_pipeline


def _files(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return make_scene(tmp_path_factory.mktemp("faults") / "scene", width=48, height=36, n_views=8, progress=False)


@pytest.fixture(scope="module")
def trained(scene, tmp_path_factory):
    run, _ = train_run(
        RunConfig(DataConfig(str(scene)), TrainConfig.for_length(5)),
        tmp_path_factory.mktemp("trained") / "run",
        progress=False,
    )
    return run.path


def test_pipeline_refuses_stages_made_with_other_settings(scene, tmp_path, capsys, monkeypatch):
    caches = []
    load_scene = run_module.load_scene

    def spy(*args, **kwargs):
        caches.append(kwargs["cache_dir"])
        return load_scene(*args, **kwargs)

    monkeypatch.setattr(run_module, "load_scene", spy)
    out = tmp_path / "pipe"
    cfg = PipelineConfig(str(scene), str(out), resolution=2, recon_iterations=20, id_iterations=5, progress=False)
    run_pipeline(cfg)
    # one undistortion cache for every stage: RUN/cache, never RUN/recon/cache
    assert caches and all(c == out / Run.CACHE for c in caches), caches
    for where in ("masks", "recon", "object_mask", "."):
        assert (out / where / STAGE_FILE).exists(), where
    assert json.loads((out / "recon" / STAGE_FILE).read_text())["settings"]["recon_iterations"] == 20
    capsys.readouterr()
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}

    # other settings: refused in one line naming what changed, nothing written
    with pytest.raises(InputError) as e:
        run_pipeline(PipelineConfig(**{**vars(cfg), "resolution": 1, "recon_iterations": 30}))
    msg = str(e.value)
    assert "\n" not in msg and "resolution 2 -> 1" in msg and "--force" in msg
    with pytest.raises(InputError, match=r"recon_iterations 20 -> 30.*--force"):
        run_pipeline(PipelineConfig(**{**vars(cfg), "recon_iterations": 30}))
    with pytest.raises(InputError, match=r"id_iterations 5 -> 6"):
        run_pipeline(PipelineConfig(**{**vars(cfg), "id_iterations": 6}))
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before

    # the same settings: every stage is skipped
    run_pipeline(cfg)
    printed = capsys.readouterr().out
    assert printed.count("skipped") == 4, printed
    # an output without a record of its settings (an older gsgroup) is not trusted either
    (out / "recon" / STAGE_FILE).unlink()
    with pytest.raises(InputError, match="without a record of its settings"):
        run_pipeline(cfg)
    # force redoes every stage with the new settings
    run_pipeline(PipelineConfig(**{**vars(cfg), "id_iterations": 6, "force": True}))
    assert json.loads((out / STAGE_FILE).read_text())["settings"]["id_iterations"] == 6


def test_pipeline_failing_early_leaves_nothing(tmp_path):
    empty = tmp_path / "empty_data"
    empty.mkdir()
    before = _files(tmp_path)
    with pytest.raises(InputError):
        run_pipeline(PipelineConfig(str(empty), str(tmp_path / "pipe"), recon_iterations=5, progress=False))
    assert _files(tmp_path) == before
    with pytest.raises(InputError, match="inside the dataset folder"):
        run_pipeline(PipelineConfig(str(empty), str(empty / "out"), progress=False))
    assert _files(tmp_path) == before


def test_associate_never_writes_into_data(scene, tmp_path, capsys):
    before = _files(scene)
    masks = tmp_path / "masks"
    masks.mkdir()
    with pytest.raises(SystemExit) as e:  # argparse: --out is required
        main(["associate", str(scene), "--masks", str(masks), "--model", str(tmp_path / "run")])
    assert e.value.code == 2 and "--out" in capsys.readouterr().err
    out = scene / "object_mask"
    assert main(["associate", str(scene), "--masks", str(masks), "--model", "x", "--out", str(out)]) == 2
    assert "inside the dataset folder" in capsys.readouterr().err
    assert _files(scene) == before


def test_train_with_bad_masks_leaves_nothing(scene, tmp_path, capsys):
    before = _files(tmp_path)
    argv = ["train", str(scene), "--out", str(tmp_path / "run"), "--iterations", "5", "--quiet"]
    assert main([*argv, "--masks", str(tmp_path / "nope")]) == 2
    assert "nope" in capsys.readouterr().err
    assert _files(tmp_path) == before


def _edited(trained):
    src = Run.open(trained)
    n = len(src.gaussians)
    seg = Segmentation(None, np.ones(n, np.int32), np.ones(n, np.float32))
    return src.derive(segmentation=seg, edit={"op": "test"})


def test_failed_edit_save_leaves_nothing(trained, tmp_path, monkeypatch):
    calls = []

    def render_then_fail(run, view, *device):
        calls.append(view.name)
        if len(calls) > 1:
            raise InputError("render failed")
        return np.zeros((view.height, view.width, 3), np.float32)

    monkeypatch.setattr(edit_api, "render_rgb", render_then_fail)
    before = _files(tmp_path)
    with pytest.raises(InputError, match="render failed"):
        edit_api.save(_edited(trained), tmp_path / "deep" / "edited")
    assert _files(tmp_path) == before


def test_failed_run_save_keeps_the_old_folder(trained, tmp_path, monkeypatch):
    out = tmp_path / "edited"
    saved = _edited(trained).save(out)
    assert saved.path == out and (out / Run.EDIT).exists() and (out / Run.GAUSSIANS).exists()
    old = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(run_module, "save_ply", fail)
    with pytest.raises(OSError, match="disk full"):
        _edited(trained).save(out, force=True)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == old
    assert _files(tmp_path) == ["edited", *(f"edited/{p.name}" for p in sorted(out.iterdir()))]
