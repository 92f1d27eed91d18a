"""Stand-ins for StyleGAN3 in the equivariance tests, and a tiny real StyleGAN3.

``FourierToy`` has the interface the equivariance metrics use (``G.mapping(z, c, truncation_psi=)``,
``G.synthesis(ws, noise_mode=)``, ``G.synthesis.input.transform``, ``z_dim``, ``c_dim``,
``img_resolution``, ``img_channels``) and renders a sum of waves whose frequencies (below
``fmax`` cycles per pixel, inside every rotated grid band) and phases come from ``w``, sampled at the
coordinates the input transform gives, as StyleGAN3 samples its Fourier features: pixel ``i``'s
centre at ``(i + 0.5) / size - 0.5`` image units, x right, y down, the features read at ``M p``. It is
equivariant by construction. With ``follow=False`` it ignores the transform (a network that is not
equivariant at all).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from stylegan.config import NetworkConfig
from stylegan.families import build_generator


class _Input(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("transform", torch.eye(3))


class _ToyMapping(nn.Module):
    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None, truncation_psi: float = 1.0) -> torch.Tensor:
        return z * truncation_psi


class _ToySynthesis(nn.Module):
    def __init__(self, resolution: int, channels: int, z_dim: int, waves: int, fmax: float, follow: bool) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(1234)
        self.resolution, self.fmax, self.follow = resolution, fmax, follow
        self.input = _Input()
        self.register_buffer("p_angle", torch.randn(z_dim, waves, generator=gen))
        self.register_buffer("p_radius", torch.randn(z_dim, waves, generator=gen) / math.sqrt(z_dim))
        self.register_buffer("p_phase", torch.randn(z_dim, waves, generator=gen))
        self.register_buffer("amplitude", torch.rand(channels, waves, generator=gen) * 0.6 / math.sqrt(waves))
        self.calls: list[dict] = []

    def forward(self, ws: torch.Tensor, noise_mode: str = "random", precision: str = "auto") -> torch.Tensor:
        self.calls.append({"n": ws.shape[0], "noise_mode": noise_mode, "precision": precision,
                           "transform": self.input.transform.clone()})
        n, size = ws.shape[0], self.resolution
        angle = ws @ self.p_angle  # [N, K]
        radius = self.fmax * size * torch.sigmoid(ws @ self.p_radius)  # cycles per image
        freqs = torch.stack([radius * angle.cos(), radius * angle.sin()], dim=-1)  # [N, K, 2]
        phase = ws @ self.p_phase
        centres = (torch.arange(size, dtype=torch.float32, device=ws.device) + 0.5) / size - 0.5
        py, px = torch.meshgrid(centres, centres, indexing="ij")
        p = torch.stack([px, py, torch.ones_like(px)], dim=-1)  # [H, W, 3]
        m = self.input.transform if self.follow else torch.eye(3, device=ws.device)
        q = p @ m[:2].t()  # [H, W, 2]: where the features are read
        waves = torch.sin(2 * math.pi * (torch.einsum("hwd,nkd->nkhw", q, freqs) + phase[..., None, None]))
        return torch.einsum("ck,nkhw->nchw", self.amplitude, waves)


class FourierToy(nn.Module):
    """A perfectly equivariant StyleGAN3 stand-in (see the module docstring)."""

    def __init__(self, resolution: int = 16, channels: int = 3, z_dim: int = 8, waves: int = 6, fmax: float = 0.3,
                 follow: bool = True, c_dim: int = 0) -> None:
        super().__init__()
        self.z_dim, self.c_dim, self.img_resolution, self.img_channels = z_dim, c_dim, resolution, channels
        self.mapping = _ToyMapping()
        self.synthesis = _ToySynthesis(resolution, channels, z_dim, waves, fmax, follow)
        self.anchor = nn.Parameter(torch.zeros(1), requires_grad=False)  # gives the module a device

    def forward(self, z, c=None, truncation_psi=1.0, noise_mode="const", **kwargs):
        return self.synthesis(self.mapping(z, c, truncation_psi), noise_mode=noise_mode)


def tiny_stylegan3(kind: str = "t", resolution: int = 16, img_channels: int = 3, seed: int = 0) -> nn.Module:
    """A small random StyleGAN3 generator (config-T: 3x3 convs; config-R: 1x1 convs, radial filters), eval mode."""
    cfg = NetworkConfig(family="stylegan3", preset="test", resolution=resolution, img_channels=img_channels, z_dim=16,
                        w_dim=16, mapping_layers=2, channel_base=1024, channel_max=32, sg3_layers=4,
                        conv_kernel=3 if kind == "t" else 1, use_radial_filters=kind == "r")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_generator(cfg).eval()
