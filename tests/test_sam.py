"""SAM mask source: flattening, the torchvision stand-in, checkpoint errors, and a tiny randomly
initialised SAM (built from segment_anything's own modules) run end to end through the driver."""

import importlib.util
import sys
from functools import partial

import cv2
import numpy as np
import pytest

from gsgroup.errors import InputError
from gsgroup.segment import sam as sam_mod
from gsgroup.segment.sam import SAM_CHECKPOINT_URLS, SamOptions, flatten_masks, load_sam

HAS_SAM = importlib.util.find_spec("segment_anything") is not None


def _require_sam():
    if not HAS_SAM:
        pytest.skip("segment-anything is not installed (pip install segment-anything==1.0)")
    return sam_mod.import_segment_anything()


def tiny_sam(seed=0, img=64):
    """A randomly initialised SAM with a 1-block, 32-dim ViT encoder on 64x64 inputs."""
    import torch

    sa = _require_sam()
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    torch.manual_seed(seed)
    patch, dim = 16, 32
    return Sam(
        image_encoder=ImageEncoderViT(
            img_size=img,
            patch_size=patch,
            embed_dim=dim,
            depth=1,
            num_heads=2,
            mlp_ratio=2.0,
            out_chans=dim,
            qkv_bias=True,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=dim,
            image_embedding_size=(img // patch, img // patch),
            input_image_size=(img, img),
            mask_in_chans=4,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer_dim=dim,
            iou_head_depth=2,
            iou_head_hidden_dim=16,
            transformer=TwoWayTransformer(depth=1, embedding_dim=dim, mlp_dim=32, num_heads=2),
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    ).eval(), sa


# ----------------------------------------------------------------------------- flattening


def test_flatten_small_inside_big_stays_visible():
    big = np.zeros((10, 12), bool)
    big[1:9, 1:11] = True
    small = np.zeros_like(big)
    small[3:5, 3:6] = True
    hidden = np.zeros_like(big)
    hidden[6:8, 6:8] = True
    tiny = np.zeros_like(big)
    tiny[6:8, 6:8] = True  # same pixels as `hidden`: drawn later (stable order), hides it
    lab = flatten_masks([small, big, hidden, tiny])
    assert lab.dtype == np.int32
    assert (lab[small] == 1).all()  # small (input 0) on top of big
    assert (lab[big & ~small & ~tiny] == 2).all()
    assert (lab[tiny] == 3).all()  # hidden dropped, ids stay dense
    assert (lab[~big] == 0).all()
    assert set(np.unique(lab)) == {0, 1, 2, 3}


def test_flatten_order_is_by_area_not_input_order():
    a = np.zeros((6, 6), bool)
    a[:, :3] = True  # area 18
    b = np.zeros_like(a)
    b[:, 2:] = True  # area 24, overlaps a on column 2
    lab = flatten_masks([b, a])
    assert (lab[:, 2] == 2).all()  # the smaller mask a (id 2) wins the overlap


# ----------------------------------------------------------------------------- errors


def test_no_checkpoint_error_says_where_and_how(tmp_path):
    with pytest.raises(InputError) as e:
        load_sam(None, "vit_h")
    msg = str(e.value)
    assert SAM_CHECKPOINT_URLS["vit_h"] in msg and "--sam-checkpoint PATH --sam-model vit_h" in msg
    with pytest.raises(InputError) as e:
        load_sam(tmp_path / "missing.pth", "vit_b")
    assert "missing.pth" in str(e.value) and "sam_vit_b_01ec64.pth" in str(e.value)
    with pytest.raises(InputError, match="vit_h, vit_l, vit_b"):
        load_sam(tmp_path / "x.pth", "vit_x")


def test_driver_without_checkpoint_fails_before_reading_images(tmp_path):
    from gsgroup.segment.masks import generate_masks

    (tmp_path / "data").mkdir()  # not even a dataset: the SAM options are checked first
    with pytest.raises(InputError, match="sam_vit_h_4b8939.pth"):
        generate_masks(
            tmp_path / "data", tmp_path / "out", source="sam", sam=SamOptions(checkpoint=None), progress=False
        )


def test_missing_package_error(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "segment_anything" else real(name, *a)
    )
    monkeypatch.delitem(sys.modules, "segment_anything", raising=False)
    with pytest.raises(InputError, match="pip install segment-anything"):
        sam_mod.import_segment_anything()


def test_checkpoint_of_wrong_model_type(tmp_path):
    import torch

    model, _ = tiny_sam()
    torch.save(model.state_dict(), tmp_path / "tiny.pth")
    with pytest.raises(InputError, match="does not fit --sam-model vit_b"):
        load_sam(tmp_path / "tiny.pth", "vit_b")
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(InputError, match="junk.pth"):
        load_sam(tmp_path / "junk.pth", "vit_b")


# ----------------------------------------------------------------------------- torchvision stand-in


def _nms_reference(boxes, scores, thr):
    order = sorted(range(len(boxes)), key=lambda i: -scores[i])
    keep = []
    for i in order:
        ok = True
        for j in keep:
            x1, y1 = max(boxes[i][0], boxes[j][0]), max(boxes[i][1], boxes[j][1])
            x2, y2 = min(boxes[i][2], boxes[j][2]), min(boxes[i][3], boxes[j][3])
            inter = max(0, x2 - x1) * max(0, y2 - y1)
            ai = (boxes[i][2] - boxes[i][0]) * (boxes[i][3] - boxes[i][1])
            aj = (boxes[j][2] - boxes[j][0]) * (boxes[j][3] - boxes[j][1])
            if inter / (ai + aj - inter) > thr:
                ok = False
                break
        if ok:
            keep.append(i)
    return keep


def test_standin_nms_matches_reference():
    import torch

    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 50, (60, 2))
    wh = rng.uniform(5, 30, (60, 2))
    boxes = np.concatenate([xy, xy + wh], 1)
    scores = rng.permutation(60) / 60.0
    cats = rng.integers(0, 3, 60)
    got = sam_mod._nms(torch.tensor(boxes), torch.tensor(scores), 0.4).tolist()
    assert got == _nms_reference(boxes.tolist(), scores.tolist(), 0.4)
    got = sam_mod._batched_nms(torch.tensor(boxes), torch.tensor(scores), torch.tensor(cats), 0.4).tolist()
    ref = []
    for c in range(3):
        idx = np.flatnonzero(cats == c)
        ref += [int(idx[k]) for k in _nms_reference(boxes[idx].tolist(), scores[idx].tolist(), 0.4)]
    assert got == sorted(ref, key=lambda i: -scores[i])


def test_preprocess_resize_longest_side():
    _require_sam()
    from segment_anything.utils.transforms import ResizeLongestSide

    img = np.zeros((30, 40, 3), np.uint8)
    img[:, 20:] = 200
    out = ResizeLongestSide(64).apply_image(img)
    assert out.shape == (48, 64, 3) and out.dtype == np.uint8
    assert out[:, :30].max() == 0 and out[:, 34:].min() == 200


# ----------------------------------------------------------------------------- end to end


def test_tiny_sam_end_to_end_through_driver(tmp_path):
    from gsgroup.data.scene import load_scene
    from gsgroup.data.synthetic import make_scene
    from gsgroup.segment.masks import generate_masks
    from gsgroup.segment.sam import SamSegmenter

    model, sa = tiny_sam()
    opts = SamOptions(points_per_side=4, points_per_batch=8, pred_iou_thresh=0.0, stability_score_thresh=0.0)
    seg = SamSegmenter(opts, model=model)
    assert isinstance(seg.generator, sa.SamAutomaticMaskGenerator)
    scene = make_scene(tmp_path / "scene", width=48, height=36, n_views=2, progress=False)
    summary = generate_masks(
        scene, tmp_path / "out", source="sam", segmenter=seg, cache_dir=tmp_path / "c", progress=False
    )
    assert summary["views"] == 2
    views = load_scene(scene, cache_dir=tmp_path / "c", progress=False).train
    for v in views:
        raw = cv2.imread(str(tmp_path / "out" / f"{v.name}.png"), cv2.IMREAD_UNCHANGED)
        assert raw.dtype == np.uint8 and raw.shape == (36, 48)
        ids = np.unique(raw[raw > 0])
        assert len(ids) >= 1 and np.array_equal(ids, np.arange(1, len(ids) + 1))
        # same segments as SAM's records flattened (ids permuted per view by the driver)
        recs = seg.records(v.image)
        ref = flatten_masks(np.stack([r["segmentation"] for r in recs]))
        pairs = np.unique(np.stack([raw.ravel().astype(np.int64), ref.ravel()], 1), axis=0)
        assert len(pairs) == len(np.unique(raw)) == len(np.unique(ref))
        assert ((raw == 0) == (ref == 0)).all()
