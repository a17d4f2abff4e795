"""Planned memory of a training run, checked against the machine before training starts.

``memory_plan`` adds what grows with the run: the images as held (``View.pixels``), the Gaussians
at the cap (parameters, gradients, two Adam moments, densification statistics) and the
rasterizer's working set for one view (per Gaussian, per tile intersection, per pixel; constants
measured with benchmarks/memory.py). ``check_memory`` prints it and raises InputError when it
would not fit the available memory (``MemAvailable`` of /proc/meminfo, or the free memory of the
CUDA device), instead of letting the run be killed hours later when densification reaches the cap.

``check_before_loading`` makes the same plan from the image files' headers (sizes and modes, no
pixel decoded) before a scene loads, so a capture that does not fit is refused before its images are
read. With ``--image-cache N`` (images streamed from disk) only the N largest images count.
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
STREAM_SUGGESTION = 8  # the --image-cache a refusal suggests


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
    streamed: int = 0  # --image-cache: images held decoded (0: all held)
    image_count: int = 0
    largest_image: int = 0  # bytes of the largest image as held
    known: bool = True  # False: planned before loading, the Gaussian count not yet known (no cap)

    @property
    def total(self) -> int:
        return int(HEADROOM * (self.images + self.gaussians + self.raster))

    def line(self) -> str:
        cap = f"{self.n_gaussians:,} Gaussians at the cap" if self.capped else f"{self.n_gaussians:,} Gaussians now"
        cap = cap if self.known else "Gaussians (counted once loaded)"
        avail = "unknown" if self.available is None else f"{self.available / GB:.1f} GB"
        held = f" ({min(self.streamed, self.image_count)} of {self.image_count} decoded)" if self.streamed else ""
        return (
            f"planned memory: images{held} {self.images / GB:.2f} GB + {cap} {self.gaussians / GB:.2f} GB + "
            f"rasterizer {self.raster / GB:.2f} GB = {self.total / GB:.1f} GB of {avail} available ({self.where})"
        )

    def streaming_fits(self) -> bool:
        """Whether streaming the images (``--image-cache STREAM_SUGGESTION``) would make the plan fit."""
        if self.streamed or self.available is None or self.image_count <= STREAM_SUGGESTION:
            return False
        images = STREAM_SUGGESTION * self.largest_image
        return HEADROOM * (images + self.gaussians + self.raster) <= self.available

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


def _view_bytes(v) -> int:
    """Bytes of a view's pixels as held, without reading a streamed view's pixels."""
    if getattr(v, "streamed", False):
        return v.nbytes
    return int((v.pixels if hasattr(v, "pixels") else v.image).nbytes)


def plan_from_sizes(
    sizes, n_now: int, cap: int | None, sh_degree: int, id_dim: int, device="cpu", streamed: int = 0, known=True
) -> MemoryPlan:
    """The plan for images of ``sizes`` [(width, height, bytes held)], from ``n_now`` Gaussians up to
    ``cap`` (None: uncapped, the current count is planned for); ``streamed`` N > 0: only the N largest
    images are held (``--image-cache``)."""
    held = sorted(b for _, _, b in sizes)
    images = sum(held[-streamed:] if streamed else held)
    n = max(int(cap), n_now) if cap else n_now
    pixels = max((w * h for w, h, _ in sizes), default=0)
    raster = pixels * BYTES_PER_PIXEL_CHANNEL * (3 + id_dim + 2)
    device = torch.device(device)
    g = gaussian_bytes(n, sh_degree, id_dim)
    avail = available_bytes(device)
    largest = held[-1] if held else 0
    return MemoryPlan(images, g, raster, n, cap is not None, avail, str(device), streamed, len(held), largest, known)


def memory_plan(views, n_now: int, cap: int | None, sh_degree: int, id_dim: int, device="cpu") -> MemoryPlan:
    """The plan for training on ``views`` (objects with ``pixels`` or ``image``, width, height; streamed
    views count their cache) from ``n_now`` Gaussians up to ``cap`` (None: uncapped, the current count)."""
    streamed = next((v.cache.capacity for v in views if getattr(v, "streamed", False)), 0)
    sizes = [(v.width, v.height, _view_bytes(v)) for v in views]
    return plan_from_sizes(sizes, n_now, cap, sh_degree, id_dim, device, streamed)


def check_before_loading(
    path, resolution, image_cache: int, n_now: int, cap: int | None, sh_degree: int, id_dim: int, device="cpu"
) -> MemoryPlan | None:
    """Plan from the dataset's image headers (``data.streaming.scene_footprint``), print it and refuse
    (InputError) before any image is decoded; None when the dataset's frames cannot be listed (the
    loader then reports why). ``n_now``: the Gaussians known before loading (0: counted once loaded)."""
    from ..data.streaming import scene_footprint
    from ..render.gsplat_backend import resolve_device

    sizes = scene_footprint(path, resolution)
    if sizes is None:
        return None
    known = bool(cap) or n_now > 0
    plan = plan_from_sizes(sizes, n_now, cap, sh_degree, id_dim, resolve_device(device), image_cache, known)
    check_memory(plan, sh_degree, id_dim, note=False)  # the uncapped note comes once the count is known
    return plan


def check_memory(plan: MemoryPlan, sh_degree: int, id_dim: int, quiet: bool = False, note: bool = True) -> None:
    """Print the plan (``quiet``: not) and, with ``note``, how far an uncapped run may grow; raise InputError
    naming --max-gaussians, --image-cache (when streaming the images would fit) and --resolution when it
    does not fit."""
    if not quiet:
        print(plan.line(), flush=True)
    if plan.available is None or plan.total <= plan.available:
        if not plan.capped and plan.available is not None and plan.known and note:
            most = plan.max_gaussians(sh_degree, id_dim)
            print(f"  no --max-gaussians cap: densification could outgrow memory beyond about {most:,} Gaussians")
        return
    most = plan.max_gaussians(sh_degree, id_dim)
    fixes = [f"pass --max-gaussians {most}"] if most > 1000 else []
    stream = f"--image-cache {STREAM_SUGGESTION} (stream the images from disk)"
    if plan.streaming_fits():
        fixes.insert(0, f"pass {stream}")
    elif not plan.streamed and plan.image_count > STREAM_SUGGESTION:
        fixes.append(stream)
    raise InputError(
        f"training would need about {plan.total / GB:.1f} GB but {plan.available / GB:.1f} GB is available "
        f"({plan.where}); {' or '.join([*fixes, 'lower --resolution'])}",
    )


def check_config_before_loading(data, train, n_now: int, device="cpu") -> MemoryPlan | None:
    """``check_before_loading`` for a run's DataConfig ``data`` and TrainConfig ``train`` (the cap is
    --max-gaussians while densifying, else the Gaussians given, ``n_now``; 0 = not known yet)."""
    cap = train.densify.max_gaussians if train.densify.densify_until > 0 else (n_now or None)
    sh, ids = train.sh_degree, train.identity.id_dim
    return check_before_loading(data.path, data.resolution, data.image_cache, n_now, cap, sh, ids, device)
