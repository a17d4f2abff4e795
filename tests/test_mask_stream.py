"""Masks streamed from disk (``load_masks(..., cache=N)``, ``--image-cache N`` with ``--masks``): the same
ids as the held masks for every kind of mask file, the same checks when loading, at most N decoded, and
identity training bit-identical to training on held masks."""

from __future__ import annotations

import warnings
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

from gsgroup.cli import main
from gsgroup.data.masks import load_masks, write_mask
from gsgroup.errors import InputError
from gsgroup.model import load_ply
from gsgroup.run import Run
from test_streaming import _distorted


def _view(name, w, h):
    return SimpleNamespace(name=name, width=w, height=h)


def _folder(tmp_path):
    """Grey uint8 and uint16 masks, two colour-coded ones sharing a colour table (one lacks a colour),
    one at twice the size (resized), and a view without a mask."""
    rng = np.random.default_rng(0)
    write_mask(tmp_path / "a.png", rng.integers(0, 6, (12, 16)))
    write_mask(tmp_path / "b.png", rng.integers(0, 300, (12, 16)))
    colours = np.array([(0, 0, 0), (0, 0, 255), (0, 128, 0), (200, 10, 10)], np.uint8)
    labels = rng.integers(0, 4, (12, 16))
    cv2.imwrite(str(tmp_path / "c.png"), colours[labels][:, :, ::-1])
    cv2.imwrite(str(tmp_path / "d.png"), colours[np.where(labels == 1, 0, labels)][:, :, ::-1])
    write_mask(tmp_path / "e.png", np.kron(rng.integers(0, 4, (12, 16)), np.ones((2, 2), np.int64)))
    return [_view(n, 16, 12) for n in "abcdef"]


def test_streamed_masks_equal_the_held_ones(tmp_path):
    views = _folder(tmp_path)
    with warnings.catch_warnings(record=True) as w_held:
        warnings.simplefilter("always")
        held = load_masks(tmp_path, views)
    with warnings.catch_warnings(record=True) as w_streamed:
        warnings.simplefilter("always")
        streamed = load_masks(tmp_path, views, cache=2)
    assert [str(w.message) for w in w_streamed] == [str(w.message) for w in w_held] and len(w_held) == 2
    assert streamed.streamed and len(streamed.cache.items) == 0  # nothing kept decoded after loading
    assert set(streamed) == set(held) and held["f"] is None and streamed["f"] is None
    assert streamed.max_id == max(int(m.max()) for m in held.values() if m is not None)
    for name in "abcdeabcde":
        got = streamed[name]
        assert got.dtype == held[name].dtype and np.array_equal(got, held[name]), name
        assert len(streamed.cache.items) <= 2
    assert streamed.cache.misses == 10  # an LRU of 2 over 5 masks in turn misses each time
    assert np.array_equal(streamed["e"], held["e"]) and streamed.cache.hits == 1


def test_streamed_masks_check_every_file_when_loading(tmp_path):
    write_mask(tmp_path / "a.png", np.ones((12, 16), np.int64))
    write_mask(tmp_path / "b.png", np.ones((12, 20), np.int64))
    with pytest.raises(InputError, match=r"b\.png: mask is 20x12 but its image is 16x12"):
        load_masks(tmp_path, [_view("a", 16, 12), _view("b", 16, 12)], cache=1)


def test_identity_training_on_streamed_masks_is_bit_identical(tmp_path, monkeypatch):
    """`gsgroup train --masks M --image-cache 2` reads the masks per step and writes the same Gaussians and
    classifier as training on held images and masks."""
    from gsgroup.data.mask_stream import StreamedMasks

    reads = []
    load = StreamedMasks._load
    monkeypatch.setattr(StreamedMasks, "_load", lambda self, name: reads.append(name) or load(self, name))
    data = _distorted(tmp_path / "data")
    masks = tmp_path / "masks"
    rng = np.random.default_rng(1)
    for p in sorted((data / "images").iterdir()):
        write_mask(masks / f"{p.stem}.png", np.kron(rng.integers(0, 4, (4, 5)), np.ones((8, 9), np.int64))[:31, :41])
    for name, extra in (("held", []), ("streamed", ["--image-cache", "2"])):
        argv = ["train", str(data), "--out", str(tmp_path / name), "--masks", str(masks), "--iterations", "20"]
        assert main([*argv, "--quiet", *extra]) == 0
        assert (len(reads) > 6) == bool(extra)  # 6 views, 2 kept: streamed runs read again and again
    a, b = (load_ply(tmp_path / n / Run.GAUSSIANS) for n in ("held", "streamed"))
    for k, v in a.to_dict().items():
        assert torch.equal(v, b.to_dict()[k]), k
    ca, cb = (torch.load(tmp_path / n / Run.CLASSIFIER, weights_only=True) for n in ("held", "streamed"))
    _assert_same(ca, cb)


def _assert_same(a, b):
    """Nested dicts of tensors and plain values, equal exactly."""
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _assert_same(a[k], b[k])
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b)
    else:
        assert a == b
