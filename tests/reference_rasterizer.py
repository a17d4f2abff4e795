"""Dense pure-PyTorch reference rasterizer for the tests (all Gaussians x all pixels).

Same semantics as gsgroup.render.rasterize (gsplat classic), written independently with
masks instead of loops; gradients come from autograd. Runs in float64 by default.
"""

from __future__ import annotations

import torch

TILE = 16


def quat_to_rot(q):
    """q [N,4] (w,x,y,z), normalised here -> R [N,3,3]."""
    q = q / q.norm(dim=1, keepdim=True)
    w, x, y, z = q.unbind(1)
    return torch.stack(
        [
            1 - 2 * (y * y + z * z),
            2 * (x * y - w * z),
            2 * (x * z + w * y),
            2 * (x * y + w * z),
            1 - 2 * (x * x + z * z),
            2 * (y * z - w * x),
            2 * (x * z - w * y),
            2 * (y * z + w * x),
            1 - 2 * (x * x + y * y),
        ],
        1,
    ).reshape(-1, 3, 3)


def project(means, quats, scales, viewmat, K, width, height, near, far, eps2d):
    """Returns dict: mean2d [N,2], conic [N,3] (a,b,c), z [N], radii [N] long, valid [N] bool,
    rect [N,4] long tile rectangle (x0,y0,x1,y1), all differentiable where it makes sense."""
    R = viewmat[:3, :3]
    t = viewmat[:3, 3]
    p = means @ R.T + t
    x, y, z = p.unbind(1)
    Rq = quat_to_rot(quats)
    M = Rq * scales[:, None, :]
    cov = M @ M.transpose(1, 2)
    covc = R @ cov @ R.T
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    tfx = 0.5 * width / fx
    tfy = 0.5 * height / fy
    lxp = (width - cx) / fx + 0.3 * tfx
    lxn = cx / fx + 0.3 * tfx
    lyp = (height - cy) / fy + 0.3 * tfy
    lyn = cy / fy + 0.3 * tfy
    zs = torch.where(z.abs() > 1e-12, z, torch.ones_like(z))  # avoid 0-division in culled rows
    tx = zs * torch.clamp(x / zs, -lxn.item(), lxp.item())
    ty = zs * torch.clamp(y / zs, -lyn.item(), lyp.item())
    zero = torch.zeros_like(z)
    J = torch.stack([fx / zs, zero, -fx * tx / zs**2, zero, fy / zs, -fy * ty / zs**2], 1).reshape(-1, 2, 3)
    cov2 = J @ covc @ J.transpose(1, 2)
    c00 = cov2[:, 0, 0] + eps2d
    c01 = cov2[:, 0, 1]
    c11 = cov2[:, 1, 1] + eps2d
    det = c00 * c11 - c01 * c01
    dets = torch.where(det > 0, det, torch.ones_like(det))
    conic = torch.stack([c11 / dets, -c01 / dets, c00 / dets], 1)
    u = fx * x / zs + cx
    v = fy * y / zs + cy
    mean2d = torch.stack([u, v], 1)
    with torch.no_grad():
        b = 0.5 * (c00 + c11)
        lam = b + torch.sqrt(torch.clamp(b * b - det, min=0))
        rad = torch.ceil(3 * torch.sqrt(torch.clamp(lam, min=0))).clamp(max=2.0**30)
        valid = (z >= near) & (z <= far) & (det > 0)
        valid &= ~((u + rad <= 0) | (u - rad >= width) | (v + rad <= 0) | (v - rad >= height))
        tw = (width + TILE - 1) // TILE
        th = (height + TILE - 1) // TILE
        x0 = torch.clamp(torch.floor((u - rad) / TILE), 0, tw)
        x1 = torch.clamp(torch.ceil((u + rad) / TILE), 0, tw)
        y0 = torch.clamp(torch.floor((v - rad) / TILE), 0, th)
        y1 = torch.clamp(torch.ceil((v + rad) / TILE), 0, th)
        valid &= (x1 > x0) & (y1 > y0)
        rect = torch.stack([x0, y0, x1, y1], 1).long()
        radii = torch.where(valid, rad, torch.zeros_like(rad)).long()
    return dict(mean2d=mean2d, conic=conic, z=z, radii=radii, valid=valid, rect=rect)


def blend_weights(proj, opacities, width, height):
    """Dense blending weights. Returns (w [P,N] in original Gaussian order, T_final [P])
    with P = H*W pixels in row-major order."""
    dev, dt = opacities.device, opacities.dtype
    ys, xs = torch.meshgrid(torch.arange(height, device=dev), torch.arange(width, device=dev), indexing="ij")
    xs = xs.reshape(-1)
    ys = ys.reshape(-1)
    pix = torch.stack([xs, ys], 1).to(dt) + 0.5
    order = torch.sort(proj["z"].detach(), stable=True).indices
    inv = torch.empty_like(order)
    inv[order] = torch.arange(len(order), device=dev)
    rect = proj["rect"][order]
    ptx = (xs // TILE)[:, None]
    pty = (ys // TILE)[:, None]
    mask = (
        proj["valid"][order][None, :]
        & (ptx >= rect[None, :, 0])
        & (ptx < rect[None, :, 2])
        & (pty >= rect[None, :, 1])
        & (pty < rect[None, :, 3])
    )
    m2 = proj["mean2d"][order]
    con = proj["conic"][order]
    d = m2[None, :, :] - pix[:, None, :]
    dx, dy = d[..., 0], d[..., 1]
    sig = 0.5 * (con[None, :, 0] * dx * dx + con[None, :, 2] * dy * dy) + con[None, :, 1] * dx * dy
    sig = torch.where(mask, sig, torch.full_like(sig, 1e3))  # keep masked-out entries finite
    a_raw = opacities[order][None, :] * torch.exp(-sig)
    alpha = torch.clamp(a_raw, max=0.99)
    keep = mask & (alpha >= 1.0 / 255.0)
    alpha = torch.where(keep, alpha, torch.zeros_like(alpha))
    with torch.no_grad():
        t_incl = torch.cumprod(1 - alpha, dim=1)
        stop = t_incl < 1e-4
    alpha = torch.where(stop, torch.zeros_like(alpha), alpha)
    one_m = 1 - alpha
    cp = torch.cumprod(one_m, dim=1)
    T = torch.cat([torch.ones_like(cp[:, :1]), cp[:, :-1]], 1)
    w = alpha * T
    t_final = cp[:, -1] if cp.shape[1] else torch.ones(cp.shape[0], dtype=dt, device=dev)
    return w[:, inv], t_final


def render(
    means,
    quats,
    scales,
    opacities,
    features,
    viewmat,
    K,
    width,
    height,
    background=None,
    near=0.01,
    far=1e10,
    eps2d=0.3,
):
    """Dense reference render. Returns dict(image [H,W,D], alpha [H,W,1], depth [H,W,1],
    radii [N], means2d [N,2] (retains grad), weights [H*W, N])."""
    proj = project(means, quats, scales, viewmat, K, width, height, near, far, eps2d)
    mean2d = proj["mean2d"]
    if mean2d.requires_grad:
        mean2d.retain_grad()
    w, t_final = blend_weights(proj, opacities, width, height)
    d = features.shape[1]
    if background is None:
        background = torch.zeros(d, dtype=features.dtype)
    img = w @ features + t_final[:, None] * background[None, :]
    alpha = 1 - t_final
    dsum = w @ proj["z"]
    safe = torch.where(alpha > 0, alpha, torch.ones_like(alpha))
    depth = torch.where(alpha > 0, dsum / safe, torch.zeros_like(alpha))
    return dict(
        image=img.reshape(height, width, d),
        alpha=alpha.reshape(height, width, 1),
        depth=depth.reshape(height, width, 1),
        radii=proj["radii"],
        means2d=mean2d,
        weights=w,
    )
