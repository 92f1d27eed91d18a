"""The generator: mapping network + synthesis network (StyleGAN fig. 1b, StyleGAN2 fig. 2d).

``G(z, c)`` maps the latent (and label) to ``ws`` with :class:`MappingNetwork`, optionally truncates
them towards ``w_avg``, and renders them with :class:`SynthesisNetwork`. The progressive-growing
stage lives in the synthesis network; ``G.set_growth`` / ``G.growth_resolution`` /
``G.growth_alpha`` forward to it.
"""

from __future__ import annotations

import torch
from torch import nn

from stylegan.config import NetworkConfig
from stylegan.mapping import MappingNetwork
from stylegan.modconv import NoiseGenerator
from stylegan.synthesis import SynthesisNetwork


class Generator(nn.Module):
    """``G(z [N, z_dim], c [N, c_dim]) -> img [N, img_channels, r, r]`` in [-1, 1] (unclamped)."""

    network_kind = "generator"  # for network files (stylegan/families.py)

    def __init__(self, config: NetworkConfig) -> None:
        super().__init__()
        if not isinstance(config, NetworkConfig):
            raise ValueError(f"config: expected a NetworkConfig, got {type(config).__name__}")
        self.config = config
        self.z_dim, self.c_dim, self.w_dim = config.z_dim, config.c_dim, config.w_dim
        self.img_resolution, self.img_channels = config.resolution, config.img_channels
        self.synthesis = SynthesisNetwork(config)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(
            z_dim=config.z_dim, c_dim=config.c_dim, w_dim=config.w_dim, num_ws=self.num_ws,
            num_layers=config.mapping_layers, lr_multiplier=config.mapping_lr_multiplier,
            w_avg_beta=config.w_avg_beta,
        )

    def forward(
        self,
        z: torch.Tensor,
        c: torch.Tensor | None = None,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        noise_mode: str = "random",
        update_emas: bool = False,
        fused_modconv: bool | None = None,
        precision: str = "auto",
        generator: NoiseGenerator = None,
    ) -> torch.Tensor:
        """Generate images. ``generator`` seeds the random noise inputs (``noise_mode='random'``):
        one ``torch.Generator`` for the batch, or a sequence of them, one per sample (a batch then
        renders exactly what its samples render one by one); without it they come from torch's
        global RNG. ``precision``: the dtype of the ``num_fp16_res`` top synthesis
        blocks (:mod:`stylegan.precision`): ``'auto'`` (float16 on CUDA, else float32), ``'fp32'``,
        ``'fp16'`` or ``'bf16'`` (on any device). The mapping network always runs in the
        parameters' dtype (float32)."""
        ws = self.mapping(
            z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff, update_emas=update_emas
        )
        return self.synthesis(
            ws, noise_mode=noise_mode, fused_modconv=fused_modconv, precision=precision, generator=generator
        )

    # Progressive growing: the stage is the synthesis network's.
    def set_growth(self, resolution: int, alpha: float) -> None:
        self.synthesis.set_growth(resolution, alpha)

    @property
    def growth_resolution(self) -> int:
        return self.synthesis.growth_resolution

    @property
    def growth_alpha(self) -> float:
        return self.synthesis.growth_alpha
