"""Inputs and bookkeeping of ``gsgroup poses``: which photos can be decoded, where the output may go,
and the record of finished stages that lets a second run resume.

Layout of the output folder ``DATA`` (see ``gsgroup.data.sfm``)::

    DATA/images/          undistorted images (PINHOLE), written when everything else succeeded
    DATA/sparse/0/        cameras.bin, images.bin, points3D.bin of the undistorted model
    DATA/sfm/             work files: database.db (features, matches), model/ (the distorted model),
                          frames/ (frames sampled from a video), stages.json, summary.json
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from gsgroup.errors import InputError
from gsgroup.fileio import check_outside, write_json

PHOTO_EXTS = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp"}  # what both PIL and COLMAP decode
WORK_DIR = "sfm"
STAGES_FILE = "stages.json"
SUMMARY_FILE = "summary.json"
MIN_IMAGES = 3


def is_photo(path: Path) -> bool:
    """True for a file with a photo suffix (case-insensitive)."""
    return path.is_file() and path.suffix.lower() in PHOTO_EXTS


def decode_size(path: Path) -> tuple[int, int] | None:
    """(width, height) of an image that decodes completely, else None (corrupt, truncated, not an image)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()  # full decode: a truncated JPEG fails here, not only at its header
            return int(im.width), int(im.height)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError):
        return None


def list_photos(folder: Path) -> tuple[list[str], list[str], dict[str, tuple[int, int]]]:
    """The photos directly in ``folder``, by sorted name: (good names, undecodable names, size per good
    name). InputError when the folder has no photo at all."""
    if not folder.is_dir():
        raise InputError(f"{folder}: not found; give a folder of photos or a video file")
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    photos = [p for p in files if is_photo(p)]
    if not photos:
        what = f"{len(files)} files, none of them" if files else "it is empty, no"
        raise InputError(
            f"{folder}: no photos ({what} {'/'.join(sorted(PHOTO_EXTS))}); give a folder of photos or a video file"
        )
    good, bad, sizes = [], [], {}
    for p in photos:
        size = decode_size(p)
        if size is None:
            bad.append(p.name)
        else:
            good.append(p.name)
            sizes[p.name] = size
    return good, bad, sizes


def check_count(names: list[str], source: Path, bad: list[str]) -> None:
    """InputError when fewer than 3 usable images remain (structure-from-motion needs at least 3)."""
    if len(names) >= MIN_IMAGES:
        return
    skipped = f" ({len(bad)} could not be decoded: {', '.join(bad[:5])})" if bad else ""
    raise InputError(
        f"{source}: {len(names)} usable image(s){skipped}; structure-from-motion needs at least {MIN_IMAGES} "
        f"overlapping photos of the scene"
    )


def check_output(out: Path, source: Path, force: bool) -> None:
    """InputError when ``out`` overlaps the input or holds something that is not a ``poses`` output.
    With ``force``, a previous ``poses`` output in ``out`` is deleted (never any other folder)."""
    src_dir = source if source.is_dir() else source.parent
    if source.is_dir():
        check_outside(out, source, "the poses")
    if src_dir.resolve().is_relative_to(out.resolve()):
        raise InputError(
            f"{out}: contains the input {source}; poses writes {out}/images and {out}/sparse, so pick an --out "
            f"outside the photos' folder tree (e.g. a new folder beside it)"
        )
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder; pick another --out")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not (out / WORK_DIR / STAGES_FILE).is_file():
        raise InputError(f"{out}: exists and was not written by `gsgroup poses`; pick an empty or new --out")
    if force:
        for name in (WORK_DIR, "images", "sparse"):
            shutil.rmtree(out / name, ignore_errors=True)


class StageRecord:
    """``DATA/sfm/stages.json``: per finished stage, the settings it was made with. A stage is
    reused only when its settings (which include those of the stages before it) are unchanged."""

    def __init__(self, work: Path):
        self.path = work / STAGES_FILE
        try:
            self.stages = json.loads(self.path.read_text()).get("stages", {})
        except (OSError, ValueError, AttributeError):
            self.stages = {}

    def done(self, stage: str, settings: dict) -> bool:
        """True when ``stage`` finished with these ``settings``; InputError when it finished with others."""
        stored = self.stages.get(stage)
        if stored is None:
            return False
        if stored.get("settings") != settings:
            old, new = stored.get("settings", {}), settings
            changed = [
                f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)
            ]
            raise InputError(
                f"{self.path.parent.parent}: its {stage} stage was made with other settings "
                f"({'; '.join(changed)[:300]}); pass --force to start over or use another --out"
            )
        return True

    def result(self, stage: str) -> dict:
        """What ``stage`` recorded about its outcome."""
        return self.stages.get(stage, {}).get("result", {})

    def finish(self, stage: str, settings: dict, result: dict | None = None) -> None:
        """Record ``stage`` as finished with ``settings`` (written atomically)."""
        self.stages[stage] = {"settings": settings, "result": result or {}}
        write_json(self.path, {"stages": self.stages})


def file_key(path: Path) -> dict:
    """What identifies an input file for resuming: absolute path, size, modification time."""
    st = os.stat(path)
    return {"path": str(path.resolve()), "bytes": st.st_size, "mtime": int(st.st_mtime)}


def photos_without_poses(path: Path) -> Path | None:
    """What structure-from-motion should read for ``gsgroup run PATH``: ``path`` when it is a video or
    a folder of photos, ``path/images`` when only that holds photos; None when ``path`` has poses
    (``sparse/`` or ``transforms*.json``) or no photos."""
    from .video import is_video

    path = Path(path)
    if path.is_file():
        return path if is_video(path) else None
    if not path.is_dir() or (path / "sparse").is_dir() or any(path.glob("transforms*.json")):
        return None
    for folder in (path, path / "images"):
        if folder.is_dir() and any(is_photo(p) for p in folder.iterdir()):
            return folder
    return None
