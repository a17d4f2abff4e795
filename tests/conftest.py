"""Helpers shared by several test files (import them with ``from conftest import ...``).

Camera poses are built with ``gsgroup.geometry.look_at`` (OpenCV world-to-camera); the helpers
here only add the camera layouts and conventions that more than one test file needs.
"""

from __future__ import annotations

import math

import numpy as np

from gsgroup.geometry import look_at


def ring_eyes(n: int, radius: float = 4.0, z: float = 1.0) -> list[np.ndarray]:
    """``n`` camera positions [3] evenly spaced on a horizontal circle of ``radius`` at height
    ``z``, the first on the +x axis."""
    return [
        np.array([radius * math.cos(2 * math.pi * i / n), radius * math.sin(2 * math.pi * i / n), z]) for i in range(n)
    ]


def opengl_c2w(eye, target=(0.0, 0.0, 0.0), up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """NeRF/Blender (OpenGL) camera-to-world [4,4] of the camera ``look_at(eye, target, up)``:
    the camera looks down its -z axis with +y up in the image."""
    return np.linalg.inv(look_at(eye, target, up)) @ np.diag([1.0, -1.0, -1.0, 1.0])
