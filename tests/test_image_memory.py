"""Images and masks held compactly (uint8/uint16) and converted per access, to the same floats as before."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gsgroup.data import images as imgs
from gsgroup.data.scene import View, load_scene
from gsgroup.segment.grouping import compact_mask
from gsgroup.train.trainer import view_tensors
from test_scene import make_colmap

BG = (0.2, 0.7, 0.1)


def raw_images():
    rng = np.random.default_rng(0)
    yield rng.integers(0, 256, (9, 7, 3)).astype(np.uint8)  # BGR
    yield rng.integers(0, 256, (9, 7, 4)).astype(np.uint8)  # BGRA
    yield rng.integers(0, 256, (9, 7)).astype(np.uint8)  # gray
    yield rng.integers(0, 256, (9, 7, 2)).astype(np.uint8)  # gray + alpha
    yield rng.integers(0, 65536, (9, 7, 4)).astype(np.uint16)
    yield rng.uniform(-0.2, 1.2, (9, 7, 3)).astype(np.float32)


@pytest.mark.parametrize("raw", list(raw_images()), ids=["bgr", "bgra", "gray", "gray_alpha", "u16", "float"])
def test_pixels_convert_to_the_old_floats_bit_for_bit(raw):
    old = imgs.composite(imgs.raw_to_float(raw), BG)  # what View.image held before
    pixels = imgs.raw_to_pixels(raw)
    assert pixels.dtype == (raw.dtype if raw.dtype != np.float32 else np.float32)
    assert pixels.shape[2] in (3, 4) and pixels.nbytes <= old.nbytes * (4 / 3)
    assert np.array_equal(imgs.pixels_to_float(pixels, BG), old)
    view = View("v", None, np.eye(3, dtype=np.float32), np.eye(4, dtype=np.float32), 7, 9, pixels, BG)
    assert np.array_equal(view.image, old)
    vt = view_tensors(view)
    assert vt.pixels.dtype != torch.float32 or raw.dtype == np.float32
    assert np.array_equal(vt.image.numpy(), old)  # the per-step torch conversion, same floats


def test_quantize_rounds_to_nearest_step():
    x = np.random.default_rng(1).uniform(-0.1, 1.1, (50, 40, 3)).astype(np.float32)
    for dtype, scale in ((np.uint8, 255), (np.uint16, 65535)):
        q = imgs.quantize(x, dtype)
        assert q.dtype == dtype
        assert np.abs(q / scale - np.clip(x, 0, 1)).max() <= 0.5 / scale + 1e-7
    assert imgs.quantize(x, np.float32).dtype == np.float32


def test_scene_holds_uint8_at_a_quarter_of_float(tmp_path):
    make_colmap(tmp_path / "data", binary=True)
    s = load_scene(tmp_path / "data", resolution=1, progress=False, cache_dir=tmp_path / "cache")
    for v in s.train:
        assert v.pixels.dtype == np.uint8 and v.pixels.nbytes * 4 == v.image.nbytes
        assert v.image.dtype == np.float32 and v.image.shape == (v.height, v.width, 3)


def test_masks_held_compact():
    m = np.array([[0, 3], [255, 1]], np.int64)
    assert compact_mask(m).dtype == torch.uint8 and torch.equal(compact_mask(m).long(), torch.from_numpy(m))
    big = m * 200
    assert compact_mask(big).dtype == torch.uint16 and torch.equal(compact_mask(big).long(), torch.from_numpy(big))
    neg = m - 1
    assert torch.equal(compact_mask(neg).long(), torch.from_numpy(neg))
