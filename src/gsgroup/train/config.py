"""Training settings: ``TrainConfig`` (appearance, environment, schedule) with its nested
``IdentityConfig`` (Gaussian Grouping's identity losses) and ``DensifyConfig`` (train.densify).

Each default is written once, here; the CLI's options are generated from the fields that carry
``option(...)`` metadata (``gsgroup.options``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from ..errors import InputError
from ..options import bounds, check_bounds, option
from .densify import DensifyConfig


@dataclass
class IdentityConfig:
    """Identity encodings and their losses (segment.grouping.GroupingTrainer)."""

    id_dim: int = option(16, "size of the identity encoding", min=1)
    lr_ids: float = 2.5e-3
    lambda_2d: float = 1.0
    lambda_3d: float = 2.0
    l3d_every: int = field(default=5, metadata=bounds(min=1))
    l3d_k: int = field(default=5, metadata=bounds(min=1))
    l3d_m: int = field(default=1000, metadata=bounds(min=1))
    lr_classifier: float = 5e-4
    # False: identity losses train encodings and classifier only, so masks never distort the
    # geometry or color (the default). True: as the original, they also move the Gaussians.
    ids_move_geometry: bool = option(
        False, "let the identity losses move the Gaussians too, as the original (default: encodings only)"
    )

    def __post_init__(self):
        check_bounds(self)


@dataclass
class TrainConfig:
    """Every training setting. Learning rates are those of 3DGS (position lr scaled by the extent)."""

    iterations: int = field(default=7000, metadata=bounds(min=1))
    sh_degree: int = option(3, "degree of the view-dependent color", choices=[0, 1, 2, 3])
    # the active SH degree rises by one every this many iterations
    sh_interval: int = field(default=1000, metadata=bounds(min=1))
    seed: int = option(0, "random seed")
    lr_means: float = 1.6e-4
    lr_means_final: float = 1.6e-6
    lr_sh0: float = 2.5e-3
    lr_shN: float = 2.5e-3 / 20
    lr_opacities: float = 0.05
    lr_scales: float = 5e-3
    lr_quats: float = 1e-3
    ssim_weight: float = 0.2
    background: tuple[float, float, float] = (0.0, 0.0, 0.0)  # fixed color, or the environment's first color
    random_background: bool = option(
        False, "random background color each iteration (instead of the learned environment)"
    )
    # A learned environment (train.environment) behind the Gaussians: sky and far backdrops are
    # held by it, not painted by floaters. SH degree of its color per direction; -1 = off.
    env_sh_degree: int = field(default=3, metadata=bounds(min=-1))
    lr_env: float = 0.01
    # Alpha entropy: mean over pixels of -(a ln a + (1-a) ln(1-a)) of the rendered alpha a, times this
    # weight, added to the loss. Pixels become fully covered or empty, so a background the environment
    # can show is not painted half-transparently by Gaussians that veil other views.
    alpha_entropy: float = option(
        0.01,
        "weight of a loss pushing each pixel's alpha to 0 or 1, against floaters on plain backgrounds; 0 = off",
        min=0,
    )
    init: str = option(
        "auto",
        "initialise from SfM points, or randomly in the camera frustums (auto: points if any)",
        choices=["auto", "points", "random"],
    )
    init_points: int = field(
        default=20_000, metadata=bounds(min=1)
    )  # number of random points for random initialisation
    random_init_max_scale: float = 0.01  # cap on their initial scale, as a fraction of the scene extent
    log_every: int = field(default=50, metadata=bounds(min=1))
    eval_every: int = option(
        500, "log the test split's PSNR/SSIM to train_log.jsonl every N iterations (0 = never)", min=0
    )
    identity: IdentityConfig = field(default_factory=IdentityConfig)
    densify: DensifyConfig = field(default_factory=DensifyConfig)

    def __post_init__(self):
        """InputError naming the field when a count is out of range (iterations 0, eval_every -1, ...)."""
        check_bounds(self)

    @classmethod
    def for_length(
        cls, iterations: int, densify: bool = True, max_gaussians: int | None = None, **settings
    ) -> TrainConfig:
        """A config for ``iterations`` steps with the 3DGS densification schedule stretched to that
        length (``densify=False``: the set of Gaussians stays fixed); ``settings`` set other fields."""
        schedule = DensifyConfig(max_gaussians=max_gaussians).scaled(iterations)
        if not densify:
            schedule.densify_until = 0
        return cls(iterations=iterations, densify=schedule, **settings)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """Read ``to_dict``'s output. Older files are read too: identity settings at the top level
        move into ``identity``; without ``env_sh_degree`` a run has no learned environment, without
        ``alpha_entropy`` no alpha entropy (both came later), so a resumed run trains as it began."""
        d = dict(d)
        identity = dict(d.pop("identity", {}))
        for f in fields(IdentityConfig):
            if f.name in d:  # the flat layout of older config.json files
                identity[f.name] = d.pop(f.name)
        unknown = set(d) - {f.name for f in fields(cls)}
        unknown |= set(identity) - {f.name for f in fields(IdentityConfig)}
        unknown |= set(d.get("densify", {})) - {f.name for f in fields(DensifyConfig)}
        if unknown:
            raise InputError(
                f"train settings: unknown keys {sorted(unknown)}; written by a newer gsgroup? "
                "upgrade gsgroup or remove them"
            )
        d["identity"] = IdentityConfig(**identity)
        d["densify"] = DensifyConfig(**d.get("densify", {}))
        d["background"] = tuple(d.get("background", (0.0, 0.0, 0.0)))
        d.setdefault("env_sh_degree", -1)  # runs from before the learned environment had none
        d.setdefault("alpha_entropy", 0.0)  # nor the alpha entropy
        return cls(**d)
