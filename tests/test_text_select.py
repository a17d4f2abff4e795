"""Selecting objects by text: the box -> mask -> id voting against the built-in scene's ground truth (each
object's true box selects it and nothing else, with and without a SAM-like box segmenter), and the whole
command driven by a tiny random Grounding DINO and CLIP saved to a folder and loaded through
``from_pretrained``, as a real checkpoint is. Clear one-line errors for missing folders and extras."""

from __future__ import annotations

import importlib.util
import json
import sys

import cv2
import numpy as np
import pytest

from gsgroup import edit
from gsgroup.data.synthetic import make_scene
from gsgroup.edit.text_select import (
    ClipRanker,
    Detector,
    TextSelectOptions,
    box_mask,
    coverage_views,
    rle_mask,
    select_by_text,
    text_ids,
    vote,
)
from gsgroup.errors import InputError
from gsgroup.run import Run
from test_edit import NVIEWS, build_run, cli

WORDS = ["red", "ball", "blue", "box", "sphere"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("text")
    # 128x96: the Gaussian-per-pixel fixture renders objects ~1 px fatter than the ground truth; at 64x48 that
    # is a third of a small object's pixels
    scene = make_scene(root / "scene", seed=0, width=128, height=96, n_views=NVIEWS, progress=False)
    run = build_run(scene, root / "run", stride_views=3)
    return {"root": root, "scene": scene, "run": run, "data": Run.open(run)}


def gt_ids(tiny, view):
    return cv2.imread(str(tiny["scene"] / "gt_mask" / f"{view.name}.png"), cv2.IMREAD_UNCHANGED)


def grown(mask):
    return cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0


def true_box_detector(tiny, oid, views):
    """A stand-in detector returning the ground-truth box of object ``oid`` in each of ``views`` (called
    in order), and a perfect box-prompted segmenter (the object's ground-truth pixels in the box)."""
    gts = [gt_ids(tiny, v) for v in views]
    state = {"i": -1}

    def detect(image, prompt, box_threshold, text_threshold):
        state["i"] += 1
        ys, xs = np.nonzero(gts[state["i"]] == oid)
        if not len(xs):
            return np.zeros((0, 4)), np.zeros(0), []
        return np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], np.float64), np.array([0.9]), [prompt]

    def segment(image, box):  # the ground truth grown by 1 px, as the render's edges lie ~1 px outside it
        return grown(gts[state["i"]] == oid)

    return detect, segment


def _opts(**kw):
    return TextSelectOptions(text="thing", detector_checkpoint="unused", **{"views": 6, **kw})


@pytest.mark.parametrize("with_sam", [False, True])
def test_true_boxes_select_exactly_their_object(tiny, with_sam):
    data = tiny["data"]
    opts = _opts()
    chosen = coverage_views(data.views("train"), opts.views)
    for oid in range(1, 7):
        detect, segment = true_box_detector(tiny, oid, chosen)
        ids, report = text_ids(data, opts, detector=detect, segmenter=segment if with_sam else None)
        assert ids == [oid], (oid, report["candidates"])
        for v, rec in zip(chosen, report["views"]):  # the masks used are in the report, as run-length codes
            for box, m in zip(rec["boxes"], rec["masks"]):
                want = grown(gt_ids(tiny, v) == oid) if with_sam else box_mask(edit.id_map(data, v.name), box)
                assert np.array_equal(rle_mask(m["rle"]), want) and m["pixels"] == int(want.sum())
        assert report["prompt"] == "thing" and [v["view"] for v in report["views"]] == [v.name for v in chosen]


def test_viewer_selects_by_text(tiny, tmp_path):
    """The viewer's "Select by text" selects the object the (stand-in) detector boxes in every view, with the
    same Gaussians as selecting it by id; a missing checkpoint folder is the one-line error of the CLI."""
    from gsgroup.viewer.state import ViewerState, open_run

    st = ViewerState(open_run(tiny["run"]))
    chosen = coverage_views(st.run.views("train"), TextSelectOptions.views)
    detect, _ = true_box_detector(tiny, 3, chosen)
    assert st.select_text("thing", "unused", detector=detect) == [3]
    by_text = st.sel_mask.copy()
    st.select(3)
    assert st.selected == 3 and np.array_equal(by_text, st.sel_mask)
    with pytest.raises(InputError, match="detector_checkpoint .*: not a folder"):
        st.select_text("thing", str(tmp_path / "nope"))


def test_box_mask_leaves_an_object_resting_inside_the_box():
    """Object 2 with object 3 lying inside its box: the box of 2 takes only 2; a box around a split object
    (ids 4 and 5 side by side) takes both halves."""
    ids = np.zeros((40, 60), np.int64)
    ids[5:35, 5:45] = 2
    ids[10:18, 10:20] = 3
    ids[5:35, 48:53] = 4
    ids[5:35, 53:58] = 5
    assert set(np.unique(ids[box_mask(ids, (5, 5, 45, 35))])) == {2}
    assert set(np.unique(ids[box_mask(ids, (48, 5, 58, 35))])) == {4, 5}
    assert set(np.unique(ids[box_mask(ids, (10, 10, 20, 18))])) == {3}


def test_vote_and_coverage_views(tiny):
    assert vote({1: 3, 2: 1, 3: 2}, {1: 4, 2: 4, 3: 2}, 0.5) == [1, 3]
    views = tiny["data"].views("train")
    chosen = coverage_views(views, 4)
    assert chosen[0] is views[0] and len({v.name for v in chosen}) == 4
    # farthest-point: the second view is the camera farthest from the first
    centre = lambda v: -v.viewmat[:3, :3].T @ v.viewmat[:3, 3]
    far = max(views, key=lambda v: np.linalg.norm(centre(v) - centre(views[0])))
    assert chosen[1].name == far.name


def test_missing_folders_and_extra_are_one_line_errors(tmp_path, monkeypatch):
    with pytest.raises(InputError, match=r"detector_checkpoint .*nope: not a folder"):
        Detector.from_checkpoint(tmp_path / "nope")
    with pytest.raises(InputError, match=r"clip_checkpoint .*: no config.json there"):
        ClipRanker.from_checkpoint(tmp_path)
    with pytest.raises(InputError, match="detector_checkpoint missing"):
        TextSelectOptions(text="red ball")
    (tmp_path / "config.json").write_text("{}")
    if importlib.util.find_spec("transformers") is not None:  # the `text` extra is installed
        with pytest.raises(InputError, match=r"detector_checkpoint .*: not a loadable Grounding DINO"):
            Detector.from_checkpoint(tmp_path)
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(InputError, match=r"pip install 'gsgroup\[text\]'"):
        Detector.from_checkpoint(tmp_path)


@pytest.mark.slow
def test_tiny_grounding_dino_and_clip_end_to_end(tiny, capsys):
    """The command loads both tiny models from their folders; its boxes are the detector's own (checked
    against the model called directly), its ids follow from the boxes by the voting rule, CLIP scores
    every candidate; the edit commands take --text too."""
    pytest.importorskip("transformers")
    from transformers import AutoProcessor, GroundingDinoForObjectDetection

    from tiny_models import clip, grounding_dino

    root = tiny["root"]
    det, cl = grounding_dino(root / "gdino", WORDS), clip(root / "clip")
    out = root / "sel.json"
    args = [
        "select",
        str(tiny["run"]),
        "--text",
        "red ball",
        "--detector-checkpoint",
        str(det),
        "--clip-checkpoint",
        str(cl),
    ]
    args += ["--views", "2", "--box-threshold", "0.5", "--text-threshold", "0", "--vote", "0.5", "--out", str(out)]
    from gsgroup.cli import main

    assert main(args) == 0
    rep = json.loads(out.read_text())
    assert rep["prompt"] == "red ball" and len(rep["views"]) == 2 and rep["ids"]
    assert all(min(v["scores"], default=1) > 0.5 for v in rep["views"])
    # the boxes are the model's: run it directly on the first view's render
    data = tiny["data"]
    from gsgroup.edit.api import render_rgb

    first = data.view(rep["views"][0]["view"])
    image = (render_rgb(data, first) * 255 + 0.5).astype(np.uint8)
    from PIL import Image

    model = GroundingDinoForObjectDetection.from_pretrained(str(det)).eval()
    proc = AutoProcessor.from_pretrained(str(det))
    inputs = proc(images=Image.fromarray(image), text="red ball.", return_tensors="pt")
    import torch

    with torch.no_grad():
        res = proc.post_process_grounded_object_detection(
            model(**inputs), inputs["input_ids"], threshold=0.5, text_threshold=0.0, target_sizes=[image.shape[:2]]
        )[0]
    assert np.allclose(np.array(rep["views"][0]["boxes"]), res["boxes"].numpy(), atol=0.01)
    # ids: hit in >= half the views where visible, and every candidate has both scores
    for i in rep["ids"]:
        c = rep["candidates"][str(i)]
        assert c["hits"] >= 0.5 * c["visible_views"] and "clip_similarity" in c and "clip_probability" in c
    assert rep["selection"]["ids"] == rep["ids"]
    # the edit commands select by text as well
    edited = root / "removed"
    assert cli(["edit", "remove", "--raw", str(tiny["run"]), "--out", str(edited)] + args[2:-2]) == 0
    info = json.loads((edited / "edit.json").read_text())
    assert info["selection"]["ids"] == rep["ids"] and info["selection"]["by"] == "text 'red ball'"
    # selecting by text through the Python API gives the same
    sel, _ = select_by_text(
        data,
        TextSelectOptions(
            text="red ball",
            detector_checkpoint=str(det),
            clip_checkpoint=str(cl),
            views=2,
            box_threshold=0.5,
            text_threshold=0.0,
        ),
    )
    assert sel.ids == rep["ids"]


def test_text_selection_renders_through_gsplat_as_through_numba(tmp_path, monkeypatch):
    """text_ids with the views rendered by the gsplat path (``device`` on a GPU; here gsplat.rasterization
    faked on the CPU by the dense reference rasterizer, so on a smaller scene) finds the same object, with
    the same box masks to a few edge pixels, as with the Numba kernels."""
    from gsgroup.render import gsplat_backend
    from test_gsplat_adapter import fake_rasterization

    scene = make_scene(tmp_path / "scene", seed=0, width=48, height=36, n_views=8, progress=False)
    small = {"scene": scene, "data": Run.open(build_run(scene, tmp_path / "run"))}
    data, opts = small["data"], _opts(views=3)
    chosen = coverage_views(data.views("train"), opts.views)
    numba_ids, numba_rep = text_ids(data, opts, detector=true_box_detector(small, 2, chosen)[0], device="cpu")
    calls = []
    monkeypatch.setattr(
        gsplat_backend, "_import_gsplat", lambda: lambda *a, **k: calls.append(1) or fake_rasterization(*a, **k)
    )
    monkeypatch.setattr(gsplat_backend, "_require_cuda", lambda device, means: None)
    monkeypatch.setattr(sys.modules["gsgroup.render.rasterize"], "_use_gsplat", lambda backend, means: True)
    ids, rep = text_ids(data, opts, detector=true_box_detector(small, 2, chosen)[0], device="cpu")
    assert ids == numba_ids == [2] and len(calls) >= len(chosen)
    for a, b in zip(rep["views"], numba_rep["views"]):
        assert a["boxes"] == b["boxes"] and a["hit"] == b["hit"]
        for ma, mb in zip(a["masks"], b["masks"]):
            x, y = rle_mask(ma["rle"]), rle_mask(mb["rle"])
            assert (x & y).sum() >= 0.97 * (x | y).sum()
