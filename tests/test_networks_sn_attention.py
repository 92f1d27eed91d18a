"""Spectral normalisation (Miyato et al. 2018) and SAGAN self-attention (Zhang et al. 2019) in the
networks (issue 17): the normalised weights' largest singular value is 1, u moves only once per
step, attention is the identity at gate 0 and equals the paper's equations written out, and both
keep the network contract (shapes, determinism, file round trip, gradients, double backward)."""

from __future__ import annotations

import pytest
import torch
from torch.nn.utils import parametrize

import stylegan
from networks_contract import NetworkContract
from stylegan.attention import SelfAttention
from stylegan.layers import Conv2dLayer, FullyConnectedLayer
from stylegan.spectral import apply_spectral_norm, power_iteration


class OpenGates(NetworkContract):
    """Attention gates opened (as after training): at 0 the attention's own weights get no gradient,
    which is right at initialisation but would hide a broken block here."""

    @classmethod
    def make_nets(cls):
        G, D = super().make_nets()
        with torch.no_grad():
            for net in (G, D):
                for name, p in net.named_parameters():
                    if name.endswith(".gate"):
                        p.fill_(0.5)
        return G, D


class TestSpectralNormAttention(OpenGates):
    """G and D normalised, attention at 8 and 16."""

    build_args = dict(preset="tiny", resolution=32, img_channels=1, c_dim=3, spectral_norm="gd", attention=(8, 16))


class TestSpectralNormDProgressive(OpenGates):
    build_args = dict(preset="tiny", resolution=16, img_channels=1, spectral_norm="d", growth="progressive",
                      g_architecture="orig", attention=(8,))


def normalised(net):
    return [m for m in net.modules() if parametrize.is_parametrized(m, "weight")]


def largest_singular_value(module) -> float:
    w = module.weight
    return float(torch.linalg.svdvals(w.detach().reshape(w.shape[0], -1))[0])


def test_every_weight_of_d_has_largest_singular_value_1():
    _, D = stylegan.build("tiny", 16, 1, 4, spectral_norm="d")
    layers = normalised(D)
    weights = [m for m in D.modules() if isinstance(m._parameters.get("weight"), torch.Tensor)]
    assert layers and all(m._parameters.get("weight") is None or m._parameters["weight"].ndim < 2 for m in D.modules()
                          if m not in layers), "a weight was left out"
    assert not weights or all(m._parameters["weight"].ndim < 2 for m in weights)
    with torch.no_grad():
        for p in D.parameters():
            p.add_(torch.randn_like(p))  # weights that u and v were not set up for
    sigmas = [largest_singular_value(m) for m in layers]
    assert max(abs(s - 1) for s in sigmas) > 1e-3  # stale u, v: not yet 1
    for _ in range(1000):  # power iteration converges as (sigma_2 / sigma_1)^2 per step: slowly for close gaps
        power_iteration(D)
    after = [largest_singular_value(m) for m in layers]
    assert max(abs(s - 1) for s in after) < 1e-3, after
    # u^T W v underestimates sigma, so W / estimate has a largest singular value of at least 1.
    assert min(after) > 1 - 1e-5
    # With an equalised learning rate, a normalised layer computes with W / sigma(W) itself.
    gained = [m for m in layers if isinstance(m, (Conv2dLayer, FullyConnectedLayer))]
    assert gained and all(m.weight_gain == 1.0 for m in gained)


def test_u_moves_only_in_power_iteration():
    G, D = stylegan.build("tiny", 16, 1, 0, spectral_norm="gd")
    D.train()
    us = lambda: [b.clone() for n, b in D.named_buffers() if n.endswith("_u")]  # noqa: E731
    before = us()
    D(torch.randn(4, 1, 16, 16)).sum().backward()  # forward and backward in training mode
    assert all(torch.equal(a, b) for a, b in zip(before, us()))
    power_iteration(D)
    assert any(not torch.equal(a, b) for a, b in zip(before, us()))
    assert D.training and all(not sn.training or sn.n_power_iterations == 0
                              for m in normalised(D) for sn in m.parametrizations.weight)
    assert normalised(G) and len([n for n, _ in G.named_buffers() if n.endswith("_u")]) == len(normalised(G))


def test_spectral_norm_is_off_by_default_and_keeps_file_names():
    G, D = stylegan.build("tiny", 16, 1, 0)
    assert not normalised(G) and not normalised(D)
    assert "b4.conv.weight" in D.state_dict()


def reference_attention(block: SelfAttention, x: torch.Tensor) -> torch.Tensor:
    """SAGAN sec. 3, eq. 1-3, one output position at a time."""
    b, c, h, w = x.shape
    f, g, hv = block.f(x).flatten(2), block.g(x).flatten(2), block.h(x).flatten(2)  # [B, C', N]
    out = torch.zeros(b, block.inner, h * w, dtype=x.dtype)
    for n in range(b):
        for j in range(h * w):
            s = torch.stack([f[n, :, i] @ g[n, :, j] for i in range(h * w)])  # s_ij
            beta = torch.exp(s) / torch.exp(s).sum()  # softmax over i
            out[n, :, j] = sum(beta[i] * hv[n, :, i] for i in range(h * w))
    o = block.v(out.reshape(b, block.inner, h, w))
    return block.gate * o + x


def test_attention_is_the_papers_equations_and_the_identity_at_gate_0():
    torch.manual_seed(0)
    block = SelfAttention(16).double()
    x = torch.randn(2, 16, 4, 4, dtype=torch.float64)
    assert torch.equal(block(x), x)  # gamma = 0 at initialisation
    with torch.no_grad():
        block.gate.fill_(0.7)
    y = block(x)
    assert y.shape == x.shape and not torch.allclose(y, x)
    torch.testing.assert_close(y, reference_attention(block, x), rtol=1e-12, atol=1e-12)
    half = block.float()(x.half().float().half())
    assert half.dtype == torch.float16 and torch.isfinite(half).all()  # float32 inside a float16 block
    assert block.inner == 2  # C / 8


def test_attention_resolutions_are_checked():
    with pytest.raises(ValueError, match=r"attention=\(32,\): expected distinct resolutions, powers of two in \[8, 16\]"):
        stylegan.build("tiny", 32, 1, 0, attention=(32,))
    with pytest.raises(ValueError, match="attention"):
        stylegan.build("tiny", 32, 1, 0, attention=(12,))
    with pytest.raises(ValueError, match="spectral_norm='g': expected one of 'none', 'd', 'gd'"):
        stylegan.build("tiny", 32, 1, 0, spectral_norm="g")


def test_gate_zero_networks_equal_networks_without_attention():
    torch.manual_seed(3)
    G_att, D_att = stylegan.build("tiny", 16, 1, 0, attention=(8,))
    G, D = stylegan.build("tiny", 16, 1, 0)
    G.load_state_dict({k: v for k, v in G_att.state_dict().items() if "attention" not in k})
    D.load_state_dict({k: v for k, v in D_att.state_dict().items() if "attention" not in k})
    z = torch.randn(2, G.z_dim)
    img = G(z, noise_mode="const")
    assert torch.equal(G_att(z, noise_mode="const"), img)
    assert torch.equal(D_att(img), D(img))
