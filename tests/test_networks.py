"""Network contract for every preset (small resolutions) and for 1/3/4 image channels, conditional
and unconditional, every architecture and growth mode; plus presets, overrides and config files."""

from __future__ import annotations

import json

import pytest
import torch

import stylegan
from networks_contract import NetworkContract


# ----- the contract over configurations ------------------------------------------------------------


class TestTinyDemo(NetworkContract):
    """The demo: 32x32 grayscale digits, 10 classes."""

    build_args = dict(preset="tiny", img_channels=1, c_dim=10)


class TestTinyRGBUnconditional(NetworkContract):
    build_args = dict(preset="tiny", resolution=16, img_channels=3)


class TestTinyRGBAOrigSkip(NetworkContract):
    build_args = dict(preset="tiny", resolution=8, img_channels=4, g_architecture="orig", d_architecture="skip")


class TestTinyResnetOrigConditional(NetworkContract):
    build_args = dict(
        preset="tiny", resolution=16, c_dim=3, g_architecture="resnet", d_architecture="orig",
        conv_clamp=64.0, mbstd_num_channels=2, mbstd_group_size=2,
    )


class TestTinyProgressive(NetworkContract):
    build_args = dict(preset="tiny", resolution=16, img_channels=1, g_architecture="orig", growth="progressive")


class TestTinyNoNoise(NetworkContract):
    build_args = dict(preset="tiny", resolution=8, use_noise=False, mbstd_num_channels=0)


@pytest.mark.parametrize("preset", ["cifar", "paper256", "paper512", "paper1024", "stylegan2"])
def test_every_preset_at_small_resolution(preset: str) -> None:
    """Real channel widths, so only shapes, dtypes and finiteness (the contract runs on tiny ones)."""

    class Contract(NetworkContract):
        build_args = dict(preset=preset, resolution=8)
        heavy = False

    contract = Contract()
    nets = Contract.make_nets()
    contract.test_shapes_and_dtypes(nets)
    contract.test_seeded_determinism(nets)


# ----- presets and overrides -----------------------------------------------------------------------


def test_presets_listed() -> None:
    assert stylegan.PRESETS == ("tiny", "auto", "cifar", "paper256", "paper512", "paper1024", "stylegan2", "progan", "dcgan",
                                "stylegan3-t", "stylegan3-r", "stylegan3-tiny")
    for preset in stylegan.PRESETS:
        cfg = stylegan.resolve_config(preset)
        assert cfg.preset == preset
        assert stylegan.preset_recipe(preset, cfg.resolution).batch >= 1


# StyleGAN2-ADA train.py cfg_specs: (res, fmaps, map, mbstd) of the network for each configuration.
ADA_NETWORKS = {
    "stylegan2": (1024, 1, 8, 4),
    "paper256": (256, 0.5, 8, 8),
    "paper512": (512, 1, 8, 8),
    "paper1024": (1024, 1, 8, 4),
    "cifar": (32, 1, 2, 32),
}


@pytest.mark.parametrize("preset", sorted(ADA_NETWORKS))
def test_paper_preset_networks_are_adas(preset: str) -> None:
    res, fmaps, mapping, mbstd = ADA_NETWORKS[preset]
    cfg = stylegan.resolve_config(preset)
    assert (cfg.resolution, cfg.channel_base, cfg.channel_max) == (res, int(fmaps * 32768), 512)
    assert (cfg.mapping_layers, cfg.mbstd_group_size, cfg.z_dim, cfg.w_dim) == (mapping, mbstd, 512, 512)
    assert (cfg.num_fp16_res, cfg.conv_clamp) == (4, 256)  # ADA's mixed precision (its --fp32 turns it off)
    assert (cfg.g_architecture, cfg.d_architecture) == ("skip", "orig" if preset == "cifar" else "resnet")


def test_preset_values() -> None:
    cfg = stylegan.resolve_config("stylegan2", 128)
    assert (cfg.resolution, cfg.channel_base) == (128, 32768)
    tiny = stylegan.resolve_config("tiny")
    assert (tiny.resolution, tiny.z_dim, tiny.channel_base, tiny.channel_max, tiny.mapping_layers) == (32, 64, 1024, 64, 2)


def test_overrides_reach_every_knob() -> None:
    G, D = stylegan.build(
        "tiny", 16, img_channels=2, c_dim=4, channel_base=256, channel_max=32, mapping_layers=3, z_dim=8, w_dim=12,
        g_architecture="resnet", d_architecture="skip", mbstd_group_size=2, num_fp16_res=2, conv_clamp=8,
    )
    assert G.config is D.config or G.config == D.config
    assert len(G.mapping.layers) == 3 and G.z_dim == 8 and G.w_dim == 12
    assert G.synthesis.blocks["b16"].out_channels == 16 and G.synthesis.blocks["b4"].out_channels == 32
    assert hasattr(G.synthesis.blocks["b8"], "skip") and hasattr(D.blocks["b8"], "fromrgb")
    assert D.b4.mbstd.group_size == 2 and D.b4.conv.conv_clamp == 8
    assert [b.use_fp16 for b in G.synthesis.blocks.values()] == [False, True, True]
    assert G.synthesis.blocks["b16"].conv1.conv_clamp == 8


def test_channel_schedule_rule() -> None:
    cfg = stylegan.resolve_config("paper256")
    G, D = stylegan.build("tiny", 32, channel_base=256, channel_max=32)
    for res in (4, 8, 16, 32):
        expected = min(256 // res, 32)
        assert G.synthesis.blocks[f"b{res}"].out_channels == expected
        if res > 4:
            assert D.blocks[f"b{res}"].conv0.out_channels == expected
    assert [cfg.channels(r) for r in cfg.block_resolutions] == [512, 512, 512, 512, 256, 128, 64]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(preset="tiy"), "did you mean 'tiny'"),
        (dict(preset="tiny", resolution=48), "resolution=48: expected a power of two >= 4"),
        (dict(preset="tiny", resolution=2), "power of two"),
        (dict(preset="tiny", chanel_base=4), "did you mean 'channel_base'"),
        (dict(preset="tiny", g_architecture="skp"), "did you mean 'skip'"),
        (dict(preset="tiny", growth="progresive"), "did you mean 'progressive'"),
        (dict(preset="tiny", img_channels=0), "img_channels=0"),
        (dict(preset="tiny", conv_clamp=-1), "conv_clamp=-1"),
        (dict(preset="tiny", channel_base=16), "channel_base=16"),
        (dict(preset="tiny", mbstd_num_channels=3), "mbstd_num_channels=3"),
    ],
)
def test_bad_arguments_raise(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        stylegan.build(**kwargs)


def test_config_dict_round_trip() -> None:
    cfg = stylegan.resolve_config("cifar", 16, img_channels=4, c_dim=7, growth="progressive")
    data = json.loads(json.dumps(cfg.to_dict()))
    assert stylegan.NetworkConfig.from_dict(data) == cfg
    with pytest.raises(ValueError, match="did you mean 'channel_max'"):
        stylegan.NetworkConfig.from_dict({**data, "chanel_max": 3})
    with pytest.raises(dataclasses_frozen_error()):
        cfg.resolution = 8  # type: ignore[misc]
    G, D = stylegan.build_from_config(cfg)
    assert G.config == D.config == cfg


def dataclasses_frozen_error() -> type[Exception]:
    import dataclasses

    return dataclasses.FrozenInstanceError


def test_bad_inputs_raise() -> None:
    G, D = stylegan.build("tiny", 8, c_dim=2)
    z = torch.randn(2, G.z_dim)
    c = torch.eye(2)
    with pytest.raises(ValueError, match=r"z: expected shape \[N, 64\]"):
        G(torch.randn(2, 5), c)
    with pytest.raises(ValueError, match=r"c: expected shape \[2, 2\]"):
        G(z, torch.eye(3))
    with pytest.raises(ValueError, match="ws: expected shape"):
        G.synthesis(torch.randn(2, 3, G.w_dim))
    with pytest.raises(ValueError, match="noise_mode='rand'"):
        G(z, c, noise_mode="rand")
    with pytest.raises(ValueError, match=r"img: expected shape \[N, 3, 8, 8\]"):
        D(torch.randn(2, 3, 16, 16), c)
    with pytest.raises(ValueError, match="mbstd_group_size=4: the batch of 6"):
        D(torch.randn(6, 3, 8, 8), torch.eye(2)[torch.arange(6) % 2])


def test_unconditional_accepts_empty_labels() -> None:
    G, D = stylegan.build("tiny", 8)
    z = torch.randn(4, G.z_dim)
    with torch.no_grad():
        img = G(z, torch.zeros(4, 0), noise_mode="const")
        assert torch.equal(img, G(z, None, noise_mode="const"))
        assert torch.equal(D(img, torch.zeros(4, 0)), D(img, None))


def test_float64_follows_the_module() -> None:
    G, D = stylegan.build("tiny", 8)
    G.double(), D.double()
    z = torch.randn(2, G.z_dim, dtype=torch.float64)
    img = G(z)
    assert img.dtype == torch.float64
    assert D(img).dtype == torch.float64


def test_per_sample_noise_generators_match_one_by_one() -> None:
    """A batch with one noise generator per sample renders what each sample renders alone."""
    G, _ = stylegan.build("tiny", resolution=16, img_channels=1)
    with torch.no_grad():  # noise strengths start at 0; make the noise reach the image
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.1)
    ws = G.mapping(torch.randn(3, G.z_dim, generator=torch.Generator().manual_seed(0)), None)
    gens = lambda: [torch.Generator().manual_seed(s) for s in (5, 6, 7)]  # noqa: E731
    batched = G.synthesis(ws, noise_mode="random", generator=gens())
    alone = torch.cat([G.synthesis(ws[i : i + 1], noise_mode="random", generator=g) for i, g in enumerate(gens())])
    torch.testing.assert_close(batched, alone, rtol=1e-5, atol=1e-5)
    other = G.synthesis(ws, noise_mode="random", generator=[torch.Generator().manual_seed(s) for s in (5, 6, 8)])
    torch.testing.assert_close(other[:2], batched[:2])  # a sample's noise is its own generator's
    assert not torch.allclose(other[2], batched[2])
    with pytest.raises(ValueError, match="one generator per sample"):
        G.synthesis(ws, noise_mode="random", generator=gens()[:2])


def test_w_avg_update_under_autocast_stays_float32() -> None:
    """Mixed-precision training updates w_avg from half-precision ws without a dtype error."""
    G, _ = stylegan.build("tiny", resolution=16, img_channels=1)
    z = torch.randn(4, G.z_dim, generator=torch.Generator().manual_seed(0))
    before = G.mapping.w_avg.clone()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        G.mapping(z, None, update_emas=True)
    assert G.mapping.w_avg.dtype == torch.float32 and not torch.equal(G.mapping.w_avg, before)
