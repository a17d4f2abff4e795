"""Numba kernels of the tile-based Gaussian rasterizer (forward, backward and helpers).

All kernels take contiguous arrays. Per-Gaussian projection state is float64 (accuracy);
inputs and image-sized outputs are float32. Every parallel loop writes to disjoint memory,
and every reduction runs in a fixed order, so results do not depend on the thread count
(or on the dynamic scheduling of tiles).

Per-Gaussian record ``gp [N, NG]`` float64 (columns named G*): 2D mean, conic (a, b, c of the
inverse 2D covariance), opacity, view depth, pixel half-extents of the alpha >= 1/255 ellipse
(GEX < 0: the Gaussian can never pass the alpha threshold), 1/a, 2 a s_max (s_max: the
log threshold, sigma <= s_max wherever alpha >= 1/255), det(conic), exp(-a), exp(-b),
exp(-c), and GREC = 1 where the Gaussian may be evaluated with multiplicative recurrences
over its pixel box (all intermediate values stay far from float64 under/overflow), else exp
is evaluated per pixel.

Gaussian values on the pixel grid: sigma(x, y) = 0.5 (a dx^2 + c dy^2) + b dx dy with
dx = u - (x + 0.5), dy = v - (y + 0.5). Within one intersection (Gaussian x tile) the value at
the box corner and the three step ratios are computed with exp once; every other pixel follows
by G(x+1) = G(x) E(x), E(x+1) = E(x) exp(-a) along rows and by the matching recurrences
(factors exp(-b), exp(-c)) down the box's first column; such Gaussians visit every pixel of
their box (the alpha test rejects the corners; cheaper than computing exact row spans), the
others only the per-row span of their sigma <= s_max ellipse. The four raster kernels
(``raster_fwd``, ``raster_bwd``, ``dominant_fwd``, ``contrib_tiles``) walk intersections with
the same inline helpers (``_walk``, ``_row``, ``_pixel``), so they make bit-identical alpha
decisions; ``project_fwd`` and ``project_bwd`` share the projection maths (``_to_camera``,
``_cov_camera``, ``_jacobian``, ``_cov2d``).

Per-intersection partial gradient layout (columns of ``partial``):
0,1 mean2d x,y | 2,3,4 conic a,b,c | 5 opacity | 6 view depth z | 7.. features.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

TILE = 16
ALPHA_MIN = 1.0 / 255.0
ALPHA_MAX = 0.99
T_MIN = 1e-4
NPART = 7  # partial-gradient columns before the features
RADIUS_MAX = 1 << 30
LANES = 8  # feature rows are padded to a multiple of this (vectorised inner loops)
REC_LIMIT = 400.0  # recurrences only where |exponents| over the box stay below this

NG = 16  # 128 bytes per Gaussian
GU, GV, GA, GB, GC, GO, GZ, GEX, GEY, GIA, GQ1, GDET, GEA, GEB, GEC, GREC = range(NG)


def padded(d):
    """Feature width rounded up to a multiple of LANES."""
    return (d + LANES - 1) // LANES * LANES


@njit(cache=True)
def all_finite(a):
    """True if the 1-D float32 array holds no NaN/Inf (serial, vectorised; cheaper than a
    threaded torch reduction for the sizes used here)."""
    bad = np.int32(0)
    for i in range(a.shape[0]):
        bad |= np.int32(not (np.abs(a[i]) <= np.float32(3.4028234663852886e38)))
    return bad == 0


@njit(cache=True)
def any_zero_row(q):
    """True if some row of the [N,4] array is all zeros."""
    for i in range(q.shape[0]):
        if q[i, 0] == 0.0 and q[i, 1] == 0.0 and q[i, 2] == 0.0 and q[i, 3] == 0.0:
            return True
    return False


# ----------------------------------------------------------------------------- projection maths
# (written once; project_fwd and project_bwd both call these)


@njit(cache=True, inline="always")
def _quat_rot(qw, qx, qy, qz, R):
    """Rotation matrix of the unit quaternion (w,x,y,z) into R[3,3]."""
    R[0, 0] = 1.0 - 2.0 * (qy * qy + qz * qz)
    R[0, 1] = 2.0 * (qx * qy - qw * qz)
    R[0, 2] = 2.0 * (qx * qz + qw * qy)
    R[1, 0] = 2.0 * (qx * qy + qw * qz)
    R[1, 1] = 1.0 - 2.0 * (qx * qx + qz * qz)
    R[1, 2] = 2.0 * (qy * qz - qw * qx)
    R[2, 0] = 2.0 * (qx * qz - qw * qy)
    R[2, 1] = 2.0 * (qy * qz + qw * qx)
    R[2, 2] = 1.0 - 2.0 * (qx * qx + qy * qy)


@njit(cache=True, inline="always")
def _mm(A, B, out):
    """out = A @ B (3x3 blocks)"""
    for i in range(3):
        for j in range(3):
            out[i, j] = A[i, 0] * B[0, j] + A[i, 1] * B[1, j] + A[i, 2] * B[2, j]


@njit(cache=True, inline="always")
def _mmt(A, B, out):
    """out = A @ B.T"""
    for i in range(3):
        for j in range(3):
            out[i, j] = A[i, 0] * B[j, 0] + A[i, 1] * B[j, 1] + A[i, 2] * B[j, 2]


@njit(cache=True, inline="always")
def _mtm(A, B, out):
    """out = A.T @ B"""
    for i in range(3):
        for j in range(3):
            out[i, j] = A[0, i] * B[0, j] + A[1, i] * B[1, j] + A[2, i] * B[2, j]


@njit(cache=True, inline="always")
def _camera(intr, width, height):
    """(fx, fy, cx, cy, lim_xp, lim_xn, lim_yp, lim_yn) of intr = (fx, fy, cx, cy): the Jacobian
    clamps x/z to [-lim_xn, lim_xp] and y/z to [-lim_yn, lim_yp] (the image plus 0.3 x the half
    field of view on each side, as gsplat)."""
    fx, fy, cx, cy = intr[0], intr[1], intr[2], intr[3]
    tan_fovx = 0.5 * width / fx
    tan_fovy = 0.5 * height / fy
    lim_xp = (width - cx) / fx + 0.3 * tan_fovx
    lim_xn = cx / fx + 0.3 * tan_fovx
    lim_yp = (height - cy) / fy + 0.3 * tan_fovy
    lim_yn = cy / fy + 0.3 * tan_fovy
    return fx, fy, cx, cy, lim_xp, lim_xn, lim_yp, lim_yn


@njit(cache=True, inline="always")
def _view_rotation(V):
    """Rotation part W [3,3] float64 of the world-to-camera matrix V [4,4] (a private copy per
    chunk of Gaussians)."""
    Wm = np.empty((3, 3))
    for r in range(3):
        for c in range(3):
            Wm[r, c] = V[r, c]
    return Wm


@njit(cache=True, inline="always")
def _to_camera(means, i, Wm, V):
    """Camera-space position (px, py, pz) of Gaussian i."""
    mx = np.float64(means[i, 0])
    my = np.float64(means[i, 1])
    mz = np.float64(means[i, 2])
    px = Wm[0, 0] * mx + Wm[0, 1] * my + Wm[0, 2] * mz + V[0, 3]
    py = Wm[1, 0] * mx + Wm[1, 1] * my + Wm[1, 2] * mz + V[1, 3]
    pz = Wm[2, 0] * mx + Wm[2, 1] * my + Wm[2, 2] * mz + V[2, 3]
    return px, py, pz


@njit(cache=True, inline="always")
def _cov_camera(quats, scales, i, Wm, Rq, M, Sig, tmp, Sc):
    """Camera-space covariance Sc = W Sig W^T of Gaussian i, with Sig = M M^T, M = Rq S (world;
    Rq: rotation of the normalised quaternion, S = diag(scales[i])); fills the 3x3 work arrays
    Rq, M, Sig, Sc (tmp: scratch). Returns (qw, qx, qy, qz, |q|) (unit quaternion, input norm)."""
    qw = np.float64(quats[i, 0])
    qx = np.float64(quats[i, 1])
    qy = np.float64(quats[i, 2])
    qz = np.float64(quats[i, 3])
    qn = math.sqrt(qw * qw + qx * qx + qy * qy + qz * qz)
    qw /= qn
    qx /= qn
    qy /= qn
    qz /= qn
    _quat_rot(qw, qx, qy, qz, Rq)
    for r in range(3):
        for c in range(3):
            M[r, c] = Rq[r, c] * np.float64(scales[i, c])
    _mmt(M, M, Sig)
    _mm(Wm, Sig, tmp)
    _mmt(tmp, Wm, Sc)
    return qw, qx, qy, qz, qn


@njit(cache=True, inline="always")
def _jacobian(px, py, pz, cam):
    """Perspective Jacobian J = [[j00, 0, j02], [0, j11, j12]] of the camera-space point
    (px, py, pz), taken at the clamped direction (cxv, cyv) (cam = _camera(...); ux = px/z,
    uy = py/z before the clamp, tx = z cxv, ty = z cyv).
    Returns (rz = 1/z, ux, uy, cxv, cyv, tx, ty, j00, j02, j11, j12)."""
    fx, fy, lim_xp, lim_xn, lim_yp, lim_yn = cam[0], cam[1], cam[4], cam[5], cam[6], cam[7]
    rz = 1.0 / pz
    ux = px * rz
    uy = py * rz
    cxv = min(lim_xp, max(-lim_xn, ux))
    cyv = min(lim_yp, max(-lim_yn, uy))
    tx = pz * cxv
    ty = pz * cyv
    j00 = fx * rz
    j02 = -fx * tx * rz * rz
    j11 = fy * rz
    j12 = -fy * ty * rz * rz
    return rz, ux, uy, cxv, cyv, tx, ty, j00, j02, j11, j12


@njit(cache=True, inline="always")
def _cov2d(Sc, j00, j02, j11, j12, eps2d):
    """EWA 2D covariance J Sc J^T + eps2d I = [[c00, c01], [c01, c11]] of the camera-space
    covariance Sc [3,3] and the Jacobian of ``_jacobian``.
    Returns (c00, c01, c11, t00, t01, t02, t10, t11, t12) with t = J Sc [2,3]."""
    t00 = j00 * Sc[0, 0] + j02 * Sc[2, 0]
    t01 = j00 * Sc[0, 1] + j02 * Sc[2, 1]
    t02 = j00 * Sc[0, 2] + j02 * Sc[2, 2]
    t10 = j11 * Sc[1, 0] + j12 * Sc[2, 0]
    t11 = j11 * Sc[1, 1] + j12 * Sc[2, 1]
    t12 = j11 * Sc[1, 2] + j12 * Sc[2, 2]
    c00 = t00 * j00 + t02 * j02 + eps2d
    c01 = t01 * j11 + t02 * j12
    c11 = t11 * j11 + t12 * j12 + eps2d
    return c00, c01, c11, t00, t01, t02, t10, t11, t12


@njit(cache=True, parallel=True)
def project_fwd(means, quats, scales, opac, V, intr, width, height, near, far, eps2d):
    """Project N Gaussians.

    means [N,3], quats [N,4] (any norm), scales [N,3], opac [N] float32; V [4,4] float64
    world-to-camera; intr = (fx, fy, cx, cy) float64.
    Returns gp [N,NG] f64 (module doc; zeros for culled Gaussians), z [N] f64 (view depth of
    all Gaussians), radii [N] int32 (0 = culled), rect [N,4] int32 (tile x0,y0,x1,y1; end
    exclusive), ntiles [N] int64.
    """
    n = means.shape[0]
    # np.empty + per-row initialisation in the main loop (np.zeros would each start a parallel region)
    gp = np.empty((n, NG), np.float64)
    zs = np.empty(n, np.float64)
    radii = np.empty(n, np.int32)
    rect = np.empty((n, 4), np.int32)
    ntiles = np.empty(n, np.int64)
    cam = _camera(intr, width, height)
    fx, fy, cx, cy = cam[0], cam[1], cam[2], cam[3]
    tiles_x = (width + TILE - 1) // TILE
    tiles_y = (height + TILE - 1) // TILE
    nchunk = max(1, min(64, n // 256))  # chunks of Gaussians (each allocates small work arrays)
    for ch in prange(nchunk):
        lo = ch * n // nchunk
        hi = (ch + 1) * n // nchunk
        Rq = np.empty((3, 3))
        M = np.empty((3, 3))
        Sig = np.empty((3, 3))
        tmp = np.empty((3, 3))
        Sc = np.empty((3, 3))
        Wm = _view_rotation(V)
        for i in range(lo, hi):
            for c in range(NG):
                gp[i, c] = 0.0
            for c in range(4):
                rect[i, c] = 0
            radii[i] = 0
            ntiles[i] = 0
            px, py, pz = _to_camera(means, i, Wm, V)
            zs[i] = pz
            if pz < near or pz > far:
                continue
            _cov_camera(quats, scales, i, Wm, Rq, M, Sig, tmp, Sc)
            rz, ux, uy, cxv, cyv, tx, ty, j00, j02, j11, j12 = _jacobian(px, py, pz, cam)
            c00, c01, c11, t00, t01, t02, t10, t11, t12 = _cov2d(Sc, j00, j02, j11, j12, eps2d)
            det = c00 * c11 - c01 * c01
            if not (det > 0.0):
                continue
            bm = 0.5 * (c00 + c11)
            lam = bm + math.sqrt(max(bm * bm - det, 0.0))
            rad = math.ceil(3.0 * math.sqrt(lam))
            if rad > RADIUS_MAX:
                rad = RADIUS_MAX
            u = fx * px * rz + cx
            v = fy * py * rz + cy
            if u + rad <= 0.0 or u - rad >= width or v + rad <= 0.0 or v - rad >= height:
                continue
            rx0 = min(max(0.0, math.floor((u - rad) / TILE)), tiles_x)
            rx1 = min(max(0.0, math.ceil((u + rad) / TILE)), tiles_x)
            ry0 = min(max(0.0, math.floor((v - rad) / TILE)), tiles_y)
            ry1 = min(max(0.0, math.ceil((v + rad) / TILE)), tiles_y)
            nt = int(rx1 - rx0) * int(ry1 - ry0)
            if nt <= 0:
                continue
            radii[i] = np.int32(rad)
            rect[i, 0] = np.int32(rx0)
            rect[i, 1] = np.int32(ry0)
            rect[i, 2] = np.int32(rx1)
            rect[i, 3] = np.int32(ry1)
            ntiles[i] = nt
            ca = c11 / det
            cb = -c01 / det
            cc = c00 / det
            o = np.float64(opac[i])
            gp[i, GU] = u
            gp[i, GV] = v
            gp[i, GA] = ca
            gp[i, GB] = cb
            gp[i, GC] = cc
            gp[i, GO] = o
            gp[i, GZ] = pz
            if o * 255.0 < 0.999:
                gp[i, GEX] = -1.0
                gp[i, GEY] = -1.0
                continue
            smax = max(math.log(255.0 * o), 0.0) + 1e-6
            ex = math.sqrt(2.0 * smax * c00) + 1.0
            ey = math.sqrt(2.0 * smax * c11) + 1.0
            gp[i, GEX] = ex
            gp[i, GEY] = ey
            gp[i, GIA] = 1.0 / ca
            gp[i, GQ1] = 2.0 * ca * smax
            gp[i, GDET] = ca * cc - cb * cb
            gp[i, GEA] = math.exp(-ca)
            gp[i, GEB] = math.exp(-cb)
            gp[i, GEC] = math.exp(-cc)
            # bounds of |sigma| and of the step exponents over the pixel box (|dx| <= ex + 2)
            bx = ex + 2.0
            by = ey + 2.0
            ab = abs(cb)
            bs = 0.5 * (ca * bx * bx + cc * by * by) + ab * bx * by
            bl = 0.5 * max(ca, cc) + max(ca * bx + ab * by, cc * by + ab * bx) + ca + cc + ab
            gp[i, GREC] = 1.0 if (bs < REC_LIMIT and bl < REC_LIMIT) else 0.0
    return gp, zs, radii, rect, ntiles


@njit(cache=True, parallel=True)
def project_bwd(
    means, quats, scales, V, intr, width, height, eps2d, radii, goff, ntiles, isect_pos, partial, want_feat
):
    """Reduce per-intersection partials per Gaussian (fixed order) and back-propagate the
    projection (recomputed with the forward helpers).

    Inputs as ``project_fwd``; radii [N], goff [N], ntiles [N] from it and ``bin_gaussians``;
    partial [n_isect, 7+D] f32 from ``raster_bwd``. Returns v_means [N,3], v_quats [N,4],
    v_scales [N,3], v_opac [N], v_feat [N,D] (f32; [N,0] if not want_feat), v_mean2d [N,2] f32.
    """
    n = means.shape[0]
    D = partial.shape[1] - NPART
    v_means = np.empty((n, 3), np.float32)
    v_quats = np.empty((n, 4), np.float32)
    v_scales = np.empty((n, 3), np.float32)
    v_opac = np.empty(n, np.float32)
    v_mean2d = np.empty((n, 2), np.float32)
    Df = D if want_feat else 0
    v_feat = np.empty((n, Df), np.float32)
    cam = _camera(intr, width, height)
    fx, fy, lim_xp, lim_xn, lim_yp, lim_yn = cam[0], cam[1], cam[4], cam[5], cam[6], cam[7]
    nchunk = max(1, min(64, n // 256))  # chunks of Gaussians (each allocates small work arrays)
    for ch in prange(nchunk):
        lo = ch * n // nchunk
        hi = (ch + 1) * n // nchunk
        Rq = np.empty((3, 3))
        M = np.empty((3, 3))
        Sig = np.empty((3, 3))
        tmp = np.empty((3, 3))
        Sc = np.empty((3, 3))
        vSc = np.empty((3, 3))
        vSig = np.empty((3, 3))
        acc = np.empty(NPART + D, np.float64)
        Wm = _view_rotation(V)
        for i in range(lo, hi):
            for c in range(3):
                v_means[i, c] = 0.0
                v_scales[i, c] = 0.0
            for c in range(4):
                v_quats[i, c] = 0.0
            for c in range(Df):
                v_feat[i, c] = 0.0
            v_opac[i] = 0.0
            v_mean2d[i, 0] = 0.0
            v_mean2d[i, 1] = 0.0
            if radii[i] == 0:
                continue
            for c in range(NPART + Df):
                acc[c] = 0.0
            for kk in range(goff[i], goff[i] + ntiles[i]):
                p = isect_pos[kk]
                for c in range(NPART + Df):
                    acc[c] += partial[p, c]
            for d in range(Df):
                v_feat[i, d] = acc[NPART + d]
            v_opac[i] = acc[5]
            vu = acc[0]
            vv = acc[1]
            v_mean2d[i, 0] = vu
            v_mean2d[i, 1] = vv
            va = acc[2]
            vb = acc[3]
            vc = acc[4]
            vpz = acc[6]
            # recompute the projection
            px, py, pz = _to_camera(means, i, Wm, V)
            qw, qx, qy, qz, qn = _cov_camera(quats, scales, i, Wm, Rq, M, Sig, tmp, Sc)
            rz, ux, uy, cxv, cyv, tx, ty, j00, j02, j11, j12 = _jacobian(px, py, pz, cam)
            c00, c01, c11, t00, t01, t02, t10, t11, t12 = _cov2d(Sc, j00, j02, j11, j12, eps2d)
            det = c00 * c11 - c01 * c01
            q00 = c11 / det
            q01 = -c01 / det
            q11 = c00 / det
            # v_cov = -Q vQ Q with vQ = [[va, vb/2], [vb/2, vc]]
            h01 = 0.5 * vb
            a00 = q00 * va + q01 * h01
            a01 = q00 * h01 + q01 * vc
            a10 = q01 * va + q11 * h01
            a11 = q01 * h01 + q11 * vc
            g00 = -(a00 * q00 + a01 * q01)
            g01 = -(a00 * q01 + a01 * q11)
            g11 = -(a10 * q01 + a11 * q11)
            # v_J = 2 G (J Sc)
            vj00 = 2.0 * (g00 * t00 + g01 * t10)
            vj02 = 2.0 * (g00 * t02 + g01 * t12)
            vj11 = 2.0 * (g01 * t01 + g11 * t11)
            vj12 = 2.0 * (g01 * t02 + g11 * t12)
            # v_Sc = J^T G J, J = [[j00,0,j02],[0,j11,j12]]
            # G J (2x3)
            e00 = g00 * j00
            e01 = g01 * j11
            e02 = g00 * j02 + g01 * j12
            e10 = g01 * j00
            e11 = g11 * j11
            e12 = g01 * j02 + g11 * j12
            vSc[0, 0] = j00 * e00
            vSc[0, 1] = j00 * e01
            vSc[0, 2] = j00 * e02
            vSc[1, 0] = j11 * e10
            vSc[1, 1] = j11 * e11
            vSc[1, 2] = j11 * e12
            vSc[2, 0] = j02 * e00 + j12 * e10
            vSc[2, 1] = j02 * e01 + j12 * e11
            vSc[2, 2] = j02 * e02 + j12 * e12
            # camera-space mean gradient
            rz2 = rz * rz
            vpx = fx * rz * vu
            vpy = fy * rz * vv
            vpz += -(fx * px * vu + fy * py * vv) * rz2
            vpz += -fx * rz2 * vj00 - fy * rz2 * vj11
            vpz += 2.0 * fx * tx * rz2 * rz * vj02 + 2.0 * fy * ty * rz2 * rz * vj12
            vtx = -fx * rz2 * vj02
            vty = -fy * rz2 * vj12
            if ux >= -lim_xn and ux <= lim_xp:
                vpx += vtx
            else:
                vpz += vtx * cxv
            if uy >= -lim_yn and uy <= lim_yp:
                vpy += vty
            else:
                vpz += vty * cyv
            for c in range(3):
                v_means[i, c] = Wm[0, c] * vpx + Wm[1, c] * vpy + Wm[2, c] * vpz
            # v_Sig = W^T v_Sc W ; v_M = 2 v_Sig M
            _mtm(Wm, vSc, tmp)
            _mm(tmp, Wm, vSig)
            _mm(vSig, M, tmp)  # tmp = v_Sig M ; v_M = tmp + v_Sig^T M
            _mtm(vSig, M, Sc)
            for r in range(3):
                for c in range(3):
                    vMrc = tmp[r, c] + Sc[r, c]
                    tmp[r, c] = vMrc
            for c in range(3):
                sc = np.float64(scales[i, c])
                v_scales[i, c] = Rq[0, c] * tmp[0, c] + Rq[1, c] * tmp[1, c] + Rq[2, c] * tmp[2, c]
                for r in range(3):
                    tmp[r, c] *= sc  # now v_Rq
            vw = 2.0 * (
                -qz * tmp[0, 1] + qy * tmp[0, 2] + qz * tmp[1, 0] - qx * tmp[1, 2] - qy * tmp[2, 0] + qx * tmp[2, 1]
            )
            vx = 2.0 * (
                qy * tmp[0, 1]
                + qz * tmp[0, 2]
                + qy * tmp[1, 0]
                - 2.0 * qx * tmp[1, 1]
                - qw * tmp[1, 2]
                + qz * tmp[2, 0]
                + qw * tmp[2, 1]
                - 2.0 * qx * tmp[2, 2]
            )
            vy = 2.0 * (
                -2.0 * qy * tmp[0, 0]
                + qx * tmp[0, 1]
                + qw * tmp[0, 2]
                + qx * tmp[1, 0]
                + qz * tmp[1, 2]
                - qw * tmp[2, 0]
                + qz * tmp[2, 1]
                - 2.0 * qy * tmp[2, 2]
            )
            vz = 2.0 * (
                -2.0 * qz * tmp[0, 0]
                - qw * tmp[0, 1]
                + qx * tmp[0, 2]
                + qw * tmp[1, 0]
                - 2.0 * qz * tmp[1, 1]
                + qy * tmp[1, 2]
                + qx * tmp[2, 0]
                + qy * tmp[2, 1]
            )
            dot = qw * vw + qx * vx + qy * vy + qz * vz
            v_quats[i, 0] = (vw - qw * dot) / qn
            v_quats[i, 1] = (vx - qx * dot) / qn
            v_quats[i, 2] = (vy - qy * dot) / qn
            v_quats[i, 3] = (vz - qz * dot) / qn
    return v_means, v_quats, v_scales, v_opac, v_feat, v_mean2d


@njit(cache=True, parallel=True)
def depth_order(zs, vis):
    """Gaussian ids ``vis`` sorted by zs, stable (ties keep id order). Two halves are sorted in
    parallel and merged; the result equals a global stable sort."""
    n = vis.shape[0]
    keys = np.empty(n, np.float64)
    for i in range(n):
        keys[i] = zs[vis[i]]
    half = n // 2
    parts = np.empty(n, np.int64)
    for h in prange(2):
        lo = 0 if h == 0 else half
        hi = half if h == 0 else n
        idx = np.argsort(keys[lo:hi], kind="mergesort")
        for i in range(hi - lo):
            parts[lo + i] = idx[i] + lo
    out = np.empty(n, np.int64)
    i = 0
    j = half
    k = 0
    while i < half and j < n:
        if keys[parts[j]] < keys[parts[i]]:
            out[k] = vis[parts[j]]
            j += 1
        else:
            out[k] = vis[parts[i]]
            i += 1
        k += 1
    while i < half:
        out[k] = vis[parts[i]]
        i += 1
        k += 1
    while j < n:
        out[k] = vis[parts[j]]
        j += 1
        k += 1
    return out


@njit(cache=True, parallel=True)
def bin_gaussians(order, rect, goff, tiles_x, n_tiles, n_isect):
    """Tile-major, depth-ordered intersection lists (counting sort by tile, in parallel over
    fixed chunks of ``order``; the result does not depend on the thread count).

    order [M]: visible Gaussian ids sorted front to back. goff [N]: exclusive prefix sum of
    the per-Gaussian tile counts. Returns tile_start [n_tiles+1] int64, isect_gauss [n_isect]
    int32 (Gaussian id), isect_pos [n_isect] int64 (for Gaussian g, isect_pos[goff[g] + k] is
    the position of its k-th tile (row-major in its rect) in the sorted list).
    """
    n = order.shape[0]
    nch = max(1, min(16, n // 1024))
    cnt = np.empty((nch, n_tiles), np.int64)
    for c in prange(nch):
        for t in range(n_tiles):
            cnt[c, t] = 0
        for oi in range(c * n // nch, (c + 1) * n // nch):
            g = order[oi]
            for ty in range(rect[g, 1], rect[g, 3]):
                for tx in range(rect[g, 0], rect[g, 2]):
                    cnt[c, ty * tiles_x + tx] += 1
    tile_start = np.empty(n_tiles + 1, np.int64)
    run = 0
    for t in range(n_tiles):
        tile_start[t] = run
        for c in range(nch):
            k = cnt[c, t]
            cnt[c, t] = run
            run += k
    tile_start[n_tiles] = run
    isect_gauss = np.empty(n_isect, np.int32)
    isect_pos = np.empty(n_isect, np.int64)
    for c in prange(nch):
        for oi in range(c * n // nch, (c + 1) * n // nch):
            g = order[oi]
            k = goff[g]
            for ty in range(rect[g, 1], rect[g, 3]):
                for tx in range(rect[g, 0], rect[g, 2]):
                    t = ty * tiles_x + tx
                    p = cnt[c, t]
                    cnt[c, t] = p + 1
                    isect_gauss[p] = g
                    isect_pos[k] = p
                    k += 1
    return tile_start, isect_gauss, isect_pos


# ----------------------------------------------------------------------------- tile rasterization
# The four raster kernels walk each Gaussian x tile intersection with the same inline helpers,
# so they make bit-identical alpha decisions:
#
#     q = _walk(gp, g, x0, y0, x1, y1)
#     by0, by1, Gr, Er, Fr = _rows(q)
#     for py in range(by0, by1):
#         dy, px0, px1, G, E, Gr, Er, Fr = _row(q, py, Gr, Er, Fr)
#         rowk = (py - y0) * tw - x0
#         for px in range(px0, px1):
#             al, araw, Gc, G, E = _pixel(q, dy, px, G, E)
#             if araw < ALPHA_MIN:
#                 continue
#             k = rowk + px  # pixel index in the tile
#             ...
#
# The helpers take and return scalars and flat tuples of scalars only (registers after
# inlining; arrays taken out of tuples would cost reference counting per pixel, and Numba's
# parfor array analysis rejects nested tuples).


@njit(cache=True, inline="always")
def _tile(t, tiles_x, width, height):
    """Pixel rectangle [x0,x1) x [y0,y1) of tile t, its width tw and pixel count npx."""
    x0 = (t % tiles_x) * TILE
    y0 = (t // tiles_x) * TILE
    x1 = min(x0 + TILE, width)
    y1 = min(y0 + TILE, height)
    tw = x1 - x0
    return x0, y0, x1, y1, tw, tw * (y1 - y0)


@njit(cache=True, inline="always")
def _walk(gp, g, x0, y0, x1, y1):
    """Start walking the pixels of the tile [x0,x1) x [y0,y1) that may hold alpha >= 1/255 for
    Gaussian g: its box [bx0,bx1) x [by0,by1) (empty when the Gaussian can never pass the alpha
    threshold, GEX < 0). Returns q = (u, v, ca, cb, cc, o, ia, q1, det, Ea, Eb, Ec, bx0, bx1,
    rec, by0, by1, G, E, F): the record of g (module doc), the box, rec (multiplicative
    recurrences from the box corner, else exp per pixel) and the recurrence start values at the
    corner (G, E = row step ratio, F = column step ratio of G; G = -1 without recurrences)."""
    u = gp[g, GU]
    v = gp[g, GV]
    ca = gp[g, GA]
    cb = gp[g, GB]
    cc = gp[g, GC]
    ex = gp[g, GEX]
    ey = gp[g, GEY]
    bx0 = bx1 = by0 = by1 = 0
    if ex >= 0.0:
        bx0 = int(max(float(x0), math.floor(u - ex - 0.5)))
        bx1 = int(min(float(x1), math.ceil(u + ex - 0.5) + 1.0))
        by0 = int(max(float(y0), math.floor(v - ey - 0.5)))
        by1 = int(min(float(y1), math.ceil(v + ey - 0.5) + 1.0))
    G = -1.0
    E = 0.0
    F = 0.0
    rec = gp[g, GREC] > 0.0 and bx0 < bx1 and by0 < by1
    if rec:
        dx = u - (bx0 + 0.5)
        dy = v - (by0 + 0.5)
        G = math.exp(-(0.5 * (ca * dx * dx + cc * dy * dy) + cb * dx * dy))
        E = math.exp(-(0.5 * ca - ca * dx - cb * dy))
        F = math.exp(-(0.5 * cc - cc * dy - cb * dx))
    o, ia, q1, det = gp[g, GO], gp[g, GIA], gp[g, GQ1], gp[g, GDET]
    Ea, Eb, Ec = gp[g, GEA], gp[g, GEB], gp[g, GEC]
    return (u, v, ca, cb, cc, o, ia, q1, det, Ea, Eb, Ec, bx0, bx1, rec, by0, by1, G, E, F)


@njit(cache=True, inline="always")
def _rows(q):
    """Rows [by0, by1) of a walk and the recurrence state (G, E, F) of its first row."""
    u, v, ca, cb, cc, o, ia, q1, det, Ea, Eb, Ec, bx0, bx1, rec, by0, by1, G0, E0, F0 = q
    return by0, by1, G0, E0, F0


@njit(cache=True, inline="always")
def _row(q, py, Gr, Er, Fr):
    """Row py of a walk; (Gr, Er, Fr): recurrence state from ``_rows`` or the previous row.
    Returns (dy, px0, px1, G, E, Gr, Er, Fr): dy = v - (py + 0.5); the columns [px0, px1) to
    visit (with recurrences the whole box row, cheaper than the exact span; else the span of
    the sigma <= s_max ellipse, empty when px1 <= px0); G, E at px0; the next row's state."""
    u, v, ca, cb, cc, o, ia, q1, det, Ea, Eb, Ec, bx0, bx1, rec, by0, by1, G0, E0, F0 = q
    dy = v - (py + 0.5)
    if rec:
        return dy, bx0, bx1, Gr, Er, Gr * Fr, Er * Eb, Fr * Ec
    disc = q1 - det * dy * dy
    if disc < 0.0:
        return dy, bx0, bx0, Gr, Er, Gr, Er, Fr
    h = math.sqrt(disc) * ia
    m = u - 0.5 + cb * dy * ia
    px0 = int(max(float(bx0), math.floor(m - h)))
    px1 = int(min(float(bx1), math.ceil(m + h) + 1.0))
    return dy, px0, px1, Gr, Er, Gr, Er, Fr


@njit(cache=True, inline="always")
def _pixel(q, dy, px, G, E):
    """Pixel px of the row at dy (left to right; G, E from ``_row`` or the previous pixel).
    Returns (al, araw, Gc, G, E): Gc the Gaussian value, araw = o Gc (skip the pixel when
    araw < ALPHA_MIN), al = min(araw, ALPHA_MAX); G, E for the next pixel."""
    u, v, ca, cb, cc, o, ia, q1, det, Ea, Eb, Ec, bx0, bx1, rec, by0, by1, G0, E0, F0 = q
    if rec:
        Gc = G
        G *= E
        E *= Ea
    else:
        dx = u - (px + 0.5)
        Gc = math.exp(-(0.5 * (ca * dx * dx + cc * dy * dy) + cb * dx * dy))
    araw = o * Gc
    al = araw
    if al > ALPHA_MAX:
        al = ALPHA_MAX
    return al, araw, Gc, G, E


@njit(cache=True, inline="always")
def _composite(T, k, al):
    """Front-to-back step of pixel k with alpha al; T [npx] transmittance, < 0 for done pixels
    (-T kept). Returns (Tk, done): Tk the transmittance in front of the Gaussian, or -1 when the
    pixel takes nothing (already done, or the Gaussian would bring T below T_MIN: the pixel is
    done now and done = 1). Callers test ``if Tk < 0.0: continue`` (the same comparison as
    here, so the compiler folds it; ``Tk >= 0.0`` differs for NaN and costs a branch)."""
    Tk = T[k]
    if Tk < 0.0:
        return -1.0, 0
    nT = Tk * (1.0 - al)
    if nT < T_MIN:
        T[k] = -Tk
        return -1.0, 1
    T[k] = nT
    return Tk, 0


@njit(cache=True, fastmath={"reassoc", "contract", "nsz"})
def _dot(a, b):
    """sum_c a[c] * b[c] of two float32 rows (reassociated so it vectorises; gradients only)."""
    s = np.float32(0.0)
    for c in range(a.shape[0]):
        s += a[c] * b[c]
    return np.float64(s)


@njit(cache=True, parallel=True)
def raster_fwd(tile_start, isect_gauss, gp, featp, bg, width, height, tiles_x):
    """Front-to-back alpha blending per 16x16 tile. tile_start [n_tiles+1], isect_gauss [n_isect]
    from ``bin_gaussians``; gp [N,NG] from ``project_fwd``; featp [N,Dp] f32 (features
    zero-padded to Dp = padded(D)), bg [D] f32.

    Returns image [H,W,D] f32, alpha [H,W] f32, depth [H,W] f32, T_final [H,W] f64,
    depth_sum [H,W] f64 (sum of w*z), last [H,W] int32 (1 + local index of the last
    contributor in the tile list, 0 if none).
    """
    D = bg.shape[0]
    Dp = featp.shape[1]
    image = np.empty((height, width, D), np.float32)
    alpha = np.empty((height, width), np.float32)
    depth = np.empty((height, width), np.float32)
    Tfin = np.empty((height, width), np.float64)
    dsum = np.empty((height, width), np.float64)
    last = np.empty((height, width), np.int32)
    n_tiles = tile_start.shape[0] - 1
    for t in prange(n_tiles):
        x0, y0, x1, y1, tw, npx = _tile(t, tiles_x, width, height)
        T = np.ones(npx, np.float64)  # < 0: pixel done (-T)
        C = np.zeros((npx, Dp), np.float32)
        Dz = np.zeros(npx, np.float64)
        lst = np.zeros(npx, np.int32)
        ndone = 0
        s = tile_start[t]
        for j in range(s, tile_start[t + 1]):
            g = isect_gauss[j]
            z = gp[g, GZ]
            fgr = featp[g]
            q = _walk(gp, g, x0, y0, x1, y1)
            by0, by1, Gr, Er, Fr = _rows(q)
            for py in range(by0, by1):
                dy, px0, px1, G, E, Gr, Er, Fr = _row(q, py, Gr, Er, Fr)
                rowk = (py - y0) * tw - x0
                for px in range(px0, px1):
                    al, araw, Gc, G, E = _pixel(q, dy, px, G, E)
                    if araw < ALPHA_MIN:
                        continue
                    k = rowk + px
                    Tk, done = _composite(T, k, al)
                    ndone += done
                    if Tk < 0.0:
                        continue
                    w = al * Tk
                    w32 = np.float32(w)
                    cr = C[k]
                    for c in range(Dp):
                        cr[c] += w32 * fgr[c]
                    Dz[k] += w * z
                    lst[k] = j - s + 1
            if ndone == npx:
                break
        for py in range(y0, y1):
            for px in range(x0, x1):
                k = (py - y0) * tw + (px - x0)
                Tk = abs(T[k])
                for d in range(D):
                    image[py, px, d] = C[k, d] + Tk * bg[d]
                a = 1.0 - Tk
                alpha[py, px] = a
                depth[py, px] = Dz[k] / a if a > 0.0 else 0.0
                Tfin[py, px] = Tk
                dsum[py, px] = Dz[k]
                last[py, px] = lst[k]
    return image, alpha, depth, Tfin, dsum, last


@njit(cache=True, parallel=True)
def raster_bwd(
    tile_start, isect_gauss, gp, featp, bg, width, height, tiles_x, Tfin, dsum, last, v_img, v_alpha, v_depth, n_geom
):
    """Back-to-front gradient pass per tile. Inputs as ``raster_fwd`` plus its Tfin, dsum, last
    [H,W] and the output gradients v_img [H,W,D], v_alpha [H,W], v_depth [H,W] (f32).

    Returns partial [n_isect, 7+D] f32 (see module doc) and v_bg [D] f64. Only the image
    gradients of feature channels < n_geom reach the geometry partials (mean2d, conic,
    opacity); every channel gets its feature gradient."""
    D = bg.shape[0]
    Dp = featp.shape[1]
    n_isect = isect_gauss.shape[0]
    partial = np.empty((n_isect, NPART + D), np.float32)
    n_tiles = tile_start.shape[0] - 1
    vbg_t = np.empty((n_tiles, D), np.float64)
    for t in prange(n_tiles):
        for d in range(D):
            vbg_t[t, d] = 0.0
        x0, y0, x1, y1, tw, npx = _tile(t, tiles_x, width, height)
        T = np.empty(npx, np.float64)
        S = np.empty(npx, np.float64)
        vDs = np.empty(npx, np.float64)
        vC = np.zeros((npx, Dp), np.float32)
        vG = np.zeros((npx, Dp), np.float32)  # vC restricted to the geometry channels
        lst = np.empty(npx, np.int32)
        vf = np.empty(Dp, np.float32)
        maxlast = 0
        for py in range(y0, y1):
            for px in range(x0, x1):
                k = (py - y0) * tw + (px - x0)
                Tk = Tfin[py, px]
                a = 1.0 - Tk
                vA = np.float64(v_alpha[py, px])
                vd = np.float64(v_depth[py, px])
                if a > 0.0:
                    vDs[k] = vd / a
                    vA -= vd * dsum[py, px] / (a * a)
                else:
                    vDs[k] = 0.0
                h = -vA
                for d in range(D):
                    gv = np.float64(v_img[py, px, d])
                    vC[k, d] = v_img[py, px, d]
                    if d < n_geom:
                        vG[k, d] = v_img[py, px, d]
                        h += gv * bg[d]
                    vbg_t[t, d] += Tk * gv
                T[k] = Tk
                S[k] = Tk * h
                lst[k] = last[py, px]
                if lst[k] > maxlast:
                    maxlast = lst[k]
        s = tile_start[t]
        e = tile_start[t + 1]
        for j in range(s + maxlast, e):
            for c in range(NPART + D):
                partial[j, c] = 0.0
        for j in range(s + maxlast - 1, s - 1, -1):
            g = isect_gauss[j]
            loc = j - s
            vmx = 0.0
            vmy = 0.0
            va = 0.0
            vb = 0.0
            vc = 0.0
            vo = 0.0
            vz = 0.0
            for c in range(Dp):
                vf[c] = 0.0
            z = gp[g, GZ]
            fgr = featp[g]
            q = _walk(gp, g, x0, y0, x1, y1)
            by0, by1, Gr, Er, Fr = _rows(q)
            u, ca, cb, cc = q[0], q[2], q[3], q[4]  # mean x and conic (see _walk)
            for py in range(by0, by1):
                dy, px0, px1, G, E, Gr, Er, Fr = _row(q, py, Gr, Er, Fr)
                rowk = (py - y0) * tw - x0
                for px in range(px0, px1):
                    al, araw, Gc, G, E = _pixel(q, dy, px, G, E)
                    if araw < ALPHA_MIN:
                        continue
                    k = rowk + px
                    if loc >= lst[k]:
                        continue
                    ra = 1.0 / (1.0 - al)
                    Ti = T[k] * ra
                    w = al * Ti
                    vr = vC[k]
                    gdot = z * vDs[k] + _dot(fgr, vG[k])
                    w32 = np.float32(w)
                    for c in range(Dp):
                        vf[c] += w32 * vr[c]
                    vz += w * vDs[k]
                    v_al = Ti * gdot - S[k] * ra
                    S[k] += w * gdot
                    T[k] = Ti
                    if araw <= ALPHA_MAX:
                        dx = u - (px + 0.5)
                        vo += v_al * Gc
                        vsig = -v_al * al
                        va += 0.5 * dx * dx * vsig
                        vb += dx * dy * vsig
                        vc += 0.5 * dy * dy * vsig
                        vmx += vsig * (ca * dx + cb * dy)
                        vmy += vsig * (cb * dx + cc * dy)
            partial[j, 0] = vmx
            partial[j, 1] = vmy
            partial[j, 2] = va
            partial[j, 3] = vb
            partial[j, 4] = vc
            partial[j, 5] = vo
            partial[j, 6] = vz
            for d in range(D):
                partial[j, NPART + d] = vf[d]
    v_bg = np.empty(D, np.float64)
    for d in range(D):
        v_bg[d] = 0.0
    for t in range(n_tiles):
        for d in range(D):
            v_bg[d] += vbg_t[t, d]
    return partial, v_bg


@njit(cache=True, parallel=True)
def dominant_fwd(tile_start, isect_gauss, gp, width, height, tiles_x):
    """Per pixel, the Gaussian id with the largest alpha*T (first wins ties); -1 if none.
    Inputs as ``raster_fwd``. Returns int64 [H,W]."""
    out = np.empty((height, width), np.int64)
    n_tiles = tile_start.shape[0] - 1
    for t in prange(n_tiles):
        x0, y0, x1, y1, tw, npx = _tile(t, tiles_x, width, height)
        T = np.ones(npx, np.float64)  # < 0: done
        best = np.zeros(npx, np.float64)
        bid = np.full(npx, -1, np.int64)
        ndone = 0
        for j in range(tile_start[t], tile_start[t + 1]):
            g = isect_gauss[j]
            q = _walk(gp, g, x0, y0, x1, y1)
            by0, by1, Gr, Er, Fr = _rows(q)
            for py in range(by0, by1):
                dy, px0, px1, G, E, Gr, Er, Fr = _row(q, py, Gr, Er, Fr)
                rowk = (py - y0) * tw - x0
                for px in range(px0, px1):
                    al, araw, Gc, G, E = _pixel(q, dy, px, G, E)
                    if araw < ALPHA_MIN:
                        continue
                    k = rowk + px
                    Tk, done = _composite(T, k, al)
                    ndone += done
                    if Tk < 0.0:
                        continue
                    w = al * Tk
                    if w > best[k]:
                        best[k] = w
                        bid[k] = g
            if ndone == npx:
                break
        for py in range(y0, y1):
            for px in range(x0, x1):
                out[py, px] = bid[(py - y0) * tw + (px - x0)]
    return out


@njit(cache=True, parallel=True)
def contrib_tiles(tile_start, isect_gauss, gp, width, height, tiles_x, lab):
    """Per-intersection sums of alpha*T over the labels present in the intersection's tile.
    Inputs as ``raster_fwd``; lab [H,W] int32. Returns acc [*] f64 (block[j] + s: intersection j,
    s-th label of its tile), block [n_isect+1] int64, isect_tile [n_isect] int32, tile_nl
    [n_tiles] int64 (labels per tile), tile_lab [n_tiles, 256] int32 (the sorted labels)."""
    n_tiles = tile_start.shape[0] - 1
    n_isect = isect_gauss.shape[0]
    tile_nl = np.empty(n_tiles, np.int64)
    tile_lab = np.empty((n_tiles, TILE * TILE), np.int32)
    slot = np.empty((height, width), np.int32)
    isect_tile = np.empty(n_isect, np.int32)
    for t in prange(n_tiles):
        x0, y0, x1, y1, tw, npx = _tile(t, tiles_x, width, height)
        buf = np.empty(npx, np.int32)
        k = 0
        for py in range(y0, y1):
            for px in range(x0, x1):
                buf[k] = lab[py, px]
                k += 1
        buf = np.sort(buf)
        nl = 0
        for k in range(buf.shape[0]):
            if k == 0 or buf[k] != buf[k - 1]:
                tile_lab[t, nl] = buf[k]
                nl += 1
        tile_nl[t] = nl
        for py in range(y0, y1):
            for px in range(x0, x1):
                lv = lab[py, px]
                s = 0
                while tile_lab[t, s] != lv:
                    s += 1
                slot[py, px] = s
        for j in range(tile_start[t], tile_start[t + 1]):
            isect_tile[j] = t
    block = np.empty(n_isect + 1, np.int64)
    block[0] = 0
    for j in range(n_isect):
        block[j + 1] = block[j] + tile_nl[isect_tile[j]]
    acc = np.empty(block[n_isect], np.float64)
    for t in prange(n_tiles):
        x0, y0, x1, y1, tw, npx = _tile(t, tiles_x, width, height)
        T = np.ones(npx, np.float64)  # < 0: done
        sl = np.empty(npx, np.int64)
        for py in range(y0, y1):
            for px in range(x0, x1):
                sl[(py - y0) * tw + (px - x0)] = slot[py, px]
        for a in range(block[tile_start[t]], block[tile_start[t + 1]]):
            acc[a] = 0.0
        ndone = 0
        for j in range(tile_start[t], tile_start[t + 1]):
            g = isect_gauss[j]
            base = block[j]
            q = _walk(gp, g, x0, y0, x1, y1)
            by0, by1, Gr, Er, Fr = _rows(q)
            for py in range(by0, by1):
                dy, px0, px1, G, E, Gr, Er, Fr = _row(q, py, Gr, Er, Fr)
                rowk = (py - y0) * tw - x0
                for px in range(px0, px1):
                    al, araw, Gc, G, E = _pixel(q, dy, px, G, E)
                    if araw < ALPHA_MIN:
                        continue
                    k = rowk + px
                    Tk, done = _composite(T, k, al)
                    ndone += done
                    if Tk < 0.0:
                        continue
                    acc[base + sl[k]] += al * Tk
            if ndone == npx:
                break
    return acc, block, isect_tile, tile_nl, tile_lab


@njit(cache=True, parallel=True)
def contrib_reduce(acc, block, isect_tile, tile_nl, tile_lab, L, goff, ntiles, isect_pos):
    """Fixed-order reduction of ``contrib_tiles`` per Gaussian. Returns float32 [N, L]."""
    n = goff.shape[0]
    out = np.zeros((n, L), np.float32)
    nchunk = max(1, min(64, n // 256))  # chunks of Gaussians (each allocates small work arrays)
    for ch in prange(nchunk):
        lo = ch * n // nchunk
        hi = (ch + 1) * n // nchunk
        for g in range(lo, hi):
            for kk in range(goff[g], goff[g] + ntiles[g]):
                p = isect_pos[kk]
                t = isect_tile[p]
                for s in range(tile_nl[t]):
                    out[g, tile_lab[t, s]] += acc[block[p] + s]
    return out
