"""Tests of the ADA pipeline (training/augment.py): exact identity at p = 0, first and second
derivatives, reproducible draws, what each transformation does (against draws replayed from the
same seed in the documented order), how often each fires, gray and RGB, float32 and float64."""

from __future__ import annotations

import math

import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck

from training.augment import PIPELINES, AugmentPipe, make_pipe
from training.augment_resample import affine_resample, grid_sample, reflect_pad

LUMA = torch.full((3,), 1 / math.sqrt(3), dtype=torch.float64)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _pipe(name_or_strengths: str | dict, p: float = 1.0, **overrides: float) -> AugmentPipe:
    if isinstance(name_or_strengths, str):
        return make_pipe(name_or_strengths, p=p, **overrides)
    return AugmentPipe(p=p, **name_or_strengths, **overrides)


def _smooth(n: int, h: int, w: int, dtype=torch.float64):
    """A smooth test pattern f(x, y) in centred pixel coordinates, and f itself."""

    def f(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.sin(0.3 * x + 0.2 * y + 0.5) * torch.cos(0.25 * y - 0.1 * x)

    y, x = _centred(h, w)
    return f(x, y).expand(n, 1, h, w).to(dtype).clone(), f


def _centred(h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    y, x = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    return y - (h - 1) / 2, x - (w - 1) / 2


def _changed(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (x != y).flatten(1).any(dim=1)


# --- p = 0, errors, state -------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(PIPELINES))
@pytest.mark.parametrize("channels", [1, 3])
def test_p0_is_exactly_the_identity(name: str, channels: int) -> None:
    x = torch.randn(4, channels, 8, 8, generator=_gen(1))
    gen = _gen(2)
    y = make_pipe(name)(x, gen)
    assert torch.equal(y, x)
    # The draws were still made (their order does not depend on p).
    gen1 = _gen(2)
    make_pipe(name, p=1.0)(x, gen1)
    assert torch.equal(gen.get_state(), gen1.get_state())


def test_unknown_pipe_and_option_name_the_allowed() -> None:
    with pytest.raises(ValueError, match="bgc.*bgcfnc") as info:
        make_pipe("bgcx")
    assert "'bgcx'" in str(info.value) and "blit" in str(info.value)
    with pytest.raises(ValueError, match="scale_std"):
        make_pipe("bgc", scale_sdt=0.1)
    with pytest.raises(ValueError, match="p=1.5"):
        make_pipe("bgc", p=1.5)
    with pytest.raises(ValueError, match="1 or 3 channels"):
        make_pipe("color", p=1.0)(torch.zeros(1, 2, 8, 8), _gen())


def test_p_is_a_buffer_in_the_state_dict() -> None:
    pipe = make_pipe("bgc")
    assert set(pipe.state_dict()) == {"p"}
    pipe.p.copy_(torch.as_tensor(0.25))
    other = make_pipe("bgc")
    other.load_state_dict(pipe.state_dict())
    assert float(other.p) == 0.25


def test_overrides_reach_the_pipe() -> None:
    pipe = make_pipe("bgc", xflip=0, scale_std=0.5)
    assert pipe.strengths["xflip"] == 0 and pipe.strengths["rotate"] == 1 and pipe.ranges["scale_std"] == 0.5
    assert pipe.config()["brightness_std"] == 0.2


# --- Derivatives ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["blit", "geom", "color", "filter", "noise", "cutout", "bgcfnc"])
def test_first_and_second_derivatives(name: str) -> None:
    pipe = make_pipe(name, p=1.0)
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64, generator=_gen(3), requires_grad=True)

    def fn(x: torch.Tensor) -> torch.Tensor:
        return pipe(x, _gen(4))

    fast = name in ("geom", "bgcfnc")  # random projections: same check, fewer evaluations
    assert gradcheck(fn, (x,), fast_mode=fast)
    assert gradgradcheck(fn, (x,), fast_mode=fast)


def test_grid_sample_has_second_derivative() -> None:
    x = torch.randn(1, 2, 5, 5, dtype=torch.float64, generator=_gen(5), requires_grad=True)
    grid = torch.rand(1, 4, 3, 2, dtype=torch.float64, generator=_gen(6)) * 2.2 - 1.1
    assert gradcheck(lambda x: grid_sample(x, grid), (x,))
    assert gradgradcheck(lambda x: grid_sample(x, grid), (x,))
    # And it is grid_sample.
    ref = torch.nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    assert torch.allclose(grid_sample(x, grid), ref)


def test_r1_style_double_backward_through_the_pipe() -> None:
    """grad_x of D(aug(x)), then backward into D's weight: needs the pipe's second derivative."""
    pipe = make_pipe("bgcfnc", p=1.0)
    weight = torch.randn(3, 8, 8, dtype=torch.float64, generator=_gen(7), requires_grad=True)
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64, generator=_gen(8), requires_grad=True)
    logits = (pipe(x, _gen(9)).square() * weight).sum(dim=(1, 2, 3))
    (g,) = torch.autograd.grad(logits.sum(), x, create_graph=True)
    g.square().sum().backward()
    assert weight.grad is not None and weight.grad.abs().sum() > 0


# --- Reproducibility, dtypes, channels --------------------------------------------------------------


def test_same_seed_same_output_different_seed_different() -> None:
    pipe = make_pipe("bgcfnc", p=0.7)
    x = torch.randn(4, 3, 8, 8, generator=_gen(10))
    assert torch.equal(pipe(x, _gen(1)), pipe(x, _gen(1)))
    assert not torch.equal(pipe(x, _gen(1)), pipe(x, _gen(2)))


@pytest.mark.parametrize("channels", [1, 3])
def test_float32_and_float64_get_the_same_augmentation(channels: int) -> None:
    pipe = make_pipe("bgcfnc", p=1.0)
    x = torch.randn(4, channels, 16, 16, dtype=torch.float64, generator=_gen(11))
    y64 = pipe(x, _gen(12))
    y32 = pipe(x.float(), _gen(12))
    assert y64.dtype == torch.float64 and y32.dtype == torch.float32
    assert y32.shape == x.shape
    assert torch.allclose(y32.double(), y64, atol=2e-4, rtol=1e-4)


def test_geometric_path_keeps_a_constant_constant() -> None:
    """Reflect padding: no zeros are pulled in at the borders."""
    x = torch.full((4, 3, 16, 16), 0.6)
    y = make_pipe("bg", p=1.0)(x, _gen(13))
    assert (y - 0.6).abs().max() < 1e-5


def test_untouched_samples_are_exact_in_a_mixed_batch() -> None:
    """Samples that drew no transformation pass through bit for bit, beside resampled ones."""
    n, p = 32, 0.1
    x = torch.randn(n, 3, 8, 8, generator=_gen(14))
    y = make_pipe("bg", p=p)(x, _gen(15))
    # Replay the draws of 'bg' (docs/augmentation.md, "Randomness"): fire, then parameters.
    g = _gen(15)
    fired, continuous = torch.zeros(n, dtype=torch.bool), torch.zeros(n, dtype=torch.bool)
    p_rot = 1 - math.sqrt(1 - p)
    for name, k, prob in [("xflip", 1, p), ("rotate90", 1, p), ("xint", 2, p), ("scale", 1, p),
                          ("rotate", 1, p_rot), ("aniso", 1, p), ("rotate", 1, p_rot), ("xfrac", 2, p)]:
        on = torch.rand(n, generator=g) < prob
        (torch.randn if name in ("scale", "aniso", "xfrac") else torch.rand)(n, k, generator=g)
        fired |= on
        if name in ("scale", "rotate", "aniso", "xfrac"):
            continuous |= on
    assert int((~fired).sum()) >= 8 and int(continuous.sum()) >= 2
    assert torch.equal(y[~fired], x[~fired])
    assert ((y - x).abs().flatten(1).amax(dim=1)[continuous] > 1e-3).all()
    assert not torch.isin(y[continuous], x[continuous]).all()  # resampled, not a pixel permutation


# --- Each transformation does what it says (draws replayed from the same seed) ------------------------


def test_xflip() -> None:
    x = torch.randn(16, 1, 6, 6, generator=_gen(20))
    y = _pipe({"xflip": 1})(x, _gen(21))
    g = _gen(21)
    torch.rand(16, generator=g)  # fire
    flip = (torch.rand(16, 1, generator=g)[:, 0] * 2).floor() == 1
    assert 0 < int(flip.sum()) < 16
    assert torch.equal(y[flip], x[flip].flip(3)) and torch.equal(y[~flip], x[~flip])


def test_rotate90() -> None:
    x = torch.randn(16, 1, 6, 6, generator=_gen(22))
    y = _pipe({"rotate90": 1})(x, _gen(23))
    g = _gen(23)
    torch.rand(16, generator=g)
    quarters = (torch.rand(16, 1, generator=g)[:, 0] * 4).floor().long()
    assert len(set(quarters.tolist())) == 4
    for i in range(16):
        # Content turns by +90 degrees x i in (x right, y down) pixel coordinates.
        assert torch.equal(y[i], torch.rot90(x[i], -int(quarters[i]), dims=(1, 2)))


def test_xint_translates_by_whole_pixels_with_reflection() -> None:
    x = torch.randn(8, 1, 16, 16, generator=_gen(24))
    y = _pipe({"xint": 1})(x, _gen(25))
    g = _gen(25)
    torch.rand(8, generator=g)
    t = ((torch.rand(8, 2, generator=g) * 2 - 1) * 0.125 * 16).round().long()  # [-2, 2] pixels
    assert (t != 0).any()
    padded = reflect_pad(x, 2, 2, 2, 2)
    for i in range(8):
        dx, dy = int(t[i, 0]), int(t[i, 1])
        # out(v) = x(v - t): content moves by +t.
        expected = padded[i, :, 2 - dy : 18 - dy, 2 - dx : 18 - dx]
        assert torch.equal(y[i], expected)


def _interior(h: int, w: int, src_x: torch.Tensor, src_y: torch.Tensor, margin: float = 4) -> torch.Tensor:
    return (src_x.abs() <= (w - 1) / 2 - margin) & (src_y.abs() <= (h - 1) / 2 - margin)


def _check_warp(y: torch.Tensor, f, src_x: torch.Tensor, src_y: torch.Tensor, tol: float = 0.02) -> None:
    h, w = y.shape[2:]
    for i in range(y.shape[0]):
        inside = _interior(h, w, src_x[i], src_y[i])
        assert inside.sum() >= 16
        err = (y[i, 0] - f(src_x[i], src_y[i]))[inside].abs().max()
        assert err < tol, f"sample {i}: max error {float(err):.4f} in the interior"


def test_scale_magnifies_by_the_drawn_factor() -> None:
    n, h, w = 4, 24, 24
    x, f = _smooth(n, h, w)
    y = _pipe({"scale": 1}, scale_std=0.5)(x, _gen(26))
    g = _gen(26)
    torch.rand(n, generator=g)
    s = torch.exp2(torch.randn(n, 1, generator=g)[:, 0].double() * 0.5)
    assert (s - 1).abs().max() > 0.2
    vy, vx = _centred(h, w)
    _check_warp(y, f, vx / s[:, None, None], vy / s[:, None, None])


def test_aniso_stretches_x_and_squeezes_y() -> None:
    n, h, w = 4, 24, 24
    x, f = _smooth(n, h, w)
    y = _pipe({"aniso": 1}, aniso_std=0.5)(x, _gen(27))
    g = _gen(27)
    torch.rand(n, generator=g)
    s = torch.exp2(torch.randn(n, 1, generator=g)[:, 0].double() * 0.5)
    assert (s - 1).abs().max() > 0.2
    vy, vx = _centred(h, w)
    _check_warp(y, f, vx / s[:, None, None], vy * s[:, None, None])


def test_rotate_turns_by_both_drawn_angles() -> None:
    n, h, w = 4, 24, 24
    x, f = _smooth(n, h, w)
    y = _pipe({"rotate": 1})(x, _gen(28))
    g = _gen(28)
    angles = []
    for _ in range(2):  # pre- and post-rotation, each fires with 1 - sqrt(1 - p) = 1 at p = 1
        torch.rand(n, generator=g)
        angles.append((torch.rand(n, 1, generator=g)[:, 0].double() * 2 - 1) * math.pi)
    a = angles[0] + angles[1]
    vy, vx = _centred(h, w)
    c, s = torch.cos(a)[:, None, None], torch.sin(a)[:, None, None]
    # out(v) = x(R(-a) v)
    _check_warp(y, f, c * vx + s * vy, -s * vx + c * vy)


def test_xfrac_translates_by_the_drawn_fraction() -> None:
    n, h, w = 4, 24, 24
    x, f = _smooth(n, h, w)
    y = _pipe({"xfrac": 1})(x, _gen(29))
    g = _gen(29)
    torch.rand(n, generator=g)
    t = torch.randn(n, 2, generator=g).double() * 0.125 * w
    assert (t.abs() > 0.5).any()
    vy, vx = _centred(h, w)
    _check_warp(y, f, vx - t[:, 0, None, None], vy - t[:, 1, None, None])


def test_identity_matrix_through_the_resampling_is_near_exact() -> None:
    """sym6 is orthonormal, so 2x up (convolve) then 2x down (correlate) is the identity: the
    resampling path adds no blur of its own beyond the bilinear step."""
    x = torch.randn(2, 3, 12, 12, dtype=torch.float64, generator=_gen(30))
    pipe = make_pipe("geom")
    y = affine_resample(x, torch.eye(3, dtype=torch.float64).expand(2, 3, 3), pipe.geom_taps)
    assert (y - x).abs().max() < 1e-5


def test_brightness_adds_and_contrast_multiplies() -> None:
    x = torch.rand(6, 3, 4, 4, generator=_gen(31)) * 2 - 1
    y = _pipe({"brightness": 1})(x, _gen(32))
    g = _gen(32)
    torch.rand(6, generator=g)
    b = torch.randn(6, 1, generator=g)[:, 0] * 0.2
    assert torch.allclose(y, x + b[:, None, None, None], atol=1e-6)

    y = _pipe({"contrast": 1})(x, _gen(33))
    g = _gen(33)
    torch.rand(6, generator=g)
    k = torch.exp2(torch.randn(6, 1, generator=g)[:, 0] * 0.5)
    assert torch.allclose(y, x * k[:, None, None, None], atol=1e-6)


def test_lumaflip_inverts_gray_around_zero_and_rgb_along_the_luma_axis() -> None:
    g = _gen(35)
    torch.rand(8, generator=g)
    flip = (torch.rand(8, 1, generator=g)[:, 0] * 2).floor() == 1
    assert 0 < int(flip.sum()) < 8

    gray = torch.rand(8, 1, 4, 4, generator=_gen(34)) * 2 - 1
    y = _pipe({"lumaflip": 1})(gray, _gen(35))
    assert torch.allclose(y[flip], -gray[flip], atol=1e-6) and torch.equal(y[~flip], gray[~flip])

    rgb = torch.rand(8, 3, 4, 4, generator=_gen(34), dtype=torch.float64) * 2 - 1
    y = _pipe({"lumaflip": 1})(rgb, _gen(35))
    luma = torch.einsum("c,nchw->nhw", LUMA, rgb)
    expected = rgb - 2 * LUMA[None, :, None, None] * luma[:, None]
    assert torch.allclose(y[flip], expected[flip], atol=1e-9)
    assert torch.allclose(y[flip].mean(dim=1), -rgb[flip].mean(dim=1), atol=1e-9)  # gray level negated


def _chroma(x: torch.Tensor) -> torch.Tensor:
    return x - x.mean(dim=1, keepdim=True)


def test_hue_rotates_the_chroma_about_the_luma_axis() -> None:
    x = torch.rand(6, 3, 4, 4, generator=_gen(36), dtype=torch.float64) * 2 - 1
    y = _pipe({"hue": 1})(x, _gen(37))
    g = _gen(37)
    torch.rand(6, generator=g)
    a = (torch.rand(6, 1, generator=g)[:, 0].double() * 2 - 1) * math.pi
    assert torch.allclose(y.mean(dim=1), x.mean(dim=1), atol=1e-9)  # luma kept
    cx, cy = _chroma(x), _chroma(y)
    cos = (cx * cy).sum(dim=1) / (cx.norm(dim=1) * cy.norm(dim=1))
    sin = torch.einsum("c,nchw->nhw", LUMA, torch.linalg.cross(cx, cy, dim=1)) / (cx.norm(dim=1) * cy.norm(dim=1))
    assert torch.allclose(cy.norm(dim=1), cx.norm(dim=1), atol=1e-9)
    assert torch.allclose(cos, torch.cos(a)[:, None, None].expand_as(cos), atol=1e-6)
    assert torch.allclose(sin, torch.sin(a)[:, None, None].expand_as(sin), atol=1e-6)


def test_saturation_scales_the_chroma_and_keeps_the_luma() -> None:
    x = torch.rand(6, 3, 4, 4, generator=_gen(38), dtype=torch.float64) * 2 - 1
    y = _pipe({"saturation": 1})(x, _gen(39))
    g = _gen(39)
    torch.rand(6, generator=g)
    k = torch.exp2(torch.randn(6, 1, generator=g)[:, 0].double())
    assert torch.allclose(y.mean(dim=1), x.mean(dim=1), atol=1e-9)
    assert torch.allclose(_chroma(y), _chroma(x) * k[:, None, None, None], atol=1e-9)


def test_hue_and_saturation_leave_gray_alone() -> None:
    x = torch.rand(4, 1, 4, 4, generator=_gen(40), dtype=torch.float64) * 2 - 1
    y = _pipe({"hue": 1, "saturation": 1})(x, _gen(41))
    assert torch.allclose(y, x, atol=1e-12)


def test_imgfilter_gains_the_lowest_and_highest_band() -> None:
    """DC only passes the lowest band, a checkerboard (frequency pi) only the highest; the filter
    runs along x and then y, so each sees its band's gain squared."""
    n, h, w = 4, 8, 8
    g = _gen(42)
    t = []
    for _ in range(4):
        torch.rand(n, generator=g)
        t.append(torch.exp2(torch.randn(n, 1, generator=g)[:, 0].double()))
    t = torch.stack(t, dim=1)
    t = t / (torch.tensor([10, 1, 1, 1], dtype=torch.float64) / 13 * t.square()).sum(dim=1, keepdim=True).sqrt()

    pipe = _pipe({"imgfilter": 1})
    dc = torch.full((n, 1, h, w), 0.5, dtype=torch.float64)
    assert torch.allclose(pipe(dc, _gen(42)), dc * t[:, 0, None, None, None] ** 2, atol=1e-9)
    y, x = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    checker = ((-1.0) ** (x + y)).double().expand(n, 1, h, w)
    assert torch.allclose(pipe(checker, _gen(42)), checker * t[:, 3, None, None, None] ** 2, atol=1e-9)


def test_noise_has_the_drawn_half_normal_std() -> None:
    x = torch.zeros(4, 3, 32, 32)
    y = _pipe({"noise": 1})(x, _gen(43))
    g = _gen(43)
    torch.rand(4, generator=g)
    sigma = torch.randn(4, 1, generator=g)[:, 0].abs() * 0.1
    ratio = y.flatten(1).std(dim=1) / sigma
    assert ((ratio - 1).abs() < 0.1).all(), ratio


def test_cutout_zeros_a_half_size_square_at_the_drawn_centre() -> None:
    n, h, w = 16, 16, 16
    x = torch.rand(n, 1, h, w, generator=_gen(44)) + 1  # no zeros of its own
    y = _pipe({"cutout": 1})(x, _gen(45))
    g = _gen(45)
    torch.rand(n, generator=g)
    centre = torch.rand(n, 2, generator=g)
    hole = y == 0
    assert torch.equal(y[~hole], x[~hole])
    for i in range(n):
        rows = hole[i, 0].any(dim=1).nonzero()[:, 0]
        cols = hole[i, 0].any(dim=0).nonzero()[:, 0]
        # A filled axis-aligned rectangle ...
        assert int(hole[i].sum()) == rows.numel() * cols.numel()
        # ... of half the image per side where it does not touch the border, centred on the draw.
        for idx, c in ((cols, centre[i, 0]), (rows, centre[i, 1])):
            if 0.25 < c < 0.75:
                assert idx.numel() == 8
            assert 4 <= idx.numel() <= 8
            assert abs((float(idx.float().mean()) + 0.5) / 16 - float(c)) <= 0.25 + 1e-6


# --- How often each transformation fires ------------------------------------------------------------

# (strengths, channels, size, fraction of fired samples that visibly change)
_FIRING = {
    "xflip": ({"xflip": 1}, 1, 8, 1 / 2),
    "rotate90": ({"rotate90": 1}, 1, 8, 3 / 4),
    "xint": ({"xint": 1}, 1, 8, 3 / 4),  # round(U(-1, 1)) = 0 on both axes with probability 1/4
    "scale": ({"scale": 1}, 1, 8, 1.0),
    "aniso": ({"aniso": 1}, 1, 8, 1.0),
    "xfrac": ({"xfrac": 1}, 1, 8, 1.0),
    "brightness": ({"brightness": 1}, 1, 4, 1.0),
    "contrast": ({"contrast": 1}, 1, 4, 1.0),
    "lumaflip": ({"lumaflip": 1}, 1, 4, 1 / 2),
    "hue": ({"hue": 1}, 3, 4, 1.0),
    "saturation": ({"saturation": 1}, 3, 4, 1.0),
    "noise": ({"noise": 1}, 1, 4, 1.0),
    "cutout": ({"cutout": 1}, 1, 4, 1.0),
}


@pytest.mark.parametrize("name", list(_FIRING))
@pytest.mark.parametrize(("p", "strength"), [(0.5, 1.0), (0.8, 0.5)])
def test_each_transform_fires_with_probability_p_times_strength(name: str, p: float, strength: float) -> None:
    strengths, channels, size, visible = _FIRING[name]
    n = 2000
    x = torch.randn(n, channels, size, size, generator=_gen(50)) + 3  # no zeros (cutout)
    pipe = AugmentPipe(p=p, **{k: v * strength for k, v in strengths.items()})
    rate = float(_changed(x, pipe(x, _gen(51))).float().mean())
    # +-0.05 is 4.5 standard deviations; p ignored, p squared or strength ignored are >= 0.1 off.
    assert abs(rate - p * strength * visible) < 0.05, rate


def test_rotation_overall_probability_is_p() -> None:
    """Two rotations, each with 1 - sqrt(1 - p): some rotation with probability p."""
    x = torch.randn(2000, 1, 6, 6, generator=_gen(52))
    for p in (0.3, 0.6):
        rate = float(_changed(x, _pipe({"rotate": 1}, p=p)(x, _gen(53))).float().mean())
        assert abs(rate - p) < 0.05, (p, rate)


def test_imgfilter_bands_fire_independently() -> None:
    x = torch.randn(2000, 1, 4, 4, generator=_gen(54))
    p = 0.2
    rate = float(_changed(x, _pipe({"imgfilter": 1}, p=p)(x, _gen(55))).float().mean())
    assert abs(rate - (1 - (1 - p) ** 4)) < 0.05, rate


# --- GPU --------------------------------------------------------------------------------------------


@pytest.mark.gpu
def test_cuda_kernels_match_the_reference_and_have_second_derivatives(monkeypatch: pytest.MonkeyPatch) -> None:
    dev = torch.device("cuda")
    pipe = make_pipe("bgcfnc", p=1.0).to(dev)
    x = torch.randn(4, 3, 16, 16, generator=_gen(60)).to(dev)
    y = pipe(x, torch.Generator(device=dev).manual_seed(61))
    assert y.shape == x.shape and torch.isfinite(y).all()
    assert torch.equal(y, pipe(x, torch.Generator(device=dev).manual_seed(61)))
    monkeypatch.setenv("STYLEGAN_OPS", "ref")  # the same draws through the PyTorch reference ops
    y_ref = pipe(x, torch.Generator(device=dev).manual_seed(61))
    monkeypatch.delenv("STYLEGAN_OPS")
    assert torch.allclose(y, y_ref, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="generator"):
        pipe(x, _gen(1))
    for dtype in (torch.float32, torch.float64):
        xd = torch.randn(2, 3, 8, 8, dtype=dtype, device=dev, requires_grad=True)
        w = torch.randn(3, 8, 8, dtype=dtype, device=dev, requires_grad=True)
        logits = (pipe(xd, torch.Generator(device=dev).manual_seed(62)).square() * w).sum(dim=(1, 2, 3))
        (g,) = torch.autograd.grad(logits.sum(), xd, create_graph=True)
        g.square().sum().backward()
        assert torch.isfinite(w.grad).all() and w.grad.abs().sum() > 0
    xd = torch.randn(2, 3, 6, 6, dtype=torch.float64, device=dev, requires_grad=True)
    fn = lambda v: pipe(v, torch.Generator(device=dev).manual_seed(62))  # noqa: E731
    assert gradcheck(fn, (xd,), fast_mode=True)
    assert gradgradcheck(fn, (xd,), fast_mode=True)
