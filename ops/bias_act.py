"""Fused bias + activation + gain + clamp.

``bias_act(x, b)`` computes ``clamp(act(x + b, alpha) * gain, -clamp, clamp)``, the epilogue of
every fully connected and convolution layer in StyleGAN2. The default gains keep the signal's
second moment roughly unchanged through the activation (He et al. 2015): ``sqrt(2)`` for the
rectifiers and swish, 1 for the rest. Activation conventions follow the StyleGAN2 papers so that
networks written for them behave identically.

``_bias_act_ref`` is the pure-PyTorch ground truth. It is built from differentiable torch ops, so
first and second derivatives (R1 needs the latter) come from autograd.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from ops.impl import resolve_impl


@dataclass(frozen=True)
class Activation:
    """One activation function with the alpha and gain it uses when the caller gives none."""

    func: Callable[[torch.Tensor, float], torch.Tensor]
    default_alpha: float
    default_gain: float


ACTIVATIONS: dict[str, Activation] = {
    "linear": Activation(lambda x, a: x, 0.0, 1.0),
    "relu": Activation(lambda x, a: F.relu(x), 0.0, math.sqrt(2)),
    "lrelu": Activation(lambda x, a: F.leaky_relu(x, a), 0.2, math.sqrt(2)),
    "tanh": Activation(lambda x, a: torch.tanh(x), 0.0, 1.0),
    "sigmoid": Activation(lambda x, a: torch.sigmoid(x), 0.0, 1.0),
    "elu": Activation(lambda x, a: F.elu(x), 0.0, 1.0),
    "selu": Activation(lambda x, a: F.selu(x), 0.0, 1.0),
    "softplus": Activation(lambda x, a: F.softplus(x), 0.0, 1.0),
    "swish": Activation(lambda x, a: torch.sigmoid(x) * x, 0.0, math.sqrt(2)),
}


def _check_args(x: torch.Tensor, b: torch.Tensor | None, dim: int, act: str, clamp: float | None) -> None:
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"x: expected a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(f"x: expected a floating-point tensor, got dtype {x.dtype}")
    if act not in ACTIVATIONS:
        raise ValueError(f"act={act!r}: expected one of {', '.join(map(repr, ACTIVATIONS))}")
    if clamp is not None and not clamp >= 0:
        raise ValueError(f"clamp={clamp!r}: expected None (no clamping) or a number >= 0")
    if b is None:
        return
    if not 0 <= dim < x.ndim:
        raise ValueError(f"dim={dim}: expected 0 <= dim < x.ndim = {x.ndim}")
    if b.ndim != 1 or b.shape[0] != x.shape[dim]:
        raise ValueError(
            f"b: expected a 1-D tensor of length x.shape[{dim}] = {x.shape[dim]}, got shape {tuple(b.shape)}"
        )


def bias_act(
    x: torch.Tensor,
    b: torch.Tensor | None = None,
    dim: int = 1,
    act: str = "linear",
    alpha: float | None = None,
    gain: float | None = None,
    clamp: float | None = None,
    impl: str = "auto",
) -> torch.Tensor:
    """Add bias ``b`` along ``dim``, apply ``act``, scale by ``gain``, clamp to ``[-clamp, clamp]``.

    Args:
        x: input of any shape and floating dtype; the output has the same shape, dtype and device.
        b: optional 1-D bias of length ``x.shape[dim]``; cast to ``x.dtype``.
        dim: the dimension of ``x`` that ``b`` runs along (channels: 1).
        act: one of :data:`ACTIVATIONS`.
        alpha: the activation's shape parameter (lrelu's negative slope); ``None`` uses its default.
        gain: output scale; ``None`` uses the activation's default (``sqrt(2)`` for lrelu).
        clamp: clamp the output to ``[-clamp, clamp]``; ``None`` disables clamping.
        impl: ``'auto'``, ``'ref'`` or ``'cuda'`` (see :mod:`ops.impl`).
    """
    _check_args(x, b, dim, act, clamp)
    resolved = resolve_impl(impl, "bias_act", x.device)
    if resolved == "cuda":  # pragma: no cover - the kernels land with the fused-ops issue
        raise NotImplementedError("bias_act: CUDA kernels are not part of this build")
    return _bias_act_ref(x, b, dim, act, alpha, gain, clamp)


def _bias_act_ref(
    x: torch.Tensor,
    b: torch.Tensor | None,
    dim: int,
    act: str,
    alpha: float | None,
    gain: float | None,
    clamp: float | None,
) -> torch.Tensor:
    """Pure-PyTorch reference of :func:`bias_act` (arguments already validated)."""
    spec = ACTIVATIONS[act]
    alpha = spec.default_alpha if alpha is None else float(alpha)
    gain = spec.default_gain if gain is None else float(gain)
    if b is not None:
        shape = [-1 if i == dim else 1 for i in range(x.ndim)]
        x = x + b.to(x.dtype).reshape(shape)
    x = spec.func(x, alpha)
    if gain != 1:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x
