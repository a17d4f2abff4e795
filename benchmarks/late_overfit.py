"""Train/test PSNR through a 5000-iteration run, to see where held-out views fall behind.

    python benchmarks/late_overfit.py --background white --seed 2

Builds the built-in scene with the given background and seed, trains with the `gsgroup train`
defaults for 5000 iterations (training seed = scene seed), and evaluates train and test PSNR around
the end of densification, every 500 steps after it, and just before and after the final pruning of
unseen Gaussians. Prints JSON lines and writes benchmarks/results/late_overfit_<background><seed>.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, save  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--background", default="white", choices=["black", "sky", "white", "dusk"])
    parser.add_argument("--seed", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=5000)
    args = parser.parse_args()

    import torch

    from gsgroup.data.scene import load_scene
    from gsgroup.data.synthetic import make_scene
    from gsgroup.train.config import TrainConfig
    from gsgroup.train.trainer import Trainer

    torch.set_num_threads(1)  # as `gsgroup train`
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        make_scene(Path(tmp) / "scene", seed=args.seed, progress=False, background=args.background)
        scene = load_scene(Path(tmp) / "scene", eval=True, progress=False, cache_dir=Path(tmp) / "cache")
        t = Trainer(scene, TrainConfig.for_length(args.iterations, seed=args.seed))
        until = t.densifier.cfg.densify_until
        marks = {until - 1, until, until + 1} | set(range(until + 500, args.iterations, 500))

        def evaluate(tag: str) -> None:
            row = {"tag": tag, "step": t.step_count, "gaussians": int(t.params["means"].shape[0])}
            row |= {"train_psnr": t.evaluate(t.views)["psnr"], "test_psnr": t.evaluate()["psnr"]}
            rows.append(row)
            print(json.dumps(row), flush=True)

        while t.step_count < args.iterations - 1:
            t.train_step()
            if t.step_count in marks:
                evaluate("training")
        evaluate("before final pruning")
        t.train_step()
        evaluate("after final pruning")
    name = f"late_overfit_{args.background}{args.seed}"
    save(name, {"machine": machine(), "background": args.background, "seed": args.seed, "rows": rows})


if __name__ == "__main__":
    main()
