"""Iteration and rasterizer-only timing for benchmarks/train.py.

Trainers are stepped in turn, and after every ``probe_every``-th step the rasterizer alone runs
forward + backward on the view that step used, with the same Gaussians and channels (colour; colour
+ the identity channels training renders, moving no geometry, as in training). Ratios are taken per
step (iteration / rasterizer right after it), so they hold when other jobs load the machine.
Times are wall clock and process CPU time (all threads).
"""

from __future__ import annotations

import statistics
import time


def _clocks():
    return time.perf_counter(), time.process_time()


def record_views(trainer) -> None:
    """Make ``trainer.last_index`` the training view of the latest step."""
    pick = trainer.next_view_index

    def next_view_index():
        trainer.last_index = pick()
        return trainer.last_index

    trainer.next_view_index = next_view_index


def raster_only(trainer, index: int, identities: bool) -> tuple[float, float]:
    """(wall, cpu) seconds of rasterize forward + backward on training view ``index`` with the
    trainer's current Gaussians (features evaluated beforehand, as leaves)."""
    import torch

    from gsgroup.model.sh import eval_sh
    from gsgroup.render import rasterize

    p = {k: v.detach() for k, v in trainer.params.items()}
    vt = trainer.views[index]
    degree = trainer.sh_degree_at(trainer.step_count)
    dirs = p["means"] - vt.campos
    dirs = dirs / dirs.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    k = (degree + 1) ** 2
    features = eval_sh(degree, torch.cat([p["sh0"], p["shN"][:, : k - 1]], dim=1), dirs)
    if identities:  # the channels training renders: the encodings, or their logits with few classes
        features = torch.cat([features, trainer.extra_features().detach()], dim=1)
    inputs = [p["means"], p["quats"], torch.exp(p["scales"]), torch.sigmoid(p["opacities"]), features]
    inputs = [x.clone().requires_grad_(True) for x in inputs]
    wall, cpu = _clocks()
    out = rasterize(*inputs, vt.viewmat, vt.K, vt.width, vt.height, geometry_grad_channels=3 if identities else None)
    (out.image.sum() + out.alpha.sum()).backward()
    wall2, cpu2 = _clocks()
    return wall2 - wall, cpu2 - cpu


def train_timed(trainers: dict, iterations: int, probe_every: int = 2) -> dict:
    """Step every trainer of ``trainers`` ({name: trainer}) in turn until ``iterations``; returns
    {name: {"wall", "cpu": per-step seconds, "probe": [(step index, raster wall, raster cpu)]}}."""
    rec = {name: {"wall": [], "cpu": [], "probe": []} for name in trainers}
    for tr in trainers.values():
        record_views(tr)
    for i in range(iterations):
        for name, tr in trainers.items():
            wall, cpu = _clocks()
            tr.train_step()
            wall2, cpu2 = _clocks()
            rec[name]["wall"].append(wall2 - wall)
            rec[name]["cpu"].append(cpu2 - cpu)
            if i % probe_every == 0:
                rw, rc = raster_only(tr, tr.last_index, identities=hasattr(tr, "classifier"))
                rec[name]["probe"].append((i, rw, rc))
    return rec


def summarize(r: dict, warm: int) -> dict:
    """Medians after ``warm`` steps: ms per iteration and of the rasterizer alone, and the median
    of the per-step ratios iteration / rasterizer (wall and CPU time)."""
    med = statistics.median
    probes = [p for p in r["probe"] if p[0] >= warm]
    return {
        "ms_per_iter": 1000 * med(r["wall"][warm:]),
        "mean_ms_per_iter": 1000 * statistics.fmean(r["wall"][warm:]),
        "cpu_ms_per_iter": 1000 * med(r["cpu"][warm:]),
        "raster_ms": 1000 * med([p[1] for p in probes]),
        "raster_cpu_ms": 1000 * med([p[2] for p in probes]),
        "ratio": med([r["wall"][i] / w for i, w, _ in probes]),
        "ratio_cpu": med([r["cpu"][i] / c for i, _, c in probes]),
    }


def compare(a: dict, b: dict, warm: int) -> dict:
    """Per-step ratios of trainer a's to trainer b's iteration (stepped in turn): median, wall and CPU,
    and the ratio of their mean iteration times (counting the occasional heavier steps)."""
    med = statistics.median
    return {
        "ratio": med([x / y for x, y in zip(a["wall"][warm:], b["wall"][warm:])]),
        "ratio_cpu": med([x / y for x, y in zip(a["cpu"][warm:], b["cpu"][warm:])]),
        "ratio_mean": statistics.fmean(a["wall"][warm:]) / statistics.fmean(b["wall"][warm:]),
    }
