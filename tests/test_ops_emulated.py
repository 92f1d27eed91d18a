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

import importlib
import os

import pytest
import torch

import ops_kernel_cases as cases
from ops_kernel_suite import (  # noqa: F401  shared declarations, run here with this module's ``k``
    test_backward_keeps_one_tensor,
    test_bias_act_gradients,
    test_bias_act_matches_reference,
    test_filtered_lrelu_dtypes,
    test_filtered_lrelu_gradients,
    test_filtered_lrelu_grid,
    test_filtered_lrelu_keeps_the_mask,
    test_filtered_lrelu_large_tiles,
    test_filtered_lrelu_mask_codes,
    test_filtered_lrelu_mask_codes_across_tiles,
    test_filtered_lrelu_nvidia_vectors,
    test_upfirdn2d_dtypes,
    test_upfirdn2d_filter_gradient,
    test_upfirdn2d_gradients,
    test_upfirdn2d_grid,
    test_upfirdn2d_large_tiles,
    test_upfirdn2d_strided_input,
    test_upfirdn2d_tiled_gradients,
)
from ops import _build, _toolchain, extension, setup_filter
from ops.filtered_lrelu import _filtered_lrelu_ref, _temporary_size, _transposed

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


# --- filtered_lrelu ------------------------------------------------------------------------------


def test_filtered_lrelu_opcheck(k) -> None:
    x = torch.randn(2, 3, 6, 5, dtype=torch.float64, generator=cases.gen(), requires_grad=True)
    b = torch.randn(3, dtype=torch.float64, generator=cases.gen(1), requires_grad=True)
    fu = torch.rand(4, dtype=torch.float64, generator=cases.gen(2))
    fd = torch.rand(3, 2, dtype=torch.float64, generator=cases.gen(3))
    args = (2, 2, 3, 2, 1, 2, 1.4, 0.2, 0.8, False, True)
    torch.library.opcheck(k.raw.filtered_lrelu.default, (x, fu, fd, b) + args)
    x_cl = x.detach().to(memory_format=torch.channels_last)
    torch.library.opcheck(k.raw.filtered_lrelu.default, (x_cl, fu, fd, None) + args[:-1] + (False,))
    # The backward's operator, with the parameters the autograd formula gives it.
    y, mask = k.raw.filtered_lrelu(x.detach(), fu, fd, b.detach(), *args)
    t_w, t_h = _temporary_size((6, 5), fu, 2, 3, 2, 1, 2)
    forward = (2, 2, 3, 1, 0, 0, t_w, t_h, y.shape[3], y.shape[2], 4.0, 1.0, False, False, 1.4, 0.2)
    f1, f2, params = _transposed(fu, fd, forward, (6, 5))
    dy = torch.randn(y.shape, dtype=torch.float64, generator=cases.gen(4), requires_grad=True)
    torch.library.opcheck(k.raw.filtered_lrelu_masked.default, (dy, mask, f1, f2, *params))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda raw, x, f: raw.filtered_lrelu(x[0], f, f, None, 2, 2, 0, 0, 0, 0, 1.0, 0.2, None, False, False),
         "filtered_lrelu: x must be 4-D"),
        (lambda raw, x, f: raw.filtered_lrelu(x, f[None, None], f, None, 2, 2, 0, 0, 0, 0, 1.0, 0.2, None, False,
                                              False),
         "fu must be a non-empty 1-D .* or 2-D filter"),
        (lambda raw, x, f: raw.filtered_lrelu(x, f, f.int(), None, 2, 2, 0, 0, 0, 0, 1.0, 0.2, None, False, False),
         "fd must be floating-point"),
        (lambda raw, x, f: raw.filtered_lrelu(x, f, f, torch.zeros(5), 2, 2, 0, 0, 0, 0, 1.0, 0.2, None, False, False),
         r"b must be 1-D of length x.shape\[1\] = 2"),
        (lambda raw, x, f: raw.filtered_lrelu(x, f, f, torch.zeros(2, dtype=torch.float64), 2, 2, 0, 0, 0, 0, 1.0, 0.2,
                                              None, False, False), "b must have x's dtype"),
        (lambda raw, x, f: raw.filtered_lrelu(x, f, f, None, 0, 2, 0, 0, 0, 0, 1.0, 0.2, None, False, False),
         "up and down must be >= 1"),
        (lambda raw, x, f: raw.filtered_lrelu(x, f, f, None, 1, 1, -2, -2, 0, 0, 1.0, 0.2, None, False, False),
         "leaves no samples"),
        (lambda raw, x, f: raw.filtered_lrelu(x, f, f, None, 2, 2, 0, 0, 0, 0, 1.0, 0.2, -1.0, False, False),
         "clamp must be None or >= 0"),
        (lambda raw, x, f: raw.filtered_lrelu(x, torch.ones(200, 200), f, None, 2, 2, 200, 200, 200, 200, 1.0, 0.2,
                                              None, False, False), "too large for the fused kernel's shared memory"),
        (lambda raw, x, f: raw.filtered_lrelu_masked(x, torch.zeros(1, 2, 5, 2), f, f, 2, 2, 0, 0, 0, 0, 6, 5, 2, 2,
                                                     1.0, 1.0, False, False, 1.0, 0.2), "mask must be uint8"),
        (lambda raw, x, f: raw.filtered_lrelu_masked(x, torch.zeros(1, 2, 5, 3, dtype=torch.uint8), f, f, 2, 2, 0, 0,
                                                     0, 0, 6, 5, 2, 2, 1.0, 1.0, False, False, 1.0, 0.2),
         r"mask must have shape \[N, C, t_h, ceil\(t_w / 4\)\] = \[1, 2, 5, 2\]"),
    ],
)
def test_filtered_lrelu_checks_name_the_argument(k, call, match) -> None:
    with pytest.raises(RuntimeError, match=match):
        call(k.raw, torch.zeros(1, 2, 4, 4), torch.ones(3))


def test_filtered_lrelu_public_op_on_the_kernel(k, monkeypatch) -> None:
    # The public function with impl resolved to the kernel (here: the emulation's namespace).
    fl = importlib.import_module("ops.filtered_lrelu")  # the module (ops.filtered_lrelu is the function)

    monkeypatch.setattr(fl, "resolve_impl", lambda *args: "cuda")
    monkeypatch.setattr(_build, "NAMESPACE", k.namespace)
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64, generator=cases.gen(), requires_grad=True)
    f = setup_filter([1, 3, 3, 1], separable=True).double()
    got = fl.filtered_lrelu(x, f, f, None, 2, 2, 3, clamp=1.0)
    assert "filtered_lrelu" in str(got.grad_fn)  # the registered operator's autograd node
    cases.assert_close(got, fl._filtered_lrelu_ref(x, f, f, None, 2, 2, (3, 3, 3, 3), 2**0.5, 0.2, 1.0, False),
                       torch.float64)
    with pytest.raises(ValueError, match="fd: requires grad, but the fused filtered_lrelu kernel gives no gradient"):
        fl.filtered_lrelu(x, f, f.clone().requires_grad_(True), None, 2, 2, 3)
    with torch.no_grad():  # no gradient will be taken: a filter that requires grad is fine
        fl.filtered_lrelu(x, f, f.clone().requires_grad_(True), None, 2, 2, 3)


def test_filtered_lrelu_third_derivative(k) -> None:
    # The backward is linear in dy with fixed codes, so every derivative order runs on the kernel.
    x = torch.randn(1, 2, 5, 5, dtype=torch.float64, generator=cases.gen(), requires_grad=True)
    f = setup_filter([1, 3, 3, 1], separable=True).double()
    fn = lambda x: k.filtered_lrelu(x, f, f, None, 2, 2, 3)  # noqa: E731
    (g,) = torch.autograd.grad(fn(x).square().sum(), x, create_graph=True)
    (gg,) = torch.autograd.grad(g.square().sum(), x, create_graph=True)
    (ggg,) = torch.autograd.grad(gg.square().sum(), x)
    xr = x.detach().requires_grad_(True)
    fr = lambda x: _filtered_lrelu_ref(x, f, f, None, 2, 2, (3, 3, 3, 3), 2**0.5, 0.2, None, False)  # noqa: E731
    (gr,) = torch.autograd.grad(fr(xr).square().sum(), xr, create_graph=True)
    (ggr,) = torch.autograd.grad(gr.square().sum(), xr, create_graph=True)
    (gggr,) = torch.autograd.grad(ggr.square().sum(), xr)
    cases.assert_close(ggg, gggr, torch.float64)


def test_kernels_under_torch_compile(k) -> None:
    # One graph (fullgraph) through the operators and their autograd formulas.
    f = setup_filter([1, 3, 3, 1])

    def fn(x, b):
        y = k.bias_act(k.upfirdn2d(x, f, up=2, padding=(2, 1, 2, 1), gain=4), b, act="swish", clamp=256)
        return k.filtered_lrelu(y, f, f, b, up=2, down=2, padding=3, clamp=256)

    x = torch.randn(2, 3, 8, 8, generator=cases.gen(), requires_grad=True)
    b = torch.randn(3, generator=cases.gen(1), requires_grad=True)
    compiled = torch.compile(fn, backend="aot_eager", fullgraph=True)
    got = compiled(x, b)
    grads = torch.autograd.grad(got.square().sum(), (x, b))
    want = fn(x, b)
    torch.testing.assert_close(got, want)
    for g, w in zip(grads, torch.autograd.grad(want.square().sum(), (x, b))):
        torch.testing.assert_close(g, w)
