"""Gaussian parameters, SH, initialisation and PLY I/O."""

import math

import numpy as np
import pytest
import torch

from gsgroup.errors import InputError
from gsgroup.model import Gaussians, from_points, load_ply, save_ply
from gsgroup.model.ply import ply_property_names
from gsgroup.model.sh import C0, eval_sh, rgb_to_sh, sh_basis, sh_to_rgb


def random_gaussians(n=50, degree=3, id_dim=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    k = (degree + 1) ** 2
    return Gaussians(
        means=torch.randn(n, 3, generator=g),
        quats=torch.randn(n, 4, generator=g),
        scales=torch.randn(n, 3, generator=g) - 3,
        opacities=torch.randn(n, generator=g),
        sh0=torch.randn(n, 1, 3, generator=g),
        shN=torch.randn(n, k - 1, 3, generator=g),
        ids=torch.randn(n, id_dim, generator=g),
    )


@pytest.mark.parametrize("degree,id_dim", [(3, 16), (0, 16), (1, 0), (2, 8)])
def test_ply_round_trip_is_bit_exact(tmp_path, degree, id_dim):
    g = random_gaussians(degree=degree, id_dim=id_dim)
    save_ply(tmp_path / "a.ply", g)
    h = load_ply(tmp_path / "a.ply")
    for name, t in g.to_dict().items():
        u = getattr(h, name)
        assert u.shape == t.shape, name
        assert torch.equal(u, t), name
    assert h.sh_degree == degree


def test_ply_header_is_inria_layout(tmp_path):
    g = random_gaussians(n=3)
    save_ply(tmp_path / "a.ply", g)
    header = (tmp_path / "a.ply").read_bytes().split(b"end_header")[0].decode().splitlines()
    props = [line.split()[2] for line in header if line.startswith("property")]
    expected = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    expected += [f"f_rest_{i}" for i in range(45)] + ["opacity", "scale_0", "scale_1", "scale_2"]
    expected += ["rot_0", "rot_1", "rot_2", "rot_3"] + [f"obj_dc_{i}" for i in range(16)]
    assert props == expected
    assert header[1] == "format binary_little_endian 1.0"
    assert "element vertex 3" in header
    # f_rest is channel-major: f_rest_{c*15+k} = shN[:, k, c]
    data = np.frombuffer((tmp_path / "a.ply").read_bytes().split(b"end_header\n")[1], dtype="<f4").reshape(3, -1)
    assert data[1, 9 + 1 * 15 + 4] == g.shN[1, 4, 1].item()


def test_plain_export_drops_ids(tmp_path):
    g = random_gaussians(n=4)
    save_ply(tmp_path / "p.ply", g, plain=True)
    assert b"obj_dc" not in (tmp_path / "p.ply").read_bytes()[:4000]
    assert load_ply(tmp_path / "p.ply").id_dim == 0
    assert ply_property_names(3, 0)[-1] == "rot_3"


def test_bad_ply_gives_clear_error(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_ply(tmp_path / "missing.ply")
    (tmp_path / "bad.ply").write_bytes(b"hello")
    with pytest.raises(InputError, match="bad.ply"):
        load_ply(tmp_path / "bad.ply")
    g = random_gaussians(n=10)
    save_ply(tmp_path / "t.ply", g)
    raw = (tmp_path / "t.ply").read_bytes()
    (tmp_path / "t.ply").write_bytes(raw[:-100])
    with pytest.raises(InputError, match="truncated"):
        load_ply(tmp_path / "t.ply")


def _inria_bytes(g, id_dim):
    """A PLY built by hand in the Inria layout, as the reference 3DGS code (and gsgroup's old writer) wrote it."""
    n = len(g)
    names = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    names += [f"f_rest_{i}" for i in range(3 * g.shN.shape[1])] + ["opacity", "scale_0", "scale_1", "scale_2"]
    names += ["rot_0", "rot_1", "rot_2", "rot_3"] + [f"obj_dc_{i}" for i in range(id_dim)]
    head = ["ply", "format binary_little_endian 1.0", f"element vertex {n}"] + [f"property float {p}" for p in names]
    rows = np.concatenate(
        [
            g.means.numpy(),
            np.zeros((n, 3), np.float32),
            g.sh0.reshape(n, 3).numpy(),
            g.shN.transpose(1, 2).reshape(n, -1).numpy(),
            g.opacities.reshape(n, 1).numpy(),
            g.scales.numpy(),
            g.quats.numpy(),
            g.ids[:, :id_dim].numpy(),
        ],
        axis=1,
    )
    return ("\n".join(head + ["end_header"]) + "\n").encode() + rows.astype("<f4").tobytes(), names, rows


@pytest.mark.parametrize("degree,id_dim,plain", [(3, 16, False), (3, 16, True), (1, 0, False)])
def test_ply_is_byte_identical_to_inria_layout_and_reads_with_plyfile(tmp_path, degree, id_dim, plain):
    plyfile = pytest.importorskip("plyfile")
    g = random_gaussians(n=20, degree=degree, id_dim=id_dim)
    expected, names, rows = _inria_bytes(g, 0 if plain else id_dim)
    save_ply(tmp_path / "a.ply", g, plain=plain)
    assert (tmp_path / "a.ply").read_bytes() == expected
    # independent read-back with plyfile: one float32 vertex element, Inria property order and values
    ply = plyfile.PlyData.read(str(tmp_path / "a.ply"))
    assert not ply.text and ply.byte_order == "<"
    assert [e.name for e in ply.elements] == ["vertex"] and ply["vertex"].count == 20
    assert [p.name for p in ply["vertex"].properties] == names
    assert {p.val_dtype for p in ply["vertex"].properties} == {"f4"}
    for i, name in enumerate(names):
        np.testing.assert_array_equal(ply["vertex"][name], rows[:, i])


def test_hand_written_and_other_encodings_load(tmp_path):
    """Files from the old hand-written writer (= the reference layout) load bit-exact; so do ASCII and
    big-endian PLYs with the same properties, and files with the properties in another order."""
    plyfile = pytest.importorskip("plyfile")
    g = random_gaussians(n=9, degree=2, id_dim=8)
    raw, names, rows = _inria_bytes(g, 8)
    (tmp_path / "old.ply").write_bytes(raw)
    rec = np.zeros(9, [(n, "f4") for n in names])
    for i, n in enumerate(names):
        rec[n] = rows[:, i]
    shuffled = np.zeros(9, [(n, "f4") for n in reversed(names)])
    for n in names:
        shuffled[n] = rec[n]
    for name, data in [
        ("ascii", plyfile.PlyData([plyfile.PlyElement.describe(rec, "vertex")], text=True)),
        ("big", plyfile.PlyData([plyfile.PlyElement.describe(rec, "vertex")], byte_order=">")),
        ("order", plyfile.PlyData([plyfile.PlyElement.describe(shuffled, "vertex")], byte_order="<")),
    ]:
        data.write(str(tmp_path / f"{name}.ply"))
    for name in ("old", "ascii", "big", "order"):
        h = load_ply(tmp_path / f"{name}.ply")
        for key, t in g.to_dict().items():
            assert torch.equal(getattr(h, key), t), (name, key)


def test_malformed_ply_errors_are_one_line_and_name_the_file(tmp_path):
    cases = {
        "folder.ply": None,
        "empty.ply": b"",
        "latin.ply": b"ply\nformat binary_little_endian 1.0\ncomment caf\xe9\nelement vertex 1\nproperty float x\nend_header\n0000",
        "fmt.ply": b"ply\nformat binary_middle_endian 1.0\nelement vertex 1\nproperty float x\nend_header\n0000",
        "nohead.ply": b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\n",
        "noverts.ply": b"ply\nformat ascii 1.0\nelement face 0\nproperty list uchar int vertex_indices\nend_header\n",
        "list.ply": b"ply\nformat ascii 1.0\nelement vertex 1\nproperty list uchar float x\nend_header\n1 0.5\n",
        "props.ply": b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nend_header\n1\n",
        "text.ply": b"ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\nend_header\n1\nabc\n",
        "short.ply": b"ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nend_header\n1\n2\n",
    }
    for name, raw in cases.items():
        if raw is None:
            (tmp_path / name).mkdir()
        else:
            (tmp_path / name).write_bytes(raw)
        with pytest.raises(InputError) as e:
            load_ply(tmp_path / name)
        msg = str(e.value)
        assert name in msg and "\n" not in msg and ";" in msg, msg  # names the file, then says what to do
    assert "truncated" in str(pytest.raises(InputError, load_ply, tmp_path / "short.ply").value)
    assert "missing properties" in str(pytest.raises(InputError, load_ply, tmp_path / "props.ply").value)


def test_sh_basis_is_orthonormal():
    # Independent check of the SH constants: the 16 real basis functions are orthonormal on the sphere.
    n = 200_000
    g = torch.Generator().manual_seed(1)
    dirs = torch.randn(n, 3, generator=g, dtype=torch.float64)
    dirs = dirs / dirs.norm(dim=1, keepdim=True)
    basis = []
    for j in range(16):
        coeffs = torch.zeros(n, 16, 3, dtype=torch.float64)
        coeffs[:, j, 0] = 1.0
        # eval_sh clamps (result + 0.5) at 0; offset by a large DC term to stay positive, then remove it.
        coeffs[:, 0, 0] += 10.0 / C0
        val = eval_sh(3, coeffs, dirs)[:, 0] - 0.5 - 10.0
        basis.append(val)
    b = torch.stack(basis, 1)
    gram = 4 * math.pi * (b.T @ b) / n
    assert torch.allclose(gram, torch.eye(16, dtype=torch.float64), atol=0.03)


def test_rgb_sh_round_trip():
    c = torch.rand(10, 3)
    assert torch.allclose(sh_to_rgb(rgb_to_sh(c)), c, atol=1e-6)
    coeffs = torch.zeros(10, 1, 3)
    coeffs[:, 0] = rgb_to_sh(c)
    assert torch.allclose(eval_sh(0, coeffs, torch.randn(10, 3)), c, atol=1e-6)


def test_init_from_points_uses_knn_scale():
    # A regular grid with spacing 0.1: the 3 nearest neighbours of an interior point are all at 0.1.
    ax = np.arange(6) * 0.1
    pts = np.stack(np.meshgrid(ax, ax, ax, indexing="ij"), -1).reshape(-1, 3)
    g = from_points(pts, np.full_like(pts, 0.5), sh_degree=3, id_dim=16)
    assert len(g) == 216 and g.sh_degree == 3 and g.id_dim == 16
    assert torch.allclose(torch.exp(g.scales), torch.full((216, 3), 0.1), atol=1e-5)
    assert torch.allclose(torch.sigmoid(g.opacities), torch.full((216,), 0.1), atol=1e-6)
    assert torch.allclose(sh_to_rgb(g.sh0), torch.full((216, 1, 3), 0.5), atol=1e-6)


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_sh_basis_matches_eval_sh(degree):
    gen = torch.Generator().manual_seed(0)
    k = (degree + 1) ** 2
    c = torch.randn(200, k, 3, generator=gen, dtype=torch.float64) * 0.2
    d = torch.nn.functional.normalize(torch.randn(200, 3, generator=gen, dtype=torch.float64), dim=1)
    mine = torch.clamp_min(torch.einsum("nk,nkc->nc", sh_basis(degree, d), c) + 0.5, 0)
    assert torch.allclose(eval_sh(degree, c, d), mine, atol=1e-12)
