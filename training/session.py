"""Everything a run trains with, built fresh or restored from ``state/``.

A :class:`Session` bundles the networks (G, D, G_ema), their optimizers and loss scalers, the
schedules (progressive growth, EMA), the loss object (its settings and the path-length running
mean), the augmentation (ADA's p), this process's random generator and the :class:`Progress`
counters. :func:`build_session` makes a fresh one (identical on every process: the weights come
from ``--seed`` and are broadcast from rank 0 for good measure); :meth:`Session.state_dict`
collects what :func:`training.checkpoint.save_state` writes and :meth:`Session.load_state_dict`
loads a saved state back.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch

import stylegan
from stylegan.spectral import power_iteration
from training.checkpoint import LoadedState
from stylegan.config import NetworkConfig
from training.config import TrainConfig, micro_batch, parse_growth_batch
from training.counters import Progress, derive_seed
from training.distributed import Dist
from training.ema import EmaSchedule
from training.precision import make_scaler, network_precision
from training.progressive import GrowthSchedule
from training.augmentation import Augmentation
from training.loss import LossSettings, StyleGAN2Loss
from training.speedups import compile_networks, to_memory_format
from training.step import make_optimizer



@dataclass
class Session:
    cfg: TrainConfig
    dist: Dist
    net_config: Any
    G: torch.nn.Module
    D: torch.nn.Module
    G_ema: torch.nn.Module
    opt_G: torch.optim.Optimizer
    opt_D: torch.optim.Optimizer
    scaler_G: torch.amp.GradScaler | None
    scaler_D: torch.amp.GradScaler | None
    schedule: GrowthSchedule
    ema: EmaSchedule
    loss: StyleGAN2Loss
    augmentation: Augmentation
    rank_gen: torch.Generator
    progress: Progress = field(default_factory=Progress)

    @property
    def settings(self) -> LossSettings:
        return self.loss.s

    def micro_batch(self, batch: int) -> int:
        """This process's micro-batch for a global ``batch``."""
        return micro_batch(batch, self.cfg.batch_gpu, self.dist.world_size)

    def set_growth(self, resolution: int, alpha: float) -> None:
        for net in (self.G, self.D, self.G_ema):
            net.set_growth(resolution, alpha)

    def power_iteration(self) -> None:
        """One power iteration of the spectrally normalised networks (stylegan/spectral.py)."""
        if self.net_config.spectral_norm in ("d", "gd"):
            power_iteration(self.D)
        if self.net_config.spectral_norm == "gd":
            power_iteration(self.G)

    def state_dict(self) -> dict[str, Any]:
        """Arguments for :func:`training.checkpoint.save_state`; a collective (gathers every rank's RNG)."""
        rng = self.dist.all_gather_object(_rng_state(self))
        training = {
            "opt_G": self.opt_G.state_dict(),
            "opt_D": self.opt_D.state_dict(),
            **self.loss.state_dict(),  # pl_mean
            "augment": self.augmentation.state_dict(),
        }
        for name in ("scaler_G", "scaler_D"):
            scaler = getattr(self, name)
            if scaler is not None:
                training[name] = scaler.state_dict()
        phase, alpha = self.schedule.at(self.progress.nimg)
        progress = {
            **self.progress.to_dict(),
            "kimg": self.progress.nimg / 1000,
            "phase": phase.name,
            "resolution": phase.resolution,
            "alpha": alpha,
            "world_size": self.dist.world_size,
        }
        return {
            "modules": {"G": self.G, "D": self.D, "G_ema": self.G_ema},
            "net_config": self.net_config,
            "training": training,
            "rng": rng,
            "progress": progress,
        }


    def load_state_dict(self, loaded: LoadedState) -> list[str]:
        """Load ``loaded`` into ``self``; returns warnings about what could not be restored exactly."""
        notes: list[str] = []
        for name in ("G", "D", "G_ema"):
            if name not in loaded.modules:
                raise ValueError(f"{loaded.path}: the state has no {name!r} network")
            getattr(self, name).load_state_dict(loaded.modules[name], strict=True)
        self.opt_G.load_state_dict(loaded.training["opt_G"])
        self.opt_D.load_state_dict(loaded.training["opt_D"])
        for name in ("scaler_G", "scaler_D"):
            scaler = getattr(self, name)
            if scaler is not None and name in loaded.training:
                scaler.load_state_dict(loaded.training[name])
        self.loss.load_state_dict(loaded.training)
        if "augment" in loaded.training:
            self.augmentation.load_state_dict(loaded.training["augment"])
        elif self.augmentation.active:  # a state from before augmentation existed
            notes.append(f"the state has no augmentation state: --aug {self.augmentation.mode} starts afresh")
        self.progress = Progress.from_dict(loaded.progress)
        rank, world = self.dist.rank, self.dist.world_size
        saved_world = int(loaded.progress.get("world_size", len(loaded.rng)))
        if saved_world != world:
            notes.append(
                f"the state was saved by {saved_world} processes and this run has {world}: training continues, "
                "but not bit-identically (per-process random streams and data positions differ)"
            )
        if rank < len(loaded.rng):
            rng = loaded.rng[rank]
            self.rank_gen.set_state(rng["gen"])
            torch.set_rng_state(rng["cpu"])
            if "cuda" in rng and self.dist.device.type == "cuda":
                torch.cuda.set_rng_state(rng["cuda"], self.dist.device)
        else:
            self.rank_gen.manual_seed(derive_seed(self.cfg.seed, "rank", rank, self.progress.step))
        phase, alpha = self.schedule.at(self.progress.nimg)
        self.set_growth(phase.resolution, alpha)
        return notes


def build_networks(cfg: TrainConfig, net_config: NetworkConfig):
    """``(G, D)`` for the run, initialised from ``--seed`` without touching the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(cfg.seed, "init") % 2**63)
        return stylegan.build_from_config(net_config)


def make_schedule(cfg: TrainConfig, resolution: int) -> GrowthSchedule:
    if cfg.growth == "none":
        return GrowthSchedule.fixed(resolution, cfg.batch)
    return GrowthSchedule.progressive(
        resolution,
        start=cfg.growth_start or 4,
        fade_kimg=cfg.fade_kimg,
        stable_kimg=cfg.stable_kimg,
        batch=cfg.batch,
        batch_per_res=parse_growth_batch(cfg.growth_batch),
    )


def class_probs(class_counts: Sequence[int] | None, c_dim: int) -> tuple[float, ...] | None:
    """The fakes' label frequencies: the dataset's class counts, normalised (``None``: uniform)."""
    if not c_dim or not class_counts or len(class_counts) != c_dim or sum(class_counts) <= 0:
        return None
    total = sum(class_counts)
    return tuple(n / total for n in class_counts)


def build_session(
    cfg: TrainConfig, dist: Dist, net_config: NetworkConfig, class_counts: Sequence[int] | None = None,
    warn: Callable[[str], None] | None = None, compile_backend: str = "inductor",
) -> Session:
    """A fresh session for a resolved ``cfg`` and its networks (see :func:`training.resolve.resolve_run`);
    ``class_counts`` (dataset.json's) make the fakes' labels follow the dataset's class frequencies.
    ``warn`` reports a failed compile (``--compile``, with ``compile_backend``; training.speedups)."""
    G, D = build_networks(cfg, net_config)
    G, D = G.to(dist.device).train(), D.to(dist.device).train()
    dist.broadcast_module_(G)
    dist.broadcast_module_(D)
    to_memory_format((G, D), cfg.memory_format)
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    settings = LossSettings(
        r1_gamma=cfg.gamma,
        r1_interval=cfg.r1_interval,
        pl_weight=cfg.pl_weight,
        pl_interval=cfg.pl_interval,
        pl_batch_shrink=cfg.pl_batch_shrink,
        mixing=cfg.mixing,
        precision=network_precision(cfg.precision),
        pl_decay=cfg.pl_decay,
        class_probs=class_probs(class_counts, net_config.c_dim),
        loss=cfg.loss,
        gp_weight=cfg.gp_weight,
        drift=cfg.drift,
        clip=cfg.clip,
        n_critic=cfg.n_critic,
        info_codes=net_config.info_codes,
        info_weight=cfg.info_weight,
        info_cont_weight=cfg.info_cont_weight,
        # NVIDIA's StyleGAN3 moves G's EMAs (w_avg and the magnitude EMAs) in D_main alone.
        g_phase_emas=net_config.family != "stylegan3",
        synthesis_emas=net_config.family == "stylegan3",
    )
    # Lazy regularisation's Adam correction whenever an interval is set, as in StyleGAN2-ADA's loop:
    # also when a weight is 0 (cifar has no path length, yet G's lr is 0.0025 * 4/5 there too).
    # WGAN and WGAN-GP have no D_reg phase at all (their constraint is part of D_main), so D takes
    # no correction there.
    betas = (cfg.beta1, cfg.beta2)
    d_interval = None if cfg.loss in ("wgan", "wgan-gp") else cfg.r1_interval
    # pl_interval 0 (StyleGAN3): no lazy G regularisation, so no correction of G's Adam (G_reg_interval=None).
    opt_G = make_optimizer(cfg.optimizer, G.parameters(), cfg.glr, betas, cfg.pl_interval or None)
    opt_D = make_optimizer(cfg.optimizer, D.parameters(), cfg.dlr, betas, d_interval)
    schedule = make_schedule(cfg, net_config.resolution)
    phase, alpha = schedule.at(0)
    augmentation = Augmentation.for_run(cfg, dist.device)
    session = Session(
        cfg=cfg,
        dist=dist,
        net_config=G.config,
        G=G,
        D=D,
        G_ema=G_ema,
        opt_G=opt_G,
        opt_D=opt_D,
        scaler_G=make_scaler(cfg.precision, dist.device),
        scaler_D=make_scaler(cfg.precision, dist.device),
        schedule=schedule,
        ema=EmaSchedule(cfg.ema_kimg, cfg.ema_rampup),
        loss=StyleGAN2Loss(G, D, settings, augment=augmentation if augmentation.active else None,
                           fast=compile_networks(G, D, compile_backend, warn) if cfg.compile else None),
        augmentation=augmentation,
        rank_gen=torch.Generator().manual_seed(derive_seed(cfg.seed, "rank", dist.rank)),
    )
    session.set_growth(phase.resolution, alpha)
    return session


def _rng_state(session: Session) -> dict[str, Any]:
    state = {"gen": session.rank_gen.get_state(), "cpu": torch.get_rng_state()}
    if session.dist.device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(session.dist.device)
    return state
