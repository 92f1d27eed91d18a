"""Synthesis network: ws to an image, one block per resolution (StyleGAN2 sec. 2 and fig. 7).

A learned 4x4 constant (StyleGAN sec. 2) enters the 4x4 block; every further block doubles the
resolution with an upsampling modulated conv followed by a plain one. Architectures (StyleGAN2
fig. 7): ``orig`` converts only the last features to RGB; ``skip`` sums the upsampled ToRGB outputs
of every resolution (config-e/f); ``resnet`` adds a 1x1 upsampling shortcut around each block's two
convs, scaled by ``sqrt(0.5)`` so that the sum keeps unit variance.

ws layout: block ``r`` reads one w per conv, and its ToRGB the w of the next block's first conv
(the last ToRGB has its own), so ``num_ws = 1 + 2 * (log2(resolution) - 2) + 1``.

Mixed precision (StyleGAN2-ADA appendix D; the rule is :mod:`stylegan.precision`): the top
``num_fp16_res`` blocks run in float16 (``precision='auto'`` on CUDA, ``'fp16'`` anywhere) or bfloat16
(``'bf16'``), with their convolutions clamped to ``+-conv_clamp``; ``ws``, the affine (style) layers
and the lower blocks stay in the parameters' dtype. Each ToRGB output is cast back to the
parameters' dtype before it is added to the image, so the image is accumulated and returned in it.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ops.upfirdn2d import upsample2d
from stylegan.attention import attention_blocks
from stylegan.config import NetworkConfig
from stylegan.growth import GrowthMixin
from stylegan.layers import Conv2dLayer, register_filter
from stylegan.modconv import NoiseGenerator, SynthesisLayer, ToRGBLayer, check_noise_mode
from stylegan.precision import block_dtype, check_precision


class SynthesisBlock(nn.Module):
    """The layers of one resolution: const or upsampling conv0, conv1, ToRGB, resnet shortcut."""

    def __init__(self, config: NetworkConfig, resolution: int, has_torgb: bool) -> None:
        super().__init__()
        cfg = config
        self.resolution, self.architecture = resolution, cfg.g_architecture
        self.in_channels = 0 if resolution == 4 else cfg.channels(resolution // 2)
        self.out_channels = cfg.channels(resolution)
        self.use_fp16 = resolution >= cfg.fp16_resolution
        self.num_conv = 1 if resolution == 4 else 2
        layer = dict(
            w_dim=cfg.w_dim, resolution=resolution, use_noise=cfg.use_noise,
            resample_filter=cfg.resample_filter, conv_clamp=cfg.conv_clamp,
        )
        register_filter(self, cfg.resample_filter)
        if resolution == 4:
            self.const = nn.Parameter(torch.randn(self.out_channels, 4, 4))
        else:
            self.conv0 = SynthesisLayer(self.in_channels, self.out_channels, up=2, **layer)
        self.conv1 = SynthesisLayer(self.out_channels, self.out_channels, **layer)
        if has_torgb:
            self.torgb = ToRGBLayer(self.out_channels, cfg.img_channels, cfg.w_dim, conv_clamp=cfg.conv_clamp)
        if resolution > 4 and cfg.g_architecture == "resnet":
            self.skip = Conv2dLayer(
                self.in_channels, self.out_channels, kernel_size=1, bias=False, up=2,
                resample_filter=cfg.resample_filter,
            )

    def forward(
        self,
        x: torch.Tensor | None,
        ws: torch.Tensor,
        dtype: torch.dtype,
        noise_mode: str,
        fused_modconv: bool,
        generator: NoiseGenerator,
    ) -> torch.Tensor:
        """Features of this resolution from those of the previous one; ``ws`` is [N, num_conv, w_dim]."""
        kw = dict(noise_mode=noise_mode, fused_modconv=fused_modconv, generator=generator)
        if x is None:
            x = self.const.to(dtype).unsqueeze(0).repeat(ws.shape[0], 1, 1, 1)
            return self.conv1(x, ws[:, 0], **kw)
        x = x.to(dtype)
        if self.architecture == "resnet":
            g = math.sqrt(0.5)
            y = self.skip(x, gain=g)
            x = self.conv0(x, ws[:, 0], **kw)
            x = self.conv1(x, ws[:, 1], gain=g, **kw)
            return y + x
        x = self.conv0(x, ws[:, 0], **kw)
        return self.conv1(x, ws[:, 1], **kw)

    def extra_repr(self) -> str:
        return f"resolution={self.resolution}, architecture={self.architecture}, use_fp16={self.use_fp16}"


class SynthesisNetwork(GrowthMixin, nn.Module):
    """``ws [N, num_ws, w_dim] -> img [N, img_channels, r, r]`` at the current growth stage ``r``."""

    def __init__(self, config: NetworkConfig) -> None:
        super().__init__()
        self.config = config
        self.w_dim, self.img_resolution, self.img_channels = config.w_dim, config.resolution, config.img_channels
        all_torgb = config.g_architecture == "skip" or config.growth == "progressive"
        self.blocks = nn.ModuleDict(
            {
                f"b{res}": SynthesisBlock(config, res, has_torgb=all_torgb or res == config.resolution)
                for res in config.block_resolutions
            }
        )
        self.num_ws = sum(block.num_conv for block in self.blocks.values()) + 1
        if config.attention:  # SAGAN self-attention on the block's output features (stylegan/attention.py)
            self.attention = attention_blocks(config, config.attention)
        register_filter(self, config.resample_filter)
        self._init_growth()

    def forward(
        self,
        ws: torch.Tensor,
        noise_mode: str = "random",
        fused_modconv: bool | None = None,
        precision: str = "auto",
        generator: NoiseGenerator = None,
    ) -> torch.Tensor:
        """Render ws. ``fused_modconv=None`` picks the grouped path for inference on CUDA (as
        StyleGAN2-ADA; the non-fused path has the cheaper weight gradient, and on the CPU it was
        also ~2x faster for inference in our measurements). ``precision``: ``'auto'``, ``'fp32'``,
        ``'fp16'`` or ``'bf16'``, the dtype of the top ``num_fp16_res`` blocks (:mod:`stylegan.precision`)."""
        check_noise_mode(noise_mode)
        check_precision(precision)
        if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise ValueError(f"ws: expected shape [N, {self.num_ws}, {self.w_dim}], got {tuple(ws.shape)}")
        default_dtype = self.blocks["b4"].const.dtype
        ws = ws.to(default_dtype)
        top, alpha, fading = self.growth_resolution, self.growth_alpha, self.fading
        x = img = prev = None
        w_idx = 0
        for res in self.config.block_resolutions:
            if res > top:
                break
            block = self.blocks[f"b{res}"]
            dtype = block_dtype(block.use_fp16, precision, ws.device, default_dtype)
            fused = fused_modconv
            if fused is None:
                # As StyleGAN2-ADA: the grouped conv only for a single sample in low precision.
                fused = (
                    not self.training and ws.device.type == "cuda" and (dtype == default_dtype or ws.shape[0] == 1)
                )
            x = block(x, ws[:, w_idx : w_idx + block.num_conv], dtype, noise_mode, fused, generator)
            if res in self.config.attention:
                x = self.attention[f"a{res}"](x)
            w_idx += block.num_conv
            w_rgb = ws[:, w_idx]
            if self.config.g_architecture == "skip":
                # StyleGAN2 fig. 7b: img_r = upsample(img_{r/2}) + tRGB_r(x_r). While fading,
                # lerp(up(img_{r/2}), up(img_{r/2}) + tRGB_r, alpha) = up(img_{r/2}) + alpha * tRGB_r.
                y = block.torgb(x, w_rgb, fused_modconv=fused).to(default_dtype)
                if res == top and fading:
                    y = y * alpha
                img = y if img is None else upsample2d(img, self.resample_filter) + y
            elif res == top:
                img = block.torgb(x, w_rgb, fused_modconv=fused).to(default_dtype)
                if fading:  # ProGAN fig. 2: blend with the upsampled image of the stage below
                    img = upsample2d(prev, self.resample_filter).lerp(img, alpha)
            elif res == top // 2 and fading:
                prev = block.torgb(x, w_rgb, fused_modconv=fused).to(default_dtype)
        return img

    def extra_repr(self) -> str:
        return f"w_dim={self.w_dim}, num_ws={self.num_ws}, img_resolution={self.img_resolution}"
