"""StyleGAN3's building blocks (stylegan/stylegan3.py): filter design against scipy, the appendix-F
layer schedule, the Fourier-feature input and its user transform, the magnitude EMA, precision."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from stylegan.config import NetworkConfig
from stylegan.stylegan3 import (
    StyleGAN3Generator,
    SynthesisInput,
    design_lowpass_filter,
    input_transform,
    layer_schedule,
)

scipy_signal = pytest.importorskip("scipy.signal")
scipy_special = pytest.importorskip("scipy.special")

# A small config-T network: 16x16, few channels and layers (the schedule's formulas are the same).
SMALL = dict(family="stylegan3", resolution=16, img_channels=3, z_dim=8, w_dim=8, mapping_layers=2,
             channel_base=256, channel_max=16, sg3_layers=6, w_avg_beta=0.998)


@pytest.mark.parametrize("numtaps,cutoff,width,fs", [(12, 2.0, 4.8, 16.0), (24, 5.04, 7.9, 32.0), (12, 16.0, 9.2, 64.0),
                                                    (6, 3.0, 1.0, 8.0)])
def test_separable_filter_is_scipys_kaiser_firwin(numtaps, cutoff, width, fs):
    ours = design_lowpass_filter(numtaps, cutoff, width, fs)
    ref = scipy_signal.firwin(numtaps=numtaps, cutoff=cutoff, width=width, fs=fs)
    assert ours.dtype == torch.float32 and ours.shape == (numtaps,)
    np.testing.assert_allclose(ours.numpy(), ref, rtol=0, atol=1e-7)
    assert design_lowpass_filter(1, cutoff, width, fs) is None


def test_radial_filter_is_the_kaiser_windowed_jinc():
    numtaps, cutoff, width, fs = 12, 5.04, 7.9, 32.0
    ours = design_lowpass_filter(numtaps, cutoff, width, fs, radial=True).double().numpy()
    x = (np.arange(numtaps) - (numtaps - 1) / 2) / fs
    r = np.hypot(*np.meshgrid(x, x))
    ref = scipy_special.j1(2 * cutoff * np.pi * r) / (np.pi * r)
    beta = scipy_signal.kaiser_beta(scipy_signal.kaiser_atten(numtaps, width / (fs / 2)))
    ref *= np.outer(np.kaiser(numtaps, beta), np.kaiser(numtaps, beta))
    ref /= ref.sum()
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-7)
    assert np.allclose(ours, ours.T) and np.allclose(ours, ours[::-1, ::-1])  # radially symmetric


def test_schedule_follows_appendix_f():
    cfg = NetworkConfig(family="stylegan3", resolution=1024)
    s = layer_schedule(cfg)
    n = cfg.sg3_layers
    assert len(s["cutoffs"]) == n + 1
    assert s["cutoffs"][0] == 2 and s["cutoffs"][n - 2] == pytest.approx(512) and s["cutoffs"][n] == pytest.approx(512)
    assert s["stopbands"][0] == pytest.approx(2**2.1) and s["stopbands"][n] == pytest.approx(512 * 2**0.3)
    # Cutoffs rise geometrically up to the critically sampled layers, then stay.
    ratios = s["cutoffs"][1 : n - 1] / s["cutoffs"][: n - 2]
    assert np.allclose(ratios, ratios[0])
    # 10-pixel margins, the last two layers at the image size and critically sampled (rate = 2 f_c).
    assert list(s["sizes"][:2]) == [36, 36] and list(s["sizes"][-2:]) == [1024, 1024]
    assert s["sampling_rates"][-1] == 1024 == 2 * s["cutoffs"][-1]
    assert list(s["channels"][:3]) == [512, 512, 512] and s["channels"][-1] == 3
    # Every rate is a power of two that covers twice the stopband (or the image's rate).
    rates = s["sampling_rates"]
    assert all(math.log2(r).is_integer() for r in rates)
    assert all(r >= min(2 * f, 1024) for r, f in zip(rates, s["stopbands"]))


def test_config_r_doubles_gs_channels_only():
    t = NetworkConfig(family="stylegan3", resolution=256)
    r = t.replace(g_channel_base=65536, g_channel_max=1024, conv_kernel=1, use_radial_filters=True)
    assert (layer_schedule(r)["channels"][:-1] >= layer_schedule(t)["channels"][:-1]).all()
    assert layer_schedule(r)["channels"][0] == 1024 and r.channels(64) == t.channels(64)  # D keeps its own


def test_input_transform_is_the_inverse_image_transform():
    m = input_transform((0.25, -0.125), 0.0)
    assert torch.equal(m, torch.tensor([[1, 0, -0.25], [0, 1, 0.125], [0, 0, 1.0]]))
    r = input_transform((0.0, 0.0), 90.0)
    assert torch.allclose(r, torch.tensor([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]]), atol=1e-7)
    assert torch.allclose(input_transform((0.1, 0.2), 30.0) @ torch.linalg.inv(input_transform((0.1, 0.2), 30.0)),
                          torch.eye(3), atol=1e-6)


def test_fourier_features_shift_by_whole_samples_under_the_transform():
    """A translation of k / sampling_rate moves the input's features by exactly k samples: the
    features are a continuous signal sampled on a grid (sec. 3.1)."""
    torch.manual_seed(0)
    layer = SynthesisInput(w_dim=4, channels=8, size=20, sampling_rate=16.0, bandwidth=2.0)
    w = torch.randn(2, 4)
    with torch.no_grad():
        base = layer(w)
        layer.transform.copy_(input_transform((3 / 16, -2 / 16), 0.0))
        moved = layer(w)
    # The image content moved right by 3 and up by 2 samples.
    assert torch.allclose(moved[:, :, :-2, 3:], base[:, :, 2:, :-3], atol=1e-5)
    assert not torch.allclose(moved, base, atol=1e-2)  # the comparison has teeth


def test_affine_starts_at_the_identity():
    layer = SynthesisInput(w_dim=4, channels=8, size=20, sampling_rate=16.0, bandwidth=2.0)
    assert torch.equal(layer.affine(torch.randn(3, 4)), torch.tensor([[1.0, 0, 0, 0]]).expand(3, 4))


def _small_g(**changes) -> StyleGAN3Generator:
    torch.manual_seed(0)
    return StyleGAN3Generator(NetworkConfig(**{**SMALL, **changes}))


def test_magnitude_ema_updates_only_when_asked():
    G = _small_g()
    z = torch.randn(4, 8)
    before = [layer.magnitude_ema.clone() for layer in G.synthesis.layers]
    G(z)
    assert all(torch.equal(a, layer.magnitude_ema) for a, layer in zip(before, G.synthesis.layers))
    G(z, update_emas=True)
    after = [layer.magnitude_ema for layer in G.synthesis.layers]
    assert all(not torch.equal(a, b) for a, b in zip(before, after))
    # lerp(current, old, beta): one update from 1 moves by (1 - beta) of the way to the input's mean square.
    x = G.synthesis.input(G.mapping(z)[:, 0])
    expected = x.square().mean().lerp(torch.ones([]), G.config.magnitude_ema_beta)
    assert torch.allclose(after[0], expected, rtol=1e-5)


def test_output_shape_num_ws_and_no_noise():
    G = _small_g()
    z = torch.randn(3, 8)
    ws = G.mapping(z)
    assert ws.shape == (3, G.config.sg3_layers + 2, 8) == (3, G.num_ws, 8)
    with torch.no_grad():
        a = G.synthesis(ws, noise_mode="random", generator=torch.Generator().manual_seed(1))
        b = G.synthesis(ws, noise_mode="const")
    assert a.shape == (3, 3, 16, 16) and torch.equal(a, b)
    with pytest.raises(ValueError, match="ws: expected shape"):
        G.synthesis(ws[:, 1:])
    with pytest.raises(ValueError, match="growth"):
        NetworkConfig(**SMALL, growth="progressive")


def test_low_precision_layers_follow_num_fp16_res_and_stay_close():
    G = _small_g(resolution=32, num_fp16_res=1, conv_clamp=256.0)
    rates = [layer.out_sampling_rate for layer in G.synthesis.layers]
    assert [layer.use_fp16 for layer in G.synthesis.layers] == [r * 2 > 32 for r in rates]
    assert any(layer.use_fp16 for layer in G.synthesis.layers) and not all(layer.use_fp16 for layer in G.synthesis.layers)
    z = torch.randn(2, 8)
    with torch.no_grad():
        ref = G(z, precision="fp32")
        for precision in ("fp16", "bf16"):
            img = G(z, precision=precision)
            assert img.dtype == torch.float32
            err = (img - ref).abs().max().item()
            assert 0 < err < 0.05 * ref.abs().max().item(), (precision, err)


def test_gradients_reach_every_parameter():
    G = _small_g(c_dim=3)
    z, c = torch.randn(2, 8), torch.eye(3)[[0, 2]]
    G(z, c).square().sum().backward()
    missing = [n for n, p in G.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    # The input affine's weight starts at zero but still gets a gradient through the normalisation.
    assert missing == []


def test_radial_filters_in_config_r_layers():
    G = _small_g(conv_kernel=1, use_radial_filters=True)
    for layer in G.synthesis.layers:
        f = layer.down_filter
        if layer.down_radial:
            assert f is not None and f.ndim == 2
        assert layer.weight.shape[-1] == 1
    assert any(layer.down_radial for layer in G.synthesis.layers)
    assert not any(layer.down_radial for layer in G.synthesis.layers if layer.is_critically_sampled)
