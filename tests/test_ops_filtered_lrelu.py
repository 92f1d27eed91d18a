"""Tests of ops.filtered_lrelu's reference: NVIDIA's float64 test vectors (values and gradients),
gradients to second order, the output-size formula, dtypes, layouts and bad input."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from nvidia_fixtures import fixtures_dir
from test_ops_upfirdn2d import naive_upfirdn2d
from torch.autograd import gradcheck, gradgradcheck

from ops import bias_act, setup_filter, upfirdn2d
from ops.filtered_lrelu import filtered_lrelu, filtered_lrelu_output_size
from ops.impl import CudaOpsUnavailableError


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- NVIDIA's test vectors ----------------------------------------------------------------------


def _vectors_path() -> Path:
    # Beside the NVIDIA pickles: ../shared/fixtures/nvidia-ops (or $STYLEGAN_FIXTURES/nvidia-ops).
    return fixtures_dir().parent / "nvidia-ops" / "filtered_lrelu.npz"


def _load_vectors() -> tuple[list[dict], dict[str, np.ndarray]]:
    path = _vectors_path()
    if not path.is_file():
        pytest.skip(f"NVIDIA filtered_lrelu test vectors not found: {path} "
                    "(set STYLEGAN_FIXTURES to the fixtures folder)")
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    return json.loads(str(arrays.pop("meta"))), arrays


VECTOR_CASES = [
    "up2down2",
    "up4down2_clamp",
    "up2down1",
    "up1down2_flip",
    "up2down2_radial",
    "up1down1_noop_filters",
    "crop_negative_pad",
]


def run_vector_case(name: str, fn=None, device: torch.device | str = "cpu"):
    """One case of the vectors through ``fn`` (``filtered_lrelu``'s positional arguments; default:
    the reference) on ``device``: ``(got, want)``, two dicts with ``y``, ``dx`` and (with a bias)
    ``db`` as float64 CPU tensors."""
    fn = fn or (lambda *args: filtered_lrelu(*args, impl="ref"))
    meta, arrays = _load_vectors()
    (case,) = [m for m in meta if m["name"] == name]

    def get(key: str) -> torch.Tensor | None:
        value = arrays.get(f"{name}/{key}")
        return None if value is None else torch.from_numpy(value)

    x = get("x").to(device).requires_grad_(True)
    b = get("b")
    b = None if b is None else b.to(device).requires_grad_(True)
    fu, fd = (None if f is None else f.to(device) for f in (get("fu"), get("fd")))
    y = fn(x, fu, fd, b, case["up"], case["down"], case["padding"], case["gain"], case["slope"], case["clamp"],
           case["flip_filter"])
    inputs = (x,) if b is None else (x, b)
    grads = torch.autograd.grad(y, inputs, get("dy").to(device))
    got = {"y": y.detach(), "dx": grads[0]}
    want = {"y": get("y"), "dx": get("dx")}
    if b is not None:
        got["db"], want["db"] = grads[1], get("db")
    return {k: v.detach().double().cpu() for k, v in got.items()}, want


@pytest.mark.parametrize("name", VECTOR_CASES)
def test_matches_nvidia_vectors(name: str) -> None:
    got, want = run_vector_case(name)
    assert got.keys() == want.keys()
    for key in want:
        assert got[key].shape == want[key].shape, key
        scale = want[key].abs().max().item()
        torch.testing.assert_close(got[key], want[key], rtol=0, atol=1e-12 * max(scale, 1e-300), msg=key)


def test_vector_cases_are_all_listed() -> None:
    meta, _ = _load_vectors()
    assert sorted(m["name"] for m in meta) == sorted(VECTOR_CASES)


# --- the grid (the kernels' tests run it too: tests/ops_kernel_suite.py) ---------------------------


def _taps(seed: int, *shape: int) -> torch.Tensor:
    """Asymmetric positive taps (a flipped filter gives a different result)."""
    return torch.rand(*shape, dtype=torch.float64, generator=_gen(seed)) + 0.1


FILTERS = {
    "none": lambda: (None, None),
    "sep4_sep6": lambda: (_taps(1, 4), _taps(2, 6)),
    "sep12": lambda: (_taps(3, 12), _taps(4, 12)),  # StyleGAN3's usual length
    "2d": lambda: (_taps(5, 5, 4), _taps(6, 3, 6)),
    "2d_up_sep_down": lambda: (_taps(7, 4, 4), _taps(8, 3)),
}


def grid_padding(fu: torch.Tensor | None, fd: torch.Tensor | None, offsets: tuple[int, int, int, int]):
    """What the filters take away (so the output is about in * up / down), plus ``offsets``."""
    (fu_w, fu_h), (fd_w, fd_h) = (((1, 1) if f is None else (f.shape[-1], f.shape[0])) for f in (fu, fd))
    px, py = fu_w + fd_w - 2, fu_h + fd_h - 2
    base = (px // 2, px - px // 2, py // 2, py - py // 2)
    return tuple(p + o for p, o in zip(base, offsets))


GRID = list(
    itertools.product(
        FILTERS,
        [(1, 1), (2, 2), (4, 2), (1, 2), (2, 1), (3, 3)],  # (up, down)
        [(0, 0, 0, 0), (-2, 3, 1, -1)],  # padding offsets (negative: crops)
        [(None, False), (0.5, True)],  # (clamp, flip_filter)
    )
)


def naive_filtered_lrelu(x, fu, fd, b, up, down, padding, gain, slope, clamp, flip):
    """The definition with upfirdn2d's literal loop implementation."""
    t = naive_upfirdn2d(x + b[None, :, None, None], fu, (up, up), (1, 1), padding, flip, gain=up**2)
    t = torch.where(t > 0, t, t * slope) * gain
    if clamp is not None:
        t = t.clamp(-clamp, clamp)
    return naive_upfirdn2d(t, fd, (1, 1), (down, down), (0, 0, 0, 0), flip)


@pytest.mark.parametrize("fname, updown, offsets, clamp_flip", GRID)
def test_matches_naive_definition(fname, updown, offsets, clamp_flip) -> None:
    clamp, flip = clamp_flip
    fu, fd = FILTERS[fname]()
    pad = grid_padding(fu, fd, offsets)
    x = torch.randn(2, 3, 7, 6, dtype=torch.float64, generator=_gen())
    b = torch.randn(3, dtype=torch.float64, generator=_gen(1))
    got = filtered_lrelu(x, fu, fd, b, *updown, pad, 1.3, 0.2, clamp, flip)
    one = torch.ones(1, dtype=torch.float64)
    want = naive_filtered_lrelu(x, one if fu is None else fu, one if fd is None else fd, b, *updown, pad, 1.3, 0.2,
                                clamp, flip)
    torch.testing.assert_close(got, want)


# --- semantics ----------------------------------------------------------------------------------


def test_without_filters_it_is_bias_act_lrelu() -> None:
    x = torch.randn(2, 3, 5, 4, dtype=torch.float64, generator=_gen())
    b = torch.randn(3, dtype=torch.float64, generator=_gen(1))
    got = filtered_lrelu(x, None, None, b, gain=1.7, slope=0.3, clamp=0.9)
    torch.testing.assert_close(got, bias_act(x, b, act="lrelu", alpha=0.3, gain=1.7, clamp=0.9))


def test_is_upfirdn2d_then_lrelu_then_upfirdn2d() -> None:
    # The definition written out with the public upfirdn2d, bias added before upsampling.
    x = torch.randn(1, 2, 6, 6, dtype=torch.float64, generator=_gen(2))
    b = torch.randn(2, dtype=torch.float64, generator=_gen(3))
    fu, fd = setup_filter([1, 3, 3, 1], separable=True).double(), setup_filter([1, 2, 1]).double()
    pad = (3, 2, 1, 4)
    want = upfirdn2d(x + b[None, :, None, None], fu, up=2, padding=pad, gain=4)
    want = (torch.nn.functional.leaky_relu(want, 0.2) * 2**0.5).clamp(-0.5, 0.5)
    want = upfirdn2d(want, fd, down=2)
    got = filtered_lrelu(x, fu, fd, b, up=2, down=2, padding=pad, clamp=0.5)
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("up, down", [(1, 1), (2, 2), (4, 2), (2, 1), (1, 2), (3, 4)])
@pytest.mark.parametrize("fu_taps, fd_taps", [(None, None), (4, 6), (12, 12), ((5, 3), (2, 7))])
@pytest.mark.parametrize("padding", [0, (2, 1), (5, 6, -1, 3)])
def test_output_size_formula(up, down, fu_taps, fd_taps, padding) -> None:
    def make(taps):
        if taps is None:
            return None
        return torch.ones(taps) if isinstance(taps, tuple) else torch.ones(taps)

    fu, fd = make(fu_taps), make(fd_taps)
    x = torch.randn(1, 1, 11, 13, dtype=torch.float64, generator=_gen())
    size = filtered_lrelu_output_size((11, 13), fu, fd, up, down, padding)
    if min(size) < 1:  # nothing left: refused with the reason
        with pytest.raises(ValueError, match="gives an empty output"):
            filtered_lrelu(x, fu, fd, None, up, down, padding)
        return
    assert tuple(filtered_lrelu(x, fu, fd, None, up, down, padding).shape[2:]) == size


def test_output_size_by_hand() -> None:
    # StyleGAN3's 2x-up/2x-down layer: 36 px in, 12-tap filters, padding 10 per side:
    # (36 * 2 + 20 - 11 - 11 + 1) // 2 = 35.
    f12 = torch.ones(12)
    assert filtered_lrelu_output_size((36, 36), f12, f12, 2, 2, 10) == (35, 35)
    # 2-D filters: width from the last axis, height from the first.
    assert filtered_lrelu_output_size((8, 8), torch.ones(3, 5), None, 1, 1, 0) == (6, 4)


# --- gradients to second order -------------------------------------------------------------------


def _filters(kind: str) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    g = _gen(7)
    if kind == "sep":
        return (torch.rand(4, dtype=torch.float64, generator=g) + 0.2,
                torch.rand(5, dtype=torch.float64, generator=g) + 0.2)
    if kind == "2d":
        return (torch.rand(4, 3, dtype=torch.float64, generator=g), torch.rand(2, 5, dtype=torch.float64, generator=g))
    if kind == "mixed":
        return (torch.rand(3, 4, dtype=torch.float64, generator=g), torch.rand(3, dtype=torch.float64, generator=g))
    return None, None


GRAD_CASES = {
    # name: (filters, up, down, padding, clamp, flip)
    "up2down2_separable": ("sep", 2, 2, (3, 2, 3, 2), None, False),
    "2d_filters": ("2d", 2, 2, (2, 3, 1, 2), None, False),
    "mixed_filters": ("mixed", 2, 1, 2, None, False),
    "clamp": ("sep", 2, 2, 3, 0.4, False),
    "flip_filter": ("2d", 2, 1, (1, 2, 2, 1), None, True),
    "negative_padding": ("sep", 2, 2, (-1, 3, 2, -2), 1.0, False),
    "up4_down2": ("sep", 4, 2, (2, 1, 3, 0), None, False),
    "no_filters": ("none", 1, 1, 0, 0.5, False),
    "no_filters_resampled": ("none", 2, 3, (1, 0, 0, 1), None, False),
}


@pytest.mark.parametrize("name", GRAD_CASES)
def test_gradcheck_and_gradgradcheck(name: str) -> None:
    kind, up, down, padding, clamp, flip = GRAD_CASES[name]
    fu, fd = _filters(kind)
    x = torch.randn(1, 2, 4, 5, dtype=torch.float64, generator=_gen(8), requires_grad=True)
    b = (0.1 * torch.randn(2, dtype=torch.float64, generator=_gen(9))).requires_grad_(True)
    fn = lambda x, b: filtered_lrelu(x, fu, fd, b, up, down, padding, 1.3, 0.2, clamp, flip)  # noqa: E731
    if clamp is not None:  # the case must really clamp somewhere, and not everywhere
        pre = filtered_lrelu(x.detach(), fu, None, b.detach(), up, 1, padding, 1.3, 0.2, None, flip)
        assert 0 < (pre.abs() > clamp).float().mean() < 0.7
    assert gradcheck(fn, (x, b))
    assert gradgradcheck(fn, (x, b))


# --- dtypes and layouts -------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_dtypes_are_preserved(dtype: torch.dtype) -> None:
    x = torch.randn(2, 3, 8, 8, generator=_gen())
    b = torch.randn(3, generator=_gen(1))
    f = setup_filter([1, 3, 3, 1], separable=True)
    out = filtered_lrelu(x.to(dtype), f, f, b.to(dtype), up=2, down=2, padding=3, clamp=2.0)
    assert out.dtype == dtype
    want = filtered_lrelu(x.double(), f.double(), f.double(), b.double(), up=2, down=2, padding=3, clamp=2.0)
    tol = {torch.float32: 1e-5, torch.float16: 2e-2, torch.bfloat16: 1e-1}[dtype]
    torch.testing.assert_close(out.double(), want, rtol=tol, atol=tol)


def test_channels_last_and_strided_inputs() -> None:
    x = torch.randn(2, 3, 8, 8, generator=_gen())
    f = setup_filter([1, 3, 3, 1])
    want = filtered_lrelu(x, f, f, None, up=2, down=2, padding=3)
    torch.testing.assert_close(filtered_lrelu(x.to(memory_format=torch.channels_last), f, f, None, 2, 2, 3), want)
    wide = torch.zeros(2, 3, 8, 16)
    wide[..., ::2] = x
    torch.testing.assert_close(filtered_lrelu(wide[..., ::2], f, f, None, 2, 2, 3), want)


# --- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "x_shape, kwargs, match",
    [
        ((3, 8, 8), {}, r"x: expected a 4-D floating-point tensor"),
        ((1, 2, 8, 8), {"fu": torch.ones(2, 2, 2)}, "f: expected a non-empty 1-D"),
        ((1, 2, 8, 8), {"fd": torch.ones(0)}, "f: expected a non-empty 1-D"),
        ((1, 2, 8, 8), {"b": torch.zeros(3)}, r"b: expected None or a 1-D tensor of length x.shape\[1\] = 2"),
        ((1, 2, 8, 8), {"up": 0}, "up=0: expected an int >= 1"),
        ((1, 2, 8, 8), {"down": 1.5}, "down=1.5: expected an int >= 1"),
        ((1, 2, 8, 8), {"padding": (1, 2, 3)}, "padding=.*expected an int"),
        ((1, 2, 8, 8), {"gain": 0}, "gain=0: expected a finite number > 0"),
        ((1, 2, 8, 8), {"slope": -0.1}, "slope=-0.1: expected a finite number >= 0"),
        ((1, 2, 8, 8), {"clamp": -1.0}, "clamp=-1.0: expected None or a finite number >= 0"),
        ((1, 2, 8, 8), {"clamp": math.inf}, "clamp=inf"),
        ((1, 2, 4, 4), {"fu": torch.ones(6), "padding": -1}, "padding=-1: .* gives an empty output"),
        ((1, 2, 4, 4), {"impl": "triton"}, "impl='triton'"),
    ],
)
def test_bad_input(x_shape, kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        filtered_lrelu(torch.zeros(x_shape), **kwargs)


def test_integer_input_is_refused() -> None:
    with pytest.raises(ValueError, match="x: expected a 4-D floating-point tensor .* dtype torch.int64"):
        filtered_lrelu(torch.zeros(1, 1, 4, 4, dtype=torch.int64))


def test_cuda_impl_without_kernels_raises() -> None:
    with pytest.raises(CudaOpsUnavailableError, match="filtered_lrelu"):
        filtered_lrelu(torch.zeros(1, 1, 4, 4), impl="cuda")
