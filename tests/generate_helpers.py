"""Tiny network files for the generation tests (16x16, the 'tiny' preset).

A freshly built generator has zero noise strengths and a zero ``w_avg``, which would make the
noise and truncation tests pass vacuously; :func:`make_network_file` gives both non-trivial values.
"""

from __future__ import annotations

from pathlib import Path

import torch

import stylegan

RESOLUTION = 16


def make_generator(c_dim: int = 0, img_channels: int = 3, seed: int = 0):
    """A tiny (G, D) with non-zero noise strengths and a random w_avg, built reproducibly."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        G, D = stylegan.build("tiny", resolution=RESOLUTION, img_channels=img_channels, c_dim=c_dim)
        gen = torch.Generator().manual_seed(seed + 1)
        with torch.no_grad():
            for name, p in G.named_parameters():
                if name.endswith("noise_strength"):
                    p.fill_(0.5)
            G.mapping.w_avg.copy_(torch.randn(G.w_dim, generator=gen))
    return G.eval(), D.eval()


def make_network_file(path: Path, c_dim: int = 0, img_channels: int = 3, seed: int = 0, with_ema: bool = True) -> Path:
    G, D = make_generator(c_dim, img_channels, seed)
    modules = {"G": G, "D": D}
    if with_ema:
        G_ema, _ = make_generator(c_dim, img_channels, seed + 100)  # different weights than G
        modules["G_ema"] = G_ema
    stylegan.save_network(path, modules, G.config, metadata={"kimg": 0})
    return path
