"""Mask I/O: reading rules, bad-input rules and the uint8/uint16 writer (gsgroup.data.masks)."""

import re
import warnings
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from gsgroup.data.masks import load_masks, load_object_masks, read_mask, write_mask
from gsgroup.errors import InputError


def _view(name, w, h):
    return SimpleNamespace(name=name, width=w, height=h)


def _ids(h=12, w=16, k=5, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, k + 1, (h, w)).astype(np.int32)


def test_grey_round_trip_uint8(tmp_path):
    labels = _ids()
    write_mask(tmp_path / "a.png", labels)
    raw = cv2.imread(str(tmp_path / "a.png"), cv2.IMREAD_UNCHANGED)
    assert raw.dtype == np.uint8
    out = read_mask(tmp_path / "a.png")
    assert out.dtype == np.int32 and np.array_equal(out, labels)


def test_uint16_round_trip_over_255_labels(tmp_path):
    labels = np.arange(40 * 30, dtype=np.int32).reshape(30, 40)  # 1199 distinct ids
    write_mask(tmp_path / "big.png", labels)
    raw = cv2.imread(str(tmp_path / "big.png"), cv2.IMREAD_UNCHANGED)
    assert raw.dtype == np.uint16
    assert np.array_equal(read_mask(tmp_path / "big.png"), labels)
    huge = tmp_path / "huge.png"
    with pytest.raises(ValueError, match=re.escape(f"{huge}: 70000 exceeds the uint16 PNG range; renumber the ids")):
        write_mask(huge, np.full((2, 2), 70000))
    assert not huge.exists()


def test_resize_same_aspect_warns_once_with_count(tmp_path):
    labels = np.zeros((20, 40), np.int32)
    labels[:, 20:] = 3
    labels[5:10, 4:8] = 7
    for i in range(3):
        write_mask(tmp_path / f"v{i}.png", labels)
    views = [_view(f"v{i}", 20, 10) for i in range(3)]
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        masks = load_masks(tmp_path, views)
    msgs = [str(w.message) for w in rec]
    assert len(msgs) == 1 and "3 of 3" in msgs[0] and "resized" in msgs[0]
    expect = labels[1::2, 1::2]  # nearest neighbour by pixel centres: dst i <- src floor((i + 0.5) * 2)
    for m in masks.values():
        assert m.shape == (10, 20) and m.dtype == np.int32
        assert set(np.unique(m)) <= {0, 3, 7}
        assert np.array_equal(m, expect)


def test_wrong_aspect_raises_with_filename_and_sizes(tmp_path):
    write_mask(tmp_path / "v0.png", np.zeros((20, 40), np.int32))
    with pytest.raises(InputError) as e:
        load_masks(tmp_path, [_view("v0", 30, 20)])
    msg = str(e.value)
    assert "v0.png" in msg and "40x20" in msg and "30x20" in msg


def test_missing_masks_none_and_one_warning(tmp_path):
    write_mask(tmp_path / "a.png", _ids())
    views = [_view("a", 16, 12), _view("b", 16, 12), _view("c", 16, 12)]
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        masks = load_masks(tmp_path, views)
    assert masks["b"] is None and masks["c"] is None and masks["a"] is not None
    msgs = [str(w.message) for w in rec]
    assert len(msgs) == 1 and "2 of 3" in msgs[0]


def test_no_matching_file_and_missing_folder_raise(tmp_path):
    write_mask(tmp_path / "other.png", _ids())
    with pytest.raises(InputError, match="no mask file matches"):
        load_masks(tmp_path, [_view("a", 16, 12)])
    with pytest.raises(InputError, match="not found"):
        load_masks(tmp_path / "nope", [_view("a", 16, 12)])
    with pytest.raises(InputError, match="object_mask"):
        load_object_masks(tmp_path, [_view("a", 16, 12)])


def test_object_mask_layout_used_as_is(tmp_path):
    labels = _ids(k=9)
    write_mask(tmp_path / "object_mask" / "img1.png", labels)
    masks = load_object_masks(tmp_path, [_view("img1", 16, 12)])
    assert np.array_equal(masks["img1"], labels)


def test_rgb_with_equal_channels_reads_as_grey(tmp_path):
    labels = _ids(k=200)
    cv2.imwrite(str(tmp_path / "g.png"), np.repeat(labels.astype(np.uint8)[:, :, None], 3, 2))
    assert np.array_equal(read_mask(tmp_path / "g.png"), labels)
    rgba = np.concatenate(
        [np.repeat(labels.astype(np.uint8)[:, :, None], 3, 2), np.full((12, 16, 1), 255, np.uint8)], 2
    )
    cv2.imwrite(str(tmp_path / "ga.png"), rgba)
    assert np.array_equal(read_mask(tmp_path / "ga.png"), labels)


def test_rgb_colour_coded_maps_each_colour_to_an_id(tmp_path):
    # palette in RGB; ids: black -> 0, others 1..K by ascending packed R<<16|G<<8|B
    rgb = {0: (0, 0, 0), 1: (0, 0, 255), 2: (0, 128, 0), 3: (200, 10, 10)}
    labels = _ids(k=3, seed=3)
    img = np.zeros((12, 16, 3), np.uint8)
    for k, c in rgb.items():
        img[labels == k] = c
    cv2.imwrite(str(tmp_path / "c.png"), img[:, :, ::-1])
    assert np.array_equal(read_mask(tmp_path / "c.png"), labels)

    # across a folder the colour -> id table is shared: a view lacking colour 1 keeps the others' ids
    img2 = img.copy()
    img2[labels == 1] = (0, 0, 0)
    cv2.imwrite(str(tmp_path / "d.png"), img2[:, :, ::-1])
    masks = load_masks(tmp_path, [_view("c", 16, 12), _view("d", 16, 12)])
    assert np.array_equal(masks["c"], labels)
    assert np.array_equal(masks["d"], np.where(labels == 1, 0, labels))


def test_float_and_16bit_accepted_only_if_integral(tmp_path):
    labels = _ids(k=300)
    cv2.imwrite(str(tmp_path / "f.tiff"), labels.astype(np.float32))
    assert np.array_equal(read_mask(tmp_path / "f.tiff"), labels)
    cv2.imwrite(str(tmp_path / "h.png"), labels.astype(np.uint16))
    assert np.array_equal(read_mask(tmp_path / "h.png"), labels)
    cv2.imwrite(str(tmp_path / "bad.tiff"), labels.astype(np.float32) + 0.5)
    with pytest.raises(InputError, match="bad.tiff"):
        read_mask(tmp_path / "bad.tiff")


def test_corrupt_file_raises_with_name(tmp_path):
    (tmp_path / "x.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match="x.png"):
        read_mask(tmp_path / "x.png")


def test_read_mask_size_argument(tmp_path):
    labels = np.kron(_ids(6, 8), np.ones((2, 2), np.int32))  # 12x16 blocks of 2x2
    write_mask(tmp_path / "s.png", labels)
    with pytest.warns(UserWarning, match="resized"):
        out = read_mask(tmp_path / "s.png", size=(8, 6))
    assert np.array_equal(out, labels[::2, ::2])
    with pytest.raises(InputError, match="s.png"):
        read_mask(tmp_path / "s.png", size=(8, 8))
