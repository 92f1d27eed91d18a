"""The kernels' own code, run on the CPU, against the reference; no GPU needed.

csrc/cpu_emulation.cpp runs the per-element and per-thread code of the CUDA kernels (shared
headers), with their launch geometry and explicit barriers, behind the same host code (checks,
layouts, filter preparation) and the same Python registration (fake tensors, autograd to second
order) as the CUDA build. These tests hold that to the reference tests' grids. They need a C++
compiler and ninja (the extension builds once, in about half a minute, then comes from the cache);
without them they are skipped, unless STYLEGAN_OPS_REQUIRE_EMULATION=1 (CI) makes that a failure.
What the emulation cannot show (races, barriers, the device compiler) is left to ``-m gpu``.
"""

from __future__ import annotations

import os

import pytest
import torch

import ops_kernel_cases as cases
from ops_kernel_suite import (  # noqa: F401  shared declarations, run here with this module's ``k``
    test_backward_keeps_one_tensor,
    test_bias_act_gradients,
    test_bias_act_matches_reference,
    test_upfirdn2d_dtypes,
    test_upfirdn2d_filter_gradient,
    test_upfirdn2d_gradients,
    test_upfirdn2d_grid,
    test_upfirdn2d_large_tiles,
    test_upfirdn2d_strided_input,
    test_upfirdn2d_tiled_gradients,
)
from ops import _build, _toolchain, extension, setup_filter

CURVED = ["tanh", "sigmoid", "elu", "selu", "softplus", "swish"]


@pytest.fixture(scope="module")
def k() -> cases.Kernels:
    missing = [t.problem for t in (_toolchain.find_cxx(), _toolchain.find_ninja()) if t.path is None]
    if missing:
        if os.environ.get("STYLEGAN_OPS_REQUIRE_EMULATION") == "1":
            pytest.fail("; ".join(missing))
        pytest.skip("the CPU emulation needs a C++ compiler and ninja: " + "; ".join(missing))
    try:
        namespace = extension.load_emulation()
    except _build.BuildError as err:  # a compile error in csrc/ is a failure, never a skip
        pytest.fail(f"the CPU emulation of the kernels does not build:\n{err}")
    return cases.Kernels(namespace, torch.device("cpu"))


# --- upfirdn2d ----------------------------------------------------------------------------------


def test_upfirdn2d_opcheck(k) -> None:
    x = torch.randn(2, 3, 6, 5, dtype=torch.float64, generator=cases.gen(), requires_grad=True)
    for f, args in [
        (setup_filter([1, 3, 3, 1]).double(), (2, 2, 1, 1, 2, 1, 2, 1, False, 4.0)),
        (torch.rand(2, 3, dtype=torch.float64, generator=cases.gen(1)), (1, 3, 2, 1, -1, 2, 0, 1, True, 0.5)),
    ]:
        torch.library.opcheck(k.raw.upfirdn2d.default, (x, f) + args)
        torch.library.opcheck(k.raw.upfirdn2d.default, (x.detach().to(memory_format=torch.channels_last), f) + args)


@pytest.mark.parametrize(
    "x_shape, f, args, match",
    [
        ((3, 8, 8), torch.ones(4, 4), (1, 1, 1, 1, 0, 0, 0, 0), "upfirdn2d: x must be 4-D"),
        ((1, 1, 8, 8), torch.ones(2, 2, 2), (1, 1, 1, 1, 0, 0, 0, 0), "f must be a non-empty 2-D filter"),
        ((1, 1, 8, 8), torch.ones(3, 3), (0, 1, 1, 1, 0, 0, 0, 0), "upx and downx must be >= 1"),
        ((1, 1, 4, 4), torch.ones(3, 3), (1, 1, 1, 1, -1, -1, 0, 0), "along x, the input .* smaller than the filter"),
    ],
)
def test_upfirdn2d_checks_name_the_argument(k, x_shape, f, args, match) -> None:
    with pytest.raises(RuntimeError, match=match):
        k.raw.upfirdn2d(torch.zeros(x_shape), f, *args, False, 1.0)
    with pytest.raises(RuntimeError, match="x must be float32, float64, float16 or bfloat16"):
        k.raw.upfirdn2d(torch.zeros(1, 1, 4, 4, dtype=torch.int32), torch.ones(1, 1), 1, 1, 1, 1, 0, 0, 0, 0, False, 1.0)


# --- bias_act -----------------------------------------------------------------------------------


def test_bias_act_negative_alpha_works_from_the_input(k) -> None:
    # lrelu with alpha < 0 is not monotonic: backward must use x, not y (see uses_output()).
    cases.bias_act_gradients(k, "lrelu", None, alpha=-0.3)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("act", ["lrelu", "swish", "tanh"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_bias_act_dtypes(k, dtype, act, layout) -> None:
    cases.bias_act_dtype(k, dtype, act, layout)


def test_bias_act_empty_and_zero_gain(k) -> None:
    assert k.bias_act(torch.zeros(0, 3), torch.zeros(3), act="lrelu").shape == (0, 3)
    x = torch.randn(2, 3, dtype=torch.float64, generator=cases.gen(), requires_grad=True)
    (dx,) = torch.autograd.grad(k.bias_act(x, act="tanh", gain=0.0).sum(), x)
    assert torch.equal(dx, torch.zeros_like(dx))  # no 0 * (y / 0) = NaN


def test_bias_act_third_derivative_is_refused_clearly(k) -> None:
    x = torch.randn(2, 3, dtype=torch.float64, generator=cases.gen(), requires_grad=True)
    (g,) = torch.autograd.grad(k.bias_act(x, act="tanh").sum(), x, create_graph=True)
    (gg,) = torch.autograd.grad(g.sum(), x, create_graph=True)
    with pytest.raises(NotImplementedError, match="third derivatives"):
        torch.autograd.grad(gg.sum(), x)


@pytest.mark.parametrize("act", ["lrelu", "swish"])
def test_bias_act_opcheck(k, act) -> None:
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64, generator=cases.gen(), requires_grad=True)
    b = torch.randn(3, dtype=torch.float64, generator=cases.gen(1), requires_grad=True)
    dy = torch.randn(2, 3, 4, 4, dtype=torch.float64, generator=cases.gen(2), requires_grad=True)
    y = k.raw.bias_act(x.detach(), b.detach(), 1, act, 0.2, 1.4, 0.9)
    saved = (None, y, None) if act == "lrelu" else (x, None, b)
    torch.library.opcheck(k.raw.bias_act.default, (x, b, 1, act, 0.2, 1.4, 0.9))
    torch.library.opcheck(k.raw.bias_act.default, (x.detach().to(memory_format=torch.channels_last), None, 1, act, 0.2, 1.4, None))
    torch.library.opcheck(k.raw.bias_act_grad.default, (dy,) + saved + (1, act, 0.2, 1.4, 0.9))
    torch.library.opcheck(
        k.raw.bias_act_grad2.default,
        (dy.detach(), dy.detach()) + tuple(t if t is None else t.detach() for t in saved) + (1, act, 0.2, 1.4, 0.9),
        test_utils=("test_schema", "test_faketensor"),
    )


def test_bias_act_checks_name_the_argument(k) -> None:
    x = torch.zeros(2, 4, 3)
    with pytest.raises(RuntimeError, match="act='gelu' is not one of"):
        k.raw.bias_act(x, None, 1, "gelu", 0.0, 1.0, None)
    with pytest.raises(RuntimeError, match=r"b must be 1-D of length x.shape\[1\] = 4"):
        k.raw.bias_act(x, torch.zeros(5), 1, "linear", 0.0, 1.0, None)
    with pytest.raises(RuntimeError, match="dim must be in"):
        k.raw.bias_act(x, torch.zeros(4), 3, "linear", 0.0, 1.0, None)
    with pytest.raises(RuntimeError, match="clamp must be None or >= 0"):
        k.raw.bias_act(x, None, 1, "linear", 0.0, 1.0, -1.0)
    with pytest.raises(RuntimeError, match="b must have x's dtype"):
        k.raw.bias_act(x, torch.zeros(4, dtype=torch.float64), 1, "linear", 0.0, 1.0, None)
    with pytest.raises(RuntimeError, match="computes its gradient from the output y, which was not given"):
        k.raw.bias_act_grad(x, x, None, None, 1, "relu", 0.0, 1.0, None)
    with pytest.raises(RuntimeError, match="dy must have y's shape"):
        k.raw.bias_act_grad(torch.zeros(2, 4), None, x, None, 1, "relu", 0.0, 1.0, None)


def test_kernels_under_torch_compile(k) -> None:
    # One graph (fullgraph) through both operators and their autograd formulas.
    f = setup_filter([1, 3, 3, 1])

    def fn(x, b):
        return k.bias_act(k.upfirdn2d(x, f, up=2, padding=(2, 1, 2, 1), gain=4), b, act="swish", clamp=256)

    x = torch.randn(2, 3, 8, 8, generator=cases.gen(), requires_grad=True)
    b = torch.randn(3, generator=cases.gen(1), requires_grad=True)
    compiled = torch.compile(fn, backend="aot_eager", fullgraph=True)
    got = compiled(x, b)
    grads = torch.autograd.grad(got.square().sum(), (x, b))
    want = fn(x, b)
    torch.testing.assert_close(got, want)
    for g, w in zip(grads, torch.autograd.grad(want.square().sum(), (x, b))):
        torch.testing.assert_close(g, w)
