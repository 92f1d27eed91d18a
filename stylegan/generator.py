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
from stylegan.mapping import MappingNetwork, check_labels
from stylegan.modconv import NoiseGenerator, check_noise_mode
from stylegan.precision import check_precision
from stylegan.synthesis import SynthesisNetwork


class MappedGenerator(nn.Module):
    """``G(z, c) = G.synthesis(G.mapping(z, c))``: the call every family's generator offers
    (stylegan/families.py); subclasses build ``mapping`` and ``synthesis``."""

    mapping: nn.Module
    synthesis: nn.Module

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


class GrowthOfSynthesis:
    """Progressive growing of a generator whose stage is its synthesis network's."""

    synthesis: nn.Module

    def set_growth(self, resolution: int, alpha: float) -> None:
        self.synthesis.set_growth(resolution, alpha)

    @property
    def growth_resolution(self) -> int:
        return self.synthesis.growth_resolution

    @property
    def growth_alpha(self) -> float:
        return self.synthesis.growth_alpha


def check_single_w_synthesis_args(
    ws: torch.Tensor, w_dim: int, noise_mode: str, fused_modconv: bool | None, precision: str, generator: NoiseGenerator
) -> None:
    """Check the arguments of StyleGAN2's ``G.synthesis`` for a family that renders one ``w`` and
    draws no noise (ProGAN, DCGAN): they are accepted as StyleGAN2 accepts them, then unused."""
    check_noise_mode(noise_mode)
    check_precision(precision)
    if fused_modconv is not None and not isinstance(fused_modconv, bool):
        raise ValueError(f"fused_modconv={fused_modconv!r}: expected None, True or False")
    if not isinstance(ws, torch.Tensor) or ws.ndim != 3 or ws.shape[1:] != (1, w_dim):
        shape = tuple(ws.shape) if isinstance(ws, torch.Tensor) else None
        raise ValueError(f"ws: expected shape [N, 1, {w_dim}], got {shape}")
    if generator is None or isinstance(generator, torch.Generator):
        return
    if not isinstance(generator, (list, tuple)) or not all(isinstance(g, torch.Generator) for g in generator):
        raise ValueError(
            f"generator: expected None, a torch.Generator or one per sample, got {type(generator).__name__}"
        )
    if len(generator) != ws.shape[0]:
        raise ValueError(f"generator: expected one generator per sample ({ws.shape[0]}), got {len(generator)}")


class SingleWMapping(nn.Module):
    """``G.mapping`` of a family without a mapping network (ProGAN, DCGAN): ``z [N, z_dim], c [N,
    c_dim] -> ws [N, 1, w_dim]``, the latent prepared by :meth:`prepare` (the family's own), with
    ``w_avg`` tracking its mean (``w_avg_beta``, as StyleGAN's) and truncation ``w_avg + psi (w -
    w_avg)``. Subclasses set ``z_dim``, ``c_dim``, ``w_dim``, ``w_avg_beta`` and register ``w_avg``."""

    z_dim: int
    c_dim: int
    w_avg_beta: float
    w_avg: torch.Tensor

    def prepare(self, z: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def forward(
        self,
        z: torch.Tensor,
        c: torch.Tensor | None = None,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        update_emas: bool = False,
    ) -> torch.Tensor:
        if not isinstance(z, torch.Tensor) or z.ndim != 2 or z.shape[1] != self.z_dim:
            shape = tuple(z.shape) if isinstance(z, torch.Tensor) else None
            raise ValueError(f"z: expected shape [N, {self.z_dim}], got {shape}")
        c = check_labels(c, self.c_dim, z.shape[0])
        cutoff = truncation_cutoff
        if cutoff is not None and (not isinstance(cutoff, int) or isinstance(cutoff, bool) or not 0 <= cutoff <= 1):
            raise ValueError(f"truncation_cutoff={cutoff!r}: expected None or an int in [0, 1] (num_ws is 1)")
        w = self.prepare(z.to(self.w_avg.dtype), None if c is None else c.to(self.w_avg.dtype))
        if update_emas:
            # As StyleGAN's w_avg: lerp(a, b, beta) = a + beta * (b - a) keeps beta of the old average.
            with torch.no_grad():
                self.w_avg.copy_(w.detach().to(self.w_avg.dtype).mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        ws = w.unsqueeze(1)  # [N, 1, w_dim]
        if truncation_psi != 1 and cutoff != 0:  # cutoff 1 (or None): the one w
            ws = self.w_avg.to(ws.dtype).lerp(ws, truncation_psi)
        return ws


class Generator(GrowthOfSynthesis, MappedGenerator):
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
