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


def _resolution(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("--resolution must be 1, 2, 4, 8 (divisors) or a width in pixels")
    return value


# ---- train -----------------------------------------------------------------------------------
def cmd_train(args) -> int:
    from .data.scene import load_scene
    from .fileio import write_json
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
        densify = DensifyConfig(max_gaussians=args.max_gaussians).scaled(args.iterations)
        cfg = TrainConfig(
            iterations=args.iterations, seed=args.seed, sh_degree=args.sh_degree, init=args.init,
            random_background=args.random_background,
            background=(1.0, 1.0, 1.0) if args.white_background else (0.0, 0.0, 0.0),
            densify=densify,
        )
        data_args = {"path": str(Path(args.data).resolve()), "resolution": args.resolution, "eval": args.eval}
    scene = load_scene(
        data_args["path"], resolution=data_args["resolution"], eval=data_args["eval"], background=cfg.background,
        cache_dir=run / "cache", allow_empty_points=cfg.init != "points",
    )
    print(f"scene: {len(scene.train)} train / {len(scene.test)} test views at "
          f"{scene.train[0].width}x{scene.train[0].height}, "
          f"{0 if scene.points is None else len(scene.points)} SfM points, extent {scene.extent:.3f}")
    trainer = Trainer(scene, cfg, run)
    if args.resume:
        trainer.load_checkpoint(ckpt)
        print(f"resumed at iteration {trainer.step_count}")
    elif args.force:
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
def render_split(run: Path, out: Path, split: str, progress: bool = True) -> list[Path]:
    """Render a run's views of one split to out/rgb/<stem>.png. Returns the written paths."""
    import torch
    from tqdm import tqdm

    from .fileio import write_image
    from .train.run import load_run_gaussians, load_run_scene, read_config
    from .train.trainer import render_view, view_tensors

    config = read_config(run)
    scene = load_run_scene(run, config, progress=progress)
    views = {"train": scene.train, "test": scene.test, "all": scene.train + scene.test}[split]
    if not views:
        raise InputError(f"{run}: the '{split}' split is empty (train with --eval to hold out test views)")
    g = load_run_gaussians(run)
    bg = torch.tensor(config["train"]["background"], dtype=torch.float32)
    paths = []
    with torch.no_grad():
        for view in tqdm(views, desc=f"render {split}", disable=not progress):
            vt = view_tensors(view)
            img = render_view(g, vt, g.sh_degree, background=bg).image
            path = out / "rgb" / f"{view.name}.png"
            write_image(path, img.clamp(0, 1).numpy())
            paths.append(path)
    return paths


def cmd_render(args) -> int:
    paths = render_split(Path(args.run), Path(args.out), args.split, progress=not args.quiet)
    print(f"wrote {len(paths)} images to {Path(args.out) / 'rgb'}")
    return 0


def evaluate_run(run: Path, progress: bool = True) -> dict:
    """PSNR / SSIM of a run on its test split; writes RUN/metrics.json."""
    import numpy as np
    import torch

    from .fileio import write_json
    from .train.losses import psnr, ssim
    from .train.run import load_run_gaussians, load_run_scene, read_config
    from .train.trainer import render_view, view_tensors

    config = read_config(run)
    scene = load_run_scene(run, config, progress=progress)
    if not scene.test:
        raise InputError(f"{run}: no test views; train with --eval to hold out every 8th image")
    g = load_run_gaussians(run)
    bg = torch.tensor(config["train"]["background"], dtype=torch.float32)
    per_view = {}
    with torch.no_grad():
        for view in scene.test:
            vt = view_tensors(view)
            img = render_view(g, vt, g.sh_degree, background=bg).image.clamp(0, 1)
            per_view[view.name] = {"psnr": psnr(img, vt.image), "ssim": ssim(img, vt.image).item()}
    metrics = {
        "psnr": float(np.mean([v["psnr"] for v in per_view.values()])),
        "ssim": float(np.mean([v["ssim"] for v in per_view.values()])),
        "views": len(per_view),
        "gaussians": len(g),
        "per_view": per_view,
    }
    write_json(run / "metrics.json", metrics)
    return metrics


def cmd_eval(args) -> int:
    metrics = evaluate_run(Path(args.run), progress=not args.quiet)
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


# ---- demo ------------------------------------------------------------------------------------
def cmd_demo(args) -> int:
    from .data.synthetic import make_scene
    from .report import write_report

    out = Path(args.out)
    scene_dir = out / "scene"
    run = out / "run"
    if args.force and out.exists():
        shutil.rmtree(out)
    if not (scene_dir / "sparse").exists():
        print(f"[1/4] building the built-in scene in {scene_dir}")
        make_scene(scene_dir, seed=args.seed, progress=not args.quiet)
    else:
        print(f"[1/4] built-in scene already in {scene_dir}")
    if not (run / "point_cloud.ply").exists():
        print(f"[2/4] training {args.iterations} iterations into {run}")
        train_args = build_parser().parse_args(
            ["train", str(scene_dir), "--out", str(run), "--eval", "--iterations", str(args.iterations),
             "--seed", str(args.seed), "--force"] + (["--quiet"] if args.quiet else [])
        )
        rc = cmd_train(train_args)
        if rc:
            return rc
    else:
        print(f"[2/4] trained run already in {run}")
    print("[3/4] rendering the test views")
    renders = render_split(run, out / "renders", "test", progress=not args.quiet)
    metrics = evaluate_run(run, progress=False)
    print(f"[4/4] report: test PSNR {metrics['psnr']:.2f} dB, SSIM {metrics['ssim']:.4f}")
    images = []
    for path in renders:
        images.append((f"{path.stem} ground truth", scene_dir / "images" / f"{path.stem}.png"))
        images.append((f"{path.stem} render", path))
    report = write_report(
        out / "report.html", "gsgroup demo",
        [{"title": "Reconstruction (held-out test views)",
          "metrics": {k: v for k, v in metrics.items() if k != "per_view"}, "images": images}],
    )
    print(f"open {report}")
    return 0


# ---- parser ----------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gsgroup", description=__doc__)
    parser.add_argument("--version", action="version", version=f"gsgroup {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="reconstruct a scene as Gaussian splats")
    p.add_argument("data", help="COLMAP folder (images/ + sparse/0) or NeRF folder (transforms*.json)")
    p.add_argument("--out", required=True, help="run folder to write")
    p.add_argument("--iterations", type=int, default=7000)
    p.add_argument("--resolution", type=_resolution, default=None,
                   help="1/2/4/8 divide the image size; a larger number sets the width (default: at most 1600 wide)")
    p.add_argument("--eval", action="store_true", help="hold out every 8th image (by name) as the test split")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sh-degree", type=int, default=3, choices=[0, 1, 2, 3])
    p.add_argument("--init", choices=["auto", "points", "random"], default="auto",
                   help="initialise from SfM points, or randomly in the camera frustums (auto: points if any)")
    p.add_argument("--max-gaussians", type=int, default=None, help="cap on the number of Gaussians")
    p.add_argument("--random-background", action="store_true", help="random background colour each iteration")
    p.add_argument("--white-background", action="store_true", help="composite RGBA images on white, not black")
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

    p = sub.add_parser("eval", help="PSNR and SSIM on the test split -> RUN/metrics.json")
    p.add_argument("run")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_eval)

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

    p = sub.add_parser("demo", help="build the built-in scene, train, render and write a report")
    p.add_argument("--out", default="demo_out")
    p.add_argument("--iterations", type=int, default=5000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true", help="redo every stage")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``gsgroup`` console command."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except InputError as e:
        print(f"gsgroup: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
