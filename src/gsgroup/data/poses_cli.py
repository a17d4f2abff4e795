"""CLI wiring of ``gsgroup poses PHOTOS_OR_VIDEO --out DATA`` (structure-from-motion, gsgroup.data.sfm)."""

from __future__ import annotations

import argparse
import json

from ..options import add_options, from_options
from .sfm import EXHAUSTIVE_MAX, SfmOptions

DESCRIPTION = f"""\
Camera poses from a folder of photos or a video, with pycolmap on the CPU (no COLMAP binary):
SIFT features, matching, incremental mapping with bundle adjustment, undistortion to PINHOLE.
Writes a COLMAP dataset that `gsgroup train DATA`, `gsgroup run DATA` and 3DGS-based code read:
  DATA/images/         undistorted images
  DATA/sparse/0/       cameras.bin, images.bin, points3D.bin
  DATA/sfm/            work files (database.db, the distorted model, video frames, summary.json)

Matching: photos are matched exhaustively (every pair) up to --exhaustive-max ({EXHAUSTIVE_MAX}) images,
sequentially (each image with its next --overlap images, in file-name order) above that; video
frames always sequentially. No loop detection or vocabulary tree (those need a downloaded vocabulary).
A video (.mp4, .mov, anything OpenCV reads) is first sampled to --frames sharp frames.
The input is only read. A second run resumes after the last finished stage; --force starts over.

  gsgroup poses photos/ --out data/mine && gsgroup run data/mine --out runs/mine --eval
  gsgroup poses clip.mp4 --out data/clip --frames 120
"""


def print_summary(summary: dict) -> None:
    """The human-readable end of ``gsgroup poses``: counts, error, failures, time per stage."""
    print(
        f"registered {summary['registered']} of {summary['given']} images "
        f"({summary['matching']} matching), {summary['points']} points, "
        f"mean reprojection error {summary['mean_reprojection_error']:.3f} px"
    )
    if summary["failed"]:
        print(f"not registered: {', '.join(summary['failed'])}")
    if summary["skipped"]:
        print(f"skipped (cannot be decoded): {', '.join(summary['skipped'])}")
    if len(summary["models"]) > 1:
        print(f"models found (registered images): {summary['models']}; kept the largest")
    for cam in summary["cameras"]:
        prior = "EXIF focal length" if cam.get("focal_from_exif") else "no EXIF focal length"
        params = ", ".join(f"{p:.4g}" for p in cam["params"])
        print(f"camera {cam['model']} {cam['width']}x{cam['height']} ({prior}): {params}")
    reused = set(summary.get("reused", []))
    times = [f"{k} " + ("reused" if k in reused else f"{v:.1f}") for k, v in summary["seconds"].items()]
    print("seconds: " + ", ".join(times))


def cmd_poses(args) -> int:
    """Handler of ``gsgroup poses``."""
    from .sfm import compute_poses

    summary = compute_poses(args.source, args.out, from_options(SfmOptions, args, progress=not args.quiet))
    print_summary(summary)
    print(json.dumps({k: summary[k] for k in ("given", "registered", "points", "mean_reprojection_error")}))
    print(f"wrote {args.out}/images and {args.out}/sparse/0; next: gsgroup run {args.out} --out RUN --eval")
    return 0


def add_poses_command(subparsers) -> None:
    """Register ``gsgroup poses`` on the top-level subparsers."""
    p = subparsers.add_parser(
        "poses",
        help="camera poses from photos or a video (structure-from-motion) -> a COLMAP dataset",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("source", help="a folder of photos (.jpg, .png, ...) or a video file")
    p.add_argument("--out", required=True, help="dataset folder to write (outside the photos' folder)")
    add_options(p, SfmOptions)
    p.add_argument(
        "--single-camera",
        dest="per_image_camera",
        action="store_false",
        help="one camera shared by all images (the default: photos from one device, video frames)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_poses)
