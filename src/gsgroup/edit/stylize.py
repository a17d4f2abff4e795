"""Weight-free 2D restyling of an object in a render: colour transfer from a style image, and OpenCV
stylisation effects. Every function takes an image [H,W,3] float in [0,1] (and a mask [H,W] bool of
the object's pixels) and returns a float32 image of the same size; only masked pixels change.

Filter sizes scale with the image width (they are tuned at 640 pixels), so a 64-pixel test render
and a 1600-pixel photo look alike.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..errors import InputError

EFFECTS = ("watercolor", "pencil", "oil", "cartoon")
TEXTURES = ("stylize", "none")  # what follows the colour transfer of a style image


def to_u8(image: np.ndarray) -> np.ndarray:
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def to_float(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float32) / 255.0


def paste(edited: np.ndarray, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``edited`` inside mask [H,W], ``image`` outside -> [H,W,3] float32."""
    return np.where(mask[..., None], edited, image).astype(np.float32)


def _scaled(width: int, size: float, odd: bool = False, lo: int = 1) -> int:
    v = max(lo, int(round(size * width / 640.0)))
    return v + 1 - v % 2 if odd else v


def read_style(path) -> np.ndarray:
    """The style picture as RGB [H,W,3] float32 in [0,1]; a one-line error when it cannot be read."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise InputError(f"style_image {path}: not found or not an image; give a PNG or JPEG picture", "style_image")
    return to_float(img[:, :, ::-1].copy())


def lab_stats(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation [3] of RGB pixels [M,3] in [0,1], in CIE Lab (OpenCV float Lab)."""
    lab = cv2.cvtColor(np.clip(pixels, 0, 1).astype(np.float32).reshape(-1, 1, 3), cv2.COLOR_RGB2LAB).reshape(-1, 3)
    return lab.mean(0), lab.std(0) + 1e-3


def color_transfer(image: np.ndarray, mask: np.ndarray, source: tuple, style: tuple) -> np.ndarray:
    """Reinhard et al. colour transfer inside mask: Lab (x - mean_src) / std_src * std_style + mean_style.
    ``source`` and ``style`` are (mean [3], std [3]) from ``lab_stats``; using the same source
    statistics in every view (those of the object over all views) keeps the views consistent."""
    lab = cv2.cvtColor(np.clip(image, 0, 1).astype(np.float32), cv2.COLOR_RGB2LAB)
    out = (lab - source[0]) / source[1] * style[1] + style[0]
    out[..., 0] = np.clip(out[..., 0], 0, 100)
    rgb = np.clip(cv2.cvtColor(out.astype(np.float32), cv2.COLOR_LAB2RGB), 0, 1)
    return paste(rgb, image, mask)


def watercolor(image: np.ndarray) -> np.ndarray:
    """OpenCV's edge-preserving stylisation (flat washes of colour with soft edges)."""
    w = image.shape[1]
    return to_float(cv2.stylization(to_u8(image), sigma_s=float(np.clip(60 * w / 640, 2, 200)), sigma_r=0.45))


def pencil(image: np.ndarray) -> np.ndarray:
    """OpenCV's pencil sketch, grey."""
    w = image.shape[1]
    grey, _ = cv2.pencilSketch(
        to_u8(image), sigma_s=float(np.clip(60 * w / 640, 2, 200)), sigma_r=0.07, shade_factor=0.05
    )
    return np.repeat(to_float(grey)[..., None], 3, axis=2)


def oil(image: np.ndarray, levels: int = 8) -> np.ndarray:
    """An oil-paint look without opencv-contrib's xphoto: a median "brush", a recursive edge-preserving
    filter, then each channel quantised to ``levels`` values."""
    w = image.shape[1]
    u8 = cv2.medianBlur(to_u8(image), _scaled(w, 7, odd=True, lo=3))
    smooth = cv2.edgePreservingFilter(
        u8, flags=cv2.RECURS_FILTER, sigma_s=float(np.clip(40 * w / 640, 2, 200)), sigma_r=0.4
    )
    step = 256 // levels
    return to_float((smooth // step) * step + step // 2)


def cartoon(image: np.ndarray) -> np.ndarray:
    """Flat colours from repeated bilateral filtering, multiplied by dark edges from an adaptive threshold."""
    w = image.shape[1]
    u8 = to_u8(image)
    d = _scaled(w, 9, lo=3)
    col = u8
    for _ in range(4):
        col = cv2.bilateralFilter(col, d, 40, 7)
    grey = cv2.medianBlur(cv2.cvtColor(u8, cv2.COLOR_RGB2GRAY), _scaled(w, 7, odd=True, lo=3))
    edges = cv2.adaptiveThreshold(grey, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY, _scaled(w, 9, True, 3), 2)
    return to_float(col) * (to_float(edges)[..., None])


FILTERS = {"watercolor": watercolor, "pencil": pencil, "oil": oil, "cartoon": cartoon}


def apply_effect(image: np.ndarray, mask: np.ndarray, effect: str) -> np.ndarray:
    """One of EFFECTS applied to the render, kept inside mask [H,W]."""
    if effect not in FILTERS:
        raise InputError(f"effect {effect}: use one of {', '.join(EFFECTS)}", "effect")
    return paste(FILTERS[effect](image), image, mask)


def style_transfer(image: np.ndarray, mask: np.ndarray, source: tuple, style: tuple, texture: str) -> np.ndarray:
    """Colour transfer to the style's Lab statistics, then (``texture`` "stylize") OpenCV's stylisation
    with the colour statistics transferred once more, so the washes keep the style's palette."""
    out = color_transfer(image, mask, source, style)
    if texture == "stylize":
        flat = watercolor(out)
        out = color_transfer(flat, mask, lab_stats(flat[mask]), style) if mask.any() else out
    return paste(out, image, mask)
