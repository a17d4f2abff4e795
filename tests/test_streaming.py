"""Images streamed from disk (``--image-cache N``) and the memory plan made from image headers
before any image is decoded (#14)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from gsgroup.cli import main
from gsgroup.data import images as imgs
from gsgroup.data.colmap import ColmapCamera
from gsgroup.data.scene import load_scene
from gsgroup.data.streaming import PixelCache, header_footprint
from gsgroup.errors import InputError
from gsgroup.model import load_ply
from gsgroup.run import DataConfig, Run
from gsgroup.train import memory
from gsgroup.train.memory import GB, check_memory, plan_from_sizes
from test_scene import make_colmap


def test_lru_cache_keeps_the_most_recent():
    cache, loads = PixelCache(2), []

    def loader(k):
        return lambda: loads.append(k) or np.full(1, k)

    for k in (1, 2, 1, 3, 2, 1):
        assert int(cache.get(k, loader(k))[0]) == k
    assert loads == [1, 2, 3, 2, 1] and list(cache.items) == [2, 1]  # least recently used out first
    assert PixelCache(0).get(5, loader(5))[0] == 5 and loads[-1] == 5


@pytest.mark.parametrize(
    "kind,resolution",
    [("rgb8", None), ("rgba8", None), ("rgb16", None), ("gray8", None), ("graya8", 2), ("rgb8", 2), ("jpg", None)],
)
def test_header_footprint_is_the_held_size(tmp_path, kind, resolution):
    """Bytes from the header alone = bytes of the pixels the loader holds (uint8/uint16, 3 or 4 channels)."""
    rng = np.random.default_rng(0)
    shape = {"rgb8": (30, 40, 3), "rgba8": (30, 40, 4), "rgb16": (30, 40, 3), "gray8": (30, 40), "graya8": (30, 40, 2)}
    dtype = np.uint16 if kind == "rgb16" else np.uint8
    raw = rng.integers(0, np.iinfo(dtype).max, shape.get(kind, (30, 40, 3)), dtype=dtype)
    if kind == "graya8":  # OpenCV writes no gray+alpha PNG: PIL does (mode LA)
        from PIL import Image

        Image.fromarray(raw, "LA").save(tmp_path / "x.png")
        path = tmp_path / "x.png"
    else:
        path = tmp_path / ("x.jpg" if kind == "jpg" else "x.png")
        cv2.imwrite(str(path), raw)
    decoded = imgs.read_image_raw(path)
    w, h = imgs.target_size(decoded.shape[1], decoded.shape[0], resolution)
    held = imgs.raw_to_pixels(decoded)
    if (w, h) != (decoded.shape[1], decoded.shape[0]):
        held = imgs.quantize(imgs.resize(imgs.composite(imgs.raw_to_float(decoded)), (w, h)), decoded.dtype)
    assert header_footprint(path, resolution) == (w, h, held.nbytes)


def test_plan_streams_and_the_refusal_suggests_it(monkeypatch):
    monkeypatch.setattr(memory, "available_bytes", lambda device="cpu": 3 * GB)
    sizes = [(1600, 1200, 1600 * 1200 * 3)] * 1000  # 5.4 GB of uint8 images
    held = plan_from_sizes(sizes, 1000, 100_000, 3, 16)
    assert held.images == 1000 * 1600 * 1200 * 3 and held.streaming_fits()
    with pytest.raises(InputError, match=r"--image-cache 8 \(stream the images from disk\)"):
        check_memory(held, 3, 16)
    streamed = plan_from_sizes(sizes, 1000, 100_000, 3, 16, streamed=8)
    assert streamed.images == 8 * 1600 * 1200 * 3 and "(8 of 1000 decoded)" in streamed.line()
    check_memory(streamed, 3, 16)  # fits
    with pytest.raises(InputError, match="image_cache"):
        DataConfig("x", image_cache=-1)


def _distorted(root):
    """A COLMAP dataset with an OPENCV (distorted) camera: the images go through the undistortion cache."""
    cam = ColmapCamera(1, "OPENCV", 41, 31, np.array([30.0, 32.0, 20.5, 15.5, 0.05, -0.01, 0.001, 0.002]))
    make_colmap(root, n=6, camera=cam, n_points=200)
    return root


def test_refused_before_any_image_is_decoded(tmp_path, monkeypatch, capsys):
    """With too little memory, train prints the plan and refuses without decoding an image (the decoder
    is replaced by one that fails); with enough, the same data gets to the decoder."""
    data = _distorted(tmp_path / "data")

    def no_decoding(*a, **k):
        raise AssertionError("an image was decoded")

    monkeypatch.setattr(imgs, "read_image_raw", no_decoding)
    monkeypatch.setattr(imgs, "load_undistorted", no_decoding)
    monkeypatch.setattr(memory, "available_bytes", lambda device="cpu": 10_000)
    out = tmp_path / "run"
    argv = ["train", str(data), "--out", str(out), "--iterations", "5", "--max-gaussians", "5000", "--quiet"]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert "planned memory: images" in captured.out and "5,000 Gaussians at the cap" in captured.out
    assert captured.err.strip().splitlines()[-1].startswith("gsgroup: error: training would need")
    assert not out.exists()
    monkeypatch.setattr(memory, "available_bytes", lambda device="cpu": 20 * GB)
    with pytest.raises(AssertionError, match="decoded"):
        main(argv)


def test_streamed_training_is_bit_identical(tmp_path):
    """Training with --image-cache 2 (6 distorted images read from the undistortion cache per access)
    writes the same Gaussians and checkpoint as training on the held images, and holds at most 2."""
    data = _distorted(tmp_path / "data")
    for name, extra in (("held", []), ("streamed", ["--image-cache", "2"])):
        argv = ["train", str(data), "--out", str(tmp_path / name), "--iterations", "30", "--eval", "--quiet"]
        assert main([*argv, "--eval-every", "10", *extra]) == 0
    a, b = (load_ply(tmp_path / n / Run.GAUSSIANS) for n in ("held", "streamed"))
    for k, v in a.to_dict().items():
        assert torch.equal(v, b.to_dict()[k]), k
    ca, cb = (torch.load(tmp_path / n / Run.CHECKPOINT, weights_only=True) for n in ("held", "streamed"))
    for k in ca["params"]:
        assert torch.equal(ca["params"][k], cb["params"][k]), k
    assert (tmp_path / "held" / Run.TRAIN_LOG).read_text().count("test_psnr") == 3
    scene = load_scene(data, cache_dir=tmp_path / "streamed" / Run.CACHE, image_cache=2, progress=False)
    views = scene.train + scene.test
    assert all(v.streamed for v in views) and len(views[0].cache.items) <= 2
    held = load_scene(data, cache_dir=tmp_path / "held" / Run.CACHE, progress=False)
    for v, h in zip(views, held.train + held.test):
        assert np.array_equal(v.pixels, h.pixels) and np.array_equal(v.image, h.image) and v.nbytes == h.pixels.nbytes
    assert len(views[0].cache.items) == 2
