"""Named network configurations and :func:`build`.

The paper presets follow the configurations of StyleGAN2-ADA (Karras et al. 2020b, table / appendix
D) and StyleGAN2 config-f (Karras et al. 2020a); ``tiny`` is this project's CPU demo size. Every
field of :class:`~stylegan.config.NetworkConfig` can be overridden by name.

=========  ====  ============  ===========  =======  =====  ====  ==========
preset     res   channel_base  channel_max  mapping  mbstd  fp16  conv_clamp
=========  ====  ============  ===========  =======  =====  ====  ==========
tiny       32    1024          64           2        4      0     None
cifar      32    32768         512          2        32     4     256
paper256   256   16384         512          8        8      4     256
paper512   512   32768         512          8        8      4     256
paper1024  1024  65536         512          8        4      4     256
stylegan2  1024  32768         512          8        4      0     None
=========  ====  ============  ===========  =======  =====  ====  ==========
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

from stylegan.config import NetworkConfig, is_power_of_two, suggest
from stylegan.discriminator import Discriminator
from stylegan.generator import Generator

_PAPER = dict(z_dim=512, w_dim=512, channel_max=512, mapping_layers=8, num_fp16_res=4, conv_clamp=256.0)

_PRESETS: dict[str, dict[str, Any]] = {
    # Small enough to train 32x32 digits on a 2-core CPU in minutes (channels 64/64/64/32 at
    # 4/8/16/32): measured ~230 G+D fwd+bwd img/s at batch 32 vs ~140 with 2048/64, ~110 with 2048/128.
    "tiny": dict(
        resolution=32, z_dim=64, w_dim=64, mapping_layers=2, d_mapping_layers=2, channel_base=1024,
        channel_max=64, mbstd_group_size=4, num_fp16_res=0, conv_clamp=None,
    ),
    # ADA "cifar": fmaps 1, map 2, mbstd 32, D architecture 'orig'.
    "cifar": dict(_PAPER, resolution=32, channel_base=32768, mapping_layers=2, mbstd_group_size=32, d_architecture="orig"),
    # ADA "paper256": fmaps 0.5, mbstd 8.
    "paper256": dict(_PAPER, resolution=256, channel_base=16384, mbstd_group_size=8),
    # ADA "paper512": fmaps 1, mbstd 8.
    "paper512": dict(_PAPER, resolution=512, channel_base=32768, mbstd_group_size=8),
    # ADA "paper1024": fmaps 2, mbstd 4.
    "paper1024": dict(_PAPER, resolution=1024, channel_base=65536, mbstd_group_size=4),
    # StyleGAN2 config-f: fp32 throughout, no clamping, at any resolution (default 1024).
    "stylegan2": dict(
        resolution=1024, z_dim=512, w_dim=512, channel_base=32768, channel_max=512, mapping_layers=8,
        mbstd_group_size=4, num_fp16_res=0, conv_clamp=None,
    ),
}

PRESETS: tuple[str, ...] = tuple(_PRESETS)

# Training hyperparameters that go with each preset in the papers (ADA appendix D: batch, G/D
# learning rate, R1 gamma, G_ema half-life in kimg, EMA ramp-up, path-length weight, style-mixing
# probability). Not used by the networks; the training loop may take its defaults from here. The
# `tiny` values are this project's own: a plain loop with them (R1 every 4 steps, no path length,
# no mixing) drew recognisable conditional digits after ~30k images.
def _hp(
    batch: int, lr: float, gamma: float, ema_kimg: float, ema_rampup: float | None, pl_weight: float,
    style_mixing: float,
) -> MappingProxyType:
    return MappingProxyType(
        dict(batch=batch, lr=lr, gamma=gamma, ema_kimg=ema_kimg, ema_rampup=ema_rampup,
             pl_weight=pl_weight, style_mixing=style_mixing)
    )


TRAINING_DEFAULTS: MappingProxyType = MappingProxyType(
    {
        "tiny": _hp(32, 0.0025, 0.05, 2.0, None, 0.0, 0.0),
        "cifar": _hp(64, 0.0025, 0.01, 500.0, 0.05, 0.0, 0.0),
        "paper256": _hp(64, 0.0025, 1.0, 20.0, None, 2.0, 0.9),
        "paper512": _hp(64, 0.0025, 0.5, 20.0, None, 2.0, 0.9),
        "paper1024": _hp(32, 0.002, 2.0, 10.0, None, 2.0, 0.9),
        "stylegan2": _hp(32, 0.002, 10.0, 10.0, None, 2.0, 0.9),
    }
)


def _check_preset(preset: Any) -> None:
    if preset not in _PRESETS:
        hint = suggest(preset, PRESETS) if isinstance(preset, str) else ""
        raise ValueError(f"preset={preset!r}: expected one of {', '.join(map(repr, PRESETS))}{hint}")


def resolve_config(
    preset: str, resolution: int | None = None, img_channels: int = 3, c_dim: int = 0, **overrides: Any
) -> NetworkConfig:
    """The fully resolved config of ``preset`` with the given resolution, channels, classes and
    overrides (any :class:`NetworkConfig` field name). Unknown names raise ``ValueError``."""
    _check_preset(preset)
    names = [n for n in NetworkConfig.field_names() if n not in ("preset", "resolution", "img_channels", "c_dim")]
    for key in overrides:
        if key not in names:
            raise ValueError(
                f"override {key!r}: not a network option{suggest(key, names)}; allowed: {', '.join(names)}"
            )
    values = dict(_PRESETS[preset], preset=preset, img_channels=img_channels, c_dim=c_dim, **overrides)
    if resolution is not None:
        if not (is_power_of_two(resolution) and resolution >= 4):
            raise ValueError(f"resolution={resolution!r}: expected a power of two >= 4")
        values["resolution"] = resolution
    if isinstance(values.get("resample_filter"), list):
        values["resample_filter"] = tuple(values["resample_filter"])
    return NetworkConfig(**values)


def build(
    preset: str, resolution: int | None = None, img_channels: int = 3, c_dim: int = 0, **overrides: Any
) -> tuple[Generator, Discriminator]:
    """Build ``(G, D)`` for :func:`resolve_config` of the same arguments; both carry ``.config``."""
    config = resolve_config(preset, resolution, img_channels, c_dim, **overrides)
    return build_from_config(config)


def build_from_config(config: NetworkConfig) -> tuple[Generator, Discriminator]:
    """``(G, D)`` for an already resolved config (e.g. read back from ``config.json``)."""
    return Generator(config), Discriminator(config)


def preset_training_defaults(preset: str) -> dict[str, Any]:
    """The training hyperparameters that go with ``preset`` (see :data:`TRAINING_DEFAULTS`)."""
    _check_preset(preset)
    return dict(TRAINING_DEFAULTS[preset])
