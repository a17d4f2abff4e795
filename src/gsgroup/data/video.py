"""Video input for structure-from-motion: sample the sharpest frames, spread evenly in time.

Any container and codec OpenCV reads works (``.mp4``, ``.mov``, ``.avi``, ``.mkv``, ...). The video
is decoded twice: once to score every frame's sharpness (variance of the Laplacian of a small grey
copy), once to write the chosen frames. Memory stays at one frame whatever the video's length.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from gsgroup.errors import InputError

VIDEO_EXTS = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".3gp", ".flv", ".mts"}
SCORE_WIDTH = 480  # sharpness is measured on a copy this wide (cheap; ranks frames the same way)
FRAME_PATTERN = "frame_{:06d}.jpg"  # zero-padded source frame index: sorted names are in time order
JPEG_QUALITY = 95


def is_video(path: str | os.PathLike) -> bool:
    """True for a file whose suffix is a common video container (case-insensitive)."""
    path = Path(path)
    return path.is_file() and path.suffix.lower() in VIDEO_EXTS


def sharpness(image: np.ndarray) -> float:
    """Variance of the Laplacian of ``image`` ([H,W] grey or [H,W,3] BGR uint8): higher = sharper."""
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    if grey.shape[1] > SCORE_WIDTH:
        h = max(1, round(grey.shape[0] * SCORE_WIDTH / grey.shape[1]))
        grey = cv2.resize(grey, (SCORE_WIDTH, h), interpolation=cv2.INTER_AREA)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def _open(video: Path) -> cv2.VideoCapture:
    cap = cv2.VideoCapture(str(video))
    if not cap.isOpened():
        cap.release()
        raise InputError(f"{video}: cannot open the video (unknown format or damaged file); convert it to .mp4 (H.264)")
    return cap


def score_frames(video: str | os.PathLike, progress: bool = False) -> np.ndarray:
    """Sharpness of every decodable frame of ``video``, in order: float64 [F]. InputError when the
    file cannot be opened or holds no decodable frame."""
    from tqdm import tqdm

    video = Path(video)
    cap = _open(video)
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    scores = []
    with tqdm(total=total, desc="frames: sharpness", unit="frame", disable=not progress) as bar:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            scores.append(sharpness(frame))
            bar.update(1)
    cap.release()
    if not scores:
        raise InputError(f"{video}: no frame could be decoded; convert the video to .mp4 (H.264) or extract photos")
    return np.asarray(scores, np.float64)


def pick_frames(scores: np.ndarray, n: int) -> list[int]:
    """Indices of ``n`` frames: the sharpest of each of ``n`` equal, consecutive time segments
    (all frames when the video has at most ``n``). ``scores``: [F] sharpness per frame."""
    count = len(scores)
    if count <= n:
        return list(range(count))
    bounds = np.linspace(0, count, n + 1).round().astype(int)
    return [int(a + np.argmax(scores[a:b])) for a, b in zip(bounds[:-1], bounds[1:])]


def sample_frames(video: str | os.PathLike, n: int, out_dir: str | os.PathLike, progress: bool = False) -> list[str]:
    """Write the ``n`` sharpest frames of ``video`` (spread evenly in time, see ``pick_frames``) to
    ``out_dir`` as ``frame_<index>.jpg``; returns their file names in time order."""
    from tqdm import tqdm

    from gsgroup.fileio import write_image

    if n < 1:
        raise InputError(f"frames {n}: must be at least 1", "frames")
    video, out_dir = Path(video), Path(out_dir)
    chosen = pick_frames(score_frames(video, progress), n)
    wanted = set(chosen)
    names: list[str] = []
    cap = _open(video)
    index = 0
    with tqdm(total=len(chosen), desc="frames: write", unit="frame", disable=not progress) as bar:
        while len(names) < len(chosen) and cap.grab():
            if index in wanted:
                ok, frame = cap.retrieve()
                if not ok:
                    raise InputError(f"{video}: frame {index} decoded once but not twice; re-encode the video")
                name = FRAME_PATTERN.format(index)
                write_image(out_dir / name, frame[:, :, ::-1])  # write_image takes RGB
                names.append(name)
                bar.update(1)
            index += 1
    cap.release()
    if len(names) != len(chosen):
        raise InputError(f"{video}: the second decoding pass ended early; re-encode the video")
    return names
