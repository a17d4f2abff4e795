"""Where a training iteration's time goes: per-part breakdown of ``Trainer.train_step``.

    python benchmarks/profile_step.py --label after          # built-in scene, 5000 Gaussians, RGB and identities
    PYTHONPATH=/tmp/before/src python benchmarks/profile_step.py --label before   # the same on older code

The trainer is instrumented from outside (wrappers around the functions ``train_step`` calls, and
autograd hooks on the tensors between the loss, the rasterizer and the parameters), so the same
script measures old and new code. Parts: rasterize fwd / bwd (projection, binning and the Numba
kernels), SH + activations (fwd: ``render_view`` minus the rasterizer and the environment; bwd:
what autograd does after the rasterizer's backward), environment (fwd), L1 + SSIM fwd / bwd,
identity losses (2D cross-entropy with its classifier, 3D KL; fwd, bwd and the classifier's Adam),
Adam (Gaussians and environment), densification statistics, and other (the rest of the step:
view selection, zero_grad, allocations, Python). Times are medians over the profiled steps of
each part's time within one step (so the parts need not add up exactly to the median total),
in CPU time of the process (all threads; robust to other jobs on a shared machine; ``--wall``
for wall-clock time).
A second pass runs under ``torch.profiler`` and keeps its top operators by self CPU time.
Writes benchmarks/results/<--name>.json under the key ``--label`` (other labels are kept).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, machine, save, table  # noqa: E402

CLOCK = time.process_time  # CPU time of this process (all threads): robust to other jobs on the machine

PARTS = (
    "rasterize fwd",
    "rasterize bwd",
    "SH+activations fwd",
    "SH+activations bwd",
    "environment fwd",
    "L1+SSIM fwd",
    "L1+SSIM bwd",
    "identity fwd",
    "identity bwd",
    "identity Adam",
    "Adam",
    "densification stats",
    "other",
)


def make_trainer(tmp: Path, identities: bool, gaussians: int = 5000):
    """The benchmarks/train.py speed row's trainer (built-in scene seed 0, a fixed set of Gaussians),
    with identities trained from the scene's ground-truth masks when ``identities``."""
    import gsgroup  # noqa: F401
    from gsgroup.data.masks import load_masks
    from gsgroup.data.scene import load_scene
    from gsgroup.data.synthetic import make_scene
    from gsgroup.segment.grouping import GroupingTrainer
    from gsgroup.train.config import TrainConfig
    from gsgroup.train.densify import DensifyConfig
    from gsgroup.train.trainer import Trainer

    data = tmp / "scene"
    if not data.exists():
        make_scene(data, seed=0, progress=False)
    scene = load_scene(data, eval=True, cache_dir=tmp / "cache", progress=False)
    cfg = TrainConfig(iterations=500, seed=0, densify=DensifyConfig(densify_until=0, max_gaussians=gaussians))
    if identities:
        return GroupingTrainer(scene, cfg, load_masks(data / "gt_mask", scene.train))
    return Trainer(scene, cfg)


class Probe:
    """Wraps the trainer's parts; ``spans`` collects (part, seconds) of the current step."""

    def __init__(self, trainer):
        import torch

        from gsgroup.train import trainer as tmod
        from gsgroup.train.environment import Environment

        self.spans: list[tuple[str, float]] = []
        self.marks: list[tuple[float, str]] = []
        self.torch = torch
        self.render_inner = 0.0
        self.undo = [(tmod, "rasterize", tmod.rasterize), (tmod, "render_view", tmod.render_view)]
        self.undo += [(tmod, "rgb_loss", tmod.rgb_loss), (Environment, "image", Environment.image)]
        self.undo += [(torch.Tensor, "backward", torch.Tensor.backward)]
        probe = self

        def timed(part, fn, inner=False):
            def wrapper(*args, **kwargs):
                with torch.profiler.record_function(part):
                    t = CLOCK()
                    result = fn(*args, **kwargs)
                    dt = CLOCK() - t
                probe.spans.append((part, dt))
                if inner:
                    probe.render_inner += dt
                return result

            return wrapper

        raster = tmod.rasterize

        def rasterize(*args, **kwargs):
            out = timed("rasterize fwd", raster, inner=True)(*args, **kwargs)
            features = args[4] if len(args) > 4 else kwargs["features"]
            if out.image.requires_grad:
                out.image.register_hook(lambda g: probe.mark("image grad"))
            if features.requires_grad:
                features.register_hook(lambda g: probe.mark("rasterize bwd"))
            return out

        tmod.rasterize = rasterize
        env_image = Environment.image
        Environment.image = lambda self, *a, **k: timed("environment fwd", env_image, inner=True)(self, *a, **k)
        render = tmod.render_view

        def render_view(*args, **kwargs):
            probe.render_inner = 0.0
            t = CLOCK()
            out = render(*args, **kwargs)
            probe.spans.append(("SH+activations fwd", CLOCK() - t - probe.render_inner))
            return out

        tmod.render_view = render_view
        loss = tmod.rgb_loss

        def rgb_loss(img, ref, *args, **kwargs):
            if img.requires_grad:
                img.register_hook(lambda g: probe.mark("L1+SSIM bwd"))
            return timed("L1+SSIM fwd", loss)(img, ref, *args, **kwargs)

        tmod.rgb_loss = rgb_loss
        extra = trainer.extra_loss

        def extra_loss(step, index, features):
            if features.requires_grad:
                features.register_hook(lambda g: probe.mark("identity bwd"))
            return timed("identity fwd", extra)(step, index, features)

        trainer.extra_loss = extra_loss
        trainer.optimizer.step = timed("Adam", trainer.optimizer.step)
        if getattr(trainer, "env_optimizer", None) is not None:
            trainer.env_optimizer.step = timed("Adam", trainer.env_optimizer.step)
        if getattr(trainer, "cls_optimizer", None) is not None:
            trainer.cls_optimizer.step = timed("identity Adam", trainer.cls_optimizer.step)
        trainer.densifier.accumulate = timed("densification stats", trainer.densifier.accumulate)
        trainer.densifier.step = timed("densification stats", trainer.densifier.step)
        backward = torch.Tensor.backward

        def tensor_backward(self, *args, **kwargs):
            probe.mark("backward start")
            backward(self, *args, **kwargs)
            probe.mark("SH+activations bwd")  # what autograd does after the rasterizer's backward

        torch.Tensor.backward = tensor_backward

    def close(self) -> None:
        """Undo the module-level wrappers."""
        for obj, name, value in self.undo:
            setattr(obj, name, value)

    def mark(self, label: str) -> None:
        self.marks.append((CLOCK(), label))

    def step(self, trainer) -> dict:
        """Run one step; returns {part: seconds} including "total"."""
        self.spans, self.marks = [], []
        t = CLOCK()
        trainer.train_step()
        total = CLOCK() - t
        parts = defaultdict(float)
        for part, dt in self.spans:
            parts[part] += dt
        # backward: each interval between hooks belongs to the hook that ends it
        marks = sorted(self.marks)
        for (t0, _), (t1, label) in zip(marks, marks[1:]):
            if label in ("image grad",):  # env composite backward: counted with the loss it follows
                label = "L1+SSIM bwd"
            if label != "backward start":
                parts[label] += t1 - t0
        parts["other"] = max(0.0, total - sum(parts.values()))
        parts["total"] = total
        return dict(parts)


def profile(identities: bool, warmup: int, steps: int, tmp: Path) -> dict:
    """Median per-part milliseconds over ``steps`` steps after ``warmup``, plus the profiler's top ops."""
    import torch

    trainer = make_trainer(tmp, identities)
    probe = Probe(trainer)
    for _ in range(warmup):
        probe.step(trainer)
    per_step = [probe.step(trainer) for _ in range(steps)]
    keys = [*PARTS, "total"]
    ms = {k: 1000 * statistics.median([s.get(k, 0.0) for s in per_step]) for k in keys}
    mean_ms = {k: 1000 * statistics.fmean([s.get(k, 0.0) for s in per_step]) for k in keys}
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(max(10, steps // 5)):
            probe.step(trainer)
    probe.close()
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    n = max(10, steps // 5)
    top = [
        {"op": e.key, "self_ms_per_step": e.self_cpu_time_total / 1000 / n, "calls_per_step": e.count / n}
        for e in events[:25]
    ]
    return {"median_ms": ms, "mean_ms": mean_ms, "steps": steps, "profiler_top_ops": top}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--label", default="after", help="key in the results file, e.g. before / after")
    parser.add_argument("--name", default="train_profile")
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--wall", action="store_true", help="wall-clock time instead of CPU time")
    args = parser.parse_args()
    global CLOCK
    if args.wall:
        CLOCK = time.perf_counter
    import torch

    import gsgroup

    torch.set_num_threads(1)  # as benchmarks/train.py and `gsgroup train`
    result = {
        "machine": machine(),
        "clock": "wall" if args.wall else "cpu",
        "gsgroup": str(Path(gsgroup.__file__).parent),
        "gaussians": 5000,
    }
    with tempfile.TemporaryDirectory() as tmp:
        for kind, ident in (("rgb", False), ("identity", True)):
            result[kind] = profile(ident, args.warmup, args.steps, Path(tmp))
    path = RESULTS / f"{args.name}.json"
    payload = json.loads(path.read_text()) if path.exists() else {}
    payload[args.label] = result
    save(args.name, payload)
    rows = [
        {"part": k, **{kind: result[kind]["median_ms"][k] for kind in ("rgb", "identity")}} for k in [*PARTS, "total"]
    ]
    m = result["machine"]
    print(f"{args.label}: median {result['clock']} ms per step, {m['cpu']}, {m['numba_threads']} Numba thread(s)")
    print(table(rows, ["part", "rgb", "identity"]))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
