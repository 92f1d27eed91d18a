"""Tests of ops.bias_act: hand-computed values, gradients to second order, dtypes, bad input."""

from __future__ import annotations

import math

import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck

from ops import ACTIVATIONS, bias_act
from ops.impl import CudaOpsUnavailableError


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_defaults_linear_is_identity_plus_bias() -> None:
    x = torch.tensor([[1.0, -2.0], [3.0, -4.0]])
    b = torch.tensor([10.0, 20.0])
    out = bias_act(x, b, dim=1)
    assert torch.equal(out, torch.tensor([[11.0, 18.0], [13.0, 16.0]]))


def test_lrelu_default_alpha_and_gain() -> None:
    x = torch.tensor([-1.0, 0.0, 2.0])
    out = bias_act(x, act="lrelu", dim=0)
    expected = torch.tensor([-0.2, 0.0, 2.0]) * math.sqrt(2)
    torch.testing.assert_close(out, expected)


def test_explicit_alpha_gain_and_clamp() -> None:
    x = torch.tensor([-10.0, -1.0, 0.5, 10.0])
    out = bias_act(x, act="lrelu", alpha=0.5, gain=2.0, clamp=3.0, dim=0)
    torch.testing.assert_close(out, torch.tensor([-3.0, -1.0, 1.0, 3.0]))


def test_clamp_zero_gives_zero() -> None:
    x = torch.randn(4, 3, generator=_gen())
    assert torch.count_nonzero(bias_act(x, clamp=0.0)) == 0


@pytest.mark.parametrize(
    "act, value, expected",
    [
        ("relu", -1.0, 0.0),
        ("relu", 2.0, 2.0 * math.sqrt(2)),
        ("tanh", 0.5, math.tanh(0.5)),
        ("sigmoid", 0.0, 0.5),
        ("elu", -1.0, math.exp(-1.0) - 1.0),
        ("selu", 1.0, 1.0507009873554805),
        ("softplus", 0.0, math.log(2.0)),
        ("swish", 1.0, 1.0 / (1.0 + math.exp(-1.0)) * math.sqrt(2)),
    ],
)
def test_activation_values(act: str, value: float, expected: float) -> None:
    out = bias_act(torch.tensor([value], dtype=torch.float64), act=act, dim=0)
    assert out.item() == pytest.approx(expected, rel=1e-12)


def test_bias_along_other_dim() -> None:
    x = torch.zeros(2, 3, 4)
    b = torch.arange(4.0)
    out = bias_act(x, b, dim=2)
    assert torch.equal(out[1, 2], b)


@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
@pytest.mark.parametrize("clamp", [None, 0.7])
def test_gradcheck_and_gradgradcheck(act: str, clamp: float | None) -> None:
    gen = _gen(1)
    # Stay away from the kinks of relu/lrelu/clamp, where finite differences are meaningless.
    x = torch.randn(2, 3, 4, dtype=torch.float64, generator=gen)
    x = x + 0.05 * torch.sign(x)
    x.requires_grad_(True)
    b = (0.01 * torch.randn(3, dtype=torch.float64, generator=gen)).requires_grad_(True)
    fn = lambda x, b: bias_act(x, b, dim=1, act=act, gain=1.3, clamp=clamp)  # noqa: E731
    assert gradcheck(fn, (x, b))
    assert gradgradcheck(fn, (x, b))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_dtypes_follow_input(dtype: torch.dtype) -> None:
    x = torch.randn(2, 4, 3, 3, generator=_gen()).to(dtype)
    b = torch.randn(4, generator=_gen(2))  # float32 bias is cast to x's dtype
    out = bias_act(x, b, act="lrelu", clamp=256)
    assert out.dtype == dtype
    ref = bias_act(x.double(), b.double(), act="lrelu", clamp=256)
    tol = {torch.float32: 1e-6, torch.float16: 1e-2, torch.bfloat16: 5e-2}[dtype]
    torch.testing.assert_close(out.double(), ref, rtol=tol, atol=tol)


def test_noncontiguous_and_channels_last() -> None:
    x = torch.randn(2, 4, 5, 6, generator=_gen())
    b = torch.randn(4, generator=_gen(3))
    expected = bias_act(x, b, act="swish")
    cl = x.to(memory_format=torch.channels_last)
    torch.testing.assert_close(bias_act(cl, b, act="swish"), expected)
    strided = torch.randn(2, 4, 5, 12, generator=_gen())[..., ::2]
    torch.testing.assert_close(bias_act(strided, b, act="swish"), bias_act(strided.contiguous(), b, act="swish"))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"act": "gelu"}, "act='gelu': expected one of"),
        ({"b": torch.zeros(5)}, r"b: expected a 1-D tensor of length x.shape\[1\] = 4"),
        ({"b": torch.zeros(4, 1)}, "b: expected a 1-D tensor"),
        ({"b": torch.zeros(4), "dim": 4}, "dim=4: expected 0 <= dim < x.ndim"),
        ({"clamp": -1.0}, "clamp=-1.0: expected None"),
        ({"impl": "fast"}, "impl='fast': expected one of"),
    ],
)
def test_bad_input(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        bias_act(torch.zeros(2, 4, 3, 3), **kwargs)


def test_integer_input_refused() -> None:
    with pytest.raises(ValueError, match="x: expected a floating-point tensor"):
        bias_act(torch.zeros(2, 4, dtype=torch.int64))


def test_cuda_impl_without_kernels_raises() -> None:
    with pytest.raises(CudaOpsUnavailableError, match="impl='cuda' for bias_act"):
        bias_act(torch.zeros(2, 4), impl="cuda")


def test_env_var_overrides_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    x = torch.zeros(2, 4)
    monkeypatch.setenv("STYLEGAN_OPS", "cuda")
    with pytest.raises(CudaOpsUnavailableError):
        bias_act(x)
    assert torch.equal(bias_act(x, impl="ref"), x)  # an explicit impl wins over the variable
    monkeypatch.setenv("STYLEGAN_OPS", "nonsense")
    with pytest.raises(ValueError, match="STYLEGAN_OPS='nonsense'"):
        bias_act(x)
    monkeypatch.setenv("STYLEGAN_OPS", "ref")
    assert torch.equal(bias_act(x), x)
