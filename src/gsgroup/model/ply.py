"""PLY I/O in the Inria 3DGS layout, with Gaussian Grouping's ``obj_dc_*`` identity fields.

Vertex properties, all float32, in this order:
x y z nx ny nz f_dc_0..2 f_rest_0..(3(K-1)-1) opacity scale_0..2 rot_0..3 obj_dc_0..(D-1)
where f_rest is channel-major (index = c*(K-1) + k), scales are log and opacity is a logit,
exactly as the reference 3DGS code writes them.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from ..fileio import atomic_path
from .gaussians import Gaussians

_PLY_TYPES = {
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
    "uchar": "u1", "uint8": "u1", "char": "i1", "int8": "i1",
    "ushort": "u2", "uint16": "u2", "short": "i2", "int16": "i2",
    "uint": "u4", "uint32": "u4", "int": "i4", "int32": "i4",
}


def ply_property_names(sh_degree: int, id_dim: int) -> list[str]:
    """The vertex property names written for a given SH degree and identity size."""
    k = (sh_degree + 1) ** 2
    names = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    names += [f"f_rest_{i}" for i in range(3 * (k - 1))]
    names += ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    names += [f"obj_dc_{i}" for i in range(id_dim)]
    return names


def save_ply(path: str | os.PathLike, gaussians: Gaussians, plain: bool = False) -> None:
    """Write ``gaussians`` as a binary little-endian PLY, atomically.

    ``plain=True`` leaves out the obj_dc_* identity fields, for viewers that reject extra fields.
    """
    g = gaussians.detach()
    n = len(g)
    id_dim = 0 if plain else g.id_dim
    names = ply_property_names(g.sh_degree, id_dim)
    columns = [
        g.means,
        torch.zeros(n, 3),
        g.sh0.reshape(n, 3),
        g.shN.transpose(1, 2).reshape(n, -1),
        g.opacities.reshape(n, 1),
        g.scales,
        g.quats,
    ]
    if id_dim:
        columns.append(g.ids)
    data = torch.cat([c.float() for c in columns], dim=1).numpy()
    assert data.shape[1] == len(names)
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {n}"]
    header += [f"property float {name}" for name in names]
    header.append("end_header")
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(("\n".join(header) + "\n").encode("ascii"))
            fh.write(np.ascontiguousarray(data, dtype="<f4").tobytes())


def _read_vertices(path: Path) -> np.ndarray:
    """Read the vertex element of a PLY as a structured array."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: file not found; pass the path of a point_cloud.ply") from None
    end = raw.find(b"end_header")
    if not raw.startswith(b"ply") or end < 0:
        raise InputError(f"{path}: not a PLY file (no 'ply' magic or no end_header)")
    body_start = raw.index(b"\n", end) + 1
    lines = raw[:end].decode("ascii", errors="replace").splitlines()
    fmt, count, props, element = None, 0, [], None
    for line in lines:
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "format":
            fmt = parts[1]
        elif parts[0] == "element":
            element = parts[1]
            if element == "vertex":
                count = int(parts[2])
        elif parts[0] == "property" and element == "vertex":
            if parts[1] == "list" or parts[1] not in _PLY_TYPES:
                raise InputError(f"{path}: unsupported vertex property '{line.strip()}'")
            props.append((parts[2], "<" + _PLY_TYPES[parts[1]]))
    dtype = np.dtype(props)
    if fmt == "binary_little_endian":
        need = count * dtype.itemsize
        if len(raw) - body_start < need:
            raise InputError(f"{path}: truncated PLY ({len(raw) - body_start} of {need} vertex bytes); re-export it")
        return np.frombuffer(raw, dtype=dtype, count=count, offset=body_start)
    if fmt == "ascii":
        table = np.loadtxt(raw[body_start:].decode().splitlines()[:count], ndmin=2)
        out = np.zeros(count, dtype=dtype)
        for i, (name, _) in enumerate(props):
            out[name] = table[:, i]
        return out
    raise InputError(f"{path}: unsupported PLY format '{fmt}'; use binary_little_endian or ascii")


def load_ply(path: str | os.PathLike) -> Gaussians:
    """Read a 3DGS PLY (with or without obj_dc_*) into Gaussians. Values reload bit-exact."""
    path = Path(path)
    v = _read_vertices(path)
    names = set(v.dtype.names or ())
    required = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity"] + [f"scale_{i}" for i in range(3)]
    required += [f"rot_{i}" for i in range(4)]
    missing = [r for r in required if r not in names]
    if missing:
        raise InputError(f"{path}: not a 3DGS PLY, missing properties {missing[:4]}")
    n = len(v)
    if n == 0:
        raise InputError(f"{path}: the PLY holds zero Gaussians; train a scene first")

    def cols(prefix: str) -> np.ndarray:
        found = sorted((int(k[len(prefix):]), k) for k in names if k.startswith(prefix) and k[len(prefix):].isdigit())
        if not found:
            return np.zeros((n, 0), dtype=np.float32)
        return np.stack([v[k].astype(np.float32) for _, k in found], axis=1)

    rest = cols("f_rest_")
    k_rest = rest.shape[1] // 3
    degree = int(round(math.sqrt(k_rest + 1))) - 1
    if 3 * ((degree + 1) ** 2 - 1) != rest.shape[1]:
        raise InputError(f"{path}: {rest.shape[1]} f_rest fields is not a valid SH layout")
    g = Gaussians(
        means=torch.from_numpy(np.stack([v["x"], v["y"], v["z"]], 1).astype(np.float32)),
        quats=torch.from_numpy(cols("rot_")),
        scales=torch.from_numpy(cols("scale_")),
        opacities=torch.from_numpy(v["opacity"].astype(np.float32).copy()),
        sh0=torch.from_numpy(cols("f_dc_")).reshape(n, 1, 3),
        shN=torch.from_numpy(rest).reshape(n, 3, k_rest).transpose(1, 2).contiguous(),
        ids=torch.from_numpy(cols("obj_dc_")),
    )
    for name, t in g.to_dict().items():
        if not torch.isfinite(t).all():
            raise InputError(f"{path}: non-finite values in '{name}'; the file is corrupt or training diverged")
    return g
