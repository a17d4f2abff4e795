"""Faults while training: Ctrl-C and SIGTERM stop `gsgroup train` cleanly with a checkpoint that
resumes bit-exactly; damaged or foreign checkpoints give one InputError line (issue #13)."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from gsgroup.cli import main
from gsgroup.data.synthetic import make_scene
from gsgroup.errors import InputError
from gsgroup.run import Run
from gsgroup.train.checkpoint import read_checkpoint

ITERATIONS = 150  # long enough to signal after the first log line (step 50), short enough to run twice


@pytest.fixture(scope="module")
def tiny_scene(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    return make_scene(root / "scene", width=40, height=30, n_views=6, progress=False)


@pytest.fixture(scope="module")
def reference(tiny_scene, tmp_path_factory):
    """The parameters after an uninterrupted run of ITERATIONS steps."""
    run = tmp_path_factory.mktemp("ref") / "run"
    assert main(["train", str(tiny_scene), "--out", str(run), "--iterations", str(ITERATIONS), "--quiet"]) == 0
    return torch.load(run / Run.CHECKPOINT, weights_only=True)["params"]


def _train_and_signal(data, run, signum) -> subprocess.CompletedProcess:
    """Start `gsgroup train` in a subprocess, send ``signum`` once train_log.jsonl shows progress."""
    argv = [sys.executable, "-m", "gsgroup.cli", "train", str(data), "--out", str(run)]
    argv += ["--iterations", str(ITERATIONS), "--checkpoint-every", "20", "--quiet"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = run / Run.TRAIN_LOG
    deadline = time.monotonic() + 300
    while not (log.exists() and log.read_text().strip()):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no training progress"
        time.sleep(0.05)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=300)
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_saves_a_checkpoint_that_resumes_exactly(tiny_scene, reference, tmp_path, signum):
    run = tmp_path / "run"
    done = _train_and_signal(tiny_scene, run, signum)
    assert done.returncode == 130, done.stderr
    assert "Traceback" not in done.stderr and "Error" not in done.stderr, done.stderr
    stopped = read_checkpoint(run / Run.CHECKPOINT)["step"]
    assert 50 <= stopped < ITERATIONS  # stopped mid-run, after the logged step, at an arbitrary step
    assert f"stopped at iteration {stopped}; checkpoint saved to {run / Run.CHECKPOINT}" in done.stdout
    assert "--resume" in done.stdout
    assert main(["train", str(tiny_scene), "--out", str(run), "--resume", "--quiet"]) == 0
    state = read_checkpoint(run / Run.CHECKPOINT)
    assert state["step"] == ITERATIONS
    for k, v in reference.items():
        assert torch.equal(state["params"][k], v), k  # bit-exact: the same as never interrupted
    steps = [json.loads(line)["step"] for line in (run / Run.TRAIN_LOG).read_text().splitlines()]
    assert steps == [50, 100, 150]


def test_signal_handlers_are_restored_and_a_second_signal_aborts(tiny_scene, tmp_path, capsys):
    from gsgroup.data.scene import load_scene
    from gsgroup.train.config import TrainConfig
    from gsgroup.train.trainer import Trainer

    scene = load_scene(tiny_scene, progress=False)
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    t = Trainer(scene, TrainConfig(iterations=30))
    real_step = t.train_step

    def step():  # two Ctrl-C within one iteration: the second aborts at once, nothing saved
        if t.step_count == 4:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
        return real_step()

    t.train_step = step
    with pytest.raises(KeyboardInterrupt):
        t.train(progress=False, checkpoint_path=tmp_path / Run.CHECKPOINT)
    assert not (tmp_path / Run.CHECKPOINT).exists()
    assert "aborted at iteration 4; nothing saved" in capsys.readouterr().out
    assert {s: signal.getsignal(s) for s in before} == before


def test_damaged_or_foreign_checkpoint_is_one_input_error(tiny_scene, reference, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", str(tiny_scene), "--out", str(run), "--iterations", "5", "--quiet"]) == 0
    ckpt = run / Run.CHECKPOINT
    state = torch.load(ckpt, weights_only=True)  # tensors and plain types only
    assert isinstance(state["rng"], str)
    good = ckpt.read_bytes()
    for name, content in [
        ("truncated", good[: len(good) // 2]),
        ("empty", b""),
        ("text", b"not a checkpoint\n"),
    ]:
        ckpt.write_bytes(content)
        with pytest.raises(InputError, match="start the run over with --force") as e:
            read_checkpoint(ckpt)
        assert str(ckpt) in str(e.value) and "\n" not in str(e.value), name
    torch.save({"weights": torch.zeros(3)}, ckpt)  # a foreign torch file
    with pytest.raises(InputError, match="not a gsgroup checkpoint"):
        read_checkpoint(ckpt)
    # a pickle that would run code when loaded is refused, not run
    torch.save({"step": 1, "hook": os.getcwd, **{k: 0 for k in ("params", "optimizer", "densifier")}}, ckpt)
    with pytest.raises(InputError, match="cannot read the checkpoint"):
        read_checkpoint(ckpt)
    # the CLI: one line on stderr, exit code 2
    ckpt.write_bytes(good[:100])
    capsys.readouterr()
    assert main(["train", str(tiny_scene), "--out", str(run), "--resume", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(ckpt) in err and "--force" in err
