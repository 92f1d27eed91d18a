"""ProGAN family (stylegan/progan.py): the shared network contract, Table 2's parameter counts,
fig. 2's fade-in, pixelwise normalisation, the latent preparation (w_avg, truncation), precision and
network files."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
import torch.nn.functional as F

import stylegan
from networks_contract import BATCH, NetworkContract
from stylegan.config import NetworkConfig
from stylegan.families import build_discriminator, build_generator
from stylegan.progan import (
    LatentTo4x4,
    PixelNormConv,
    ProGANDiscriminator,
    ProGANGenerator,
    pixel_norm,
)

TINY = dict(preset="tiny", family="progan", channel_base=256, channel_max=32, z_dim=16)


# ----- the shared contract -------------------------------------------------------------------------


class ProGANContract(NetworkContract):
    def test_seeded_determinism(self, nets: Any) -> None:
        """Overrides the contract's version, which expects the noise generator to change the image
        whenever ``use_noise`` is set: ProGAN has no noise, so the image must not depend on it."""
        G, _ = nets
        z, c = self.inputs(G)
        with torch.no_grad():
            a = G(z, c, generator=torch.Generator().manual_seed(5))
            b = G(z, c, generator=torch.Generator().manual_seed(6))
            for mode in ("random", "const", "none"):
                assert torch.equal(G(z, c, noise_mode=mode), a)
        assert torch.equal(a, b)


class TestProGANUnconditional(ProGANContract):
    build_args = dict(TINY, resolution=16)


class TestProGANConditional(ProGANContract):
    build_args = dict(TINY, resolution=16, img_channels=1, c_dim=3, mbstd_group_size=2)


class TestProGANProgressive(ProGANContract):
    build_args = dict(TINY, resolution=16, growth="progressive")


class TestProGANProgressiveConditional(ProGANContract):
    build_args = dict(TINY, resolution=8, img_channels=4, c_dim=5, growth="progressive", mbstd_num_channels=2)


def test_family_builds_progan_classes() -> None:
    G, D = stylegan.build(**TINY, resolution=8)
    assert type(G) is ProGANGenerator and type(D) is ProGANDiscriminator
    assert (G.network_kind, D.network_kind) == ("generator", "discriminator")
    assert (G.num_ws, G.w_dim, G.mapping.num_ws) == (1, 16, 1)
    G, _ = stylegan.build(**TINY, resolution=8, c_dim=3)
    assert G.w_dim == 32  # z and the label embedding, each z_dim wide
    with pytest.raises(ValueError, match="family='progan'"):
        ProGANGenerator(stylegan.resolve_config("tiny", 8))
    with pytest.raises(ValueError, match="expected a NetworkConfig"):
        ProGANDiscriminator({"family": "progan"})  # type: ignore[arg-type]


# ----- Table 2's parameter counts ------------------------------------------------------------------

PAPER_1024 = NetworkConfig(family="progan", resolution=1024, channel_base=16384, channel_max=512, z_dim=512)


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _conv(cin: int, cout: int, k: int) -> int:
    return k * k * cin * cout + cout


def _table2() -> tuple[int, int]:
    """G and D of Table 2 summed row by row, without the modules: (k, in, out) per conv."""
    ch = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64, 512: 32, 1024: 16}
    g = _conv(512, 512, 4)  # "Conv 4x4" on the 1x1 latent: 4.2M
    g += _conv(512, 512, 3)  # the 4x4 block's "Conv 3x3": 2.4M
    for r in ch:
        if r > 4:
            g += _conv(ch[r // 2], ch[r], 3) + _conv(ch[r], ch[r], 3)
    g += _conv(16, 3, 1)  # ToRGB at 1024: 51
    d = _conv(3, 16, 1)  # FromRGB: 64
    for r in ch:
        if r > 4:
            d += _conv(ch[r], ch[r], 3) + _conv(ch[r], ch[r // 2], 3)
    d += _conv(513, 512, 3)  # after minibatch stddev: 513 maps
    d += _conv(512, 512, 4)  # "Conv 4x4" to 512 x 1 x 1
    d += _conv(512, 1, 1)  # fully connected: 513
    return g, d


def test_parameter_counts_match_table_2() -> None:
    assert [PAPER_1024.channels(r) for r in PAPER_1024.block_resolutions] == [512] * 4 + [256, 128, 64, 32, 16]
    with torch.device("meta"):  # nothing allocated
        G, D = build_generator(PAPER_1024), build_discriminator(PAPER_1024)
    assert (_count(G), _count(D)) == (23_071_507, 23_077_137)
    assert (_count(G), _count(D)) == _table2()
    assert round(_count(G) / 1e6, 1) == round(_count(D) / 1e6, 1) == 23.1  # Table 2: 23.1M each
    assert _count(G.mapping) == 0  # no mapping network
    blocks = G.synthesis.blocks
    assert _count(blocks["b4"].conv0) == 4_194_816 and _count(blocks["b4"].conv1) == 2_359_808
    assert _count(blocks["b1024"].torgb) == 51 and _count(D.blocks["b1024"].fromrgb) == 64
    assert (_count(D.b4.conv), _count(D.b4.fc), _count(D.b4.out)) == (2_364_416, 4_194_816, 513)


def test_progressive_adds_only_rgb_layers_at_1024() -> None:
    with torch.device("meta"):
        G, D = build_generator(PAPER_1024.replace(growth="progressive")), build_discriminator(
            PAPER_1024.replace(growth="progressive")
        )
    # ToRGB at 4..512 (4 x 1539 + 771 + 387 + 195 + 99), FromRGB at 512..4 (128 + ... + 4 x 2048).
    assert (_count(G), _count(D)) == (23_071_507 + 7_608, 23_077_137 + 10_112)


# ----- fade-in (fig. 2) ----------------------------------------------------------------------------

RES = 16


@pytest.fixture(scope="module")
def grown() -> tuple[ProGANGenerator, ProGANDiscriminator]:
    torch.manual_seed(0)
    G, D = stylegan.build(**TINY, resolution=RES, c_dim=2, growth="progressive")
    with torch.no_grad():  # non-zero biases, as after training, so nothing is trivially zero
        for p in [*G.parameters(), *D.parameters()]:
            if p.ndim == 1:
                p.normal_(0, 0.1)
    return G.eval(), D.eval()


def _zc(G: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(4, G.z_dim, generator=torch.Generator().manual_seed(3)), torch.eye(2)[[0, 1, 0, 1]]


def _at(net: torch.nn.Module, res: int, alpha: float, *args: Any) -> torch.Tensor:
    net.set_growth(res, alpha)
    try:
        with torch.no_grad():
            return net(*args)
    finally:
        net.set_growth(RES, 1.0)


@pytest.mark.parametrize("res", [8, 16])
def test_alpha_zero_is_the_stage_below(grown: tuple, res: int) -> None:
    G, D = grown
    z, c = _zc(G)
    low = _at(G, res // 2, 1.0, z, c)
    up = F.interpolate(low, scale_factor=2, mode="nearest")
    torch.testing.assert_close(_at(G, res, 0.0, z, c), up, rtol=0, atol=1e-6)
    img = torch.randn(4, 3, res, res, generator=torch.Generator().manual_seed(res))
    pooled = _at(D, res // 2, 1.0, F.avg_pool2d(img, 2), c)
    torch.testing.assert_close(_at(D, res, 0.0, img, c), pooled, rtol=0, atol=1e-6)


@pytest.mark.parametrize("res", [8, 16])
def test_alpha_blends_linearly_and_one_uses_only_the_new_block(grown: tuple, res: int) -> None:
    G, D = grown
    z, c = _zc(G)
    img = torch.randn(4, 3, res, res, generator=torch.Generator().manual_seed(res))
    g0, g1, d0, d1 = _at(G, res, 0.0, z, c), _at(G, res, 1.0, z, c), _at(D, res, 0.0, img, c), _at(D, res, 1.0, img, c)
    assert not torch.allclose(g0, g1) and not torch.allclose(d0, d1)
    torch.testing.assert_close(_at(G, res, 0.25, z, c), g0.lerp(g1, 0.25), rtol=1e-5, atol=1e-6)
    # At alpha 1 the old path is out: changing the stage below's ToRGB / FromRGB changes nothing.
    old_rgb = G.synthesis.blocks[f"b{res // 2}"].torgb
    old_from = (D.blocks[f"b{res // 2}"] if res // 2 > 4 else D.b4).fromrgb
    saved = [old_rgb.weight.clone(), old_from.weight.clone()]
    try:
        with torch.no_grad():
            old_rgb.weight.mul_(3.0), old_from.weight.mul_(3.0)
        assert torch.equal(_at(G, res, 1.0, z, c), g1) and torch.equal(_at(D, res, 1.0, img, c), d1)
        assert not torch.allclose(_at(G, res, 0.5, z, c), g0.lerp(g1, 0.5))  # while fading it is used
    finally:
        with torch.no_grad():
            old_rgb.weight.copy_(saved[0]), old_from.weight.copy_(saved[1])


def test_top_stage_equals_the_fixed_network(grown: tuple) -> None:
    Gp, Dp = grown
    Gf, Df = stylegan.build(**TINY, resolution=RES, c_dim=2)  # growth='none'
    for fixed, prog in ((Gf, Gp), (Df, Dp)):
        result = fixed.load_state_dict(prog.state_dict(), strict=False)
        assert not result.missing_keys and all("torgb" in k or "fromrgb" in k for k in result.unexpected_keys)
    z, c = _zc(Gp)
    with torch.no_grad():
        img = Gp(z, c)
        assert torch.equal(Gf.eval()(z, c), img) and torch.equal(Df.eval()(img, c), Dp(img, c))
    for net in (Gf, Df):
        with pytest.raises(ValueError, match="growth='none'"):
            net.set_growth(8, 1.0)


def test_stage_shapes_and_image_validation(grown: tuple) -> None:
    G, D = grown
    z, c = _zc(G)
    for res in (4, 8):
        assert _at(G, res, 0.5, z, c).shape == (4, 3, res, res)
        assert _at(D, res, 0.5, torch.zeros(4, 3, res, res), c).shape == (4, 1)
    with pytest.raises(ValueError, match=r"img: expected shape \[N, 3, 16, 16\] at growth resolution 16"):
        D(torch.zeros(4, 3, 8, 8), c)


# ----- pixelwise normalisation (sec. 4.2) ----------------------------------------------------------


def test_pixel_norm_gives_unit_second_moment_per_pixel() -> None:
    x = torch.randn(3, 7, 5, 6, generator=torch.Generator().manual_seed(0)) * 1e3 + 50
    y = pixel_norm(x)
    torch.testing.assert_close(y.square().mean(dim=1), torch.ones(3, 5, 6))
    torch.testing.assert_close(y, x / x.square().mean(dim=1, keepdim=True).sqrt())  # a per-pixel scale
    half = pixel_norm((x * 0.1).half())  # squares far beyond float16's range
    assert half.dtype == torch.float16 and torch.isfinite(half).all()
    torch.testing.assert_close(half.float().square().mean(dim=1), torch.ones(3, 5, 6), rtol=0, atol=5e-3)


@pytest.mark.parametrize("c_dim", [0, 3])
def test_every_g_conv_and_the_latent_are_pixel_normalised(c_dim: int) -> None:
    G, _ = stylegan.build(**TINY, resolution=16, c_dim=c_dim)
    outputs = []
    hooks = [
        m.register_forward_hook(lambda m, i, o: outputs.append(o))
        for m in G.modules()
        if isinstance(m, (PixelNormConv, LatentTo4x4))
    ]
    z = torch.randn(4, G.z_dim, generator=torch.Generator().manual_seed(0)) * 5
    c = torch.eye(3)[[0, 1, 2, 0]] if c_dim else None
    with torch.no_grad():
        ws = G.mapping(z, c)
        G.synthesis(ws)
    for h in hooks:
        h.remove()
    assert len(outputs) == 2 * len(G.synthesis.blocks)  # two convs per block, each normalised
    for x in outputs:
        torch.testing.assert_close(x.square().mean(dim=1), torch.ones(4, *x.shape[2:]))
    for part in ws[:, 0].split(G.z_dim, dim=1):  # z, and the label embedding on its own
        torch.testing.assert_close(part.square().mean(dim=1), torch.ones(4))


# ----- the latent: w_avg and truncation ------------------------------------------------------------


def test_w_avg_tracks_the_latent_and_truncation_lerps_to_it() -> None:
    G, _ = stylegan.build(**TINY, resolution=8, c_dim=2)
    z, c = torch.randn(6, G.z_dim, generator=torch.Generator().manual_seed(0)), torch.eye(2)[[0, 1] * 3]
    assert torch.equal(G.mapping.w_avg, torch.zeros(G.w_dim))
    ws = G.mapping(z, c, update_emas=True)
    beta = G.config.w_avg_beta
    torch.testing.assert_close(G.mapping.w_avg, (1 - beta) * ws[:, 0].mean(dim=0))
    avg = G.mapping.w_avg.clone()
    torch.testing.assert_close(G.mapping(z, c, truncation_psi=0.0), avg.expand(6, 1, G.w_dim))
    torch.testing.assert_close(G.mapping(z, c, truncation_psi=0.7), avg.lerp(ws, 0.7))
    torch.testing.assert_close(G.mapping(z, c, truncation_psi=0.7, truncation_cutoff=1), avg.lerp(ws, 0.7))
    assert torch.equal(G.mapping(z, c, truncation_psi=0.7, truncation_cutoff=0), ws)
    assert torch.equal(G.mapping.w_avg, avg)  # only update_emas moves it
    with pytest.raises(ValueError, match=r"truncation_cutoff=2: expected None or an int in \[0, 1\]"):
        G.mapping(z, c, truncation_psi=0.7, truncation_cutoff=2)


def test_bad_inputs_raise() -> None:
    G, D = stylegan.build(**TINY, resolution=8, c_dim=2)
    z, c = torch.randn(2, G.z_dim), torch.eye(2)
    ws = G.mapping(z, c)
    with pytest.raises(ValueError, match=r"z: expected shape \[N, 16\]"):
        G(torch.randn(2, 5), c)
    with pytest.raises(ValueError, match=r"c: expected shape \[2, 2\]"):
        G(z, torch.eye(3))
    with pytest.raises(ValueError, match=r"ws: expected shape \[N, 1, 32\]"):
        G.synthesis(ws.repeat(1, 2, 1))
    with pytest.raises(ValueError, match="noise_mode='rand'"):
        G.synthesis(ws, noise_mode="rand")
    with pytest.raises(ValueError, match="precision='fp64'"):
        G.synthesis(ws, precision="fp64")
    with pytest.raises(ValueError, match="precision='half'"):
        D(torch.zeros(2, 3, 8, 8), c, precision="half")
    with pytest.raises(ValueError, match="fused_modconv='yes'"):
        G.synthesis(ws, fused_modconv="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"one generator per sample \(2\), got 1"):
        G.synthesis(ws, generator=[torch.Generator()])


# ----- precision -----------------------------------------------------------------------------------


@pytest.mark.parametrize("precision, tol", [("fp16", 2e-2), ("bf16", 1e-1)])
def test_low_precision_blocks(precision: str, tol: float) -> None:
    """The top num_fp16_res blocks run in the low dtype, the image and logits stay float32."""
    torch.manual_seed(0)
    G, D = stylegan.build(**TINY, resolution=16, c_dim=2, num_fp16_res=1, growth="progressive")
    dtypes = {}
    hooks = [
        m.register_forward_hook(lambda m, i, o, name=name: dtypes.__setitem__(name, o.dtype))
        for name, m in [*G.synthesis.blocks.items(), *(("D" + k, b) for k, b in D.blocks.items())]
    ]
    z, c = _zc(G)
    with torch.no_grad():
        ref = G(z, c, precision="fp32")
        img = G(z, c, precision=precision)
        logits, ref_logits = D(img, c, precision=precision), D(img, c, precision="fp32")
        G.set_growth(16, 0.5), D.set_growth(16, 0.5)
        faded = D(G(z, c, precision=precision), c, precision=precision)
    for h in hooks:
        h.remove()
    low = {"fp16": torch.float16, "bf16": torch.bfloat16}[precision]
    assert dtypes == {"b4": torch.float32, "b8": torch.float32, "b16": low, "Db16": low, "Db8": torch.float32}
    assert img.dtype == logits.dtype == faded.dtype == torch.float32 and torch.isfinite(faded).all()
    torch.testing.assert_close(img, ref, rtol=0, atol=tol * ref.abs().max().item())
    torch.testing.assert_close(logits, ref_logits, rtol=0, atol=tol * ref_logits.abs().max().item() + tol)


# ----- network files -------------------------------------------------------------------------------


def test_network_file_round_trip(tmp_path: Any) -> None:
    torch.manual_seed(0)
    G, D = stylegan.build(**TINY, resolution=16, img_channels=1, c_dim=3, growth="progressive")
    G_ema = copy.deepcopy(G)
    with torch.no_grad():
        G_ema.mapping.w_avg.normal_()
        for p in G_ema.parameters():
            p.mul_(0.5)
    G.set_growth(8, 0.25), D.set_growth(8, 0.25)
    path = tmp_path / "progan.safetensors"
    stylegan.save_network(path, {"G": G, "D": D, "G_ema": G_ema}, G.config, {"kimg": 3})
    info = stylegan.read_network_info(path)
    assert info.config.family == "progan"
    assert info.modules == {"G": "generator", "D": "discriminator", "G_ema": "generator"}
    assert info.growth == {"G": (8, 0.25), "D": (8, 0.25), "G_ema": (16, 1.0)}
    loaded = stylegan.load_network(path)
    assert [type(loaded[k]) for k in ("G", "D", "G_ema")] == [ProGANGenerator, ProGANDiscriminator, ProGANGenerator]
    for name, module in (("G", G), ("D", D), ("G_ema", G_ema)):
        ref, got = module.state_dict(), loaded[name].state_dict()
        assert ref.keys() == got.keys() and all(torch.equal(ref[k], got[k]) for k in ref)
        assert (loaded[name].growth_resolution, loaded[name].growth_alpha) == (
            module.growth_resolution, module.growth_alpha,
        )
    z, c = torch.randn(4, G.z_dim), torch.eye(3)[[0, 1, 2, 0]]
    with torch.no_grad():
        img = G_ema.eval()(z, c, truncation_psi=0.7)
        assert torch.equal(loaded["G_ema"](z, c, truncation_psi=0.7), img)
        low = G.eval()(z, c)
        assert low.shape == (BATCH, 1, 8, 8) and torch.equal(loaded["G"](z, c), low)
        assert torch.equal(loaded["D"](low, c), D.eval()(low, c))
