"""The CUDA kernels against the reference on a GPU (``pytest -m gpu``; skipped without CUDA).

The same cases as the CPU emulation (tests/ops_kernel_cases.py, on the reference tests' grids) in
float64/32/16 and bfloat16, forward, backward and double backward; then the public ops with
impl='cuda' (filtered_lrelu at StyleGAN3's usual shape), conv2d_resample, the networks' outputs and
gradients (R1 included) with STYLEGAN_OPS=cuda vs ref, the loader's cache and ``python -m ops doctor``.

The first run builds the extensions for this GPU (a minute or two; then cached).
"""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

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
from ops import ACTIVATIONS, _build, bias_act, conv2d_resample, extension, setup_filter, upfirdn2d
from ops.filtered_lrelu import filtered_lrelu
from ops.__main__ import cli

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def k() -> cases.Kernels:
    index = torch.cuda.current_device()
    status = extension.device_status(index)
    failed = {op: s.reason for op, s in status.items() if not s.ok}
    if failed:
        pytest.fail("the CUDA kernels cannot run here:\n" + "\n".join(f"{op}: {r}" for op, r in failed.items()))
    return cases.Kernels(_build.NAMESPACE, torch.device("cuda", index))


# --- more cases on the GPU (the shared ones come from ops_kernel_suite) ----------------------


@pytest.mark.parametrize("up, down", [(1, 1), (2, 1), (1, 2)])
def test_upfirdn2d_more_rows_than_the_grid(k, up, down) -> None:
    # 1751 samples x 40 channel blocks > 65535 grid rows: the tiled kernels' loop over rows.
    cases.upfirdn2d_large_tiles(k, up, down, "contiguous", n=1751, c=40)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_bias_act_dtypes(k, dtype, act, layout) -> None:
    cases.bias_act_dtype(k, dtype, act, layout)


def test_filtered_lrelu_more_rows_than_the_grid(k) -> None:
    # 2 x 33000 planes > 65535 grid rows: the kernel's loop over rows, forward and backward.
    x = torch.randn(2, 33000, 5, 5, device=k.device, requires_grad=True)
    b = torch.randn(33000, device=k.device, requires_grad=True)
    f = setup_filter([1, 3, 3, 1], device=k.device, separable=True)
    results = []
    for run in (k.filtered_lrelu, filtered_lrelu):
        kwargs = {} if run is k.filtered_lrelu else {"impl": "ref"}
        y = run(x, f, f, b, 2, 2, 3, 2**0.5, 0.2, 1.0, False, **kwargs)
        results.append((y, *torch.autograd.grad(y.square().sum(), (x, b))))
    for got, want in zip(*results):
        cases.assert_close(got, want, torch.float32)


def test_filtered_lrelu_stylegan3_layer(k) -> None:
    # StyleGAN3's usual layer: 2x up and down with 12-tap Kaiser filters, 36 -> 36 px, float16.
    f = setup_filter(torch.kaiser_window(12, periodic=False, beta=8.0).tolist(), device=k.device, separable=True)
    x = torch.randn(4, 256, 36, 36, device=k.device, dtype=torch.float16, requires_grad=True)
    b = torch.randn(256, device=k.device, dtype=torch.float16)
    y = filtered_lrelu(x, f, f, b, 2, 2, 11, clamp=256, impl="cuda")
    (dx,) = torch.autograd.grad(y.float().square().sum(), x)
    xr = x.detach().float().requires_grad_(True)
    want = filtered_lrelu(xr, f, f, b.float(), 2, 2, 11, clamp=256, impl="ref")
    (dxr,) = torch.autograd.grad(want.square().sum(), xr)
    assert y.shape == (4, 256, 36, 36)
    cases.assert_close(y, want, torch.float16)
    cases.assert_close(dx, dxr, torch.float16)


def test_filtered_lrelu_refuses_filter_gradients(k) -> None:
    x = torch.randn(1, 2, 6, 6, device=k.device, requires_grad=True)
    f = torch.ones(4, device=k.device, requires_grad=True)
    with pytest.raises(ValueError, match="fu: requires grad"):
        filtered_lrelu(x, f, None, None, 2, 1, 3, impl="cuda")


def test_opcheck(k) -> None:
    x = torch.randn(2, 3, 6, 5, device=k.device, requires_grad=True)
    f = setup_filter([1, 3, 3, 1], device=k.device)
    torch.library.opcheck(k.raw.upfirdn2d.default, (x, f, 2, 2, 1, 1, 2, 1, 2, 1, False, 4.0))
    b = torch.randn(3, device=k.device, requires_grad=True)
    torch.library.opcheck(k.raw.bias_act.default, (x, b, 1, "lrelu", 0.2, 1.4, 256.0))
    torch.library.opcheck(k.raw.bias_act.default, (x, b, 1, "swish", 0.0, 1.4, None))
    fl_args = (setup_filter([1, 3, 3, 1], device=k.device, separable=True), f, b, 2, 2, 3, 2, 2, 1, 1.4, 0.2, 256.0,
               False, True)
    torch.library.opcheck(k.raw.filtered_lrelu.default, (x,) + fl_args)


def test_large_bias_act_matches_reference(k) -> None:
    # Several blocks per thread's grid-stride loop and a bias index over a large tensor.
    x = torch.randn(8, 512, 64, 64, device=k.device, dtype=torch.float16)
    b = torch.randn(512, device=k.device)
    want = bias_act(x.float(), b, act="lrelu", clamp=256, impl="ref")
    cases.assert_close(k.bias_act(x.to(memory_format=torch.channels_last), b, act="lrelu", clamp=256), want, torch.float16)


# --- the public ops, conv2d_resample, the networks ------------------------------------------------


def test_public_ops_with_impl_cuda(k) -> None:
    x = torch.randn(2, 8, 16, 16, device=k.device)
    f = setup_filter([1, 3, 3, 1])  # on the CPU: moved to the input's device, as the reference does
    for kwargs in ({"up": 2, "padding": (2, 1, 2, 1), "gain": 4}, {"down": 2, "padding": 1}):
        cases.assert_close(upfirdn2d(x, f, impl="cuda", **kwargs), upfirdn2d(x, f, impl="ref", **kwargs), torch.float32)
    b = torch.randn(8, device=k.device)
    cases.assert_close(bias_act(x, b, act="lrelu", impl="cuda"), bias_act(x, b, act="lrelu", impl="ref"), torch.float32)


def _grads_under(monkeypatch, mode: str, fn, params: list[torch.Tensor]):
    monkeypatch.setenv("STYLEGAN_OPS", mode)
    for p in params:
        p.grad = None
    out = fn()
    out.square().mean().backward()
    return out.detach(), [p.grad.detach().clone() for p in params]


@pytest.mark.parametrize("up, down, k_size", [(2, 1, 3), (1, 2, 3), (1, 2, 1), (1, 1, 3)])
def test_conv2d_resample_cuda_vs_ref(k, monkeypatch, up, down, k_size) -> None:
    x = torch.randn(2, 16, 16, 16, device=k.device, requires_grad=True)
    w = (torch.randn(8, 16, k_size, k_size, device=k.device) / 12).requires_grad_(True)
    f = setup_filter([1, 3, 3, 1], device=k.device)
    fn = lambda: conv2d_resample(x, w, f, up=up, down=down, padding=k_size // 2)  # noqa: E731
    got = _grads_under(monkeypatch, "cuda", fn, [x, w])
    want = _grads_under(monkeypatch, "ref", fn, [x, w])
    for a, b in zip([got[0], *got[1]], [want[0], *want[1]]):
        cases.assert_close(a, b, torch.float32)


def _relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-12)).item()


def _assert_grads_close(got: list[torch.Tensor], want: list[torch.Tensor], tol: float) -> None:
    """All gradients together within ``tol`` (relative); each one within 10x that, with a floor
    for the parameters whose gradient is tiny compared with the rest."""
    assert len(got) == len(want) > 0
    flat_got = torch.cat([g.flatten().float() for g in got])
    flat_want = torch.cat([w.flatten().float() for w in want])
    assert _relative_error(flat_got, flat_want) < tol
    floor = tol * flat_want.norm().item() / len(want) ** 0.5
    for i, (g, w) in enumerate(zip(got, want)):
        assert (g.float() - w.float()).norm().item() <= 10 * tol * w.float().norm().item() + floor, i


@pytest.mark.parametrize("preset", ["paper256", "stylegan2"])
def test_networks_cuda_vs_ref(k, monkeypatch, preset) -> None:
    """G and D outputs, G+D gradients and R1's gradient (double backward through the kernels)."""
    stylegan = pytest.importorskip("stylegan")
    torch.manual_seed(0)
    G, D = stylegan.build(preset, resolution=32, channel_base=2048, channel_max=64, z_dim=64, w_dim=64)
    G, D = G.to(k.device), D.to(k.device)
    z = torch.randn(8, 64, generator=torch.Generator().manual_seed(1)).to(k.device)
    img_real = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(2)).to(k.device)

    def run(mode: str):
        monkeypatch.setenv("STYLEGAN_OPS", mode)
        G.zero_grad(set_to_none=True)
        D.zero_grad(set_to_none=True)
        img = G(z, None, noise_mode="const")
        logits = D(img, None)
        logits.sum().backward()
        real = img_real.detach().requires_grad_(True)
        (r1_grad,) = torch.autograd.grad(D(real, None).sum(), real, create_graph=True)
        r1_grad.square().sum().backward()
        g_grads = [p.grad.detach().clone() for p in G.parameters() if p.grad is not None]
        d_grads = [p.grad.detach().clone() for p in D.parameters() if p.grad is not None]
        return img.detach(), logits.detach(), r1_grad.detach(), g_grads, d_grads

    got, want = run("cuda"), run("ref")
    tol = 2e-2 if preset == "paper256" else 1e-4  # paper256 runs its top resolutions in float16
    for name, a, b in zip(("img", "logits", "r1_grad"), got[:3], want[:3]):
        assert _relative_error(a, b) < tol, name
    _assert_grads_close(got[3], want[3], tol)
    _assert_grads_close(got[4], want[4], tol)


# --- loader and doctor on a GPU -----------------------------------------------------------------


def test_runtime_build_is_cached_and_found(k) -> None:
    capability = torch.cuda.get_device_capability(k.device)
    for spec in _build.EXTENSIONS.values():
        assert _build.find_prebuilt(spec, [capability], _build.cache_root()) is not None


def test_doctor_reports_an_active_fast_path(k, monkeypatch) -> None:
    monkeypatch.delenv("STYLEGAN_OPS", raising=False)
    result = CliRunner().invoke(cli, ["doctor"])
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1].startswith("fast path: ACTIVE")
