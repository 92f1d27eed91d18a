"""Modulated convolution and the two synthesis layers built on it (StyleGAN2 sec. 2.2).

StyleGAN2 replaces AdaIN with weight demodulation:

* eq. 1, modulation: ``w'_ijk = s_i * w_ijk`` (``s`` is the style of input channel ``i``);
* eq. 2, the output std after a conv with ``w'`` is ``sigma_j = sqrt(sum_ik w'_ijk^2)``;
* eq. 3, demodulation: ``w''_ijk = w'_ijk / sqrt(sum_ik w'_ijk^2 + eps)``.

Two paths compute the same function. The *fused* one builds per-sample weights and runs one grouped
convolution (one group per sample, StyleGAN2 sec. 2.2 "implementation"). The *non-fused* one scales
the activations instead: ``conv(x * s, w) * d`` with ``d`` the demodulation coefficients, which
shares one weight across the batch and so has a cheaper weight gradient while training.

Reduced precision (StyleGAN2-ADA appendix D): ``x`` may be float16 or bfloat16 while the weight and
the styles (from the float32 affine layer) stay float32. The modulated weight and the demodulation
coefficients are computed in float32 and cast to ``x.dtype`` only where they meet ``x``; noise and
bias are added in ``x.dtype`` and the layer's output is clamped to ``+-conv_clamp``. For float16 the
weight and the styles are first normalised by their largest magnitude, which eq. 3 cancels exactly,
so that ``x * s`` and the conv stay far from float16's maximum (65504). bfloat16 has float32's
exponent range and skips that step.
"""

from __future__ import annotations

import math
from typing import Sequence, Union

import torch
from torch import nn

from ops.bias_act import ACTIVATIONS, bias_act
from ops.conv2d_resample import conv2d_resample
from stylegan.layers import FullyConnectedLayer, register_filter

NOISE_MODES = ("random", "const", "none")


def check_noise_mode(noise_mode: str) -> None:
    if noise_mode not in NOISE_MODES:
        raise ValueError(f"noise_mode={noise_mode!r}: expected one of {', '.join(map(repr, NOISE_MODES))}")


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    demodulate: bool = True,
    up: int = 1,
    padding: int = 0,
    resample_filter: torch.Tensor | None = None,
    flip_weight: bool = True,
    fused_modconv: bool = True,
) -> torch.Tensor:
    """Convolve ``x`` [N, I, H, W] with ``weight`` [O, I, k, k] modulated by ``styles`` [N, I].

    Returns [N, O, H * up, W * up] (with ``padding = k // 2``). ``fused_modconv`` picks the grouped
    path; both give the same result up to rounding.
    """
    n = x.shape[0]
    out_channels, in_channels, kh, kw = weight.shape
    if styles.shape != (n, in_channels):
        raise ValueError(f"styles: expected shape {(n, in_channels)}, got {tuple(styles.shape)}")

    if x.dtype == torch.float16 and demodulate:
        # Keep fp16 activations far from overflow: any per-output-channel scale of the weight and
        # any per-sample scale of the styles cancels in eq. 3, so normalise both by their max
        # (in float32; bfloat16, with float32's exponent range, does not need it).
        weight = weight * (1 / math.sqrt(in_channels * kh * kw) / weight.norm(float("inf"), dim=[1, 2, 3], keepdim=True))
        styles = styles / styles.norm(float("inf"), dim=1, keepdim=True)

    w = None
    dcoefs = None
    if demodulate or fused_modconv:
        w = weight.unsqueeze(0) * styles.reshape(n, 1, in_channels, 1, 1)  # eq. 1: [N, O, I, k, k]
    if demodulate:
        dcoefs = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()  # eq. 2-3: [N, O]

    if not fused_modconv:
        # conv(x * s, w) * d == conv(x, w * s * d): the styles act on the input channels.
        x = x * styles.to(x.dtype).reshape(n, in_channels, 1, 1)
        x = conv2d_resample(x, weight.to(x.dtype), f=resample_filter, up=up, padding=padding, flip_weight=flip_weight)
        if dcoefs is not None:
            x = x * dcoefs.to(x.dtype).reshape(n, out_channels, 1, 1)
        return x

    if dcoefs is not None:
        w = w * dcoefs.reshape(n, out_channels, 1, 1, 1)  # eq. 3
    x = x.reshape(1, n * in_channels, *x.shape[2:])  # samples become groups
    w = w.reshape(n * out_channels, in_channels, kh, kw)
    x = conv2d_resample(
        x, w.to(x.dtype), f=resample_filter, up=up, padding=padding, groups=n, flip_weight=flip_weight
    )
    return x.reshape(n, out_channels, *x.shape[2:])


NoiseGenerator = Union[torch.Generator, Sequence[torch.Generator], None]


def make_noise(shape: tuple[int, ...], like: torch.Tensor, generator: NoiseGenerator) -> torch.Tensor:
    """Standard normal noise shaped ``shape`` (batch first) on ``like``'s device and dtype.

    With a generator the noise is drawn on the generator's device and moved, so an image depends
    only on the generator's seed, not on the device it is rendered on. A sequence of generators,
    one per sample, draws each sample's noise from its own generator, so a batch renders exactly
    what the samples would render one by one (per-seed reproducibility in batched generation).
    """
    if generator is None:
        return torch.randn(shape, device=like.device, dtype=like.dtype)
    if isinstance(generator, torch.Generator):
        noise = torch.randn(shape, generator=generator, device=generator.device, dtype=torch.float32)
    else:
        if len(generator) != shape[0]:
            raise ValueError(f"generator: expected one generator per sample ({shape[0]}), got {len(generator)}")
        noise = torch.stack(
            [torch.randn(shape[1:], generator=g, device=g.device, dtype=torch.float32) for g in generator]
        )
    return noise.to(device=like.device, dtype=like.dtype)


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv + noise + bias + lrelu (StyleGAN2 fig. 2c, one "Mod/Demod, Conv" box).

    Noise inputs (StyleGAN sec. 3.2): a single-channel map of N(0, 1), scaled by a learned strength
    and broadcast over channels. ``noise_mode``: ``'random'`` draws fresh noise, ``'const'`` uses the
    fixed ``noise_const`` buffer, ``'none'`` adds nothing.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        kernel_size: int = 3,
        up: int = 1,
        use_noise: bool = True,
        resample_filter: Sequence[float] = (1, 3, 3, 1),
        conv_clamp: float | None = None,
        activation: str = "lrelu",
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.resolution = in_channels, out_channels, resolution
        self.up, self.use_noise, self.conv_clamp, self.activation = up, use_noise, conv_clamp, activation
        self.padding = kernel_size // 2
        self.act_gain = ACTIVATIONS[activation].default_gain
        register_filter(self, resample_filter)
        # Styles start at 1 (bias_init=1), so the untrained layer passes its input unmodulated.
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1.0)
        # No equalized-lr gain here: demodulation (eq. 3) removes the weight's scale anyway.
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        if use_noise:
            self.register_buffer("noise_const", torch.randn(resolution, resolution))
            self.noise_strength = nn.Parameter(torch.zeros([]))

    def forward(
        self,
        x: torch.Tensor,
        w: torch.Tensor,
        noise_mode: str = "random",
        fused_modconv: bool = True,
        gain: float = 1.0,
        generator: NoiseGenerator = None,
    ) -> torch.Tensor:
        styles = self.affine(w)  # [N, I]
        x = modulated_conv2d(
            x, self.weight.to(styles.dtype), styles, demodulate=True, up=self.up, padding=self.padding,
            resample_filter=self.resample_filter, flip_weight=self.up == 1, fused_modconv=fused_modconv,
        )
        if self.use_noise and noise_mode == "random":
            noise = make_noise((x.shape[0], 1, self.resolution, self.resolution), x, generator)
            x = x + noise * self.noise_strength.to(x.dtype)
        elif self.use_noise and noise_mode == "const":
            x = x + (self.noise_const * self.noise_strength).to(x.dtype)
        clamp = None if self.conv_clamp is None else self.conv_clamp * gain
        return bias_act(x, self.bias.to(x.dtype), act=self.activation, gain=self.act_gain * gain, clamp=clamp)

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, out_channels={self.out_channels}, "
            f"resolution={self.resolution}, up={self.up}"
        )


class ToRGBLayer(nn.Module):
    """Modulated 1x1 conv to image channels, no demodulation (StyleGAN2 fig. 7 "tRGB")."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, conv_clamp: float | None = None) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.conv_clamp = in_channels, out_channels, conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        # Without demodulation the equalized-lr constant is needed; folding it into the styles
        # applies it once per sample instead of once per weight.
        self.weight_gain = 1 / math.sqrt(in_channels)

    def forward(self, x: torch.Tensor, w: torch.Tensor, fused_modconv: bool = True) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight.to(styles.dtype), styles, demodulate=False, fused_modconv=fused_modconv)
        return bias_act(x, self.bias.to(x.dtype), clamp=self.conv_clamp)

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}, out_channels={self.out_channels}"
