"""Stopping and resuming training: SIGINT/SIGTERM become a stop request acted on between
iterations, and checkpoints are read back weights-only (no code from the file runs)."""

from __future__ import annotations

import contextlib
import os
import signal
import threading

import torch

from ..errors import InputError


class StopRequest:
    """Set by the SIGINT / SIGTERM handlers of ``stop_on_signals``: the signal's name, or None."""

    def __init__(self):
        self.signal: str | None = None


@contextlib.contextmanager
def stop_on_signals(signals=(signal.SIGINT, signal.SIGTERM)):
    """While inside, SIGINT and SIGTERM only record a stop request (yielded) for the caller to act on
    between iterations: a KeyboardInterrupt raised in the middle of a rasterizer call would leave
    a half-done step (and surfaces from Numba as a SystemError). A second signal raises
    KeyboardInterrupt at once. The previous handlers come back on exit. Outside the main thread
    (where Python cannot install handlers, and signals never arrive) this does nothing."""
    stop = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum, frame):
        if stop.signal is not None:
            raise KeyboardInterrupt  # a second Ctrl-C aborts immediately
        stop.signal = signal.Signals(signum).name

    previous = {s: signal.signal(s, handler) for s in signals}
    try:
        yield stop
    finally:
        for s, h in previous.items():
            signal.signal(s, signal.SIG_DFL if h is None else h)


CHECKPOINT_KEYS = ("step", "params", "optimizer", "densifier", "rng", "order", "torch_rng")


def read_checkpoint(path: str | os.PathLike) -> dict:
    """A checkpoint written by ``Trainer.save_checkpoint``, loaded with ``weights_only=True`` (no code
    from the file runs). A damaged, truncated or foreign file raises InputError naming it."""
    fix = "it is damaged or not a gsgroup checkpoint; start the run over with --force"
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")  # saved on any device
    except FileNotFoundError:
        raise InputError(f"{path}: no such checkpoint; start a new run instead") from None
    except Exception as e:  # torch raises RuntimeError, UnpicklingError, EOFError... for a bad file
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise InputError(f"{path}: cannot read the checkpoint ({reason}); {fix}") from None
    missing = [k for k in CHECKPOINT_KEYS if k not in state] if isinstance(state, dict) else list(CHECKPOINT_KEYS)
    if missing:
        raise InputError(f"{path}: not a gsgroup checkpoint (no {', '.join(missing)}); {fix}")
    return state
