"""The stylegan3 family (stylegan/stylegan3.py with StyleGAN2's D) under the shared network contract,
the presets' networks (NVIDIA's parameter counts at 1024x1024, built on the meta device) and their
recipes (NVIDIA's stylegan3 train.py values, the gamma table, the batch rules)."""

from __future__ import annotations

from typing import Any

import pytest
import torch

import stylegan
from networks_contract import BATCH, NetworkContract, weight_leaf
from stylegan.presets import stylegan3_gamma, stylegan3_magnitude_beta
from training.config import TrainConfig
from training.resolve import DataShape, resolve_run

# Small widths for the contract; use_noise=False says what is true of StyleGAN3 (no noise inputs), so
# the contract's determinism test does not expect two noise seeds to give two images.
SMALL = dict(z_dim=16, w_dim=16, channel_base=256, channel_max=16, use_noise=False)


class StyleGAN3Contract(NetworkContract):
    """The contract, with its one StyleGAN2-only test replaced: the double-backward test names
    StyleGAN2's synthesis blocks."""

    def test_double_backward_for_regularizers(self, nets: Any) -> None:
        G, D = nets
        z, c = self.inputs(G)
        real = torch.randn(BATCH, G.img_channels, G.img_resolution, G.img_resolution, requires_grad=True)
        (grad,) = torch.autograd.grad(D(real, c).sum(), real, create_graph=True)
        D.zero_grad(set_to_none=True)
        grad.square().sum().backward()
        assert weight_leaf(D.b4.conv).grad is not None and weight_leaf(D.b4.conv).grad.abs().sum() > 0
        ws = G.mapping(z, c).detach().requires_grad_(True)
        img = G.synthesis(ws)
        (pl_grad,) = torch.autograd.grad((img * torch.randn_like(img)).sum(), ws, create_graph=True)
        G.zero_grad(set_to_none=True)
        pl_grad.square().sum().backward()
        for layer in (G.synthesis.layers[0], G.synthesis.layers[-2]):
            assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0
        assert G.synthesis.input.affine.weight.grad.abs().sum() > 0
        G.zero_grad(set_to_none=True), D.zero_grad(set_to_none=True)

    def test_magnitude_emas_move_only_when_asked(self, nets: Any) -> None:
        G, _ = nets
        z, c = self.inputs(G)
        before = [layer.magnitude_ema.clone() for layer in G.synthesis.layers]
        w_avg = G.mapping.w_avg.clone()
        with torch.no_grad():
            G(z, c)
            assert all(torch.equal(a, l.magnitude_ema) for a, l in zip(before, G.synthesis.layers))
            G(z, c, update_emas=True)
        assert all(not torch.equal(a, l.magnitude_ema) for a, l in zip(before, G.synthesis.layers))
        assert not torch.equal(w_avg, G.mapping.w_avg)
        with torch.no_grad():  # restore, so the class's other tests see the networks as built
            for a, layer in zip(before, G.synthesis.layers):
                layer.magnitude_ema.copy_(a)
            G.mapping.w_avg.copy_(w_avg)


class TestStyleGAN3TinyDemo(StyleGAN3Contract):
    """The demo preset as it trains: 32x32 grayscale digits, 10 classes, 8 layers."""

    build_args = dict(preset="stylegan3-tiny", img_channels=1, c_dim=10, use_noise=False)


class TestStyleGAN3TFourteenLayers(StyleGAN3Contract):
    """Config-T at the presets' real layer count (14, 2 critically sampled), unconditional RGB, 16x16."""

    build_args = dict(SMALL, preset="stylegan3-t", resolution=16)


class TestStyleGAN3RConditional(StyleGAN3Contract):
    """Config-R (1x1 convs, radial filters, G twice D's width), conditional RGBA, fewer layers."""

    build_args = dict(SMALL, preset="stylegan3-r", resolution=16, img_channels=4, c_dim=3, sg3_layers=6,
                      mbstd_group_size=2)


def test_config_r_small_is_twice_ds_width():
    G, D = stylegan.build(**TestStyleGAN3RConditional.build_args)
    assert G.config.g_channels == (512, 32) and (G.config.channel_base, G.config.channel_max) == (256, 16)
    assert G.config.conv_kernel == 1 and G.config.use_radial_filters
    assert all(layer.conv_kernel == 1 for layer in G.synthesis.layers)


# ----- the presets' networks at 1024x1024 (Karras et al. 2021, table 1 / NVIDIA's train.py) ------------

@pytest.mark.parametrize("preset, params_G", [("stylegan3-t", 22_313_167), ("stylegan3-r", 15_093_151)])
def test_parameter_counts_at_1024_are_nvidias(preset, params_G):
    """The paper's 22.3M (T) and 15.1M (R) generator parameters with NVIDIA's train.py settings
    (mapping 2, --cbase 32768 --cmax 512, R: 1x1 convs and G's width doubled); D 29.0M either way."""
    config = stylegan.resolve_config(preset)
    assert (config.resolution, config.img_channels, config.c_dim) == (1024, 3, 0)
    with torch.device("meta"):
        G, D = stylegan.build_from_config(config)
    assert sum(p.numel() for p in G.parameters()) == params_G
    assert sum(p.numel() for p in D.parameters()) == 29_012_513
    assert len(G.synthesis.layers) == 15 and G.num_ws == 16  # 14 layers + ToRGB; input + 15 ws


def test_preset_networks_are_nvidias():
    t, r = stylegan.resolve_config("stylegan3-t"), stylegan.resolve_config("stylegan3-r")
    for cfg in (t, r):
        assert cfg.family == "stylegan3" and (cfg.z_dim, cfg.w_dim, cfg.mapping_layers, cfg.w_avg_beta) == (512, 512, 2, 0.998)
        assert (cfg.channel_base, cfg.channel_max, cfg.mbstd_group_size, cfg.d_architecture) == (32768, 512, 4, "resnet")
        assert (cfg.num_fp16_res, cfg.conv_clamp, cfg.sg3_layers, cfg.margin_size) == (4, 256, 14, 10)
        assert cfg.magnitude_ema_beta == pytest.approx(0.5 ** (32 / 20000))
    assert (t.conv_kernel, t.use_radial_filters, t.g_channels) == (3, False, (32768, 512))
    assert (r.conv_kernel, r.use_radial_filters, r.g_channels) == (1, True, (65536, 1024))
    # --cbase / --cmax change D's width; config-R's G stays twice as wide.
    assert stylegan.resolve_config("stylegan3-r", 256, channel_base=16384, channel_max=256).g_channels == (32768, 512)


# ----- the recipes ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("preset", ["stylegan3-t", "stylegan3-r"])
@pytest.mark.parametrize("res, gamma", [(128, 0.5), (256, 2.0), (512, 8.0), (1024, 32.0)])
def test_recipe_is_nvidias_train_py(preset, res, gamma):
    run = resolve_run(TrainConfig(preset=preset), DataShape(res, 3), world_size=8, device_type="cuda")
    cfg, net = run.train, run.network
    assert (cfg.batch, cfg.batch_gpu, cfg.glr, cfg.dlr, cfg.beta1, cfg.beta2) == (32, 4, 0.0025, 0.002, 0.0, 0.99)
    assert cfg.gamma == gamma and run.sources["gamma"] == "preset"  # NVIDIA's configs.md table
    assert "docs/configs.md" in run.notes["gamma"]
    assert (cfg.pl_weight, cfg.pl_interval, cfg.mixing, cfg.r1_interval) == (0, 0, 0, 16)
    assert (cfg.ema_kimg, cfg.ema_rampup, cfg.kimg, cfg.aug, cfg.augpipe, cfg.target) == (10, 0.05, 25000, "ada", "bgc", 0.6)
    assert (cfg.precision, net.num_fp16_res, net.conv_clamp, cfg.loss, cfg.optimizer) == ("fp16", 4, 256, "ns", "adam")
    assert cfg.blur_sigma == (10 if preset == "stylegan3-r" else 0)
    assert cfg.blur_fade_kimg == (200 if preset == "stylegan3-r" else 0)
    assert net.resolution == res and net.magnitude_ema_beta == pytest.approx(0.5 ** (32 / 20000))
    assert stylegan3_gamma(res) == gamma


def test_batch_rules_follow_the_runs_batch():
    """NVIDIA's train.py derives the G_ema half-life, the blur's fade and the magnitude EMAs' decay from
    --batch; a user's gamma and blur win, and the dry run says where each came from."""
    run = resolve_run(TrainConfig(preset="stylegan3-r", batch=64), DataShape(256, 3), world_size=1, device_type="cuda")
    assert (run.train.ema_kimg, run.train.blur_fade_kimg) == (20, 400)
    assert run.network.magnitude_ema_beta == pytest.approx(stylegan3_magnitude_beta(64))
    assert run.sources["ema_kimg"] == run.sources["blur_fade_kimg"] == "derived"
    assert "batch x 10 / 32" in run.notes["ema_kimg"] and "batch x 200 / 32" in run.notes["blur_fade_kimg"]
    given = resolve_run(TrainConfig(preset="stylegan3-r", gamma=6.6, blur_sigma=0.0), DataShape(1024, 3), device_type="cuda")
    assert (given.train.gamma, given.train.blur_sigma, given.sources["gamma"]) == (6.6, 0.0, "given")
    lines = "\n".join(given.describe())
    assert "magnitude EMAs: decay 0.998892" in lines


def test_path_length_needs_an_interval_with_the_stylegan3_presets():
    from training.config import ConfigError

    with pytest.raises(ConfigError, match="--pl-interval 0"):
        resolve_run(TrainConfig(preset="stylegan3-t", pl_weight=2.0), DataShape(256, 3))
    run = resolve_run(TrainConfig(preset="stylegan3-t", pl_weight=2.0, pl_interval=4), DataShape(256, 3))
    assert (run.train.pl_weight, run.train.pl_interval) == (2.0, 4)


def test_demo_preset_recipe():
    run = resolve_run(TrainConfig(preset="stylegan3-tiny"), DataShape(32, 1, 10))
    cfg, net = run.train, run.network
    assert net.family == "stylegan3" and (net.resolution, net.sg3_layers, net.margin_size) == (32, 8, 4)
    assert (net.channel_base, net.channel_max, net.g_channels) == (1024, 64, (1024, 32))
    assert (cfg.batch, cfg.glr, cfg.dlr, cfg.gamma, cfg.pl_weight, cfg.pl_interval, cfg.mixing) == (
        32, 0.0025, 0.002, stylegan3_gamma(32), 0, 0, 0)
    assert (cfg.precision, cfg.aug, cfg.ema_kimg, cfg.ema_rampup, cfg.blur_sigma, cfg.kimg) == ("fp32", "none", 10, 0.05, 0, 32)
