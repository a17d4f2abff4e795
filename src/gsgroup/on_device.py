"""A run's contents on a compute device, for the commands that render (``render``, ``eval``, ``edit``).

The device is a property of the machine, never of the run: what is loaded from disk is on the CPU,
and these helpers return copies on the device (the same objects on the CPU, so the default path
does no extra work); what is written back goes through ``.cpu()``.
"""

from __future__ import annotations

import copy

import torch

from .model import Gaussians
from .render.gsplat_backend import resolve_device
from .segment.segmentation import Segmentation
from .train.environment import Environment

__all__ = ["resolve_device", "gaussians_on", "backdrop_on", "segmentation_on"]


def gaussians_on(g: Gaussians, device: torch.device) -> Gaussians:
    """``g`` with every tensor on ``device`` (``g`` itself when it is there already)."""
    if g.means.device == torch.device(device):
        return g
    return type(g)(**{k: v.to(device) for k, v in g.to_dict().items()})


def backdrop_on(backdrop: torch.Tensor | Environment, device: torch.device) -> torch.Tensor | Environment:
    """A run's backdrop (colour [3] or Environment) on ``device``."""
    if isinstance(backdrop, Environment):
        if backdrop.coeffs.device == torch.device(device):
            return backdrop
        return Environment(backdrop.coeffs.detach().to(device))
    return backdrop.to(device)


def segmentation_on(seg: Segmentation | None, device: torch.device) -> Segmentation | None:
    """A segmentation whose classifier (if any) is a copy on ``device``; lifted labels stay numpy."""
    if seg is None or seg.classifier is None:
        return seg
    if next(seg.classifier.parameters()).device == torch.device(device):
        return seg
    return Segmentation(copy.deepcopy(seg.classifier).to(device), seg.labels, seg.prob)
