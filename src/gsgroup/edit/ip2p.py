"""InstructPix2Pix (Brooks et al., CVPR 2023) as restyle's 2D editor, through ``diffusers``
(``pip install 'gsgroup[ip2p]'``), from a local folder in the diffusers layout, e.g. a download of
``timbrooks/instruct-pix2pix`` (``huggingface-cli download timbrooks/instruct-pix2pix --local-dir DIR``).
Nothing is fetched at run time (``local_files_only``). The safety checker is not loaded.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import torch

from ..errors import InputError

EXTRA = "pip install 'gsgroup[ip2p]'"


def load_pipeline(folder: str | os.PathLike):
    """StableDiffusionInstructPix2PixPipeline from ``folder`` (model_index.json, unet/, vae/,
    text_encoder/, tokenizer/, scheduler/); a one-line InputError for a missing extra or a bad folder."""
    path = Path(folder)
    if not (path / "model_index.json").is_file():
        raise InputError(
            f"ip2p_checkpoint {folder}: no model_index.json there; give a local InstructPix2Pix folder in the "
            "diffusers layout (e.g. a download of timbrooks/instruct-pix2pix)",
            "ip2p_checkpoint",
        )
    try:
        from diffusers import StableDiffusionInstructPix2PixPipeline
    except ImportError:
        raise InputError(
            f"instruction: InstructPix2Pix needs diffusers and transformers: {EXTRA}", "instruction"
        ) from None
    try:
        pipe = StableDiffusionInstructPix2PixPipeline.from_pretrained(
            str(path), local_files_only=True, safety_checker=None, requires_safety_checker=False
        )
    except (OSError, ValueError, KeyError, TypeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(
            f"ip2p_checkpoint {folder}: not a loadable InstructPix2Pix pipeline ({first})", "ip2p_checkpoint"
        ) from None
    pipe.set_progress_bar_config(disable=True)
    return pipe


class Ip2pEditor:
    """``editor(image [H,W,3] float in [0,1], instruction, steps, guidance, image_guidance, generator)``
    -> the edited image [H,W,3] float32 at the input size (the model runs at a size divisible by 8)."""

    def __init__(self, pipe):
        self.pipe = pipe

    @classmethod
    def from_checkpoint(cls, folder: str | os.PathLike) -> Ip2pEditor:
        return cls(load_pipeline(folder))

    @torch.no_grad()
    def __call__(
        self,
        image: np.ndarray,
        instruction: str,
        steps: int = 20,
        guidance_scale: float = 7.5,
        image_guidance_scale: float = 1.5,
        generator: torch.Generator | None = None,
    ) -> np.ndarray:
        from PIL import Image

        h, w = image.shape[:2]
        hh, ww = max(64, round(h / 8) * 8), max(64, round(w / 8) * 8)
        u8 = (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)
        src = Image.fromarray(cv2.resize(u8, (ww, hh), interpolation=cv2.INTER_AREA))
        out = self.pipe(
            instruction,
            image=src,
            num_inference_steps=steps,
            guidance_scale=guidance_scale,
            image_guidance_scale=image_guidance_scale,
            generator=generator,
            output_type="np",
        ).images[0]
        return np.clip(cv2.resize(out.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA), 0, 1)
