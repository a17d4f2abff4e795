"""Structure-from-motion benchmark (``gsgroup poses``) on fox's images alone, read in place.

    python benchmarks/sfm.py                            # poses of fox/images: registered, time per stage, pose error
    python benchmarks/sfm.py --train-iterations 2000    # then train --eval on the SfM dataset and on fox's own poses
    python benchmarks/sfm.py --work /tmp/sfm_fox        # keep the SfM dataset (resumes finished stages there)

Pose error: fox's transforms.json poses (NeRF/OpenGL camera-to-world, read by gsgroup's NeRF loader,
which turns them into OpenCV world-to-camera) against the SfM poses after a similarity (Umeyama on
the camera centres); rotation error in degrees, centre error in % of the largest distance of a
reference camera from the cameras' mean. The training comparison uses the same settings on both
datasets (``--resolution`` wide, every 8th image held out by name), so the test views are the same
images when every image registered. One run per configuration (SfM on fox takes minutes on a
laptop-class CPU); the machine and its load are recorded. Writes benchmarks/results/sfm.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, save, table  # noqa: E402

FOX = Path(__file__).resolve().parents[2] / "shared" / "data" / "fox"


def pose_comparison(data: Path, reference: Path) -> dict:
    """Errors of the SfM dataset ``data`` (COLMAP) against the NeRF dataset ``reference``, by image name."""
    import numpy as np

    from gsgroup.data.alignment import pose_errors
    from gsgroup.data.colmap_frames import colmap_frames
    from gsgroup.data.nerf import nerf_frames

    ref = {Path(f.key).name: f.viewmat for f in nerf_frames(reference)}
    est = {Path(f.key).name: f.viewmat for f in colmap_frames(data)[0]}
    names = sorted(set(ref) & set(est))
    e = pose_errors(np.stack([est[n] for n in names]), np.stack([ref[n] for n in names]))
    pct = 100 * e["center"] / e["extent"]
    return {
        "compared": len(names),
        "rotation_deg_median": float(np.median(e["rotation_deg"])),
        "rotation_deg_max": float(e["rotation_deg"].max()),
        "center_pct_median": float(np.median(pct)),
        "center_pct_max": float(pct.max()),
    }


def train_and_eval(data: Path, out: Path, iterations: int, resolution: int, init: str) -> dict:
    """``gsgroup train DATA --eval --iterations N --resolution R --init I`` then ``gsgroup eval``: test PSNR/SSIM."""
    from gsgroup.pipeline import evaluate_run, train_run
    from gsgroup.run import DataConfig, RunConfig
    from gsgroup.train.config import TrainConfig

    t = time.perf_counter()
    run, _ = train_run(
        RunConfig(DataConfig(str(data), resolution, True), TrainConfig.for_length(iterations, init=init)),
        out,
        force=True,
        progress=False,
    )
    m = evaluate_run(run, progress=False)
    return {
        "test_psnr": m["psnr"],
        "test_ssim": m["ssim"],
        "test_views": m["views"],
        "train_psnr": m["train"]["psnr"],
        "gaussians": m["gaussians"],
        "seconds": round(time.perf_counter() - t, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fox", default=str(FOX), help="fox dataset (its images/ alone are given to SfM)")
    ap.add_argument("--work", default=None, help="folder for the SfM dataset and runs (default: a temporary one)")
    ap.add_argument("--max-image-size", type=int, default=1600)
    ap.add_argument("--max-features", type=int, default=8192)
    ap.add_argument("--train-iterations", type=int, default=0, help="0: no training comparison")
    ap.add_argument("--resolution", type=int, default=270, help="training width (as the README's fox example)")
    ap.add_argument(
        "--init",
        default="random",
        choices=["random", "auto"],
        help="initialisation of both trainings (default random: fox has no point cloud, so only the poses differ)",
    )
    ap.add_argument("--name", default="sfm")
    args = ap.parse_args()

    from gsgroup.data.sfm import SfmOptions, compute_poses

    fox = Path(args.fox)
    keep = args.work is not None
    work = Path(args.work) if keep else Path(tempfile.mkdtemp(prefix="gsgroup_sfm_"))
    data = work / "data"
    load = os.getloadavg()[0]
    t = time.perf_counter()
    opts = SfmOptions(max_image_size=args.max_image_size, max_features=args.max_features)
    summary = compute_poses(str(fox / "images"), str(data), opts)
    total = time.perf_counter() - t
    n = summary["given"]
    pairs = n * (n - 1) // 2 if summary["matching"] == "exhaustive" else None
    result = {
        "machine": {**machine(), "load_average_1min_at_start": load},
        "dataset": str(fox / "images"),
        "options": summary["options"],
        "given": n,
        "registered": summary["registered"],
        "failed": summary["failed"],
        "points": summary["points"],
        "mean_reprojection_error_px": summary["mean_reprojection_error"],
        "models": summary["models"],
        "matching": summary["matching"],
        "cameras": summary["cameras"],
        "seconds": summary["seconds"],
        "seconds_total": round(total, 1),
        "matching_pairs": pairs,
        "pairs_per_second": round(pairs / summary["seconds"]["matching"], 2)
        if pairs and summary["seconds"]["matching"] > 1
        else None,
        "pose_error": pose_comparison(data, fox),
    }
    if args.train_iterations:
        result["training"] = {
            "iterations": args.train_iterations,
            "resolution": args.resolution,
            "init": args.init,
            "sfm_poses": train_and_eval(data, work / "run_sfm", args.train_iterations, args.resolution, args.init),
            "given_poses": train_and_eval(fox, work / "run_given", args.train_iterations, args.resolution, args.init),
        }
    path = save(args.name, result)
    rows = [{"stage": k, "seconds": v} for k, v in summary["seconds"].items()]
    print(table(rows, ["stage", "seconds"]))
    pe = result["pose_error"]
    print(
        f"registered {result['registered']}/{n}, {result['points']} points, reprojection "
        f"{result['mean_reprojection_error_px']:.3f} px; rotation error median {pe['rotation_deg_median']:.3f} deg "
        f"(max {pe['rotation_deg_max']:.3f}), centre error median {pe['center_pct_median']:.3f}% of the extent "
        f"(max {pe['center_pct_max']:.3f}%)"
    )
    if "training" in result:
        tr = result["training"]
        print(
            table(
                [{"poses": k, **tr[k]} for k in ("sfm_poses", "given_poses")],
                ["poses", "test_psnr", "test_ssim", "test_views", "train_psnr", "gaussians", "seconds"],
            )
        )
    print(f"wrote {path}" + ("" if keep else f" (SfM dataset in {work})"))


if __name__ == "__main__":
    main()
