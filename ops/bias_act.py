"""Fused bias + activation + gain + clamp.

``bias_act(x, b)`` computes ``clamp(act(x + b, alpha) * gain, -clamp, clamp)``, the epilogue of
every fully connected and convolution layer in StyleGAN2. The default gains keep the signal's
second moment roughly unchanged through the activation (He et al. 2015): ``sqrt(2)`` for the
rectifiers and swish, 1 for the rest. Activation conventions follow the StyleGAN2 papers so that
networks written for them behave identically.

``_bias_act_ref`` is the pure-PyTorch ground truth. It is built from differentiable torch ops, so
first and second derivatives (R1 needs the latter) come from autograd.

The CUDA path (csrc/bias_act.*) is three registered operators: the forward, its gradient and the
extra term of the second derivative. Backward saves the output y for the activations whose
derivative is a function of it (linear, relu, lrelu with alpha >= 0, tanh, sigmoid), else the input
x and b, never both. The gradient operator has its own autograd formula, built from the gradient
operators, so R1 can differentiate through it; third derivatives are not implemented.
"""

from __future__ import annotations

import functools
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
    if resolve_impl(impl, "bias_act", x.device, x.dtype) == "cuda":
        from ops._build import NAMESPACE

        return _bias_act_kernels(NAMESPACE, x, b, dim, act, alpha, gain, clamp)
    return _bias_act_ref(x, b, dim, act, alpha, gain, clamp)


def _alpha_and_gain(act: str, alpha: float | None, gain: float | None) -> tuple[float, float]:
    """``alpha`` and ``gain`` with the activation's defaults filled in."""
    spec = ACTIVATIONS[act]
    return (spec.default_alpha if alpha is None else float(alpha), spec.default_gain if gain is None else float(gain))


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
    alpha, gain = _alpha_and_gain(act, alpha, gain)
    if b is not None:
        shape = [-1 if i == dim else 1 for i in range(x.ndim)]
        x = x + b.to(x.dtype).reshape(shape)
    x = spec.func(x, alpha)
    if gain != 1:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x


# --- The registered kernels (csrc/bias_act.*) ---------------------------------------------------

# Activations whose derivative is not piecewise constant: only they have a second-order term.
_CURVED = frozenset({"tanh", "sigmoid", "elu", "selu", "softplus", "swish"})


def _saves_output(act: str, alpha: float) -> bool:
    """Whether backward works from the output y (else from the input x and b). The same rule as
    ``uses_output`` in csrc/bias_act.h."""
    return act in ("linear", "relu", "tanh", "sigmoid") or (act == "lrelu" and alpha >= 0)


def _bias_act_kernels(
    namespace: str,
    x: torch.Tensor,
    b: torch.Tensor | None,
    dim: int,
    act: str,
    alpha: float | None,
    gain: float | None,
    clamp: float | None,
) -> torch.Tensor:
    """:func:`bias_act` through the registered operators of ``namespace`` (arguments validated)."""
    alpha, gain = _alpha_and_gain(act, alpha, gain)
    clamp = None if clamp is None else float(clamp)
    if b is not None:
        b = b.to(x.dtype)
    kernels = getattr(torch.ops, namespace)
    return kernels.bias_act(x, b, dim if b is not None else 0, act, alpha, gain, clamp)


def _other_dims(t: torch.Tensor, dim: int) -> list[int]:
    return [d for d in range(t.ndim) if d != dim]


@functools.cache
def _register_kernels(namespace: str) -> None:
    """Fake (meta) implementations and autograd formulas of the operators in ``namespace``; called
    once, after the extension that defines them is loaded (ops/extension.py)."""
    from ops.extension import kernel_layout

    kernels = getattr(torch.ops, namespace)

    def like(t: torch.Tensor) -> torch.Tensor:
        return torch.empty_like(t, memory_format=kernel_layout(t))

    @torch.library.register_fake(f"{namespace}::bias_act")
    def _(x, b, dim, act, alpha, gain, clamp):
        return like(x)

    @torch.library.register_fake(f"{namespace}::bias_act_grad")
    def _(dy, x, y, b, dim, act, alpha, gain, clamp):
        return like(y if _saves_output(act, alpha) else x)

    @torch.library.register_fake(f"{namespace}::bias_act_grad2")
    def _(ggx, dy, x, y, b, dim, act, alpha, gain, clamp):
        return like(y if _saves_output(act, alpha) else x)

    def setup_forward(ctx, inputs, output):
        x, b, dim, act, alpha, gain, clamp = inputs
        ctx.args = (dim, act, alpha, gain, clamp)
        if _saves_output(act, alpha):
            ctx.save_for_backward(None, output, None)
        else:
            ctx.save_for_backward(x, None, b)

    def backward_forward(ctx, dy):
        x, y, b = ctx.saved_tensors
        dim = ctx.args[0]
        dx = kernels.bias_act_grad(dy, x, y, b, *ctx.args)
        db = dx.sum(_other_dims(dx, dim)) if ctx.needs_input_grad[1] else None
        return (dx if ctx.needs_input_grad[0] else None), db, None, None, None, None, None

    torch.library.register_autograd(f"{namespace}::bias_act", backward_forward, setup_context=setup_forward)

    # d(dx)/d(dy) is the gradient operator itself; d(dx)/d(y or x) is the second-order term.
    def setup_grad(ctx, inputs, output):
        dy, x, y, b, dim, act, alpha, gain, clamp = inputs
        ctx.args = (dim, act, alpha, gain, clamp)
        ctx.save_for_backward(dy, x, y, b)

    def backward_grad(ctx, ggx):
        dy, x, y, b = ctx.saved_tensors
        dim, act, alpha = ctx.args[:3]
        g_dy = kernels.bias_act_grad(ggx, x, y, b, *ctx.args) if ctx.needs_input_grad[0] else None
        g_x = g_y = g_b = None
        if act in _CURVED and any(ctx.needs_input_grad[1:4]):
            g_ref = kernels.bias_act_grad2(ggx, dy, x, y, b, *ctx.args)
            if _saves_output(act, alpha):
                g_y = g_ref
            else:
                g_x = g_ref
                if b is not None and ctx.needs_input_grad[3]:
                    g_b = g_ref.sum(_other_dims(g_ref, dim))
        return g_dy, g_x, g_y, g_b, None, None, None, None, None

    torch.library.register_autograd(f"{namespace}::bias_act_grad", backward_grad, setup_context=setup_grad)

    def backward_grad2(ctx, *grads):
        raise NotImplementedError(
            "bias_act: third derivatives are not implemented by the CUDA kernels; use impl='ref'"
        )

    torch.library.register_autograd(f"{namespace}::bias_act_grad2", backward_grad2)
