"""Image losses and metrics: L1, SSIM (11x11 Gaussian window, sigma 1.5), PSNR."""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F


@functools.lru_cache(maxsize=4)
def _gauss_1d(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return (g / g.sum()).float()


def _blur(x: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur with zero padding. x [B,C,H,W]."""
    g = _gauss_1d()
    c = x.shape[1]
    pad = g.numel() // 2
    x = F.conv2d(x, g.view(1, 1, 1, -1).expand(c, 1, 1, -1), padding=(0, pad), groups=c)
    return F.conv2d(x, g.view(1, 1, -1, 1).expand(c, 1, -1, 1), padding=(pad, 0), groups=c)


def ssim(img: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Mean SSIM of two images [H,W,C] in [0,1] (as in 3DGS: 11x11 Gaussian window, zero padding)."""
    x = img.permute(2, 0, 1)[None]
    y = ref.permute(2, 0, 1)[None]
    c1, c2 = 0.01**2, 0.03**2
    stats = _blur(torch.cat([x, y, x * x, y * y, x * y], dim=1))
    mu_x, mu_y, xx, yy, xy = torch.split(stats, x.shape[1], dim=1)
    mu_xx, mu_yy, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
    num = (2 * mu_xy + c1) * (2 * (xy - mu_xy) + c2)
    den = (mu_xx + mu_yy + c1) * (xx - mu_xx + yy - mu_yy + c2)
    return (num / den).mean()


def rgb_loss(img: torch.Tensor, ref: torch.Tensor, ssim_weight: float = 0.2) -> torch.Tensor:
    """3DGS photometric loss (1-w)*L1 + w*(1-SSIM). img, ref [H,W,3]."""
    return (1.0 - ssim_weight) * (img - ref).abs().mean() + ssim_weight * (1.0 - ssim(img, ref))


def psnr(img: torch.Tensor, ref: torch.Tensor) -> float:
    """PSNR in dB of images in [0,1], any equal shapes."""
    mse = torch.mean((img.clamp(0, 1) - ref) ** 2).item()
    return float("inf") if mse == 0 else -10.0 * math.log10(mse)
