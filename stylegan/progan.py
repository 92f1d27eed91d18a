"""ProGAN's generator and discriminator (Karras et al. 2018, "Progressive Growing of GANs for Improved
Quality, Stability, and Variation", ICLR), the ``'progan'`` family of :mod:`stylegan.families`.

As published (sec. 3, 4.1, 4.2, fig. 2, Table 2):

* G: the latent is pixel-normalised; the 4x4 block is Table 2's "Conv 4x4" on the 1x1 latent (a
  fully connected map to ``ch x 4 x 4`` with one bias per feature map) and a 3x3 conv; every further
  block upsamples 2x by nearest neighbour and applies two 3x3 convs. Every conv is followed by
  LReLU(0.2) and pixelwise feature normalisation (sec. 4.2). ToRGB is a linear 1x1 conv.
* D: FromRGB (1x1 conv, LReLU); per block two 3x3 convs with LReLU, then 2x2 average pooling; at
  4x4 minibatch standard deviation (sec. 3), a 3x3 conv, the "Conv 4x4" (a fully connected layer
  from ``ch x 4 x 4`` to ``ch``) and a linear layer to one logit.
* Every weight has the equalised learning rate of sec. 4.1 (:mod:`stylegan.layers`). Channels are
  ``config.channels(res)``; Table 2's schedule is ``channel_base=16384, channel_max=512``.

Family interface: ``G.mapping`` is the latent's own preparation (:class:`ProGANLatent`: the
pixel-normalised ``z``, and for ``c_dim > 0`` the pixel-normalised label embedding concatenated to
it), so ``num_ws = 1`` and ``w_dim = z_dim`` (``2 * z_dim`` conditional); ``w_avg`` is the running
mean of that prepared latent and truncation lerps towards it. ``G.synthesis(ws, ...)`` renders it.
ProGAN has no noise inputs: ``noise_mode``, ``fused_modconv`` and ``generator`` are validated and
otherwise have no effect. Conditional D is a projection discriminator (Miyato & Koyama 2018):
``logit = out(h) + <embed(c), h> / sqrt(ch)`` with ``h`` the output of the "Conv 4x4" layer.

Progressive growing (fig. 2) uses :class:`~stylegan.growth.GrowthMixin` like the StyleGAN2 networks:
while block ``r`` fades in, G outputs ``lerp(up_nearest(ToRGB_{r/2}(x_{r/2})), ToRGB_r(x_r), alpha)``
and block ``r/2`` of D reads ``lerp(FromRGB_{r/2}(avgpool(img)), block_r(FromRGB_r(img)), alpha)``.
With ``growth='none'`` only the top ToRGB / FromRGB exist (the parameter count is Table 2's);
``growth='progressive'`` adds one per lower resolution.

Resampling uses plain torch ops (``F.interpolate(mode='nearest')``, ``F.avg_pool2d``): these are the
paper's box filters exactly, linear (so R1's double backward passes), and run in every dtype on every
device. ``Conv2dLayer``'s own ``up``/``down`` fuses StyleGAN2's FIR ``resample_filter`` into the conv,
which is another function (a [1, 3, 3, 1] low-pass, and for ``up`` the conv before the upsampling).

Mixed precision follows :mod:`stylegan.precision` (the top ``num_fp16_res`` blocks in float16 /
bfloat16; the latent, the 4x4 block, D's epilogue and the image in the parameters' dtype), and
``conv_clamp`` clamps every conv output, as in the StyleGAN2 networks; pixel norm averages its
squares in float32. NetworkConfig fields used: ``resolution, img_channels, c_dim, z_dim, w_avg_beta,
channel_base, channel_max, num_fp16_res, conv_clamp, mbstd_group_size, mbstd_num_channels, growth``
(``family``, ``preset``: bookkeeping). Ignored: ``w_dim`` (derived from ``z_dim``),
``mapping_layers, mapping_lr_multiplier, d_mapping_layers, g_architecture, d_architecture,
resample_filter, use_noise``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ops.bias_act import bias_act
from stylegan.config import NetworkConfig
from stylegan.generator import GrowthOfSynthesis, MappedGenerator, SingleWMapping, check_single_w_synthesis_args
from stylegan.growth import GrowthMixin
from stylegan.layers import Conv2dLayer, FullyConnectedLayer, MinibatchStdLayer, normalize_2nd_moment
from stylegan.mapping import check_labels
from stylegan.modconv import NoiseGenerator
from stylegan.precision import block_dtype, check_precision


def pixel_norm(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """ProGAN sec. 4.2: ``b = a / sqrt(mean_j(a_j^2) + eps)`` over the channels of each pixel (dim 1).
    Half-precision features are averaged in float32: their squares overflow float16 above 256."""
    if x.dtype in (torch.float16, torch.bfloat16):
        return normalize_2nd_moment(x.float(), eps=eps).to(x.dtype)
    return normalize_2nd_moment(x, eps=eps)


def upsample_nearest(x: torch.Tensor) -> torch.Tensor:
    """2x nearest-neighbour upsampling (ProGAN Table 2 "Upsample", fig. 2 "2x")."""
    return F.interpolate(x, scale_factor=2, mode="nearest")


def downsample_avg(x: torch.Tensor) -> torch.Tensor:
    """2x2 average pooling (ProGAN Table 2 "Downsample", fig. 2 "0.5x")."""
    return F.avg_pool2d(x, 2)


def _check_family(config: NetworkConfig, cls: type) -> None:
    if not isinstance(config, NetworkConfig):
        raise ValueError(f"config: expected a NetworkConfig, got {type(config).__name__}")
    if config.family != "progan":
        raise ValueError(f"config.family={config.family!r}: {cls.__name__} is built from family='progan' configs")


# ----- generator ---------------------------------------------------------------------------------


class ProGANLatent(SingleWMapping):
    """``G.mapping`` of ProGAN: ``z [N, z_dim], c [N, c_dim] -> ws [N, 1, w_dim]``, no learned mapping.

    ``z`` is pixel-normalised (sec. 4.2; A.1 draws latents on the hypersphere). A label is embedded by
    an equalised-lr linear layer to ``z_dim`` features, normalised on its own and concatenated, so
    that the label keeps unit weight beside ``z`` (the embedding of a one-hot label starts with a
    second moment of ``1 / c_dim``, which a joint normalisation would drown). ``w_avg`` tracks the
    mean prepared latent; truncation is ``w_avg + psi * (w - w_avg)``.
    """

    def __init__(self, z_dim: int, c_dim: int, w_avg_beta: float) -> None:
        super().__init__()
        self.z_dim, self.c_dim, self.w_avg_beta = z_dim, c_dim, w_avg_beta
        self.w_dim = z_dim * 2 if c_dim > 0 else z_dim
        self.num_ws = 1
        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, z_dim)
        self.register_buffer("w_avg", torch.zeros(self.w_dim))

    def prepare(self, z: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        x = pixel_norm(z)
        if c is not None:
            x = torch.cat([x, pixel_norm(self.embed(c))], dim=1)
        return x

    def extra_repr(self) -> str:
        return f"z_dim={self.z_dim}, c_dim={self.c_dim}, w_dim={self.w_dim}, num_ws=1"


class LatentTo4x4(nn.Module):
    """Table 2's "Conv 4x4" of G: the 1x1 latent to ``ch x 4 x 4`` (a fully connected layer, with one
    bias per feature map as a conv has), LReLU, pixel norm."""

    def __init__(self, in_features: int, channels: int, conv_clamp: float | None) -> None:
        super().__init__()
        self.channels, self.conv_clamp = channels, conv_clamp
        self.fc = FullyConnectedLayer(in_features, channels * 16, bias=False)
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        x = self.fc(w).reshape(-1, self.channels, 4, 4)
        return pixel_norm(bias_act(x, self.bias.to(x.dtype), act="lrelu", clamp=self.conv_clamp))


class PixelNormConv(Conv2dLayer):
    """A G conv: equalised-lr conv, LReLU, then pixelwise feature normalisation (sec. 4.2)."""

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        return pixel_norm(super().forward(x, gain))


class ProGANSynthesisBlock(nn.Module):
    """Block ``res``: [upsample] conv0, conv1 (the 4x4 block: "Conv 4x4" and a 3x3 conv), [ToRGB]."""

    def __init__(self, config: NetworkConfig, resolution: int, w_dim: int, has_torgb: bool) -> None:
        super().__init__()
        cfg, ch = config, config.channels(resolution)
        self.resolution, self.use_fp16 = resolution, resolution >= cfg.fp16_resolution
        conv = dict(kernel_size=3, activation="lrelu", conv_clamp=cfg.conv_clamp)
        if resolution == 4:
            self.conv0 = LatentTo4x4(w_dim, ch, cfg.conv_clamp)
        else:
            self.conv0 = PixelNormConv(cfg.channels(resolution // 2), ch, **conv)
        self.conv1 = PixelNormConv(ch, ch, **conv)
        if has_torgb:
            self.torgb = Conv2dLayer(ch, cfg.img_channels, kernel_size=1, conv_clamp=cfg.conv_clamp)

    def forward(self, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """``x``: the latent [N, w_dim] for the 4x4 block, else the features of the block below."""
        x = x.to(dtype)
        x = self.conv0(x if self.resolution == 4 else upsample_nearest(x))
        return self.conv1(x)

    def extra_repr(self) -> str:
        return f"resolution={self.resolution}, use_fp16={self.use_fp16}"


class ProGANSynthesis(GrowthMixin, nn.Module):
    """``ws [N, 1, w_dim] -> img [N, img_channels, r, r]`` at the current growth stage ``r``."""

    def __init__(self, config: NetworkConfig, w_dim: int) -> None:
        super().__init__()
        self.config, self.w_dim, self.num_ws = config, w_dim, 1
        self.img_resolution, self.img_channels = config.resolution, config.img_channels
        all_torgb = config.growth == "progressive"
        self.blocks = nn.ModuleDict(
            {
                f"b{res}": ProGANSynthesisBlock(config, res, w_dim, all_torgb or res == config.resolution)
                for res in config.block_resolutions
            }
        )
        self._init_growth()

    def forward(
        self,
        ws: torch.Tensor,
        noise_mode: str = "random",
        fused_modconv: bool | None = None,
        precision: str = "auto",
        generator: NoiseGenerator = None,
    ) -> torch.Tensor:
        """Render ``ws``. ProGAN has no noise and no modulated convs: ``noise_mode``, ``fused_modconv``
        and ``generator`` are checked as StyleGAN2's synthesis checks them, then unused.
        ``precision``: ``'auto'``, ``'fp32'``, ``'fp16'`` or ``'bf16'`` (:mod:`stylegan.precision`)."""
        check_single_w_synthesis_args(ws, self.w_dim, noise_mode, fused_modconv, precision, generator)
        default_dtype = self.blocks["b4"].conv1.weight.dtype
        top, alpha, fading = self.growth_resolution, self.growth_alpha, self.fading
        x, img, prev = ws[:, 0].to(default_dtype), None, None
        for res in self.config.block_resolutions:
            if res > top:
                break
            block = self.blocks[f"b{res}"]
            x = block(x, block_dtype(block.use_fp16, precision, ws.device, default_dtype))
            if res == top:
                img = block.torgb(x).to(default_dtype)
                if fading:  # fig. 2b: blend with the upsampled image of the stage below
                    img = upsample_nearest(prev).lerp(img, alpha)
            elif res == top // 2 and fading:
                prev = block.torgb(x).to(default_dtype)
        return img

    def extra_repr(self) -> str:
        return f"w_dim={self.w_dim}, num_ws=1, img_resolution={self.img_resolution}"


class ProGANGenerator(GrowthOfSynthesis, MappedGenerator):
    """``G(z [N, z_dim], c [N, c_dim]) -> img [N, img_channels, r, r]`` (linear output, unclamped)."""

    network_kind = "generator"  # for network files (stylegan/families.py)

    def __init__(self, config: NetworkConfig) -> None:
        super().__init__()
        _check_family(config, type(self))
        self.config = config
        self.z_dim, self.c_dim = config.z_dim, config.c_dim
        self.img_resolution, self.img_channels = config.resolution, config.img_channels
        self.mapping = ProGANLatent(config.z_dim, config.c_dim, config.w_avg_beta)
        self.w_dim, self.num_ws = self.mapping.w_dim, 1
        self.synthesis = ProGANSynthesis(config, self.w_dim)


# ----- discriminator -----------------------------------------------------------------------------


class ProGANDiscriminatorBlock(nn.Module):
    """Block ``res``: [FromRGB], 3x3 conv ``ch(res) -> ch(res)``, 3x3 conv ``-> ch(res/2)``, avgpool."""

    def __init__(self, config: NetworkConfig, resolution: int, has_fromrgb: bool) -> None:
        super().__init__()
        cfg = config
        tmp, out = cfg.channels(resolution), cfg.channels(resolution // 2)
        self.resolution, self.use_fp16 = resolution, resolution >= cfg.fp16_resolution
        conv = dict(activation="lrelu", conv_clamp=cfg.conv_clamp)
        if has_fromrgb:
            self.fromrgb = Conv2dLayer(cfg.img_channels, tmp, kernel_size=1, **conv)
        self.conv0 = Conv2dLayer(tmp, tmp, kernel_size=3, **conv)
        self.conv1 = Conv2dLayer(tmp, out, kernel_size=3, **conv)

    def forward(self, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return downsample_avg(self.conv1(self.conv0(x.to(dtype))))

    def extra_repr(self) -> str:
        return f"resolution={self.resolution}, use_fp16={self.use_fp16}"


class ProGANDiscriminatorEpilogue(nn.Module):
    """4x4 head: [FromRGB], minibatch std, 3x3 conv, "Conv 4x4" (``fc``), ``out``, [projection].
    Runs in the parameters' dtype, as StyleGAN2's epilogue (:mod:`stylegan.precision`)."""

    def __init__(self, config: NetworkConfig, has_fromrgb: bool) -> None:
        super().__init__()
        cfg, ch = config, config.channels(4)
        self.channels = ch
        if has_fromrgb:
            self.fromrgb = Conv2dLayer(
                cfg.img_channels, ch, kernel_size=1, activation="lrelu", conv_clamp=cfg.conv_clamp
            )
        self.mbstd = MinibatchStdLayer(cfg.mbstd_group_size, cfg.mbstd_num_channels) if cfg.mbstd_num_channels else None
        self.conv = Conv2dLayer(
            ch + cfg.mbstd_num_channels, ch, kernel_size=3, activation="lrelu", conv_clamp=cfg.conv_clamp
        )
        self.fc = FullyConnectedLayer(ch * 16, ch, activation="lrelu")
        self.out = FullyConnectedLayer(ch, 1)
        if cfg.c_dim > 0:
            self.embed = FullyConnectedLayer(cfg.c_dim, ch, bias=False)  # Miyato & Koyama's V

    def forward(self, x: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        x = x.to(self.conv.weight.dtype)
        if self.mbstd is not None:
            x = self.mbstd(x)
        h = self.fc(self.conv(x).flatten(1))  # [N, ch]
        logits = self.out(h)
        if c is not None:
            # Projection discriminator (Miyato & Koyama 2018): + y^T V phi(x), scaled by 1/sqrt(ch).
            proj = (self.embed(c.to(h.dtype)) * h).sum(dim=1, keepdim=True)
            logits = logits + proj * (1 / math.sqrt(self.channels))
        return logits


class ProGANDiscriminator(GrowthMixin, nn.Module):
    """``D(img [N, img_channels, r, r], c [N, c_dim]) -> logits [N, 1]`` at growth stage ``r``."""

    network_kind = "discriminator"  # for network files (stylegan/families.py)

    def __init__(self, config: NetworkConfig) -> None:
        super().__init__()
        _check_family(config, type(self))
        self.config = config
        self.c_dim, self.img_resolution, self.img_channels = config.c_dim, config.resolution, config.img_channels
        all_fromrgb = config.growth == "progressive"
        self.blocks = nn.ModuleDict(
            {
                f"b{r}": ProGANDiscriminatorBlock(config, r, all_fromrgb or r == config.resolution)
                for r in reversed(config.block_resolutions)
                if r > 4
            }
        )
        self.b4 = ProGANDiscriminatorEpilogue(config, all_fromrgb or config.resolution == 4)
        self._init_growth()

    def forward(self, img: torch.Tensor, c: torch.Tensor | None = None, precision: str = "auto") -> torch.Tensor:
        """Logits in the parameters' dtype (float32). ``precision`` as for the generator."""
        check_precision(precision)
        top, alpha = self.growth_resolution, self.growth_alpha
        expected = (self.img_channels, top, top)
        if not isinstance(img, torch.Tensor) or img.ndim != 4 or tuple(img.shape[1:]) != expected:
            shape = tuple(img.shape) if isinstance(img, torch.Tensor) else None
            raise ValueError(
                f"img: expected shape [N, {', '.join(map(str, expected))}] at growth resolution {top}, got {shape}"
            )
        c = check_labels(c, self.c_dim, img.shape[0])
        img = img.to(self.b4.conv.weight.dtype)
        x = self._fromrgb(top, img, precision)
        for res in [r for r in reversed(self.config.block_resolutions) if 4 < r <= top]:
            block = self.blocks[f"b{res}"]
            x = block(x, block_dtype(block.use_fp16, precision, img.device, img.dtype))
            if res == top and self.fading:
                # Fig. 2b: blend with what the stage below reads from the average-pooled image.
                y = self._fromrgb(res // 2, downsample_avg(img), precision)
                x = y.lerp(x.to(y.dtype), alpha)
        return self.b4(x, c)

    def _fromrgb(self, res: int, img: torch.Tensor, precision: str) -> torch.Tensor:
        """FromRGB of the block at ``res`` (the epilogue at 4), in that block's dtype."""
        layer = self.blocks[f"b{res}"] if res > 4 else self.b4
        dtype = block_dtype(getattr(layer, "use_fp16", False), precision, img.device, img.dtype)
        return layer.fromrgb(img.to(dtype))
