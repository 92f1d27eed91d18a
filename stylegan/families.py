"""Network families: which G and D classes a :class:`~stylegan.config.NetworkConfig` describes.

Every family's G offers the interface training and the tools use: ``G.mapping(z, c, truncation_psi,
truncation_cutoff, update_emas) -> ws [N, num_ws, w_dim]`` (with a ``w_avg`` buffer),
``G.synthesis(ws, noise_mode=, precision=, generator=) -> img``, ``G(z, c, ...)`` for both, the
attributes ``z_dim, c_dim, w_dim, num_ws, img_resolution, img_channels, config``, and the growth
stage (``set_growth``, ``growth_resolution``, ``growth_alpha``); D is ``D(img, c, precision=) ->
logits [N, 1]`` with the same growth stage. A family without a mapping network (ProGAN, DCGAN)
makes ``mapping`` the latent's own preparation with ``num_ws = 1``: style mixing then has nothing
to mix, and truncation pulls the latent towards its tracked average. Each class says which kind of
network it is (``network_kind``: ``'generator'`` or ``'discriminator'``) for network files.
"""

from __future__ import annotations

from torch import nn

from stylegan.config import FAMILIES, NetworkConfig
from stylegan.spectral import apply_spectral_norm


def network_classes(config: NetworkConfig) -> tuple[type[nn.Module], type[nn.Module]]:
    """The (G, D) classes of ``config.family``. Spectral normalisation applies to every family;
    self-attention blocks exist in StyleGAN2's networks only."""
    if config.family == "stylegan2":
        from stylegan.discriminator import Discriminator
        from stylegan.generator import Generator

        return Generator, Discriminator
    if config.family == "progan":
        from stylegan.progan import ProGANDiscriminator, ProGANGenerator

        return ProGANGenerator, ProGANDiscriminator
    if config.family == "dcgan":
        from stylegan.dcgan import DCGANDiscriminator, DCGANGenerator

        return DCGANGenerator, DCGANDiscriminator
    if config.family == "stylegan3":
        from stylegan.discriminator import Discriminator
        from stylegan.stylegan3 import StyleGAN3Generator

        return StyleGAN3Generator, Discriminator
    raise ValueError(f"family={config.family!r}: expected one of {', '.join(map(repr, FAMILIES))}")


def build_generator(config: NetworkConfig) -> nn.Module:
    """G of ``config.family``, spectrally normalised when ``config.spectral_norm`` is 'gd'."""
    G = network_classes(config)[0](config)
    return apply_spectral_norm(G) if config.spectral_norm == "gd" else G


def build_discriminator(config: NetworkConfig) -> nn.Module:
    """D of ``config.family``, spectrally normalised when ``config.spectral_norm`` is 'd' or 'gd'."""
    D = network_classes(config)[1](config)
    return apply_spectral_norm(D) if config.spectral_norm in ("d", "gd") else D


def reals_resample_taps(config: NetworkConfig) -> list[float]:
    """The filter that brings real images to a growth stage's resolution and fades them: the way
    the family's G upsamples and D downsamples. ProGAN: a box, i.e. 2x2 average pooling down and
    nearest-neighbour up (ProGAN sec. A.1); StyleGAN2: its [1, 3, 3, 1] low-pass (appendix B)."""
    return [1.0, 1.0] if config.family == "progan" else [1.0, 3.0, 3.0, 1.0]


# The NetworkConfig fields each family's networks never read (the configuration keeps every field so
# that one file format serves all families). Listed in stylegan/progan.py's and stylegan/dcgan.py's
# docstrings; tests/test_train_gan_family.py builds each family with each of them changed (stylegan3
# also in tests/test_train_init.py).
# StyleGAN3's synthesis fields (stylegan/stylegan3.py) mean nothing to the other families' networks:
# g_channel_base / g_channel_max are refused there outright (NetworkConfig's check), the others change
# nothing.
STYLEGAN3_FIELDS = frozenset({"g_channel_base", "g_channel_max", "conv_kernel", "use_radial_filters", "magnitude_ema_beta",
                              "sg3_layers", "sg3_critical_layers", "first_cutoff", "first_stopband", "last_stopband_rel",
                              "margin_size", "output_scale", "filter_size", "lrelu_upsampling"})
_UNUSED_FIELDS = {
    "stylegan2": STYLEGAN3_FIELDS,
    "progan": STYLEGAN3_FIELDS | {"w_dim", "mapping_layers", "mapping_lr_multiplier", "d_mapping_layers",
                                  "g_architecture", "d_architecture", "resample_filter", "use_noise"},
    "dcgan": STYLEGAN3_FIELDS | {"w_dim", "mapping_layers", "mapping_lr_multiplier", "d_mapping_layers",
                                 "g_architecture", "d_architecture", "resample_filter", "use_noise", "conv_clamp",
                                 "mbstd_group_size", "mbstd_num_channels"},
    # StyleGAN3's G has no skip/resnet architectures and no noise inputs; its D is StyleGAN2's.
    "stylegan3": frozenset({"g_architecture", "use_noise"}),
}


def unused_fields(family: str) -> frozenset[str]:
    """The :class:`NetworkConfig` fields that have no effect on ``family``'s networks."""
    if family not in _UNUSED_FIELDS:
        raise ValueError(f"family={family!r}: expected one of {', '.join(map(repr, FAMILIES))}")
    return _UNUSED_FIELDS[family]


# Network files name each module's kind; the builder of each.
BUILDERS = {"generator": build_generator, "discriminator": build_discriminator}


def kind_of(module: nn.Module) -> str | None:
    """``'generator'`` / ``'discriminator'`` for a network of any family, else None."""
    kind = getattr(type(module), "network_kind", None)
    return kind if kind in BUILDERS else None
