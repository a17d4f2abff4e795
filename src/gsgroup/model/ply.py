"""PLY I/O in the Inria 3DGS layout, with Gaussian Grouping's ``obj_dc_*`` identity fields.

Vertex properties, all float32, in this order:
x y z nx ny nz f_dc_0..2 f_rest_0..(3(K-1)-1) opacity scale_0..2 rot_0..3 obj_dc_0..(D-1)
where f_rest is channel-major (index = c*(K-1) + k), scales are log and opacity is a logit,
exactly as the reference 3DGS code writes them (binary little endian).

Parsing and serialisation are done by the ``plyfile`` package (the reader the reference code
uses); this module maps its errors to one-line :class:`InputError` messages.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
from numpy.lib import recfunctions
from plyfile import PlyData, PlyElement, PlyElementParseError, PlyHeaderParseError, PlyListProperty

from ..errors import InputError
from ..fileio import atomic_path
from .gaussians import Gaussians


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
        g.shN.transpose(1, 2).reshape(n, 3 * g.shN.shape[1]),
        g.opacities.reshape(n, 1),
        g.scales,
        g.quats,
    ]
    if id_dim:
        columns.append(g.ids)
    data = torch.cat([c.float() for c in columns], dim=1).numpy()
    assert data.shape[1] == len(names)
    vertices = recfunctions.unstructured_to_structured(data, np.dtype([(name, "<f4") for name in names]))
    ply = PlyData([PlyElement.describe(vertices, "vertex")], text=False, byte_order="<")
    with atomic_path(path) as tmp:
        ply.write(tmp)


def read_ply_vertices(path: str | os.PathLike, fix: str) -> np.ndarray:
    """The vertex element of a PLY file (ascii or binary, either byte order) as a structured array [P].

    Every problem is a one-line InputError naming the file and ending with ``fix`` (what to do)."""
    path = Path(path)
    try:
        ply = PlyData.read(path)
    except FileNotFoundError:
        raise InputError(f"{path}: file not found; {fix}") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a folder; {fix}") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read the file ({e.strerror}); check its permissions") from None
    except (PlyHeaderParseError, UnicodeDecodeError) as e:
        why = "non-ASCII bytes" if isinstance(e, UnicodeDecodeError) else e
        raise InputError(f"{path}: not a PLY file (bad header: {why}); {fix}") from None
    except PlyElementParseError as e:
        if "end-of-file" in e.message:
            total = e.element.count if e.element is not None else "?"
            raise InputError(f"{path}: truncated PLY (data ends at vertex {e.row} of {total}); {fix}") from None
        raise InputError(f"{path}: malformed PLY data ({e}); {fix}") from None
    if "vertex" not in ply:
        raise InputError(f"{path}: the PLY has no vertex element; {fix}")
    element = ply["vertex"]
    for prop in element.properties:
        if isinstance(prop, PlyListProperty):
            raise InputError(f"{path}: vertex property '{prop.name}' is a list, which is not supported; {fix}")
    return element.data


def load_ply(path: str | os.PathLike) -> Gaussians:
    """Read a 3DGS PLY (with or without obj_dc_*) into Gaussians. Values reload bit-exact."""
    path = Path(path)
    v = read_ply_vertices(path, "pass a 3DGS point_cloud.ply (or the run folder holding it)")
    names = set(v.dtype.names or ())
    required = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity"] + [f"scale_{i}" for i in range(3)]
    required += [f"rot_{i}" for i in range(4)]
    missing = [r for r in required if r not in names]
    if missing:
        raise InputError(
            f"{path}: not a 3DGS PLY, missing properties {missing[:4]}; "
            f"pass a point_cloud.ply written by 3DGS or gsgroup"
        )
    n = len(v)
    if n == 0:
        raise InputError(f"{path}: the PLY holds zero Gaussians; train a scene first")

    def cols(prefix: str) -> np.ndarray:
        found = sorted((int(k[len(prefix) :]), k) for k in names if k.startswith(prefix) and k[len(prefix) :].isdigit())
        if not found:
            return np.zeros((n, 0), dtype=np.float32)
        return np.stack([v[k].astype(np.float32) for _, k in found], axis=1)

    rest = cols("f_rest_")
    k_rest = rest.shape[1] // 3
    degree = int(round(math.sqrt(k_rest + 1))) - 1
    if 3 * ((degree + 1) ** 2 - 1) != rest.shape[1]:
        raise InputError(
            f"{path}: {rest.shape[1]} f_rest fields is not a valid SH layout (3*((d+1)^2-1) for degree d); "
            f"re-export the PLY"
        )
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
