"""One optimizer step of one phase: accumulate over micro-batches, all-reduce once, check, step.

A training iteration runs the phases of StyleGAN2's lazy regularisation (Karras et al. 2020,
sec. 3.1 and appendix B): ``G_main`` (every step), ``G_reg`` (path length, every ``pl_interval``
steps), ``D_main`` (every step) and ``D_reg`` (R1, every ``r1_interval`` steps). Each phase is its own
optimizer step. The regularisers are multiplied by their interval so their strength per image is
unchanged, and Adam's learning rate and betas are corrected for the fewer steps
(:func:`lazy_adam_settings`).

Exactness across processes: every micro-batch's randomness (latents, labels, mixing, noise inputs,
path-length directions) comes from a seed that travels with the micro-batch, and each loss is a
sum of per-sample terms divided by the phase's *global* sample count. Summing the gradients of all
processes therefore gives the gradient one process computes over the same micro-batches.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import torch

from training import loss as L
from training.distributed import Dist

PHASES = ("G_main", "G_reg", "D_main", "D_reg")
# Statistics each phase reports, as sums over its samples (divided by ``count`` for the mean).
PHASE_STATS = {
    "G_main": ("loss_G", "scores_fake_G"),
    "G_reg": ("pl_penalty", "pl_length"),
    "D_main": ("loss_D", "scores_real", "scores_fake"),
    "D_reg": ("r1_penalty",),
}


@dataclass(frozen=True)
class LossSettings:
    """The loss weights a phase needs (a view of :class:`training.config.TrainConfig`)."""

    r1_gamma: float
    r1_interval: int
    pl_weight: float
    pl_interval: int
    pl_batch_shrink: int
    mixing: float
    precision: str = "fp32"  # the networks' own precision argument (training.precision.network_precision)
    pl_decay: float = 0.01  # StyleGAN2's running-mean decay of the path lengths
    class_probs: tuple[float, ...] | None = None  # the fakes' label frequencies (the dataset's); None: uniform


@dataclass(frozen=True)
class MicroBatch:
    """One process's share of one accumulation round.

    ``real`` is float ``[n, C, H, W]`` in [-1, 1] on the device, ``real_c`` one-hot ``[n, c_dim]``;
    ``seed`` drives every random draw made for this micro-batch.
    """

    real: torch.Tensor
    real_c: torch.Tensor
    seed: int


@dataclass
class PhaseResult:
    """What one phase did: its statistics summed over all processes, and whether it stepped."""

    name: str
    count: int
    sums: dict[str, float] = field(default_factory=dict)
    skipped: bool = False
    stop_requested: bool = False
    save_requested: bool = False  # the main process asked for a state save (--state-every)
    pl_mean: float | None = None  # G_reg: the path-length running mean after this phase

    def mean(self, key: str) -> float:
        return self.sums[key] / max(self.count, 1)


def phases_for_step(step: int, s: LossSettings) -> list[str]:
    """The phases of iteration ``step`` (0-based): regularisers run when ``step`` hits their interval."""
    names = ["G_main"]
    if s.pl_weight > 0 and step % s.pl_interval == 0:
        names.append("G_reg")
    names.append("D_main")
    if s.r1_gamma > 0 and step % s.r1_interval == 0:
        names.append("D_reg")
    return names


def lazy_adam_settings(lr: float, betas: tuple[float, float], interval: int | None) -> tuple[float, tuple[float, float]]:
    """Adam's lr and betas for lazy regularisation (StyleGAN2 appendix B).

    With the regulariser run every ``k`` steps, the network takes ``k + 1`` optimizer steps per
    ``k`` main steps; scaling lr by ``c = k / (k + 1)`` and raising the betas to ``c`` keeps the
    effective step size and averaging horizon of Adam per iteration unchanged.
    """
    if not interval:
        return lr, betas
    c = interval / (interval + 1)
    return lr * c, (betas[0] ** c, betas[1] ** c)


@contextlib.contextmanager
def requires_grad(module: torch.nn.Module, flag: bool) -> Iterator[None]:
    """Set ``requires_grad`` on every parameter of ``module``; restore the previous flags on exit."""
    params = list(module.parameters())
    before = [p.requires_grad for p in params]
    try:
        for p in params:
            p.requires_grad_(flag)
        yield
    finally:
        for p, b in zip(params, before):
            p.requires_grad_(b)


def seeded(seed: int, device: torch.device) -> torch.Generator:
    """The generator of one micro-batch: latents, labels, mixing, noise inputs and PL directions."""
    return torch.Generator(device=device).manual_seed(seed)


def pl_micro_batch(n: int, shrink: int) -> int:
    """Samples per micro-batch used by path-length regularisation (StyleGAN2 uses half)."""
    return max(1, n // shrink)


def phase_count(name: str, micro_sizes: Sequence[int], world_size: int, s: LossSettings) -> int:
    """Global number of samples a phase averages over (all processes, all rounds)."""
    if name == "G_reg":
        return sum(pl_micro_batch(n, s.pl_batch_shrink) for n in micro_sizes) * world_size
    return sum(micro_sizes) * world_size


def _micro_losses(
    name: str,
    G: torch.nn.Module,
    D: torch.nn.Module,
    mb: MicroBatch,
    gen: torch.Generator,
    s: LossSettings,
    grad_scale: float,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The summed (unnormalised) loss of one micro-batch and its per-sample statistics."""
    n, device, prec = mb.real.shape[0], mb.real.device, s.precision
    if name in ("G_main", "D_main"):
        z = L.sample_z(n, G.z_dim, gen, device)
        c = L.sample_c(n, G.c_dim, gen, device, s.class_probs)
    if name == "G_main":
        loss, fake = L.g_main_loss(G, D, z, c, mixing=s.mixing, gen=gen, precision=prec)
        return loss.sum(), [loss.detach(), fake]
    if name == "D_main":
        loss_fake, fake = L.d_fake_loss(G, D, z, c, mixing=s.mixing, gen=gen, precision=prec)
        loss_real, real = L.d_real_loss(D, mb.real, mb.real_c, precision=prec)
        return (loss_fake + loss_real).sum(), [(loss_fake + loss_real).detach(), real, fake]
    if name == "D_reg":
        penalty = L.r1_penalty(D, mb.real, mb.real_c, grad_scale=grad_scale, precision=prec)
        return (penalty * (s.r1_gamma / 2 * s.r1_interval)).sum(), [penalty.detach()]
    raise ValueError(f"phase={name!r}: expected one of {', '.join(PHASES[:1] + PHASES[2:])} here")


def _pl_lengths(G: torch.nn.Module, mb: MicroBatch, s: LossSettings, grad_scale: float) -> torch.Tensor:
    """Path lengths of one micro-batch's (smaller) G_reg batch, with the graph for backward."""
    device = mb.real.device
    gen = seeded(mb.seed, device)
    m = pl_micro_batch(mb.real.shape[0], s.pl_batch_shrink)
    z = L.sample_z(m, G.z_dim, gen, device)
    c = L.sample_c(m, G.c_dim, gen, device, s.class_probs)
    return L.path_lengths(G, z, c, mixing=s.mixing, gen=gen, grad_scale=grad_scale, precision=s.precision)


def _accumulate_pl(
    G: torch.nn.Module, micro_batches: Sequence[MicroBatch], s: LossSettings, dist: Dist, pl_mean: torch.Tensor,
    scaler: torch.amp.GradScaler | None, grad_scale: float, count: int, stats: torch.Tensor,
) -> torch.Tensor:
    """G_reg in StyleGAN2-ADA's order: update the running mean with this phase's lengths, then
    penalise against the updated mean. The mean is over the whole phase (all micro-batches of all
    processes), so the lengths of every micro-batch are computed first and kept for backward; one
    small all-reduce gives their global mean. Returns the updated running mean."""
    lengths = [_pl_lengths(G, mb, s, grad_scale) for mb in micro_batches]
    total = torch.stack([torch.stack([l.detach().double().sum() for l in lengths]).sum(),
                         torch.tensor(float(sum(l.numel() for l in lengths)), dtype=torch.float64, device=stats.device)])
    dist.sum_([total])
    lengths_mean = float(total[0] / total[1].clamp(min=1))
    new_mean = L.updated_pl_mean(pl_mean, lengths_mean, s.pl_decay)
    for l in lengths:
        weights = L.pl_surrogate_weights(l, new_mean, lengths_mean, s.pl_decay)
        loss = (weights * l).sum() * (s.pl_weight * s.pl_interval) / count
        (loss if scaler is None else scaler.scale(loss)).backward()
        stats[0] += L.pl_penalty(l.detach(), new_mean).double().sum()
        stats[1] += l.detach().double().sum()
    return new_mean


def run_phase(
    name: str,
    G: torch.nn.Module,
    D: torch.nn.Module,
    opt: torch.optim.Optimizer,
    micro_batches: Sequence[MicroBatch],
    *,
    settings: LossSettings,
    dist: Dist,
    pl_mean: torch.Tensor,
    scaler: torch.amp.GradScaler | None = None,
    stop_requested: bool = False,
    save_requested: bool = False,
) -> PhaseResult:
    """Run phase ``name`` over this process's micro-batches and take one optimizer step.

    Gradients are accumulated locally, then summed over processes together with the statistics,
    the changes of G's float buffers (``w_avg``) and two flags (a stop request, a state save that the
    main process asks for), in one flat all-reduce, so every process decides alike. If any
    summed loss (or, without a loss scaler, any gradient) is not finite, the step is skipped and
    G's buffers are restored: every process sees the same sums, so all skip together.
    """
    trained, frozen = (G, D) if name.startswith("G") else (D, G)
    device = dist.device
    sizes = [mb.real.shape[0] for mb in micro_batches]
    count = phase_count(name, sizes, dist.world_size, settings)
    keys = PHASE_STATS[name]
    stats = torch.zeros(len(keys) + 2, dtype=torch.float64, device=device)  # + the two flags
    grad_scale = 1.0 if scaler is None else float(scaler.get_scale())
    # Every phase that runs G's mapping moves its w_avg (as StyleGAN2-ADA): keep it in step across processes.
    bufs = [b for b in G.buffers() if b.is_floating_point()] if name != "D_reg" else []
    bufs_before = [b.detach().clone() for b in bufs]

    opt.zero_grad(set_to_none=True)
    new_pl_mean = None
    with requires_grad(trained, True), requires_grad(frozen, False):
        if name == "G_reg":
            new_pl_mean = _accumulate_pl(G, micro_batches, settings, dist, pl_mean, scaler, grad_scale, count, stats)
        else:
            for mb in micro_batches:
                gen = seeded(mb.seed, device)
                loss, per_sample = _micro_losses(name, G, D, mb, gen, settings, grad_scale)
                loss = loss / count
                (loss if scaler is None else scaler.scale(loss)).backward()
                for i, v in enumerate(per_sample):
                    stats[i] += v.double().sum()
    stats[-2], stats[-1] = float(stop_requested), float(save_requested)

    params = [p for p in trained.parameters() if p.grad is not None]
    grads = [p.grad for p in params]
    deltas = [b.detach() - b0 for b, b0 in zip(bufs, bufs_before)] if dist.active else []
    dist.sum_(grads + deltas + [stats])

    finite = bool(torch.isfinite(stats).all())
    if finite and scaler is None and grads:
        # A sum is non-finite when any element is (or when it overflows, which is as bad).
        finite = bool(torch.isfinite(torch.stack([g.sum() for g in grads])).all())
    result = PhaseResult(
        name=name,
        count=count,
        sums={k: float(stats[i]) for i, k in enumerate(keys)},
        skipped=not finite,
        stop_requested=bool(stats[-2] > 0),
        save_requested=bool(stats[-1] > 0),
        pl_mean=float(new_pl_mean) if new_pl_mean is not None and finite else None,
    )
    with torch.no_grad():
        if not finite:
            for b, b0 in zip(bufs, bufs_before):
                b.copy_(b0)
            if scaler is not None:
                # Under fp16 a non-finite penalty is usually an overflow of the scaled inner
                # gradient: back the scale off, as the scaler does for gradients.
                scaler.update(new_scale=scaler.get_scale() * scaler.get_backoff_factor())
        elif dist.active:
            for b, b0, d in zip(bufs, bufs_before, deltas):
                b.copy_(b0 + d / dist.world_size)
    if finite:
        if scaler is not None:
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()
    opt.zero_grad(set_to_none=True)
    return result
