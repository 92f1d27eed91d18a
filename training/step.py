"""One optimizer step of one phase: accumulate over micro-batches, all-reduce once, check, step.

A training iteration runs the phases of StyleGAN2's lazy regularisation (Karras et al. 2020,
sec. 3.1 and appendix B): ``G_main`` (every step), ``G_reg`` (path length, every ``pl_interval``
steps), ``D_main`` (every step) and ``D_reg`` (R1, every ``r1_interval`` steps). Each phase is its own
optimizer step. The regularisers are multiplied by their interval so their strength per image is
unchanged, and Adam's learning rate and betas are corrected for the fewer steps
(:func:`lazy_adam_settings`).

The losses themselves, their weights, the path-length running mean and the augmentation belong to
the loss object (:class:`training.loss.StyleGAN2Loss`); this module keeps what is the same for
every loss: accumulation, the all-reduce, skipping a non-finite step, the optimizer step.

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

from training.distributed import Dist
from training.loss import StyleGAN2Loss
from training.precision import onednn_unsafe, without_onednn


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


ADAM_EPS = 1e-8
RMSPROP_ALPHA = 0.99


def make_optimizer(kind: str, params, lr: float, betas: tuple[float, float], interval: int | None) -> torch.optim.Optimizer:
    """``kind`` 'adam' (Adam with ``betas``) or 'rmsprop' (RMSProp, smoothing 0.99: PyTorch's and the
    WGAN paper's framework default), with lazy regularisation's correction of :func:`lazy_adam_settings`
    (RMSProp's smoothing constant is corrected like Adam's beta2)."""
    lr, (beta1, beta2) = lazy_adam_settings(lr, betas, interval)
    if kind == "adam":
        return torch.optim.Adam(params, lr=lr, betas=(beta1, beta2), eps=ADAM_EPS)
    if kind == "rmsprop":
        _, (_, alpha) = lazy_adam_settings(1.0, (0.0, RMSPROP_ALPHA), interval)
        return torch.optim.RMSprop(params, lr=lr, alpha=alpha, eps=ADAM_EPS)
    raise ValueError(f"optimizer {kind!r}: expected 'adam' or 'rmsprop'")


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


def run_phase(
    name: str,
    loss: StyleGAN2Loss,
    opt: torch.optim.Optimizer,
    micro_batches: Sequence[MicroBatch],
    *,
    dist: Dist,
    scaler: torch.amp.GradScaler | None = None,
    stop_requested: bool = False,
    save_requested: bool = False,
) -> PhaseResult:
    """Run phase ``name`` of ``loss`` over this process's micro-batches and take one optimizer step.

    Gradients are accumulated locally, then summed over processes together with the statistics,
    the changes of the float buffers (G's ``w_avg``, batch-norm statistics) and two flags (a stop request, a state save that the
    main process asks for), in one flat all-reduce, so every process decides alike. If any
    summed loss (or, without a loss scaler, any gradient) is not finite, the step is skipped and
    the buffers are restored: every process sees the same sums, so all skip together.
    """
    trained, frozen = loss.networks(name)
    sizes = [mb.real.shape[0] for mb in micro_batches]
    count = loss.count(name, sizes, dist.world_size)
    grad_scale = 1.0 if scaler is None else float(scaler.get_scale())
    # Every phase that runs G's mapping moves its w_avg (as StyleGAN2-ADA), and batch normalisation
    # (DCGAN) moves running statistics in G and D: keep them in step across processes (the mean change).
    nets = (loss.D,) if name == "D_reg" else (loss.G, loss.D)
    bufs = [b for net in nets for b in net.buffers() if b.is_floating_point()]
    bufs_before = [b.detach().clone() for b in bufs]

    # bfloat16 on a CPU: the double backward avoids oneDNN, which gets some of its shapes wrong.
    avoid_onednn = loss.double_backward(name) and onednn_unsafe(loss.s.precision, dist.device)

    def backward(value: torch.Tensor) -> None:
        with without_onednn(avoid_onednn):
            (value if scaler is None else scaler.scale(value)).backward()

    opt.zero_grad(set_to_none=True)
    with requires_grad(trained, True), requires_grad(frozen, False):
        named = loss.accumulate(name, micro_batches, count=count, grad_scale=grad_scale, backward=backward,
                                reduce=dist.sum_)
    keys = list(named)
    flags = torch.tensor([float(stop_requested), float(save_requested)], dtype=torch.float64, device=dist.device)
    stats = torch.cat([torch.stack([named[k].to(dist.device) for k in keys]) if keys else flags[:0], flags])

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
        pl_mean=loss.end_phase(name, taken=finite),
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
    loss.after_step(name, taken=finite)
    opt.zero_grad(set_to_none=True)
    return result
