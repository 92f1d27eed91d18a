"""Modulated convolution (fused vs non-fused), equalized learning rate, mapping network (truncation,
w_avg) and noise modes."""

from __future__ import annotations

import math

import pytest
import torch
from torch.autograd import gradcheck

import stylegan
from ops.upfirdn2d import setup_filter
from stylegan.layers import Conv2dLayer, FullyConnectedLayer, MinibatchStdLayer, normalize_2nd_moment
from stylegan.modconv import modulated_conv2d


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("up", [1, 2])
@pytest.mark.parametrize("demodulate", [True, False])
@pytest.mark.parametrize("kernel", [1, 3])
def test_fused_and_nonfused_modconv_agree_float64(up: int, demodulate: bool, kernel: int) -> None:
    g = _gen(0)
    x = torch.randn(3, 5, 6, 6, generator=g, dtype=torch.float64)
    weight = torch.randn(4, 5, kernel, kernel, generator=g, dtype=torch.float64)
    styles = torch.randn(3, 5, generator=g, dtype=torch.float64)
    f = setup_filter([1, 3, 3, 1]).double()
    kw = dict(demodulate=demodulate, up=up, padding=kernel // 2, resample_filter=f, flip_weight=up == 1)
    fused = modulated_conv2d(x, weight, styles, fused_modconv=True, **kw)
    plain = modulated_conv2d(x, weight, styles, fused_modconv=False, **kw)
    assert fused.shape == (3, 4, 6 * up, 6 * up)
    torch.testing.assert_close(fused, plain, rtol=1e-12, atol=1e-12)


def test_modconv_matches_the_equations() -> None:
    """StyleGAN2 eq. 1-3 written out per sample, against both paths."""
    g = _gen(1)
    x = torch.randn(2, 3, 5, 5, generator=g, dtype=torch.float64)
    weight = torch.randn(4, 3, 3, 3, generator=g, dtype=torch.float64)
    styles = torch.randn(2, 3, generator=g, dtype=torch.float64)
    for fused in (True, False):
        out = modulated_conv2d(x, weight, styles, padding=1, fused_modconv=fused)
        for i in range(2):
            w1 = weight * styles[i].reshape(1, 3, 1, 1)  # eq. 1
            w2 = w1 / (w1.square().sum(dim=[1, 2, 3], keepdim=True) + 1e-8).sqrt()  # eq. 3
            ref = torch.nn.functional.conv2d(x[i : i + 1], w2, padding=1)
            torch.testing.assert_close(out[i : i + 1], ref, rtol=1e-12, atol=1e-12)


def test_modconv_gradcheck() -> None:
    g = _gen(2)
    x = torch.randn(2, 2, 4, 4, generator=g, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(3, 2, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    styles = torch.randn(2, 2, generator=g, dtype=torch.float64, requires_grad=True)
    for fused in (True, False):
        assert gradcheck(lambda *a: modulated_conv2d(*a, padding=1, fused_modconv=fused), (x, weight, styles))


def test_demodulated_output_has_unit_variance() -> None:
    """StyleGAN2 eq. 2: with unit-variance i.i.d. inputs, demodulation restores unit output std."""
    g = _gen(3)
    x = torch.randn(8, 64, 16, 16, generator=g)
    weight = torch.randn(32, 64, 3, 3, generator=g)
    styles = torch.rand(8, 64, generator=g) * 5
    out = modulated_conv2d(x, weight, styles, padding=1)[:, :, 1:-1, 1:-1]
    assert abs(out.std().item() - 1) < 0.05


def test_synthesis_fused_and_nonfused_agree_float64() -> None:
    G, _ = stylegan.build("tiny", 16, g_architecture="resnet")
    G.double()
    ws = G.mapping(torch.randn(2, G.z_dim, generator=_gen(4)).double())
    a = G.synthesis(ws, noise_mode="const", fused_modconv=True)
    b = G.synthesis(ws, noise_mode="const", fused_modconv=False)
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_equalized_lr_scaling() -> None:
    """ProGAN sec. 4.1: stored weights ~N(0, 1/lr^2), runtime gain lr/sqrt(fan_in)."""
    torch.manual_seed(0)
    fc = FullyConnectedLayer(400, 300, lr_multiplier=0.01, bias_init=0.5)
    assert abs(fc.weight.std().item() - 100) < 2
    x = torch.randn(64, 400)
    y = fc(x)
    torch.testing.assert_close(y, x @ (fc.weight * 0.01 / 20).t() + 0.5)
    assert abs((y - 0.5).std().item() - 1) < 0.1  # unit-variance output at init
    conv = Conv2dLayer(16, 8, 3, activation="lrelu")
    assert conv.weight_gain == pytest.approx(1 / math.sqrt(16 * 9))
    x = torch.randn(2, 16, 8, 8)
    ref = torch.nn.functional.leaky_relu(
        torch.nn.functional.conv2d(x, conv.weight * conv.weight_gain, conv.bias, padding=1), 0.2
    ) * math.sqrt(2)
    torch.testing.assert_close(conv(x), ref)


def test_normalize_2nd_moment() -> None:
    x = torch.randn(5, 7) * 3
    assert torch.allclose(normalize_2nd_moment(x).square().mean(dim=1), torch.ones(5), atol=1e-5)


def test_minibatch_std() -> None:
    layer = MinibatchStdLayer(group_size=2, num_channels=1)
    x = torch.randn(4, 3, 2, 2, dtype=torch.float64)
    y = layer(x)
    assert y.shape == (4, 4, 2, 2) and torch.equal(y[:, :3], x)
    # Sample i is in group i % 2: samples (0, 2) and (1, 3).
    for a, b in ((0, 2), (1, 3)):
        std = (torch.stack([x[a], x[b]]).var(dim=0, unbiased=False) + 1e-8).sqrt().mean()
        torch.testing.assert_close(y[a, 3], torch.full((2, 2), std.item(), dtype=torch.float64))
        torch.testing.assert_close(y[b, 3], y[a, 3])


# ----- mapping -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def G() -> stylegan.Generator:
    torch.manual_seed(0)
    G, _ = stylegan.build("tiny", 16, c_dim=3)
    with torch.no_grad():
        G.mapping.w_avg.normal_()  # as after training
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.2)
    return G.eval()


def _zc(G: stylegan.Generator, n: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    z = torch.randn(n, G.z_dim, generator=_gen(seed))
    return z, torch.eye(G.c_dim)[torch.arange(n) % G.c_dim]


def test_truncation_psi_zero_gives_w_avg(G: stylegan.Generator) -> None:
    z, c = _zc(G)
    ws = G.mapping(z, c, truncation_psi=0)
    assert torch.allclose(ws, G.mapping.w_avg.expand_as(ws))


def test_truncation_interpolates(G: stylegan.Generator) -> None:
    z, c = _zc(G)
    ws = G.mapping(z, c)
    half = G.mapping(z, c, truncation_psi=0.5)
    torch.testing.assert_close(half, G.mapping.w_avg + 0.5 * (ws - G.mapping.w_avg))


def test_truncation_cutoff_only_first_layers(G: stylegan.Generator) -> None:
    z, c = _zc(G)
    ws = G.mapping(z, c)
    cut = G.mapping(z, c, truncation_psi=0, truncation_cutoff=3)
    assert torch.allclose(cut[:, :3], G.mapping.w_avg.expand(4, 3, -1))
    assert torch.equal(cut[:, 3:], ws[:, 3:])
    with pytest.raises(ValueError, match="truncation_cutoff=99"):
        G.mapping(z, c, truncation_psi=0.5, truncation_cutoff=99)


def test_truncated_images_are_identical_at_psi_zero(G: stylegan.Generator) -> None:
    z, c = _zc(G)
    c = torch.eye(G.c_dim)[[0, 0, 0, 0]]
    img = G(z, c, truncation_psi=0, noise_mode="const")
    assert torch.allclose(img, img[:1].expand_as(img), atol=1e-6)


def test_w_avg_update() -> None:
    G, _ = stylegan.build("tiny", 8)
    z = torch.randn(6, G.z_dim, generator=_gen(1))
    G.mapping(z)
    assert torch.equal(G.mapping.w_avg, torch.zeros(G.w_dim))  # only with update_emas
    w = G.mapping(z, update_emas=True)[:, 0]
    torch.testing.assert_close(G.mapping.w_avg, (1 - 0.995) * w.mean(dim=0))
    assert "mapping.w_avg" in G.state_dict()


def test_ws_broadcast(G: stylegan.Generator) -> None:
    z, c = _zc(G)
    ws = G.mapping(z, c)
    assert ws.shape == (4, G.num_ws, G.w_dim) and G.num_ws == 1 + 2 * 2 + 1  # b4: 1 conv, b8, b16: 2, last ToRGB: 1
    assert torch.equal(ws, ws[:, :1].expand_as(ws))


# ----- noise ---------------------------------------------------------------------------------------


def test_noise_modes(G: stylegan.Generator) -> None:
    z, c = _zc(G)
    with torch.no_grad():
        const = G(z, c, noise_mode="const")
        assert torch.equal(const, G(z, c, noise_mode="const"))
        none = G(z, c, noise_mode="none")
        assert not torch.allclose(none, const)
        r1, r2 = G(z, c, noise_mode="random"), G(z, c, noise_mode="random")
        assert not torch.allclose(r1, r2) and not torch.allclose(r1, const)
        assert torch.equal(G(z, c, generator=_gen(9)), G(z, c, generator=_gen(9)))
        # 'none' ignores the noise strengths entirely; 'const' uses the noise_const buffers.
        layer = G.synthesis.blocks["b8"].conv0
        saved = layer.noise_strength.clone(), layer.noise_const.clone()
        try:
            layer.noise_strength.fill_(5.0)
            assert torch.equal(G(z, c, noise_mode="none"), none)
            assert not torch.allclose(G(z, c, noise_mode="const"), const)
            layer.noise_strength.copy_(saved[0])
            layer.noise_const.add_(1.0)
            assert not torch.allclose(G(z, c, noise_mode="const"), const)
        finally:
            layer.noise_strength.copy_(saved[0]), layer.noise_const.copy_(saved[1])
    assert "synthesis.blocks.b8.conv0.noise_const" in G.state_dict()


def test_image_does_not_depend_on_batch(G: stylegan.Generator) -> None:
    z, c = _zc(G)
    with torch.no_grad():
        full = G(z, c, noise_mode="const")
        single = torch.cat([G(z[i : i + 1], c[i : i + 1], noise_mode="const") for i in range(4)])
    torch.testing.assert_close(full, single, rtol=1e-5, atol=1e-5)


# ----- float16 -------------------------------------------------------------------------------------


def test_fp16_blocks() -> None:
    """num_fp16_res: on CPU 'auto' stays fp32; 'fp16' runs the top blocks in float16 (as CUDA does)
    and gives nearly the fp32 result; outputs stay in the parameters' dtype."""
    torch.manual_seed(0)
    G, D = stylegan.build("tiny", 16, num_fp16_res=2, conv_clamp=256, c_dim=2)
    G.eval(), D.eval()
    seen: dict[str, torch.dtype] = {}
    hooks = [
        m.register_forward_hook(lambda mod, inp, out, name=name: seen.__setitem__(name, out.dtype))
        for name, m in [("g4", G.synthesis.blocks["b4"]), ("g16", G.synthesis.blocks["b16"]), ("d16", D.blocks["b16"].conv1)]
    ]
    z, c = torch.randn(4, G.z_dim, generator=_gen(0)), torch.eye(2)[[0, 1, 0, 1]]
    with torch.no_grad():
        ref = G(z, c, noise_mode="const")
        ref_logits = D(ref, c)
        assert seen == {"g4": torch.float32, "g16": torch.float32, "d16": torch.float32}
        img = G(z, c, noise_mode="const", precision="fp16")
        logits = D(ref, c, precision="fp16")
        assert seen == {"g4": torch.float32, "g16": torch.float16, "d16": torch.float16}
        assert torch.equal(G(z, c, noise_mode="const", precision="fp32"), ref)
    for h in hooks:
        h.remove()
    assert img.dtype == logits.dtype == torch.float32
    torch.testing.assert_close(img, ref, rtol=0, atol=0.01)
    torch.testing.assert_close(logits, ref_logits, rtol=0, atol=0.005)
    with pytest.raises(ValueError, match="precision='half'"):
        G(z, c, precision="half")
