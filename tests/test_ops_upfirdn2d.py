"""Tests of ops.upfirdn2d against a direct loop implementation, hand-computed cases and gradients."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck

from ops import downsample2d, filter2d, setup_filter, upfirdn2d, upsample2d
from ops.impl import CudaOpsUnavailableError


def naive_upfirdn2d(x, f, up=(1, 1), down=(1, 1), pad=(0, 0, 0, 0), flip_filter=False, gain=1.0):
    """Literal definition with loops: zero insertion, pad/crop, true convolution, decimation."""
    x = x.detach().double().numpy()
    f = f.detach().double().numpy()
    if f.ndim == 1:
        f = np.outer(f, f) * gain
    else:
        f = f * gain
    (upx, upy), (downx, downy), (x0, x1, y0, y1) = up, down, pad
    n, c, h, w = x.shape
    u = np.zeros((n, c, h * upy, w * upx))
    u[:, :, ::upy, ::upx] = x
    u = np.pad(u, ((0, 0), (0, 0), (max(y0, 0), max(y1, 0)), (max(x0, 0), max(x1, 0))))
    u = u[:, :, max(-y0, 0) : u.shape[2] - max(-y1, 0), max(-x0, 0) : u.shape[3] - max(-x1, 0)]
    fh, fw = f.shape
    kernel = f if flip_filter else f[::-1, ::-1]
    oh, ow = u.shape[2] - fh + 1, u.shape[3] - fw + 1
    out = np.zeros((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            out[:, :, i, j] = (u[:, :, i : i + fh, j : j + fw] * kernel).sum(axis=(2, 3))
    return torch.from_numpy(out[:, :, ::downy, ::downx].copy())


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


FILTERS = {
    "1tap": lambda: setup_filter([1.0]),
    "sep4": lambda: setup_filter([1, 3, 3, 1], separable=True),
    "2d4": lambda: setup_filter([1, 3, 3, 1]),
    "sep3": lambda: setup_filter([1, 2, 1], separable=True),
    "2d_asym": lambda: torch.tensor([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]]),
    "sep_asym": lambda: torch.tensor([0.3, -0.7, 1.1, 0.2]),
}

GRID = list(
    itertools.product(
        FILTERS,
        [(1, 1), (2, 2), (3, 1)],  # up
        [(1, 1), (2, 2), (1, 3)],  # down
        [(0, 0, 0, 0), (1, 2, 2, 1), (-1, 2, 0, -1)],  # padding
        [False, True],  # flip_filter
    )
)


@pytest.mark.parametrize("fname, up, down, pad, flip", GRID)
def test_matches_naive_definition(fname, up, down, pad, flip) -> None:
    f = FILTERS[fname]()
    x = torch.randn(2, 3, 7, 6, dtype=torch.float64, generator=_gen())
    out = upfirdn2d(x, f, up=up, down=down, padding=pad, flip_filter=flip, gain=1.5)
    expected = naive_upfirdn2d(x, f, up, down, pad, flip, gain=1.5)
    assert out.shape == expected.shape
    torch.testing.assert_close(out, expected)


GRAD_GRID = [
    ("sep4", 2, 1, (2, 1, 2, 1)),
    ("2d4", 1, 2, (1, 1, 1, 1)),
    ("2d_asym", 2, 2, (1, 0, 0, 2)),
    ("sep3", 1, 1, (-1, 1, 1, -1)),
    ("sep_asym", (2, 1), (1, 2), (1, 2, 3, 0)),
]


@pytest.mark.parametrize("fname, up, down, pad", GRAD_GRID)
@pytest.mark.parametrize("flip", [False, True])
def test_gradcheck_and_gradgradcheck(fname, up, down, pad, flip) -> None:
    f = FILTERS[fname]().double()
    x = torch.randn(1, 2, 5, 4, dtype=torch.float64, generator=_gen(1), requires_grad=True)
    fn = lambda x: upfirdn2d(x, f, up=up, down=down, padding=pad, flip_filter=flip, gain=0.7)  # noqa: E731
    assert gradcheck(fn, (x,))
    assert gradgradcheck(fn, (x,))


def test_gradient_wrt_filter() -> None:
    f = torch.tensor([[0.2, 0.5], [0.1, -0.3]], dtype=torch.float64, requires_grad=True)
    x = torch.randn(1, 2, 4, 4, dtype=torch.float64, generator=_gen(2), requires_grad=True)
    fn = lambda x, f: upfirdn2d(x, f, up=2, padding=1)  # noqa: E731
    assert gradcheck(fn, (x, f))
    assert gradgradcheck(fn, (x, f))


@pytest.mark.parametrize("flip", [False, True])
def test_delta_reproduces_the_filter(flip: bool) -> None:
    f = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    x = torch.zeros(1, 1, 1, 1)
    x[0, 0, 0, 0] = 1.0
    out = upfirdn2d(x, f, padding=(2, 2, 1, 1), flip_filter=flip)[0, 0]
    # A true convolution of a delta gives the filter itself; correlation gives it flipped.
    assert torch.equal(out, f.flip([0, 1]) if flip else f)


def test_identity_filter_and_pure_resampling() -> None:
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    up = upfirdn2d(x, None, up=2)
    assert up.shape == (1, 1, 8, 8)
    assert torch.equal(up[0, 0, ::2, ::2], x[0, 0])
    assert up[0, 0, 1::2].abs().sum() == 0 and up[0, 0, :, 1::2].abs().sum() == 0
    assert torch.equal(upfirdn2d(x, None, down=2)[0, 0], x[0, 0, ::2, ::2])
    assert torch.equal(upfirdn2d(x, None, padding=(1, 0, 0, -2))[0, 0], torch.nn.functional.pad(x, [1, 0])[0, 0, :2])


def test_box_filter_down_then_nearest_up_roundtrip_on_constant_blocks() -> None:
    # A 2x2-block-constant image survives box-filter downsampling and box upsampling exactly.
    small = torch.randn(1, 2, 3, 3, generator=_gen(3))
    blocks = small.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    box = setup_filter([1, 1])
    down = downsample2d(blocks, box)
    torch.testing.assert_close(down, small)
    torch.testing.assert_close(upsample2d(down, box), blocks)


def test_upsample_then_downsample_is_identity_up_to_filter_response() -> None:
    # Upsampling with f then downsampling with f equals filtering the input with f * f
    # sampled at even taps: for [1, 3, 3, 1] that is the normalised [1, 6, 1]-like kernel below.
    f = setup_filter([1, 3, 3, 1])
    x = torch.randn(1, 1, 8, 8, dtype=torch.float64, generator=_gen(4))
    roundtrip = downsample2d(upsample2d(x, f.double()), f.double())
    g = torch.tensor([1.0, 3.0, 3.0, 1.0], dtype=torch.float64)
    full = torch.from_numpy(np.convolve(g.numpy(), g.numpy()))  # [1, 6, 15, 20, 15, 6, 1]
    response = full[1::2] / full[1::2].sum()  # even-phase taps seen after decimation: [6, 20, 6]
    expected = filter2d(x, torch.outer(response, response))
    # Borders differ: the upsampled image is cut at its edge before the second filter sees it.
    torch.testing.assert_close(roundtrip[..., 1:-1, 1:-1], expected[..., 1:-1, 1:-1])
    # A constant image is reproduced exactly away from the borders (DC gain 1).
    ones = torch.ones(1, 1, 8, 8, dtype=torch.float64)
    torch.testing.assert_close(downsample2d(upsample2d(ones, f.double()), f.double())[..., 2:-2, 2:-2], ones[..., 2:-2, 2:-2])


@pytest.mark.parametrize("helper, factor", [(filter2d, 1), (upsample2d, 2), (downsample2d, 0.5)])
@pytest.mark.parametrize("taps", [[1, 3, 3, 1], [1, 2, 1], [1]])
def test_helpers_keep_the_image_size_aligned(helper, factor, taps) -> None:
    x = torch.randn(2, 3, 8, 8, generator=_gen())
    out = helper(x, setup_filter(taps))
    assert out.shape == (2, 3, int(8 * factor), int(8 * factor))


def test_helpers_preserve_constants_in_the_interior() -> None:
    ones = torch.ones(1, 1, 8, 8)
    f = setup_filter([1, 3, 3, 1])
    torch.testing.assert_close(filter2d(ones, f)[..., 2:-2, 2:-2], ones[..., 2:-2, 2:-2])
    torch.testing.assert_close(upsample2d(ones, f)[..., 2:-2, 2:-2], torch.ones(1, 1, 12, 12))
    torch.testing.assert_close(downsample2d(ones, f)[..., 1:-1, 1:-1], torch.ones(1, 1, 2, 2))


def test_setup_filter() -> None:
    f = setup_filter([1, 3, 3, 1])
    assert f.shape == (4, 4) and f.dtype == torch.float32
    torch.testing.assert_close(f.sum(), torch.tensor(1.0))
    assert setup_filter([1] * 8).ndim == 1  # long 1-D filters default to separable
    assert setup_filter([1, 3, 3, 1], separable=True).ndim == 1
    assert torch.equal(setup_filter([1, 2], normalize=False, flip_filter=True), torch.tensor([[4.0, 2.0], [2.0, 1.0]]))
    torch.testing.assert_close(setup_filter([1, 1], separable=True, gain=4).sum(), torch.tensor(2.0))
    torch.testing.assert_close(setup_filter([1, 1], gain=4).sum(), torch.tensor(4.0))
    assert setup_filter(None).shape == (1, 1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_dtypes(dtype: torch.dtype) -> None:
    x = torch.randn(2, 3, 8, 8, generator=_gen()).to(dtype)
    f = setup_filter([1, 3, 3, 1])
    out = upsample2d(x, f)
    assert out.dtype == dtype
    tol = {torch.float32: 1e-5, torch.float16: 1e-2, torch.bfloat16: 5e-2}[dtype]
    torch.testing.assert_close(out.double(), upsample2d(x.double(), f.double()), rtol=tol, atol=tol)


def test_noncontiguous_and_channels_last() -> None:
    f = setup_filter([1, 3, 3, 1])
    x = torch.randn(2, 3, 8, 8, generator=_gen())
    expected = downsample2d(x, f)
    torch.testing.assert_close(downsample2d(x.to(memory_format=torch.channels_last), f), expected)
    wide = torch.randn(2, 3, 8, 16, generator=_gen())
    torch.testing.assert_close(downsample2d(wide[..., ::2], f), downsample2d(wide[..., ::2].contiguous(), f))


@pytest.mark.parametrize(
    "x_shape, f, kwargs, match",
    [
        ((3, 8, 8), None, {}, r"x: expected a 4-D tensor"),
        ((1, 1, 8, 8), torch.ones(1, 2, 3), {}, "f: expected a non-empty 1-D"),
        ((1, 1, 8, 8), None, {"up": 0}, "up=0: expected an int >= 1"),
        ((1, 1, 8, 8), None, {"down": (2, 2, 2)}, r"down=\(2, 2, 2\)"),
        ((1, 1, 8, 8), None, {"padding": (1, 2, 3)}, "padding=.*expected an int"),
        ((1, 1, 4, 4), torch.ones(3, 3), {"padding": -1}, "padding=-1: input .* smaller than the 3x3 filter"),
        ((1, 1, 4, 4), None, {"impl": "triton"}, "impl='triton'"),
    ],
)
def test_bad_input(x_shape, f, kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        upfirdn2d(torch.zeros(x_shape), f, **kwargs)


def test_setup_filter_bad_input() -> None:
    with pytest.raises(ValueError, match="f: expected a scalar, 1-D or 2-D"):
        setup_filter(torch.ones(2, 2, 2))
    with pytest.raises(ValueError, match="separable=True: expected 1-D taps"):
        setup_filter(torch.ones(2, 2), separable=True)
    with pytest.raises(ValueError, match="sum is not zero"):
        setup_filter([1, -1])


def test_cuda_impl_without_kernels_raises() -> None:
    with pytest.raises(CudaOpsUnavailableError, match="upfirdn2d"):
        upfirdn2d(torch.zeros(1, 1, 4, 4), None, impl="cuda")
