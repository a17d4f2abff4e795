"""Numba kernels of the tile-based Gaussian rasterizer (forward, backward and helpers).

All kernels take contiguous arrays. Per-Gaussian projection state is float64 (accuracy);
inputs and image-sized outputs are float32. Every parallel loop writes to disjoint memory,
and every reduction runs in a fixed order, so results do not depend on the thread count.

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
def _cov_world(means_unused, quats, scales, i, Rq, M, Sig):
    """World covariance of Gaussian i: Sig = Rq S S Rq^T. Returns (qw,qx,qy,qz,qnorm)."""
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
    return qw, qx, qy, qz, qn


@njit(cache=True, parallel=True)
def project_fwd(means, quats, scales, opac, V, intr, width, height, near, far, eps2d):
    """Project N Gaussians.

    V [4,4] float64 world-to-camera; intr = (fx, fy, cx, cy) float64.
    Returns mean2d [N,2] f64, conic [N,3] f64 (a, b, c of the inverse 2D covariance),
    z [N] f64, radii [N] int32, rect [N,4] int32 (tile x0,y0,x1,y1; end exclusive),
    ext [N,3] f64 (pixel half-extent x, y of the alpha >= 1/255 ellipse plus margin, and the
    log-threshold s_max; ext[:,0] < 0 means the Gaussian can never pass the alpha threshold),
    ntiles [N] int64.
    """
    n = means.shape[0]
    mean2d = np.zeros((n, 2), np.float64)
    conic = np.zeros((n, 3), np.float64)
    zs = np.zeros(n, np.float64)
    radii = np.zeros(n, np.int32)
    rect = np.zeros((n, 4), np.int32)
    ext = np.zeros((n, 3), np.float64)
    ntiles = np.zeros(n, np.int64)
    fx, fy, cx, cy = intr[0], intr[1], intr[2], intr[3]
    tan_fovx = 0.5 * width / fx
    tan_fovy = 0.5 * height / fy
    lim_xp = (width - cx) / fx + 0.3 * tan_fovx
    lim_xn = cx / fx + 0.3 * tan_fovx
    lim_yp = (height - cy) / fy + 0.3 * tan_fovy
    lim_yn = cy / fy + 0.3 * tan_fovy
    tiles_x = (width + TILE - 1) // TILE
    tiles_y = (height + TILE - 1) // TILE
    nchunk = min(n, 256)
    for ch in prange(nchunk):
        lo = ch * n // nchunk
        hi = (ch + 1) * n // nchunk
        Rq = np.empty((3, 3))
        M = np.empty((3, 3))
        Sig = np.empty((3, 3))
        Wm = np.empty((3, 3))
        tmp = np.empty((3, 3))
        Sc = np.empty((3, 3))
        for r in range(3):
            for c in range(3):
                Wm[r, c] = V[r, c]
        for i in range(lo, hi):
            mx = np.float64(means[i, 0])
            my = np.float64(means[i, 1])
            mz = np.float64(means[i, 2])
            px = Wm[0, 0] * mx + Wm[0, 1] * my + Wm[0, 2] * mz + V[0, 3]
            py = Wm[1, 0] * mx + Wm[1, 1] * my + Wm[1, 2] * mz + V[1, 3]
            pz = Wm[2, 0] * mx + Wm[2, 1] * my + Wm[2, 2] * mz + V[2, 3]
            zs[i] = pz
            if pz < near or pz > far:
                continue
            _cov_world(means, quats, scales, i, Rq, M, Sig)
            _mm(Wm, Sig, tmp)
            _mmt(tmp, Wm, Sc)
            rz = 1.0 / pz
            tx = pz * min(lim_xp, max(-lim_xn, px * rz))
            ty = pz * min(lim_yp, max(-lim_yn, py * rz))
            j00 = fx * rz
            j02 = -fx * tx * rz * rz
            j11 = fy * rz
            j12 = -fy * ty * rz * rz
            t00 = j00 * Sc[0, 0] + j02 * Sc[2, 0]
            t01 = j00 * Sc[0, 1] + j02 * Sc[2, 1]
            t02 = j00 * Sc[0, 2] + j02 * Sc[2, 2]
            t11 = j11 * Sc[1, 1] + j12 * Sc[2, 1]
            t12 = j11 * Sc[1, 2] + j12 * Sc[2, 2]
            c00 = t00 * j00 + t02 * j02 + eps2d
            c01 = t01 * j11 + t02 * j12
            c11 = t11 * j11 + t12 * j12 + eps2d
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
            mean2d[i, 0] = u
            mean2d[i, 1] = v
            conic[i, 0] = c11 / det
            conic[i, 1] = -c01 / det
            conic[i, 2] = c00 / det
            o = np.float64(opac[i])
            if o * 255.0 < 0.999:
                ext[i, 0] = -1.0
                ext[i, 1] = -1.0
                ext[i, 2] = -1.0
            else:
                smax = max(math.log(255.0 * o), 0.0) + 1e-6
                ext[i, 0] = math.sqrt(2.0 * smax * c00) + 1.0
                ext[i, 1] = math.sqrt(2.0 * smax * c11) + 1.0
                ext[i, 2] = smax
    return mean2d, conic, zs, radii, rect, ext, ntiles


@njit(cache=True)
def bin_gaussians(order, rect, ntiles, goff, tiles_x, n_tiles, n_isect):
    """Tile-major, depth-ordered intersection lists.

    order [N]: Gaussian ids sorted front to back. goff [N]: exclusive prefix sum of ntiles.
    Returns tile_start [n_tiles+1] int64, isect_gauss [n_isect] int32 (Gaussian id),
    isect_pos [n_isect] int64 (for Gaussian g, isect_pos[goff[g] + k] is the position of
    its k-th tile in the sorted list).
    """
    n = order.shape[0]
    tile_start = np.zeros(n_tiles + 1, np.int64)
    for oi in range(n):
        g = order[oi]
        if ntiles[g] == 0:
            continue
        for ty in range(rect[g, 1], rect[g, 3]):
            for tx in range(rect[g, 0], rect[g, 2]):
                tile_start[ty * tiles_x + tx + 1] += 1
    for t in range(n_tiles):
        tile_start[t + 1] += tile_start[t]
    fill = tile_start[:-1].copy()
    isect_gauss = np.empty(n_isect, np.int32)
    isect_pos = np.empty(n_isect, np.int64)
    for oi in range(n):
        g = order[oi]
        if ntiles[g] == 0:
            continue
        k = goff[g]
        for ty in range(rect[g, 1], rect[g, 3]):
            for tx in range(rect[g, 0], rect[g, 2]):
                t = ty * tiles_x + tx
                p = fill[t]
                fill[t] = p + 1
                isect_gauss[p] = g
                isect_pos[k] = p
                k += 1
    return tile_start, isect_gauss, isect_pos


@njit(cache=True, inline="always")
def _box(u, v, ex, ey, x0, y0, x1, y1):
    """Pixel sub-rectangle [bx0,bx1) x [by0,by1) of the tile [x0,x1) x [y0,y1) that may hold
    alpha >= 1/255 for a Gaussian at (u, v) with half extents (ex, ey)."""
    bx0 = int(max(float(x0), math.floor(u - ex - 0.5)))
    bx1 = int(min(float(x1), math.ceil(u + ex - 0.5) + 1.0))
    by0 = int(max(float(y0), math.floor(v - ey - 0.5)))
    by1 = int(min(float(y1), math.ceil(v + ey - 0.5) + 1.0))
    return bx0, bx1, by0, by1


RECUR_MAX_A = 50.0  # use the exp recurrence along rows only for moderate conic a


@njit(cache=True, inline="always")
def _row_span(u, dy, ca, cb, cc, smax, x0, x1, Ea):
    """Columns [px0, px1) of a tile row (x in [x0, x1)) whose pixel centres may have
    sigma <= smax, plus the start values of the row recurrence for G = exp(-sigma):
    G (at px0), E = exp(-(sigma(px0+1) - sigma(px0))) and Ea (the caller's exp(-a), by which E
    is multiplied each step). Returned Ea = -1 means: evaluate exp(-sigma) directly (very sharp
    Gaussians)."""
    disc = 2.0 * ca * smax - (ca * cc - cb * cb) * dy * dy
    if disc < 0.0:
        return 0, 0, 0.0, 0.0, -1.0
    sq = math.sqrt(disc)
    dxlo = (-cb * dy - sq) / ca
    dxhi = (-cb * dy + sq) / ca
    px0 = int(max(float(x0), math.floor(u - 0.5 - dxhi)))
    px1 = int(min(float(x1), math.ceil(u - 0.5 - dxlo) + 1.0))
    if px0 >= px1 or ca > RECUR_MAX_A:
        return px0, px1, 0.0, 0.0, -1.0
    dx = u - (px0 + 0.5)
    G = math.exp(-(0.5 * (ca * dx * dx + cc * dy * dy) + cb * dx * dy))
    E = math.exp(-(0.5 * ca - ca * dx - cb * dy))
    return px0, px1, G, E, Ea


@njit(cache=True, parallel=True)
def raster_fwd(tile_start, isect_gauss, tile_perm, mean2d, conic, opac, ext, zs, feat, bg,
               width, height, tiles_x):
    """Front-to-back alpha blending per 16x16 tile.

    Returns image [H,W,D] f32, alpha [H,W] f32, depth [H,W] f32, T_final [H,W] f64,
    depth_sum [H,W] f64 (sum of w*z), last [H,W] int32 (1 + local index of the last
    contributor in the tile list, 0 if none).
    """
    D = feat.shape[1]
    image = np.empty((height, width, D), np.float32)
    alpha = np.empty((height, width), np.float32)
    depth = np.empty((height, width), np.float32)
    Tfin = np.empty((height, width), np.float64)
    dsum = np.empty((height, width), np.float64)
    last = np.empty((height, width), np.int32)
    n_tiles = tile_perm.shape[0]
    for it in prange(n_tiles):
        t = tile_perm[it]
        x0 = (t % tiles_x) * TILE
        y0 = (t // tiles_x) * TILE
        x1 = min(x0 + TILE, width)
        y1 = min(y0 + TILE, height)
        tw = x1 - x0
        npx = tw * (y1 - y0)
        T = np.ones(npx, np.float64)
        C = np.zeros((npx, D), np.float64)
        Dz = np.zeros(npx, np.float64)
        lst = np.zeros(npx, np.int32)
        done = np.zeros(npx, np.bool_)
        ndone = 0
        fg = np.empty(D, np.float64)
        s = tile_start[t]
        e = tile_start[t + 1]
        for j in range(s, e):
            g = isect_gauss[j]
            ex = ext[g, 0]
            if ex < 0.0:
                continue
            u = mean2d[g, 0]
            v = mean2d[g, 1]
            bx0, bx1, by0, by1 = _box(u, v, ex, ext[g, 1], x0, y0, x1, y1)
            if bx0 >= bx1 or by0 >= by1:
                continue
            smax = ext[g, 2]
            ca = conic[g, 0]
            cb = conic[g, 1]
            cc = conic[g, 2]
            Ea0 = math.exp(-ca)
            o = np.float64(opac[g])
            z = zs[g]
            for d in range(D):
                fg[d] = feat[g, d]
            for py in range(by0, by1):
                dy = v - (py + 0.5)
                px0, px1, G, E, Ea = _row_span(u, dy, ca, cb, cc, smax, x0, x1, Ea0)
                for px in range(px0, px1):
                    Gc = G
                    if Ea >= 0.0:
                        G *= E
                        E *= Ea
                    else:
                        dx = u - (px + 0.5)
                        Gc = math.exp(-(0.5 * (ca * dx * dx + cc * dy * dy) + cb * dx * dy))
                    k = (py - y0) * tw + (px - x0)
                    if done[k]:
                        continue
                    al = min(ALPHA_MAX, o * Gc)
                    if al < ALPHA_MIN:
                        continue
                    nT = T[k] * (1.0 - al)
                    if nT < T_MIN:
                        done[k] = True
                        ndone += 1
                        continue
                    w = al * T[k]
                    for d in range(D):
                        C[k, d] += w * fg[d]
                    Dz[k] += w * z
                    T[k] = nT
                    lst[k] = j - s + 1
            if ndone == npx:
                break
        for py in range(y0, y1):
            for px in range(x0, x1):
                k = (py - y0) * tw + (px - x0)
                Tk = T[k]
                for d in range(D):
                    image[py, px, d] = C[k, d] + Tk * bg[d]
                a = 1.0 - Tk
                alpha[py, px] = a
                depth[py, px] = Dz[k] / a if a > 0.0 else 0.0
                Tfin[py, px] = Tk
                dsum[py, px] = Dz[k]
                last[py, px] = lst[k]
    return image, alpha, depth, Tfin, dsum, last


@njit(cache=True, fastmath={"reassoc", "contract", "nsz"})
def _dotrow(a, M, k):
    """sum_d a[d] * M[k, d] (reassociated so it vectorises; used only for gradients)."""
    s = 0.0
    for d in range(a.shape[0]):
        s += a[d] * M[k, d]
    return s


@njit(cache=True, parallel=True)
def raster_bwd(tile_start, isect_gauss, tile_perm, mean2d, conic, opac, ext, zs, feat, bg,
               width, height, tiles_x, Tfin, dsum, last, v_img, v_alpha, v_depth):
    """Back-to-front gradient pass per tile. Returns partial [n_isect, 7+D] f32 (see module doc)
    and v_bg [D] f64."""
    D = feat.shape[1]
    n_isect = isect_gauss.shape[0]
    partial = np.empty((n_isect, NPART + D), np.float32)
    n_tiles = tile_perm.shape[0]
    vbg_t = np.zeros((n_tiles, D), np.float64)
    for it in prange(n_tiles):
        t = tile_perm[it]
        x0 = (t % tiles_x) * TILE
        y0 = (t // tiles_x) * TILE
        x1 = min(x0 + TILE, width)
        y1 = min(y0 + TILE, height)
        tw = x1 - x0
        npx = tw * (y1 - y0)
        T = np.empty(npx, np.float64)
        S = np.empty(npx, np.float64)
        vDs = np.empty(npx, np.float64)
        vC = np.empty((npx, D), np.float64)
        lst = np.empty(npx, np.int32)
        vf = np.empty(D, np.float64)
        fg = np.empty(D, np.float64)
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
                    vC[k, d] = gv
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
            for d in range(D):
                vf[d] = 0.0
            ex = ext[g, 0]
            if ex >= 0.0:
                u = mean2d[g, 0]
                v = mean2d[g, 1]
                bx0, bx1, by0, by1 = _box(u, v, ex, ext[g, 1], x0, y0, x1, y1)
                smax = ext[g, 2]
                ca = conic[g, 0]
                cb = conic[g, 1]
                cc = conic[g, 2]
                Ea0 = math.exp(-ca)
                o = np.float64(opac[g])
                z = zs[g]
                for d in range(D):
                    fg[d] = feat[g, d]
                for py in range(by0, by1):
                    dy = v - (py + 0.5)
                    px0, px1, G, E, Ea = _row_span(u, dy, ca, cb, cc, smax, x0, x1, Ea0)
                    for px in range(px0, px1):
                        dx = u - (px + 0.5)
                        Gc = G
                        if Ea >= 0.0:
                            G *= E
                            E *= Ea
                        else:
                            Gc = math.exp(-(0.5 * (ca * dx * dx + cc * dy * dy) + cb * dx * dy))
                        k = (py - y0) * tw + (px - x0)
                        if loc >= lst[k]:
                            continue
                        araw = o * Gc
                        al = min(ALPHA_MAX, araw)
                        if al < ALPHA_MIN:
                            continue
                        ra = 1.0 / (1.0 - al)
                        Ti = T[k] * ra
                        w = al * Ti
                        gdot = z * vDs[k] + _dotrow(fg, vC, k)
                        for d in range(D):
                            vf[d] += w * vC[k, d]
                        vz += w * vDs[k]
                        v_al = Ti * gdot - S[k] * ra
                        S[k] += w * gdot
                        T[k] = Ti
                        if araw <= ALPHA_MAX:
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
    v_bg = np.zeros(D, np.float64)
    for t in range(n_tiles):
        for d in range(D):
            v_bg[d] += vbg_t[t, d]
    return partial, v_bg


@njit(cache=True, parallel=True)
def project_bwd(means, quats, scales, V, intr, width, height, eps2d, radii, goff, ntiles,
                isect_pos, partial, want_feat):
    """Reduce per-intersection partials per Gaussian (fixed order) and back-propagate the
    projection. Returns v_means [N,3], v_quats [N,4], v_scales [N,3], v_opac [N],
    v_feat [N,D] (f32; [N,0] if not want_feat), v_mean2d [N,2] f32."""
    n = means.shape[0]
    D = partial.shape[1] - NPART
    v_means = np.zeros((n, 3), np.float32)
    v_quats = np.zeros((n, 4), np.float32)
    v_scales = np.zeros((n, 3), np.float32)
    v_opac = np.zeros(n, np.float32)
    v_mean2d = np.zeros((n, 2), np.float32)
    Df = D if want_feat else 0
    v_feat = np.zeros((n, Df), np.float32)
    fx, fy, cx, cy = intr[0], intr[1], intr[2], intr[3]
    tan_fovx = 0.5 * width / fx
    tan_fovy = 0.5 * height / fy
    lim_xp = (width - cx) / fx + 0.3 * tan_fovx
    lim_xn = cx / fx + 0.3 * tan_fovx
    lim_yp = (height - cy) / fy + 0.3 * tan_fovy
    lim_yn = cy / fy + 0.3 * tan_fovy
    nchunk = min(n, 256)
    for ch in prange(nchunk):
        lo = ch * n // nchunk
        hi = (ch + 1) * n // nchunk
        Rq = np.empty((3, 3))
        M = np.empty((3, 3))
        Sig = np.empty((3, 3))
        Wm = np.empty((3, 3))
        tmp = np.empty((3, 3))
        Sc = np.empty((3, 3))
        vSc = np.empty((3, 3))
        vSig = np.empty((3, 3))
        acc = np.empty(NPART + D, np.float64)
        for r in range(3):
            for c in range(3):
                Wm[r, c] = V[r, c]
        for i in range(lo, hi):
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
            mx = np.float64(means[i, 0])
            my = np.float64(means[i, 1])
            mz = np.float64(means[i, 2])
            px = Wm[0, 0] * mx + Wm[0, 1] * my + Wm[0, 2] * mz + V[0, 3]
            py = Wm[1, 0] * mx + Wm[1, 1] * my + Wm[1, 2] * mz + V[1, 3]
            pz = Wm[2, 0] * mx + Wm[2, 1] * my + Wm[2, 2] * mz + V[2, 3]
            qw, qx, qy, qz, qn = _cov_world(means, quats, scales, i, Rq, M, Sig)
            _mm(Wm, Sig, tmp)
            _mmt(tmp, Wm, Sc)
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
            t00 = j00 * Sc[0, 0] + j02 * Sc[2, 0]
            t01 = j00 * Sc[0, 1] + j02 * Sc[2, 1]
            t02 = j00 * Sc[0, 2] + j02 * Sc[2, 2]
            t10 = j11 * Sc[1, 0] + j12 * Sc[2, 0]
            t11 = j11 * Sc[1, 1] + j12 * Sc[2, 1]
            t12 = j11 * Sc[1, 2] + j12 * Sc[2, 2]
            c00 = t00 * j00 + t02 * j02 + eps2d
            c01 = t01 * j11 + t02 * j12
            c11 = t11 * j11 + t12 * j12 + eps2d
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
            vw = 2.0 * (-qz * tmp[0, 1] + qy * tmp[0, 2] + qz * tmp[1, 0] - qx * tmp[1, 2]
                        - qy * tmp[2, 0] + qx * tmp[2, 1])
            vx = 2.0 * (qy * tmp[0, 1] + qz * tmp[0, 2] + qy * tmp[1, 0] - 2.0 * qx * tmp[1, 1]
                        - qw * tmp[1, 2] + qz * tmp[2, 0] + qw * tmp[2, 1] - 2.0 * qx * tmp[2, 2])
            vy = 2.0 * (-2.0 * qy * tmp[0, 0] + qx * tmp[0, 1] + qw * tmp[0, 2] + qx * tmp[1, 0]
                        + qz * tmp[1, 2] - qw * tmp[2, 0] + qz * tmp[2, 1] - 2.0 * qy * tmp[2, 2])
            vz = 2.0 * (-2.0 * qz * tmp[0, 0] - qw * tmp[0, 1] + qx * tmp[0, 2] + qw * tmp[1, 0]
                        - 2.0 * qz * tmp[1, 1] + qy * tmp[1, 2] + qx * tmp[2, 0] + qy * tmp[2, 1])
            dot = qw * vw + qx * vx + qy * vy + qz * vz
            v_quats[i, 0] = (vw - qw * dot) / qn
            v_quats[i, 1] = (vx - qx * dot) / qn
            v_quats[i, 2] = (vy - qy * dot) / qn
            v_quats[i, 3] = (vz - qz * dot) / qn
    return v_means, v_quats, v_scales, v_opac, v_feat, v_mean2d


@njit(cache=True, parallel=True)
def dominant_fwd(tile_start, isect_gauss, tile_perm, mean2d, conic, opac, ext, width, height,
                 tiles_x):
    """Per pixel, the Gaussian id with the largest alpha*T (first wins ties); -1 if none.
    Returns int64 [H,W]."""
    out = np.full((height, width), -1, np.int64)
    n_tiles = tile_perm.shape[0]
    for it in prange(n_tiles):
        t = tile_perm[it]
        x0 = (t % tiles_x) * TILE
        y0 = (t // tiles_x) * TILE
        x1 = min(x0 + TILE, width)
        y1 = min(y0 + TILE, height)
        tw = x1 - x0
        npx = tw * (y1 - y0)
        T = np.ones(npx, np.float64)
        best = np.zeros(npx, np.float64)
        done = np.zeros(npx, np.bool_)
        ndone = 0
        for j in range(tile_start[t], tile_start[t + 1]):
            g = isect_gauss[j]
            ex = ext[g, 0]
            if ex < 0.0:
                continue
            u = mean2d[g, 0]
            v = mean2d[g, 1]
            bx0, bx1, by0, by1 = _box(u, v, ex, ext[g, 1], x0, y0, x1, y1)
            smax = ext[g, 2]
            ca = conic[g, 0]
            cb = conic[g, 1]
            cc = conic[g, 2]
            Ea0 = math.exp(-ca)
            o = np.float64(opac[g])
            for py in range(by0, by1):
                dy = v - (py + 0.5)
                px0, px1, G, E, Ea = _row_span(u, dy, ca, cb, cc, smax, x0, x1, Ea0)
                for px in range(px0, px1):
                    Gc = G
                    if Ea >= 0.0:
                        G *= E
                        E *= Ea
                    else:
                        dx = u - (px + 0.5)
                        Gc = math.exp(-(0.5 * (ca * dx * dx + cc * dy * dy) + cb * dx * dy))
                    k = (py - y0) * tw + (px - x0)
                    if done[k]:
                        continue
                    al = min(ALPHA_MAX, o * Gc)
                    if al < ALPHA_MIN:
                        continue
                    nT = T[k] * (1.0 - al)
                    if nT < T_MIN:
                        done[k] = True
                        ndone += 1
                        continue
                    w = al * T[k]
                    if w > best[k]:
                        best[k] = w
                        out[py, px] = g
                    T[k] = nT
            if ndone == npx:
                break
    return out


@njit(cache=True, parallel=True)
def contrib_fwd(tile_start, isect_gauss, tile_perm, mean2d, conic, opac, ext, width, height,
                tiles_x, lab, L, goff, ntiles, isect_pos):
    """Sum of alpha*T per (Gaussian, pixel label). lab [H,W] int32 in [0,L).
    Returns float32 [N, L]. Per-intersection partials over the labels present in the
    intersection's tile, then a fixed-order reduction per Gaussian."""
    n = mean2d.shape[0]
    n_tiles = tile_perm.shape[0]
    n_isect = isect_gauss.shape[0]
    tile_nl = np.zeros(n_tiles, np.int64)
    tile_lab = np.empty((n_tiles, TILE * TILE), np.int32)
    slot = np.empty((height, width), np.int32)
    isect_tile = np.empty(n_isect, np.int32)
    for t in prange(n_tiles):
        x0 = (t % tiles_x) * TILE
        y0 = (t // tiles_x) * TILE
        x1 = min(x0 + TILE, width)
        y1 = min(y0 + TILE, height)
        buf = np.empty((x1 - x0) * (y1 - y0), np.int32)
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
    block = np.zeros(n_isect + 1, np.int64)
    for j in range(n_isect):
        block[j + 1] = block[j] + tile_nl[isect_tile[j]]
    acc = np.zeros(block[n_isect], np.float64)
    for it in prange(n_tiles):
        t = tile_perm[it]
        x0 = (t % tiles_x) * TILE
        y0 = (t // tiles_x) * TILE
        x1 = min(x0 + TILE, width)
        y1 = min(y0 + TILE, height)
        tw = x1 - x0
        npx = tw * (y1 - y0)
        T = np.ones(npx, np.float64)
        done = np.zeros(npx, np.bool_)
        ndone = 0
        for j in range(tile_start[t], tile_start[t + 1]):
            g = isect_gauss[j]
            ex = ext[g, 0]
            if ex < 0.0:
                continue
            u = mean2d[g, 0]
            v = mean2d[g, 1]
            bx0, bx1, by0, by1 = _box(u, v, ex, ext[g, 1], x0, y0, x1, y1)
            smax = ext[g, 2]
            ca = conic[g, 0]
            cb = conic[g, 1]
            cc = conic[g, 2]
            Ea0 = math.exp(-ca)
            o = np.float64(opac[g])
            base = block[j]
            for py in range(by0, by1):
                dy = v - (py + 0.5)
                px0, px1, G, E, Ea = _row_span(u, dy, ca, cb, cc, smax, x0, x1, Ea0)
                for px in range(px0, px1):
                    Gc = G
                    if Ea >= 0.0:
                        G *= E
                        E *= Ea
                    else:
                        dx = u - (px + 0.5)
                        Gc = math.exp(-(0.5 * (ca * dx * dx + cc * dy * dy) + cb * dx * dy))
                    k = (py - y0) * tw + (px - x0)
                    if done[k]:
                        continue
                    al = min(ALPHA_MAX, o * Gc)
                    if al < ALPHA_MIN:
                        continue
                    nT = T[k] * (1.0 - al)
                    if nT < T_MIN:
                        done[k] = True
                        ndone += 1
                        continue
                    acc[base + slot[py, px]] += al * T[k]
                    T[k] = nT
            if ndone == npx:
                break
    out = np.zeros((n, L), np.float32)
    nchunk = min(n, 256)
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
