"""Tests of ops.conv2d_resample: every fast path equals the plain definition, gradients, bad input."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck, gradgradcheck

from ops import conv2d_resample, setup_filter, upfirdn2d


def definition(x, w, f, up, down, padding, groups, flip_weight, flip_filter):
    """conv2d_resample by its definition: upsample (zero insertion + filter), valid conv, downsample."""
    fw = fh = 1 if f is None else f.shape[-1]
    x0, x1, y0, y1 = (padding,) * 4 if isinstance(padding, int) else padding
    if up > 1:
        x0, x1, y0, y1 = x0 + (fw + up - 1) // 2, x1 + (fw - up) // 2, y0 + (fh + up - 1) // 2, y1 + (fh - up) // 2
    if down > 1:
        x0, x1 = x0 + (fw - down + 1) // 2, x1 + (fw - down) // 2
        y0, y1 = y0 + (fh - down + 1) // 2, y1 + (fh - down) // 2
    x = upfirdn2d(x, f if up > 1 else None, up=up, padding=(x0, x1, y0, y1), gain=up**2, flip_filter=flip_filter, impl="ref")
    x = F.conv2d(x, w if flip_weight else w.flip([2, 3]), groups=groups)
    if down > 1:
        x = upfirdn2d(x, f, down=down, flip_filter=flip_filter, impl="ref")
    return x


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


GRID = list(
    itertools.product(
        [1, 3],  # kernel size
        [(1, 1), (2, 1), (1, 2), (2, 2)],  # (up, down)
        [0, 1, (1, 0, 2, 1)],  # padding
        [1, 2],  # groups
        [True, False],  # flip_weight
        ["binomial", "asym", None],  # filter
    )
)


@pytest.mark.parametrize("k, updown, padding, groups, flip_weight, fname", GRID)
def test_fast_paths_match_definition(k, updown, padding, groups, flip_weight, fname) -> None:
    up, down = updown
    f = {"binomial": setup_filter([1, 3, 3, 1]), "asym": setup_filter([1, 2, 4, 1]), None: None}[fname]
    f = None if f is None else f.double()
    x = torch.randn(2, 4, 6, 6, dtype=torch.float64, generator=_gen())
    w = torch.randn(6, 4 // groups, k, k, dtype=torch.float64, generator=_gen(1))
    for flip_filter in (False, True):
        args = (f, up, down, padding, groups, flip_weight, flip_filter)
        expected = definition(x, w, *args)
        out = conv2d_resample(x, w, *args)
        assert out.shape == expected.shape
        torch.testing.assert_close(out, expected)


def test_plain_conv_equals_torch_conv() -> None:
    x = torch.randn(2, 3, 8, 8, generator=_gen())
    w = torch.randn(5, 3, 3, 3, generator=_gen(1))
    torch.testing.assert_close(conv2d_resample(x, w, padding=1), F.conv2d(x, w, padding=1))


def test_stylegan2_shapes() -> None:
    f = setup_filter([1, 3, 3, 1])
    x = torch.randn(2, 8, 8, 8, generator=_gen())
    w = torch.randn(4, 8, 3, 3, generator=_gen(1))
    assert conv2d_resample(x, w, f, up=2, padding=1).shape == (2, 4, 16, 16)
    assert conv2d_resample(x, w, f, down=2, padding=1).shape == (2, 4, 4, 4)
    assert conv2d_resample(x, w[:, :, :1, :1], f, down=2).shape == (2, 4, 4, 4)


@pytest.mark.parametrize("k, up, down, groups", [(3, 2, 1, 1), (3, 1, 2, 2), (1, 1, 2, 1), (3, 1, 1, 2), (1, 2, 1, 2)])
def test_gradcheck_and_gradgradcheck(k, up, down, groups) -> None:
    f = setup_filter([1, 3, 3, 1]).double()
    x = torch.randn(1, 2, 4, 4, dtype=torch.float64, generator=_gen(), requires_grad=True)
    w = torch.randn(2, 2 // groups, k, k, dtype=torch.float64, generator=_gen(1), requires_grad=True)
    fn = lambda x, w: conv2d_resample(x, w, f, up=up, down=down, padding=k // 2, groups=groups)  # noqa: E731
    assert gradcheck(fn, (x, w))
    assert gradgradcheck(fn, (x, w))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_dtypes(dtype: torch.dtype) -> None:
    f = setup_filter([1, 3, 3, 1])
    x = torch.randn(2, 4, 8, 8, generator=_gen())
    w = torch.randn(4, 4, 3, 3, generator=_gen(1)) / 6
    out = conv2d_resample(x.to(dtype), w, f, up=2, padding=1)  # weight follows x's dtype
    assert out.dtype == dtype
    expected = conv2d_resample(x.double(), w.double(), f.double(), up=2, padding=1)
    tol = {torch.float32: 1e-5, torch.float16: 2e-2, torch.bfloat16: 8e-2}[dtype]
    torch.testing.assert_close(out.double(), expected, rtol=tol, atol=tol)


def test_channels_last_and_noncontiguous() -> None:
    f = setup_filter([1, 3, 3, 1])
    x = torch.randn(2, 4, 8, 8, generator=_gen())
    w = torch.randn(4, 4, 3, 3, generator=_gen(1))
    expected = conv2d_resample(x, w, f, down=2, padding=1)
    torch.testing.assert_close(conv2d_resample(x.to(memory_format=torch.channels_last), w, f, down=2, padding=1), expected)
    torch.testing.assert_close(conv2d_resample(x.transpose(2, 3), w.transpose(2, 3), f, down=2, padding=1), expected.transpose(2, 3))


@pytest.mark.parametrize(
    "x_shape, w_shape, kwargs, match",
    [
        ((4, 8, 8), (2, 4, 3, 3), {}, "x: expected a floating-point 4-D tensor"),
        ((1, 4, 8, 8), (2, 4, 3), {}, "w: expected a 4-D weight"),
        ((1, 4, 8, 8), (2, 3, 3, 3), {}, "w: expected in_channels"),
        ((1, 4, 8, 8), (3, 2, 3, 3), {"groups": 2}, "groups=2: expected an int >= 1 that divides out_channels = 3"),
        ((1, 4, 8, 8), (2, 4, 3, 3), {"up": 0}, "up=0"),
        ((1, 4, 8, 8), (2, 4, 3, 3), {"down": 1.5}, "down=1.5"),
    ],
)
def test_bad_input(x_shape, w_shape, kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        conv2d_resample(torch.zeros(x_shape), torch.zeros(w_shape), **kwargs)
