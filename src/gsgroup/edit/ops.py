"""Edits on Gaussians and their segmentation: remove, recolor, transform, duplicate, compose.

Every function returns new tensors (inputs untouched). A ``Segmentation`` carries what labels the Gaussians:
a run's IdentityClassifier, or (lifted runs) per-Gaussian labels [N] and probabilities [N] that
are kept parallel to the Gaussians.

New ids (duplicate, compose) with a classifier
----------------------------------------------
The classifier is linear, logits = W e + b with W [K,D]. New classes use a direction u of the
identity space that the existing rows ignore (u in the null space of W, so W u = 0; needs K < D):

- duplicate: for each source id k a new row k' = K+j with W[k'] = W[k] + g u and
  b[k'] = b[k] - g tau, where tau exceeds u.e for every existing encoding e (and 0, so rendered
  blends of old encodings, sum w_i e_i with sum w_i <= 1, stay below it too). The copies get
  e' = e + beta u with beta = tau - min(u.e_copies) + margin: the old logits of a copy are unchanged
  (W u = 0) and logit k' - logit k = g (u.e' - tau) = g * margin > 0, so copies map to k', while for
  every old Gaussian and pixel logit k' < logit k, so old labels do not change.
- compose: inserted object j gets its own null direction u_j (orthonormal to the others), a row
  W = g u_j^T with a bias chosen so that old encodings (u_j.e <= tau_j) never reach the old maximum
  logit, and every inserted Gaussian of object j gets the encoding beta_j u_j, where its new logit
  leads every old one by LOGIT_MARGIN (see ``new_object_classes``). The inserted objects' own
  encodings (from the other run's identity space) are replaced. Each new id costs one spare
  dimension: K + new <= D.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import InputError
from ..geometry import quat_multiply, rotmat_to_quat
from ..model import Gaussians
from ..model.sh import rgb_to_sh, sh_to_rgb
from ..segment.identity import IdentityClassifier
from ..segment.segmentation import Segmentation
from .shrot import rotate_sh

LUMA = torch.tensor([0.299, 0.587, 0.114])
SH_DAMP = 0.5  # recolor: factor on the greyed view-dependent SH
LOGIT_MARGIN = 8.0  # logit lead of a new class on its own Gaussians (softmax prob > 0.999 against the source)


# ----------------------------------------------------------------------------- basic helpers


def concat(a: Gaussians, b: Gaussians) -> Gaussians:
    """a then b. b's SH are padded/truncated to a's degree; b's identities to a's size (zeros)."""
    b = b.detach()
    ka = a.shN.shape[1]
    shN = b.shN[:, :ka]
    if shN.shape[1] < ka:
        shN = torch.cat([shN, torch.zeros(len(b), ka - shN.shape[1], 3)], dim=1)
    ids = b.ids[:, : a.id_dim]
    if ids.shape[1] < a.id_dim:
        ids = torch.cat([ids, torch.zeros(len(b), a.id_dim - ids.shape[1])], dim=1)
    parts = {
        "means": b.means,
        "quats": b.quats,
        "scales": b.scales,
        "opacities": b.opacities,
        "sh0": b.sh0,
        "shN": shN,
        "ids": ids,
    }
    return Gaussians(**{k: torch.cat([getattr(a, k).detach(), v.to(getattr(a, k).dtype)]) for k, v in parts.items()})


def remove(g: Gaussians, seg: Segmentation, mask: np.ndarray) -> tuple[Gaussians, Segmentation]:
    """Delete the Gaussians of mask [N] bool."""
    keep = ~np.asarray(mask, bool)
    return g.select(torch.from_numpy(keep)), seg.subset(keep)


def parse_color(text: str) -> np.ndarray:
    """'#RRGGBB' -> rgb [3] float in [0,1]."""
    s = str(text).strip().lstrip("#")
    if len(s) != 6:
        raise InputError(f"color '{text}': use #RRGGBB, e.g. '#3366ff'", "color")
    try:
        return np.array([int(s[i : i + 2], 16) for i in (0, 2, 4)], np.float64) / 255.0
    except ValueError:
        raise InputError(f"color '{text}': use hex digits, e.g. '#3366ff'", "color") from None


def recolor(g: Gaussians, mask: np.ndarray, color: np.ndarray, sh_damp: float = SH_DAMP) -> Gaussians:
    """Give the selection the hue of ``color`` [3] while keeping its shading.

    Each selected Gaussian's DC color becomes color * (Y_i / Ybar) where Y_i is its luminance and
    Ybar the selection's opacity-weighted mean luminance (scaled down, never clipped per channel,
    where it would exceed 1, so the hue is exact). The view-dependent SH become grey (their
    luminance, times ``sh_damp``): adding grey never changes an HSV hue."""
    out = g.detach()
    sel = torch.from_numpy(np.asarray(mask, bool))
    if not sel.any():
        return out
    target = torch.as_tensor(np.asarray(color, np.float32))
    rgb = sh_to_rgb(out.sh0[sel, 0]).clamp(0, 1)
    lum = rgb @ LUMA
    w = torch.sigmoid(out.opacities[sel])
    mean_lum = (w * lum).sum() / w.sum().clamp_min(1e-12)
    new = target[None] * (lum / mean_lum.clamp_min(1e-3))[:, None]
    new = new / new.max(dim=1, keepdim=True).values.clamp_min(1.0)
    out.sh0[sel, 0] = rgb_to_sh(new)
    grey = torch.einsum("nkc,c->nk", out.shN[sel], LUMA)
    out.shN[sel] = sh_damp * grey[..., None].expand(-1, -1, 3)
    return out


@dataclass
class Transform:
    """x' = s R (x - pivot) + pivot + t. R [3,3] float64, t [3], s > 0, pivot [3]."""

    R: np.ndarray
    t: np.ndarray
    s: float
    pivot: np.ndarray

    def apply_points(self, x: np.ndarray) -> np.ndarray:
        """Transform points [M,3]."""
        return self.s * (np.asarray(x, np.float64) - self.pivot) @ self.R.T + self.pivot + self.t

    def matrix(self) -> np.ndarray:
        """The 4x4 homogeneous matrix."""
        m = np.eye(4)
        m[:3, :3] = self.s * self.R
        m[:3, 3] = self.pivot + self.t - self.s * self.R @ self.pivot
        return m

    @property
    def is_identity(self) -> bool:
        return np.allclose(self.R, np.eye(3)) and np.allclose(self.t, 0) and self.s == 1.0


def transform(g: Gaussians, mask: np.ndarray | None, tf: Transform, rotate_sh_coeffs: bool = True) -> Gaussians:
    """Move the selected Gaussians (all if mask is None): means, orientations (q_R * q), log-scales
    (+ log s) and the view-dependent SH (rotated by R, or dropped to DC with a warning)."""
    if tf.s <= 0:
        raise InputError(f"scale {tf.s}: must be a positive number", "scale")
    out = g.detach()
    sel = torch.ones(len(g), dtype=torch.bool) if mask is None else torch.from_numpy(np.asarray(mask, bool))
    if not sel.any():
        return out
    means = out.means[sel].double().numpy()
    out.means[sel] = torch.from_numpy(tf.apply_points(means)).to(out.means.dtype)
    q = torch.from_numpy(rotmat_to_quat(tf.R)).to(out.quats.dtype)
    out.quats[sel] = quat_multiply(q, out.quats[sel])
    out.scales[sel] = out.scales[sel] + float(np.log(tf.s))
    if out.shN.shape[1]:
        if rotate_sh_coeffs:
            out.shN[sel] = rotate_sh(out.shN[sel].double(), tf.R).to(out.shN.dtype)
        elif not np.allclose(tf.R, np.eye(3)):
            warnings.warn("view-dependent SH dropped to DC for the rotated Gaussians", stacklevel=2)
            out.shN[sel] = 0.0
    return out


def centroid(g: Gaussians, mask: np.ndarray) -> np.ndarray:
    """Opacity-weighted centre of the selected means [3]."""
    sel = torch.from_numpy(np.asarray(mask, bool))
    w = torch.sigmoid(g.opacities[sel]).double()
    return ((w[:, None] * g.means[sel].double()).sum(0) / w.sum().clamp_min(1e-12)).numpy()


# ----------------------------------------------------------------------------- new classes


def _null_directions(W: torch.Tensor, count: int, what: str) -> torch.Tensor:
    """``count`` orthonormal directions [count,D] with W u = 0 (W [K,D])."""
    K, D = W.shape
    if K + count > D:
        raise InputError(
            f"{what}: the identity classifier has {K} classes over {D}-D encodings; adding {count} "
            f"more needs K + new <= {D}; retrain with a larger --id-dim"
        )
    _, _, vt = torch.linalg.svd(W.double(), full_matrices=True)
    return vt[K : K + count].to(W.dtype)


def duplicate_classes(
    classifier: IdentityClassifier,
    src_ids: list[int],
    all_ids: torch.Tensor,
    copy_ids: torch.Tensor,
    copy_src: np.ndarray,
) -> tuple[IdentityClassifier, torch.Tensor, dict]:
    """Extend the classifier with one new class per source id (see the module docstring).

    all_ids [N,D]: every existing encoding; copy_ids [M,D]: the copies' encodings; copy_src [M]: each
    copy's source id. Returns (new classifier, new copy encodings [M,D], {source id: new id})."""
    W, b = classifier.linear.weight.detach(), classifier.linear.bias.detach()
    K = W.shape[0]
    u = _null_directions(W, 1, "duplicate")[0]
    proj_all = all_ids @ u
    tau = float(max(0.0, proj_all.max().item()))
    spread = float(max(proj_all.max().item() - proj_all.min().item(), 1e-3))
    margin = 0.5 * spread + 0.1
    tau += margin
    proj_copy = copy_ids @ u
    beta = tau - float(proj_copy.min().item()) + margin
    gain = LOGIT_MARGIN / margin
    new_ids = {int(k): K + j for j, k in enumerate(src_ids)}
    rows_w = torch.stack([W[k] + gain * u for k in src_ids])
    rows_b = torch.stack([b[k] - gain * tau for k in src_ids])
    clf = _extended(classifier, rows_w, rows_b)
    return clf, copy_ids + beta * u[None], new_ids


def new_object_classes(
    classifier: IdentityClassifier, all_ids: torch.Tensor, count: int
) -> tuple[IdentityClassifier, torch.Tensor]:
    """``count`` new classes for inserted objects. Returns (classifier, encodings [count,D]): the
    encoding of new object j is beta_j u_j (u_j orthonormal null directions of W); its row is
    W = g u_j^T, bias b_j = max(b) + margin - g tau_j with tau_j >= u_j.e for every existing e."""
    W, b = classifier.linear.weight.detach(), classifier.linear.bias.detach()
    U = _null_directions(W, count, "compose")
    rows_w, rows_b, codes = [], [], []
    for u in U:
        proj = all_ids @ u if len(all_ids) else torch.zeros(1)
        tau = float(max(0.0, proj.max().item())) + 0.1
        spread = float(max(proj.max().item() - proj.min().item(), 1.0))
        beta = tau + spread  # the code sits `spread` beyond tau along u
        gain = 2 * LOGIT_MARGIN / spread
        rows_w.append(gain * u)
        rows_b.append(b.max() + LOGIT_MARGIN - gain * (tau + 0.5 * spread))
        codes.append(beta * u)
    # at the code: new logit = b.max() + margin + gain*spread/2 = b.max() + 2*margin > any old logit (W u = 0);
    # for old encodings (u.e <= tau): new logit <= b.max() + margin - gain*spread/2 = b.max()
    return _extended(classifier, torch.stack(rows_w), torch.stack(rows_b)), torch.stack(codes)


def _extended(classifier: IdentityClassifier, rows_w: torch.Tensor, rows_b: torch.Tensor) -> IdentityClassifier:
    K = classifier.num_classes
    clf = IdentityClassifier(K + len(rows_w), classifier.id_dim)
    with torch.no_grad():
        clf.linear.weight.copy_(torch.cat([classifier.linear.weight.detach(), rows_w.float()]))
        clf.linear.bias.copy_(torch.cat([classifier.linear.bias.detach(), rows_b.float()]))
    return clf


def duplicate(
    g: Gaussians, seg: Segmentation, mask: np.ndarray, ids: list[int], tf: Transform
) -> tuple[Gaussians, Segmentation, dict]:
    """Copy the selection, transform the copies, give them new ids. Returns (g, seg, {old id: new id})."""
    mask = np.asarray(mask, bool)
    copies = transform(g.select(torch.from_numpy(mask)), None, tf)
    if seg.classifier is not None:
        with torch.no_grad():
            probs = torch.softmax(seg.classifier(copies.ids), -1)[:, ids]
        src = np.asarray(ids)[probs.argmax(1).numpy()]
        clf, new_codes, mapping = duplicate_classes(seg.classifier, ids, g.ids.detach(), copies.ids, src)
        copies.ids = new_codes
        return concat(g, copies), Segmentation(clf), mapping
    base = seg.num_classes
    mapping = {int(k): base + j for j, k in enumerate(ids)}
    src = seg.labels[mask]
    new_labels = np.array([mapping.get(int(v), base) for v in src], np.int32)  # interior extras: first new id
    return concat(g, copies), seg.append(new_labels), mapping


def compose(
    g: Gaussians, seg: Segmentation, other: Gaussians, other_labels: np.ndarray, ids: list[int]
) -> tuple[Gaussians, Segmentation, dict]:
    """Insert ``other`` (already selected and transformed) with new ids, one per id in ``ids``.

    other_labels [M]: each inserted Gaussian's id in its own run (ids not in ``ids``, e.g. interior
    Gaussians added by the clean-up, go to the first new id). Returns (g, seg, {B id: new id})."""
    other = other.detach()
    lab = np.asarray(other_labels)
    which = np.array([ids.index(int(v)) if int(v) in ids else 0 for v in lab], np.int64)
    if seg.classifier is not None:
        clf, codes = new_object_classes(seg.classifier, g.ids.detach(), len(ids))
        K = seg.classifier.num_classes
        other.ids = codes[torch.from_numpy(which)] if len(other) else torch.zeros(0, g.id_dim)
        return concat(g, other), Segmentation(clf), {int(k): K + j for j, k in enumerate(ids)}
    base = seg.num_classes
    other.ids = torch.zeros(len(other), g.id_dim)
    return concat(g, other), seg.append(base + which), {int(k): base + j for j, k in enumerate(ids)}
