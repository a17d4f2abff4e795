"""Issue #13, CLI faults: meaningless numbers rejected with errors naming the flag (and by the configs),
a warning for a selection far smaller than the object, help text for every option, `masks`
refusing to overwrite, a progress bar for association."""

from __future__ import annotations

import argparse
import warnings

import numpy as np
import pytest
import torch

from gsgroup.cli import build_parser, main
from gsgroup.edit.select import SelectOptions, make_selection
from gsgroup.errors import InputError
from gsgroup.model import Gaussians
from gsgroup.segment.identity import IdentityClassifier
from gsgroup.segment.segmentation import Segmentation
from gsgroup.train.config import IdentityConfig, TrainConfig


def _subparsers(parser: argparse.ArgumentParser, path: str = "gsgroup"):
    """(command path, parser) for the parser and every subcommand below it."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _subparsers(sub, f"{path} {name}")


def _parser(path: str) -> argparse.ArgumentParser:
    return dict(_subparsers(build_parser()))[path]


def _help_of(path: str, flag: str) -> str:
    return next(a.help for a in _parser(path)._actions if flag in a.option_strings)


# ----------------------------------------------------------------------------- numbers


TRAIN = ["train", "DATA", "--out", "RUN"]
EDIT = ["edit", "remove", "RUN", "--out", "RUN2", "--objects", "1"]


@pytest.mark.parametrize(
    "argv, flag",
    [
        (TRAIN + ["--iterations", "0"], "--iterations"),
        (TRAIN + ["--iterations", "-5"], "--iterations"),
        (TRAIN + ["--resolution", "3"], "--resolution"),
        (TRAIN + ["--resolution", "0"], "--resolution"),
        (TRAIN + ["--checkpoint-every", "-1"], "--checkpoint-every"),
        (TRAIN + ["--eval-every", "-1"], "--eval-every"),
        (TRAIN + ["--max-gaussians", "0"], "--max-gaussians"),
        (TRAIN + ["--id-dim", "0"], "--id-dim"),
        (["run", "DATA", "--out", "RUN", "--recon-iterations", "0"], "--recon-iterations"),
        (["run", "DATA", "--out", "RUN", "--id-iterations", "-1"], "--id-iterations"),
        (["run", "DATA", "--out", "RUN", "--resolution", "5"], "--resolution"),
        (["demo", "--recon-iterations", "0"], "--recon-iterations"),
        (["masks", "DATA", "--out", "M", "--sam-points-per-side", "0"], "--sam-points-per-side"),
        (["masks", "DATA", "--out", "M", "--sam-pred-iou-thresh", "1.5"], "--sam-pred-iou-thresh"),
        (["masks", "DATA", "--out", "M", "--resolution", "7"], "--resolution"),
        (EDIT + ["--threshold", "0"], "--threshold"),
        (EDIT + ["--threshold", "1"], "--threshold"),
        (EDIT + ["--threshold", "-0.2"], "--threshold"),
        (["edit", "transform", "RUN", "--out", "R2", "--objects", "1", "--scale", "0"], "--scale"),
        (["edit", "inpaint", "RUN", "--out", "R2", "--objects", "1", "--iterations", "-1"], "--iterations"),
        (["view", "RUN", "--port", "70000"], "--port"),
    ],
)
def test_meaningless_numbers_are_argparse_errors(argv, flag, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {flag}" in err, err
    assert "must be" in err or "width in pixels" in err, err


@pytest.mark.parametrize(
    "argv",
    [
        TRAIN + ["--iterations", "1", "--resolution", "8", "--checkpoint-every", "0", "--eval-every", "0"],
        TRAIN + ["--resolution", "270", "--max-gaussians", "1", "--id-dim", "1"],
        TRAIN + ["--resolution", "2"],
        EDIT + ["--threshold", "0.05"],
        ["masks", "DATA", "--out", "M", "--sam-points-per-side", "1", "--sam-pred-iou-thresh", "0"],
    ],
)
def test_sensible_numbers_still_parse(argv):
    build_parser().parse_args(argv)


def test_train_iterations_default_only_when_not_given():
    from gsgroup.cli import run_config_from_args

    args = build_parser().parse_args(TRAIN + ["--iterations", "10"])
    assert run_config_from_args(args).train.iterations == 10
    args = build_parser().parse_args(TRAIN)
    assert run_config_from_args(args).train.iterations == TrainConfig.iterations


@pytest.mark.parametrize(
    "make, name",
    [
        (lambda: TrainConfig(iterations=0), "iterations"),
        (lambda: TrainConfig(iterations=-5), "iterations"),
        (lambda: TrainConfig(eval_every=-1), "eval_every"),
        (lambda: TrainConfig.for_length(0), "iterations"),
        (lambda: IdentityConfig(id_dim=0), "id_dim"),
        (lambda: SelectOptions(threshold=1.0), "threshold"),
        (lambda: SelectOptions(threshold=0.0), "threshold"),
    ],
)
def test_configs_reject_meaningless_numbers(make, name):
    with pytest.raises(InputError, match=f"^{name} ") as e:
        make()
    assert e.value.param == name


def test_config_errors_name_the_flag():
    from gsgroup.cli import _flag_message

    with pytest.raises(InputError) as e:
        TrainConfig(eval_every=-3)
    assert _flag_message(e.value).startswith("--eval-every -3: must be at least 0")


# ----------------------------------------------------------------------------- sparse selections


def _half_trained(n_sure: int, n_unsure: int):
    """Gaussians of id 1: ``n_sure`` with probability ~0.96, ``n_unsure`` whose most likely id is 1
    but with probability ~0.40 (identities trained too briefly); and 100 Gaussians of id 2."""
    rng = np.random.default_rng(0)
    n = n_sure + n_unsure + 100
    enc = torch.zeros(n, 16)
    enc[:n_sure, 1] = 4
    enc[n_sure : n_sure + n_unsure, 1] = 0.3
    enc[n_sure + n_unsure :, 2] = 4
    quats = torch.zeros(n, 4)
    quats[:, 0] = 1
    g = Gaussians(
        torch.from_numpy(rng.normal(size=(n, 3))).float(),
        quats,
        torch.full((n, 3), -3.0),
        torch.zeros(n),
        torch.zeros(n, 1, 3),
        torch.zeros(n, 15, 3),
        enc,
    )
    clf = IdentityClassifier(3, 16)
    with torch.no_grad():
        clf.linear.weight.copy_(torch.eye(3, 16))
        clf.linear.bias.zero_()
    return g, Segmentation(clf)


def test_tiny_selection_of_a_large_object_warns():
    g, seg = _half_trained(10, 400)
    with pytest.warns(UserWarning, match=r"only 10 of the 410 Gaussians .* id is 1 .*--threshold"):
        sel = make_selection(g, seg, [1], SelectOptions(threshold=0.5, cleanup=False))
    assert sel.mask.sum() == 10


def test_full_selection_does_not_warn():
    g, seg = _half_trained(10, 400)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sel = make_selection(g, seg, [1], SelectOptions(threshold=0.3, cleanup=False))
    assert sel.mask.sum() == 410


# ----------------------------------------------------------------------------- help text


def test_every_option_has_help():
    missing = [
        f"{path} {a.option_strings or a.dest}"
        for path, p in _subparsers(build_parser())
        for a in p._actions
        if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction)) and not (a.help or "").strip()
    ]
    assert not missing, missing


def test_descriptions_are_for_users():
    top = build_parser().format_help()
    assert "``" not in top and "Gaussian" in top
    for command in ("masks", "train", "associate", "eval", "render", "edit", "view"):
        assert f"gsgroup {command}" in top
    edit = _parser("gsgroup edit").format_help()
    assert "add_edit_commands" not in edit and "``" not in edit
    assert "gsgroup edit remove" in edit and "--pick" in edit


def test_help_states_defaults_and_pick_resolution():
    assert "default test" in _help_of("gsgroup render", "--split")
    assert "training resolution" in _help_of("gsgroup edit remove", "--pick")
    assert "--force" in _parser("gsgroup masks").format_help()


# ----------------------------------------------------------------------------- masks / associate


def test_masks_refuses_a_folder_with_files(tmp_path, capsys):
    from gsgroup.segment.masks import generate_masks

    data, out = tmp_path / "data", tmp_path / "masks"
    data.mkdir()
    out.mkdir()
    (out / "view_000.png").write_bytes(b"old")
    with pytest.raises(InputError, match="--force"):
        generate_masks(data, out, progress=False)
    assert main(["masks", str(data), "--out", str(out), "--quiet"]) == 2
    assert "--force" in capsys.readouterr().err
    assert (out / "view_000.png").read_bytes() == b"old"
    # with force (or with only the image cache left) it goes on to read the (here empty) dataset
    for kwargs in ({"force": True}, {}):
        if not kwargs:
            (out / "view_000.png").unlink()
            (out / ".cache").mkdir()
        with pytest.raises(Exception) as e:
            generate_masks(data, out, progress=False, **kwargs)
        assert "already holds" not in str(e.value)


def test_association_shows_progress_over_views(monkeypatch):
    import tqdm

    from gsgroup.segment.associate import associate_masks

    seen = {}

    class Stop(Exception):
        pass

    def fake_tqdm(iterable, **kwargs):
        seen.update(kwargs, n=len(iterable))
        raise Stop

    class View:
        def __init__(self, name):
            self.name = name

    g = (torch.zeros(1, 3), torch.tensor([[1.0, 0, 0, 0]]), torch.ones(1, 3), torch.ones(1))
    masks = {"a": np.ones((2, 2), int), "b": np.ones((2, 2), int)}
    monkeypatch.setattr(tqdm, "tqdm", fake_tqdm)
    with pytest.raises(Stop):
        associate_masks([View("a"), View("b")], g, masks, progress=True)
    assert seen["n"] == 2 and seen["disable"] is False and seen["unit"] == "view"
    with pytest.raises(Stop):
        associate_masks([View("a"), View("b")], g, masks)
    assert seen["disable"] is True  # the library default: quiet
