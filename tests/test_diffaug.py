"""DiffAugment (training/diffaug.py): derivatives, determinism, each policy's effect, parsing."""

from __future__ import annotations

import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck

from training.diffaug import POLICIES, apply_params, diff_augment, draw_params, parse_policy

ALL = ("color", "translation", "cutout")


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------------------ derivatives
@pytest.mark.parametrize("policy", [("color",), ("translation",), ("cutout",), ALL], ids="+".join)
@pytest.mark.parametrize("channels", [1, 3])
def test_first_and_second_derivatives(policy, channels):
    x = torch.randn(2, channels, 6, 6, dtype=torch.float64, generator=_gen(1), requires_grad=True)
    # A fresh generator per call: every evaluation gradcheck makes sees the same draws.
    fn = lambda x: diff_augment(x, policy, _gen(7))  # noqa: E731
    assert gradcheck(fn, (x,))
    assert gradgradcheck(fn, (x,))


def test_r1_style_double_backward_reaches_the_images():
    # R1 (Mescheder et al. 2018): penalty on ||d D(T(x)) / dx||^2, differentiated again w.r.t. D's weights.
    x = torch.randn(3, 3, 8, 8, dtype=torch.float64, generator=_gen(2), requires_grad=True)
    weight = torch.randn(3, 8, 8, dtype=torch.float64, generator=_gen(3), requires_grad=True)
    logits = (diff_augment(x, ALL, _gen(4)).square() * weight).sum(dim=[1, 2, 3])
    (grad,) = torch.autograd.grad(logits.sum(), x, create_graph=True)
    grad.square().sum().backward()
    assert weight.grad is not None and weight.grad.abs().sum() > 0


# ------------------------------------------------------------------------------ determinism
def test_same_seed_same_result_and_different_seeds_differ():
    x = torch.randn(4, 3, 16, 16, generator=_gen(0))
    a = diff_augment(x, ALL, _gen(11))
    b = diff_augment(x, ALL, _gen(11))
    c = diff_augment(x, ALL, _gen(12))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_draws_depend_only_on_n_and_policy():
    one = draw_params(5, ALL, _gen(3))
    assert set(one) == {"brightness", "saturation", "contrast", "translation", "cutout"}
    assert [list(v.shape) for v in one.values()] == [[5], [5], [5], [5, 2], [5, 2]]
    # The same draws whatever the images' size or dtype: drawn before the images are looked at.
    small = diff_augment(torch.zeros(5, 1, 4, 4), ["cutout"], _gen(3))
    again = apply_params(torch.zeros(5, 1, 4, 4, dtype=torch.float64), ["cutout"], draw_params(5, ["cutout"], _gen(3)))
    assert torch.equal(small.double(), again)
    # The policy's order is the draw order.
    swapped = draw_params(5, ("cutout", "color", "translation"), _gen(3))
    assert not torch.equal(swapped["brightness"], one["brightness"])


def test_global_draws_sliced_per_process_equal_one_process():
    x = torch.randn(8, 3, 16, 16, generator=_gen(5))
    whole = diff_augment(x, ALL, _gen(9))
    params = draw_params(8, ALL, _gen(9))
    for lo, hi in [(0, 4), (4, 8), (0, 3), (3, 8)]:
        part = apply_params(x[lo:hi], ALL, {k: v[lo:hi] for k, v in params.items()})
        assert torch.equal(part, whole[lo:hi])


def test_empty_policy_is_the_identity():
    x = torch.randn(2, 3, 8, 8, generator=_gen(0))
    assert torch.equal(diff_augment(x, (), _gen(0)), x)


# ------------------------------------------------------------------------------ translation
def _shift(x: torch.Tensor, ty: int, tx: int) -> torch.Tensor:
    """Reference: out[y, x] = in[y - ty, x - tx], zero outside (slices of a zero canvas)."""
    out = torch.zeros_like(x)
    H, W = x.shape[-2:]
    out[..., max(ty, 0) : H + min(ty, 0), max(tx, 0) : W + min(tx, 0)] = x[
        ..., max(-ty, 0) : H + min(-ty, 0), max(-tx, 0) : W + min(-tx, 0)
    ]
    return out


@pytest.mark.parametrize("size", [(8, 8), (16, 12)])
def test_translation_is_an_integer_shift_with_zeros_entering(size):
    H, W = size
    sy, sx = round(H / 8 + 1e-9), round(W / 8 + 1e-9)  # 1/8 of the size, the paper's range
    x = torch.arange(1, 64 * 2 * H * W + 1, dtype=torch.float32).view(64, 2, H, W)  # distinct, non-zero
    out = diff_augment(x, ["translation"], _gen(21))
    seen = set()
    for n in range(64):
        shifts = [(ty, tx) for ty in range(-sy, sy + 1) for tx in range(-sx, sx + 1)]
        matches = [(ty, tx) for ty, tx in shifts if torch.equal(out[n], _shift(x[n], ty, tx))]
        assert len(matches) == 1, f"image {n} is not a shift within +-({sy}, {sx})"
        seen.add(matches[0])
    # Every shift of each axis, the extremes included, occurs among 64 draws (fixed seed).
    assert {ty for ty, _ in seen} == set(range(-sy, sy + 1))
    assert {tx for _, tx in seen} == set(range(-sx, sx + 1))


def test_translation_direction_follows_the_draw():
    x = torch.arange(1, 65, dtype=torch.float32).view(1, 1, 8, 8)
    lo = apply_params(x, ["translation"], {"translation": torch.tensor([[0.0, 0.0]])})
    hi = apply_params(x, ["translation"], {"translation": torch.tensor([[0.9999, 0.9999]])})
    mid = apply_params(x, ["translation"], {"translation": torch.tensor([[0.5, 0.5]])})
    assert torch.equal(lo, _shift(x, -1, -1)) and torch.equal(hi, _shift(x, 1, 1)) and torch.equal(mid, x)


# ------------------------------------------------------------------------------ cutout
@pytest.mark.parametrize("size", [(8, 8), (7, 10)])
def test_cutout_zeroes_exactly_a_clipped_half_size_square(size):
    H, W = size
    h, w = (H + 1) // 2, (W + 1) // 2
    n = 200
    out = diff_augment(torch.ones(n, 3, H, W), ["cutout"], _gen(31))
    assert torch.equal(out[:, 0:1].expand_as(out), out)  # the same mask on every channel
    clipped = {"top": 0, "bottom": 0, "left": 0, "right": 0, "whole": 0}
    for k in range(n):
        zero = out[k, 0] == 0
        rows = zero.any(dim=1).nonzero().flatten()
        cols = zero.any(dim=0).nonzero().flatten()
        assert len(rows) > 0 and len(cols) > 0, "the square is never clipped away entirely"
        r0, r1, c0, c1 = rows.min().item(), rows.max().item() + 1, cols.min().item(), cols.max().item() + 1
        assert zero.sum().item() == (r1 - r0) * (c1 - c0)  # a full rectangle, nothing else
        assert r1 - r0 <= h and c1 - c0 <= w
        assert r1 - r0 == h or r0 == 0 or r1 == H  # shorter only where cut by a border
        assert c1 - c0 == w or c0 == 0 or c1 == W
        # The square's clipped side is at least half of it: its centre lies in the image.
        assert r1 - r0 >= h - h // 2 and c1 - c0 >= w - w // 2
        clipped["top"] += r0 == 0 and r1 - r0 < h
        clipped["bottom"] += r1 == H and r1 - r0 < h
        clipped["left"] += c0 == 0 and c1 - c0 < w
        clipped["right"] += c1 == W and c1 - c0 < w
        clipped["whole"] += r1 - r0 == h and c1 - c0 == w
    assert all(v > 0 for v in clipped.values()), clipped
    assert abs(clipped["top"] - clipped["bottom"]) < 0.5 * n / 4 and abs(clipped["left"] - clipped["right"]) < 0.5 * n / 4


# ------------------------------------------------------------------------------ color
def _recover_color(out: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Brightness b, saturation s and contrast c per image from a probe image built for it.

    Pixel (0, 0) is gray g1 and (0, 1) gray g2: saturation leaves gray alone, so their difference
    is scaled by c only. Pixel (1, 0) has chroma: its deviation from its channel mean is scaled
    by s * c. Brightness and saturation keep the image mean, contrast keeps it too, so the mean
    moves by b alone.
    """
    c = (out[:, 0, 0, 0] - out[:, 0, 0, 1]) / (x[:, 0, 0, 0] - x[:, 0, 0, 1])
    chroma_out = out[:, 0, 1, 0] - out[:, :, 1, 0].mean(dim=1)
    chroma_in = x[:, 0, 1, 0] - x[:, :, 1, 0].mean(dim=1)
    s = chroma_out / chroma_in / c
    b = out.mean(dim=[1, 2, 3]) - x.mean(dim=[1, 2, 3])
    return b, s, c


def _probe(n: int) -> torch.Tensor:
    x = torch.zeros(n, 3, 2, 2, dtype=torch.float64)
    x[:, :, 0, 0] = 0.5
    x[:, :, 0, 1] = -0.25
    x[:, :, 1, 0] = torch.tensor([0.6, -0.2, 0.1], dtype=torch.float64)[None]
    x[:, :, 1, 1] = 0.1
    return x


def test_color_ranges_over_many_draws():
    n = 4000
    x = _probe(n)
    b, s, c = _recover_color(diff_augment(x, ["color"], _gen(41)), x)
    tol = 1e-9
    for name, v, lo, hi in [("brightness", b, -0.5, 0.5), ("saturation", s, 0.0, 2.0), ("contrast", c, 0.5, 1.5)]:
        assert v.min() >= lo - tol and v.max() <= hi + tol, f"{name} outside [{lo}, {hi}]"
        span = hi - lo
        assert v.min() < lo + 0.01 * span and v.max() > hi - 0.01 * span, f"{name} does not fill [{lo}, {hi}]"
        assert abs(v.mean().item() - (lo + hi) / 2) < 0.02 * span, f"{name} is not centred"  # uniform: mean at the middle
    # Independent draws: no correlation between the three factors.
    stacked = torch.stack([b, s, c])
    corr = torch.corrcoef(stacked)
    assert (corr - torch.eye(3, dtype=corr.dtype)).abs().max() < 0.06


def test_color_formula_on_one_image():
    x = _probe(1)
    params = {"brightness": torch.tensor([0.75]), "saturation": torch.tensor([0.25]), "contrast": torch.tensor([0.0])}
    out = apply_params(x, ["color"], params)
    b, s, c = 0.25, 0.5, 0.5
    y = x + b
    y = (y - y.mean(dim=1, keepdim=True)) * s + y.mean(dim=1, keepdim=True)
    y = (y - y.mean()) * c + y.mean()
    torch.testing.assert_close(out, y, rtol=0, atol=1e-12)


def test_saturation_is_the_identity_on_one_channel():
    gray = torch.randn(6, 1, 8, 8, dtype=torch.float64, generator=_gen(0))
    one = diff_augment(gray, ALL, _gen(5))
    three = diff_augment(gray.expand(6, 3, 8, 8).contiguous(), ALL, _gen(5))  # gray RGB: saturation acts on nothing
    torch.testing.assert_close(one, three[:, :1], rtol=0, atol=1e-12)
    assert torch.equal(three[:, 0], three[:, 1]) and torch.equal(three[:, 0], three[:, 2])


# ------------------------------------------------------------------------------ parsing
def test_parse_policy_accepts_the_papers_names():
    assert parse_policy("color,translation,cutout") == ("color", "translation", "cutout")
    assert parse_policy(" translation , color") == ("translation", "color")
    assert POLICIES == ("color", "translation", "cutout")


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "empty"),
        (" , ", "empty"),
        ("color,flip", "unknown name 'flip'.*color, translation, cutout"),
        ("color,,cutout", "unknown name ''"),
        ("color,color", "more than once"),
    ],
)
def test_parse_policy_errors(text, message):
    with pytest.raises(ValueError, match=message):
        parse_policy(text)


def test_bad_inputs_raise_one_line_errors():
    x = torch.zeros(2, 3, 8, 8)
    with pytest.raises(ValueError, match="pass parse_policy"):
        diff_augment(x, "color", _gen(0))
    with pytest.raises(ValueError, match="expected one of color, translation, cutout"):
        diff_augment(x, ["blur"], _gen(0))
    with pytest.raises(ValueError, match=r"float \[N, C, H, W\]"):
        diff_augment(torch.zeros(3, 8, 8), ["color"], _gen(0))
    with pytest.raises(ValueError, match="params\\['cutout'\\]"):
        apply_params(x, ["cutout"], {"cutout": torch.zeros(3, 2)})
