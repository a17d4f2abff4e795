"""Atomic output helpers: every file is written to a temporary name, then renamed.

A crash or Ctrl-C therefore never leaves a half-written output behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give outputs the usual permissions
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def check_outside(out: str | os.PathLike, data: str | os.PathLike, what: str = "the output") -> None:
    """InputError when folder ``out`` lies inside dataset folder ``data`` (gsgroup never writes into DATA)."""
    from .errors import InputError

    try:
        inside = Path(out).resolve().is_relative_to(Path(data).resolve())
    except OSError:
        return
    if inside:
        raise InputError(f"{out}: is inside the dataset folder {data}; write {what} to a folder outside it")


def write_json(path: str | os.PathLike, obj) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")


def write_image(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write an image atomically.

    ``image``: [H,W,3] or [H,W] array; float in [0,1] (stored as 8-bit), uint8, or uint16 (PNG only).
    """
    import cv2

    image = np.asarray(image)
    if image.dtype.kind == "f":
        image = (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if image.ndim == 3 and image.shape[2] == 3:
        image = image[:, :, ::-1]  # RGB -> BGR for OpenCV
    path = Path(path)
    ok, buf = cv2.imencode(path.suffix or ".png", np.ascontiguousarray(image))
    if not ok:
        raise OSError(f"could not encode image for {path}")
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.tobytes())
