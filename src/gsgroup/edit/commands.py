"""``gsgroup edit ...``: the command-line client of ``gsgroup.edit``; each edit writes a new run folder.

Usage and examples: ``DESCRIPTION`` below (what ``gsgroup edit --help`` shows).
``add_edit_commands(subparsers)`` registers the ``edit`` command on the top-level subparsers.
"""

from __future__ import annotations

import argparse

from .. import edit
from ..errors import InputError
from ..options import add_options, bounded, from_options
from ..run import Run
from ..train.device import DeviceOptions, resolve_device
from .inpainting import InpaintOptions
from .ops import SH_DAMP
from .restyle import RestyleOptions
from .select import SelectOptions, format_selection
from .text_select import TextSelectOptions, select_by_text

DESCRIPTION = """\
Edit the objects of a segmented run (one trained with masks, or lifted). Each edit writes a new run
folder (--out, never RUN itself) that renders, evaluates, views and edits like any other run.

Select the objects with exactly one of:
  --objects 3,5                 ids from RUN/objects.json (or the ids view of `gsgroup render`)
  --pick STEM:X,Y               the object covering pixel X (column), Y (row) of view STEM, at the
                                run's training resolution (the size `gsgroup render` writes)
  --mask-view STEM --mask PNG   the objects covering most of a 2D mask drawn on view STEM
  --text "red ball" --detector-checkpoint DIR
                                the objects a text prompt names (Grounding DINO, see `gsgroup select`)

Examples:
  gsgroup edit remove    RUN --out RUN2 --pick view_003:120,80
  gsgroup edit recolor   RUN --out RUN2 --objects 3 --color "#3366ff"
  gsgroup edit transform RUN --out RUN2 --objects 3 --translate 0.5,0,0 --rotate-deg 0,0,90 --scale 1.2
  gsgroup edit duplicate RUN --out RUN2 --objects 3 --translate 1,0,0
  gsgroup edit compose   RUN --out RUN2 --from RUN_B --objects 2 --translate 0,1,0
  gsgroup edit inpaint   RUN --out RUN2 --objects 3 [--inpainter opencv|lama --lama-checkpoint PATH]
  gsgroup edit restyle   RUN --out RUN2 --objects 3 --effect watercolor|pencil|oil|cartoon | --style-image IMG
                         | --instruction "make it bronze" --ip2p-checkpoint DIR   [--geometry]
  gsgroup edit export    RUN --objects 3 --out obj.ply [--plain] | --split-all DIR

A selection far smaller than the Gaussians labelled with the chosen ids is reported as a warning:
lower --threshold, or train the identities longer.
"""


def parse_objects(text: str) -> list[int]:
    """'3,5' -> [3, 5]."""
    try:
        ids = sorted({int(t) for t in str(text).replace(" ", "").split(",") if t != ""})
    except ValueError:
        raise InputError(f"--objects '{text}': give comma-separated integer ids, e.g. --objects 3,5") from None
    if not ids or min(ids) < 0:
        raise InputError(f"--objects '{text}': give at least one non-negative id, e.g. --objects 3,5")
    return ids


def parse_pick(text: str) -> tuple[str, int, int]:
    """'view_003:120,80' -> ('view_003', 120, 80) (x = column, y = row, pixels)."""
    try:
        stem, xy = str(text).rsplit(":", 1)
        x, y = (round(float(v)) for v in xy.split(","))
    except ValueError:
        raise InputError(f"--pick '{text}': use <image stem>:X,Y, e.g. --pick view_003:120,80") from None
    return stem, x, y


def parse_vec3(text: str | None, flag: str) -> tuple[float, float, float] | None:
    """'x,y,z' -> (x, y, z); None stays None."""
    if text is None:
        return None
    try:
        v = tuple(float(t) for t in str(text).split(","))
    except ValueError:
        v = ()
    if len(v) != 3:
        raise InputError(f"{flag} '{text}': give three comma-separated numbers, e.g. {flag} 0.5,0,0")
    return v


def select_from_args(run: Run, args, device="cpu") -> edit.Selection:
    """The selection the options ask for (exactly one of --objects, --pick, --mask-view/--mask, --text), printed;
    id maps and mask votes on ``device``."""
    if sum(x is not None for x in (args.objects, args.pick, args.mask or args.mask_view, args.text)) != 1:
        raise InputError(
            "select the objects with exactly one of --objects 3,5, --pick STEM:X,Y, --mask-view STEM --mask PNG "
            'or --text "PROMPT"'
        )
    if args.text is not None:
        opts = from_options(TextSelectOptions, args)
        sel, _ = select_by_text(run, opts, from_options(SelectOptions, args), device=device)
        print(format_selection(sel.describe(run.gaussians)))
        return sel
    if (args.mask is None) != (args.mask_view is None):
        raise InputError("--mask-view and --mask go together: --mask-view STEM --mask PNG")
    sel = edit.select(
        run,
        objects=None if args.objects is None else parse_objects(args.objects),
        pick=None if args.pick is None else parse_pick(args.pick),
        mask=None if args.mask is None else (args.mask_view, args.mask),
        options=from_options(SelectOptions, args),
        device=device,
    )
    print(format_selection(sel.describe(run.gaussians)))
    return sel


def _transform_args(args) -> dict:
    return {
        "translate": parse_vec3(args.translate, "--translate"),
        "rotate_deg": parse_vec3(args.rotate_deg, "--rotate-deg"),
        "scale": args.scale,
        "pivot": args.pivot,
    }


def cmd_edit(args) -> int:
    """Handler of every ``gsgroup edit <op>`` except export."""
    device = resolve_device(args.device)  # a missing GPU or gsplat is one line, before any data is read
    run = Run.open(args.run)
    other = Run.open(args.from_run) if args.op == "compose" else None
    run.check_target(args.out, args.force)  # fail now, not after the work
    sel = select_from_args(other or run, args, device)
    if args.op == "remove":
        edited = edit.remove(run, sel, clean=not args.raw, progress=not args.quiet, device=device)
    elif args.op == "recolor":
        edited = edit.recolor(run, sel, args.color, args.sh_damp)
    elif args.op == "transform":
        edited = edit.transform(run, sel, **_transform_args(args))
    elif args.op == "duplicate":
        if args.translate is None and args.rotate_deg is None and args.scale == 1.0:
            print("warning: duplicate without a transform puts the copy on top of the original")
        edited = edit.duplicate(run, sel, **_transform_args(args))
    elif args.op == "compose":
        edited = edit.compose(run, other, sel, **_transform_args(args))
    elif args.op == "restyle":
        edited = edit.restyle(run, sel, from_options(RestyleOptions, args), progress=not args.quiet, device=device)
        r = edited.edit["restyle"]
        print(
            f"restyle: PSNR in the footprint vs the 2D edits {r['fit']['psnr_mean']:.2f} dB, multi-view consistency "
            f"{r['consistency']['psnr_mean']:.2f} dB (std {r['consistency']['psnr_std']:.2f} over {r['views']} views), "
            f"outside vs before {r['outside']['psnr_mean']:.2f} dB"
        )
    else:
        edited = edit.inpaint(run, sel, from_options(InpaintOptions, args), progress=not args.quiet, device=device)
        c = edited.edit["consistency"]
        print(
            f"inpaint: multi-view consistency PSNR in the holes {c['psnr_mean']:.2f} dB "
            f"(std {c['psnr_std']:.2f} over {c['views']} views)"
        )
    if "new_ids" in edited.edit:
        print(f"new ids: {edited.edit['new_ids']}")
    saved = edit.save(edited, args.out, force=args.force, device=device)
    print(
        f"{args.op}: {edited.edit['gaussians_before']} -> {edited.edit['gaussians_after']} Gaussians; "
        f"wrote {saved.path}"
    )
    return 0


def cmd_export(args) -> int:
    run = Run.open(args.run)
    if args.split_all:
        written = edit.export_all(run, args.split_all, plain=args.plain)
        counts = " ".join(f"{k}:{v}" for k, v in written.items())
        print(f"wrote {len(written)} PLYs to {args.split_all} (id:Gaussians {counts}); id 0 is the background")
        return 0
    if not args.out:
        raise InputError("export needs --out obj.ply (one PLY of the selected objects) or --split-all DIR")
    sel = select_from_args(run, args)
    info = edit.export(run, sel, args.out, plain=args.plain, force=args.force)
    print(f"exported ids {sel.ids}: {info['gaussians']} Gaussians -> {args.out}" + (" (plain)" if args.plain else ""))
    return 0


# ----------------------------------------------------------------------------- parser


def _selection_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("selection (exactly one)")
    g.add_argument("--objects", default=None, help="object ids, e.g. 3,5 (see RUN/objects.json)")
    g.add_argument(
        "--pick",
        default=None,
        help="STEM:X,Y: the object covering pixel (X=column, Y=row) of that view, in pixels of the run's "
        "training resolution (as `gsgroup render` writes it, not the original photo)",
    )
    g.add_argument("--mask-view", default=None, help="view (image stem) the --mask is drawn on")
    g.add_argument("--mask", default=None, help="PNG, non-zero = selected: takes the ids covering most of it")
    add_options(g, TextSelectOptions)
    add_options(p, SelectOptions)


def _transform_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--translate", default=None, help="x,y,z world translation")
    p.add_argument("--rotate-deg", default=None, help="rx,ry,rz degrees about the world x, then y, then z axis")
    p.add_argument(
        "--scale", type=bounded(float, min=0.0, exclusive=True), default=1.0, help="uniform scale (default 1)"
    )
    p.add_argument(
        "--pivot",
        choices=list(edit.api.PIVOTS),
        default=edit.api.PIVOTS[0],
        help="rotate and scale about the selection's centroid (default) or the world origin",
    )


def add_edit_commands(subparsers) -> None:
    """Register ``gsgroup edit <op>`` (remove, recolor, transform, duplicate, compose, inpaint, restyle, export)."""
    edit = subparsers.add_parser(
        "edit",
        help="edit objects of a segmented run (writes a new run folder)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ops = edit.add_subparsers(dest="op", required=True)

    def common(name: str, help_text: str) -> argparse.ArgumentParser:
        p = ops.add_parser(name, help=help_text)
        p.add_argument("run", help="a segmented run folder (classifier.pt or labels.npy)")
        p.add_argument("--out", required=True, help="the new run folder to write (never RUN itself)")
        p.add_argument("--force", action="store_true", help="replace a non-empty --out")
        p.add_argument("--quiet", action="store_true", help="no progress bars")
        add_options(p, DeviceOptions)
        _selection_options(p)
        p.set_defaults(func=cmd_edit, from_run=None)
        return p

    p = common("remove", "delete the selected objects and clear their shadow and the never-seen surface under them")
    p.add_argument(
        "--raw",
        action="store_true",
        help="only delete the Gaussians (fast): the shadow and the surface no view saw stay as they render",
    )
    p = common("recolor", "give the selection a new hue, keeping its shading")
    p.add_argument("--color", required=True, help='target color "#RRGGBB"')
    p.add_argument(
        "--sh-damp",
        type=float,
        default=SH_DAMP,
        help=f"factor on the (greyed) view-dependent SH of the selection (default {SH_DAMP})",
    )
    p = common("transform", "move / rotate / scale the selection")
    _transform_options(p)
    p = common("duplicate", "copy the selection with a transform; the copies get new ids")
    _transform_options(p)
    p = common("compose", "insert objects of another run (--from) with new ids")
    p.add_argument("--from", dest="from_run", required=True, help="the run to take the --objects from")
    _transform_options(p)
    p = common("inpaint", "remove the selection and fill the hole (2D inpainting + fine-tuned new Gaussians)")
    add_options(p, InpaintOptions)
    p = common(
        "restyle", "repaint the selection (style image, OpenCV effect or InstructPix2Pix), then fit its Gaussians"
    )
    add_options(p, RestyleOptions)

    p = ops.add_parser("export", help="write the selected objects as an Inria 3DGS PLY")
    p.add_argument("run", help="a segmented run folder (classifier.pt or labels.npy)")
    p.add_argument("--out", default=None, help="the PLY to write")
    p.add_argument("--split-all", default=None, help="write one PLY per object id into this folder instead")
    p.add_argument("--plain", action="store_true", help="leave out obj_dc_* (for SuperSplat and other viewers)")
    p.add_argument("--force", action="store_true", help="overwrite --out")
    _selection_options(p)
    p.set_defaults(func=cmd_export)
