"""``gsgroup edit ...``: object edits of a segmented run, each written to a new run folder.

    gsgroup edit remove    RUN --out RUN2 (--objects 3,5 | --pick STEM:X,Y | --mask-view STEM --mask PNG)
    gsgroup edit recolor   RUN --out RUN2 --objects 3 --color "#3366ff"
    gsgroup edit transform RUN --out RUN2 --objects 3 --translate 0.5,0,0 --rotate-deg 0,0,90 --scale 1.2
    gsgroup edit duplicate RUN --out RUN2 --objects 3 --translate 1,0,0
    gsgroup edit compose   RUN --out RUN2 --from RUN_B --objects 2 --translate 0,1,0
    gsgroup edit inpaint   RUN --out RUN2 --objects 3 [--inpainter opencv|lama --lama-checkpoint PATH]
    gsgroup edit export    RUN --objects 3 --out obj.ply [--plain] | --split-all DIR

``add_edit_commands(subparsers)`` registers the ``edit`` command on the top-level subparsers.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from .ops import Transform
from .runio import RunData, check_out, id_map, load_run, write_before_after, write_run
from .select import (
    Selection,
    format_selection,
    ids_at_pixel,
    ids_in_mask,
    make_selection,
    parse_objects,
    parse_pick,
)
from .shrot import euler_deg_to_matrix

# ----------------------------------------------------------------------------- parsing helpers


def parse_vec3(text: str | None, name: str, default=(0.0, 0.0, 0.0)) -> np.ndarray:
    """'x,y,z' -> float64 [3]."""
    if text is None:
        return np.asarray(default, np.float64)
    try:
        v = np.array([float(t) for t in str(text).split(",")], np.float64)
    except ValueError:
        v = np.zeros(0)
    if v.shape != (3,) or not np.isfinite(v).all():
        raise InputError(f"{name} '{text}': give three comma-separated numbers, e.g. {name} 0.5,0,0")
    return v


def read_mask_png(path: str | Path) -> np.ndarray:
    """A 2D selection mask: any image, non-zero (any channel) = selected -> bool [H,W]."""
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise InputError(f"--mask {path}: not found or not an image; give a PNG with the object painted non-zero")
    return (img.reshape(img.shape[0], img.shape[1], -1) > 0).any(axis=2)


def transform_from_args(args, g_sel_centroid: np.ndarray | None) -> Transform:
    """A Transform from --translate/--rotate-deg/--scale/--pivot; pivot 'centroid' = selection centre."""
    R = euler_deg_to_matrix(*parse_vec3(args.rotate_deg, "--rotate-deg"))
    t = parse_vec3(args.translate, "--translate")
    if not (args.scale > 0 and np.isfinite(args.scale)):
        raise InputError(f"--scale {args.scale}: must be a positive number")
    pivot = np.zeros(3) if args.pivot == "origin" or g_sel_centroid is None else g_sel_centroid
    return Transform(R, t, float(args.scale), np.asarray(pivot, np.float64))


def resolve_ids(data: RunData, objects: str | None = None, pick: str | None = None, mask_view: str | None = None,
                mask: str | None = None) -> tuple[list[int], str]:
    """Chosen ids from exactly one of --objects, --pick, --mask-view/--mask. Returns (ids, how)."""
    given = [objects is not None, pick is not None, mask is not None or mask_view is not None]
    if sum(given) != 1:
        raise InputError("select the objects with exactly one of --objects 3,5, --pick STEM:X,Y or "
                         "--mask-view STEM --mask PNG")
    if objects is not None:
        return parse_objects(objects), f"objects {objects}"
    if pick is not None:
        stem, x, y = parse_pick(pick)
        ids = ids_at_pixel(id_map(data.gaussians, data.seg, data.view(stem), data.background), x, y, stem)
        return ids, f"pick {pick}"
    if mask is None or mask_view is None:
        raise InputError("--mask-view and --mask go together: --mask-view STEM --mask PNG")
    ids = ids_in_mask(id_map(data.gaussians, data.seg, data.view(mask_view), data.background),
                      read_mask_png(mask), where=f"{mask} on {mask_view}")
    return ids, f"mask {mask} on {mask_view}"


def select(data: RunData, args) -> Selection:
    """The selection the command-line options ask for, printed."""
    ids, how = resolve_ids(data, args.objects, getattr(args, "pick", None), getattr(args, "mask_view", None),
                           getattr(args, "mask", None))
    sel = make_selection(data.gaussians, data.segmentation(), ids, args.threshold, by=how,
                         cleanup=not args.no_cleanup, floaters=args.drop_floaters)
    info = sel.describe(data.gaussians)
    print(format_selection(info))
    if not sel.mask.any():
        raise InputError(f"{data.path}: no Gaussian has probability > {args.threshold} for ids {ids}; "
                         f"lower --threshold or check objects.json")
    return sel


# ----------------------------------------------------------------------------- edits (Python API)


def edit_remove(data: RunData, sel: Selection):
    """Delete the selection. Returns (gaussians, seg, info)."""
    from .ops import remove

    g, seg = remove(data.gaussians, data.seg, sel.mask)
    return g, seg, {"removed": int(sel.mask.sum())}


def edit_recolor(data: RunData, sel: Selection, color: str, sh_damp: float = 0.5):
    from .ops import parse_color, recolor

    rgb = parse_color(color)
    g = recolor(data.gaussians, sel.mask, rgb, sh_damp)
    return g, data.seg, {"color": color, "rgb": rgb.round(4).tolist(), "sh_damp": sh_damp,
                         "recolored": int(sel.mask.sum())}


def edit_transform(data: RunData, sel: Selection, tf: Transform):
    from .ops import transform

    g = transform(data.gaussians, sel.mask, tf)
    return g, data.seg, {"transform": _tf_info(tf), "moved": int(sel.mask.sum())}


def edit_duplicate(data: RunData, sel: Selection, tf: Transform):
    from .ops import duplicate

    if tf.is_identity:
        print("warning: duplicate without a transform puts the copy on top of the original")
    g, seg, mapping = duplicate(data.gaussians, data.seg, sel.mask, sel.ids, tf)
    print(f"copies got new ids: {mapping}")
    return g, seg, {"transform": _tf_info(tf), "copied": int(sel.mask.sum()),
                    "new_ids": {str(k): v for k, v in mapping.items()}}


def edit_compose(data: RunData, other: RunData, sel: Selection, tf: Transform):
    from .ops import compose, transform

    part = transform(other.gaussians.select(torch.from_numpy(sel.mask)), None, tf)
    labels = other.segmentation().labels[sel.mask]
    g, seg, mapping = compose(data.gaussians, data.seg, part, labels, sel.ids)
    print(f"inserted objects got ids: {mapping}")
    return g, seg, {"from": str(other.path.resolve()), "transform": _tf_info(tf), "inserted": int(sel.mask.sum()),
                    "new_ids": {str(k): v for k, v in mapping.items()}}


def _tf_info(tf: Transform) -> dict:
    return {"R": tf.R.round(6).tolist(), "translate": tf.t.tolist(), "scale": tf.s, "pivot": tf.pivot.round(6).tolist(),
            "matrix": tf.matrix().round(6).tolist()}


# ----------------------------------------------------------------------------- handlers


def _finish(data: RunData, out: Path, g, seg, sel: Selection | None, info: dict, op: str, plain: bool = False) -> int:
    info = {"edit": op, "source": str(data.path.resolve()),
            "selection": None if sel is None else sel.describe(data.gaussians), **info}
    info["previews"] = write_before_after(data, out, data.gaussians, g)
    info = write_run(data, out, g, seg, info, plain=plain)
    print(f"{op}: {info['gaussians_before']} -> {info['gaussians_after']} Gaussians; wrote {out}")
    return 0


def cmd_edit(args) -> int:
    """Handler of every ``gsgroup edit <op>`` except export."""
    data = load_run(args.run)
    out = Path(args.out)
    other = load_run(args.from_run) if args.op == "compose" else None
    check_out(data.path, out, args.force)
    src = other if other is not None else data
    sel = select(src, args)
    if args.op == "remove":
        g, seg, info = edit_remove(data, sel)
    elif args.op == "recolor":
        g, seg, info = edit_recolor(data, sel, args.color, args.sh_damp)
    elif args.op in ("transform", "duplicate", "compose"):
        from .ops import centroid

        tf = transform_from_args(args, centroid(src.gaussians, sel.mask))
        if args.op == "transform":
            g, seg, info = edit_transform(data, sel, tf)
        elif args.op == "duplicate":
            g, seg, info = edit_duplicate(data, sel, tf)
        else:
            g, seg, info = edit_compose(data, other, sel, tf)
    elif args.op == "inpaint":
        from .inpaint import InpaintOptions, inpaint

        opts = InpaintOptions(inpainter=args.inpainter, lama_checkpoint=args.lama_checkpoint,
                              iterations=args.iterations, dilate=args.dilate, seed=args.seed)
        g, seg, info = inpaint(data, sel, opts, out=out, progress=not args.quiet)
        print(f"inpaint: multi-view consistency PSNR in the holes {info['consistency']['psnr_mean']:.2f} dB "
              f"(std {info['consistency']['psnr_std']:.2f} over {info['consistency']['views']} views)")
    else:  # pragma: no cover - argparse restricts op
        raise InputError(f"unknown edit '{args.op}'")
    return _finish(data, out, g, seg, sel, info, args.op)


def export_objects(data: RunData, ids: list[int], out: Path, threshold: float = 0.3, plain: bool = False,
                   cleanup: bool = True, floaters: bool = False) -> dict:
    """Write the Gaussians of ``ids`` as one Inria 3DGS PLY. Returns a summary."""
    from ..model import save_ply

    sel = make_selection(data.gaussians, data.segmentation(), ids, threshold, cleanup=cleanup, floaters=floaters)
    if not sel.mask.any():
        raise InputError(f"{data.path}: no Gaussian has probability > {threshold} for ids {ids}; lower --threshold "
                         f"or check the ids in objects.json")
    save_ply(out, data.gaussians.select(torch.from_numpy(sel.mask)), plain=plain)
    return {"ids": ids, "gaussians": int(sel.mask.sum()), "path": str(out), "plain": plain}


def cmd_export(args) -> int:
    data = load_run(args.run)
    if args.split_all:
        folder = Path(args.split_all)
        seg = data.segmentation()
        written = []
        for oid in np.unique(seg.labels).tolist():
            keep = torch.from_numpy(seg.labels == oid)
            from ..model import save_ply

            path = folder / f"object_{oid:03d}.ply"
            save_ply(path, data.gaussians.select(keep), plain=args.plain)
            written.append(f"{oid}:{int(keep.sum())}")
        print(f"wrote {len(written)} PLYs to {folder} (id:Gaussians {' '.join(written)}); id 0 is the background")
        return 0
    if not args.out:
        raise InputError("export needs --out obj.ply (one PLY of the selected objects) or --split-all DIR")
    out = Path(args.out)
    if out.suffix.lower() != ".ply":
        raise InputError(f"--out {out}: export writes a PLY file; give a name ending in .ply")
    if out.exists() and not args.force:
        raise InputError(f"--out {out}: exists; pass --force to overwrite it")
    ids, _ = resolve_ids(data, args.objects, args.pick, args.mask_view, args.mask)
    info = export_objects(data, ids, out, args.threshold, args.plain, cleanup=not args.no_cleanup,
                          floaters=args.drop_floaters)
    print(f"exported ids {ids}: {info['gaussians']} Gaussians -> {out}" + (" (plain)" if args.plain else ""))
    return 0


# ----------------------------------------------------------------------------- parser


def _selection_options(p: argparse.ArgumentParser, required_objects: bool = False) -> None:
    g = p.add_argument_group("selection (exactly one)")
    g.add_argument("--objects", default=None, help="object ids, e.g. 3,5 (see RUN/objects.json)")
    g.add_argument("--pick", default=None, help="STEM:X,Y: the object covering pixel (X=column, Y=row) of that view")
    g.add_argument("--mask-view", default=None, help="view (image stem) the --mask is drawn on")
    g.add_argument("--mask", default=None, help="PNG, non-zero = selected: takes the ids covering most of it")
    p.add_argument("--threshold", type=float, default=0.3,
                   help="a Gaussian is selected when the probability of a chosen id exceeds this (default 0.3)")
    p.add_argument("--no-cleanup", action="store_true", help="skip the 3D clean-up that adds interior Gaussians")
    p.add_argument("--drop-floaters", action="store_true",
                   help="also drop isolated selected Gaussians (small connected parts far from the object)")


def _transform_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--translate", default=None, help="x,y,z world translation")
    p.add_argument("--rotate-deg", default=None, help="rx,ry,rz degrees about the world x, then y, then z axis")
    p.add_argument("--scale", type=float, default=1.0, help="uniform scale (default 1)")
    p.add_argument("--pivot", choices=["centroid", "origin"], default="centroid",
                   help="rotate and scale about the selection's centroid (default) or the world origin")


def add_edit_commands(subparsers) -> None:
    """Register ``gsgroup edit <op>`` (remove, recolor, transform, duplicate, compose, inpaint, export)."""
    edit = subparsers.add_parser("edit", help="edit objects of a segmented run (writes a new run folder)",
                                 description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ops = edit.add_subparsers(dest="op", required=True)

    def common(name: str, help_text: str) -> argparse.ArgumentParser:
        p = ops.add_parser(name, help=help_text)
        p.add_argument("run", help="a segmented run folder (classifier.pt or labels.npy)")
        p.add_argument("--out", required=True, help="the new run folder to write (never RUN itself)")
        p.add_argument("--force", action="store_true", help="replace a non-empty --out")
        p.add_argument("--quiet", action="store_true")
        _selection_options(p)
        p.set_defaults(func=cmd_edit, from_run=None)
        return p

    common("remove", "delete the selected objects")
    p = common("recolor", "give the selection a new hue, keeping its shading")
    p.add_argument("--color", required=True, help='target colour "#RRGGBB"')
    p.add_argument("--sh-damp", type=float, default=0.5,
                   help="factor on the (greyed) view-dependent SH of the selection (default 0.5)")
    p = common("transform", "move / rotate / scale the selection")
    _transform_options(p)
    p = common("duplicate", "copy the selection with a transform; the copies get new ids")
    _transform_options(p)
    p = common("compose", "insert objects of another run (--from) with new ids")
    p.add_argument("--from", dest="from_run", required=True, help="the run to take the --objects from")
    _transform_options(p)
    p = common("inpaint", "remove the selection and fill the hole (2D inpainting + fine-tuned new Gaussians)")
    p.add_argument("--inpainter", choices=["opencv", "lama"], default="opencv",
                   help="2D inpainter: OpenCV Telea (default) or a LaMa checkpoint")
    p.add_argument("--lama-checkpoint", default=None, help="big-lama generator weights (see gsgroup.edit.lama)")
    p.add_argument("--iterations", type=int, default=300, help="fine-tuning steps of the new Gaussians")
    p.add_argument("--dilate", type=int, default=None, help="hole dilation in pixels (default 2%% of the width)")
    p.add_argument("--seed", type=int, default=0)

    p = ops.add_parser("export", help="write the selected objects as an Inria 3DGS PLY")
    p.add_argument("run")
    p.add_argument("--out", default=None, help="the PLY to write")
    p.add_argument("--split-all", default=None, help="write one PLY per object id into this folder instead")
    p.add_argument("--plain", action="store_true", help="leave out obj_dc_* (for SuperSplat and other viewers)")
    p.add_argument("--force", action="store_true", help="overwrite --out")
    _selection_options(p)
    p.set_defaults(func=cmd_export)
