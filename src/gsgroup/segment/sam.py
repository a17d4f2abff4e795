"""Segment Anything ("everything" mode) masks via the official ``segment-anything`` package.

Install: ``pip install segment-anything==1.0`` (the ``sam`` extra). Weights are not bundled: download a
checkpoint from the official links (see ``SAM_CHECKPOINT_URLS``) and pass ``--sam-checkpoint PATH
--sam-model vit_h|vit_l|vit_b``.

torchvision: ``segment_anything`` cannot be imported without a module named ``torchvision``, and
the stand-in below is the smallest way to run the package's own code on CPU torch:

- its ``__init__`` eagerly imports ``predictor`` and ``automatic_mask_generator``, so even the
  submodules that need no torchvision (``modeling``, ``build_sam``, ``utils.amg``) are reached only
  through it: ``import segment_anything.modeling`` raises ModuleNotFoundError: torchvision;
- the automatic mask generator calls ``torchvision.ops.boxes.batched_nms`` (dropping duplicate masks
  within a crop, across crops and after the small-region clean-up) and ``box_area`` (preferring
  masks from smaller crops), and the predictor's ``ResizeLongestSide.apply_image``
  calls ``torchvision.transforms.functional.resize`` and ``to_pil_image`` on every image;
- torchvision is unusable beside the pinned CPU torch: PyPI has only CUDA builds (e.g. 0.28.0+cu130
  for torch 2.13.0), whose ``_C.so`` links ``libtorch_cuda.so``/``libc10_cuda.so``, absent from the
  CPU wheel, so ``import torchvision`` itself fails ("operator torchvision::nms does not exist") and
  even its pure-Python functions cannot be reached; the ``+cpu`` builds live only on PyTorch's own
  package index.

Avoiding the stand-in would mean bypassing the package's ``__init__`` or keeping our own copy of the
mask generator and predictor, i.e. not using the maintained code. So when no working torchvision is
importable, ``import_segment_anything`` registers a tiny pure torch/PIL stand-in for exactly those
four functions (same semantics: torchvision's coordinate-offset batched NMS with its ``IoU >
threshold`` rule; PIL bilinear resize to ``[h, w]``) while importing the package, and removes it from
``sys.modules`` afterwards. A working real torchvision is always preferred.

Defaults of the automatic mask generator follow the original Gaussian Grouping pipeline, which made
its "everything" masks with DEVA (``script/prepare_pseudo_label.sh``): DEVA's SAM settings are
32 points per side and 64 points per batch, Gaussian Grouping overrides the predicted-IoU threshold
to 0.7 (``--SAM_PRED_IOU_THRESHOLD 0.7``; SAM's own default is 0.88), and the stability score
threshold (0.95) and minimum mask region area (0) stay at SAM's defaults.
DEVA then let larger masks absorb smaller ones; here overlapping masks are flattened the other
way round (larger first, smaller on top, ``flatten_masks``) so small parts stay visible.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import logging
import os
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gsgroup.errors import InputError
from gsgroup.options import check_bounds, option

log = logging.getLogger(__name__)

SAM_CHECKPOINT_URLS = {
    "vit_h": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth",
    "vit_l": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth",
    "vit_b": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth",
}
SAM_MODEL_TYPES = tuple(SAM_CHECKPOINT_URLS)
INSTALL_HINT = "pip install segment-anything==1.0  (or: pip install 'gsgroup[sam]')"


@dataclass
class SamOptions:
    """Options of the SAM mask source (defaults: Gaussian Grouping's, see the module docstring)."""

    checkpoint: str | os.PathLike | None = option(None, "SAM weights (.pth) for --source sam", flag="--sam-checkpoint")
    model_type: str = option("vit_h", "SAM backbone", flag="--sam-model", choices=list(SAM_CHECKPOINT_URLS))
    points_per_side: int = option(32, "SAM point grid per side", flag="--sam-points-per-side", min=1)
    pred_iou_thresh: float = option(0.7, "SAM predicted-IoU threshold", flag="--sam-pred-iou-thresh", min=0.0, max=1.0)
    stability_score_thresh: float = option(
        0.95, "SAM stability threshold", flag="--sam-stability-thresh", min=0.0, max=1.0
    )
    min_mask_region_area: int = option(0, "minimum mask region area in pixels", flag="--sam-min-area", min=0)
    points_per_batch: int = 64
    device: str = "cpu"

    def __post_init__(self):
        check_bounds(self)


# ----------------------------------------------------------------------------- torchvision stand-in


def _box_area(boxes):
    """Areas [N] of boxes [N,4] (x1, y1, x2, y2)."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def _nms(boxes, scores, iou_threshold: float):
    """Greedy NMS like torchvision.ops.nms: indices [K] (int64) of kept boxes, by decreasing score;
    a box is dropped when its IoU with a kept higher-scoring box exceeds ``iou_threshold``."""
    import torch

    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.int64, device=boxes.device)
    order = torch.argsort(scores, descending=True, stable=True)
    b = boxes[order].double()
    area = _box_area(b)
    lt = torch.maximum(b[:, None, :2], b[None, :, :2])
    rb = torch.minimum(b[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    iou = (inter / (area[:, None] + area[None, :] - inter)).cpu().numpy()
    n = len(order)
    suppressed = np.zeros(n, bool)
    keep = []
    for i in range(n):  # over candidate masks (at most points_per_side^2 * 3), not pixels
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= iou[i] > iou_threshold
    return order[torch.as_tensor(keep, dtype=torch.int64, device=order.device)]


def _batched_nms(boxes, scores, idxs, iou_threshold: float):
    """torchvision.ops.batched_nms: NMS within each category of ``idxs``; kept indices by decreasing score."""
    import torch

    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.int64, device=boxes.device)
    offset = idxs.to(boxes) * (boxes.max() + 1)
    keep = _nms(boxes + offset[:, None], scores, iou_threshold)
    return keep


def _to_pil_image(pic):
    """torchvision's to_pil_image for a uint8 HWC (or HW) numpy array."""
    from PIL import Image

    return Image.fromarray(np.asarray(pic))


def _resize(img, size):
    """torchvision's resize for a PIL image and ``size`` = [h, w] (bilinear, like its default)."""
    from PIL import Image

    h, w = int(size[0]), int(size[1])
    return img.resize((w, h), Image.BILINEAR)


def _standin_modules() -> dict[str, types.ModuleType]:
    mods = {
        name: types.ModuleType(name)
        for name in (
            "torchvision",
            "torchvision.ops",
            "torchvision.ops.boxes",
            "torchvision.transforms",
            "torchvision.transforms.functional",
        )
    }
    mods["torchvision.ops.boxes"].batched_nms = _batched_nms
    mods["torchvision.ops.boxes"].box_area = _box_area
    mods["torchvision.ops.boxes"].nms = _nms
    mods["torchvision.transforms.functional"].resize = _resize
    mods["torchvision.transforms.functional"].to_pil_image = _to_pil_image
    mods["torchvision"].ops = mods["torchvision.ops"]
    mods["torchvision"].transforms = mods["torchvision.transforms"]
    mods["torchvision.ops"].boxes = mods["torchvision.ops.boxes"]
    mods["torchvision.transforms"].functional = mods["torchvision.transforms.functional"]
    for m in mods.values():
        m.__gsgroup_standin__ = True
    return mods


def _real_torchvision_works() -> bool:
    if importlib.util.find_spec("torchvision") is None:
        return False
    try:
        importlib.import_module("torchvision.ops.boxes")
        importlib.import_module("torchvision.transforms.functional")
        return True
    except Exception as e:  # a CUDA-only wheel beside CPU torch fails here
        log.debug("torchvision is installed but does not import (%s); using the stand-in", e)
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]
        return False


@contextlib.contextmanager
def _torchvision_standin():
    """Provide the stand-in torchvision modules while the body runs, if no real one imports."""
    if "segment_anything" in sys.modules or _real_torchvision_works():
        yield
        return
    mods = _standin_modules()
    sys.modules.update(mods)
    try:
        yield
    finally:
        for name, mod in mods.items():
            if sys.modules.get(name) is mod:
                del sys.modules[name]


def import_segment_anything():
    """Import and return the ``segment_anything`` package; InputError with the pip line if missing."""
    if "segment_anything" in sys.modules:
        return sys.modules["segment_anything"]
    if importlib.util.find_spec("segment_anything") is None:
        raise InputError(f"source sam needs the segment-anything package: {INSTALL_HINT}", "source")
    with _torchvision_standin():
        return importlib.import_module("segment_anything")


# ----------------------------------------------------------------------------- model


def checkpoint_help(model_type: str = "vit_h") -> str:
    url = SAM_CHECKPOINT_URLS.get(model_type, SAM_CHECKPOINT_URLS["vit_h"])
    return (
        f"download a SAM checkpoint (e.g. {url}; vit_l: {SAM_CHECKPOINT_URLS['vit_l']}; "
        f"vit_b: {SAM_CHECKPOINT_URLS['vit_b']}) and pass --sam-checkpoint PATH --sam-model {model_type}"
    )


def load_sam(checkpoint, model_type: str = "vit_h", device: str = "cpu"):
    """Build SAM ``model_type`` (vit_h|vit_l|vit_b) and load ``checkpoint`` (a .pth state dict).

    Raises InputError for a missing checkpoint (saying where to get one), an unknown model type, a
    missing package, or a checkpoint that does not fit the model type.
    """
    if model_type not in SAM_MODEL_TYPES:
        raise InputError(f"model_type {model_type!r} is unknown; use one of {', '.join(SAM_MODEL_TYPES)}", "model_type")
    if checkpoint is None:
        raise InputError(f"source sam needs SAM weights: {checkpoint_help(model_type)}", "source")
    path = Path(checkpoint)
    if not path.is_file():
        raise InputError(f"{path}: SAM checkpoint not found; {checkpoint_help(model_type)}")
    sa = import_segment_anything()
    import torch

    model = sa.sam_model_registry[model_type](checkpoint=None)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise InputError(
            f"{path}: not a readable SAM checkpoint ({type(e).__name__}); {checkpoint_help(model_type)}"
        ) from e
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as e:
        raise InputError(
            f"{path}: checkpoint does not fit --sam-model {model_type}; pass the matching model type "
            f"(vit_h/vit_l/vit_b as in the file name)"
        ) from e
    return model.to(device).eval()


# ----------------------------------------------------------------------------- masks


def flatten_masks(masks) -> np.ndarray:
    """Flatten overlapping binary masks [N,H,W] into one label map [H,W] int32.

    Larger masks are drawn first and smaller ones on top, so a small part inside a big mask stays
    visible. Masks left with no visible pixel are dropped; the visible ones get ids 1..K in their
    input order. Pixels covered by no mask are 0.
    """
    masks = np.asarray(masks, bool)
    if masks.ndim != 3:
        raise ValueError(f"masks must be [N,H,W], got {masks.shape}")
    n, h, w = masks.shape
    out = np.zeros((h, w), np.int64)  # holds input index + 1
    areas = masks.reshape(n, -1).sum(1)
    for i in np.argsort(-areas, kind="stable"):  # over masks, not pixels
        out[masks[i]] = i + 1
    visible = np.unique(out[out > 0])
    table = np.zeros(n + 1, np.int32)
    table[visible] = np.arange(1, len(visible) + 1, dtype=np.int32)
    return table[out]


class SamSegmenter:
    """Callable image [H,W,3] float in [0,1] -> labels [H,W] int32 (0 = no mask) using SAM's
    automatic mask generator with ``options``; ``model`` overrides loading from the checkpoint."""

    def __init__(self, options: SamOptions | None = None, model=None):
        self.options = opts = options or SamOptions()
        if model is None:  # checks the checkpoint first, then the package
            model = load_sam(opts.checkpoint, opts.model_type, opts.device)
        sa = import_segment_anything()
        self.generator = sa.SamAutomaticMaskGenerator(
            model,
            points_per_side=int(opts.points_per_side),
            points_per_batch=int(opts.points_per_batch),
            pred_iou_thresh=float(opts.pred_iou_thresh),
            stability_score_thresh=float(opts.stability_score_thresh),
            min_mask_region_area=int(opts.min_mask_region_area),
            output_mode="binary_mask",
        )

    def records(self, image: np.ndarray) -> list[dict]:
        """SAM's mask records (dicts with 'segmentation' [H,W] bool, 'area', ...) for ``image``."""
        import torch

        img = np.asarray(image)
        if img.dtype != np.uint8:
            img = (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        with torch.inference_mode():
            return self.generator.generate(np.ascontiguousarray(img[:, :, :3]))

    def __call__(self, image: np.ndarray) -> np.ndarray:
        recs = self.records(image)
        h, w = np.asarray(image).shape[:2]
        if not recs:
            return np.zeros((h, w), np.int32)
        return flatten_masks(np.stack([r["segmentation"] for r in recs]))
