"""Parameter counts equal the published StyleGAN2 networks exactly (counted on the meta device,
nothing is allocated)."""

from __future__ import annotations

import pytest
import torch

import stylegan


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize(
    "preset, resolution, g_total, mapping, synthesis, d_total",
    [
        ("paper256", 256, 24_767_458, 2_101_248, 22_666_210, 24_001_089),  # ADA paper256
        ("stylegan2", 1024, 30_370_060, 2_101_248, 28_268_812, 29_012_513),  # StyleGAN2 config-f
        ("paper1024", 1024, 30_370_060, 2_101_248, 28_268_812, 29_012_513),  # ADA paper1024 (fmaps 1) = config-f
    ],
)
def test_parameter_count_parity(
    preset: str, resolution: int, g_total: int, mapping: int, synthesis: int, d_total: int
) -> None:
    with torch.device("meta"):
        G, D = stylegan.build(preset, resolution)
    assert (G.z_dim, G.w_dim, G.config.channel_max, G.c_dim, G.img_channels) == (512, 512, 512, 0, 3)
    assert _count(G.mapping) == mapping
    assert _count(G.synthesis) == synthesis
    assert _count(G) == g_total
    assert _count(D) == d_total


def test_num_ws_of_config_f() -> None:
    with torch.device("meta"):
        G, _ = stylegan.build("stylegan2", 1024)
    assert G.num_ws == 18  # StyleGAN2 config-f at 1024x1024
