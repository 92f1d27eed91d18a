"""Discriminator: image (and label) to one logit (StyleGAN2 fig. 7, ProGAN sec. 3, ADA).

One block per resolution from the input size down to 8x8 (two 3x3 convs, the second with FIR
downsampling), then a 4x4 epilogue: minibatch standard deviation, a 3x3 conv, a fully connected
layer and the output layer. Architectures (StyleGAN2 fig. 7): ``orig`` reads the image once at the
top; ``skip`` adds a FromRGB of the downsampled image at every resolution; ``resnet`` (config-e/f)
adds a 1x1 downsampling shortcut scaled by ``sqrt(0.5)``. Channels follow the same rule as G.

Conditional models use a projection head (Miyato & Koyama 2018, as in StyleGAN2-ADA): the label is
embedded by a small mapping network to ``cmap`` and the logit is ``<out(x), cmap> / sqrt(cmap_dim)``.

InfoGAN (Chen et al. 2016; ``config.info_codes``): a head Q on the epilogue's hidden features gives
the codes' parameters, ``D(img, c, with_codes=True) -> (logits, code_params)`` from the same pass;
without codes there is no head and ``D(img, c)`` is as before (:mod:`stylegan.info_codes`).

Mixed precision (StyleGAN2-ADA appendix D, :mod:`stylegan.precision`): the blocks at or above
``fp16_resolution`` (their FromRGB and both convs, clamped to ``+-conv_clamp``) run in the low dtype
that ``precision`` picks; the label mapping, the minibatch std layer and the whole 4x4 epilogue run
in the parameters' dtype, so the logits are float32.

Progressive growing: at stage ``r`` the first block is that of ``r``; while it fades in, its output
is blended with the FromRGB of the downsampled image that the block below would read on its own.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ops.upfirdn2d import downsample2d
from stylegan.attention import attention_blocks
from stylegan.config import NetworkConfig
from stylegan.growth import GrowthMixin
from stylegan.info_codes import code_dim
from stylegan.layers import Conv2dLayer, FullyConnectedLayer, MinibatchStdLayer, register_filter
from stylegan.mapping import MappingNetwork, check_labels
from stylegan.precision import block_dtype, check_precision


class DiscriminatorBlock(nn.Module):
    """Features at ``resolution`` to features at ``resolution // 2``."""

    def __init__(self, config: NetworkConfig, resolution: int, has_fromrgb: bool) -> None:
        super().__init__()
        cfg = config
        self.resolution, self.architecture = resolution, cfg.d_architecture
        tmp, out = cfg.channels(resolution), cfg.channels(resolution // 2)
        self.use_fp16 = resolution >= cfg.fp16_resolution
        conv = dict(activation="lrelu", conv_clamp=cfg.conv_clamp, resample_filter=cfg.resample_filter)
        register_filter(self, cfg.resample_filter)
        if has_fromrgb:
            self.fromrgb = Conv2dLayer(cfg.img_channels, tmp, kernel_size=1, **conv)
        self.conv0 = Conv2dLayer(tmp, tmp, kernel_size=3, **conv)
        self.conv1 = Conv2dLayer(tmp, out, kernel_size=3, down=2, **conv)
        if cfg.d_architecture == "resnet":
            self.skip = Conv2dLayer(tmp, out, kernel_size=1, bias=False, down=2, resample_filter=cfg.resample_filter)

    def forward(
        self, x: torch.Tensor | None, img: torch.Tensor | None, dtype: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Returns the features and, for ``skip``, the image downsampled for the next block."""
        if x is not None:
            x = x.to(dtype)
        if x is None or self.architecture == "skip":
            y = self.fromrgb(img.to(dtype))
            x = y if x is None else x + y
            img = downsample2d(img, self.resample_filter) if self.architecture == "skip" else None
        if self.architecture == "resnet":
            g = math.sqrt(0.5)
            y = self.skip(x, gain=g)
            x = self.conv0(x)
            x = self.conv1(x, gain=g)
            return y + x, img
        return self.conv1(self.conv0(x)), img

    def extra_repr(self) -> str:
        return f"resolution={self.resolution}, architecture={self.architecture}, use_fp16={self.use_fp16}"


class DiscriminatorEpilogue(nn.Module):
    """4x4 head: [FromRGB], minibatch std, conv, fc, out, [projection]. Always in the parameters'
    dtype (float32), whatever ``precision``: as in StyleGAN2-ADA, the statistics of mbstd and the
    last layers that form the logit are kept out of reduced precision."""

    def __init__(self, config: NetworkConfig, cmap_dim: int, has_fromrgb: bool) -> None:
        super().__init__()
        cfg = config
        ch = cfg.channels(4)
        self.architecture, self.cmap_dim = cfg.d_architecture, cmap_dim
        if has_fromrgb:
            self.fromrgb = Conv2dLayer(cfg.img_channels, ch, kernel_size=1, activation="lrelu", conv_clamp=cfg.conv_clamp)
        self.mbstd = MinibatchStdLayer(cfg.mbstd_group_size, cfg.mbstd_num_channels) if cfg.mbstd_num_channels else None
        self.conv = Conv2dLayer(
            ch + cfg.mbstd_num_channels, ch, kernel_size=3, activation="lrelu", conv_clamp=cfg.conv_clamp
        )
        self.fc = FullyConnectedLayer(ch * 4 * 4, ch, activation="lrelu")
        self.out = FullyConnectedLayer(ch, 1 if cmap_dim == 0 else cmap_dim)
        if cfg.info_codes:
            # InfoGAN's Q (Chen et al. 2016, sec. 4 and appendix C): it shares every layer of D up to
            # the hidden fc, then one more hidden layer and the codes' parameters (n logits per
            # categorical code, one mean per continuous code; stylegan/info_codes.py).
            self.q_fc = FullyConnectedLayer(ch, ch, activation="lrelu")
            self.q_out = FullyConnectedLayer(ch, code_dim(cfg.info_codes))

    def forward(
        self, x: torch.Tensor | None, img: torch.Tensor | None, cmap: torch.Tensor | None, with_codes: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        dtype = self.conv.weight.dtype
        if x is not None:
            x = x.to(dtype)
        if x is None or self.architecture == "skip":
            y = self.fromrgb(img.to(dtype))
            x = y if x is None else x + y
        if self.mbstd is not None:
            x = self.mbstd(x)
        x = self.conv(x)
        h = self.fc(x.flatten(1))
        x = self.out(h)
        if cmap is not None:
            # Projection discriminator: inner product with the label embedding, normalised.
            x = (x * cmap).sum(dim=1, keepdim=True) * (1 / math.sqrt(self.cmap_dim))
        if with_codes:
            return x, self.q_out(self.q_fc(h))
        return x


class Discriminator(GrowthMixin, nn.Module):
    """``D(img [N, img_channels, r, r], c [N, c_dim]) -> logits [N, 1]`` at growth stage ``r``."""

    network_kind = "discriminator"  # for network files (stylegan/families.py)

    def __init__(self, config: NetworkConfig) -> None:
        super().__init__()
        if not isinstance(config, NetworkConfig):
            raise ValueError(f"config: expected a NetworkConfig, got {type(config).__name__}")
        self.config = config
        self.c_dim, self.img_resolution, self.img_channels = config.c_dim, config.resolution, config.img_channels
        all_fromrgb = config.d_architecture == "skip" or config.growth == "progressive"
        resolutions = [r for r in reversed(config.block_resolutions) if r > 4]
        self.blocks = nn.ModuleDict(
            {f"b{r}": DiscriminatorBlock(config, r, all_fromrgb or r == config.resolution) for r in resolutions}
        )
        self.cmap_dim = config.channels(4) if config.c_dim > 0 else 0
        if config.c_dim > 0:
            self.mapping = MappingNetwork(
                z_dim=0, c_dim=config.c_dim, w_dim=self.cmap_dim, num_ws=None,
                num_layers=config.d_mapping_layers, lr_multiplier=config.mapping_lr_multiplier, w_avg_beta=None,
            )
        self.b4 = DiscriminatorEpilogue(config, self.cmap_dim, all_fromrgb or config.resolution == 4)
        if config.attention:  # SAGAN self-attention on the features entering the block at that resolution
            self.attention = attention_blocks(config, config.attention)
        register_filter(self, config.resample_filter)
        self._init_growth()

    def forward(
        self, img: torch.Tensor, c: torch.Tensor | None = None, precision: str = "auto", with_codes: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Float32 logits for ``img``. ``precision`` (``'auto'``, ``'fp32'``, ``'fp16'``, ``'bf16'``)
        picks the dtype of the top ``num_fp16_res`` blocks, as for the generator (float16 on CUDA by
        default). ``with_codes``: ``(logits, code_params [N, K])`` from the same pass, where ``K``
        and the layout are those of ``config.info_codes`` (InfoGAN's Q; a network with codes only)."""
        check_precision(precision)
        if with_codes and not self.config.info_codes:
            raise ValueError("with_codes=True: this discriminator has no InfoGAN head Q (config.info_codes is empty)")
        top, alpha = self.growth_resolution, self.growth_alpha
        expected = (self.img_channels, top, top)
        if img.ndim != 4 or tuple(img.shape[1:]) != expected:
            raise ValueError(
                f"img: expected shape [N, {', '.join(map(str, expected))}] at growth resolution {top}, "
                f"got {tuple(img.shape)}"
            )
        c = check_labels(c, self.c_dim, img.shape[0])
        default_dtype = self.b4.conv.weight.dtype
        img = img.to(default_dtype)
        x = None
        inp = img
        for res in [r for r in reversed(self.config.block_resolutions) if 4 < r <= top]:
            block = self.blocks[f"b{res}"]
            if x is not None and res in self.config.attention:
                x = self.attention[f"a{res}"](x)
            x, img = block(x, img, block_dtype(block.use_fp16, precision, inp.device, default_dtype))
            if res == top and self.fading:
                x, img = self._fade(x, inp, alpha, precision)
        cmap = self.mapping(None, c) if c is not None else None
        return self.b4(x, img, cmap, with_codes=with_codes)

    def _fade(
        self, x: torch.Tensor, inp: torch.Tensor, alpha: float, precision: str
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Blend the new top block's output with what the stage below computes from the image
        downsampled to its resolution (ProGAN fig. 2)."""
        low = downsample2d(inp, self.resample_filter)
        if self.config.d_architecture == "skip":
            # The next block adds FromRGB(low) itself: lerp(f, f + x, alpha) = f + alpha * x.
            return x * alpha, low
        res = low.shape[-1]
        nxt = self.blocks[f"b{res}"] if res > 4 else self.b4
        dtype = block_dtype(getattr(nxt, "use_fp16", False), precision, x.device, self.b4.conv.weight.dtype)
        y = nxt.fromrgb(low.to(dtype))
        return y.lerp(x.to(dtype), alpha), None
