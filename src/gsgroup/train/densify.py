"""Adaptive density control of 3DGS: clone, split, prune and opacity reset.

Like gsplat's strategy objects: the trainer calls ``accumulate`` after every backward pass and
``step`` after every optimiser step; the strategy edits the parameters and the Adam state in place.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import torch
from torch import nn

from ..geometry import quat_to_rotmat
from ..options import check_bounds, option

REFERENCE_ITERATIONS = 30_000  # the 3DGS schedule below is defined for this many iterations


@dataclass
class DensifyConfig:
    """3DGS defaults, for a 30k-iteration run. ``scaled`` stretches the schedule to other lengths."""

    grad_threshold: float = 0.0002  # on the NDC-space positional gradient, as 3DGS
    percent_dense: float = 0.01  # clone below / split above this fraction of the scene extent
    prune_opacity: float = 0.005
    max_world_size: float = 0.1  # fraction of the scene extent; applied after the first opacity reset
    densify_from: int = 500
    densify_until: int = 15_000
    densify_every: int = 100
    reset_every: int = 3_000
    max_gaussians: int | None = option(None, "cap on the number of Gaussians", min=1)
    # Gaussians whose blending weight alpha*T summed over all training views (in pixels) is below
    # this are pruned when densification ends and when training ends (only in runs that densify):
    # no training view constrains them, so they can float anywhere and veil novel views
    # (LightGaussian's global significance, used here as a floater filter).
    prune_unseen_weight: float = 1.0

    def __post_init__(self):
        check_bounds(self)

    def scaled(self, iterations: int) -> DensifyConfig:
        """The same schedule stretched to ``iterations``.

        The densification interval never drops below its 3DGS value (100): gradient statistics must
        average over a few epochs, and shorter intervals let the Gaussian count explode
        (measured on the built-in scene: 52k Gaussians after 400 of 3000 iterations at interval 10,
        17k at interval 100, with better PSNR).
        """
        s = iterations / REFERENCE_ITERATIONS
        return replace(
            self,
            densify_from=round(self.densify_from * s),
            densify_until=round(self.densify_until * s),
            densify_every=max(self.densify_every, round(self.densify_every * s)),
            reset_every=max(self.densify_every, round(self.reset_every * s)),
        )

    def to_dict(self) -> dict:
        return asdict(self)


def _edit(params: dict[str, nn.Parameter], optimizer: torch.optim.Optimizer, edit_param, edit_state) -> None:
    """Replace every parameter by ``edit_param(name, tensor)`` and its Adam moments by ``edit_state(tensor)``."""
    for group in optimizer.param_groups:
        old = group["params"][0]
        name = group["name"]
        new = nn.Parameter(edit_param(name, old.detach()))
        state = optimizer.state.pop(old, None)
        if state:
            for key in ("exp_avg", "exp_avg_sq"):
                state[key] = edit_state(state[key])
            optimizer.state[new] = state
        group["params"][0] = new
        params[name] = new


def append_gaussians(params, optimizer, new: dict[str, torch.Tensor]) -> None:
    """Append Gaussians (one tensor per parameter name, [M,...]); their Adam moments start at zero."""
    m = next(iter(new.values())).shape[0]
    _edit(
        params,
        optimizer,
        lambda name, p: torch.cat([p, new[name].to(p.dtype)]),
        lambda s: torch.cat([s, s.new_zeros((m, *s.shape[1:]))]),
    )


def keep_gaussians(params, optimizer, keep: torch.Tensor) -> None:
    """Keep only Gaussians where ``keep`` [N] bool is True, parameters and Adam moments alike."""
    _edit(params, optimizer, lambda name, p: p[keep], lambda s: s[keep])


class Densifier:
    """Gradient statistics and the clone / split / prune / reset schedule of 3DGS.

    Screen-size pruning is left out: in the reference 3DGS code it never fires (its radii are
    reset just before the test) and gsplat disables it by default.
    """

    def __init__(self, cfg: DensifyConfig, extent: float, n: int, seed: int = 0):
        self.cfg = cfg
        self.extent = extent
        self.grad_sum = torch.zeros(n)
        self.count = torch.zeros(n)
        self.generator = torch.Generator().manual_seed(seed)

    def state_dict(self) -> dict:
        return {
            "grad_sum": self.grad_sum,
            "count": self.count,
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.grad_sum, self.count = state["grad_sum"], state["count"]
        self.generator.set_state(state["generator"])

    def accumulate(self, step: int, means2d_grad: torch.Tensor, radii: torch.Tensor, width: int, height: int) -> None:
        """Add one view's statistics. means2d_grad [N,2] in pixels, radii [N] (0 = not visible)."""
        if step >= self.cfg.densify_until or means2d_grad is None:
            return
        visible = radii > 0
        # 3DGS thresholds the gradient w.r.t. NDC coordinates: d(pixel)/d(ndc) = size / 2.
        g = means2d_grad[visible] * torch.tensor([width * 0.5, height * 0.5], device=means2d_grad.device)
        self.grad_sum[visible] += g.norm(dim=-1)
        self.count[visible] += 1

    def steps_since_reset(self, step: int) -> int | None:
        """Iterations since the last opacity reset at or before ``step`` (None if there was none yet).
        Renders right after a reset are nearly transparent and say nothing about the model."""
        cfg = self.cfg
        last = min(step, cfg.densify_until - 1) // cfg.reset_every * cfg.reset_every
        return step - last if last > 0 else None

    @torch.no_grad()
    def step(self, step: int, params: dict[str, nn.Parameter], optimizer: torch.optim.Optimizer) -> bool:
        """Run the schedule after optimiser step ``step`` (1-based). Returns True if the set of Gaussians changed."""
        cfg = self.cfg
        changed = False
        if step < cfg.densify_until and step > cfg.densify_from and step % cfg.densify_every == 0:
            self._densify_and_prune(step, params, optimizer)
            changed = True
        if step < cfg.densify_until and step % cfg.reset_every == 0:
            self._reset_opacity(params, optimizer)
        return changed

    def _densify_and_prune(self, step: int, params, optimizer) -> None:
        cfg = self.cfg
        n = params["means"].shape[0]
        grads = torch.nan_to_num(self.grad_sum / self.count.clamp_min(1))
        scale_max = torch.exp(params["scales"]).max(dim=1).values
        small = scale_max <= cfg.percent_dense * self.extent
        candidates = torch.nonzero(grads >= cfg.grad_threshold).squeeze(1)
        if cfg.max_gaussians is not None:
            budget = max(0, cfg.max_gaussians - n)
            if len(candidates) > budget:  # keep the strongest gradients within the cap
                order = torch.argsort(grads[candidates], descending=True, stable=True)
                candidates = torch.sort(candidates[order[:budget]]).values
        clone = candidates[small[candidates]]
        split = candidates[~small[candidates]]

        new = {k: p.detach()[clone] for k, p in params.items()}
        # Split: two samples from each big Gaussian, scaled down by 1.6, replacing it.
        samples = 2
        p = {k: v.detach()[split].repeat_interleave(samples, dim=0) for k, v in params.items()}
        if len(split):
            stds = torch.exp(p["scales"])
            offsets = torch.randn(stds.shape, generator=self.generator).to(stds.device) * stds
            p["means"] = p["means"] + torch.einsum("nij,nj->ni", quat_to_rotmat(p["quats"]), offsets)
            p["scales"] = p["scales"] - math.log(0.8 * samples)
        new = {k: torch.cat([new[k], p[k]]) for k in new}
        append_gaussians(params, optimizer, new)

        prune = torch.sigmoid(params["opacities"].detach()) < cfg.prune_opacity
        prune[split] = True
        if step > cfg.reset_every:
            big_world = torch.exp(params["scales"].detach()).max(dim=1).values > cfg.max_world_size * self.extent
            prune |= big_world
        if prune.all():  # never prune a scene to nothing
            prune[torch.argmax(params["opacities"].detach())] = False
        keep_gaussians(params, optimizer, ~prune)
        self.grad_sum = torch.zeros(params["means"].shape[0], device=params["means"].device)
        self.count = torch.zeros(params["means"].shape[0], device=params["means"].device)

    def _reset_opacity(self, params, optimizer) -> None:
        """Clamp opacities to at most 0.01 and clear their Adam moments (3DGS)."""
        cap = math.log(0.01 / 0.99)
        for group in optimizer.param_groups:
            if group["name"] == "opacities":
                state = optimizer.state.get(group["params"][0])
                if state:
                    state["exp_avg"].zero_()
                    state["exp_avg_sq"].zero_()
                group["params"][0].data.clamp_(max=cap)
