"""Segmentation benchmark: identity training (Gaussian Grouping) vs closed-form lifting, on the built-in scene.

For each seed: build the scene, simulate SAM masks from its ground truth, reconstruct (RGB only),
associate the masks through the reconstruction, then
  * continue training WITH identities (GroupingTrainer)  -> test mIoU / boundary IoU / PSNR / ms per iteration
  * continue training WITHOUT identities (same length)   -> PSNR and ms per iteration, the baseline
  * lift the associated masks onto the reconstruction    -> test mIoU / boundary IoU / seconds
Medians over seeds go to benchmarks/results/segment.json and a printed table.

    python benchmarks/segment.py            # 3 seeds, 3000 + 2000 iterations
    python benchmarks/segment.py --quick    # 1 seed, short runs
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, median, save, table  # noqa: E402


def one_seed(seed: int, recon_iters: int, id_iters: int, tmp: Path) -> dict:
    import numpy as np

    import gsgroup  # noqa: F401
    from gsgroup.data.masks import load_masks
    from gsgroup.data.scene import load_scene
    from gsgroup.data.simulate import write_simulated_masks
    from gsgroup.data.synthetic import make_scene
    from gsgroup.pipeline import associate_run, evaluate_segmentation_run
    from gsgroup.run import DataConfig, Run, RunConfig
    from gsgroup.segment.grouping import GroupingTrainer
    from gsgroup.segment.lift import lift_labels
    from gsgroup.segment.segmentation import Segmentation
    from gsgroup.train.config import TrainConfig
    from gsgroup.train.densify import DensifyConfig
    from gsgroup.train.trainer import Trainer

    data = make_scene(tmp / "scene", seed=seed, progress=False)
    write_simulated_masks(data, tmp / "sam", seed=seed)
    scene = load_scene(data, eval=True, cache_dir=tmp / "cache", progress=False)

    def write_run(folder: Path, trainer) -> None:
        run = Run.create(folder, RunConfig(DataConfig(str(data), eval=True), trainer.cfg))
        trainer.save_checkpoint(run.file(Run.CHECKPOINT))
        run.save_gaussians(trainer.gaussians())
        run.save_environment(trainer.env)
        if hasattr(trainer, "classifier"):
            run.save_segmentation(Segmentation(trainer.classifier))

    recon = Trainer(scene, TrainConfig.for_length(recon_iters, seed=seed))
    recon.train(progress=False)
    write_run(tmp / "recon", recon)
    t = time.perf_counter()
    stats = associate_run(data, tmp / "sam", tmp / "recon", tmp / "object_mask", progress=False)
    assoc_s = time.perf_counter() - t
    masks = load_masks(tmp / "object_mask", scene.train)

    def continued(kind: str):
        cfg = TrainConfig(
            iterations=id_iters,
            seed=seed,
            densify=DensifyConfig(densify_until=0),
            lr_means=TrainConfig.lr_means_final * 10,
        )
        folder = tmp / kind
        if kind == "identity":
            tr = GroupingTrainer(scene, cfg, masks, gaussians=recon.gaussians())
        else:
            tr = Trainer(scene, cfg, gaussians=recon.gaussians())
        tr.load_checkpoint(tmp / "recon" / Run.CHECKPOINT, weights_only=True)
        times = []
        while tr.step_count < id_iters:
            t0 = time.perf_counter()
            tr.train_step()
            times.append(time.perf_counter() - t0)
        write_run(folder, tr)
        return tr, 1000 * float(np.median(times[20:])), float(np.sum(times))

    ident, id_ms, id_s = continued("identity")
    rgb, rgb_ms, _ = continued("rgb")
    seg_id = evaluate_segmentation_run(tmp / "identity", data / "gt_mask", progress=False)

    g = recon.gaussians()
    t = time.perf_counter()
    labels, prob = lift_labels(scene.train, g, masks, progress=False)
    lift_s = time.perf_counter() - t
    Run.open(tmp / "recon").derive(segmentation=Segmentation(None, labels, prob)).save(tmp / "lift")
    seg_lift = evaluate_segmentation_run(tmp / "lift", data / "gt_mask", progress=False)
    return {
        "seed": seed,
        "gaussians": len(g),
        "assoc_objects": stats["objects"],
        "assoc_s": assoc_s,
        "id_miou": seg_id["miou"],
        "id_biou": seg_id["mbiou"],
        "id_train_s": id_s,
        "lift_miou": seg_lift["miou"],
        "lift_biou": seg_lift["mbiou"],
        "lift_s": lift_s,
        "psnr_with_ids": ident.evaluate()["psnr"],
        "psnr_rgb_only": rgb.evaluate()["psnr"],
        "ms_iter_ids": id_ms,
        "ms_iter_rgb": rgb_ms,
        "time_ratio": id_ms / rgb_ms,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--recon-iterations", type=int, default=3000)
    parser.add_argument("--id-iterations", type=int, default=2000)
    args = parser.parse_args()
    seeds = 1 if args.quick else args.seeds
    recon_iters, id_iters = (300, 100) if args.quick else (args.recon_iterations, args.id_iterations)
    rows = []
    for seed in range(seeds):
        with tempfile.TemporaryDirectory() as tmp:
            rows.append(one_seed(seed, recon_iters, id_iters, Path(tmp)))
        print(rows[-1], flush=True)
    keys = [k for k in rows[0] if k != "seed"]
    med = {"seeds": seeds, "recon_iterations": recon_iters, "id_iterations": id_iters}
    med.update({k: median([r[k] for r in rows]) for k in keys})
    path = save("segment", {"machine": machine(), "median": med, "runs": rows})
    print(table([med], list(med)))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
