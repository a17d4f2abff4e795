"""The typed run: RunConfig round trips and old files, Run.open/create/derive/save, CLI generated from configs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from gsgroup.cli import _flag_message, build_parser, run_config_from_args
from gsgroup.errors import InputError
from gsgroup.model import Gaussians
from gsgroup.options import cli_fields, flag_of
from gsgroup.run import DataConfig, Run, RunConfig
from gsgroup.segment.segmentation import Segmentation
from gsgroup.train.config import IdentityConfig, TrainConfig
from gsgroup.train.densify import DensifyConfig
from gsgroup.workflow import PipelineConfig

SRC = Path(__file__).resolve().parents[1] / "src" / "gsgroup"


def tiny_gaussians(n=20, labels=None):
    g = torch.Generator().manual_seed(0)
    quats = torch.zeros(n, 4)
    quats[:, 0] = 1
    return Gaussians(
        torch.randn(n, 3, generator=g),
        quats,
        torch.full((n, 3), -2.0),
        torch.zeros(n),
        torch.rand(n, 1, 3, generator=g),
        torch.zeros(n, 0, 3),
        torch.zeros(n, 16),
    )


def test_config_round_trip_and_old_layout(tmp_path):
    cfg = RunConfig(DataConfig("/data/x", 2, True, "/m"), TrainConfig.for_length(3000, seed=4, env_sh_degree=1))
    assert RunConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    old = cfg.to_dict()["train"]
    old.update(old.pop("identity"))  # the flat layout of earlier versions: identity settings at the top level
    old["lambda_2d"] = 0.5
    del old["env_sh_degree"]
    got = TrainConfig.from_dict(old)
    assert (
        got.identity == IdentityConfig(lambda_2d=0.5) and got.env_sh_degree == -1 and got.densify == cfg.train.densify
    )
    with pytest.raises(InputError, match=r"unknown keys \['colour'\]"):
        TrainConfig.from_dict({**cfg.to_dict()["train"], "colour": 1})
    with pytest.raises(InputError, match="has no data.path"):
        RunConfig.from_dict({"train": {}}, "x/config.json")


def test_open_create_refusals(tmp_path):
    with pytest.raises(InputError, match="not found or not a folder"):
        Run.open(tmp_path / "missing")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / Run.CONFIG).write_text("{oops")
    with pytest.raises(InputError, match=r"bad/config.json: corrupt JSON"):
        Run.open(tmp_path / "bad")
    run = Run.create(tmp_path / "r", RunConfig(DataConfig("/d")))
    assert Run.open(run.path).config == run.config
    with pytest.raises(InputError, match="already holds a run"):
        Run.create(tmp_path / "r", RunConfig())
    (run.path / Run.TRAIN_LOG).write_text("old\n")
    Run.create(tmp_path / "r", RunConfig(), force=True)
    assert not (run.path / Run.TRAIN_LOG).exists()


def test_derive_and_save(tmp_path):
    run = Run.create(tmp_path / "src", RunConfig(DataConfig("/d"), TrainConfig(background=(1.0, 0.0, 0.0))))
    g = tiny_gaussians()
    run.save_gaussians(g)
    labels = np.arange(20, dtype=np.int32) % 3
    seg = Segmentation(None, labels)
    edited = run.derive(g.select(torch.from_numpy(labels != 2)), seg.subset(labels != 2), {"edit": "test"})
    assert edited.path is None and torch.equal(edited.backdrop, torch.tensor([1.0, 0.0, 0.0]))
    with pytest.raises(InputError, match="is the input run"):
        edited.save(run.path)
    saved = edited.save(tmp_path / "out")
    again = Run.open(saved.path)
    assert again.config.edited_from == str(run.path.resolve())
    assert len(again.gaussians) == 14 and np.array_equal(again.labels[0], labels[labels != 2])
    assert json.loads((saved.path / Run.EDIT).read_text()) == {"edit": "test"}
    objects = json.loads((saved.path / Run.OBJECTS).read_text())
    assert set(objects) == {"0", "1"} and set(objects["0"]) == {"gaussians", "bbox_min", "bbox_max", "mean_color"}
    with pytest.raises(InputError, match="not empty"):
        edited.save(tmp_path / "out")
    with pytest.raises(InputError, match="6 labels for 20 Gaussians"):
        run.derive(segmentation=Segmentation(None, labels[:6]))


def test_cli_defaults_are_the_configs():
    """`gsgroup train DATA --out R` describes the Python defaults; every generated flag parses."""
    args = build_parser().parse_args(["train", "data", "--out", "r"])
    cfg = run_config_from_args(args)
    assert cfg.train == TrainConfig.for_length(TrainConfig.iterations)
    assert cfg.data == DataConfig(str(Path("data").resolve()))
    args = build_parser().parse_args(
        [
            "train",
            "d",
            "--out",
            "r",
            "--no-densify",
            "--max-gaussians",
            "9",
            "--id-dim",
            "8",
            "--sh-degree",
            "1",
            "--no-environment",
            "--white-background",
        ]
    )
    t = run_config_from_args(args).train
    assert (t.densify.densify_until, t.densify.max_gaussians, t.identity.id_dim, t.sh_degree) == (0, 9, 8, 1)
    assert t.env_sh_degree == -1 and t.background == (1.0, 1.0, 1.0)
    run_args = build_parser().parse_args(["run", "d", "--out", "r"])
    for f in cli_fields(PipelineConfig):
        assert getattr(run_args, f.name) == f.default, f.name
    help_text = build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    for cls in (TrainConfig, IdentityConfig, DensifyConfig, DataConfig):
        for f in cli_fields(cls):
            assert flag_of(f) in help_text


def test_cli_names_flags_in_library_errors():
    assert _flag_message(InputError("rotate_deg (1, 2): give three", "rotate_deg")) == "--rotate-deg (1, 2): give three"
    assert _flag_message(InputError("x.ply: bad")) == "x.ply: bad"
    # a field whose flag is not its name: SamOptions.model_type is --sam-model
    assert _flag_message(InputError("model_type 'vit_x' is unknown", "model_type")) == "--sam-model 'vit_x' is unknown"


def test_run_file_names_are_spelled_once_in_src():
    names = [getattr(Run, f) for f in dir(Run) if f.isupper() and isinstance(getattr(Run, f), str)]
    assert len(names) == 12
    for name in names:
        where = [p for p in SRC.rglob("*.py") if re.search(rf"[\"']{re.escape(name)}[\"']", p.read_text())]
        if name == Run.CONFIG:  # edit/text_select.py checks for a transformers model folder's own config.json
            where = [p for p in where if p.name != "text_select.py"]
        assert len(where) == 1, (name, where)  # run.py, or (objects.json) data/masks.py beside associated masks


def test_no_argv_built_outside_the_cli():
    for p in SRC.rglob("*.py"):
        text = p.read_text()
        assert "parse_args([" not in text or p.name == "cli.py", p
        assert "subprocess" not in text or p.name == "cli.py", p  # cli.py: `train --gpus N` starts torchrun
    for p in list((SRC / "viewer").rglob("*.py")) + [SRC / "pipeline.py", SRC / "workflow.py", SRC / "demo.py"]:
        assert not re.search(r"from \.+(edit\.commands|cli) import|gsgroup\.cli", p.read_text()), p


def test_module_and_function_sizes():
    """No module in src/ over 500 lines but the Numba kernels; no function over 80 lines outside them."""
    import ast

    for p in SRC.rglob("*.py"):
        if p.name == "_kernels.py":
            continue
        text = p.read_text()
        assert len(text.splitlines()) <= 500, p
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                assert node.end_lineno - node.lineno < 80, (p.name, node.name)
