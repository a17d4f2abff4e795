"""One view as tensors for training and rendering: the image held as uint8/uint16 pixels and
converted to float per access, and the camera, on any device."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..data.scene import View
from ..geometry import camera_center


@dataclass
class ViewTensors:
    """One view as tensors: pixels [H,W,3|4] (uint8/uint16/float32, as ``View.pixels``), viewmat [4,4],
    K [3,3], campos [3], background [3] (behind RGBA pixels); ``image`` is float32 [H,W,3]. A view
    streamed from disk (``data.streaming``) has ``pixels`` None and reads them from ``source`` per access."""

    name: str
    pixels: torch.Tensor
    viewmat: torch.Tensor
    K: torch.Tensor
    campos: torch.Tensor
    width: int
    height: int
    env_dirs: torch.Tensor | None = None  # environment.grid_directions of this view, made on first use
    background: torch.Tensor | None = None
    source: object | None = None  # a data.streaming.StreamedView when the pixels are not held

    @property
    def image(self) -> torch.Tensor:
        """float32 [H,W,3] in [0,1], converted from the held pixels on each access (on their device);
        bit-identical to ``View.image``."""
        p = self.pixels if self.pixels is not None else torch.from_numpy(self.source.pixels).to(self.viewmat.device)
        scale = {torch.uint8: 255.0, torch.uint16: 65535.0}.get(p.dtype)
        x = p.float() / scale if scale else p
        if x.shape[-1] == 4:
            a = x[..., 3:]
            return x[..., :3] * a + self.background * (1.0 - a)
        return x


def view_tensors(view: View, device: torch.device | str | None = None) -> ViewTensors:
    """A loaded View as tensors on ``device`` (default CPU; the pixels are shared with the View there)."""
    viewmat = torch.from_numpy(np.asarray(view.viewmat, dtype=np.float32)).contiguous().to(device)
    streamed = getattr(view, "streamed", False)
    pixels = None if streamed else getattr(view, "pixels", None)
    pixels = np.ascontiguousarray(view.image, dtype=np.float32) if pixels is None and not streamed else pixels
    bg = getattr(view, "background", (0.0, 0.0, 0.0))
    return ViewTensors(
        name=view.name,
        pixels=None if streamed else torch.from_numpy(pixels).to(device),
        viewmat=viewmat,
        K=torch.from_numpy(np.asarray(view.K, dtype=np.float32)).contiguous().to(device),
        campos=camera_center(viewmat),
        width=view.width,
        height=view.height,
        background=torch.tensor(bg, dtype=torch.float32, device=device),
        source=view if streamed else None,
    )
