"""3DGS training loop on the CPU rasterizer."""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ..data.scene import Scene
from ..fileio import atomic_path
from ..model import Gaussians, from_points, random_points_in_frustums
from ..model.sh import eval_sh
from ..render import contributions, rasterize
from .adam import FusedAdam
from .checkpoint import StopRequest, read_checkpoint, stop_on_signals
from .config import TrainConfig
from .densify import Densifier, keep_gaussians
from .environment import Environment, grid_directions
from .losses import alpha_entropy, psnr, rgb_loss
from .views import ViewTensors, view_tensors  # noqa: F401 (callers import them from here)


def initial_gaussians(scene: Scene, cfg: TrainConfig) -> Gaussians:
    """Gaussians from the scene's SfM points, or random in the camera frustums when there are none."""
    use_points = cfg.init == "points" or (cfg.init == "auto" and scene.points is not None and len(scene.points))
    cap = cfg.densify.max_gaussians
    if use_points:
        if scene.points is None or not len(scene.points):
            raise ValueError(f"{scene.root}: no SfM points to initialise from; use --init random")
        points, colors = scene.points, scene.colors
        if cap is not None and len(points) > cap:  # respect --max-gaussians from the start
            keep = np.sort(np.random.default_rng(cfg.seed).choice(len(points), cap, replace=False))
            points, colors = points[keep], colors[keep]
        return from_points(points, colors, cfg.sh_degree, cfg.identity.id_dim, cfg.seed)
    views = scene.train
    pts = random_points_in_frustums(
        np.stack([v.viewmat for v in views]),
        np.stack([v.K for v in views]),
        [(v.width, v.height) for v in views],
        n=min(cfg.init_points, cap or cfg.init_points),
        near=0.05 * scene.extent,
        far=2.0 * scene.extent,
        seed=cfg.seed,
    )
    colors = np.random.default_rng(cfg.seed).uniform(0.0, 1.0, size=pts.shape).astype(np.float32)
    g = from_points(pts, colors, cfg.sh_degree, cfg.identity.id_dim, cfg.seed)
    # Sparse random points get huge neighbour distances; Gaussians that large cover much of every
    # view and make the first iterations very slow. Densification grows small ones where needed.
    g.scales = g.scales.clamp_max(math.log(cfg.random_init_max_scale * scene.extent))
    return g


def render_view(
    gaussians: Gaussians | dict,
    vt: ViewTensors,
    sh_degree: int,
    background: torch.Tensor | Environment | None = None,
    extra_features: torch.Tensor | None = None,
    extra_moves_geometry: bool = True,
):
    """Render one view. Returns the rasterizer output (image [H,W,3+E], alpha, depth, radii, means2d).

    background: a color [3] (or [3+E]), None (black), or an Environment composited behind the
    color channels per pixel (image = rendered + (1 - alpha) * environment).
    extra_features [N,E] (e.g. identity encodings) are rendered in the same pass after the color,
    over a zero background; with ``extra_moves_geometry=False`` their losses train only the
    features, not the Gaussians' shape.
    """
    env = background if isinstance(background, Environment) else None
    if env is not None:
        background = None
    g = gaussians if isinstance(gaussians, dict) else gaussians.to_dict()
    if g["means"].device != vt.viewmat.device:  # e.g. a CPU copy of Gaussians trained on CUDA
        g = {k: v.to(vt.viewmat.device) for k, v in g.items()}
    quats = g["quats"]
    means = g["means"]
    dirs = means.detach() - vt.campos
    dirs = dirs / dirs.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    k = (sh_degree + 1) ** 2
    coeffs = torch.cat([g["sh0"], g["shN"][:, : k - 1]], dim=1)
    features = eval_sh(sh_degree, coeffs, dirs)
    if extra_features is not None:
        features = torch.cat([features, extra_features], dim=1)
        if background is not None and background.numel() == 3:
            background = torch.cat([background, background.new_zeros(extra_features.shape[1])])
    out = rasterize(
        means,
        quats,
        torch.exp(g["scales"]),
        torch.sigmoid(g["opacities"]),
        features,
        vt.viewmat,
        vt.K,
        vt.width,
        vt.height,
        background=background,
        geometry_grad_channels=None if extra_moves_geometry else 3,
    )
    if env is None:
        return out
    if vt.env_dirs is None:
        vt.env_dirs = grid_directions(vt.viewmat, vt.K, vt.width, vt.height)
    rgb = out.image[..., :3] + (1.0 - out.alpha) * env.image(vt.env_dirs, vt.width, vt.height)
    return out._replace(image=torch.cat([rgb, out.image[..., 3:]], dim=-1) if extra_features is not None else rgb)


@torch.no_grad()
def score_views(
    gaussians: Gaussians, views: list[ViewTensors], sh_degree: int, background: torch.Tensor | Environment
) -> dict:
    """PSNR and SSIM of each view's render against its image: {view name: {"psnr", "ssim"}}."""
    from .losses import ssim

    out = {}
    for vt in views:
        img = render_view(gaussians, vt, sh_degree, background=background).image.clamp(0, 1)
        gt = vt.image  # converted from the held pixels on each access: once per view
        out[vt.name] = {"psnr": psnr(img, gt), "ssim": ssim(img, gt).item()}
    return out


def mean_scores(per_view: dict) -> dict:
    """Means of score_views' output: {"psnr", "ssim", "views"} (None when there are no views)."""
    values = list(per_view.values())
    return {
        "psnr": float(np.mean([v["psnr"] for v in values])) if values else None,
        "ssim": float(np.mean([v["ssim"] for v in values])) if values else None,
        "views": len(values),
    }


class Trainer:
    """Optimises Gaussians against a scene's training views; owns params, Adam and densification."""

    def __init__(self, scene: Scene, cfg: TrainConfig, gaussians: Gaussians | None = None):
        self.scene = scene
        self.cfg = cfg
        if not scene.train:
            raise ValueError(f"{scene.root}: no training views")
        torch.manual_seed(cfg.seed)
        self.views = [view_tensors(v) for v in scene.train]
        self.test_views = [view_tensors(v) for v in scene.test]
        g = gaussians if gaussians is not None else initial_gaussians(scene, cfg)
        self.params: dict[str, nn.Parameter] = {k: nn.Parameter(v.detach().clone()) for k, v in g.to_dict().items()}
        e = scene.extent
        lrs = {
            "means": cfg.lr_means * e,
            "quats": cfg.lr_quats,
            "scales": cfg.lr_scales,
            "opacities": cfg.lr_opacities,
            "sh0": cfg.lr_sh0,
            "shN": cfg.lr_shN,
            "ids": cfg.identity.lr_ids,
        }
        self.optimizer = FusedAdam(
            [{"params": [self.params[k]], "lr": lr, "name": k} for k, lr in lrs.items()], eps=1e-15
        )
        self.densifier = Densifier(cfg.densify, scene.extent, len(g), seed=cfg.seed)
        self.step_count = 0
        self.rng = np.random.default_rng(cfg.seed)
        self._order: list[int] = []
        # the training log's running averages and a test evaluation waiting for the opacities to
        # recover from a reset: checkpointed, so a resumed run logs what an uninterrupted one does
        self.log_state: dict = {"ema_loss": None, "ema_psnr": None, "test_psnr": None, "eval_due": False}
        self.background = torch.tensor(cfg.background, dtype=torch.float32)
        self.env: Environment | None = None
        if cfg.env_sh_degree >= 0 and not cfg.random_background:
            self.env = Environment.constant(cfg.background, cfg.env_sh_degree)
            self.env.coeffs.requires_grad_(True)
            self.env_optimizer = FusedAdam([self.env.coeffs], lr=cfg.lr_env, eps=1e-15)

    # ---- state -------------------------------------------------------------------------------
    def gaussians(self) -> Gaussians:
        """The current Gaussians (detached copies)."""
        return Gaussians(**{k: v.detach().clone() for k, v in self.params.items()})

    def sh_degree_at(self, step: int) -> int:
        return min(step // max(1, self.cfg.sh_interval), self.cfg.sh_degree)

    def means_lr(self, step: int) -> float:
        """Exponential decay from lr_means to lr_means_final over the run, times the extent."""
        t = min(max(step / max(1, self.cfg.iterations), 0.0), 1.0)
        lr = math.exp((1 - t) * math.log(self.cfg.lr_means) + t * math.log(self.cfg.lr_means_final))
        return lr * self.scene.extent

    def save_checkpoint(self, path: str | os.PathLike) -> Path:
        """Write params, Adam state, densification statistics and RNG states, atomically: tensors
        and plain Python types only, so that ``read_checkpoint`` loads it with ``weights_only=True``."""
        path = Path(path)
        state = {
            **self.extra_state(),
            "step": self.step_count,
            "params": {k: v.detach() for k, v in self.params.items()},
            "optimizer": self.optimizer.state_dict(),
            "densifier": self.densifier.state_dict(),
            "rng": json.dumps(self.rng.bit_generator.state),  # holds 128-bit integers: kept as text
            "order": list(self._order),
            "torch_rng": torch.get_rng_state(),
            "log_state": dict(self.log_state),
            "config": self.cfg.to_dict(),
        }
        if self.env is not None:
            state["env"] = {"coeffs": self.env.coeffs.detach(), "optimizer": self.env_optimizer.state_dict()}
        with atomic_path(path) as tmp:
            torch.save(state, tmp)
        return path

    def load_checkpoint(self, path: str | os.PathLike, weights_only: bool = False) -> None:
        """Restore a checkpoint written by save_checkpoint, to continue training exactly.

        ``weights_only``: take only the Gaussians and their Adam moments (to refine another run's
        result with new settings); step count, schedule and RNG states start afresh.
        A damaged or foreign file raises InputError.
        """
        state = read_checkpoint(path)
        self.params = {k: nn.Parameter(v.clone()) for k, v in state["params"].items()}
        lrs = {g["name"]: g["lr"] for g in self.optimizer.param_groups}
        for group in self.optimizer.param_groups:
            group["params"] = [self.params[group["name"]]]
        self.optimizer.state.clear()
        self.optimizer.load_state_dict(state["optimizer"])
        if self.env is not None and "env" in state:
            with torch.no_grad():
                self.env.coeffs.copy_(state["env"]["coeffs"])
            self.env_optimizer.load_state_dict(state["env"]["optimizer"])
            self.env_optimizer.param_groups[0]["lr"] = self.cfg.lr_env
        n = self.params["means"].shape[0]
        if weights_only:
            for group in self.optimizer.param_groups:
                group["lr"] = lrs[group["name"]]
            self.densifier.grad_sum = torch.zeros(n)
            self.densifier.count = torch.zeros(n)
            return
        self.densifier.load_state_dict(state["densifier"])
        rng = state["rng"]
        self.rng.bit_generator.state = json.loads(rng) if isinstance(rng, str) else rng
        self._order = list(state["order"])
        torch.set_rng_state(state["torch_rng"])
        self.step_count = int(state["step"])
        self.log_state.update(state.get("log_state", {}))
        self.load_extra_state(state)

    # ---- hooks for subclasses that train more than appearance (segment.grouping) --------------
    def extra_state(self) -> dict:
        """More entries for the checkpoint."""
        return {}

    def load_extra_state(self, state: dict) -> None:
        """Restore what extra_state saved."""

    def extra_features(self) -> torch.Tensor | None:
        """Per-Gaussian channels [N,E] rendered after the color in the same pass, or None."""
        return None

    def extra_loss(self, step: int, index: int, features: torch.Tensor) -> torch.Tensor | None:
        """A loss on the rendered extra channels features [H,W,E] of training view ``index``."""
        return None

    def after_step(self, densified: bool) -> None:
        """Called after the optimiser and densification steps of every iteration."""

    # ---- training ----------------------------------------------------------------------------
    def next_view_index(self) -> int:
        """Training views in a fresh random order every epoch, as 3DGS does."""
        if not self._order:
            self._order = self.rng.permutation(len(self.views)).tolist()
        return self._order.pop()

    @property
    def backdrop(self) -> torch.Tensor | Environment:
        """What renders of the trained model show behind the Gaussians: the environment or the color."""
        return self.env if self.env is not None else self.background

    def background_for_step(self) -> torch.Tensor | Environment:
        if self.cfg.random_background:
            return torch.rand(3).to(self.background.device)
        return self.backdrop

    def train_step(self) -> dict:
        """One iteration: render a view, L1+SSIM loss (+ identity losses), backward, Adam, densification."""
        self.step_count += 1
        step = self.step_count
        cfg = self.cfg
        index = self.next_view_index()
        vt = self.views[index]
        for group in self.optimizer.param_groups:
            if group["name"] == "means":
                group["lr"] = self.means_lr(step)
        bg = self.background_for_step()
        out = render_view(
            self.params,
            vt,
            self.sh_degree_at(step),
            background=bg,
            extra_features=self.extra_features(),
            extra_moves_geometry=cfg.identity.ids_move_geometry,
        )
        gt = vt.image
        # split, not two slices: autograd then joins the two gradients with one cat instead of
        # filling and adding two zero images of all channels
        image, features = out.image.split([3, out.image.shape[-1] - 3], dim=-1)
        loss = rgb_loss(image, gt, cfg.ssim_weight)
        if cfg.alpha_entropy > 0:
            loss = loss + cfg.alpha_entropy * alpha_entropy(out.alpha)
        extra = self.extra_loss(step, index, features) if features.shape[-1] else None
        if extra is not None:
            loss = loss + extra
        loss.backward()
        self.densifier.accumulate(step, out.means2d.grad, out.radii, vt.width, vt.height)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.env is not None:
            self.env_optimizer.step()
            self.env_optimizer.zero_grad(set_to_none=True)
        changed = self.densifier.step(step, self.params, self.optimizer)
        until = self.densifier.cfg.densify_until
        if until > 0 and step in (until, cfg.iterations):  # without densification the set stays fixed
            changed |= self.prune_unseen() > 0
        self.after_step(changed)
        return {"loss": loss.item(), "image": image.detach(), "gt": gt}

    @torch.no_grad()
    def training_weights(self) -> torch.Tensor:
        """Per Gaussian [N]: its blending weight alpha*T summed over every pixel of every training view."""
        p = self.params
        args = (
            p["means"].detach().cpu(),
            p["quats"].detach().cpu(),
            torch.exp(p["scales"].detach()).cpu(),
            torch.sigmoid(p["opacities"].detach()).cpu(),
        )  # contributions runs on the CPU kernels, whatever the training device
        total = torch.zeros(p["means"].shape[0])
        for vt in self.views:
            labels = torch.zeros(vt.height, vt.width, dtype=torch.int64)
            V, K = vt.viewmat.cpu(), vt.K.cpu()
            total += contributions(*args, V, K, vt.width, vt.height, labels, num_labels=1)[:, 0]
        return total.to(p["means"].device)

    def prune_unseen(self) -> int:
        """Remove the Gaussians that no training view sees: training_weights below
        densify.prune_unseen_weight pixels, or below 1/20 of the mean weight where that is smaller
        (in tiny images many Gaussians cover under a pixel and together still matter).
        Returns how many went; their Adam state and statistics go too."""
        weights = self.training_weights()
        keep = weights >= min(self.densifier.cfg.prune_unseen_weight, float(weights.mean()) / 20)
        removed = int((~keep).sum())
        if removed and keep.any():
            keep_gaussians(self.params, self.optimizer, keep)
            self.densifier.grad_sum = self.densifier.grad_sum[keep]
            self.densifier.count = self.densifier.count[keep]
        return removed if keep.any() else 0

    def train(
        self,
        iterations: int | None = None,
        progress: bool = True,
        log_path: str | os.PathLike | None = None,
        checkpoint_path: str | os.PathLike | None = None,
        checkpoint_every: int = 0,
    ) -> Gaussians:
        """Train until ``iterations`` total steps, saving a checkpoint to ``checkpoint_path`` every
        ``checkpoint_every``-th step.

        Ctrl-C (SIGINT) or SIGTERM stops training after the current iteration: the checkpoint is
        saved (with a ``checkpoint_path``), a line says where and to continue with --resume, and
        KeyboardInterrupt is raised. A second signal aborts at once, saving nothing.

        Every ``log_every`` steps a line goes to ``log_path`` (JSON lines: running loss and training PSNR,
        Gaussian count); every ``eval_every`` steps it also holds the test split's PSNR and SSIM,
        so the gap between training and held-out views shows while training runs (an evaluation
        that falls just after an opacity reset waits ``densify_every`` steps for it to recover)."""
        total = iterations or self.cfg.iterations
        bar = tqdm(
            total=total, initial=self.step_count, disable=not progress, desc="train", unit="it", dynamic_ncols=True
        )
        try:
            with stop_on_signals() as stop:
                self._train_until(total, bar, log_path, checkpoint_path, checkpoint_every, stop)
                if stop.signal is not None:
                    bar.close()
                    self._save_on_stop(stop.signal, checkpoint_path)
        except (KeyboardInterrupt, SystemError) as e:
            # a second signal; from inside a Numba kernel call its KeyboardInterrupt comes out as a SystemError
            if isinstance(e, SystemError) and not isinstance(e.__context__, KeyboardInterrupt):
                raise
            bar.close()
            print(f"\naborted at iteration {self.step_count}; nothing saved", flush=True)
            raise KeyboardInterrupt from None
        bar.close()
        if stop.signal is not None:
            raise KeyboardInterrupt
        return self.gaussians()

    def _save_on_stop(self, signal_name: str, checkpoint_path: str | os.PathLike | None) -> None:
        """Training stopped on a signal between iterations: save the checkpoint and say so."""
        if checkpoint_path:
            self.save_checkpoint(checkpoint_path)
            where = f"checkpoint saved to {checkpoint_path} (continue with --resume)"
        else:
            where = "no checkpoint path given, nothing saved"
        print(f"\n{signal_name}: stopped at iteration {self.step_count}; {where}", flush=True)

    def _train_until(self, total, bar, log_path, checkpoint_path, checkpoint_every, stop: StopRequest) -> None:
        """The loop of ``train``: steps, log lines and periodic checkpoints until ``total`` or a stop request."""
        t0 = time.perf_counter()
        ls = self.log_state
        # line-buffered: the log is readable live
        with open(log_path, "a", buffering=1) if log_path else contextlib.nullcontext() as log:
            while self.step_count < total and stop.signal is None:
                info = self.train_step()
                p = psnr(info["image"][..., :3], info["gt"]) if self.step_count % 10 == 0 else None
                ls["ema_loss"] = info["loss"] if ls["ema_loss"] is None else 0.9 * ls["ema_loss"] + 0.1 * info["loss"]
                if p is not None:
                    ls["ema_psnr"] = p if ls["ema_psnr"] is None else 0.7 * ls["ema_psnr"] + 0.3 * p
                bar.update(1)
                record = {}
                ls["eval_due"] |= bool(
                    self.test_views and self.cfg.eval_every and self.step_count % self.cfg.eval_every == 0
                )
                since_reset = self.densifier.steps_since_reset(self.step_count)
                settled = since_reset is None or since_reset >= self.densifier.cfg.densify_every
                if (
                    self.test_views
                    and self.cfg.eval_every
                    and ((ls["eval_due"] and settled) or self.step_count == total)
                ):
                    ls["eval_due"] = False
                    scores = self.evaluate()
                    ls["test_psnr"] = scores["psnr"]
                    record = {"test_psnr": scores["psnr"], "test_ssim": scores["ssim"]}
                if record or self.step_count % self.cfg.log_every == 0 or self.step_count == total:
                    n = self.params["means"].shape[0]
                    post = {"loss": f"{ls['ema_loss']:.4f}", "psnr": f"{ls['ema_psnr'] or 0:.2f}", "n": n}
                    if ls["test_psnr"] is not None:
                        post["test"] = f"{ls['test_psnr']:.2f}"
                    bar.set_postfix(post)
                    if log is not None:
                        line = {"step": self.step_count, "loss": ls["ema_loss"], "psnr": ls["ema_psnr"], **record}
                        line.update(gaussians=n, seconds=time.perf_counter() - t0)
                        log.write(json.dumps(line) + "\n")
                if checkpoint_path and checkpoint_every and self.step_count % checkpoint_every == 0:
                    self.save_checkpoint(checkpoint_path)

    def evaluate(self, views: list[ViewTensors] | None = None) -> dict:
        """Mean PSNR and SSIM over views (default: the test split)."""
        views = self.test_views if views is None else views
        per_view = score_views(self.gaussians(), views, self.cfg.sh_degree, self.backdrop)
        return mean_scores(per_view)
