"""Fitting a subset of Gaussians to 2D targets: the step shared by the "edit renders in 2D, then fit
in 3D" edits (``inpainting`` fills a hole with new Gaussians, ``restyle`` repaints an object).

``fit_gaussians`` runs Adam over some parameters of the ``free`` Gaussians while the ``fixed`` ones
stay as they are; the loss is the L1 distance of the full render (fixed + free, over the run's
backdrop) to each view's target, optionally weighted per pixel, one random training view per step.
A ``refresh`` callback can replace the targets every few steps from the current state (the
iterative dataset update of Instruct-NeRF2NeRF: 2D edits of the current renders, so views agree).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ..model import Gaussians
from ..model.sh import C0, eval_sh
from ..on_device import backdrop_on, gaussians_on
from ..train.environment import Environment
from ..train.trainer import view_tensors

PARAMS = ("means", "quats", "scales", "opacities", "sh0", "shN")  # what can be fitted, in this order


def merge_subset(g: Gaussians, mask: np.ndarray, part: Gaussians) -> Gaussians:
    """``g`` with the Gaussians where ``mask`` [N] bool is True replaced by ``part`` (same count, same order)."""
    out = g.detach()
    idx = torch.from_numpy(np.flatnonzero(mask))
    for k, v in part.to_dict().items():
        getattr(out, k)[idx] = v.detach().to(getattr(out, k).dtype)
    return out


def _tensors(arrays: list[np.ndarray], device: torch.device) -> list[torch.Tensor]:
    """float32 tensors on ``device`` of numpy arrays (shared with them on the CPU)."""
    return [torch.from_numpy(np.asarray(a, np.float32)).to(device) for a in arrays]


def _free_colors(params: dict, free: Gaussians, campos: torch.Tensor) -> torch.Tensor:
    """Colours [M,3] of the free Gaussians: full SH when shN is fitted, else their DC colour only."""
    if "shN" not in params:
        return torch.clamp_min(params["sh0"][:, 0] * C0 + 0.5, 0.0)
    means = params.get("means", free.means).detach()
    dirs = torch.nn.functional.normalize(means - campos, dim=-1)
    return eval_sh(free.sh_degree, torch.cat([params["sh0"], params["shN"]], dim=1), dirs)


def _render(fixed_act: tuple, fixed_colors, params: dict, free: Gaussians, vt, background, env_image):
    """Differentiable render [H,W,3] of the fixed Gaussians (activated, colours given) and the free ones
    (``params`` where fitted, else their own values), over the background or the environment image."""
    from ..render import rasterize

    get = lambda k: params[k] if k in params else getattr(free, k).detach()
    f_means, f_quats, f_scales, f_opac = fixed_act
    out = rasterize(
        torch.cat([f_means, get("means")]),
        torch.cat([f_quats, get("quats")]),
        torch.cat([f_scales, torch.exp(get("scales"))]),
        torch.cat([f_opac, torch.sigmoid(get("opacities"))]),
        torch.cat([fixed_colors, _free_colors(params | {"sh0": get("sh0")}, free, vt.campos)]),
        vt.viewmat,
        vt.K,
        vt.width,
        vt.height,
        background=None if env_image is not None else background,
    )
    return out.image if env_image is None else out.image + (1.0 - out.alpha) * env_image


def fit_gaussians(
    fixed: Gaussians,
    free: Gaussians,
    views: list,
    targets: list[np.ndarray],
    background: torch.Tensor | Environment,
    lrs: dict[str, float],
    iterations: int,
    seed: int = 0,
    weights: list[np.ndarray] | None = None,
    refresh: Callable[[Gaussians, int], list[np.ndarray]] | None = None,
    refresh_every: int = 0,
    progress: bool = False,
    desc: str = "fine-tune",
    device: torch.device | str = "cpu",
) -> Gaussians:
    """Adam over the ``free`` Gaussians' parameters named in ``lrs`` (keys from PARAMS, value the
    learning rate); returns the fitted copy of ``free`` (the other fields unchanged).

    targets[i] [H,W,3] float in [0,1] is the wanted render of views[i]; the loss is the mean L1 over
    the image, or with weights[i] [H,W] the weighted mean. The fixed Gaussians' view-dependent colours
    are evaluated once per view. Without "shN" in ``lrs`` the free Gaussians render their DC colour.
    ``refresh(current free Gaussians, step)`` -> new targets, called every ``refresh_every`` steps.
    ``device``: where the renders and Adam run (Gaussians, targets, weights, views and the background are
    copied there; on CUDA the renders go through gsplat); the fitted Gaussians come back on the CPU, as
    do the ones ``refresh`` gets."""
    from tqdm import tqdm

    cpu_free, dev = free, torch.device(device)
    fixed, free, background = gaussians_on(fixed, dev), gaussians_on(free, dev), backdrop_on(background, dev)
    names = [k for k in PARAMS if k in lrs]
    params = {k: torch.nn.Parameter(getattr(free, k).clone()) for k in names}
    optim = torch.optim.Adam([{"params": [params[k]], "lr": lrs[k]} for k in names], eps=1e-15)
    fixed_act = tuple(
        t.detach() for t in (fixed.means, fixed.quats, torch.exp(fixed.scales), torch.sigmoid(fixed.opacities))
    )
    f_means = fixed_act[0]
    target_t = _tensors(targets, dev)
    weight_t = None if weights is None else [w[..., None] for w in _tensors(weights, dev)]
    vts = [view_tensors(v, dev) for v in views]
    colors: dict[int, torch.Tensor] = {}
    env = background if isinstance(background, Environment) else None
    env_images: dict[int, torch.Tensor] = {}
    rng = np.random.default_rng(seed)
    order: list[int] = []

    def current() -> Gaussians:
        out = gaussians_on(cpu_free, torch.device("cpu")).detach()
        for k in names:
            setattr(out, k, params[k].detach().clone().cpu())
        return out

    for step in tqdm(range(iterations), desc=desc, disable=not progress):
        if refresh is not None and refresh_every > 0 and step > 0 and step % refresh_every == 0:
            target_t = _tensors(refresh(current(), step), dev)
        if not order:
            order = rng.permutation(len(views)).tolist()
        i = order.pop()
        vt = vts[i]
        if i not in colors:
            with torch.no_grad():
                dirs = torch.nn.functional.normalize(f_means - vt.campos, dim=-1)
                colors[i] = eval_sh(fixed.sh_degree, fixed.sh_coeffs(), dirs)
                if env is not None:
                    env_images[i] = env.view_image(vt.viewmat, vt.K, vt.width, vt.height)
        image = _render(fixed_act, colors[i], params, free, vt, background, env_images.get(i))
        diff = (image - target_t[i]).abs()
        if weight_t is None:
            loss = diff.mean()
        else:
            loss = (diff * weight_t[i]).sum() / (3.0 * weight_t[i].sum()).clamp_min(1e-8)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
    return current()
