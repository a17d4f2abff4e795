"""The ``gsgroup`` command."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from . import __version__
from .errors import InputError
from .pipeline import associate_run, evaluate_run, evaluate_segmentation_run, lift_run, render_split


def _resolution(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("--resolution must be 1, 2, 4, 8 (divisors) or a width in pixels")
    return value


# ---- train -----------------------------------------------------------------------------------
def _masks_dir(args) -> Path | None:
    """--masks, or DATA/object_mask when it exists (the original Gaussian Grouping layout)."""
    if args.masks:
        return Path(args.masks)
    default = Path(args.data) / "object_mask"
    return default if default.is_dir() else None


def _initial_gaussians(path: str, id_dim: int, seed: int):
    """Gaussians from --init-from (a PLY or a run folder); identities re-initialised when missing."""
    import torch

    from .model import load_ply
    from .model.sh import rgb_to_sh

    p = Path(path)
    g = load_ply(p / "point_cloud.ply" if p.is_dir() else p)
    if g.id_dim != id_dim:
        gen = torch.Generator().manual_seed(seed)
        g.ids = rgb_to_sh(torch.rand(len(g), id_dim, generator=gen))
    return g


def _init_checkpoint(path: str | None, id_dim: int) -> Path | None:
    """The checkpoint of an --init-from run folder whose identities fit, to carry its Adam state over."""
    if not path or not (Path(path) / "checkpoint.pt").exists():
        return None
    from .train.run import read_config

    same_ids = read_config(path)["train"].get("id_dim") == id_dim
    return Path(path) / "checkpoint.pt" if same_ids else None


def cmd_train(args) -> int:
    import torch

    from .data.masks import load_masks
    from .data.scene import load_scene
    from .fileio import write_json
    from .segment.grouping import GroupingTrainer
    from .train.densify import DensifyConfig
    from .train.run import read_config
    from .train.trainer import TrainConfig, Trainer

    run = Path(args.out)
    ckpt = run / "checkpoint.pt"
    if args.resume:
        if not ckpt.exists():
            raise InputError(f"{ckpt}: no checkpoint to resume from; drop --resume to start a new run")
        config = read_config(run)
        cfg = TrainConfig.from_dict(config["train"])
        if args.iterations:
            cfg.iterations = args.iterations
        data_args = config["data"]
    else:
        if ckpt.exists() and not args.force:
            raise InputError(f"{run}: already holds a run; pass --resume to continue it or --force to start over")
        iterations = args.iterations or 7000
        densify = DensifyConfig(max_gaussians=args.max_gaussians).scaled(iterations)
        if args.no_densify:
            densify.densify_until = 0
        cfg = TrainConfig(
            iterations=iterations, seed=args.seed, sh_degree=args.sh_degree, init=args.init, id_dim=args.id_dim,
            random_background=args.random_background,
            background=(1.0, 1.0, 1.0) if args.white_background else (0.0, 0.0, 0.0),
            densify=densify, ids_move_geometry=args.ids_move_geometry,
            env_sh_degree=-1 if args.no_environment else TrainConfig.env_sh_degree,
        )
        if args.eval_every is not None:
            cfg.eval_every = args.eval_every
        if args.init_from:
            cfg.lr_means = cfg.lr_means_final * 10  # refining a reconstruction: start where a run ends
        masks_dir = _masks_dir(args)
        data_args = {"path": str(Path(args.data).resolve()), "resolution": args.resolution, "eval": args.eval,
                     "masks": None if masks_dir is None else str(masks_dir.resolve())}
    scene = load_scene(
        data_args["path"], resolution=data_args["resolution"], eval=data_args["eval"], background=cfg.background,
        cache_dir=run / "cache", allow_empty_points=cfg.init != "points",
    )
    print(f"scene: {len(scene.train)} train / {len(scene.test)} test views at "
          f"{scene.train[0].width}x{scene.train[0].height}, "
          f"{0 if scene.points is None else len(scene.points)} SfM points, extent {scene.extent:.3f}")
    init_ckpt = None if args.resume else _init_checkpoint(args.init_from, cfg.id_dim)
    gaussians = _initial_gaussians(args.init_from, cfg.id_dim, cfg.seed) if args.init_from else None
    # The heavy work runs in the rasterizer's own threads; PyTorch's many small ops per iteration are
    # faster on one thread (measured at 5k Gaussians, 200x150: 23.5 ms/iteration vs 27.8 ms with two).
    torch.set_num_threads(1)
    if data_args.get("masks"):
        masks = load_masks(data_args["masks"], scene.train)
        trainer = GroupingTrainer(scene, cfg, run, masks, gaussians=gaussians)
        print(f"identities: {sum(m is not None for m in masks.values())} masked views, {trainer.num_classes} classes")
    else:
        trainer = Trainer(scene, cfg, run, gaussians=gaussians)
    if args.resume:
        trainer.load_checkpoint(ckpt)
        print(f"resumed at iteration {trainer.step_count}")
    elif init_ckpt:
        trainer.load_checkpoint(init_ckpt, weights_only=True)
    if args.force and not args.resume:
        (run / "train_log.jsonl").unlink(missing_ok=True)
    write_json(run / "config.json", {"version": __version__, "data": data_args, "train": cfg.to_dict()})
    t0 = time.perf_counter()
    try:
        trainer.train(progress=not args.quiet, checkpoint_every=args.checkpoint_every)
    except KeyboardInterrupt:
        return 130
    seconds = time.perf_counter() - t0
    trainer.save_checkpoint()
    trainer.save(plain=args.plain)
    summary = {"iterations": trainer.step_count, "gaussians": int(trainer.params["means"].shape[0]),
               "train_seconds": round(seconds, 1)}
    if scene.test:
        summary.update({f"test_{k}": v for k, v in trainer.evaluate().items()})
    print(json.dumps(summary))
    print(f"wrote {run / 'point_cloud.ply'}")
    return 0


# ---- render / eval ---------------------------------------------------------------------------
def cmd_render(args) -> int:
    paths = render_split(Path(args.run), Path(args.out), args.split, progress=not args.quiet)
    print(f"wrote {len(paths)} images to {Path(args.out) / 'rgb'}")
    return 0


def cmd_eval(args) -> int:
    run = Path(args.run)
    if args.gt:
        result = evaluate_segmentation_run(run, Path(args.gt), progress=not args.quiet)
        print(f"{'gt id':>6} {'name':>12} {'pred id':>8} {'IoU':>7} {'bIoU':>7} {'views':>6}")
        for o in result["objects"]:
            print(f"{o['gt_id']:>6} {o['name']:>12} {str(o['pred_id']):>8} {o['iou']:7.4f} {o['biou']:7.4f} {o['views']:>6}")
        print(json.dumps({k: result[k] for k in ("miou", "mbiou", "num_objects", "num_views", "split")}))
        return 0
    metrics = evaluate_run(run, progress=not args.quiet)
    train = metrics["train"]
    print(f"{'split':<6} {'views':>5} {'PSNR':>7} {'SSIM':>7}")
    print(f"{'train':<6} {train['views']:>5} {train['psnr']:7.2f} {train['ssim']:7.4f}")
    print(f"{'test':<6} {metrics['views']:>5} {metrics['psnr']:7.2f} {metrics['ssim']:7.4f}")
    print(f"train - test PSNR gap: {metrics['psnr_gap']:.2f} dB ({metrics['gaussians']} Gaussians)")
    print(json.dumps({k: v for k, v in metrics.items() if k != "per_view"}))
    return 0


# ---- masks -----------------------------------------------------------------------------------
def cmd_masks(args) -> int:
    from .segment.masks import generate_masks
    from .segment.sam import SamOptions

    sam = None
    if args.source == "sam":
        sam = SamOptions(
            checkpoint=args.sam_checkpoint, model_type=args.sam_model, points_per_side=args.sam_points_per_side,
            pred_iou_thresh=args.sam_pred_iou_thresh, stability_score_thresh=args.sam_stability_thresh,
            min_mask_region_area=args.sam_min_area,
        )
    summary = generate_masks(args.data, args.out, args.source, args.resolution, seed=args.seed, sam=sam,
                             cache_dir=Path(args.out) / ".cache", progress=not args.quiet)
    print(json.dumps(summary))
    return 0


# ---- associate -------------------------------------------------------------------------------
def cmd_associate(args) -> int:
    from .segment.associate import resolve_output_dir

    out = resolve_output_dir(args.data, args.out, args.force)
    stats = associate_run(Path(args.data), Path(args.masks), Path(args.model), out, progress=not args.quiet)
    print(json.dumps(stats))
    print(f"wrote {stats['objects']} objects to {out}")
    return 0


# ---- lift ------------------------------------------------------------------------------------
def cmd_lift(args) -> int:
    out = Path(args.out) if args.out else Path(args.run)
    summary = lift_run(Path(args.run), Path(args.masks), out, args.background_bias, args.force, not args.quiet)
    print(json.dumps(summary))
    return 0


# ---- run: the whole pipeline -------------------------------------------------------------------
def _train(argv: list[str]) -> None:
    rc = cmd_train(build_parser().parse_args(["train", *argv]))
    if rc:
        raise SystemExit(rc)


def _stage(number: int, title: str, done: bool, where: Path) -> bool:
    """Print the stage header; True when the stage must run."""
    print(f"[{number}/5] {title}: " + (f"already in {where}, skipped" if done else f"-> {where}"))
    return not done


def run_pipeline(args) -> dict:
    """masks -> short reconstruction -> association -> identity training -> renders and evaluation."""
    from .segment.masks import generate_masks
    from .segment.sam import SamOptions

    data, run = Path(args.data), Path(args.out)
    if args.force and run.exists():
        shutil.rmtree(run)
    run.mkdir(parents=True, exist_ok=True)
    quiet = ["--quiet"] if args.quiet else []
    common = ["--seed", str(args.seed)] + (["--eval"] if args.eval else [])
    if args.resolution:
        common += ["--resolution", str(args.resolution)]
    given = Path(args.object_masks) if args.object_masks else None
    if given is None and not args.masks and (data / "object_mask").is_dir():
        given = data / "object_mask"

    raw = Path(args.masks) if args.masks else run / "masks"
    if given is None and _stage(1, f"2D masks ({args.masks_source})", raw.is_dir() and any(raw.iterdir()), raw):
        sam = SamOptions(checkpoint=args.sam_checkpoint, model_type=args.sam_model) if args.masks_source == "sam" else None
        generate_masks(data, raw, args.masks_source, args.resolution, seed=args.seed, sam=sam,
                       cache_dir=run / "cache", progress=not args.quiet)
    elif given is not None:
        print(f"[1/5] 2D masks: using associated masks in {given}")

    recon = run / "recon"
    if _stage(2, f"reconstruction, {args.recon_iterations} iterations", (recon / "point_cloud.ply").exists(), recon):
        _train([str(data), "--out", str(recon), "--iterations", str(args.recon_iterations), "--force", *common, *quiet])

    associated = given or run / "object_mask"
    if given is None and _stage(3, "association", (associated / "objects.json").exists(), associated):
        stats = associate_run(data, raw, recon, associated, progress=not args.quiet)
        print(f"      {stats['objects']} objects from {stats['kept']} of {stats['masks']} masks in {stats['seconds']} s")

    if _stage(4, f"identity training, {args.id_iterations} iterations", (run / "classifier.pt").exists(), run):
        _train([str(data), "--out", str(run), "--iterations", str(args.id_iterations), "--init-from", str(recon),
                "--masks", str(associated), "--no-densify", "--force", *common, *quiet])

    print(f"[5/5] renders and evaluation -> {run / 'renders'}")
    summary: dict = {}
    split = "test" if args.eval else "train"
    render_split(run, run / "renders", split, progress=not args.quiet)
    if args.eval:
        summary["reconstruction"] = {k: v for k, v in evaluate_run(run, progress=False).items() if k != "per_view"}
    gt = Path(args.gt) if args.gt else (data / "gt_mask" if (data / "gt_mask").is_dir() else None)
    if gt is not None:
        seg = evaluate_segmentation_run(run, gt, progress=False)
        summary["segmentation"] = {k: seg[k] for k in ("miou", "mbiou", "num_objects", "num_views", "split")}
        summary["objects"] = seg["objects"]
    return summary


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--masks-source", choices=["classical", "sam"], default="classical")
    p.add_argument("--sam-checkpoint", default=None)
    p.add_argument("--sam-model", choices=["vit_h", "vit_l", "vit_b"], default="vit_h")
    p.add_argument("--recon-iterations", type=int, default=3000, help="RGB-only reconstruction length")
    p.add_argument("--id-iterations", type=int, default=2000, help="identity training length, continued from it")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true", help="redo every stage")
    p.add_argument("--quiet", action="store_true")


def cmd_run(args) -> int:
    summary = run_pipeline(args)
    print(json.dumps({k: v for k, v in summary.items() if k != "objects"}))
    return 0


# ---- demo ------------------------------------------------------------------------------------
def cmd_demo(args) -> int:
    from .data.synthetic import make_scene
    from .report import write_report

    out = Path(args.out)
    scene_dir, run = out / "scene", out / "run"
    if args.force and out.exists():
        shutil.rmtree(out)
    if not (scene_dir / "scene.json").exists():
        print(f"building the built-in scene in {scene_dir}")
        make_scene(scene_dir, seed=args.seed, progress=not args.quiet)
    args.data, args.out, args.eval, args.resolution = str(scene_dir), str(run), True, None
    args.masks = args.object_masks = args.gt = None
    args.force = False
    summary = run_pipeline(args)
    rec, seg = summary["reconstruction"], summary["segmentation"]
    print(f"test PSNR {rec['psnr']:.2f} dB, SSIM {rec['ssim']:.4f}; segmentation mIoU {seg['miou']:.3f}, "
          f"boundary IoU {seg['mbiou']:.3f}")
    renders = run / "renders"
    names = sorted(p.stem for p in (renders / "rgb").glob("*.png"))
    recon_images, seg_images, mask_images = [], [], []
    for name in names:
        recon_images += [(f"{name} ground truth", scene_dir / "images" / f"{name}.png"),
                         (f"{name} render", renders / "rgb" / f"{name}.png")]
        seg_images += [(f"{name} objects", renders / "overlay" / f"{name}.png"),
                       (f"{name} identity features (PCA)", renders / "features" / f"{name}.png")]
    for name in names[:3]:
        mask_images += [(f"{name} classical masks (ids differ per view)", _colourise(run / "masks" / f"{name}.png", out)),
                        (f"{name} associated (one id per object)", _colourise(run / "object_mask" / f"{name}.png", out))]
    pick, edit_images = _demo_edits(scene_dir, run, out, args.quiet)
    report = write_report(out / "report.html", "gsgroup demo: reconstruct, group, segment, edit", [
        {"title": "Reconstruction (held-out test views)", "metrics": rec, "images": recon_images},
        {"title": "2D masks before and after association", "images": mask_images},
        {"title": "3D segmentation (held-out test views)", "metrics": seg,
         "text": "Per-pixel object ids rendered from the Gaussians' identity encodings, scored against the "
                 "scene's exact ground-truth masks (Hungarian matching).", "images": seg_images},
        {"title": "Edits of the sphere, selected by a 2D mask (before | after)", "images": edit_images,
         "text": "gsgroup edit remove / recolor / inpaint RUN " + pick + "; each wrote a new run folder "
                 "under edits/."},
    ])
    print(f"open {report}")
    print(f"explore and edit the objects in your browser: gsgroup view {run}")
    return 0


def _demo_edits(scene_dir: Path, run: Path, out: Path, quiet: bool) -> tuple[str, list]:
    """Remove, recolour and inpaint the red sphere (object 1 of the built-in scene), selected with a 2D
    mask of it in the first test view (the ids covering most of the mask, so an object that the
    masks split in two parts is still taken whole). Returns the selection text and the report's
    before/after images."""
    import numpy as np

    from .data.masks import read_mask
    from .edit.commands import cmd_edit
    from .fileio import write_image

    view = "view_000"
    mask = out / "report_files" / "sphere_mask.png"
    write_image(mask, (read_mask(scene_dir / "gt_mask" / f"{view}.png") == 1).astype(np.uint8) * 255)
    images = []
    for op, extra in (("remove", []), ("recolor", ["--color", "#2a6fdb"]), ("inpaint", [])):
        target = out / "edits" / op
        if not (target / "edit.json").exists():
            print(f"edit {op} --mask-view {view} --mask {mask} -> {target}")
            argv = ["edit", op, str(run), "--out", str(target), "--mask-view", view, "--mask", str(mask), "--force"]
            cmd_edit(build_parser().parse_args(argv + extra + (["--quiet"] if quiet else [])))
        images += [(f"{op}: {p.stem}", p) for p in sorted((target / "before_after").glob("*.png"))[:2]]
    return f"--mask-view {view} --mask {mask.name}", images


def _colourise(mask_png: Path, out: Path) -> Path:
    """A colour picture of a label PNG, for the report (written under out/report_files)."""
    from .data.masks import read_mask
    from .fileio import write_image
    from .segment.idmaps import palette

    ids = read_mask(mask_png)
    path = out / "report_files" / f"{mask_png.parent.name}_{mask_png.stem}.png"
    write_image(path, palette(int(ids.max()) + 1)[ids])
    return path


# ---- parser ----------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gsgroup", description=__doc__)
    parser.add_argument("--version", action="version", version=f"gsgroup {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="reconstruct a scene as Gaussian splats")
    p.add_argument("data", help="COLMAP folder (images/ + sparse/0) or NeRF folder (transforms*.json)")
    p.add_argument("--out", required=True, help="run folder to write")
    p.add_argument("--iterations", type=int, default=None, help="training length (default 7000)")
    p.add_argument("--resolution", type=_resolution, default=None,
                   help="1/2/4/8 divide the image size; a larger number sets the width (default: at most 1600 wide)")
    p.add_argument("--masks", default=None,
                   help="associated object masks (<image stem>.png) to train identities; default DATA/object_mask if present")
    p.add_argument("--id-dim", type=int, default=16, help="size of the identity encoding")
    p.add_argument("--init-from", default=None, help="start from a trained run folder or PLY instead of SfM points")
    p.add_argument("--no-densify", action="store_true", help="keep the set of Gaussians fixed")
    p.add_argument("--ids-move-geometry", action="store_true",
                   help="let the identity losses move the Gaussians too, as the original (default: encodings only)")
    p.add_argument("--eval", action="store_true", help="hold out every 8th image (by name) as the test split")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sh-degree", type=int, default=3, choices=[0, 1, 2, 3])
    p.add_argument("--init", choices=["auto", "points", "random"], default="auto",
                   help="initialise from SfM points, or randomly in the camera frustums (auto: points if any)")
    p.add_argument("--max-gaussians", type=int, default=None, help="cap on the number of Gaussians")
    p.add_argument("--random-background", action="store_true",
                   help="random background colour each iteration (instead of the learned environment)")
    p.add_argument("--white-background", action="store_true", help="composite RGBA images on white, not black")
    p.add_argument("--no-environment", action="store_true",
                   help="no learned environment behind the Gaussians: a fixed background colour, as plain 3DGS")
    p.add_argument("--eval-every", type=int, default=None,
                   help="log the test split's PSNR/SSIM to train_log.jsonl every N iterations (default 500; 0 = never)")
    p.add_argument("--resume", action="store_true", help="continue from RUN/checkpoint.pt")
    p.add_argument("--force", action="store_true", help="overwrite an existing run in --out")
    p.add_argument("--checkpoint-every", type=int, default=0, help="also save a checkpoint every N iterations")
    p.add_argument("--plain", action="store_true", help="write point_cloud.ply without the obj_dc_* fields")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("render", help="render a run's views to PNG")
    p.add_argument("run")
    p.add_argument("--out", required=True)
    p.add_argument("--split", choices=["train", "test", "all"], default="test")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("eval", help="PSNR and SSIM on the test split -> RUN/metrics.json; with --gt, segmentation")
    p.add_argument("run")
    p.add_argument("--gt", default=None,
                   help="ground-truth masks: <stem>.png instance maps, or the LERF-Mask test_mask/<view>/<prompt>.png "
                        "layout; scores the test-view id maps -> RUN/seg_metrics.json")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("associate", help="give each object one id across all views, through a reconstruction")
    p.add_argument("data", help="the dataset the masks belong to")
    p.add_argument("--masks", required=True, help="per-view masks from `gsgroup masks` (ids unassociated)")
    p.add_argument("--model", required=True, help="a trained run of the same dataset")
    p.add_argument("--out", default=None, help="output folder (default DATA/object_mask, only if it does not exist)")
    p.add_argument("--force", action="store_true", help="overwrite masks already in the output folder")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_associate)

    p = sub.add_parser("lift", help="closed-form labels per Gaussian from associated masks (FlashSplat-style)")
    p.add_argument("run", help="a trained run folder")
    p.add_argument("--masks", required=True, help="associated masks (<image stem>.png, one id per object)")
    p.add_argument("--out", default=None, help="segmented run folder to write (default: RUN itself)")
    p.add_argument("--background-bias", type=float, default=0.1,
                   help="a Gaussian joins an object only if its vote share beats the background's by this much")
    p.add_argument("--force", action="store_true", help="replace existing labels")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_lift)

    p = sub.add_parser("masks", help="2D 'segment everything' masks per view (ids not yet consistent across views)")
    p.add_argument("data", help="dataset folder, as for train")
    p.add_argument("--out", required=True, help="folder for <image stem>.png label maps (outside DATA)")
    p.add_argument("--source", choices=["classical", "sam"], default="classical",
                   help="classical: weight-free graph segmentation (default); sam: Segment Anything")
    p.add_argument("--resolution", type=_resolution, default=None, help="as for train; masks land on the same size")
    p.add_argument("--seed", type=int, default=0, help="seed of the per-view random id permutation")
    p.add_argument("--sam-checkpoint", default=None, help="SAM weights (.pth) for --source sam")
    p.add_argument("--sam-model", choices=["vit_h", "vit_l", "vit_b"], default="vit_h")
    p.add_argument("--sam-points-per-side", type=int, default=32)
    p.add_argument("--sam-pred-iou-thresh", type=float, default=0.7)
    p.add_argument("--sam-stability-thresh", type=float, default=0.95)
    p.add_argument("--sam-min-area", type=int, default=0, help="minimum mask region area in pixels")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_masks)

    p = sub.add_parser("run", help="the whole pipeline: masks, reconstruction, association, identities, evaluation")
    p.add_argument("data")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--masks", default=None, help="per-view masks to associate (default: generate them)")
    p.add_argument("--object-masks", default=None,
                   help="already associated masks (default DATA/object_mask when present): skips masks and association")
    p.add_argument("--gt", default=None, help="ground-truth masks for scoring (default DATA/gt_mask when present)")
    p.add_argument("--resolution", type=_resolution, default=None)
    p.add_argument("--eval", action="store_true", help="hold out every 8th image as the test split")
    _add_run_options(p)
    p.set_defaults(func=cmd_run)

    from .edit.commands import add_edit_commands
    from .viewer.cli import add_view_command

    add_edit_commands(sub)
    add_view_command(sub)

    p = sub.add_parser("demo", help="the whole pipeline on the built-in scene, with an HTML report")
    p.add_argument("--out", default="demo_out")
    _add_run_options(p)
    p.set_defaults(func=cmd_demo)
    return parser


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
        print(f"gsgroup: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
