"""Gaussian parameters, initialisation and PLY I/O."""

from .gaussians import Gaussians, from_points, random_points_in_frustums
from .ply import load_ply, save_ply

__all__ = ["Gaussians", "from_points", "random_points_in_frustums", "load_ply", "save_ply"]
