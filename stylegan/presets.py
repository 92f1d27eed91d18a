"""Named presets: the network and its training recipe in one table, and :func:`build`.

The paper presets are StyleGAN2-ADA's ``train.py`` configurations (Karras et al. 2020b, appendix D;
their ``cfg_specs``): width ``fmaps x 32768`` feature maps, mapping depth, minibatch-stddev group,
global batch, per-GPU batch (``batch / ref_gpus``), one Adam learning rate for G and D, R1 gamma,
G_ema half-life and ramp-up, length in kimg. Every ADA configuration runs the top 4 resolutions in
float16 with ``conv_clamp=256`` (its ``--fp32`` turns both off; so does our ``--precision fp32``).
``auto`` derives its values from the resolution and the number of processes by ADA's formula
(:func:`auto_recipe`). ``tiny`` is this project's CPU demo.

=========  =========  =====  =====  =====  ======  =====  =====  =====  ======  ======
preset     res        fmaps  map    mbstd  batch   b/gpu  lr     gamma  ema     kimg
=========  =========  =====  =====  =====  ======  =====  =====  =====  ======  ======
tiny       32         1024*  2      4      32      -      .0025  .0064  10/.15  64
auto       data       by res 2      <= 4   <= 64   -      by res .0002 r^2/b    25000
stylegan2  1024       1      8      4      32      4      .002   10     10      25000
paper256   256        0.5    8      8      64      8      .0025  1      20      25000
paper512   512        1      8      8      64      8      .0025  0.5    20      25000
paper1024  1024       1      8      4      32      4      .002   2      10      25000
cifar      32         1      2      32     64      32     .0025  0.01   500/.05 100000
=========  =========  =====  =====  =====  ======  =====  =====  =====  ======  ======

(* ``tiny`` has ``channel_base`` 1024 with at most 64 feature maps; ``ema`` is the half-life in kimg,
``/.05`` a ramp-up of 0.05.) ``tiny`` and ``cifar`` also turn off path length and style mixing;
``cifar`` uses D architecture ``orig``, as ADA does. ``stylegan2`` is ADA's re-run of config-f, mixed precision
included.

The StyleGAN3 presets are NVIDIA's ``stylegan3`` ``train.py`` (Karras et al. 2021): ``--cfg stylegan3-t``
and ``stylegan3-r`` with its defaults, our StyleGAN2 D as theirs. Widths ``--cbase 32768 --cmax 512``
(config-R doubles G's: ``g_channel_factor``), mapping 2, ``w_avg_beta`` 0.998, G lr 0.0025, D lr 0.002,
batch 32, no path length, no style mixing, no lazy G regularisation (``pl_interval`` 0), G_ema half-life
``batch * 10 / 32`` kimg with ramp-up 0.05 (their training loop's default), ADA, 25000 kimg. R1's gamma
has no default in NVIDIA's ``train.py`` (``--gamma`` is required); ours is their ``docs/configs.md`` table,
``32 * (res / 1024) ** 2`` (:func:`stylegan3_gamma`). Config-R also blurs every image D sees with a
Gaussian of sigma 10 that fades out over ``200 * batch / 32`` kimg. ``stylegan3-tiny`` is this project's
CPU demo of config-T (see its entry).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, Mapping

from stylegan.config import NetworkConfig, is_power_of_two, suggest
from stylegan.discriminator import Discriminator
from stylegan.families import build_discriminator, build_generator
from stylegan.generator import Generator


@dataclass(frozen=True)
class Recipe:
    """Training values that go with a preset (StyleGAN2-ADA ``cfg_specs``); names are ``train.py``'s.

    ``batch_gpu=None`` means ``batch / processes``. ``ema_rampup=0`` is ADA's ``ramp=None`` (off).
    ``pl_weight``/``mixing`` are ADA's loss defaults (2 and 0.9) except where a preset says otherwise.
    ``snap`` is ADA's default snapshot interval of 50 ticks for the long paper runs. ``ema_kimg=None``
    is NVIDIA's StyleGAN3 rule ``batch * 10 / 32`` of the run's batch; ``pl_interval=0`` is no lazy G
    regularisation (no G_reg phase, G's Adam uncorrected: StyleGAN3's ``G_reg_interval=None``).
    ``blur_sigma``: the Gaussian blur of D's inputs at the start (config-R's 10), faded out over
    ``blur_fade_kimg`` (``None``: ``200 * batch / 32``, NVIDIA's rule).
    """

    batch: int
    glr: float
    dlr: float
    gamma: float
    ema_kimg: float | None
    ema_rampup: float
    kimg: float
    batch_gpu: int | None = None
    pl_weight: float = 2.0
    mixing: float = 0.9
    snap: int = 50
    precision: str = "fp16"  # ADA: float16 in the top num_fp16_res blocks (on CUDA)
    aug: str = "ada"  # ADA's default augmentation (train.py --aug=ada) for every configuration
    loss: str = "ns"  # the adversarial loss (training.loss.LOSSES): StyleGAN2's non-saturating logistic
    optimizer: str = "adam"
    beta1: float = 0.0  # Adam's betas: StyleGAN2 (and ProGAN) use (0, 0.99)
    beta2: float = 0.99
    n_critic: int = 1  # D steps per G step
    growth: str = "none"  # progressive growing (ProGAN) or none
    growth_batch: str = ""  # global batch per resolution while growing, e.g. '256:14,512:6'
    pl_interval: int = 4  # G_reg every this many steps (lazy regularisation); 0: none, G's Adam uncorrected
    blur_sigma: float = 0.0  # sigma of the Gaussian blur of D's inputs at the start (StyleGAN3-R: 10)
    blur_fade_kimg: float | None = None  # the blur fades to 0 over this many kimg; None: 200 * batch / 32

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


@dataclass(frozen=True)
class Preset:
    """A named network (:class:`NetworkConfig` fields) with its training :class:`Recipe`.

    ``gamma_rule``: R1's gamma as a function of the resolution, replacing the recipe's (StyleGAN3's
    table). ``g_channel_factor``: G's channel schedule is this times D's (config-R doubles G's width,
    NVIDIA's ``train.py``), also when ``--cbase``/``--cmax`` change D's."""

    network: Mapping[str, Any]
    recipe: Recipe | None  # None: derived from the data and processes (``auto``)
    ref_gpus: int | None = None  # the GPU count the recipe was published for
    gamma_rule: Callable[[int], float] | None = None
    g_channel_factor: int | None = None


def stylegan3_gamma(resolution: int) -> float:
    """R1's gamma for StyleGAN3-T and -R at ``resolution``: NVIDIA's ``docs/configs.md`` recommends 0.5 at
    128x128, 2 at 256, 8 at 512 and 32 at 1024 (the same for T and R), i.e. ``32 * (res / 1024) ** 2``:
    gamma grows with the square of the resolution, their rule of thumb."""
    return 32.0 * (resolution / 1024) ** 2


def stylegan3_magnitude_beta(batch: int) -> float:
    """The decay of StyleGAN3's magnitude EMAs for a global ``batch``: NVIDIA's ``train.py`` sets
    ``0.5 ** (batch / 20000)``, a half-life of 20k images."""
    return 0.5 ** (batch / 20000)


# Every StyleGAN2-ADA configuration: z/w 512, at most 512 feature maps, float16 in the top 4 resolutions
# with conv outputs clamped to +-256 (ADA appendix D, "mixed-precision training").
_ADA = dict(z_dim=512, w_dim=512, channel_max=512, num_fp16_res=4, conv_clamp=256.0)


def _ada(resolution: int, fmaps: float, mapping: int, mbstd: int, **extra: Any) -> MappingProxyType:
    return MappingProxyType(dict(_ADA, resolution=resolution, channel_base=int(fmaps * 32768),
                                 mapping_layers=mapping, mbstd_group_size=mbstd, **extra))


def _sg3(**extra: Any) -> MappingProxyType:
    """NVIDIA's StyleGAN3 networks at 1024x1024 (``train.py`` defaults): z/w 512, mapping 2 with
    ``w_avg_beta`` 0.998, ``--cbase 32768 --cmax 512``, float16 in the top 4 sampling rates clamped at
    256, D resnet with minibatch-stddev groups of 4, magnitude EMAs for the batch of 32."""
    return MappingProxyType(dict(
        family="stylegan3", resolution=1024, z_dim=512, w_dim=512, mapping_layers=2, w_avg_beta=0.998,
        channel_base=32768, channel_max=512, num_fp16_res=4, conv_clamp=256.0, mbstd_group_size=4,
        d_architecture="resnet", magnitude_ema_beta=stylegan3_magnitude_beta(32), **extra,
    ))


_TABLE: dict[str, Preset] = {
    # The CPU demo: channels 64/64/64/32 at 4/8/16/32 (measured ~230 G+D fwd+bwd img/s at batch 32 on
    # 2 cores vs ~140 with 2048/64). Its recipe is the one the demo has trained with since it shipped:
    # gamma 0.0064 is ADA's heuristic 0.0002 * 32^2 / 32, EMA ADA's batch * 10 / 32 with ramp-up.
    # Since 2026-12-07 (issue 23): 64 kimg without path length and style mixing (as ADA's cifar), EMA
    # ramp-up 0.15: 10-11.5 min instead of 14.5-16 on the 2-core VM, and on two seeds a better final
    # score (class accuracy 0.981 vs 0.950, fd 11.8 vs 14.4, variety 0.60 vs 0.60; docs/benchmarks.md).
    "tiny": Preset(
        network=MappingProxyType(dict(
            resolution=32, z_dim=64, w_dim=64, mapping_layers=2, d_mapping_layers=2, channel_base=1024,
            channel_max=64, mbstd_group_size=4, num_fp16_res=4, conv_clamp=256.0,
        )),
        recipe=Recipe(batch=32, glr=0.0025, dlr=0.0025, gamma=0.0064, ema_kimg=10.0, ema_rampup=0.15, kimg=64.0,
                      pl_weight=0.0, mixing=0.0, snap=5, precision="fp32", aug="none"),
    ),
    # ADA "auto": everything but the mapping depth comes from the data (auto_recipe).
    "auto": Preset(network=_ada(256, 0.5, 2, 4), recipe=None),
    # ADA "stylegan2": config-f's hyperparameters, with ADA's mixed precision.
    "stylegan2": Preset(
        network=_ada(1024, 1, 8, 4), ref_gpus=8,
        recipe=Recipe(batch=32, batch_gpu=4, glr=0.002, dlr=0.002, gamma=10.0, ema_kimg=10.0, ema_rampup=0.0,
                      kimg=25000.0),
    ),
    "paper256": Preset(
        network=_ada(256, 0.5, 8, 8), ref_gpus=8,
        recipe=Recipe(batch=64, batch_gpu=8, glr=0.0025, dlr=0.0025, gamma=1.0, ema_kimg=20.0, ema_rampup=0.0,
                      kimg=25000.0),
    ),
    "paper512": Preset(
        network=_ada(512, 1, 8, 8), ref_gpus=8,
        recipe=Recipe(batch=64, batch_gpu=8, glr=0.0025, dlr=0.0025, gamma=0.5, ema_kimg=20.0, ema_rampup=0.0,
                      kimg=25000.0),
    ),
    "paper1024": Preset(
        network=_ada(1024, 1, 8, 4), ref_gpus=8,
        recipe=Recipe(batch=32, batch_gpu=4, glr=0.002, dlr=0.002, gamma=2.0, ema_kimg=10.0, ema_rampup=0.0,
                      kimg=25000.0),
    ),
    # ADA "cifar": also no path length, no style mixing, D architecture 'orig'.
    "cifar": Preset(
        network=_ada(32, 1, 2, 32, d_architecture="orig"), ref_gpus=2,
        recipe=Recipe(batch=64, batch_gpu=32, glr=0.0025, dlr=0.0025, gamma=0.01, ema_kimg=500.0, ema_rampup=0.05,
                      kimg=100000.0, pl_weight=0.0, mixing=0.0),
    ),
    # ProGAN as published (Karras et al. 2018): its own networks (stylegan/progan.py; Table 2's
    # channels), WGAN-GP with the drift term, progressive growing from 4x4 with 800k images per fade
    # and per stable phase, minibatch 16 up to 128x128 then 14/6/3 (sec. A.1), Adam(0.001, 0, 0.99),
    # a generator EMA of decay 0.999 per step of 16 images (half-life 16 * ln 2 / 0.001 ~ 11 kimg),
    # no augmentation, float32. kimg: 800 at 4x4 + 1600 per doubling up to 1024.
    "progan": Preset(
        network=MappingProxyType(dict(
            family="progan", resolution=1024, z_dim=512, w_dim=512, channel_base=16384, channel_max=512,
            mbstd_group_size=4, num_fp16_res=0, conv_clamp=None,
        )),
        recipe=Recipe(batch=16, glr=0.001, dlr=0.001, gamma=0.0, ema_kimg=11.1, ema_rampup=0.0, kimg=13600.0,
                      pl_weight=0.0, mixing=0.0, snap=50, precision="fp32", aug="none", loss="wgan-gp",
                      growth="progressive", growth_batch="256:14,512:6,1024:3"),
        ref_gpus=1,
    ),
    # DCGAN (Radford et al. 2016): its networks (stylegan/dcgan.py) at the paper's 64x64 LSUN widths
    # (G 1024 -> 512 -> 256 -> 128 maps, z of 100), the non-saturating GAN loss, Adam(0.0002, 0.5,
    # 0.999), batch 128 (sec. 4), no regularisers, no EMA (G_ema is G), no augmentation, float32.
    # The paper gives no length in images; 5000 kimg is ours (LSUN's 3M bedrooms seen 1.7 times).
    "dcgan": Preset(
        network=MappingProxyType(dict(
            family="dcgan", resolution=64, z_dim=100, w_dim=100, channel_base=4096, channel_max=1024,
            use_noise=False, num_fp16_res=0, conv_clamp=None,
        )),
        recipe=Recipe(batch=128, glr=0.0002, dlr=0.0002, gamma=0.0, ema_kimg=0.0, ema_rampup=0.0, kimg=5000.0,
                      pl_weight=0.0, mixing=0.0, snap=50, precision="fp32", aug="none", beta1=0.5, beta2=0.999),
        ref_gpus=1,
    ),
    # StyleGAN3 (Karras et al. 2021) as NVIDIA's stylegan3 train.py trains it (module docstring): the
    # alias-free G (stylegan/stylegan3.py) with StyleGAN2's D, R1 by NVIDIA's table, no path length, no
    # mixing, no lazy G regularisation, ADA. batch_gpu 4: batch / 8 GPUs, as the ADA presets (and the
    # per-GPU batch NVIDIA's configs.md gives at 1024x1024 for 1 to 8 GPUs).
    "stylegan3-t": Preset(
        network=_sg3(), ref_gpus=8, gamma_rule=stylegan3_gamma,
        recipe=Recipe(batch=32, batch_gpu=4, glr=0.0025, dlr=0.002, gamma=32.0, ema_kimg=None, ema_rampup=0.05,
                      kimg=25000.0, pl_weight=0.0, mixing=0.0, pl_interval=0),
    ),
    # Config-R: 1x1 convolutions, radial filters, G twice as wide, and D's inputs blurred early on.
    "stylegan3-r": Preset(
        network=_sg3(conv_kernel=1, use_radial_filters=True, g_channel_base=65536, g_channel_max=1024),
        ref_gpus=8, gamma_rule=stylegan3_gamma, g_channel_factor=2,
        recipe=Recipe(batch=32, batch_gpu=4, glr=0.0025, dlr=0.002, gamma=32.0, ema_kimg=None, ema_rampup=0.05,
                      kimg=25000.0, pl_weight=0.0, mixing=0.0, pl_interval=0, blur_sigma=10.0),
    ),
    # The CPU demo of config-T on the demo digits (docs/training.md, "StyleGAN3 on a CPU"): D is tiny's
    # (channel_base 1024, at most 64 maps), G has 32 feature maps in every layer and 8 layers instead
    # of 14: at 32x32 the cutoffs rise 3 octaves, half an octave per layer as in NVIDIA's 256x256
    # networks (14 layers would be a quarter octave); margins of 4 samples instead of 10 (2.6x faster
    # on the 2-core VM: the reference filtered_lrelu's FIR filters dominate a CPU step). Recipe:
    # NVIDIA's, with gamma by their rule at 32x32, float32 and no augmentation (as tiny), and 32 kimg:
    # a step costs 6x tiny's per image, and at 32 kimg it scored class accuracy 0.94 / fd 8.6 /
    # variety 0.83 (tiny's 64 kimg: 0.98 / 11.8 / 0.60; docs/training.md, "StyleGAN3 on a CPU").
    "stylegan3-tiny": Preset(
        network=MappingProxyType(dict(
            family="stylegan3", resolution=32, z_dim=64, w_dim=64, mapping_layers=2, d_mapping_layers=2,
            w_avg_beta=0.998, channel_base=1024, channel_max=64, g_channel_base=1024, g_channel_max=32,
            sg3_layers=8, margin_size=4, mbstd_group_size=4, num_fp16_res=4, conv_clamp=256.0,
            magnitude_ema_beta=stylegan3_magnitude_beta(32),
        )),
        recipe=Recipe(batch=32, glr=0.0025, dlr=0.002, gamma=stylegan3_gamma(32), ema_kimg=None, ema_rampup=0.05,
                      kimg=32.0, pl_weight=0.0, mixing=0.0, pl_interval=0, snap=5, precision="fp32", aug="none"),
    ),
}

PRESETS: tuple[str, ...] = ("tiny", "auto", "cifar", "paper256", "paper512", "paper1024", "stylegan2", "progan",
                            "dcgan", "stylegan3-t", "stylegan3-r", "stylegan3-tiny")
assert set(PRESETS) == set(_TABLE)


def _check_preset(preset: Any) -> None:
    if preset not in _TABLE:
        hint = suggest(preset, PRESETS) if isinstance(preset, str) else ""
        raise ValueError(f"preset={preset!r}: expected one of {', '.join(map(repr, PRESETS))}{hint}")


def auto_recipe(resolution: int, num_gpus: int) -> tuple[dict[str, Any], Recipe]:
    """ADA's ``auto`` configuration for ``resolution`` and ``num_gpus`` processes: network overrides
    (width, minibatch-stddev group) and the recipe (batch, lr, gamma, EMA) by its formulas."""
    if not (is_power_of_two(resolution) and resolution >= 4):
        raise ValueError(f"resolution={resolution!r}: expected a power of two >= 4")
    if not isinstance(num_gpus, int) or num_gpus < 1:
        raise ValueError(f"num_gpus={num_gpus!r}: expected an int >= 1")
    batch = max(min(num_gpus * min(4096 // resolution, 32), 64), num_gpus)  # bounded memory per GPU
    mbstd = min(batch // num_gpus, 4)  # a fixed group size keeps other hyperparameters predictable
    fmaps = 1 if resolution >= 512 else 0.5
    lr = 0.002 if resolution >= 1024 else 0.0025
    network = dict(channel_base=int(fmaps * 32768), mbstd_group_size=mbstd)
    recipe = Recipe(
        batch=batch, batch_gpu=batch // num_gpus, glr=lr, dlr=lr,
        gamma=0.0002 * resolution**2 / batch,  # ADA's R1 heuristic
        ema_kimg=batch * 10 / 32, ema_rampup=0.05, kimg=25000.0,
    )
    return network, recipe


def preset_recipe(preset: str, resolution: int | None = None, num_gpus: int = 1) -> Recipe:
    """The training recipe of ``preset`` (``auto``: for ``resolution`` and ``num_gpus``)."""
    _check_preset(preset)
    entry = _TABLE[preset]
    if entry.recipe is None:
        return auto_recipe(resolution or entry.network["resolution"], num_gpus)[1]
    if entry.gamma_rule is not None:
        return dataclasses.replace(entry.recipe, gamma=entry.gamma_rule(resolution or entry.network["resolution"]))
    return entry.recipe


def recipe_notes(preset: str, resolution: int | None = None) -> dict[str, str]:
    """Why some of ``preset``'s recipe values are what they are (printed beside them at start-up)."""
    _check_preset(preset)
    entry = _TABLE[preset]
    res = resolution or entry.network["resolution"]
    notes = {}
    if entry.gamma_rule is stylegan3_gamma:
        notes["gamma"] = (f"NVIDIA's docs/configs.md table for StyleGAN3 at {res}x{res}: 32 x (res / 1024)^2; "
                          "their train.py has no default")
    return notes


def preset_network(preset: str, resolution: int | None = None, num_gpus: int = 1) -> dict[str, Any]:
    """The :class:`NetworkConfig` fields ``preset`` sets (``auto``: for ``resolution`` and ``num_gpus``)."""
    _check_preset(preset)
    entry = _TABLE[preset]
    values = dict(entry.network)
    if entry.recipe is None:
        res = resolution or values["resolution"]
        values.update(auto_recipe(res, num_gpus)[0], resolution=res)
    return values


def preset_ref_gpus(preset: str) -> int | None:
    """The number of GPUs ``preset``'s recipe was published for (``None``: any)."""
    _check_preset(preset)
    return _TABLE[preset].ref_gpus


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
    if resolution is not None and not (is_power_of_two(resolution) and resolution >= 4):
        raise ValueError(f"resolution={resolution!r}: expected a power of two >= 4")
    values = dict(preset_network(preset, resolution), preset=preset, img_channels=img_channels, c_dim=c_dim, **overrides)
    if resolution is not None:
        values["resolution"] = resolution
    factor = _TABLE[preset].g_channel_factor
    if factor is not None:  # config-R: G twice D's width, whatever D's is
        for name in ("channel_base", "channel_max"):
            if f"g_{name}" not in overrides:
                values[f"g_{name}"] = factor * values[name]
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
    """``(G, D)`` for an already resolved config (e.g. read back from ``config.json``), of the
    config's family (stylegan/families.py; annotated with StyleGAN2's classes, whose interface every
    family offers)."""
    return build_generator(config), build_discriminator(config)
