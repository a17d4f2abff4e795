"""A learned environment behind the Gaussians: a color for every viewing direction.

Sky, white walls far away and studio backdrops are infinitely far for every camera: the color a
pixel sees there depends on its ray direction only. A fixed background color forces Gaussians to
paint them, and Gaussians that paint the sky in one training view float in front of the scene in
every other view. The environment holds that color instead: spherical harmonics of the ray
direction (low degree, so it cannot paint foreground detail), composited behind the Gaussians

    C(pixel) = sum_i c_i alpha_i T_i + T_final * env(direction(pixel)),

with T_final = 1 - rendered alpha. It is trained with the Gaussians and saved with the run.
"""

from __future__ import annotations

import math
import os
import pickle
from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import InputError
from ..model.sh import rgb_to_sh, sh_basis

GRID_STEP = 4  # the environment is evaluated every this many pixels and interpolated in between


def pixel_directions(
    viewmat: torch.Tensor,
    K: torch.Tensor,
    width: int,
    height: int,
    columns: torch.Tensor | None = None,
    rows: torch.Tensor | None = None,
) -> torch.Tensor:
    """Unit world-space ray directions [H,W,3] through the pixel centres (+0.5) of a pinhole view.

    viewmat [4,4] world-to-camera (OpenCV axes), K [3,3]. ``columns`` [W'] / ``rows`` [H'] give
    other image x / y coordinates to cast through instead (then the result is [H',W',3])."""
    dev = viewmat.device
    u = torch.arange(width, dtype=torch.float32, device=dev) + 0.5 if columns is None else columns.to(dev)
    v = torch.arange(height, dtype=torch.float32, device=dev) + 0.5 if rows is None else rows.to(dev)
    x = (u - K[0, 2]) / K[0, 0]
    y = (v - K[1, 2]) / K[1, 1]
    cam = torch.stack(torch.broadcast_tensors(x[None, :], y[:, None], torch.ones(len(v), len(u), device=dev)), dim=-1)
    d = cam @ viewmat[:3, :3]  # R^T applied to each row vector
    return d / d.norm(dim=-1, keepdim=True)


def _grid(n: int, step: int) -> torch.Tensor:
    """Sample positions from the first to the last pixel centre of an n-pixel axis, about ``step`` apart."""
    return torch.linspace(0.5, n - 0.5, max(2, math.ceil((n - 1) / step) + 1))


def grid_directions(viewmat: torch.Tensor, K: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Ray directions [H',W',3] on a grid of pixel centres about GRID_STEP pixels apart, from the
    first to the last pixel of each axis (every pixel of images under 2 GRID_STEP pixels).
    Environment.image interpolates between them; a view's grid can be computed once and kept."""
    if width <= 2 * GRID_STEP or height <= 2 * GRID_STEP:
        return pixel_directions(viewmat, K, width, height)
    return pixel_directions(viewmat, K, width, height, _grid(width, GRID_STEP), _grid(height, GRID_STEP))


class Environment:
    """Color as a function of direction: SH coefficients ``coeffs`` [(degree+1)^2, 3] (3DGS's
    convention, color = SH + 0.5, clamped at 0)."""

    def __init__(self, coeffs: torch.Tensor):
        k = coeffs.shape[0]
        degree = round(k**0.5) - 1
        if coeffs.dim() != 2 or coeffs.shape[1] != 3 or (degree + 1) ** 2 != k or degree > 3:
            raise InputError(
                f"environment coefficients must have shape [(d+1)^2, 3] with d <= 3, got {list(coeffs.shape)}"
            )
        self.coeffs = coeffs
        self.degree = degree

    @classmethod
    def constant(cls, color, degree: int = 3) -> Environment:
        """The same color [3] in every direction (to start training from)."""
        coeffs = torch.zeros((degree + 1) ** 2, 3)
        coeffs[0] = rgb_to_sh(torch.as_tensor(color, dtype=torch.float32))
        return cls(coeffs)

    def colors(self, dirs: torch.Tensor) -> torch.Tensor:
        """Colors [...,3] for unit directions dirs [...,3] (differentiable in ``coeffs``)."""
        basis = sh_basis(self.degree, dirs.reshape(-1, 3))
        return torch.clamp_min(basis @ self.coeffs + 0.5, 0.0).reshape(*dirs.shape)

    def image(self, grid_dirs: torch.Tensor, width: int, height: int) -> torch.Tensor:
        """What the environment alone looks like from a view: [H,W,3], from the view's
        grid_directions [H',W',3].

        Exact on the grid, bilinear in between: a degree <= 3 color varies far too slowly across
        4 pixels for the difference to show, and it costs 1/16 of evaluating every pixel."""
        coarse = self.colors(grid_dirs)
        if coarse.shape[:2] == (height, width):
            return coarse
        fine = F.interpolate(coarse.permute(2, 0, 1)[None], size=(height, width), mode="bilinear", align_corners=True)
        return fine[0].permute(1, 2, 0)

    def view_image(self, viewmat: torch.Tensor, K: torch.Tensor, width: int, height: int) -> torch.Tensor:
        """image() for a pinhole view (viewmat [4,4], K [3,3]): [H,W,3]."""
        return self.image(grid_directions(viewmat, K, width, height), width, height)

    def save(self, path: str | os.PathLike) -> None:
        from ..fileio import atomic_path

        with atomic_path(Path(path)) as tmp:
            torch.save({"coeffs": self.coeffs.detach().clone()}, tmp)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Environment:
        try:
            state = torch.load(path, weights_only=True, map_location="cpu")
            return cls(state["coeffs"].float())
        except (OSError, RuntimeError, KeyError, TypeError, pickle.UnpicklingError) as e:
            raise InputError(f"{path}: not a readable environment ({e}); retrain the run") from None
