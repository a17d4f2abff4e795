"""Restyle an object: a 2D edit of its renders, then a fit of only its Gaussians (Gaussian Grouping's
style transfer, with Instruct-NeRF2NeRF's iterative dataset update).

1. Per training view, the object's footprint = pixels whose pre-edit rendered id is a selected id.
2. A 2D editor repaints the pre-edit render inside the footprint: ``style_image`` (Lab colour
   transfer to the picture's statistics, the object's statistics taken over all views so every view
   gets the same colour map, then OpenCV stylisation), ``effect`` (watercolor, pencil, oil, cartoon:
   OpenCV filters, see ``stylize``) or ``instruction`` (InstructPix2Pix, see ``ip2p``).
3. Only the selected Gaussians are fitted (SH colours; with ``geometry`` also means, log-scales,
   opacities) on all training views, the L1 loss weighted to the footprint dilated by a margin
   (the target is the pre-edit render outside the footprint, so colour cannot leak out).
4. Every ``refresh_every`` steps the targets are made again by the editor from the current renders,
   so the per-view 2D edits converge towards what one 3D object can show (Instruct-NeRF2NeRF's iterative
   dataset update; by default for InstructPix2Pix only: re-applying a deterministic filter to its own
   output drifts away from the first edit, measured in benchmarks/restyle.py).

Reported (edit info "restyle"): PSNR inside the footprint of the result against the last targets
("fit"), against each view's first 2D edit (multi-view consistency, mean and spread over views, as
inpainting reports it), and outside the dilated footprint against the pre-edit renders.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import InputError
from ..options import check_bounds, option
from ..run import Run
from ..segment.idmaps import render_ids
from ..train.trainer import view_tensors
from . import stylize
from .fitting import fit_gaussians, merge_subset
from .inpainting import ViewHole, consistency, dilate_mask, dilation_px, psnr_in, render_all
from .select import Selection, selection_info


@dataclass
class RestyleOptions:
    """The 2D editor (exactly one of style_image, effect, instruction) and the fit of the selection."""

    style_image: str | None = option(None, "picture whose colours (and painterly texture) the object takes")
    effect: str | None = option(None, "OpenCV stylisation inside the object", choices=list(stylize.EFFECTS))
    instruction: str | None = option(
        None, 'InstructPix2Pix instruction, e.g. "make it bronze" (needs --ip2p-checkpoint)'
    )
    ip2p_checkpoint: str | None = option(
        None, "local InstructPix2Pix folder (diffusers layout, e.g. timbrooks/instruct-pix2pix)"
    )
    texture: str = option("stylize", "after a style image's colour transfer", choices=list(stylize.TEXTURES))
    geometry: bool = option(False, "also fit means, scales and opacities of the selection (default: SH colours only)")
    iterations: int = option(600, "fitting steps (one training view each)", min=0)
    refresh_every: int | None = option(
        None,
        "re-edit the current renders every N steps; 0 = edit the pre-edit renders once "
        "(default: 200 with --instruction, 0 for the deterministic filters, which drift when re-applied)",
        min=0,
    )
    dilate: int | None = option(None, "loss margin around the footprint in pixels (default 2%% of the width)", min=0)
    seed: int = option(0, "random seed")
    ip2p_steps: int = option(20, "InstructPix2Pix denoising steps", min=1)
    guidance_scale: float = option(7.5, "InstructPix2Pix text guidance", min=0.0)
    image_guidance_scale: float = option(1.5, "InstructPix2Pix image guidance", min=0.0)
    lr_sh0: float = 0.01
    lr_shN: float = 0.0005
    lr_means: float = 1.6e-5  # times the scene extent
    lr_scales: float = 0.002
    lr_opacity: float = 0.02

    def __post_init__(self):
        check_bounds(self)
        given = [n for n in ("style_image", "effect", "instruction") if getattr(self, n) is not None]
        if len(given) != 1:
            raise InputError("restyle with exactly one of style_image, effect or instruction", "style_image")
        if self.instruction is not None and not self.ip2p_checkpoint:
            raise InputError(
                "ip2p_checkpoint missing: an instruction needs a local InstructPix2Pix folder", "ip2p_checkpoint"
            )
        if self.effect is not None and self.effect not in stylize.EFFECTS:
            raise InputError(f"effect {self.effect}: use one of {', '.join(stylize.EFFECTS)}", "effect")
        if self.texture not in stylize.TEXTURES:
            raise InputError(f"texture {self.texture}: use one of {', '.join(stylize.TEXTURES)}", "texture")

    @property
    def refresh(self) -> int:
        """Steps between target refreshes: ``refresh_every``, or by default 200 for InstructPix2Pix (as
        Instruct-NeRF2NeRF) and 0 for the filters (re-filtering a filtered render drifts, measured in
        benchmarks/restyle.py)."""
        if self.refresh_every is not None:
            return self.refresh_every
        return 200 if self.instruction is not None else 0

    def describe(self) -> dict:
        """The editor and fitting settings for edit.json."""
        keys = ("style_image", "effect", "instruction", "ip2p_checkpoint", "geometry", "iterations", "refresh_every")
        out = {k: getattr(self, k) for k in keys if getattr(self, k) is not None}
        out["refresh_every"] = self.refresh
        if self.style_image is not None:
            out["texture"] = self.texture
        return out


class Editor:
    """The 2D edit of the object in a set of renders: ``edit(images, masks)`` -> edited images,
    images [H,W,3] float in [0,1], masks [H,W] bool, outputs float32 equal to the inputs outside."""

    def __init__(self, opts: RestyleOptions):
        self.opts = opts
        self.style = None
        self.model = None
        if opts.style_image is not None:
            pixels = stylize.read_style(opts.style_image).reshape(-1, 3)
            self.style = stylize.lab_stats(pixels)
        elif opts.instruction is not None:
            from .ip2p import Ip2pEditor

            self.model = Ip2pEditor.from_checkpoint(opts.ip2p_checkpoint)

    def edit(self, images: list[np.ndarray], masks: list[np.ndarray]) -> list[np.ndarray]:
        o = self.opts
        if o.effect is not None:
            return [stylize.apply_effect(im, m, o.effect) for im, m in zip(images, masks)]
        if self.style is not None:
            source = stylize.lab_stats(np.concatenate([im[m] for im, m in zip(images, masks)]))
            return [stylize.style_transfer(im, m, source, self.style, o.texture) for im, m in zip(images, masks)]
        gen = torch.Generator().manual_seed(o.seed)
        return [
            stylize.paste(
                self.model(im, o.instruction, o.ip2p_steps, o.guidance_scale, o.image_guidance_scale, gen), im, m
            )
            for im, m in zip(images, masks)
        ]


def footprints(run: Run, sel: Selection, views: list, device: torch.device | str = "cpu") -> list[ViewHole]:
    """Per view where the selection shows: pre-edit render rgb0, footprint (rendered id selected),
    target = rgb0 for now (rendered on ``device``)."""
    from ..on_device import backdrop_on, gaussians_on, segmentation_on

    out = []
    g, seg = gaussians_on(run.gaussians, device), segmentation_on(run.require_segmentation(), device)
    bg = backdrop_on(run.backdrop, device)
    with torch.no_grad():
        for view in views:
            r = render_ids(g, view_tensors(view, device), seg, background=bg)
            fp = np.isin(r.ids, sel.ids)
            if fp.any():
                rgb = r.rgb.astype(np.float32)
                out.append(ViewHole(view, rgb, fp, rgb))
    return out


def outside_psnr(g, holes: list[ViewHole], background, px: int, device: torch.device | str = "cpu") -> dict:
    """PSNR of the render against the pre-edit render outside the footprint dilated by px: mean, min."""
    vals = [
        psnr_in(img, h.rgb0, ~dilate_mask(h.hole, px))
        for img, h in zip(render_all(g, [h.view for h in holes], background, device), holes)
    ]
    return {"psnr_mean": float(np.mean(vals)), "psnr_min": float(np.min(vals)), "dilate_px": px}


def restyle(run: Run, sel: Selection, opts: RestyleOptions | None = None, progress: bool = False, device="cpu") -> Run:
    """Restyle the selected objects (see the module docstring). Returns the edited run; the selection's
    Gaussians change (colours, and with ``geometry`` their shape), nothing else. Its edit info holds
    "restyle" (fit, consistency, outside scores) and its pictures the first 2D targets of 3 views.
    ``device``: where the renders and the fit run (the 2D edits stay on the CPU)."""
    opts = opts or RestyleOptions(effect="watercolor")
    editor = Editor(opts)  # a bad style image or checkpoint fails before any work
    views = run.views("train")
    holes = footprints(run, sel, views, device)
    if not holes:
        raise InputError(
            f"{run.path}: ids {sel.ids} are not visible in any training view; nothing to restyle", "objects"
        )
    px = dilation_px(views[0].width, opts.dilate)
    masks = [h.hole for h in holes]
    weights = [dilate_mask(m, px) for m in masks]
    first = editor.edit([h.rgb0 for h in holes], masks)
    g0, bg = run.gaussians, run.backdrop
    mask_t = torch.from_numpy(sel.mask)
    fixed, free = g0.select(~mask_t), g0.select(mask_t)
    lrs = {"sh0": opts.lr_sh0, "shN": opts.lr_shN}
    if opts.geometry:
        extent = float(run.scene.extent)
        lrs.update(means=opts.lr_means * extent, scales=opts.lr_scales, opacities=opts.lr_opacity)
    last = list(first)

    def refresh(current, step):
        renders = render_all(merge_subset(g0, sel.mask, current), [h.view for h in holes], bg, device)
        edited = editor.edit(renders, masks)
        last[:] = [stylize.paste(e, h.rgb0, m) for e, h, m in zip(edited, holes, masks)]
        return last

    fitted = free
    if len(free) and opts.iterations > 0:
        fitted = fit_gaussians(
            fixed,
            free,
            [h.view for h in holes],
            first,
            bg,
            lrs,
            opts.iterations,
            opts.seed,
            weights=weights,
            refresh=refresh,
            refresh_every=opts.refresh,
            progress=progress,
            desc="restyle",
            device=device,
        )
    g = merge_subset(g0, sel.mask, fitted)
    fit = consistency(g, [ViewHole(h.view, h.rgb0, h.hole, t) for h, t in zip(holes, last)], bg, device)
    cons = consistency(g, [ViewHole(h.view, h.rgb0, h.hole, t) for h, t in zip(holes, first)], bg, device)
    scores = {
        "fit": {k: v for k, v in fit.items() if k != "per_view"},
        "consistency": cons,
        "outside": outside_psnr(g, holes, bg, px, device),
        "views": len(holes),
    }
    info = {"edit": "restyle", **selection_info(run, sel), **opts.describe(), "restyled": int(sel.mask.sum())}
    edited = run.derive(g, run.segmentation, {**info, "restyle": scores})
    for h, t in list(zip(holes, first))[:3]:
        edited.images[f"restyle/{h.view.name}_target.png"] = t
    return edited
