"""The ``gsgroup`` command: options generated from the configs, handlers that call the Python API."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from . import __version__
from .errors import InputError
from .options import add_options, bounded, cli_fields, flag_of, from_options
from .run import DataConfig, RunConfig
from .train.config import IdentityConfig, TrainConfig
from .train.densify import DensifyConfig
from .train.device import DeviceOptions
from .workflow import PipelineConfig

DESCRIPTION = """\
gsgroup reconstructs a scene (COLMAP or NeRF capture) as 3D Gaussian splats on the CPU, groups the
Gaussians into objects whose ids agree across views (Gaussian Grouping), and renders, scores,
edits and views those objects.

The whole pipeline in one command:
  gsgroup run DATA --out RUN --eval          masks, reconstruction, association, identities, evaluation
  gsgroup demo --out demo_out                the same on a built-in scene, with an HTML report

Step by step (the usual order):
  gsgroup masks DATA --out MASKS             2D masks per view (ids differ per view)
  gsgroup train DATA --out RECON             RGB-only reconstruction
  gsgroup associate DATA --masks MASKS --model RECON --out OBJ   one id per object across views
  gsgroup train DATA --out RUN --masks OBJ --init-from RECON --no-densify   identities
     (or: gsgroup lift RECON --masks OBJ --out RUN, closed-form labels)
  gsgroup eval RUN [--gt GT]                 PSNR / SSIM, or segmentation IoU
  gsgroup render RUN --out DIR               images of a split
  gsgroup edit remove RUN --out RUN2 --objects 3   (and recolor, transform, ... see gsgroup edit -h)
  gsgroup view RUN                           interactive web viewer

gsgroup COMMAND -h shows a command's options.
"""

QUIET_HELP = "no progress bars"


# ---- train -----------------------------------------------------------------------------------
def _masks_dir(args) -> str | None:
    """--masks, or DATA/object_mask when it exists (the original Gaussian Grouping layout)."""
    from .data.masks import OBJECT_MASK_DIR

    if args.masks:
        return str(Path(args.masks).resolve())
    default = Path(args.data) / OBJECT_MASK_DIR
    if not default.is_dir():
        return None
    print(f"identities: training on the associated masks in {default} (pass --masks to choose others)")
    return str(default.resolve())


def run_config_from_args(args) -> RunConfig:
    """The RunConfig that ``gsgroup train``'s options describe."""
    data = from_options(DataConfig, args, path=str(Path(args.data).resolve()), masks=_masks_dir(args))
    iterations = TrainConfig.iterations if args.iterations is None else args.iterations
    schedule = TrainConfig.for_length(iterations, densify=not args.no_densify, max_gaussians=args.max_gaussians)
    train = from_options(
        TrainConfig,
        args,
        iterations=iterations,
        densify=schedule.densify,
        identity=from_options(IdentityConfig, args),
        background=(1.0, 1.0, 1.0) if args.white_background else TrainConfig.background,
    )
    if args.no_environment:
        train.env_sh_degree = -1
    return RunConfig(data, train)


def _launch_processes(argv: list[str], processes: int) -> int:
    """Run ``python -m torch.distributed.run --standalone --nproc_per_node processes -m gsgroup ARGV``
    and return its exit code: what ``gsgroup train --gpus N`` does."""
    import subprocess

    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    return subprocess.call([*cmd, "-m", "gsgroup", *argv])


def cmd_train(args) -> int:
    from .pipeline import resume_run, train_run
    from .train import distributed

    if args.gpus > 1 and not distributed.launched():  # relaunch this command on N processes
        argv = sys.argv[1:]
        keep = [a for i, a in enumerate(argv) if not a.startswith("--gpus") and (i == 0 or argv[i - 1] != "--gpus")]
        return _launch_processes(keep, args.gpus)
    from .train.device import resolve_device

    device = args.device
    resolve_device(device)  # a missing GPU or gsplat is one line, before any data is read
    if distributed.launched():
        device = str(distributed.init(resolve_device(device)))  # on CUDA: cuda:LOCAL_RANK
        if distributed.rank() != 0:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (rank 0 alone reports)
            args.quiet = True
    opts = {
        "checkpoint_every": args.checkpoint_every,
        "plain": args.plain,
        "progress": not args.quiet,
        "device": device,
    }
    try:
        if args.resume:
            run, summary = resume_run(args.out, iterations=args.iterations, **opts)
        else:
            run, summary = train_run(
                run_config_from_args(args), args.out, force=args.force, init_from=args.init_from, **opts
            )
    except KeyboardInterrupt:
        return 130
    finally:
        distributed.finish()
    print(json.dumps(summary))
    print(f"wrote {run.file(run.GAUSSIANS)}")
    return 0


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="reconstruct a scene as Gaussian splats")
    p.add_argument("data", help="COLMAP folder (images/ + sparse/0) or NeRF folder (transforms*.json)")
    p.add_argument("--out", required=True, help="run folder to write")
    p.add_argument(
        "--iterations",
        type=bounded(int, min=1),
        default=None,
        help=f"training length (default {TrainConfig.iterations}; with --resume: the run's own length)",
    )
    p.add_argument(
        "--masks",
        default=None,
        help="associated object masks (<image stem>.png) to train identities; default DATA/object_mask if present",
    )
    p.add_argument("--init-from", default=None, help="start from a trained run folder or PLY instead of SfM points")
    p.add_argument("--no-densify", action="store_true", help="keep the set of Gaussians fixed")
    p.add_argument("--white-background", action="store_true", help="composite RGBA images on white, not black")
    p.add_argument(
        "--no-environment",
        action="store_true",
        help="no learned environment behind the Gaussians: a fixed background color, as plain 3DGS",
    )
    for cls in (DataConfig, TrainConfig, IdentityConfig, DensifyConfig, DeviceOptions):
        add_options(p, cls)
    p.add_argument("--resume", action="store_true", help="continue from RUN/checkpoint.pt")
    p.add_argument("--force", action="store_true", help="overwrite an existing run in --out")
    p.add_argument(
        "--checkpoint-every",
        type=bounded(int, min=0),
        default=0,
        help="also save a checkpoint every N iterations (default 0: only at the end)",
    )
    p.add_argument("--plain", action="store_true", help="write point_cloud.ply without the obj_dc_* fields")
    p.add_argument("--quiet", action="store_true", help=QUIET_HELP)
    p.add_argument(
        "--gpus",
        type=bounded(int, min=1),
        default=1,
        help="train on N processes (torchrun; data parallel over views, gloo on the CPU, one GPU each on CUDA)",
    )
    p.set_defaults(func=cmd_train)


# ---- render / eval ---------------------------------------------------------------------------
def check_device(args) -> None:
    """``--device``: a missing GPU or gsplat is one line (InputError), before any data is read."""
    from .train.device import resolve_device

    resolve_device(args.device)


def cmd_render(args) -> int:
    from .pipeline import render_split

    check_device(args)
    paths = render_split(args.run, args.out, args.split, progress=not args.quiet, device=args.device)
    print(f"wrote {len(paths)} images to {Path(args.out) / 'rgb'}")
    return 0


def cmd_eval(args) -> int:
    from .pipeline import evaluate_run, evaluate_segmentation_run

    check_device(args)
    if args.gt:
        result = evaluate_segmentation_run(args.run, args.gt, progress=not args.quiet, device=args.device)
        print(f"{'gt id':>6} {'name':>12} {'pred id':>8} {'IoU':>7} {'bIoU':>7} {'views':>6}")
        for o in result["objects"]:
            print(
                f"{o['gt_id']:>6} {o['name']:>12} {str(o['pred_id']):>8} {o['iou']:7.4f} {o['biou']:7.4f} {o['views']:>6}"
            )
        print(json.dumps({k: result[k] for k in ("miou", "mbiou", "num_objects", "num_views", "split")}))
        return 0
    metrics = evaluate_run(args.run, progress=not args.quiet, device=args.device)
    train = metrics["train"]
    print(f"{'split':<6} {'views':>5} {'PSNR':>7} {'SSIM':>7}")
    print(f"{'train':<6} {train['views']:>5} {train['psnr']:7.2f} {train['ssim']:7.4f}")
    print(f"{'test':<6} {metrics['views']:>5} {metrics['psnr']:7.2f} {metrics['ssim']:7.4f}")
    print(f"train - test PSNR gap: {metrics['psnr_gap']:.2f} dB ({metrics['gaussians']} Gaussians)")
    print(json.dumps({k: v for k, v in metrics.items() if k != "per_view"}))
    return 0


def _add_render_eval(sub) -> None:
    p = sub.add_parser("render", help="render a run's views to PNG")
    p.add_argument("run", help="a trained run folder")
    p.add_argument("--out", required=True, help="folder for rgb/ (and ids/, overlay/, features/ of segmented runs)")
    p.add_argument(
        "--split",
        choices=["train", "test", "all"],
        default="test",
        help="which views (default test: the views held out by --eval; train: the training views; all: both)",
    )
    add_options(p, DeviceOptions)
    p.add_argument("--quiet", action="store_true", help=QUIET_HELP)
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("eval", help="PSNR and SSIM on the test split -> RUN/metrics.json; with --gt, segmentation")
    p.add_argument("run", help="a trained run folder")
    p.add_argument(
        "--gt",
        default=None,
        help="ground-truth masks: <stem>.png instance maps, or the LERF-Mask test_mask/<view>/<prompt>.png "
        "layout; scores the test-view id maps -> RUN/seg_metrics.json",
    )
    add_options(p, DeviceOptions)
    p.add_argument("--quiet", action="store_true", help=QUIET_HELP)
    p.set_defaults(func=cmd_eval)


# ---- masks / associate / lift ----------------------------------------------------------------
def cmd_masks(args) -> int:
    from .segment.masks import generate_masks
    from .segment.sam import SamOptions

    sam = from_options(SamOptions, args) if args.source == "sam" else None
    summary = generate_masks(
        args.data,
        args.out,
        args.source,
        args.resolution,
        seed=args.seed,
        sam=sam,
        cache_dir=Path(args.out) / ".cache",
        progress=not args.quiet,
        force=args.force,
    )
    print(json.dumps(summary))
    return 0


def cmd_associate(args) -> int:
    from .pipeline import associate_run
    from .segment.association_io import resolve_output_dir

    check_device(args)
    out = resolve_output_dir(args.data, args.out, args.force)
    stats = associate_run(args.data, args.masks, args.model, out, progress=not args.quiet, device=args.device)
    print(json.dumps(stats))
    print(f"wrote {stats['objects']} objects to {out}")
    return 0


def cmd_lift(args) -> int:
    from .pipeline import lift_run

    check_device(args)
    summary = lift_run(args.run, args.masks, args.out, args.background_bias, args.force, not args.quiet, args.device)
    print(json.dumps(summary))
    return 0


def _add_segment(sub) -> None:
    from .segment.lift import DEFAULT_BACKGROUND_BIAS
    from .segment.sam import SamOptions

    p = sub.add_parser("masks", help="2D 'segment everything' masks per view (ids not yet consistent across views)")
    p.add_argument("data", help="dataset folder, as for train")
    p.add_argument("--out", required=True, help="folder for <image stem>.png label maps (outside DATA)")
    p.add_argument(
        "--source",
        choices=["classical", "sam"],
        default="classical",
        help="classical: weight-free graph segmentation (default); sam: Segment Anything",
    )
    add_options(p, DataConfig, skip=("eval", "image_cache"))
    p.add_argument("--seed", type=int, default=0, help="seed of the per-view random id permutation")
    add_options(p, SamOptions)
    p.add_argument("--force", action="store_true", help="overwrite masks already in --out")
    p.add_argument("--quiet", action="store_true", help=QUIET_HELP)
    p.set_defaults(func=cmd_masks)

    p = sub.add_parser("associate", help="give each object one id across all views, through a reconstruction")
    p.add_argument("data", help="the dataset the masks belong to")
    p.add_argument("--masks", required=True, help="per-view masks from `gsgroup masks` (ids unassociated)")
    p.add_argument("--model", required=True, help="a trained run of the same dataset")
    p.add_argument(
        "--out",
        required=True,
        help="output folder for the associated masks, outside DATA (train on them with --masks OUT)",
    )
    p.add_argument("--force", action="store_true", help="overwrite masks already in the output folder")
    add_options(p, DeviceOptions)
    p.add_argument("--quiet", action="store_true", help=QUIET_HELP)
    p.set_defaults(func=cmd_associate)

    p = sub.add_parser("lift", help="closed-form labels per Gaussian from associated masks (FlashSplat-style)")
    p.add_argument("run", help="a trained run folder")
    p.add_argument("--masks", required=True, help="associated masks (<image stem>.png, one id per object)")
    p.add_argument("--out", default=None, help="segmented run folder to write (default: RUN itself)")
    p.add_argument(
        "--background-bias",
        type=float,
        default=DEFAULT_BACKGROUND_BIAS,
        help="a Gaussian joins an object only if its vote share beats the background's by this much "
        f"(default {DEFAULT_BACKGROUND_BIAS})",
    )
    p.add_argument("--force", action="store_true", help="replace existing labels")
    add_options(p, DeviceOptions)
    p.add_argument("--quiet", action="store_true", help=QUIET_HELP)
    p.set_defaults(func=cmd_lift)


# ---- run / demo ------------------------------------------------------------------------------
def pipeline_config_from_args(args, **overrides) -> PipelineConfig:
    return from_options(PipelineConfig, args, progress=not args.quiet, **overrides)


def cmd_run(args) -> int:
    from .train.device import resolve_device
    from .workflow import run_pipeline

    resolve_device(args.device)  # a missing GPU or gsplat is one line, before any work
    cfg = pipeline_config_from_args(args, data=args.data, out=args.out, resolution=args.resolution, eval=args.eval)
    summary = run_pipeline(cfg)
    print(json.dumps({k: v for k, v in summary.items() if k != "objects"}))
    return 0


def cmd_demo(args) -> int:
    from .demo import run_demo

    run_demo(args.out, pipeline_config_from_args(args))
    return 0


def _add_pipeline(sub) -> None:
    p = sub.add_parser("run", help="the whole pipeline: masks, reconstruction, association, identities, evaluation")
    p.add_argument(
        "data",
        help="COLMAP folder (images/ + sparse/0) or NeRF folder (transforms*.json); photos without poses "
        "or a video get poses first (gsgroup poses, into RUN/data)",
    )
    p.add_argument("--out", required=True, help="run folder")
    add_options(p, DataConfig, skip=("image_cache",))  # PipelineConfig has it
    add_options(p, PipelineConfig)
    p.add_argument("--quiet", action="store_true", help=QUIET_HELP)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("demo", help="the whole pipeline on the built-in scene, with an HTML report")
    p.add_argument("--out", default="demo_out", help="folder for the scene, the run and report.html (default demo_out)")
    add_options(p, PipelineConfig, skip=("masks", "object_masks", "gt"))
    p.add_argument("--quiet", action="store_true", help=QUIET_HELP)
    p.set_defaults(func=cmd_demo)


# ---- parser ----------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    from .data.poses_cli import add_poses_command
    from .edit.commands import add_edit_commands
    from .viewer.cli import add_view_command

    parser = argparse.ArgumentParser(
        prog="gsgroup", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"gsgroup {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_train(sub)
    _add_render_eval(sub)
    _add_segment(sub)
    _add_pipeline(sub)
    add_edit_commands(sub)
    __import__("gsgroup.edit.select_command").edit.select_command.add_select_command(sub)  # gsgroup select --text
    add_view_command(sub)
    add_poses_command(sub)
    return parser


def _flag_message(e: InputError) -> str:
    """The error's message with its leading parameter name as the command-line flag."""
    from .edit.inpainting import InpaintOptions
    from .edit.select import SelectOptions
    from .segment.sam import SamOptions

    message = str(e)
    if e.param and message.startswith(e.param):
        flags = {f.name: flag_of(f) for cls in (SamOptions, SelectOptions, InpaintOptions) for f in cli_fields(cls)}
        message = flags.get(e.param, "--" + e.param.replace("_", "-")) + message[len(e.param) :]
    return message


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    return f"gsgroup: warning: {message}\n"


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``gsgroup`` console command."""
    import warnings

    warnings.formatwarning = _one_line_warning
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except InputError as e:
        print(f"gsgroup: error: {_flag_message(e)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
