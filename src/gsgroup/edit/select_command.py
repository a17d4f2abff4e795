"""``gsgroup select RUN --text "red ball" --detector-checkpoint DIR [--out sel.json]``: which objects a text
prompt names (see ``text_select``); prints the ids and the per-view evidence, writes it as JSON with --out.
``add_select_command(subparsers)`` registers it on the top-level subparsers."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import InputError
from ..fileio import write_json
from ..options import add_options, from_options
from ..run import Run
from ..train.device import DeviceOptions, resolve_device
from .select import SelectOptions, format_selection
from .text_select import TextSelectOptions, select_by_text


def cmd_select(args) -> int:
    opts = from_options(TextSelectOptions, args)
    if not opts.text:
        raise InputError('select needs --text "PROMPT" (and --detector-checkpoint DIR)')
    out = Path(args.out) if args.out else None
    if out is not None and out.exists() and not args.force:
        raise InputError(f"--out {out}: exists; add --force to overwrite it or pick another name")
    if out is not None and out.suffix.lower() != ".json":
        raise InputError(f"--out {out}: the selection is written as JSON; give a name ending in .json")
    device = resolve_device(args.device)  # a missing GPU or gsplat is one line, before any data is read
    run = Run.open(args.run)
    sel, report = select_by_text(run, opts, from_options(SelectOptions, args), device=device)
    report["selection"] = sel.describe(run.gaussians)
    for v in report["views"]:
        print(f"{v['view']}: {len(v['boxes'])} boxes (scores {v['scores']}), objects covered {v['hit']}")
    print(format_selection(report["selection"]))
    if out is not None:
        write_json(out, report)
        print(f"wrote {out}")
    else:
        print(json.dumps({"prompt": report["prompt"], "ids": report["ids"]}))
    return 0


def add_select_command(subparsers) -> None:
    """Register ``gsgroup select``."""
    p = subparsers.add_parser(
        "select",
        help="find the objects a text prompt names (Grounding DINO on rendered views)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run", help="a segmented run folder (classifier.pt or labels.npy)")
    p.add_argument("--out", default=None, help="write the prompt, ids and per-view boxes/scores/masks here (sel.json)")
    p.add_argument("--force", action="store_true", help="overwrite --out")
    add_options(p, TextSelectOptions)
    add_options(p, SelectOptions)
    add_options(p, DeviceOptions)
    p.set_defaults(func=cmd_select)
