"""Edits as functions on a ``Run``: each returns a new in-memory run; ``save`` writes it.

    from gsgroup import edit
    from gsgroup.run import Run

    run = Run.open("demo_out/run")
    sel = edit.select(run, objects=[1])                 # or pick=("view_000", 120, 80), mask=("view_000", png)
    edit.save(edit.recolor(run, sel, "#2a6fdb"), "demo_out/blue")
    moved = edit.transform(run, sel, translate=(0.2, 0, 0), rotate_deg=(0, 0, 45))

The CLI (``gsgroup edit``) and the viewer call exactly these.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from ..model import save_ply
from ..run import Run
from ..segment.idmaps import render_ids
from ..train.trainer import render_view, view_tensors
from . import ops, refine
from .select import Selection, SelectOptions, ids_at_pixel, ids_in_mask, make_selection, selection_info
from .shrot import euler_deg_to_matrix

PIVOTS = ("centroid", "origin")  # what rotation and scale are about; the first is the default


# ---- selection -------------------------------------------------------------------------------
@torch.no_grad()
def id_map(run: Run, stem: str, device: torch.device | str = "cpu") -> np.ndarray:
    """Rendered per-pixel object ids [H,W] of view ``stem`` (0 where alpha < 0.5), rendered on ``device``."""
    from ..on_device import backdrop_on, gaussians_on, segmentation_on

    g, seg = gaussians_on(run.gaussians, device), segmentation_on(run.require_segmentation(), device)
    return render_ids(g, view_tensors(run.view(stem), device), seg, background=backdrop_on(run.backdrop, device)).ids


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """A 2D selection mask from an image file: non-zero in any channel = selected -> bool [H,W]."""
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise InputError(f"mask {path}: not found or not an image; give a PNG with the object painted non-zero", "mask")
    return (img.reshape(img.shape[0], img.shape[1], -1) > 0).any(axis=2)


def select(
    run: Run,
    objects: list[int] | int | None = None,
    pick: tuple[str, int, int] | None = None,
    mask: tuple[str, np.ndarray | str | os.PathLike] | None = None,
    options: SelectOptions | None = None,
    device: torch.device | str = "cpu",
) -> Selection:
    """Select objects by exactly one of: ``objects`` (ids, see objects.json), ``pick`` (view stem,
    x = column, y = row: the object rendered there) or ``mask`` (view stem, bool [H,W] or an
    image file: the ids covering most of it). Returns the Selection (ids and Gaussian mask [N]).
    ``device``: where the id maps are rendered and the mask votes summed."""
    if sum(x is not None for x in (objects, pick, mask)) != 1:
        raise InputError("select the objects with exactly one of objects, pick or mask", "objects")
    if objects is not None:
        ids, how = sorted({int(i) for i in np.atleast_1d(objects)}), f"objects {objects}"
        if not ids or min(ids) < 0:
            raise InputError(f"objects {objects}: give at least one non-negative id", "objects")
    elif pick is not None:
        stem, x, y = pick
        ids, how = ids_at_pixel(id_map(run, stem, device), int(x), int(y), stem), f"pick {stem}:{x},{y}"
    else:
        stem, drawn = mask
        where = f"{drawn} on {stem}" if isinstance(drawn, (str, os.PathLike)) else f"on {stem}"
        pixels = read_mask(drawn) if isinstance(drawn, (str, os.PathLike)) else np.asarray(drawn, bool)
        ids, how = ids_in_mask(id_map(run, stem, device), pixels, where=where), f"mask {where}"
    opts = options or SelectOptions()
    if opts.whole:
        ids = refine.whole_ids(run, ids)
    sel = make_selection(run.gaussians, run.require_segmentation(), ids, opts, by=how)
    if opts.votes:
        sel = refined(run, sel, device)
    if not sel.mask.any():
        raise InputError(
            f"{run.path}: no Gaussian has probability > {opts.threshold} for ids {ids}; "
            "lower the threshold or check objects.json",
            "threshold",
        )
    return sel


def refined(run: Run, sel: Selection, device: torch.device | str = "cpu") -> Selection:
    """``sel`` refined with the mask votes of the run's associated masks (``refine.refine_selection``,
    the votes summed on ``device``); unchanged for runs without them."""
    votes = refine.mask_votes(run, sel.ids, device)
    if votes is None:
        return sel
    r = refine.refine_selection(run.gaussians, run.require_segmentation(), sel.ids, sel.mask, votes)
    counts = {**sel.counts, **r.counts}
    return replace(sel, mask=r.mask, counts=counts, trim=r.trim, trim_dirs=r.trim_dirs, trim_share=r.trim_share)


def trimmed(run: Run, sel: Selection):
    """The run's Gaussians with the selection's straddlers cut to their outside halves (see refine)."""
    if sel.trim is None or not len(sel.trim):
        return run.gaussians
    return refine.cut_straddlers(run.gaussians, sel.trim, sel.trim_dirs, sel.trim_share)


# ---- edits -----------------------------------------------------------------------------------
def _edited(run: Run, sel: Selection, op: str, g, seg, **info) -> Run:
    return run.derive(g, seg, {"edit": op, **selection_info(run, sel), **info})


def remove(run: Run, sel: Selection, clean: bool = False, options=None, progress: bool = False, device="cpu") -> Run:
    """Delete the selected Gaussians. ``clean`` also clears what the object leaves on the scene: its
    shadow baked into the surface and the surface under it that no view saw, with the scene fill
    (``fill.inpaint_scene``, ``options``: an InpaintOptions, its renders and fits on ``device``);
    ``gsgroup edit remove`` cleans by default."""
    if clean:
        from .fill import inpaint_scene
        from .inpainting import InpaintOptions

        edited = inpaint_scene(run, sel, options or InpaintOptions(), progress, device=device)
        edited.edit.update(edit="remove", clean=True)
        return edited
    g, seg = ops.remove(trimmed(run, sel), run.require_segmentation(), sel.mask)
    return _edited(run, sel, "remove", g, seg, removed=int(sel.mask.sum()), clean=False)


def recolor(run: Run, sel: Selection, color: str, sh_damp: float = ops.SH_DAMP) -> Run:
    """Give the selection the hue of ``color`` ('#RRGGBB') keeping its shading; the view-dependent
    SH become grey, times ``sh_damp``."""
    rgb = ops.parse_color(color)
    g = ops.recolor(run.gaussians, sel.mask, rgb, sh_damp)
    return _edited(
        run,
        sel,
        "recolor",
        g,
        run.segmentation,
        color=color,
        rgb=rgb.round(4).tolist(),
        sh_damp=sh_damp,
        recolored=int(sel.mask.sum()),
    )


def _vec3(value, name: str) -> np.ndarray:
    v = np.asarray(value if value is not None else (0.0, 0.0, 0.0), np.float64).reshape(-1)
    if v.shape != (3,) or not np.isfinite(v).all():
        raise InputError(f"{name} {value}: give three finite numbers x,y,z", name)
    return v


def make_transform(
    run: Run, sel: Selection, translate=None, rotate_deg=None, scale: float = 1.0, pivot: str = PIVOTS[0]
) -> ops.Transform:
    """x' = s R (x - p) + p + t with R from ``rotate_deg`` (about world x, then y, then z) and
    p the selection's opacity-weighted centroid (``pivot`` "centroid") or the origin."""
    if not (np.isfinite(scale) and scale > 0):
        raise InputError(f"scale {scale}: must be a positive number", "scale")
    if pivot not in PIVOTS:
        raise InputError(f"pivot {pivot}: use centroid or origin", "pivot")
    p = ops.centroid(run.gaussians, sel.mask) if pivot == "centroid" else np.zeros(3)
    R = euler_deg_to_matrix(*_vec3(rotate_deg, "rotate_deg"))
    return ops.Transform(R, _vec3(translate, "translate"), float(scale), np.asarray(p, np.float64))


def _tf_info(tf: ops.Transform) -> dict:
    return {
        "R": tf.R.round(6).tolist(),
        "translate": tf.t.tolist(),
        "scale": tf.s,
        "pivot": tf.pivot.round(6).tolist(),
        "matrix": tf.matrix().round(6).tolist(),
    }


def transform(
    run: Run, sel: Selection, translate=None, rotate_deg=None, scale: float = 1.0, pivot: str = PIVOTS[0]
) -> Run:
    """Move, rotate (degrees about world x, y, z) and scale the selection (see ``make_transform``)."""
    tf = make_transform(run, sel, translate, rotate_deg, scale, pivot)
    g = ops.transform(run.gaussians, sel.mask, tf)
    return _edited(run, sel, "transform", g, run.segmentation, transform=_tf_info(tf), moved=int(sel.mask.sum()))


def duplicate(
    run: Run, sel: Selection, translate=None, rotate_deg=None, scale: float = 1.0, pivot: str = PIVOTS[0]
) -> Run:
    """Copy the selection with a transform; the copies get new ids (edit info "new_ids")."""
    tf = make_transform(run, sel, translate, rotate_deg, scale, pivot)
    g, seg, mapping = ops.duplicate(run.gaussians, run.require_segmentation(), sel.mask, sel.ids, tf)
    return _edited(
        run,
        sel,
        "duplicate",
        g,
        seg,
        transform=_tf_info(tf),
        copied=int(sel.mask.sum()),
        new_ids={str(k): v for k, v in mapping.items()},
    )


def compose(
    run: Run, other: Run, sel: Selection, translate=None, rotate_deg=None, scale: float = 1.0, pivot: str = PIVOTS[0]
) -> Run:
    """Insert the objects ``sel`` of run ``other`` (transformed) into ``run`` with new ids."""
    tf = make_transform(other, sel, translate, rotate_deg, scale, pivot)
    part = ops.transform(other.gaussians.select(torch.from_numpy(sel.mask)), None, tf)
    labels = other.labels[0][sel.mask]
    g, seg, mapping = ops.compose(run.gaussians, run.require_segmentation(), part, labels, sel.ids)
    info = {
        "edit": "compose",
        **selection_info(other, sel),
        "gaussians_before": len(run.gaussians),
        "from": str(other.path.resolve()),
        "transform": _tf_info(tf),
        "inserted": int(sel.mask.sum()),
        "new_ids": {str(k): v for k, v in mapping.items()},
    }
    info["source"] = str(run.path.resolve())
    return run.derive(g, seg, info)


# ---- outputs ---------------------------------------------------------------------------------
def export(run: Run, sel: Selection, out: str | os.PathLike, plain: bool = False, force: bool = False) -> dict:
    """Write the selected Gaussians as one Inria 3DGS PLY (``plain``: without obj_dc_*)."""
    out = Path(out)
    if out.suffix.lower() != ".ply":
        raise InputError(f"out {out}: export writes a PLY file; give a name ending in .ply", "out")
    if out.exists() and not force:
        raise InputError(f"out {out}: exists; force to overwrite it or pick another name", "out")
    save_ply(out, run.gaussians.select(torch.from_numpy(sel.mask)), plain=plain)
    return {"ids": sel.ids, "gaussians": int(sel.mask.sum()), "path": str(out), "plain": plain}


def export_all(run: Run, folder: str | os.PathLike, plain: bool = False) -> dict[int, int]:
    """One PLY per object id, folder/object_<id>.ply (id 0 is the background). Returns {id: Gaussians}."""
    labels, _ = run.labels
    written = {}
    for oid in np.unique(labels).tolist():
        keep = torch.from_numpy(labels == oid)
        save_ply(Path(folder) / f"object_{oid:03d}.ply", run.gaussians.select(keep), plain=plain)
        written[oid] = int(keep.sum())
    return written


def preview_views(run: Run, count: int = 3) -> list:
    """A few views for before/after pictures: test views first, then evenly spaced train views."""
    test, train = list(run.views("test")), list(run.views("train"))
    picked = test[:count]
    if len(picked) < count and train:
        step = max(1, len(train) // (count - len(picked)))
        picked += train[::step][: count - len(picked)]
    return picked


@torch.no_grad()
def render_rgb(run: Run, view, device: torch.device | str = "cpu") -> np.ndarray:
    """RGB render [H,W,3] in [0,1] of one view of a run, rendered on ``device``."""
    from ..on_device import backdrop_on, gaussians_on

    g, vt = gaussians_on(run.gaussians, device), view_tensors(view, device)
    return render_view(g, vt, g.sh_degree, background=backdrop_on(run.backdrop, device)).image.clamp(0, 1).cpu().numpy()


def save(
    edited: Run, out: str | os.PathLike, force: bool = False, previews: int = 3, plain: bool = False, device="cpu"
) -> Run:
    """Write an edited run as a new run folder, with before/, after/ and before_after/ renders of
    ``previews`` views (rendered on ``device``); edit.json gets the Gaussian count and objects after the
    edit. ``out`` is checked and the previews rendered before anything is written."""
    if edited.source is None or edited.edit is None:
        raise ValueError("save() writes runs returned by the edit functions; use Run.save for others")
    edited.check_target(out, force)
    labels, _ = edited.labels
    ids, counts = np.unique(labels, return_counts=True)
    edited.edit.update(
        gaussians_after=len(edited.gaussians), objects_after={str(int(i)): int(c) for i, c in zip(ids, counts)}
    )
    names = []
    for view in preview_views(edited.source, previews) if previews > 0 else []:
        a, b = render_rgb(edited.source, view, device), render_rgb(edited, view, device)
        gap = np.ones((a.shape[0], 2, 3), np.float32)
        edited.images[f"before/{view.name}.png"] = a
        edited.images[f"after/{view.name}.png"] = b
        edited.images[f"before_after/{view.name}.png"] = np.concatenate([a, gap, b], axis=1)
        names.append(view.name)
    edited.edit["previews"] = names
    return edited.save(out, force=force, plain=plain)  # all or nothing: a failure leaves no files
