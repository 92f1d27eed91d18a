"""DCGAN's generator and discriminator as a network family (``NetworkConfig.family='dcgan'``).

Radford, Metz & Chintala, "Unsupervised Representation Learning with Deep Convolutional Generative
Adversarial Networks" (ICLR 2016). The architecture guidelines of sec. 3, for any power-of-two
``resolution >= 8``; channels follow this project's rule ``channels(r) = min(channel_base // r,
channel_max)``, so ``channel_base=4096, channel_max=1024, z_dim=100, resolution=64`` is the paper's
64x64 LSUN network (fig. 1; docs/networks.md, "DCGAN"):

* G (fig. 1): ``z`` is projected by one matrix multiplication to ``channels(4) x 4 x 4`` and
  reshaped ("could be called fully connected as it is just a matrix multiplication, but the result is
  reshaped into a 4-dimensional tensor", sec. 3), then transposed 4x4 convs with stride 2 and
  padding 1 double the resolution up to ``resolution``; batch normalisation and ReLU after every
  layer except the output, which has tanh and no batch normalisation.
* D: strided 4x4 convs (stride 2, padding 1) halve the resolution down to 4x4, LeakyReLU(0.2),
  batch normalisation on every layer except the input layer; a 4x4 conv (no padding) reads the 4x4
  features to one logit (the paper's "flattened and fed into a single sigmoid output"; we return the
  logit, the losses apply the sigmoid). D's features at resolution ``r`` have ``channels(r)`` maps,
  mirroring G (the authors' released code: ``ndf = ngf``).
* No layer has a bias: batch normalisation's shift replaces it where there is one, and the authors'
  code has none on the others either (G's output, D's input and output layers).
* Weights ~ N(0, 0.02) (sec. 4); batch-norm gains ~ N(1, 0.02), shifts 0 (the authors' released
  code; not stated in the paper). Plain ``torch.nn`` layers: DCGAN has no equalised learning rate.

Class conditioning (not in the paper): G concatenates a learned label embedding (``z_dim`` features,
initialised N(0, 1) like ``z``) to ``z``; D is a projection discriminator (Miyato & Koyama 2018,
eq. 3): ``logit = conv(phi) + <embed(c), sum_hw phi>``, ``phi`` the 4x4 features.

The family interface (stylegan/families.py): ``G.mapping`` is the latent's own preparation, ``w =
[z, embed(c)]``, with ``num_ws = 1`` and ``w_dim = z_dim`` (``2 * z_dim`` conditional); ``w_avg``
tracks its mean (``w_avg_beta``) and truncation pulls ``w`` towards it. ``G.synthesis`` has no
noise inputs: ``noise_mode`` and ``generator`` are validated and change nothing.

Batch normalisation makes the output of a network depend on its mode: in train mode each layer
normalises by the statistics of the batch it is given (so a sample's image or logit depends on the
other samples of its micro-batch, and a run on another per-process batch size is a different
computation), and updates its running statistics; in eval mode it uses the running statistics, and
each sample is independent. Generation uses eval mode (``load_network`` returns modules in eval
mode). The running statistics are buffers: they are stored in network files and copied, not
averaged, into the training loop's ``G_ema``.

Mixed precision (:mod:`stylegan.precision`): the transposed convs of G that produce a resolution
``>= fp16_resolution`` and the convs of D that read one run in the dtype ``precision`` picks, batch
normalisation included (PyTorch normalises a float16/bfloat16 input with float32 statistics and
parameters); G's projection, its output tanh, D's 4x4 head and every label embedding run in float32.

NetworkConfig fields DCGAN ignores: ``w_dim``, ``mapping_layers``, ``mapping_lr_multiplier``,
``g_architecture``, ``d_architecture``, ``conv_clamp``, ``mbstd_group_size``,
``mbstd_num_channels``, ``d_mapping_layers``, ``resample_filter`` and ``use_noise``.
``growth='progressive'`` is refused (progressive growing does not apply) and so is ``resolution=4``;
:mod:`stylegan.families` applies ``spectral_norm`` to these networks as to any family's (every weight
of two or more dimensions, the label embeddings included) and refuses ``attention``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from stylegan.config import NetworkConfig
from stylegan.generator import MappedGenerator, SingleWMapping, check_single_w_synthesis_args
from stylegan.growth import GrowthMixin
from stylegan.mapping import check_labels
from stylegan.modconv import NoiseGenerator
from stylegan.precision import block_dtype, check_precision

INIT_STD = 0.02  # sec. 4: "initialized from a zero-centered Normal distribution with standard deviation 0.02"
LRELU_SLOPE = 0.2  # sec. 4: "the slope of the leak was set to 0.2"


def check_config(config: NetworkConfig) -> NetworkConfig:
    """Refuse a config DCGAN cannot build, with one line naming the field."""
    if not isinstance(config, NetworkConfig):
        raise ValueError(f"config: expected a NetworkConfig, got {type(config).__name__}")
    if config.family != "dcgan":
        raise ValueError(f"family={config.family!r}: the DCGAN networks are built from family='dcgan' configs")
    if config.growth != "none":
        raise ValueError(
            f"growth={config.growth!r}: DCGAN networks do not grow progressively; expected growth='none'"
        )
    if config.resolution < 8:
        raise ValueError(
            f"resolution={config.resolution}: DCGAN needs a power of two >= 8 (its first transposed conv "
            f"makes 8x8 from the 4x4 projection)"
        )
    return config


def init_weights(module: nn.Module) -> None:
    """Sec. 4: every conv / linear weight ~ N(0, 0.02); batch-norm gain ~ N(1, 0.02), shift 0 (as the
    authors' released code). Draws from torch's global RNG, like every ``torch.nn`` initialiser."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, INIT_STD)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, INIT_STD)
            nn.init.zeros_(m.bias)


# ----- generator ------------------------------------------------------------------------------------


class DCGANMapping(SingleWMapping):
    """``z [N, z_dim], c [N, c_dim] -> ws [N, 1, w_dim]``: the latent itself, with the label
    embedding concatenated for conditional models; ``w_avg`` for truncation."""

    def __init__(self, config: NetworkConfig) -> None:
        super().__init__()
        self.z_dim, self.c_dim, self.num_ws = config.z_dim, config.c_dim, 1
        self.w_avg_beta = config.w_avg_beta
        embed_dim = config.z_dim if config.c_dim > 0 else 0  # label and noise get equal width
        self.w_dim = config.z_dim + embed_dim
        if config.c_dim > 0:
            self.embed = nn.Linear(config.c_dim, embed_dim, bias=False)  # one-hot c: a lookup table
        self.register_buffer("w_avg", torch.zeros(self.w_dim))

    def prepare(self, z: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        return z if c is None else torch.cat([z, self.embed(c)], dim=1)

    def extra_repr(self) -> str:
        return f"z_dim={self.z_dim}, c_dim={self.c_dim}, w_dim={self.w_dim}, num_ws={self.num_ws}"


class GeneratorInput(nn.Module):
    """Fig. 1's "project and reshape": ``w -> [N, channels(4), 4, 4]``, then BN and ReLU."""

    def __init__(self, w_dim: int, channels: int) -> None:
        super().__init__()
        self.channels = channels
        # A matrix multiplication (sec. 3), as the authors' code; a 4x4 transposed conv of a 1x1 input
        # computes the same map with the same weights. No bias: BN's shift follows.
        self.fc = nn.Linear(w_dim, channels * 4 * 4, bias=False)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        x = self.fc(w).reshape(w.shape[0], self.channels, 4, 4)
        return F.relu(self.bn(x))


class GeneratorBlock(nn.Module):
    """Transposed 4x4 conv, stride 2: ``resolution // 2 -> resolution``; BN + ReLU, or tanh at the output."""

    def __init__(self, in_channels: int, out_channels: int, resolution: int, is_output: bool, use_fp16: bool) -> None:
        super().__init__()
        self.resolution, self.is_output, self.use_fp16 = resolution, is_output, use_fp16
        self.conv = nn.ConvTranspose2d(in_channels, out_channels, kernel_size=4, stride=2, padding=1, bias=False)
        if not is_output:
            self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        x = F.conv_transpose2d(x.to(dtype), self.conv.weight.to(dtype), stride=2, padding=1)
        if self.is_output:
            return torch.tanh(x.to(self.conv.weight.dtype))  # sec. 3: tanh output, no BN
        return F.relu(self.bn(x))

    def extra_repr(self) -> str:
        return f"resolution={self.resolution}, use_fp16={self.use_fp16}"


class DCGANSynthesis(nn.Module):
    """``ws [N, 1, w_dim] -> img [N, img_channels, resolution, resolution]`` in [-1, 1] (tanh)."""

    def __init__(self, config: NetworkConfig, w_dim: int) -> None:
        super().__init__()
        cfg = config
        self.config, self.w_dim, self.num_ws = cfg, w_dim, 1
        self.img_resolution, self.img_channels = cfg.resolution, cfg.img_channels
        blocks: dict[str, nn.Module] = {"b4": GeneratorInput(w_dim, cfg.channels(4))}
        for res in cfg.block_resolutions[1:]:
            out = cfg.img_channels if res == cfg.resolution else cfg.channels(res)
            blocks[f"b{res}"] = GeneratorBlock(
                cfg.channels(res // 2), out, res, is_output=res == cfg.resolution, use_fp16=res >= cfg.fp16_resolution
            )
        self.blocks = nn.ModuleDict(blocks)

    def forward(
        self,
        ws: torch.Tensor,
        noise_mode: str = "random",
        fused_modconv: bool | None = None,
        precision: str = "auto",
        generator: NoiseGenerator = None,
    ) -> torch.Tensor:
        """Render ws. DCGAN has no noise inputs and no modulated convs: ``noise_mode``,
        ``fused_modconv`` and ``generator`` are validated and have no effect. ``precision``: ``'auto'``,
        ``'fp32'``, ``'fp16'`` or ``'bf16'``, the dtype of the top ``num_fp16_res`` resolutions."""
        check_single_w_synthesis_args(ws, self.w_dim, noise_mode, fused_modconv, precision, generator)
        default_dtype = self.blocks["b4"].fc.weight.dtype
        x = self.blocks["b4"](ws[:, 0].to(default_dtype))
        for res in self.config.block_resolutions[1:]:
            block = self.blocks[f"b{res}"]
            x = block(x, block_dtype(block.use_fp16, precision, ws.device, default_dtype))
        return x

    def extra_repr(self) -> str:
        return f"w_dim={self.w_dim}, num_ws={self.num_ws}, img_resolution={self.img_resolution}"


class DCGANGenerator(GrowthMixin, MappedGenerator):
    """``G(z [N, z_dim], c [N, c_dim]) -> img [N, img_channels, r, r]`` in [-1, 1]."""

    network_kind = "generator"  # for network files (stylegan/families.py)

    def __init__(self, config: NetworkConfig) -> None:
        super().__init__()
        self.config = check_config(config)
        self.mapping = DCGANMapping(config)
        self.synthesis = DCGANSynthesis(config, self.mapping.w_dim)
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = config.z_dim, config.c_dim, self.mapping.w_dim, 1
        self.img_resolution, self.img_channels = config.resolution, config.img_channels
        init_weights(self)
        if config.c_dim > 0:
            nn.init.normal_(self.mapping.embed.weight, 0.0, 1.0)  # the label part of w on z's scale
        self._init_growth()  # progressive growing does not apply: set_growth accepts only the full stage


# ----- discriminator --------------------------------------------------------------------------------


class DiscriminatorBlock(nn.Module):
    """Strided 4x4 conv: ``resolution -> resolution // 2``; BN (not on the input layer) + LeakyReLU."""

    def __init__(self, in_channels: int, out_channels: int, resolution: int, is_input: bool, use_fp16: bool) -> None:
        super().__init__()
        self.resolution, self.is_input, self.use_fp16 = resolution, is_input, use_fp16
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=4, stride=2, padding=1, bias=False)
        if not is_input:  # sec. 3: no batchnorm at the discriminator's input layer
            self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        x = F.conv2d(x.to(dtype), self.conv.weight.to(dtype), stride=2, padding=1)
        if not self.is_input:
            x = self.bn(x)
        return F.leaky_relu(x, LRELU_SLOPE)

    def extra_repr(self) -> str:
        return f"resolution={self.resolution}, use_fp16={self.use_fp16}"


class DiscriminatorOutput(nn.Module):
    """4x4 features ``phi`` to one logit: ``conv4x4(phi)`` [+ ``<embed(c), sum_hw phi>``]. Float32."""

    def __init__(self, channels: int, c_dim: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, 1, kernel_size=4, bias=False)  # = flatten + one linear unit
        if c_dim > 0:
            self.embed = nn.Linear(c_dim, channels, bias=False)  # the projection's V (one row per class)

    def forward(self, x: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        logits = self.conv(x).flatten(1)  # [N, 1]
        if c is not None:
            # Miyato & Koyama 2018, eq. 3: f(x, y) = y^T V phi(x) + psi(phi(x)), phi globally sum-pooled.
            logits = logits + (self.embed(c.to(x.dtype)) * x.sum(dim=(2, 3))).sum(dim=1, keepdim=True)
        return logits


class DCGANDiscriminator(GrowthMixin, nn.Module):
    """``D(img [N, img_channels, r, r], c [N, c_dim]) -> logits [N, 1]`` (float32, no sigmoid)."""

    network_kind = "discriminator"  # for network files (stylegan/families.py)

    def __init__(self, config: NetworkConfig) -> None:
        super().__init__()
        self.config = cfg = check_config(config)
        self.c_dim, self.img_resolution, self.img_channels = cfg.c_dim, cfg.resolution, cfg.img_channels
        blocks: dict[str, nn.Module] = {}
        for res in reversed(cfg.block_resolutions[1:]):
            first = res == cfg.resolution
            blocks[f"b{res}"] = DiscriminatorBlock(
                cfg.img_channels if first else cfg.channels(res), cfg.channels(res // 2), res,
                is_input=first, use_fp16=res >= cfg.fp16_resolution,
            )
        blocks["b4"] = DiscriminatorOutput(cfg.channels(4), cfg.c_dim)
        self.blocks = nn.ModuleDict(blocks)
        init_weights(self)
        self._init_growth()

    def forward(self, img: torch.Tensor, c: torch.Tensor | None = None, precision: str = "auto") -> torch.Tensor:
        """Float32 logits for ``img``. ``precision`` (``'auto'``, ``'fp32'``, ``'fp16'``, ``'bf16'``)
        picks the dtype of the convs at the top ``num_fp16_res`` resolutions, as for the generator."""
        check_precision(precision)
        top = self.growth_resolution
        expected = (self.img_channels, top, top)
        if not isinstance(img, torch.Tensor) or img.ndim != 4 or tuple(img.shape[1:]) != expected:
            shape = tuple(img.shape) if isinstance(img, torch.Tensor) else None
            raise ValueError(
                f"img: expected shape [N, {', '.join(map(str, expected))}] at growth resolution {top}, got {shape}"
            )
        c = check_labels(c, self.c_dim, img.shape[0])
        head = self.blocks["b4"]
        default_dtype = head.conv.weight.dtype
        x = img.to(default_dtype)
        for res in reversed(self.config.block_resolutions[1:]):
            block = self.blocks[f"b{res}"]
            x = block(x, block_dtype(block.use_fp16, precision, img.device, default_dtype))
        return head(x.to(default_dtype), c)
