"""Select objects by an open-vocabulary text prompt, as Gaussian Grouping does: Grounding DINO boxes on a few
rendered training views, each box made a mask, and the identity classes that the masks cover, voted over views.

1. Views: ``views`` training views chosen for coverage (farthest-point sampling of the camera centres,
   starting from the first view).
2. Detection: Grounding DINO (``transformers`` ``GroundingDinoForObjectDetection`` + its processor, from a
   local folder; ``pip install 'gsgroup[text]'``) on each view's render, boxes above ``box_threshold``
   whose prompt tokens score above ``text_threshold``.
3. Box -> mask: with a SAM checkpoint, SAM's box-prompted mask; without, the rendered id map inside the
   box (grown by 5% of its size, at least 1 px, a side): the objects mostly inside the box (>= ``cover`` of their pixels in the view) whose pixels, added
   largest first, make the visible extent fit the box better (box IoU), so an object resting inside
   another's box is not taken with it.
4. An object is hit in a view when the view's masks cover >= ``cover`` of its rendered pixels there
   (intersection over the object's area, 0.7 in Gaussian Grouping), and selected when it is hit in >=
   ``vote`` of the chosen views where it is visible.
5. With a CLIP checkpoint, each candidate (hit at least once) is rendered alone, cropped and scored
   against the prompt; a selected object is kept when its CLIP probability (softmax over the candidates)
   is >= ``clip_keep`` x the best candidate's. Both scores go to the report (``sel.json``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from ..options import check_bounds, option
from ..run import Run
from ..segment.idmaps import render_ids
from ..segment.sam import SAM_MODEL_TYPES
from ..train.trainer import render_view, view_tensors

EXTRA = "pip install 'gsgroup[text]'"
MIN_PIXELS = 20  # an object smaller than this in a view does not vote there
BOX_MARGIN = 0.05  # boxes grow by this share of their size (>= 1 px) a side: rendered edges are not the detector's


@dataclass
class TextSelectOptions:
    """Text prompt, checkpoints and the box -> object rules (see the module docstring)."""

    text: str | None = option(
        None, 'select the objects a text prompt names, e.g. "red ball" (needs --detector-checkpoint)'
    )
    detector_checkpoint: str | None = option(
        None, "local Grounding DINO folder (e.g. IDEA-Research/grounding-dino-tiny)"
    )
    sam_checkpoint: str | None = option(None, "SAM weights (.pth): boxes become SAM box-prompted masks")
    sam_model: str = option("vit_h", "SAM backbone of --sam-checkpoint", choices=list(SAM_MODEL_TYPES))
    clip_checkpoint: str | None = option(None, "local CLIP folder: re-rank candidates by their isolated renders")
    views: int = option(4, "training views the detector looks at, chosen for coverage", min=1)
    box_threshold: float = option(0.3, "Grounding DINO box score threshold", min=0.0, max=1.0)
    text_threshold: float = option(0.25, "Grounding DINO prompt-token score threshold", min=0.0, max=1.0)
    cover: float = option(
        0.7, "a mask hits an object covering this share of its pixels in the view", min=0.0, max=1.0, exclusive=True
    )
    vote: float = option(0.5, "select objects hit in this share of the views where they show", min=0.0, max=1.0)
    clip_keep: float = option(
        0.5, "with CLIP: keep objects scoring this share of the best candidate's probability", min=0.0, max=1.0
    )

    def __post_init__(self):
        check_bounds(self)
        if self.text is not None and not self.text.strip():
            raise InputError('text: the prompt is empty; name the object, e.g. "red ball"', "text")
        if self.text is not None and not self.detector_checkpoint:
            raise InputError(
                "detector_checkpoint missing: selecting by text needs a local Grounding DINO folder "
                "(e.g. IDEA-Research/grounding-dino-tiny)",
                "detector_checkpoint",
            )


# ----------------------------------------------------------------------------- geometry of boxes and masks


def coverage_views(views: list, count: int) -> list:
    """``count`` views spread over the cameras: farthest-point sampling of camera centres from views[0]."""
    if count >= len(views):
        return list(views)
    centres = np.stack([-np.asarray(v.viewmat)[:3, :3].T @ np.asarray(v.viewmat)[:3, 3] for v in views])
    picked = [0]
    dist = np.linalg.norm(centres - centres[0], axis=1)
    while len(picked) < count:
        nxt = int(np.argmax(dist))
        picked.append(nxt)
        dist = np.minimum(dist, np.linalg.norm(centres - centres[nxt], axis=1))
    return [views[i] for i in picked]


def _box_pixels(shape: tuple[int, int], box) -> np.ndarray:
    """Bool [H,W] of the pixels whose centres lie in box (x0, y0, x1, y1)."""
    h, w = shape
    x0, y0, x1, y1 = (float(v) for v in box)
    xs, ys = np.arange(w) + 0.5, np.arange(h) + 0.5
    return ((ys >= y0) & (ys <= y1))[:, None] & ((xs >= x0) & (xs <= x1))[None, :]


def _bbox(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float64)


def box_iou(a, b) -> float:
    """IoU of two boxes (x0, y0, x1, y1)."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def box_mask(ids: np.ndarray, box, cover: float = 0.7) -> np.ndarray:
    """The mask [H,W] bool of a box without SAM, from the rendered id map ids [H,W] (0 = background):
    of the objects with >= ``cover`` of their pixels inside the box, largest first, each one that makes
    the bounding box of the taken pixels fit ``box`` better (IoU up by > 0.01) is taken."""
    x0, y0, x1, y1 = (float(v) for v in box)
    m = max(1.0, BOX_MARGIN * max(x1 - x0, y1 - y0))
    box = (x0 - m, y0 - m, x1 + m, y1 + m)
    inside = _box_pixels(ids.shape, box)
    n = int(ids.max()) + 1
    total = np.bincount(ids.ravel(), minlength=n)
    within = np.bincount(ids[inside].ravel(), minlength=n)
    cand = [i for i in np.argsort(-within) if i != 0 and within[i] >= MIN_PIXELS and within[i] >= cover * total[i]]
    taken, best = np.zeros(ids.shape, bool), 0.0
    for i in cand:
        trial = taken | ((ids == i) & inside)
        iou = box_iou(_bbox(trial), np.asarray(box, np.float64))
        if iou > best + 0.01:
            taken, best = trial, iou
    return taken


def covered_ids(ids: np.ndarray, mask: np.ndarray, cover: float = 0.7) -> dict[int, float]:
    """{id: share of its pixels [H,W] inside mask} for the objects (not 0) with share >= ``cover``."""
    n = int(ids.max()) + 1
    total = np.bincount(ids.ravel(), minlength=n).astype(np.float64)
    hit = np.bincount(ids[mask].ravel(), minlength=n).astype(np.float64)
    share = hit / np.maximum(total, 1)
    return {
        int(i): round(float(share[i]), 4) for i in np.flatnonzero((share >= cover) & (total >= MIN_PIXELS)) if i != 0
    }


def mask_rle(mask: np.ndarray) -> dict:
    """Uncompressed run-length code of mask [H,W] bool, row-major, starting with a run of False (COCO style)."""
    flat = np.asarray(mask, bool).ravel()
    bounds = np.r_[0, np.flatnonzero(np.diff(flat.astype(np.int8))) + 1, flat.size]
    counts = np.diff(bounds).tolist()
    return {"size": list(mask.shape), "counts": ([0] + counts) if flat.size and flat[0] else counts}


def rle_mask(rle: dict) -> np.ndarray:
    """Inverse of ``mask_rle`` -> bool [H,W]."""
    values = np.arange(len(rle["counts"])) % 2 == 1
    return np.repeat(values, rle["counts"]).reshape(rle["size"])


def vote(hits: dict[int, int], visible: dict[int, int], share: float) -> list[int]:
    """Ids hit in >= ``share`` of the views where they are visible (and hit at least once)."""
    return sorted(i for i, h in hits.items() if h > 0 and h >= share * visible.get(i, h))


# ----------------------------------------------------------------------------- models


def _require_transformers():
    try:
        import transformers  # noqa: F401
    except ImportError:
        raise InputError(f"text: selecting by text needs transformers: {EXTRA}", "text") from None


def _check_folder(folder, what: str, param: str, example: str) -> Path:
    """The checkpoint folder, once it is a folder with transformers' model config in it (and the extra installed)."""
    path = Path(folder)
    if not path.is_dir():
        raise InputError(f"{param} {folder}: not a folder; give a local {what} folder (e.g. {example})", param)
    if not (path / "config.json").is_file():  # transformers' CONFIG_NAME
        raise InputError(f"{param} {folder}: no config.json there; give a local {what} folder (e.g. {example})", param)
    _require_transformers()
    return path


def _load_pretrained(model_class_name: str, folder, what: str, param: str, example: str):
    """(model in eval mode, processor) from a local transformers folder, or a one-line InputError."""
    path = _check_folder(folder, what, param, example)
    import transformers

    try:
        model = getattr(transformers, model_class_name).from_pretrained(str(path), local_files_only=True).eval()
        processor = transformers.AutoProcessor.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(f"{param} {folder}: not a loadable {what} model ({_first_line(e)})", param) from None
    return model, processor


class Detector:
    """Grounding DINO from a local folder: ``detector(image [H,W,3] uint8, prompt, box_threshold,
    text_threshold)`` -> (boxes [B,4] x0,y0,x1,y1 pixels, scores [B], labels list[str])."""

    def __init__(self, model, processor):
        self.model, self.processor = model, processor

    @classmethod
    def from_checkpoint(cls, folder: str | os.PathLike) -> Detector:
        return cls(
            *_load_pretrained(
                "GroundingDinoForObjectDetection",
                folder,
                "Grounding DINO",
                "detector_checkpoint",
                "IDEA-Research/grounding-dino-tiny",
            )
        )

    @torch.no_grad()
    def __call__(self, image: np.ndarray, prompt: str, box_threshold: float, text_threshold: float):
        from PIL import Image

        text = prompt.strip().lower()
        text = text if text.endswith(".") else text + "."  # Grounding DINO's phrase separator
        inputs = self.processor(images=Image.fromarray(image), text=text, return_tensors="pt")
        out = self.model(**inputs)
        res = self.processor.post_process_grounded_object_detection(
            out,
            inputs["input_ids"],
            threshold=box_threshold,
            text_threshold=text_threshold,
            target_sizes=[image.shape[:2]],
        )[0]
        labels = res["text_labels"] if "text_labels" in res else res.get("labels", [])
        return (
            res["boxes"].numpy().astype(np.float64),
            res["scores"].numpy().astype(np.float64),
            [str(x) for x in labels],
        )


class ClipRanker:
    """CLIP from a local folder: ``ranker(images list of [H,W,3] uint8, prompt)`` -> similarities [C]."""

    def __init__(self, model, processor):
        self.model, self.processor = model, processor

    @classmethod
    def from_checkpoint(cls, folder: str | os.PathLike) -> ClipRanker:
        return cls(*_load_pretrained("CLIPModel", folder, "CLIP", "clip_checkpoint", "openai/clip-vit-base-patch32"))

    @torch.no_grad()
    def __call__(self, images: list[np.ndarray], prompt: str) -> np.ndarray:
        from PIL import Image

        inputs = self.processor(
            text=[prompt], images=[Image.fromarray(im) for im in images], return_tensors="pt", padding=True
        )
        out = self.model(**inputs)
        return out.logits_per_image[:, 0].numpy().astype(np.float64)


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def sam_box_segmenter(checkpoint: str, model_type: str):
    """(image [H,W,3] uint8, box) -> SAM's box-prompted mask [H,W] bool (segment-anything's SamPredictor)."""
    from ..segment.sam import import_segment_anything, load_sam

    predictor = import_segment_anything().SamPredictor(load_sam(checkpoint, model_type))
    state = {"image": None}

    def segment(image: np.ndarray, box) -> np.ndarray:
        if state["image"] is not image:
            predictor.set_image(image)
            state["image"] = image
        masks, _, _ = predictor.predict(box=np.asarray(box, np.float32), multimask_output=False)
        return np.asarray(masks[0], bool)

    return segment


# ----------------------------------------------------------------------------- the selection


@torch.no_grad()
def isolated_crop(run: Run, oid: int, views: list, device: torch.device | str = "cpu") -> np.ndarray | None:
    """The object ``oid`` rendered alone (black around it, on ``device``) in the view where it is largest,
    cropped to its extent with a margin -> uint8 [h,w,3], or None when it shows nowhere."""
    from ..on_device import gaussians_on

    labels, _ = run.labels
    part = gaussians_on(run.gaussians.select(torch.from_numpy(labels == oid)), device)
    best, best_area = None, 0
    for v in views:
        r = render_view(part, view_tensors(v, device), part.sh_degree)
        alpha = r.alpha[..., 0].cpu().numpy() > 0.5
        if alpha.sum() > best_area:
            best, best_area = (r.image.clamp(0, 1).cpu().numpy(), alpha), int(alpha.sum())
    if best is None:
        return None
    img, alpha = best
    x0, y0, x1, y1 = _bbox(alpha).astype(int)
    m = max(2, (x1 - x0 + y1 - y0) // 10)
    crop = img[max(0, y0 - m) : y1 + m, max(0, x0 - m) : x1 + m]
    return (crop * 255 + 0.5).astype(np.uint8)


def text_ids(
    run: Run, opts: TextSelectOptions, detector=None, segmenter=None, ranker=None, device: torch.device | str = "cpu"
) -> tuple[list[int], dict]:
    """The ids the prompt ``opts.text`` names, and the report (sel.json: prompt, ids, per view the boxes,
    scores, labels and what each box's mask covered, per candidate the vote and CLIP scores).
    ``detector``/``segmenter``/``ranker`` default to the models of the checkpoints in ``opts``; the views
    are rendered on ``device`` (the models run where they were loaded)."""
    from ..on_device import backdrop_on, gaussians_on, segmentation_on

    if not opts.text:
        raise InputError('text: give a prompt naming the object, e.g. "red ball"', "text")
    detector = detector or Detector.from_checkpoint(opts.detector_checkpoint)
    if segmenter is None and opts.sam_checkpoint:
        segmenter = sam_box_segmenter(opts.sam_checkpoint, opts.sam_model)
    if ranker is None and opts.clip_checkpoint:
        ranker = ClipRanker.from_checkpoint(opts.clip_checkpoint)
    seg = segmentation_on(run.require_segmentation(), device)
    g, backdrop = gaussians_on(run.gaussians, device), backdrop_on(run.backdrop, device)
    train = run.views("train")
    chosen = coverage_views(train, opts.views)
    hits, visible, records = {}, {}, []
    for view in chosen:
        r = render_ids(g, view_tensors(view, device), seg, background=backdrop)
        image = (np.clip(r.rgb, 0, 1) * 255 + 0.5).astype(np.uint8)
        boxes, scores, labels = detector(image, opts.text, opts.box_threshold, opts.text_threshold)
        union, per_box = np.zeros(r.ids.shape, bool), []
        for box in boxes:
            mask = segmenter(image, box) if segmenter is not None else box_mask(r.ids, box, opts.cover)
            union |= mask
            per_box.append(
                {"pixels": int(mask.sum()), "covers": covered_ids(r.ids, mask, opts.cover), "rle": mask_rle(mask)}
            )
        counts = np.bincount(r.ids.ravel())
        for i in np.flatnonzero(counts >= MIN_PIXELS):
            if i:
                visible[int(i)] = visible.get(int(i), 0) + 1
        for i in covered_ids(r.ids, union, opts.cover):
            hits[i] = hits.get(i, 0) + 1
        records.append(
            {
                "view": view.name,
                "boxes": np.round(boxes, 2).tolist(),
                "scores": np.round(scores, 4).tolist(),
                "labels": labels,
                "masks": per_box,
                "hit": sorted(covered_ids(r.ids, union, opts.cover)),
            }
        )
    ids = vote(hits, visible, opts.vote)
    candidates = {str(i): {"hits": hits[i], "visible_views": visible.get(i, 0)} for i in sorted(hits)}
    if ranker is not None and hits:
        cand = sorted(hits)
        crops = [isolated_crop(run, i, train, device) for i in cand]
        ok = [i for i, c in zip(cand, crops) if c is not None]
        sims = ranker([c for c in crops if c is not None], opts.text) if ok else np.zeros(0)
        probs = np.exp(sims - sims.max()) / np.exp(sims - sims.max()).sum() if len(sims) else sims
        for i, s, p in zip(ok, sims, probs):
            candidates[str(i)].update(clip_similarity=round(float(s), 4), clip_probability=round(float(p), 4))
        keep = {i for i, p in zip(ok, probs) if p >= opts.clip_keep * probs.max()}
        ids = [i for i in ids if i in keep]
    report = {"prompt": opts.text, "ids": ids, "candidates": candidates, "views": records}
    return ids, report


def select_by_text(run: Run, opts: TextSelectOptions, options=None, device: torch.device | str = "cpu", **models):
    """A Selection (see ``select.make_selection``) of the objects ``opts.text`` names, and the report of
    ``text_ids`` (views rendered on ``device``); an InputError when nothing is found. ``models``: detector,
    segmenter, ranker."""
    from .select import SelectOptions, make_selection

    ids, report = text_ids(run, opts, device=device, **models)
    if not ids:
        raise InputError(
            f"text {opts.text!r}: no object found in {len(report['views'])} views; lower box_threshold or vote, "
            "or look at more views",
            "text",
        )
    sel = make_selection(
        run.gaussians, run.require_segmentation(), ids, options or SelectOptions(), by=f"text {opts.text!r}"
    )
    return sel, report
