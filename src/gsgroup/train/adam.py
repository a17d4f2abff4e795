"""Adam with a fused Numba update for float32 CPU parameters.

``FusedAdam`` is ``torch.optim.Adam`` (same constructor, parameter groups, state layout and
``state_dict``, so densification's row edits, checkpoints and older checkpoints work unchanged);
only ``step`` differs: each parameter is updated by one multi-threaded kernel (``_fused.adam``)
instead of about ten PyTorch operators with their temporaries. Other devices and dtypes, and the
options the kernel does not implement (amsgrad, maximize, weight decay, differentiable,
capturable), take torch.optim.Adam's own step, the path the tests compare against.
"""

from __future__ import annotations

import torch

from . import _fused

PARALLEL_MIN = 200_000  # elements from which the update runs on all Numba threads


def _plain(group: dict) -> bool:
    """True when a parameter group uses only what the fused kernel implements."""
    return not (
        group["amsgrad"]
        or group["maximize"]
        or group["weight_decay"]
        or group["differentiable"]
        or group["capturable"]
        or group.get("decoupled_weight_decay", False)
        or isinstance(group["lr"], torch.Tensor)
    )


def _fusable(p: torch.Tensor) -> bool:
    g = p.grad
    return (
        p.device.type == "cpu"
        and p.dtype == torch.float32
        and p.is_contiguous()
        and g.dtype == torch.float32
        and g.is_contiguous()
        and not g.is_sparse
    )


class FusedAdam(torch.optim.Adam):
    """torch.optim.Adam whose step runs one fused Numba kernel per float32 CPU parameter."""

    @torch.no_grad()
    def step(self, closure=None):
        """One Adam step over every parameter with a gradient (parameters without one are skipped
        and their step count stays, as in torch.optim.Adam)."""
        if closure is not None or not all(_plain(g) for g in self.param_groups):
            return super().step(closure)
        params = [p for g in self.param_groups for p in g["params"] if p.grad is not None]
        if not all(_fusable(p) for p in params):
            return super().step(closure)
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:  # torch.optim.Adam's lazy initialisation
                    state["step"] = torch.tensor(0.0, dtype=torch.float32)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                for key in ("exp_avg", "exp_avg_sq"):
                    state[key] = state[key].contiguous()
                state["step"] += 1
                args = [t.detach().view(-1).numpy() for t in (p, p.grad, state["exp_avg"], state["exp_avg_sq"])]
                kernel = _fused.adam if p.numel() >= PARALLEL_MIN else _fused.adam_serial
                kernel(*args, float(group["lr"]), float(beta1), float(beta2), float(group["eps"]), float(state["step"]))
        return None
