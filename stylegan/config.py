"""The one frozen configuration that rebuilds a generator and its discriminator.

:class:`NetworkConfig` holds every architecture knob of G and D. It is what presets produce
(:mod:`stylegan.presets`), what :func:`stylegan.build` consumes, what the training loop writes to
``config.json`` and what a network file carries in its metadata, so a network can always be
rebuilt from it exactly. ``from_dict`` rejects unknown keys and suggests the closest valid one.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass
from typing import Any, Mapping

from stylegan.info_codes import check_info_codes

G_ARCHITECTURES = ("orig", "skip", "resnet")
D_ARCHITECTURES = ("orig", "skip", "resnet")
GROWTH_MODES = ("none", "progressive")
# Network families (stylegan/families.py builds each): StyleGAN2's mapping + modulated synthesis.
FAMILIES = ("stylegan2", "progan", "dcgan", "stylegan3")
SPECTRAL_NORM_MODES = ("none", "d", "gd")  # which networks are spectrally normalised (stylegan/spectral.py)

# Upper bounds of every size, so that a config read from a stranger's file cannot ask for absurd
# allocations (docs/networks.md, "Limits"). Each is far above any published network: config-f at
# 1024x1024 uses resolution 1024, z/w 512, channel_base 32768 (ProGAN 1024: 16384 under min(base // res, max)), 512 channels,
# 8 mapping layers and a 4-tap filter.
LIMITS = {
    "resolution": 8192,
    "img_channels": 16,
    "c_dim": 100_000,
    "z_dim": 8192,
    "w_dim": 8192,
    "mapping_layers": 64,
    "d_mapping_layers": 64,
    "channel_base": 2**20,
    "channel_max": 8192,
    "num_fp16_res": 16,
    "mbstd_group_size": 1024,
    "mbstd_num_channels": 1024,
    "resample_filter": 16,  # taps
    "preset": 100,  # characters
    # StyleGAN3's synthesis (stylegan/stylegan3.py); NVIDIA's defaults are 14 layers, 6-tap filters, 2x.
    "sg3_layers": 64,
    "margin_size": 256,
    "filter_size": 64,
    "lrelu_upsampling": 16,
    "conv_kernel": 15,
}
LIMITS["g_channel_base"], LIMITS["g_channel_max"] = LIMITS["channel_base"], LIMITS["channel_max"]


def suggest(name: str, allowed: list[str] | tuple[str, ...]) -> str:
    """``" (did you mean 'x'?)"`` for the closest allowed name, or ``""`` when none is close."""
    close = difflib.get_close_matches(name, list(allowed), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def is_power_of_two(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1 and value & (value - 1) == 0


def _check_int(name: str, value: Any, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not minimum <= value <= LIMITS[name]:
        raise ValueError(f"{name}={_short(value)}: expected an int in [{minimum}, {LIMITS[name]}]")


def _short(value: Any, width: int = 60) -> str:
    """``repr(value)``, cut to ``width`` characters: a hostile file's value can be megabytes long."""
    text = repr(value) if not isinstance(value, int) or abs(value) < 10**30 else f"<an int of {len(str(abs(value)))} digits>"
    return text if len(text) <= width else text[: width - 3] + "..."


def _finite_number(value: Any) -> bool:
    """A real number (bool excluded) that converts to a finite float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def _check_choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        hint = suggest(value, allowed) if isinstance(value, str) else ""
        raise ValueError(f"{name}={_short(value)}: expected one of {', '.join(map(repr, allowed))}{hint}")


@dataclass(frozen=True)
class NetworkConfig:
    """Architecture of G and D (StyleGAN2 config-f names in parentheses where they differ).

    Channel schedule (shared by G and D, StyleGAN2 appendix): a block at resolution ``r`` has
    ``min(channel_base // r, channel_max)`` feature maps.
    """

    preset: str = "stylegan2"  # where the defaults came from; informational
    family: str = "stylegan2"  # which networks these fields describe (stylegan/families.py)
    resolution: int = 1024  # output / input image size, a power of two >= 4
    img_channels: int = 3  # 1 grayscale, 3 RGB, 4 RGBA, any >= 1
    c_dim: int = 0  # number of classes; 0 = unconditional
    z_dim: int = 512
    w_dim: int = 512
    mapping_layers: int = 8  # fully connected layers of G's mapping network
    mapping_lr_multiplier: float = 0.01  # StyleGAN sec. 4: mapping learns 100x slower
    w_avg_beta: float = 0.995  # decay of the tracked average w (truncation trick)
    channel_base: int = 32768
    channel_max: int = 512
    g_architecture: str = "skip"  # StyleGAN2 fig. 7: skip generator ...
    d_architecture: str = "resnet"  # ... and residual discriminator are config-e/f
    num_fp16_res: int = 0  # the highest N resolutions run in float16/bfloat16 (stylegan/precision.py)
    conv_clamp: float | None = None  # clamp conv outputs to [-conv_clamp, conv_clamp]
    mbstd_group_size: int = 4  # minibatch standard deviation group (ProGAN sec. 3)
    mbstd_num_channels: int = 1  # feature maps the mbstd layer appends; 0 disables it
    d_mapping_layers: int = 8  # layers of D's label mapping (conditional models only)
    resample_filter: tuple[float, ...] = (1.0, 3.0, 3.0, 1.0)  # StyleGAN2 appendix B low-pass
    use_noise: bool = True  # per-layer noise inputs (StyleGAN sec. 3.2)
    growth: str = "none"  # 'progressive' adds the ToRGB/FromRGB layers every stage needs
    spectral_norm: str = "none"  # 'd': D's weights, 'gd': G's and D's (Miyato et al. 2018; stylegan/spectral.py)
    attention: tuple[int, ...] = ()  # resolutions with a self-attention block in G and D (SAGAN; stylegan/attention.py)
    # InfoGAN's latent codes, the last entries of z, and D's head Q for them (stylegan/info_codes.py),
    # e.g. (("cat", 10), ("cont", 1), ("cont", 1)).
    info_codes: tuple[tuple[str, int], ...] = ()
    # ----- StyleGAN3 (family 'stylegan3', stylegan/stylegan3.py): NVIDIA's SynthesisNetwork arguments, with
    # NVIDIA's defaults. D stays the StyleGAN2 discriminator (channel_base / channel_max above); G may have
    # its own channel schedule (config-R doubles G's, NVIDIA's train.py).
    g_channel_base: int | None = None  # None: channel_base
    g_channel_max: int | None = None  # None: channel_max
    conv_kernel: int = 3  # config-T 3x3, config-R 1x1 (Karras et al. 2021, sec. 3.2)
    use_radial_filters: bool = False  # config-R: jinc-based radial downsampling filters (appendix F)
    magnitude_ema_beta: float = 0.999  # decay of each layer's input-magnitude EMA (NVIDIA's train.py: 0.5 ** (batch / 20k))
    sg3_layers: int = 14  # synthesis layers after the Fourier-feature input (appendix F: 14)
    sg3_critical_layers: int = 2  # the last ones, critically sampled
    first_cutoff: float = 2.0  # f_c of the first layer
    first_stopband: float = 2**2.1  # f_t of the first layer
    last_stopband_rel: float = 2**0.3  # f_t of the last layer, relative to its cutoff (resolution / 2)
    margin_size: int = 10  # pixels of margin around each layer's feature maps (sec. 3.1: 10)
    output_scale: float = 0.25  # the image is the last layer's output times this
    filter_size: int = 6  # taps of each low-pass filter per unit of its resampling factor
    lrelu_upsampling: int = 2  # the nonlinearity runs at this times the layer's sampling rate (sec. 3.2)

    def __post_init__(self) -> None:
        if not isinstance(self.preset, str) or len(self.preset) > LIMITS["preset"]:
            raise ValueError(f"preset={_short(self.preset)}: expected a string of at most {LIMITS['preset']} characters")
        if not (is_power_of_two(self.resolution) and 4 <= self.resolution <= LIMITS["resolution"]):
            raise ValueError(
                f"resolution={_short(self.resolution)}: expected a power of two in [4, {LIMITS['resolution']}]"
            )
        _check_int("img_channels", self.img_channels, 1)
        _check_int("c_dim", self.c_dim, 0)
        _check_int("z_dim", self.z_dim, 1)
        _check_int("w_dim", self.w_dim, 1)
        _check_int("mapping_layers", self.mapping_layers, 1)
        _check_int("d_mapping_layers", self.d_mapping_layers, 1)
        _check_int("channel_base", self.channel_base, 1)
        _check_int("channel_max", self.channel_max, 1)
        _check_int("num_fp16_res", self.num_fp16_res, 0)
        _check_int("mbstd_group_size", self.mbstd_group_size, 1)
        _check_int("mbstd_num_channels", self.mbstd_num_channels, 0)
        if self.channel_base // self.resolution < 1:
            raise ValueError(
                f"channel_base={self.channel_base}: gives 0 channels at resolution {self.resolution}; "
                f"expected channel_base >= resolution"
            )
        low_channels = min(self.channel_base // 4, self.channel_max)
        if self.mbstd_num_channels and low_channels % self.mbstd_num_channels:
            raise ValueError(
                f"mbstd_num_channels={self.mbstd_num_channels}: must divide the {low_channels} "
                f"feature maps at 4x4"
            )
        for name in ("mapping_lr_multiplier", "w_avg_beta"):
            value = getattr(self, name)
            if not _finite_number(value):
                raise ValueError(f"{name}={_short(value)}: expected a finite number")
        if not self.mapping_lr_multiplier > 0:
            raise ValueError(f"mapping_lr_multiplier={self.mapping_lr_multiplier!r}: expected a number > 0")
        if not 0 <= self.w_avg_beta <= 1:
            raise ValueError(f"w_avg_beta={self.w_avg_beta!r}: expected a number in [0, 1]")
        if self.conv_clamp is not None and not (_finite_number(self.conv_clamp) and self.conv_clamp > 0):
            raise ValueError(f"conv_clamp={_short(self.conv_clamp)}: expected None (no clamping) or a finite number > 0")
        _check_choice("g_architecture", self.g_architecture, G_ARCHITECTURES)
        _check_choice("d_architecture", self.d_architecture, D_ARCHITECTURES)
        _check_choice("growth", self.growth, GROWTH_MODES)
        _check_choice("family", self.family, FAMILIES)
        _check_choice("spectral_norm", self.spectral_norm, SPECTRAL_NORM_MODES)
        if self.attention and self.family != "stylegan2":
            raise ValueError(f"attention={_short(self.attention)}: self-attention blocks exist in the stylegan2 "
                             f"family only, not in {self.family!r}")
        att = self.attention
        if not isinstance(att, tuple) or len(att) > 16 or not all(
            is_power_of_two(r) and 8 <= r <= self.resolution // 2 for r in att
        ) or len(set(att)) != len(att):
            raise ValueError(
                f"attention={_short(att)}: expected distinct resolutions, powers of two in [8, {self.resolution // 2}] "
                "(feature maps that both G and D have)"
            )
        if self.info_codes and self.family != "stylegan2":
            raise ValueError(f"info_codes={_short(self.info_codes)}: InfoGAN's codes (D's head Q) exist in the "
                             f"stylegan2 family only, not in {self.family!r}")
        check_info_codes(self.info_codes, self.z_dim)
        if not isinstance(self.use_noise, bool):
            raise ValueError(f"use_noise={_short(self.use_noise)}: expected True or False")
        self._check_stylegan3()
        taps = self.resample_filter
        if not isinstance(taps, tuple) or not 1 <= len(taps) <= LIMITS["resample_filter"]:
            raise ValueError(
                f"resample_filter={_short(taps)}: expected a tuple of 1 to {LIMITS['resample_filter']} numbers"
            )
        if not all(_finite_number(t) and abs(t) <= 1e6 for t in taps):
            raise ValueError(f"resample_filter={_short(taps)}: expected finite numbers of magnitude <= 1e6")
        if sum(taps) == 0:
            raise ValueError(f"resample_filter={_short(taps)}: the taps must not sum to zero")

    def _check_stylegan3(self) -> None:
        for name in ("g_channel_base", "g_channel_max"):
            value = getattr(self, name)
            if value is not None:
                _check_int(name, value, 1)
                if self.family != "stylegan3":
                    raise ValueError(f"{name}={_short(value)}: G's own channel schedule exists in the stylegan3 family "
                                     f"only, not in {self.family!r}; expected None")
        _check_int("conv_kernel", self.conv_kernel, 1)
        _check_int("margin_size", self.margin_size, 0)
        _check_int("filter_size", self.filter_size, 1)
        _check_int("lrelu_upsampling", self.lrelu_upsampling, 1)
        _check_int("sg3_layers", self.sg3_layers, 1)
        crit = self.sg3_critical_layers
        if not isinstance(crit, int) or isinstance(crit, bool) or not 0 <= crit < self.sg3_layers:
            raise ValueError(f"sg3_critical_layers={_short(crit)}: expected an int in [0, sg3_layers - 1 = "
                             f"{self.sg3_layers - 1}]")
        if not isinstance(self.use_radial_filters, bool):
            raise ValueError(f"use_radial_filters={_short(self.use_radial_filters)}: expected True or False")
        for name in ("first_cutoff", "first_stopband", "last_stopband_rel", "output_scale", "magnitude_ema_beta"):
            value = getattr(self, name)
            if not _finite_number(value) or not (0 < value <= 1e6 or (name == "magnitude_ema_beta" and value == 0)):
                raise ValueError(f"{name}={_short(value)}: expected a finite number > 0")
        if self.magnitude_ema_beta > 1:
            raise ValueError(f"magnitude_ema_beta={self.magnitude_ema_beta!r}: expected a number in [0, 1]")
        if self.family == "stylegan3" and self.growth != "none":
            raise ValueError(f"growth={self.growth!r}: StyleGAN3 has no progressive growing (its layers are not "
                             "resolution blocks); expected 'none'")

    # ----- derived quantities -------------------------------------------------------------------

    def channels(self, res: int) -> int:
        """Feature maps of the block at resolution ``res``: ``min(channel_base // res, channel_max)``."""
        return min(self.channel_base // res, self.channel_max)

    @property
    def g_channels(self) -> tuple[int, int]:
        """``(channel_base, channel_max)`` of G: its own (stylegan3's ``g_channel_*``) or D's."""
        base = self.channel_base if self.g_channel_base is None else self.g_channel_base
        return base, self.channel_max if self.g_channel_max is None else self.g_channel_max

    @property
    def block_resolutions(self) -> list[int]:
        """``[4, 8, ..., resolution]``: one synthesis block (and one D stage) per resolution."""
        return [2**i for i in range(2, self.resolution.bit_length())]

    @property
    def fp16_resolution(self) -> int:
        """Lowest resolution that runs in float16: the top ``num_fp16_res`` blocks, never below 8."""
        if self.num_fp16_res == 0:
            return self.resolution * 2  # none
        return max(self.resolution // 2 ** (self.num_fp16_res - 1), 8)

    # ----- serialisation ------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (tuples become lists)."""
        out = dataclasses.asdict(self)
        out["resample_filter"] = list(self.resample_filter)
        out["attention"] = list(self.attention)
        out["info_codes"] = [list(code) for code in self.info_codes]
        return out

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "NetworkConfig":
        """Rebuild from :meth:`to_dict` output; unknown keys are refused with a suggestion."""
        if not isinstance(data, Mapping):
            raise ValueError(f"network config: expected a mapping, got {type(data).__name__}")
        names = cls.field_names()
        for key in data:
            if key not in names:
                raise ValueError(f"network config: unknown key {_short(key)}{suggest(str(key), names)}")
        values = dict(data)
        for key in ("resample_filter", "attention"):
            if isinstance(values.get(key), list):
                values[key] = tuple(values[key])
        if isinstance(values.get("info_codes"), list):  # JSON's [[kind, n], ...]
            values["info_codes"] = tuple(tuple(code) if isinstance(code, list) else code for code in values["info_codes"])
        return cls(**values)

    def replace(self, **changes: Any) -> "NetworkConfig":
        """A copy with ``changes`` applied (validated, unknown names refused)."""
        return NetworkConfig.from_dict({**self.to_dict(), **changes})
