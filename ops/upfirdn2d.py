"""Upsample, FIR-filter, downsample: the resampling primitive of StyleGAN2.

``upfirdn2d`` runs, per channel: pad -> upsample by zero insertion -> 2-D FIR filter -> downsample
by keeping every ``down``-th sample. StyleGAN2 (Karras et al. 2020, sec. 2 and appendix B) resamples
with a separable [1, 3, 3, 1] binomial filter instead of nearest/bilinear, which removes the
aliasing that transposed/strided convolutions alone introduce.

Conventions (kept so networks written for them behave identically):

* ``padding`` is ``int``, ``(px, py)`` or ``(x0, x1, y0, y1)``; negative values crop.
* ``flip_filter=False`` performs a true convolution (the filter is flipped before the
  cross-correlation that ``torch.nn.functional.conv2d`` computes); ``True`` correlates.
* ``gain`` multiplies the filter (``gain ** (f.ndim / 2)`` per axis of a separable filter, so the
  total gain is ``gain`` either way).
* A 1-D filter is separable: it is applied along x, then y.

``_upfirdn2d_ref`` is the pure-PyTorch ground truth; it is made of differentiable torch ops, so
first and second derivatives come from autograd.

The CUDA path (csrc/upfirdn2d.*) is one registered operator on 2-D filters; a separable filter runs
as two passes (along x, then y). Its gradient is the same operator with the transposed parameters
(up and down swapped, the padding mirrored, the filter flipped), so derivatives of every order run
on the kernels. A filter that requires grad gets its gradient from a correlation of the
zero-inserted, padded input with the output gradient.
"""

from __future__ import annotations

import functools
from typing import Sequence, Union

import torch
import torch.nn.functional as F

from ops.impl import resolve_impl

IntPair = Union[int, Sequence[int]]
Padding = Union[int, Sequence[int]]


def _parse_scaling(value: IntPair, name: str) -> tuple[int, int]:
    """``up``/``down`` as ``(sx, sy)``: an int applies to both axes."""
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and v >= 1 for v in pair):
        raise ValueError(f"{name}={value!r}: expected an int >= 1 or a pair (x, y) of them")
    return pair[0], pair[1]


def _parse_padding(padding: Padding) -> tuple[int, int, int, int]:
    """``padding`` as ``(x0, x1, y0, y1)``."""
    if isinstance(padding, int):
        return padding, padding, padding, padding
    pads = tuple(padding)
    if not all(isinstance(p, int) for p in pads) or len(pads) not in (2, 4):
        raise ValueError(f"padding={padding!r}: expected an int, (px, py) or (x0, x1, y0, y1) of ints")
    if len(pads) == 2:
        return pads[0], pads[0], pads[1], pads[1]
    return pads  # type: ignore[return-value]


def _check_filter(f: torch.Tensor | None) -> None:
    if f is None:
        return
    if not isinstance(f, torch.Tensor) or not f.is_floating_point():
        raise ValueError("f: expected None or a floating-point tensor (see setup_filter)")
    if f.ndim not in (1, 2) or f.numel() == 0:
        raise ValueError(
            f"f: expected a non-empty 1-D (separable) or 2-D filter, got shape {tuple(f.shape)}"
        )


def _filter_size(f: torch.Tensor | None) -> tuple[int, int]:
    """``(width, height)`` of a filter; 1-D filters are separable, so square."""
    if f is None:
        return 1, 1
    _check_filter(f)
    return (f.shape[-1], f.shape[0])


def setup_filter(
    f: Sequence[float] | torch.Tensor | float | None,
    device: torch.device | str = "cpu",
    normalize: bool = True,
    flip_filter: bool = False,
    gain: float = 1,
    separable: bool | None = None,
) -> torch.Tensor:
    """Turn filter taps into the float32 tensor that :func:`upfirdn2d` takes.

    Args:
        f: taps: ``None`` (identity), a scalar, 1-D or 2-D.
        normalize: divide by the sum of the taps so that the DC gain is 1.
        flip_filter: flip the filter once here (instead of at every call).
        gain: overall gain, distributed over the filter's axes.
        separable: keep a 1-D filter 1-D (applied along x then y). ``None`` chooses separable for
            1-D filters of 8 or more taps, where two 1-D passes are cheaper than one 2-D pass.
    """
    taps = torch.as_tensor(1.0 if f is None else f, dtype=torch.float32)
    if taps.ndim > 2 or taps.numel() == 0:
        raise ValueError(f"f: expected a scalar, 1-D or 2-D non-empty filter, got shape {tuple(taps.shape)}")
    if taps.ndim == 0:
        taps = taps[None]
    if separable is None:
        separable = taps.ndim == 1 and taps.numel() >= 8
    if separable and taps.ndim != 1:
        raise ValueError(f"separable=True: expected 1-D taps, got shape {tuple(taps.shape)}")
    if taps.ndim == 1 and not separable:
        taps = torch.outer(taps, taps)
    if normalize:
        total = taps.sum()
        if total == 0:
            raise ValueError("f: normalize=True needs taps whose sum is not zero")
        taps = taps / total
    if flip_filter:
        taps = taps.flip(list(range(taps.ndim)))
    taps = taps * (gain ** (taps.ndim / 2))
    return taps.to(device)


def upfirdn2d(
    x: torch.Tensor,
    f: torch.Tensor | None,
    up: IntPair = 1,
    down: IntPair = 1,
    padding: Padding = 0,
    flip_filter: bool = False,
    gain: float = 1,
    impl: str = "auto",
) -> torch.Tensor:
    """Pad, upsample by zero insertion, FIR-filter and downsample a batch of images.

    Args:
        x: ``[N, C, H, W]`` images, any float dtype, any memory format.
        f: filter from :func:`setup_filter` (1-D separable or 2-D), or ``None`` for identity.
        up: upsampling factor, int or ``(ux, uy)``.
        down: downsampling factor, int or ``(dx, dy)``.
        padding: ``int``, ``(px, py)`` or ``(x0, x1, y0, y1)``, applied after upsampling.
        flip_filter: correlate instead of convolve.
        gain: overall gain applied through the filter.
        impl: ``'auto'``, ``'ref'`` or ``'cuda'``.

    Returns:
        ``[N, C, (H * uy + y0 + y1 - fh) // dy + 1, (W * ux + x0 + x1 - fw) // dx + 1]``.
    """
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x: expected a 4-D tensor [N, C, H, W], got {shape}")
    if not x.is_floating_point():
        raise ValueError(f"x: expected a floating-point tensor, got dtype {x.dtype}")
    _check_filter(f)
    upx, upy = _parse_scaling(up, "up")
    downx, downy = _parse_scaling(down, "down")
    x0, x1, y0, y1 = _parse_padding(padding)
    fw, fh = _filter_size(f)
    out_w = (x.shape[3] * upx + x0 + x1 - fw) // downx + 1
    out_h = (x.shape[2] * upy + y0 + y1 - fh) // downy + 1
    if out_w < 1 or out_h < 1 or x.shape[3] * upx + x0 + x1 < fw or x.shape[2] * upy + y0 + y1 < fh:
        raise ValueError(
            f"padding={padding!r}: input {tuple(x.shape[2:])} upsampled by ({upy}, {upx}) and padded "
            f"is smaller than the {fh}x{fw} filter; the output would be empty"
        )
    if resolve_impl(impl, "upfirdn2d", x.device, x.dtype) == "cuda":
        from ops._build import NAMESPACE

        return _upfirdn2d_kernels(NAMESPACE, x, f, (upx, upy), (downx, downy), (x0, x1, y0, y1), flip_filter, gain)
    return _upfirdn2d_ref(x, f, (upx, upy), (downx, downy), (x0, x1, y0, y1), flip_filter, gain)


def _upfirdn2d_ref(
    x: torch.Tensor,
    f: torch.Tensor | None,
    up: tuple[int, int],
    down: tuple[int, int],
    padding: tuple[int, int, int, int],
    flip_filter: bool,
    gain: float,
) -> torch.Tensor:
    """Pure-PyTorch reference of :func:`upfirdn2d` (arguments already parsed and checked)."""
    (upx, upy), (downx, downy), (x0, x1, y0, y1) = up, down, padding
    n, c, h, w = x.shape
    if f is None:
        f = torch.ones([1, 1], dtype=torch.float32, device=x.device)

    # Upsample by inserting (up - 1) zeros after every sample along each axis.
    if upx > 1 or upy > 1:
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, upx - 1, 0, 0, 0, upy - 1])
        x = x.reshape(n, c, h * upy, w * upx)

    # Pad with zeros where positive, crop where negative.
    x = F.pad(x, [max(x0, 0), max(x1, 0), max(y0, 0), max(y1, 0)])
    x = x[:, :, max(-y0, 0) : x.shape[2] - max(-y1, 0), max(-x0, 0) : x.shape[3] - max(-x1, 0)]

    # FIR filter as a depthwise convolution. conv2d correlates, so flip for a true convolution.
    # float16 on the CPU filters in float32 and rounds once at the end: torch's float16 depthwise
    # convolution there takes minutes for a 24-tap filter at 200x200 (StyleGAN3's 4x upsampling;
    # measured), and the CUDA kernels accumulate float16 in float32 too.
    out_dtype = x.dtype
    if x.dtype == torch.float16 and x.device.type == "cpu":
        x = x.float()
    # Scale in the wider of the two dtypes, so float64 inputs get a float64-exact filter.
    f = f.to(device=x.device, dtype=torch.promote_types(f.dtype, x.dtype))
    f = (f * (gain ** (f.ndim / 2))).to(x.dtype)
    if not flip_filter:
        f = f.flip(list(range(f.ndim)))
    if f.ndim == 2:
        x = F.conv2d(x, f[None, None].expand(c, 1, *f.shape), groups=c)
    else:
        x = F.conv2d(x, f[None, None, None, :].expand(c, 1, 1, f.shape[0]), groups=c)
        x = F.conv2d(x, f[None, None, :, None].expand(c, 1, f.shape[0], 1), groups=c)
    x = x.to(out_dtype)

    # Downsample by keeping every down-th sample.
    if downx > 1 or downy > 1:
        x = x[:, :, ::downy, ::downx]
    return x


def _aligned_padding(padding: Padding, offsets: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    x0, x1, y0, y1 = _parse_padding(padding)
    return x0 + offsets[0], x1 + offsets[1], y0 + offsets[2], y1 + offsets[3]


def filter2d(
    x: torch.Tensor,
    f: torch.Tensor | None,
    padding: Padding = 0,
    flip_filter: bool = False,
    gain: float = 1,
    impl: str = "auto",
) -> torch.Tensor:
    """Filter ``x`` with ``f``; the output has the input's size (plus ``padding``), centred."""
    fw, fh = _filter_size(f)
    pads = _aligned_padding(padding, (fw // 2, (fw - 1) // 2, fh // 2, (fh - 1) // 2))
    return upfirdn2d(x, f, padding=pads, flip_filter=flip_filter, gain=gain, impl=impl)


def upsample2d(
    x: torch.Tensor,
    f: torch.Tensor | None,
    up: IntPair = 2,
    padding: Padding = 0,
    flip_filter: bool = False,
    gain: float = 1,
    impl: str = "auto",
) -> torch.Tensor:
    """Upsample by ``up`` with filter ``f``: output ``up`` times the input size, aligned.

    The gain is multiplied by ``ux * uy`` to make up for the inserted zeros.
    """
    upx, upy = _parse_scaling(up, "up")
    fw, fh = _filter_size(f)
    pads = _aligned_padding(
        padding, ((fw + upx - 1) // 2, (fw - upx) // 2, (fh + upy - 1) // 2, (fh - upy) // 2)
    )
    return upfirdn2d(x, f, up=(upx, upy), padding=pads, flip_filter=flip_filter, gain=gain * upx * upy, impl=impl)


def downsample2d(
    x: torch.Tensor,
    f: torch.Tensor | None,
    down: IntPair = 2,
    padding: Padding = 0,
    flip_filter: bool = False,
    gain: float = 1,
    impl: str = "auto",
) -> torch.Tensor:
    """Low-pass with ``f`` and downsample by ``down``: output ``1/down`` of the input size, aligned."""
    downx, downy = _parse_scaling(down, "down")
    fw, fh = _filter_size(f)
    pads = _aligned_padding(
        padding, ((fw - downx + 1) // 2, (fw - downx) // 2, (fh - downy + 1) // 2, (fh - downy) // 2)
    )
    return upfirdn2d(x, f, down=(downx, downy), padding=pads, flip_filter=flip_filter, gain=gain, impl=impl)


# --- The registered kernel (csrc/upfirdn2d.*) ---------------------------------------------------


def _upfirdn2d_kernels(
    namespace: str,
    x: torch.Tensor,
    f: torch.Tensor | None,
    up: tuple[int, int],
    down: tuple[int, int],
    padding: tuple[int, int, int, int],
    flip_filter: bool,
    gain: float,
) -> torch.Tensor:
    """:func:`upfirdn2d` through the registered operator of ``namespace`` (arguments parsed)."""
    op = getattr(torch.ops, namespace).upfirdn2d
    (upx, upy), (downx, downy), (x0, x1, y0, y1) = up, down, padding
    if f is None:
        f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
    f = f.to(x.device)
    gain = float(gain)
    if f.ndim == 2:
        return op(x, f, upx, upy, downx, downy, x0, x1, y0, y1, flip_filter, gain)
    # Separable: along x, then along y, each pass with sqrt(gain), as the reference does.
    gx, gy = (gain**0.5, gain**0.5) if gain >= 0 else (gain, 1.0)
    x = op(x, f.reshape(1, -1), upx, 1, downx, 1, x0, x1, 0, 0, flip_filter, gx)
    return op(x, f.reshape(-1, 1), 1, upy, 1, downy, 0, 0, y0, y1, flip_filter, gy)


def _transposed_padding(in_size: int, out_size: int, up: int, down: int, pad0: int, taps: int) -> tuple[int, int]:
    """Padding of the adjoint along one axis: upfirdn2d(dy, f, up=down, down=up, this padding,
    flipped filter) maps the output gradient back onto the input's ``in_size`` samples."""
    return taps - pad0 - 1, in_size * up - out_size * down + pad0 - up + 1


def _filter_grad(op, x, dy, f, params) -> torch.Tensor:
    """Gradient w.r.t. the 2-D filter ``f``: correlate the zero-inserted, padded input with ``dy``
    (dilated by ``down``), then undo the flip and gain the kernel applied to ``f``."""
    upx, upy, downx, downy, x0, x1, y0, y1, flip_filter, gain = params
    n, c = x.shape[:2]
    fh, fw = f.shape
    ones = torch.ones([1, 1], dtype=f.dtype, device=x.device)
    u = op(x, ones, upx, upy, 1, 1, x0, x1, y0, y1, False, 1.0)  # [N, C, H * uy + y0 + y1, W * ux + x0 + x1]
    g = F.conv2d(
        u.reshape(1, n * c, u.shape[2], u.shape[3]),
        dy.to(u.dtype).reshape(1, n * c, dy.shape[2], dy.shape[3]),
        dilation=(downy, downx),
    )[0, 0, :fh, :fw]
    g = g * gain
    return (g if flip_filter else g.flip([0, 1])).to(f.dtype)


@functools.cache
def _register_kernels(namespace: str) -> None:
    """Fake (meta) implementation and autograd formula of the operator in ``namespace``; called
    once, after the extension that defines it is loaded (ops/extension.py)."""
    from ops.extension import kernel_layout

    op = getattr(torch.ops, namespace).upfirdn2d

    @torch.library.register_fake(f"{namespace}::upfirdn2d")
    def _(x, f, upx, upy, downx, downy, x0, x1, y0, y1, flip_filter, gain):
        n, c, h, w = x.shape
        fh, fw = f.shape
        out_h = (h * upy + y0 + y1 - fh) // downy + 1
        out_w = (w * upx + x0 + x1 - fw) // downx + 1
        return torch.empty((n, c, out_h, out_w), dtype=x.dtype, device=x.device, memory_format=kernel_layout(x))

    def setup_context(ctx, inputs, output):
        x, f = inputs[:2]
        ctx.params = tuple(inputs[2:])
        ctx.in_size = (x.shape[2], x.shape[3])
        ctx.save_for_backward(f, x if ctx.needs_input_grad[1] else None)

    def backward(ctx, dy):
        f, x = ctx.saved_tensors
        upx, upy, downx, downy, x0, x1, y0, y1, flip_filter, gain = ctx.params
        dx = df = None
        if ctx.needs_input_grad[0]:
            (h, w), (fh, fw) = ctx.in_size, f.shape
            px = _transposed_padding(w, dy.shape[3], upx, downx, x0, fw)
            py = _transposed_padding(h, dy.shape[2], upy, downy, y0, fh)
            dx = op(dy, f, downx, downy, upx, upy, *px, *py, not flip_filter, gain)
        if ctx.needs_input_grad[1]:
            df = _filter_grad(op, x, dy, f, ctx.params)
        return (dx, df) + (None,) * 10

    torch.library.register_autograd(f"{namespace}::upfirdn2d", backward, setup_context=setup_context)
