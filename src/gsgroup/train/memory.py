"""Planned memory of a training run, checked against the machine before training starts.

``memory_plan`` adds what grows with the run: the images as held (``View.pixels``), the Gaussians
at the cap (parameters, gradients, two Adam moments, densification statistics) and the
rasterizer's working set for one view (per Gaussian, per tile intersection, per pixel; constants
measured with benchmarks/memory.py). ``check_memory`` prints it and raises InputError when it
would not fit the available memory (``MemAvailable`` of /proc/meminfo, or the free memory of the
CUDA device), instead of letting the run be killed hours later when densification reaches the cap.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import InputError

GB = 1024**3
RASTER_BYTES_PER_GAUSSIAN = 600  # projection records, sort keys, tile ranges, gradients of the projection
# parameters, gradients, Adam's two moments, and the step's temporaries (SH coefficients gathered and
# evaluated, activations, their gradients): 6 float32 copies, calibrated with benchmarks/memory.py
# (1M Gaussians, SH degree 3, 1920x1080: 3.3 GB peak RSS measured, 3.3 GB planned)
COPIES_PER_PARAMETER = 6
TILES_PER_GAUSSIAN = 12  # tile intersections per visible Gaussian (benchmarks/memory.py measures it)
BYTES_PER_PIXEL_CHANNEL = 16  # image, its gradient, per-pixel state of the backward pass
HEADROOM = 1.15  # allocator slack and Python/torch/numba runtime


def floats_per_gaussian(sh_degree: int, id_dim: int) -> int:
    """Parameters of one Gaussian: means 3, quats 4, scales 3, opacity 1, SH 3 (deg+1)^2, ids."""
    return 11 + 3 * (sh_degree + 1) ** 2 + id_dim


def gaussian_bytes(n: int, sh_degree: int, id_dim: int) -> int:
    """Training state of ``n`` Gaussians: parameters, gradients, Adam's two moments and the step's
    temporaries, densification statistics, and the rasterizer's per-Gaussian and per-intersection memory."""
    d = 3 + id_dim
    per = 4 * COPIES_PER_PARAMETER * floats_per_gaussian(sh_degree, id_dim) + 8 + RASTER_BYTES_PER_GAUSSIAN + 12 * d
    per += TILES_PER_GAUSSIAN * (16 + 4 * (7 + d))
    return int(n) * per


@dataclass
class MemoryPlan:
    """Bytes of each part and the total (with headroom), the Gaussian count planned for, and the
    memory available (None when unknown)."""

    images: int
    gaussians: int
    raster: int
    n_gaussians: int
    capped: bool
    available: int | None
    where: str

    @property
    def total(self) -> int:
        return int(HEADROOM * (self.images + self.gaussians + self.raster))

    def line(self) -> str:
        cap = f"{self.n_gaussians:,} Gaussians at the cap" if self.capped else f"{self.n_gaussians:,} Gaussians now"
        avail = "unknown" if self.available is None else f"{self.available / GB:.1f} GB"
        return (
            f"planned memory: images {self.images / GB:.2f} GB + {cap} {self.gaussians / GB:.2f} GB + "
            f"rasterizer {self.raster / GB:.2f} GB = {self.total / GB:.1f} GB of {avail} available ({self.where})"
        )

    def max_gaussians(self, sh_degree: int, id_dim: int) -> int:
        """The largest Gaussian count that still fits the available memory (0 if none)."""
        if self.available is None:
            return 0
        room = self.available / HEADROOM - self.images - self.raster
        return max(0, int(room // max(1, gaussian_bytes(1, sh_degree, id_dim))))


def available_bytes(device: torch.device | str = "cpu") -> int | None:
    """Free memory now: MemAvailable of /proc/meminfo for the CPU, cudaMemGetInfo for a GPU; None if unknown."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def memory_plan(views, n_now: int, cap: int | None, sh_degree: int, id_dim: int, device="cpu") -> MemoryPlan:
    """The plan for training on ``views`` (objects with ``pixels`` or ``image``, width, height) from
    ``n_now`` Gaussians up to ``cap`` (None: uncapped, the current count is planned for)."""
    images = sum(int((v.pixels if hasattr(v, "pixels") else v.image).nbytes) for v in views)
    n = max(int(cap), n_now) if cap else n_now
    pixels = max((v.width * v.height for v in views), default=0)
    raster = pixels * BYTES_PER_PIXEL_CHANNEL * (3 + id_dim + 2)
    device = torch.device(device)
    return MemoryPlan(
        images, gaussian_bytes(n, sh_degree, id_dim), raster, n, cap is not None, available_bytes(device), str(device)
    )


def check_memory(plan: MemoryPlan, sh_degree: int, id_dim: int) -> None:
    """Print the plan; raise InputError naming --max-gaussians / --resolution when it does not fit."""
    print(plan.line(), flush=True)
    if plan.available is None or plan.total <= plan.available:
        if not plan.capped and plan.available is not None:
            most = plan.max_gaussians(sh_degree, id_dim)
            print(f"  no --max-gaussians cap: densification could outgrow memory beyond about {most:,} Gaussians")
        return
    most = plan.max_gaussians(sh_degree, id_dim)
    fix = f"pass --max-gaussians {most:,}".replace(",", "") if most > 1000 else "lower --resolution"
    raise InputError(
        f"training would need about {plan.total / GB:.1f} GB but {plan.available / GB:.1f} GB is available "
        f"({plan.where}); {fix} or lower --resolution",
    )
