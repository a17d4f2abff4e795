"""gsgroup.geometry against independent references: scipy rotations, analytic matrices, round trips,
batched shapes, numpy/torch agreement and the documented conventions."""

import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from gsgroup.geometry import camera_center, intrinsics_matrix, look_at, quat_multiply, quat_to_rotmat, rotmat_to_quat


def wxyz(rot: Rotation) -> np.ndarray:
    """scipy's scalar-last quaternions -> (w, x, y, z)."""
    return np.roll(rot.as_quat(), 1, axis=-1)


# ----------------------------------------------------------------------------- quaternion -> matrix


def test_quat_to_rotmat_matches_scipy_numpy_and_torch():
    rot = Rotation.random(64, random_state=0)
    q = wxyz(rot) * np.random.default_rng(0).uniform(0.2, 5.0, (64, 1))  # not unit: normalised inside
    R = quat_to_rotmat(q)
    assert isinstance(R, np.ndarray) and R.dtype == np.float64 and R.shape == (64, 3, 3)
    np.testing.assert_allclose(R, rot.as_matrix(), atol=1e-12)
    Rt = quat_to_rotmat(torch.from_numpy(q).float())
    assert Rt.dtype == torch.float32 and Rt.shape == (64, 3, 3)
    np.testing.assert_allclose(Rt.numpy(), rot.as_matrix(), atol=1e-6)


def test_quat_to_rotmat_analytic_axis_angle():
    a = 0.7
    q = torch.tensor([[math.cos(a / 2), 0.0, 0.0, math.sin(a / 2)]], dtype=torch.float64) * 3.0  # about z
    want = [[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]]
    np.testing.assert_allclose(quat_to_rotmat(q)[0].numpy(), want, atol=1e-15)
    np.testing.assert_allclose(quat_to_rotmat([0.0, 1.0, 0.0, 0.0]), np.diag([1.0, -1.0, -1.0]), atol=0)  # 180 about x
    np.testing.assert_array_equal(quat_to_rotmat(np.zeros(4)), np.eye(3))  # zero quaternion: no NaNs


def test_quat_to_rotmat_batch_shapes_and_gradients():
    q = wxyz(Rotation.random(24, random_state=1)).reshape(2, 3, 4, 4)
    R = quat_to_rotmat(q)
    assert R.shape == (2, 3, 4, 3, 3)
    np.testing.assert_allclose(R.reshape(-1, 3, 3), quat_to_rotmat(q.reshape(-1, 4)), atol=0)
    assert quat_to_rotmat(q[0, 0, 0]).shape == (3, 3)
    qt = torch.from_numpy(q[0, 0]).requires_grad_()
    assert torch.autograd.gradcheck(quat_to_rotmat, (qt,))


# ----------------------------------------------------------------------------- matrix -> quaternion


def test_rotmat_to_quat_matches_scipy_with_w_nonnegative():
    rot = Rotation.random(200, random_state=2)
    q = rotmat_to_quat(rot.as_matrix())
    assert q.shape == (200, 4) and np.all(q[:, 0] >= 0)
    ref = wxyz(rot)
    np.testing.assert_allclose(q, ref * np.sign(ref[:, :1]), atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1.0, atol=1e-15)


@pytest.mark.parametrize("axis", [(1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 0), (1, -2, 3)])
@pytest.mark.parametrize("angle", [0.0, 1e-9, 0.5, math.pi / 2, math.pi - 1e-9, math.pi])
def test_rotmat_to_quat_round_trip_at_every_branch(axis, angle):
    """Small and near-180-degree angles exercise each of Shepperd's four cases."""
    rot = Rotation.from_rotvec(np.asarray(axis, float) / np.linalg.norm(axis) * angle)
    q = rotmat_to_quat(rot.as_matrix())
    assert q[0] >= 0 and abs(np.linalg.norm(q) - 1) < 1e-15
    np.testing.assert_allclose(quat_to_rotmat(q), rot.as_matrix(), atol=1e-14)
    ref = wxyz(rot)
    assert min(np.abs(q - ref).max(), np.abs(q + ref).max()) < 1e-12  # the same quaternion up to sign


def test_rotmat_to_quat_sign_convention_flips_negative_w():
    # a rotation by 350 degrees about z: scipy gives w = cos(175 deg) < 0 for rotvec input; ours has w > 0
    rot = Rotation.from_rotvec([0, 0, math.radians(350)])
    assert wxyz(rot)[0] < 0
    q = rotmat_to_quat(rot.as_matrix())
    np.testing.assert_allclose(q, [math.cos(math.radians(5)), 0, 0, -math.sin(math.radians(5))], atol=1e-15)
    np.testing.assert_allclose(rotmat_to_quat(np.eye(3)), [1, 0, 0, 0], atol=0)


def test_rotmat_to_quat_torch_and_batches():
    Rm = Rotation.random(12, random_state=3).as_matrix()
    qn = rotmat_to_quat(Rm.reshape(3, 4, 3, 3))
    assert qn.shape == (3, 4, 4)
    qt = rotmat_to_quat(torch.from_numpy(Rm))
    assert isinstance(qt, torch.Tensor) and qt.dtype == torch.float64
    np.testing.assert_allclose(qt.numpy(), qn.reshape(12, 4), atol=1e-15)
    # round trip quaternion -> matrix -> quaternion
    q = wxyz(Rotation.random(50, random_state=4))
    q *= np.sign(q[:, :1])
    np.testing.assert_allclose(rotmat_to_quat(quat_to_rotmat(q)), q, atol=1e-12)


# ----------------------------------------------------------------------------- product


def test_quat_multiply_composes_rotations():
    a, b = Rotation.random(30, random_state=5), Rotation.random(30, random_state=6)
    ab = quat_multiply(wxyz(a), wxyz(b))
    np.testing.assert_allclose(quat_to_rotmat(ab), (a * b).as_matrix(), atol=1e-12)  # R(a*b) = R(a) R(b)
    np.testing.assert_allclose(np.abs(ab), np.abs(wxyz(a * b)), atol=1e-12)
    # broadcasting one quaternion over a batch, in torch (as the editor rotates Gaussians)
    one = torch.from_numpy(wxyz(a[0])).float()
    got = quat_multiply(one, torch.from_numpy(wxyz(b)).float())
    assert got.shape == (30, 4) and got.dtype == torch.float32
    np.testing.assert_allclose(quat_to_rotmat(got).numpy(), a[0].as_matrix() @ b.as_matrix(), atol=1e-6)
    # Hamilton convention: i * j = k
    np.testing.assert_array_equal(quat_multiply([0, 1, 0, 0], [0, 0, 1, 0]), [0, 0, 0, 1])


# ----------------------------------------------------------------------------- cameras


def project(V, K, X):
    p = V[:3, :3] @ np.asarray(X, float) + V[:3, 3]
    return (K @ (p / p[2]))[:2], p[2]


def test_look_at_opencv_axes_and_up_direction():
    K = intrinsics_matrix(100.0, 100.0, 50.0, 40.0)
    eye, target = np.array([4.0, -3.0, 2.0]), np.array([0.5, 0.2, 0.3])
    V = look_at(eye, target)
    R = V[:3, :3]
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-15)
    assert np.linalg.det(R) == pytest.approx(1.0)
    np.testing.assert_allclose(camera_center(V), eye, atol=1e-14)
    uv, z = project(V, K, target)
    np.testing.assert_allclose(uv, [50, 40], atol=1e-12)  # the target is on the optical axis
    assert z == pytest.approx(np.linalg.norm(target - eye))
    assert project(V, K, target + [0, 0, 0.1])[0][1] < 40  # world up (+z) is up in the image (smaller v)
    right = np.cross(target - eye, [0, 0, 1])  # horizontal, to the right of the view direction
    assert project(V, K, target + 0.01 * right)[0][0] > 50  # right in the image (larger u)
    assert R[0, 2] == pytest.approx(0.0, abs=1e-15)  # no roll: the camera x axis is horizontal


def test_look_at_explicit_up_matches_analytic_matrix():
    # camera at -4 z looking along +z with world +y up: x right = -x world, y down = -y world
    V = look_at([0, 0, -4], [0, 0, 0], up=(0, 1, 0))
    np.testing.assert_allclose(V, [[-1, 0, 0, 0], [0, -1, 0, 0], [0, 0, 1, 4], [0, 0, 0, 1]], atol=1e-15)
    # looking straight down along the up vector: falls back to another axis instead of NaNs
    Vd = look_at([0, 0, 5], [0, 0, 0])
    assert np.all(np.isfinite(Vd))
    np.testing.assert_allclose(Vd[:3, :3] @ Vd[:3, :3].T, np.eye(3), atol=1e-15)
    np.testing.assert_allclose(Vd[2, :3], [0, 0, -1])


def test_camera_center_batches_and_torch():
    Vs = np.stack([look_at(e, (0, 0, 0)) for e in ([3, 0, 1], [0, 4, 2], [-2, -2, 5])])
    c = camera_center(Vs)
    np.testing.assert_allclose(c, [[3, 0, 1], [0, 4, 2], [-2, -2, 5]], atol=1e-14)
    ct = camera_center(torch.from_numpy(Vs).float())
    assert ct.dtype == torch.float32 and ct.shape == (3, 3)
    np.testing.assert_allclose(ct.numpy(), c, atol=1e-5)
    np.testing.assert_allclose(camera_center(Vs[:, :3, :]), c, atol=0)  # [3,4] matrices too


def test_intrinsics_matrix():
    K = intrinsics_matrix(10.0, 12.0, 3.5, 2.5)
    assert K.dtype == np.float64
    np.testing.assert_array_equal(K, [[10, 0, 3.5], [0, 12, 2.5], [0, 0, 1]])
