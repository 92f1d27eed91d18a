"""Progressive growing (ProGAN): every stage, fade-in at alpha 0 / 1, parity with the fixed network."""

from __future__ import annotations

import copy

import pytest
import torch

import stylegan
from ops.upfirdn2d import downsample2d, setup_filter, upsample2d

ARCHS = ["orig", "skip", "resnet"]
RES = 16
F = setup_filter([1, 3, 3, 1])


def _nets(arch: str, growth: str = "progressive", seed: int = 0) -> tuple[stylegan.Generator, stylegan.Discriminator]:
    torch.manual_seed(seed)
    G, D = stylegan.build(
        "tiny", RES, img_channels=3, c_dim=2, g_architecture=arch, d_architecture=arch, growth=growth
    )
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.1)
    return G.eval(), D.eval()


def _inputs(G: stylegan.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    z = torch.randn(4, G.z_dim, generator=torch.Generator().manual_seed(3))
    return z, torch.eye(2)[[0, 1, 0, 1]]


@pytest.fixture(scope="module", params=ARCHS)
def nets(request: pytest.FixtureRequest) -> tuple[str, stylegan.Generator, stylegan.Discriminator]:
    return (request.param, *_nets(request.param))


def test_every_stage_shapes(nets: tuple) -> None:
    _, G, D = nets
    z, c = _inputs(G)
    with torch.no_grad():
        for res in (4, 8, 16):
            for alpha in (0.0, 1.0):
                G.set_growth(res, alpha), D.set_growth(res, alpha)
                assert (G.growth_resolution, G.growth_alpha) == (res, alpha)
                img = G(z, c)
                assert img.shape == (4, 3, res, res) and torch.isfinite(img).all()
                logits = D(img, c)
                assert logits.shape == (4, 1) and torch.isfinite(logits).all()
    G.set_growth(RES, 1.0), D.set_growth(RES, 1.0)


def test_alpha_zero_is_the_stage_below(nets: tuple) -> None:
    """At alpha 0 the new block contributes nothing: G gives the upsampled image of the stage below,
    D scores the image as the stage below scores it downsampled."""
    _, G, D = nets
    z, c = _inputs(G)
    with torch.no_grad():
        for res in (8, 16):
            G.set_growth(res // 2, 1.0), D.set_growth(res // 2, 1.0)
            low = G(z, c, noise_mode="const")
            img = torch.randn(4, 3, res, res, generator=torch.Generator().manual_seed(res))
            low_logits = D(downsample2d(img, F), c)
            G.set_growth(res, 0.0), D.set_growth(res, 0.0)
            torch.testing.assert_close(G(z, c, noise_mode="const"), upsample2d(low, F), rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(D(img, c), low_logits, rtol=1e-5, atol=1e-6)
            # G blends linearly between the two ends.
            a0 = G(z, c, noise_mode="const")
            G.set_growth(res, 1.0)
            a1 = G(z, c, noise_mode="const")
            G.set_growth(res, 0.25)
            torch.testing.assert_close(G(z, c, noise_mode="const"), a0 + 0.25 * (a1 - a0), rtol=1e-5, atol=1e-6)
            assert not torch.allclose(a0, a1)
    G.set_growth(RES, 1.0), D.set_growth(RES, 1.0)


def test_alpha_changes_d(nets: tuple) -> None:
    _, G, D = nets
    img = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    c = torch.eye(2)[[0, 1, 0, 1]]
    with torch.no_grad():
        D.set_growth(8, 0.0)
        a0 = D(img, c)
        D.set_growth(8, 1.0)
        assert not torch.allclose(a0, D(img, c))
    D.set_growth(RES, 1.0)


@pytest.mark.parametrize("arch", ARCHS)
def test_top_stage_alpha_one_equals_fixed_network(arch: str) -> None:
    Gp, Dp = _nets(arch, "progressive")
    Gf, Df = _nets(arch, "none", seed=1)
    # Give the fixed networks the progressive ones' weights; only the extra RGB layers differ.
    for fixed, prog in ((Gf, Gp), (Df, Dp)):
        result = prog.load_state_dict(fixed.state_dict(), strict=False)
        assert not result.unexpected_keys
        assert all("torgb" in k or "fromrgb" in k for k in result.missing_keys)
        if arch == "skip":
            assert not result.missing_keys  # skip nets have every RGB layer already
    z, c = _inputs(Gp)
    with torch.no_grad():
        img = Gf(z, c, noise_mode="const")
        torch.testing.assert_close(Gp(z, c, noise_mode="const"), img, rtol=0, atol=0)
        torch.testing.assert_close(Dp(img, c), Df(img, c), rtol=0, atol=0)


def test_growth_none_is_fixed_and_refuses_stages() -> None:
    G, D = _nets("resnet", "none")
    assert (G.growth_resolution, G.growth_alpha) == (RES, 1.0)
    assert (D.growth_resolution, D.growth_alpha) == (RES, 1.0)
    G.set_growth(RES, 1.0)  # the one allowed stage
    for net in (G, D):
        with pytest.raises(ValueError, match="growth='none'"):
            net.set_growth(8, 1.0)
        with pytest.raises(ValueError, match="growth='none'"):
            net.set_growth(RES, 0.5)


@pytest.mark.parametrize(
    "res, alpha, match",
    [(12, 1.0, "growth resolution=12"), (32, 1.0, "growth resolution=32"), (2, 1.0, "resolution=2"),
     (8, 1.5, "growth alpha=1.5"), (8, float("nan"), "growth alpha=nan"), (8, "1", "growth alpha='1'")],
)
def test_set_growth_validates(res: int, alpha: float, match: str) -> None:
    G, _ = _nets("skip")
    with pytest.raises(ValueError, match=match):
        G.set_growth(res, alpha)
    assert (G.growth_resolution, G.growth_alpha) == (RES, 1.0)  # unchanged


def test_growth_is_not_in_state_dict() -> None:
    G, D = _nets("orig")
    keys = set(G.state_dict())
    G.set_growth(8, 0.3), D.set_growth(4, 1.0)
    assert set(G.state_dict()) == keys
    G2, D2 = _nets("orig", seed=5)
    G2.load_state_dict(G.state_dict()), D2.load_state_dict(D.state_dict())
    assert (G2.growth_resolution, D2.growth_resolution) == (RES, RES)  # stage is the caller's state
    G3 = copy.deepcopy(G)
    assert (G3.growth_resolution, G3.growth_alpha) == (8, 0.3)


def test_progressive_adds_only_rgb_layers() -> None:
    def count(m: torch.nn.Module) -> int:
        return sum(p.numel() for p in m.parameters())

    for arch in ARCHS:
        Gp, Dp = _nets(arch, "progressive")
        Gf, Df = _nets(arch, "none")
        if arch == "skip":
            assert (count(Gp), count(Dp)) == (count(Gf), count(Df))
        else:
            assert count(Gp) > count(Gf) and count(Dp) > count(Df)
