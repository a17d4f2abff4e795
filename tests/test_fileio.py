"""Atomic writes leave either the old file or the complete new one, with normal permissions."""

import os
import stat

import numpy as np
import pytest

from gsgroup.fileio import atomic_path, write_image, write_json


def test_atomic_write_keeps_old_file_on_error(tmp_path):
    target = tmp_path / "out.json"
    write_json(target, {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert target.read_text().strip().startswith("{")
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_outputs_have_umask_permissions(tmp_path):
    write_image(tmp_path / "a.png", np.zeros((4, 5, 3), np.float32))
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "a.png").stat().st_mode) == 0o666 & ~umask
