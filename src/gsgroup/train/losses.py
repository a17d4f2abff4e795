"""Image losses and metrics: L1, SSIM (11x11 Gaussian window, sigma 1.5), PSNR.

``rgb_loss`` runs as one fused Numba kernel (loss and gradient in one pass, ``_fused.l1_ssim``)
for float32 CPU images, and as plain PyTorch operators otherwise (``rgb_loss_torch``: other
devices, float64, or a reference that needs a gradient); the tests compare the two."""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

from . import _fused


@functools.lru_cache(maxsize=4)
def _gauss_1d(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return (g / g.sum()).float()


def _blur(x: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur with zero padding. x [B,C,H,W] (any float dtype and device)."""
    g = _gauss_1d().to(x)
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


def rgb_loss_torch(img: torch.Tensor, ref: torch.Tensor, ssim_weight: float = 0.2) -> torch.Tensor:
    """rgb_loss in plain PyTorch operators (any device and dtype). img, ref [H,W,C]."""
    return (1.0 - ssim_weight) * (img - ref).abs().mean() + ssim_weight * (1.0 - ssim(img, ref))


class _FusedRgbLoss(torch.autograd.Function):
    """rgb_loss with its gradient computed in the forward pass by one Numba kernel."""

    @staticmethod
    def forward(ctx, img, ref, ssim_weight):
        h, w, c = img.shape
        x = img.detach().reshape(h, w * c).contiguous().numpy()
        y = ref.detach().reshape(h, w * c).contiguous().numpy()
        loss, grad = _fused.l1_ssim(x, y, _gauss_1d().numpy(), c, float(ssim_weight))
        ctx.grad = torch.from_numpy(grad).view(h, w, c)
        return img.new_tensor(loss)

    @staticmethod
    def backward(ctx, grad_loss):
        grad = ctx.grad
        del ctx.grad
        return grad if bool(grad_loss == 1) else grad * grad_loss, None, None


def fusable(*tensors: torch.Tensor) -> bool:
    """True when the fused CPU kernels apply: float32 CPU tensors."""
    return all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors)


def rgb_loss(img: torch.Tensor, ref: torch.Tensor, ssim_weight: float = 0.2) -> torch.Tensor:
    """3DGS photometric loss (1-w)*L1 + w*(1-SSIM). img, ref [H,W,C] (C = 3 in training); a scalar.

    Fused (``_fused.l1_ssim``) for float32 CPU images with a constant ``ref``, else rgb_loss_torch."""
    if img.dim() == 3 and img.shape == ref.shape and fusable(img, ref) and not ref.requires_grad:
        return _FusedRgbLoss.apply(img, ref, ssim_weight)
    return rgb_loss_torch(img, ref, ssim_weight)


def alpha_entropy(alpha: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Mean binary entropy -(a ln a + (1-a) ln(1-a)) of alpha [H,W] or [H,W,1] (clamped to
    [eps, 1-eps]); 0 where every pixel is empty or fully covered, ln 2 at a = 1/2. A scalar."""
    a = alpha.clamp(eps, 1.0 - eps)
    return -(a * a.log() + (1.0 - a) * torch.log1p(-a)).mean()


def psnr(img: torch.Tensor, ref: torch.Tensor) -> float:
    """PSNR in dB of images in [0,1], any equal shapes."""
    mse = torch.mean((img.clamp(0, 1) - ref) ** 2).item()
    return float("inf") if mse == 0 else -10.0 * math.log10(mse)
