"""Differentiable CPU Gaussian rasterizer (Numba kernels) and forward-only helpers."""

from .rasterize import RasterOutput, contributions, dominant_gaussian, rasterize

__all__ = ["RasterOutput", "rasterize", "contributions", "dominant_gaussian"]
