"""Checks of the registered kernels against the reference, shared by two test files:

* ``test_ops_emulated.py`` runs them on the CPU emulation of the kernels (every machine with a C++
  compiler): the kernels' own index arithmetic, tiling and autograd registration, without a GPU;
* ``test_ops_cuda.py`` (``-m gpu``) runs them on the CUDA kernels.

The grids are the reference tests' own (imported from them), so the kernels are held to the same
cases as the reference.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.autograd import gradcheck, gradgradcheck

from ops.bias_act import _bias_act_kernels, _bias_act_ref
from ops.filtered_lrelu import _filtered_lrelu_kernels, _filtered_lrelu_ref, _temporary_size
from ops.upfirdn2d import _parse_padding, _parse_scaling, _upfirdn2d_kernels, _upfirdn2d_ref

# Tolerances relative to the output's magnitude, by dtype (the reference tests' own).
TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-5, torch.float16: 1e-2, torch.bfloat16: 5e-2}


@dataclass(frozen=True)
class Kernels:
    """The registered operators of one namespace, on one device, with the public ops' arguments."""

    namespace: str
    device: torch.device

    @property
    def raw(self):
        return getattr(torch.ops, self.namespace)

    def bias_act(self, x, b=None, dim=1, act="linear", alpha=None, gain=None, clamp=None):
        return _bias_act_kernels(self.namespace, x, b, dim, act, alpha, gain, clamp)

    def upfirdn2d(self, x, f, up=1, down=1, padding=0, flip_filter=False, gain=1.0):
        ups, downs, pads = _parse_scaling(up, "up"), _parse_scaling(down, "down"), _parse_padding(padding)
        return _upfirdn2d_kernels(self.namespace, x, f, ups, downs, pads, flip_filter, gain)

    def filtered_lrelu(self, x, fu=None, fd=None, b=None, up=1, down=1, padding=0, gain=2**0.5, slope=0.2,
                       clamp=None, flip_filter=False):
        return _filtered_lrelu_kernels(self.namespace, x, fu, fd, b, up, down, _parse_padding(padding), gain, slope,
                                       clamp, flip_filter)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def assert_close(got: torch.Tensor, want: torch.Tensor, dtype: torch.dtype) -> None:
    """``got`` (any dtype) equals ``want`` up to the dtype's tolerance, relative to ``want``'s scale."""
    assert got.shape == want.shape, (got.shape, want.shape)
    tol = TOLERANCE[dtype] * max(want.detach().abs().max().item(), 1.0)
    torch.testing.assert_close(got.detach().double(), want.detach().double(), rtol=0, atol=tol)


def layouts(x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The same values in the layouts the kernels handle: contiguous, channels_last, strided."""
    wide = torch.zeros(*x.shape[:-1], 2 * x.shape[-1], dtype=x.dtype, device=x.device)
    wide[..., ::2] = x
    return {"contiguous": x, "channels_last": x.to(memory_format=torch.channels_last), "strided": wide[..., ::2]}


# --- upfirdn2d ----------------------------------------------------------------------------------


def upfirdn2d_matches_reference(k: Kernels, f: torch.Tensor, up, down, pad, flip: bool, layout: str) -> None:
    """Forward in float64 over the reference grid; the output keeps the input's layout."""
    x = torch.randn(2, 3, 7, 6, dtype=torch.float64, generator=gen()).to(k.device)
    f = f.to(k.device)
    xin = layouts(x)[layout]
    out = k.upfirdn2d(xin, f, up=up, down=down, padding=pad, flip_filter=flip, gain=1.5)
    want = _upfirdn2d_ref(x, f, _parse_scaling(up, "up"), _parse_scaling(down, "down"), pad, flip, 1.5)
    assert_close(out, want, torch.float64)
    if layout == "channels_last":
        assert out.is_contiguous(memory_format=torch.channels_last)


def upfirdn2d_gradients(k: Kernels, f: torch.Tensor, up, down, pad, flip: bool) -> None:
    """gradcheck and gradgradcheck in float64 (the reference tests' cases)."""
    f = f.double().to(k.device)
    x = torch.randn(1, 2, 5, 4, dtype=torch.float64, generator=gen(1)).to(k.device).requires_grad_(True)
    fn = lambda x: k.upfirdn2d(x, f, up=up, down=down, padding=pad, flip_filter=flip, gain=0.7)  # noqa: E731
    assert gradcheck(fn, (x,))
    assert gradgradcheck(fn, (x,))


def upfirdn2d_filter_gradient(k: Kernels, separable: bool) -> None:
    """Gradients w.r.t. the filter, 2-D and separable, to second order."""
    if separable:
        f = torch.tensor([0.3, -0.7, 1.1, 0.2], dtype=torch.float64)
        kwargs = dict(up=(2, 1), down=(1, 2), padding=(1, 2, 3, 0), flip_filter=True, gain=1.5)
    else:
        f = torch.tensor([[0.2, 0.5], [0.1, -0.3]], dtype=torch.float64)
        kwargs = dict(up=2, padding=1)
    f = f.to(k.device).requires_grad_(True)
    x = torch.randn(1, 2, 4, 4, dtype=torch.float64, generator=gen(2)).to(k.device).requires_grad_(True)
    fn = lambda x, f: k.upfirdn2d(x, f, **kwargs)  # noqa: E731
    assert gradcheck(fn, (x, f))
    assert gradgradcheck(fn, (x, f))


def upfirdn2d_dtype(k: Kernels, dtype: torch.dtype, f: torch.Tensor, up: int, down: int, pad) -> None:
    """float32/16/bfloat16 forward and backward against the float64 reference."""
    f = f.to(k.device)
    x64 = torch.randn(2, 4, 9, 9, dtype=torch.float64, generator=gen(3)).to(k.device)
    dy_shape = _upfirdn2d_ref(x64, f, (up, up), (down, down), pad, False, 1.0).shape
    dy = torch.randn(dy_shape, dtype=torch.float64, generator=gen(4)).to(k.device)
    x = x64.to(dtype).requires_grad_(True)
    out = k.upfirdn2d(x, f, up=up, down=down, padding=pad)
    assert out.dtype == dtype
    (dx,) = torch.autograd.grad(out, x, dy.to(dtype))
    xr = x.detach().double().requires_grad_(True)
    want = _upfirdn2d_ref(xr, f.double(), (up, up), (down, down), pad, False, 1.0)
    (dxr,) = torch.autograd.grad(want, xr, dy)
    assert_close(out, want, dtype)
    assert_close(dx, dxr, dtype)


def upfirdn2d_large_tiles(k: Kernels, up: int, down: int, layout: str, n: int = 3, c: int = 40) -> None:
    """Images larger than one tile, channel counts that leave partial channel blocks, more
    (sample, channel block) rows than grid rows: the tile edges of every tiled kernel."""
    f = torch.rand(4, 4, dtype=torch.float64, generator=gen(5)) + 0.1  # asymmetric: catches flips
    x = torch.randn(n, c, 70, 37, dtype=torch.float64, generator=gen(6)).to(k.device)
    pad = (2, 1, 3, 0)
    out = k.upfirdn2d(layouts(x)[layout], f.to(k.device), up=up, down=down, padding=pad)
    want = _upfirdn2d_ref(x, f.to(k.device), (up, up), (down, down), pad, False, 1.0)
    assert_close(out, want, torch.float64)


# --- bias_act -----------------------------------------------------------------------------------


def bias_act_matches_reference(k: Kernels, act: str, clamp: float | None, dim: int, layout: str) -> None:
    x = torch.randn(2, 5, 4, 3, dtype=torch.float64, generator=gen(7)).to(k.device)
    b = torch.randn(x.shape[dim], dtype=torch.float64, generator=gen(8)).to(k.device)
    out = k.bias_act(layouts(x)[layout], b, dim=dim, act=act, gain=1.3, clamp=clamp)
    assert_close(out, _bias_act_ref(x, b, dim, act, None, 1.3, clamp), torch.float64)
    assert_close(k.bias_act(x, None, act=act), _bias_act_ref(x, None, 1, act, None, None, None), torch.float64)


def bias_act_gradients(k: Kernels, act: str, clamp: float | None, alpha: float | None = None) -> None:
    """gradcheck and gradgradcheck in float64, away from kinks (the reference tests' setup)."""
    x = torch.randn(2, 3, 4, dtype=torch.float64, generator=gen(1))
    x = (x + 0.05 * torch.sign(x)).to(k.device).requires_grad_(True)
    b = (0.01 * torch.randn(3, dtype=torch.float64, generator=gen(9))).to(k.device).requires_grad_(True)
    fn = lambda x, b: k.bias_act(x, b, dim=1, act=act, alpha=alpha, gain=1.3, clamp=clamp)  # noqa: E731
    assert gradcheck(fn, (x, b))
    assert gradgradcheck(fn, (x, b))


def bias_act_dtype(k: Kernels, dtype: torch.dtype, act: str, layout: str) -> None:
    """float32/16/bfloat16 forward, backward and double backward against the float64 reference."""
    x64 = torch.randn(2, 8, 5, 5, dtype=torch.float64, generator=gen(10)).to(k.device)
    b64 = torch.randn(8, dtype=torch.float64, generator=gen(11)).to(k.device)
    results = []
    for x0, b0, run in ((x64.to(dtype), b64.float(), k.bias_act), (x64, b64, None)):
        x = layouts(x0)[layout].detach().requires_grad_(True)
        b = b0.detach().requires_grad_(True)
        if run is None:
            out = _bias_act_ref(x, b, 1, act, None, None, 256.0)
        else:
            out = run(x, b, act=act, clamp=256.0)
        dx, db = torch.autograd.grad(out.square().sum(), (x, b), create_graph=True)
        (ddx,) = torch.autograd.grad((dx.double() ** 2).sum(), x)
        results.append((out, dx, db, ddx))
    for got, want in zip(*results):
        assert_close(got, want, dtype)
    assert results[0][0].dtype == dtype and results[0][2].dtype == torch.float32  # db follows b's dtype


# --- filtered_lrelu ------------------------------------------------------------------------------


def _on(fs, device):
    return tuple(None if f is None else f.to(device) for f in fs)


def filtered_lrelu_matches_reference(k: Kernels, filters, up: int, down: int, pad, clamp, flip: bool,
                                     layout: str) -> None:
    """Forward, and backward for x and b, in float64 over the reference grid; the output keeps the
    input's layout."""
    fu, fd = _on(filters, k.device)
    x = torch.randn(2, 3, 7, 6, dtype=torch.float64, generator=gen()).to(k.device)
    b = torch.randn(3, dtype=torch.float64, generator=gen(1)).to(k.device)
    results = []
    for run in (k.filtered_lrelu, None):
        xi = (layouts(x)[layout] if run else x).detach().requires_grad_(True)
        bi = b.detach().requires_grad_(True)
        if run is None:
            out = _filtered_lrelu_ref(xi, fu, fd, bi, up, down, pad, 1.3, 0.2, clamp, flip)
        else:
            out = run(xi, fu, fd, bi, up, down, pad, 1.3, 0.2, clamp, flip)
        dy = torch.randn(out.shape, dtype=torch.float64, generator=gen(2)).to(k.device)
        results.append((out, *torch.autograd.grad(out, (xi, bi), dy)))
    for got, want in zip(*results):
        assert_close(got, want, torch.float64)
    if layout == "channels_last":
        assert results[0][0].is_contiguous(memory_format=torch.channels_last)


def filtered_lrelu_gradients(k: Kernels, filters, up: int, down: int, pad, clamp, flip: bool) -> None:
    """gradcheck and gradgradcheck in float64 for x and b (the reference tests' cases)."""
    fu, fd = _on(filters, k.device)
    x = torch.randn(1, 2, 4, 5, dtype=torch.float64, generator=gen(8)).to(k.device).requires_grad_(True)
    b = (0.1 * torch.randn(2, dtype=torch.float64, generator=gen(9))).to(k.device).requires_grad_(True)
    fn = lambda x, b: k.filtered_lrelu(x, fu, fd, b, up, down, pad, 1.3, 0.2, clamp, flip)  # noqa: E731
    assert gradcheck(fn, (x, b))
    assert gradgradcheck(fn, (x, b))


def filtered_lrelu_dtype(k: Kernels, dtype: torch.dtype, filters, up: int, down: int, pad, layout: str) -> None:
    """float32/16/bfloat16 forward, backward and double backward against the float64 reference
    (filters normalised to unit gain, as StyleGAN3's are, so that float16 does not overflow)."""
    fu, fd = _on((None if f is None else f / f.sum() for f in filters), k.device)
    x64 = torch.randn(2, 4, 9, 9, dtype=torch.float64, generator=gen(10)).to(k.device)
    b64 = torch.randn(4, dtype=torch.float64, generator=gen(11)).to(k.device)
    results = []
    for x0, b0, run in ((x64.to(dtype), b64.to(dtype), k.filtered_lrelu), (x64, b64, None)):
        x = layouts(x0)[layout].detach().requires_grad_(True)
        b = b0.detach().requires_grad_(True)
        if run is None:
            out = _filtered_lrelu_ref(x, fu, fd, b, up, down, pad, 2**0.5, 0.2, 4.0, False)
        else:
            out = run(x, fu, fd, b, up, down, pad, 2**0.5, 0.2, 4.0, False)
        dx, db = torch.autograd.grad(out.square().sum(), (x, b), create_graph=True)
        (ddx,) = torch.autograd.grad((dx.double() ** 2).sum(), x)
        results.append((out, dx, db, ddx))
    for got, want in zip(*results):
        assert_close(got, want, dtype)
    assert all(t.dtype == dtype for t in results[0])


def filtered_lrelu_mask(k: Kernels, filters, up: int, down: int, pad, clamp, n: int = 2, c: int = 3,
                        size: tuple[int, int] = (7, 6)) -> None:
    """The codes the forward writes are the reference's: 1 where the pre-activation is > 0, 2
    where not, 0 where clamped, at every sample the outputs read (so at every tile's edge)."""
    fu, fd = _on(filters, k.device)
    x = torch.randn(n, c, *size, dtype=torch.float64, generator=gen(12)).to(k.device)
    b = torch.randn(c, dtype=torch.float64, generator=gen(13)).to(k.device)
    ones = torch.ones(1, dtype=torch.float64, device=k.device)
    fu_k, fd_k = (ones if f is None else f for f in (fu, fd))
    y, mask = k.raw.filtered_lrelu(x, fu_k, fd_k, b, up, down, *pad, 1.3, 0.2, clamp, False, True)
    pre = _upfirdn2d_ref(x + b[None, :, None, None], fu_k, (up, up), (1, 1), pad, False, up**2)
    v = torch.where(pre > 0, pre, pre * 0.2) * 1.3
    want = torch.where(pre > 0, 1, 2)
    if clamp is not None:
        want = torch.where(v.abs() > clamp, 0, want)
    t_w, t_h = _temporary_size(tuple(x.shape[2:]), fu_k, up, *pad)
    assert mask.dtype == torch.uint8 and tuple(mask.shape) == (n, c, t_h, (t_w + 3) // 4)
    codes = torch.stack([(mask.long() >> (2 * e)) & 3 for e in range(4)], dim=-1).flatten(-2)[..., :t_w]
    fd_w, fd_h = (1, 1) if fd is None else (fd.shape[-1], fd.shape[0])
    read_h, read_w = (y.shape[2] - 1) * down + fd_h, (y.shape[3] - 1) * down + fd_w
    read = (slice(None), slice(None), slice(0, read_h), slice(0, read_w))
    torch.testing.assert_close(codes[read], want[read].to(codes.dtype), rtol=0, atol=0)


def filtered_lrelu_large_tiles(k: Kernels, filters, up: int, down: int, layout: str, n: int = 3, c: int = 5) -> None:
    """Outputs larger than one tile along both axes, planes in more rows than the grid has:
    forward and backward (whose codes come from several tiles) against the reference."""
    fu, fd = _on(filters, k.device)
    size = (37 * down // up + 8, 45 * down // up + 8)  # outputs of about 37 x 45
    x = torch.randn(n, c, *size, dtype=torch.float64, generator=gen(14)).to(k.device)
    b = torch.randn(c, dtype=torch.float64, generator=gen(15)).to(k.device)
    pad = (5, 4, 6, 3)
    results = []
    for run in (k.filtered_lrelu, None):
        xi = (layouts(x)[layout] if run else x).detach().requires_grad_(True)
        bi = b.detach().requires_grad_(True)
        if run is None:
            out = _filtered_lrelu_ref(xi, fu, fd, bi, up, down, pad, 2**0.5, 0.2, 1.5, False)
        else:
            out = run(xi, fu, fd, bi, up, down, pad, 2**0.5, 0.2, 1.5, False)
        dy = torch.randn(out.shape, dtype=torch.float64, generator=gen(16)).to(k.device)
        results.append((out, *torch.autograd.grad(out, (xi, bi), dy)))
    assert min(results[1][0].shape[2:]) > 32  # several tiles along each axis
    for got, want in zip(*results):
        assert_close(got, want, torch.float64)


# --- memory: what backward keeps ----------------------------------------------------------------


def saved_tensors(fn, *inputs: torch.Tensor) -> list[torch.Tensor]:
    """The tensors autograd keeps for backward while ``fn(*inputs)`` runs."""
    saved: list[torch.Tensor] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(*inputs)
    return saved


def backward_keeps_one_tensor(k: Kernels) -> None:
    """bias_act keeps the output or the input (and the bias), never both; upfirdn2d keeps only
    the small filter unless the filter itself needs a gradient."""
    x = torch.randn(2, 8, 6, 6, generator=gen()).to(k.device).requires_grad_(True)
    b = torch.randn(8, generator=gen(1)).to(k.device).requires_grad_(True)
    for act, expected in (("lrelu", [x.shape]), ("swish", [x.shape, b.shape])):
        kept = saved_tensors(lambda x, b: k.bias_act(x, b, act=act, clamp=256), x, b)
        assert [t.shape for t in kept] == expected, act
    f = torch.ones(4, 4).to(k.device) / 16
    kept = saved_tensors(lambda x: k.upfirdn2d(x, f, up=2, padding=(2, 1, 2, 1)), x)
    assert [t.shape for t in kept] == [f.shape]


def filtered_lrelu_keeps_the_mask(k: Kernels) -> None:
    """filtered_lrelu keeps the filters and the 2-bit codes (uint8, 4 per byte), not the
    pre-activation; without a gradient to take, it writes no codes."""
    x = torch.randn(2, 8, 6, 6, generator=gen()).to(k.device).requires_grad_(True)
    b = torch.randn(8, generator=gen(1)).to(k.device).requires_grad_(True)
    f = (torch.ones(12) / 12).to(k.device)
    kept = saved_tensors(lambda x, b: k.filtered_lrelu(x, f, f, b, 2, 2, 10, clamp=256), x, b)
    assert [(tuple(t.shape), t.dtype) for t in kept] == [((12,), torch.float32)] * 2 + [((2, 8, 21, 6), torch.uint8)]
    with torch.no_grad():
        kept = saved_tensors(lambda x, b: k.filtered_lrelu(x, f, f, b, 2, 2, 10), x, b)
    assert kept == []
