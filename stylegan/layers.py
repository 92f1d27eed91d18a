"""Layers with an equalized learning rate, and the small normalisation layers around them.

Equalized learning rate (ProGAN, Karras et al. 2018, sec. 4.1): weights are stored as
``N(0, 1 / lr_multiplier^2)`` samples and scaled at run time by ``c = lr_multiplier / sqrt(fan_in)``
(He et al. 2015's constant), so that every layer learns at the same speed under Adam, whose update
size does not depend on the gradient's scale. ``lr_multiplier`` slows a layer down on purpose
(StyleGAN sec. 4 uses 0.01 for the mapping network). Bias, activation, gain and clamping go through
:func:`ops.bias_act.bias_act`.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from ops.bias_act import ACTIVATIONS, bias_act
from ops.conv2d_resample import conv2d_resample
from ops.upfirdn2d import setup_filter


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """Scale each vector to unit second moment (ProGAN sec. 4.2 pixelwise normalisation; StyleGAN
    applies it to z and to the embedded label): ``x / sqrt(mean(x^2) + eps)``."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


def register_filter(module: nn.Module, taps: Sequence[float]) -> None:
    """Give ``module`` a non-persistent ``resample_filter`` buffer: it follows ``.to(device)`` but is
    rebuilt from the config, so it is not stored in network files. Computed on the CPU even under a
    ``torch.device('meta')`` context (used to count parameters without allocating them)."""
    with torch.device("cpu"):
        f = setup_filter(list(taps))
    module.register_buffer("resample_filter", f, persistent=False)


class FullyConnectedLayer(nn.Module):
    """``y = act(x @ (c * W)^T + lr_multiplier * b)`` with the equalized-lr constant ``c``."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        activation: str = "linear",
        lr_multiplier: float = 1.0,
        bias_init: float | Sequence[float] = 0.0,
        weight_init: float = 1.0,
    ) -> None:
        """``weight_init`` scales the initial N(0, 1) weights (StyleGAN3's input affine starts at 0);
        ``bias_init`` is one number or one per output feature."""
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation={activation!r}: expected one of {', '.join(ACTIVATIONS)}")
        self.in_features, self.out_features, self.activation = in_features, out_features, activation
        self.weight = nn.Parameter(torch.randn(out_features, in_features) * weight_init / lr_multiplier)
        # Stored so that the effective initial bias (after bias_gain) is exactly bias_init.
        init = torch.as_tensor(bias_init, dtype=torch.float64).broadcast_to([out_features]) / lr_multiplier
        self.bias = nn.Parameter(init.float()) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias
        if b is not None:
            b = b.to(x.dtype)
            if self.bias_gain != 1:
                b = b * self.bias_gain
        if self.activation == "linear" and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        x = x.matmul(w.t())
        return bias_act(x, b, act=self.activation)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, activation={self.activation}"


class Conv2dLayer(nn.Module):
    """Equalized-lr convolution with optional FIR up/downsampling (StyleGAN2 appendix B).

    ``forward(x, gain)`` multiplies the activation's gain and the clamp by ``gain``: residual
    blocks pass ``sqrt(0.5)`` so that the sum of two branches keeps unit variance (StyleGAN2 fig. 7).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        bias: bool = True,
        activation: str = "linear",
        up: int = 1,
        down: int = 1,
        resample_filter: Sequence[float] = (1, 3, 3, 1),
        conv_clamp: float | None = None,
        lr_multiplier: float = 1.0,
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation={activation!r}: expected one of {', '.join(ACTIVATIONS)}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.activation, self.up, self.down, self.conv_clamp = activation, up, down, conv_clamp
        self.padding = kernel_size // 2
        self.weight_gain = lr_multiplier / math.sqrt(in_channels * kernel_size**2)
        self.bias_gain = lr_multiplier
        self.act_gain = ACTIVATIONS[activation].default_gain
        register_filter(self, resample_filter)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size) / lr_multiplier)
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        w = self.weight.to(x.dtype) * self.weight_gain
        # With up=1 the weight is cross-correlated like nn.Conv2d; the transposed conv of the
        # upsampling path wants the flipped convention (same function, cheaper order).
        x = conv2d_resample(
            x, w, f=self.resample_filter, up=self.up, down=self.down, padding=self.padding, flip_weight=self.up == 1
        )
        b = None if self.bias is None else self.bias.to(x.dtype) * self.bias_gain
        clamp = None if self.conv_clamp is None else self.conv_clamp * gain
        return bias_act(x, b, act=self.activation, gain=self.act_gain * gain, clamp=clamp)

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, out_channels={self.out_channels}, activation={self.activation}, "
            f"up={self.up}, down={self.down}"
        )


class MinibatchStdLayer(nn.Module):
    """Minibatch standard deviation (ProGAN sec. 3, generalised in StyleGAN2-ADA).

    The batch is split into groups of ``group_size`` (sample ``i`` goes to group ``i % (N / G)``)
    and the channels into ``num_channels`` sets. For each group and set, the standard deviation of
    every feature over the group is averaged over features and pixels; the result is appended as
    ``num_channels`` constant feature maps, which lets D see how varied a batch is.
    """

    def __init__(self, group_size: int, num_channels: int = 1) -> None:
        super().__init__()
        self.group_size, self.num_channels = group_size, num_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = min(self.group_size, n)
        f = self.num_channels
        if n % g:
            raise ValueError(
                f"mbstd_group_size={self.group_size}: the batch of {n} images is not divisible into "
                f"groups of {g}; use a batch that is a multiple of {g} or a smaller mbstd_group_size"
            )
        y = x.reshape(g, n // g, f, c // f, h, w)  # [G, n, F, c, H, W]
        y = y - y.mean(dim=0)  # deviation from the group mean
        y = (y.square().mean(dim=0) + 1e-8).sqrt()  # [n, F, c, H, W] std over the group
        y = y.mean(dim=[2, 3, 4])  # [n, F] averaged over features and pixels
        y = y.reshape(-1, f, 1, 1).repeat(g, 1, h, w)  # [N, F, H, W] one map per set
        return torch.cat([x, y], dim=1)

    def extra_repr(self) -> str:
        return f"group_size={self.group_size}, num_channels={self.num_channels}"
