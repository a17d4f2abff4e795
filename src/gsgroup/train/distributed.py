"""Training one scene on several processes: data parallelism over views with torch.distributed.

Launch: ``torchrun --nproc_per_node N -m gsgroup train DATA --out RUN ...`` or
``gsgroup train ... --gpus N`` (which runs that command). Every process loads the scene and builds
the same Trainer (same seed, so the same Gaussians); ``data_parallel`` then changes three things
on its instance:

- views: each step the processes draw N views from the trainer's own epoch order (the same
  stream on every rank) and rank r trains on the r-th, so a step covers N views;
- gradients: after the backward pass every trainable tensor's gradient (Gaussians, environment,
  identity classifier: the parameters of every optimizer the trainer holds) is averaged over the
  ranks (``all_reduce``; a gradient that is None on every rank stays None), so every rank takes the
  same Adam step as one process that averages the gradients of the N views;
- densification statistics: each rank's additions are summed over the ranks, so densification
  (and pruning) decide on the statistics of all N views, identically on every rank.

The sync runs where the trainer hands the step's screen-space gradients to the densifier (between
``backward`` and the optimizer step). Rank 0 alone writes the run (config, log, checkpoint, PLY);
the others stay quiet. The backend is ``gloo`` on the CPU and ``nccl`` on CUDA (each rank on
``cuda:LOCAL_RANK``). gsplat's own distributed mode (Gaussians split across GPUs) is not used:
every rank holds all Gaussians.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from ..errors import InputError


def launched() -> bool:
    """True in a process started by torchrun with more than one process (WORLD_SIZE > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def is_active() -> bool:
    """True once ``init`` set up a process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if is_active() else 0


def init(device: torch.device | str = "cpu") -> torch.device:
    """Join the process group torchrun describes (env://): gloo on the CPU, nccl on CUDA, where
    each rank takes ``cuda:LOCAL_RANK``. Returns the device of this rank."""
    device = torch.device(device)
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def finish() -> None:
    """Leave the process group (after a barrier, so rank 0 has written the run)."""
    if is_active():
        dist.barrier()
        dist.destroy_process_group()


def barrier() -> None:
    if is_active():
        dist.barrier()


def _optimizers(trainer) -> list[torch.optim.Optimizer]:
    """The trainer's optimizers in attribute-name order (the same on every rank)."""
    return [v for _, v in sorted(vars(trainer).items()) if isinstance(v, torch.optim.Optimizer)]


def average_gradients(trainer, world: int) -> None:
    """Average the gradients of every optimizer's parameters over the ranks (None stays None only
    where it is None on every rank; elsewhere a missing gradient counts as zero)."""
    params = [p for opt in _optimizers(trainer) for group in opt.param_groups for p in group["params"]]
    if not params:
        return
    device = params[0].device
    has = torch.tensor([p.grad is not None for p in params], dtype=torch.float32, device=device)
    dist.all_reduce(has)
    flat = [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p, h in zip(params, has) if h > 0]
    if not flat:
        return
    buf = torch.cat(flat)
    dist.all_reduce(buf)
    buf /= world
    offset = 0
    for p, h in zip(params, has):
        if h > 0:
            n = p.numel()
            p.grad = buf[offset : offset + n].view_as(p).clone()
            offset += n


def data_parallel(trainer) -> None:
    """Make ``trainer`` one rank of data-parallel training over views (module docstring); a no-op
    without a process group. Call it once after building the trainer (and loading a checkpoint)."""
    if not is_active():
        return
    world, me = dist.get_world_size(), dist.get_rank()
    if len(trainer.views) < world:
        raise InputError(f"{world} processes need at least {world} training views, the scene has {len(trainer.views)}")
    draw = trainer.next_view_index

    def next_view_index() -> int:
        picks = [draw() for _ in range(world)]
        return picks[me]

    densifier = trainer.densifier
    accumulate = densifier.accumulate

    def accumulate_and_sync(step, means2d_grad, radii, width, height):
        average_gradients(trainer, world)
        before = (densifier.grad_sum.clone(), densifier.count.clone())
        accumulate(step, means2d_grad, radii, width, height)
        added = torch.stack([densifier.grad_sum - before[0], densifier.count - before[1]])
        dist.all_reduce(added)
        densifier.grad_sum = before[0] + added[0]
        densifier.count = before[1] + added[1]

    trainer.next_view_index = next_view_index
    densifier.accumulate = accumulate_and_sync
