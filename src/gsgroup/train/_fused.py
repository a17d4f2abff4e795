"""Fused Numba kernels of the training step: L1 + SSIM loss with its gradient, Adam, and the
identity cross-entropy through its 1x1 classifier.

Each kernel does in one call what the PyTorch path does in dozens of small operators (each with
its own pass over memory and its own allocation). Parallel loops run over image rows or over
independent elements; every sum over rows is kept per row and added up in row order afterwards,
so results do not depend on the thread count or the schedule. ``fastmath`` stays off but for the
classifier's dot products (see there): float operations run in the written order.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

C1, C2 = 0.01**2, 0.03**2  # SSIM's stabilising constants for a data range of 1


@njit(cache=True, inline="always")
def _hblur(src, dst, g, c):
    """dst[i] = sum_k g[k] src[i + (k - r) c] (zero outside the row): a horizontal blur of one
    channels-last row [W*c], each channel with its own neighbours. (Slices indexed from 0 keep
    Numba's negative-index checks out of the inner loops, so they vectorise.)"""
    n = src.shape[0]
    r = g.shape[0] // 2
    dst[:] = 0.0
    for k in range(g.shape[0]):
        off = (k - r) * c
        lo, hi = max(0, -off), min(n, n - off)
        s = src[lo + off : hi + off]
        d = dst[lo:hi]
        gk = g[k]
        for i in range(hi - lo):
            d[i] += gk * s[i]


@njit(cache=True, inline="always")
def _vblur_row(src, dst, g, row):
    """dst[j] = sum_k g[k] src[j, row + k - r] (zero outside): row ``row`` of a vertical blur of
    each of the maps src [J, H, n] into dst [J, n]."""
    r = g.shape[0] // 2
    h = src.shape[1]
    n = src.shape[2]
    dst[:] = 0.0
    for k in range(g.shape[0]):
        rr = row + k - r
        if rr < 0 or rr >= h:
            continue
        gk = g[k]
        for j in range(src.shape[0]):
            s = src[j, rr]
            d = dst[j]
            for i in range(n):
                d[i] += gk * s[i]


@njit(parallel=True, cache=True)
def l1_ssim(x, y, g, c, ssim_weight):
    """(1 - w) mean|x - y| + w (1 - mean SSIM(x, y)) and its gradient with respect to x.

    x, y [H, W*c] float32: channels-last images with their rows flattened; g [11] float32, the 1D
    Gaussian window (SSIM's window is g g^T with zero padding). Returns (loss float, grad [H, W*c]
    float32). The gradient comes from the chain rule through the window: with S the SSIM map,
    dS/dx = G * dS/dmu_x + 2 x G * dS/dsigma_xx + y G * dS/dsigma_xy (G symmetric: its own adjoint).
    """
    h, n = x.shape
    size = h * n
    hs = np.empty((5, h, n), np.float32)  # horizontal blurs of x, y, xx, yy, xy
    for row in prange(h):
        sq = np.empty((3, n), np.float32)
        xr, yr = x[row], y[row]
        for i in range(n):
            sq[0, i] = xr[i] * xr[i]
            sq[1, i] = yr[i] * yr[i]
            sq[2, i] = xr[i] * yr[i]
        _hblur(xr, hs[0, row], g, c)
        _hblur(yr, hs[1, row], g, c)
        for j in range(3):
            _hblur(sq[j], hs[2 + j, row], g, c)
    dmap = np.empty((3, h, n), np.float32)  # dS/d mu_x, dS/d sigma_xx, dS/d sigma_xy per pixel
    ssim_rows = np.zeros(h)
    l1_rows = np.zeros(h)
    for row in prange(h):
        v = np.empty((5, n), np.float32)
        _vblur_row(hs, v, g, row)
        d0, d1, d2 = dmap[0, row], dmap[1, row], dmap[2, row]
        mxs, mys, xxs, yys, xys = v[0], v[1], v[2], v[3], v[4]
        smap = np.empty(n, np.float32)
        for i in range(n):
            mx, my = mxs[i], mys[i]
            a1 = np.float32(2.0) * mx * my + np.float32(C1)
            a2 = np.float32(2.0) * (xys[i] - mx * my) + np.float32(C2)
            b1 = mx * mx + my * my + np.float32(C1)
            b2 = xxs[i] - mx * mx + yys[i] - my * my + np.float32(C2)
            inv = np.float32(1.0) / (b1 * b2)
            s = a1 * a2 * inv
            smap[i] = s
            d0[i] = np.float32(2.0) * (my * (a2 - a1) * inv - s * mx * (b2 - b1) * inv)
            d1[i] = -s * b1 * inv
            d2[i] = np.float32(2.0) * a1 * inv
        s_sum = 0.0
        l_sum = 0.0
        xr, yr = x[row], y[row]
        for i in range(n):
            s_sum += smap[i]
            l_sum += abs(xr[i] - yr[i])
        ssim_rows[row] = s_sum
        l1_rows[row] = l_sum
    grad = np.empty((h, n), np.float32)
    a = np.float32(-ssim_weight / size)
    b = np.float32((1.0 - ssim_weight) / size)
    for row in prange(h):
        vb = np.empty((3, n), np.float32)
        _vblur_row(dmap, vb, g, row)
        bl = np.empty((3, n), np.float32)
        for j in range(3):
            _hblur(vb[j], bl[j], g, c)
        xr, yr, gr = x[row], y[row], grad[row]
        b0, b1_, b2_ = bl[0], bl[1], bl[2]
        for i in range(n):
            d = xr[i] - yr[i]
            sign = np.float32(1.0) if d > 0 else (np.float32(-1.0) if d < 0 else np.float32(0.0))
            gr[i] = a * (b0[i] + np.float32(2.0) * xr[i] * b1_[i] + yr[i] * b2_[i]) + b * sign
    ssim_mean = 0.0
    l1_mean = 0.0
    for row in range(h):
        ssim_mean += ssim_rows[row]
        l1_mean += l1_rows[row]
    loss = (1.0 - ssim_weight) * l1_mean / size + ssim_weight * (1.0 - ssim_mean / size)
    return loss, grad


def _adam(param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, step):
    """One Adam step in place on flat float32 arrays, in torch.optim.Adam's order of operations
    (lerp of the first moment, mul + addcmul of the second, bias corrections; ``step`` 1-based)."""
    w1 = np.float32(1.0 - beta1)
    b2 = np.float32(beta2)
    w2 = np.float32(1.0 - beta2)
    step_size = np.float32(lr / (1.0 - beta1**step))
    bc2_sqrt = np.float32(math.sqrt(1.0 - beta2**step))
    e = np.float32(eps)
    for i in prange(param.shape[0]):
        gi = grad[i]
        m = exp_avg[i] + w1 * (gi - exp_avg[i])
        v = exp_avg_sq[i] * b2 + w2 * gi * gi
        exp_avg[i] = m
        exp_avg_sq[i] = v
        param[i] = param[i] - step_size * (m / (np.sqrt(v) / bc2_sqrt + e))


adam = njit(parallel=True, cache=True)(_adam)
adam_serial = njit(cache=True)(_adam)  # for small parameters: no thread start-up


@njit(cache=True, inline="always")
def _softmax_minus_onehot(p, top, t):
    """Logits p [K] (top = their maximum) -> softmax(p) - onehot(t) in place; returns the
    cross-entropy -log softmax(p)[t] (float64)."""
    zt = np.float64(p[t]) - top
    total = 0.0
    for j in range(p.shape[0]):
        p[j] = np.exp(p[j] - top)
        total += p[j]
    inv = np.float32(1.0 / total)
    for j in range(p.shape[0]):
        p[j] *= inv
    p[t] -= 1.0
    return math.log(total) - zt


@njit(cache=True, inline="always")
def _row_totals(count_rows, bad_rows, loss_rows):
    """Per-row counts and losses of the cross-entropy kernels added up in row order (so the
    result does not depend on the threads): (count, bad, loss)."""
    count = 0
    bad = 0
    loss = 0.0
    for row in range(count_rows.shape[0]):
        count += count_rows[row]
        bad += bad_rows[row]
        loss += loss_rows[row]
    return count, bad, loss


# reassoc + contract: LLVM may vectorise the E-long dot products; the order is fixed when the
# kernel compiles, the same for every pixel and thread, so results still do not depend on threads.
@njit(parallel=True, cache=True, fastmath={"reassoc", "contract"})
def classifier_cross_entropy(f, target, weight, bias, ignore_index):
    """Mean cross-entropy of softmax(weight f + bias) against ``target`` over the non-ignored
    pixels, and its gradients.

    f [H, W, E] float32 rendered encodings, target [H, W] int64 class ids (or ``ignore_index``),
    weight [K, E], bias [K] float32. Returns (loss, count of non-ignored pixels, bad: count of ids
    outside [0, K), grad_f [H, W, E], grad_weight [K, E], grad_bias [K]); gradients of the mean.
    """
    h, w, e = f.shape
    k = weight.shape[0]
    grad_f = np.zeros((h, w, e), np.float32)
    part_w = np.zeros((h, k, e), np.float32)
    part_b = np.zeros((h, k), np.float32)
    loss_rows = np.zeros(h)
    count_rows = np.zeros(h, np.int64)
    bad_rows = np.zeros(h, np.int64)
    for row in prange(h):
        p = np.empty(k, np.float32)
        pw = part_w[row]
        pb = part_b[row]
        for col in range(w):
            t = target[row, col]
            if t == ignore_index:
                continue
            if t < 0 or t >= k:
                bad_rows[row] += 1
                continue
            fv = f[row, col]
            top = np.float32(-np.inf)
            for j in range(k):
                wj = weight[j]
                z = bias[j]
                for d in range(e):
                    z += wj[d] * fv[d]
                p[j] = z
                top = max(top, z)
            loss_rows[row] += _softmax_minus_onehot(p, top, t)
            count_rows[row] += 1
            gf = grad_f[row, col]
            for j in range(k):
                pj = p[j]
                pb[j] += pj
                wj = weight[j]
                pwj = pw[j]
                for d in range(e):
                    gf[d] += pj * wj[d]
                    pwj[d] += pj * fv[d]
    count, bad, loss = _row_totals(count_rows, bad_rows, loss_rows)
    grad_w = np.zeros((k, e), np.float32)
    grad_b = np.zeros(k, np.float32)
    if count == 0:
        return 0.0, count, bad, grad_f, grad_w, grad_b
    scale = np.float32(1.0 / count)
    for row in range(h):
        grad_b += part_b[row]
        grad_w += part_w[row]
    grad_b *= scale
    grad_w *= scale
    for row in prange(h):
        gr = grad_f[row]
        for col in range(w):
            gc = gr[col]
            for d in range(e):
                gc[d] *= scale
    return loss / count, count, bad, grad_f, grad_w, grad_b


@njit(parallel=True, cache=True)
def logits_cross_entropy(z, target, bias, ignore_index):
    """``classifier_cross_entropy`` for logits rendered directly: softmax(z + bias) per pixel.

    z [H, W, K] float32 (the classifier's weight already applied per Gaussian), target [H, W]
    int ids (or ``ignore_index``), bias [K] float32. Returns (loss, count, bad, grad_z [H, W, K],
    grad_bias [K]); gradients of the mean over the non-ignored pixels.
    """
    h, w, k = z.shape
    grad_z = np.zeros((h, w, k), np.float32)
    part_b = np.zeros((h, k), np.float32)
    loss_rows = np.zeros(h)
    count_rows = np.zeros(h, np.int64)
    bad_rows = np.zeros(h, np.int64)
    for row in prange(h):
        pb = part_b[row]
        for col in range(w):
            t = target[row, col]
            if t == ignore_index:
                continue
            if t < 0 or t >= k:
                bad_rows[row] += 1
                continue
            p = grad_z[row, col]
            zr = z[row, col]
            top = np.float32(-np.inf)
            for j in range(k):
                p[j] = zr[j] + bias[j]
                top = max(top, p[j])
            loss_rows[row] += _softmax_minus_onehot(p, top, t)
            count_rows[row] += 1
            for j in range(k):
                pb[j] += p[j]
    count, bad, loss = _row_totals(count_rows, bad_rows, loss_rows)
    grad_b = np.zeros(k, np.float32)
    if count == 0:
        return 0.0, count, bad, grad_z, grad_b
    scale = np.float32(1.0 / count)
    for row in range(h):
        grad_b += part_b[row]
    grad_b *= scale
    for row in prange(h):
        gr = grad_z[row]
        for col in range(w):
            gc = gr[col]
            for j in range(k):
                gc[j] *= scale
    return loss / count, count, bad, grad_z, grad_b
