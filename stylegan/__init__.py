"""StyleGAN2 / ProGAN networks on the reference ops: mapping, synthesis, discriminator, presets,
progressive growing, safetensors network files, and NVIDIA's StyleGAN2/StyleGAN3 pickles (read safely).

Papers: Karras et al. 2018 (ProGAN), 2019 (StyleGAN), 2020 (StyleGAN2), 2020 (StyleGAN2-ADA).
See docs/networks.md.
"""

from stylegan.config import D_ARCHITECTURES, G_ARCHITECTURES, GROWTH_MODES, NetworkConfig
from stylegan.discriminator import Discriminator
from stylegan.generator import Generator
from stylegan.mapping import MappingNetwork
from stylegan.modconv import NOISE_MODES, modulated_conv2d
from stylegan.netfile import NetworkFileError, NetworkInfo, load_network, read_network_info, save_network
from stylegan.nvidia_pickle import NvidiaNetwork, NvidiaPickleError, read_nvidia_pickle
from stylegan.presets import (
    PRESETS,
    Recipe,
    auto_recipe,
    build,
    build_from_config,
    preset_network,
    preset_recipe,
    preset_ref_gpus,
    resolve_config,
)
from stylegan.synthesis import SynthesisNetwork

__all__ = [
    "D_ARCHITECTURES",
    "G_ARCHITECTURES",
    "GROWTH_MODES",
    "NOISE_MODES",
    "PRESETS",
    "Recipe",
    "Discriminator",
    "Generator",
    "MappingNetwork",
    "NetworkConfig",
    "NetworkFileError",
    "NetworkInfo",
    "NvidiaNetwork",
    "NvidiaPickleError",
    "SynthesisNetwork",
    "build",
    "build_from_config",
    "load_network",
    "modulated_conv2d",
    "auto_recipe",
    "preset_network",
    "preset_recipe",
    "preset_ref_gpus",
    "read_network_info",
    "read_nvidia_pickle",
    "resolve_config",
    "save_network",
]
