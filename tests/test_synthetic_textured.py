"""The textured scene (data/synthetic_textured.py): the same dataset layout as the built-in scene, exact
renders without each object (checked against tracing every ray again without it), hard-edged patterns."""

from __future__ import annotations

import json

import cv2
import numpy as np

from gsgroup.data.colmap import read_model
from gsgroup.data.synthetic import _downsample, _shade, camera_rays, make_cameras
from gsgroup.data.synthetic_textured import _trace, make_textured_scene, render_textured, textured_spec


def test_without_equals_a_full_retrace_and_only_brightens_outside():
    spec = textured_spec(0)
    K, view = make_cameras(spec, 8, 64, 48)[2]
    rgb, mask, depth, without = render_textured(spec, K, view, 64, 48)
    o, d = camera_rays(K, view, 64, 48, 2)
    assert set(np.unique(mask)) <= {0, 1, 2, 3, 4} and (mask > 0).any()
    for ob in spec.objects:
        ref = _downsample(_shade(spec, _trace(spec, o, d, exclude=(ob.id,)), d, "black", removed=ob.id), 64, 48, 2)
        np.testing.assert_allclose(without[ob.id], ref, atol=1e-6)
        # outside the object's (anti-aliased) footprint, removing it only lifts its shadow
        foot = cv2.dilate((mask == ob.id).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
        assert (without[ob.id][~foot] >= rgb[~foot] - 1e-6).all()


def test_hard_patterns_have_two_colours():
    """The ball shows both of its checker colours, the can both stripe colours, in a middle view."""
    spec = textured_spec(0)
    K, view = make_cameras(spec, 40, 200, 150)[8]
    rgb, mask, _, _ = render_textured(spec, K, view, 200, 150, supersample=1)
    for oid in (1, 2):
        ob = spec.object(oid)
        px = rgb[mask == oid]
        chroma = px / np.maximum(px.sum(1, keepdims=True), 1e-6)
        c1, c2 = (np.asarray(c) / sum(c) for c in (ob.color, ob.color2))
        near1 = np.linalg.norm(chroma - c1, axis=1) < np.linalg.norm(chroma - c2, axis=1)
        assert 0.15 < near1.mean() < 0.85, (oid, near1.mean())


def test_make_textured_scene_layout(tmp_path):
    out = make_textured_scene(tmp_path / "tex", width=40, height=30, n_views=3)
    meta = json.loads((out / "scene.json").read_text())
    assert [o["name"] for o in meta["objects"]] == ["checker_ball", "striped_can", "printed_box", "block"]
    assert sorted(meta["touching"]) == [[1, 2], [3, 4]] and meta["test_views"] == ["view_000"]
    cams, images, points = read_model(out / "sparse" / "0")
    assert len(images) == 3 and len(points) > 100
    for k in (1, 2, 3, 4):
        assert len(list((out / "without" / str(k)).glob("*.png"))) == 3
