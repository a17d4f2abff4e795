"""Training on a device: the ``--device`` option and moving a built Trainer onto it.

``--device auto`` (default) trains on CUDA when torch sees a GPU and gsplat is installed
(``pip install 'gsgroup[cuda]'``), else on the CPU; ``--device cuda`` without either is a one-line
error naming the fix (``render.gsplat_backend.resolve_device``). The device is a property of the
machine, not of the run: it is not saved in the run's config, and checkpoints, PLYs and
environments are written from and read into CPU tensors, so a run trained on one device loads on
the other.

``move_trainer`` puts a Trainer's Gaussians, Adam state, environment, densification statistics,
views (images stay uint8/uint16 there and are converted per step) and, for identity training, the
classifier, its Adam state and the masks on the device. Rendering then goes through
``rasterize(backend="auto")``: gsplat for CUDA tensors.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from ..options import option
from ..render.gsplat_backend import resolve_device

__all__ = ["DeviceOptions", "device_option", "resolve_device", "move_trainer", "views_to"]


def device_option():
    """The ``--device`` field of a config (a fresh dataclass field each call)."""
    return option(
        "auto",
        "cpu, cuda, cuda:N or auto (CUDA when torch sees a GPU and gsplat is installed: pip install 'gsgroup[cuda]')",
    )


@dataclass
class DeviceOptions:
    """Where to compute (not saved with the run)."""

    device: str = device_option()


def views_to(views: list, device: torch.device) -> list:
    """ViewTensors moved to ``device`` (their cached environment directions are recomputed there)."""
    out = []
    for vt in views:
        bg = vt.background.to(device) if vt.background is not None else None
        pixels = None if vt.pixels is None else vt.pixels.to(device)  # None: streamed from disk per access
        moved = replace(vt, pixels=pixels, viewmat=vt.viewmat.to(device), K=vt.K.to(device))
        out.append(replace(moved, campos=vt.campos.to(device), background=bg, env_dirs=None))
    return out


def _move_state(opt: torch.optim.Optimizer, swap: dict, device: torch.device) -> None:
    """Point ``opt`` at the moved parameters (``swap``: old -> new) and move its state tensors
    (Adam's ``step`` counter stays where Adam keeps it)."""
    for group in opt.param_groups:
        group["params"] = [swap.get(p, p) for p in group["params"]]
    state = {}
    for p, st in opt.state.items():
        st = {k: v.to(device) if isinstance(v, torch.Tensor) and k != "step" else v for k, v in st.items()}
        state[swap.get(p, p)] = st
    opt.state.clear()
    opt.state.update(state)


def move_trainer(trainer, device: torch.device | str) -> None:
    """Move everything a Trainer (or GroupingTrainer) computes with onto ``device``, in place."""
    device = torch.device(device)
    swap = {}
    params = {}
    for k, p in trainer.params.items():
        params[k] = nn.Parameter(p.detach().to(device), requires_grad=p.requires_grad)
        swap[p] = params[k]
    trainer.params = params
    env = getattr(trainer, "env", None)
    if env is not None:
        coeffs = env.coeffs.detach().to(device).requires_grad_(True)
        swap[env.coeffs] = coeffs
        env.coeffs = coeffs
    classifier = getattr(trainer, "classifier", None)
    if classifier is not None:
        classifier.to(device)  # moves its Parameters in place: the optimizer's references stay valid
    for opt in vars(trainer).values():
        if isinstance(opt, torch.optim.Optimizer):
            _move_state(opt, swap, device)
    trainer.views = views_to(trainer.views, device)
    trainer.test_views = views_to(trainer.test_views, device)
    trainer.background = trainer.background.to(device)
    d = trainer.densifier
    d.grad_sum, d.count = d.grad_sum.to(device), d.count.to(device)
    if getattr(trainer, "masks", None) is not None:
        trainer.masks = [None if m is None else m.to(device) for m in trainer.masks]
    trainer.device = device
