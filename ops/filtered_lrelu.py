"""Filtered leaky ReLU: StyleGAN3's alias-free nonlinearity (Karras et al. 2021, sec. 3.2 and fig. 4).

A pointwise nonlinearity applied to a band-limited signal creates frequencies above its Nyquist
limit. StyleGAN3 therefore applies it at a higher temporary sampling rate: upsample with the
low-pass filter ``fu``, add the bias, apply the leaky ReLU (times ``gain``, optionally clamped),
then low-pass with ``fd`` and downsample. ``filtered_lrelu`` keeps the signature and semantics of
NVIDIA's op (``x, fu, fd, b, up, down, padding, gain, slope, clamp, flip_filter``), so a layer written
for one computes the same on the other:

* ``padding`` (int, ``(px, py)`` or ``(x0, x1, y0, y1)``; negative crops) applies to the upsampled
  signal, before ``fu``; ``fd`` runs on the result with no padding.
* The upsampling pass multiplies by ``up ** 2`` so that zero insertion keeps the signal's level.
* ``fu``/``fd``: ``None`` (no filter), 1-D (separable) or 2-D (e.g. config-R's radial filters), as
  :func:`ops.upfirdn2d.setup_filter` makes them; ``flip_filter`` correlates instead of convolving.
* Output size: ``(in * up + pad0 + pad1 - (fu_taps - 1) - (fd_taps - 1) + (down - 1)) // down``.

``_filtered_lrelu_ref`` is the pure-PyTorch ground truth, built from the references of
:func:`ops.upfirdn2d.upfirdn2d` and :func:`ops.bias_act.bias_act`; autograd gives its first and second
derivatives. The bias is added before upsampling (it is constant, so it passes the ``up ** 2``-gain
filter unchanged up to the filter's DC gain, which is what NVIDIA's reference computes too).

The CUDA path (csrc/filtered_lrelu.*) is one fused kernel behind two registered operators: the op
itself, which also returns a 2-bit code per sample of the upsampled signal (which piece of the
clamped leaky ReLU it was on), and the same chain with the activation replaced by that code's
factor. The leaky ReLU is piecewise linear, so the backward is the transposed chain (fd up by
``down``, times the factors, fu down by ``up``) with the saved codes, and the derivative of that
linear chain is again such a chain: derivatives of every order run on the kernel, from a saved
tensor 16 times smaller than the float32 pre-activation. The filters get no gradient there
(StyleGAN3's are fixed buffers); a filter that requires grad needs ``impl='ref'``.
"""

from __future__ import annotations

import functools
import math
from typing import Sequence, Union

import torch

from ops.bias_act import _bias_act_ref
from ops.impl import resolve_impl
from ops.upfirdn2d import _check_filter, _filter_size, _parse_padding, _upfirdn2d_ref

Padding = Union[int, Sequence[int]]


def _check_number(name: str, value: float | None, minimum: float, strict: bool, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value))
    if not ok or (value <= minimum if strict else value < minimum):
        bound = f"> {minimum}" if strict else f">= {minimum}"
        none = "None or " if allow_none else ""
        raise ValueError(f"{name}={value!r}: expected {none}a finite number {bound}")


def filtered_lrelu_output_size(
    in_size: tuple[int, int], fu: torch.Tensor | None, fd: torch.Tensor | None, up: int, down: int, padding: Padding
) -> tuple[int, int]:
    """``(height, width)`` of :func:`filtered_lrelu`'s output for an input of ``(height, width)``."""
    x0, x1, y0, y1 = _parse_padding(padding)
    fu_w, fu_h = _filter_size(fu)
    fd_w, fd_h = _filter_size(fd)
    in_h, in_w = in_size
    out_w = (in_w * up + x0 + x1 - (fu_w - 1) - (fd_w - 1) + (down - 1)) // down
    out_h = (in_h * up + y0 + y1 - (fu_h - 1) - (fd_h - 1) + (down - 1)) // down
    return out_h, out_w


def check_filtered_lrelu_args(
    x: torch.Tensor,
    fu: torch.Tensor | None,
    fd: torch.Tensor | None,
    b: torch.Tensor | None,
    up: int,
    down: int,
    padding: Padding,
    gain: float,
    slope: float,
    clamp: float | None,
) -> tuple[int, int, int, int]:
    """Validate :func:`filtered_lrelu`'s arguments (one clear error each); the parsed padding."""
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or not x.is_floating_point():
        what = f"shape {tuple(x.shape)} dtype {x.dtype}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x: expected a 4-D floating-point tensor [N, C, H, W], got {what}")
    _check_filter(fu)
    _check_filter(fd)
    if b is not None and (not isinstance(b, torch.Tensor) or b.ndim != 1 or b.shape[0] != x.shape[1]):
        shape = tuple(b.shape) if isinstance(b, torch.Tensor) else type(b).__name__
        raise ValueError(f"b: expected None or a 1-D tensor of length x.shape[1] = {x.shape[1]}, got {shape}")
    for name, value in (("up", up), ("down", down)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name}={value!r}: expected an int >= 1")
    pads = _parse_padding(padding)
    _check_number("gain", gain, 0, strict=True)
    _check_number("slope", slope, 0, strict=False)
    _check_number("clamp", clamp, 0, strict=False, allow_none=True)
    out_h, out_w = filtered_lrelu_output_size(tuple(x.shape[2:]), fu, fd, up, down, pads)
    if out_h < 1 or out_w < 1:
        raise ValueError(
            f"padding={padding!r}: input {tuple(x.shape[2:])} upsampled {up}x, padded and filtered gives an empty "
            "output; expected more padding or a larger input"
        )
    return pads


def filtered_lrelu(
    x: torch.Tensor,
    fu: torch.Tensor | None = None,
    fd: torch.Tensor | None = None,
    b: torch.Tensor | None = None,
    up: int = 1,
    down: int = 1,
    padding: Padding = 0,
    gain: float = math.sqrt(2),
    slope: float = 0.2,
    clamp: float | None = None,
    flip_filter: bool = False,
    impl: str = "auto",
) -> torch.Tensor:
    """Upsample by ``up`` with ``fu`` -> add ``b`` -> leaky ReLU (``slope``) times ``gain``, clamped to
    ``[-clamp, clamp]`` -> filter with ``fd`` and downsample by ``down``.

    Args:
        x: ``[N, C, H, W]`` float tensor.
        fu, fd: upsampling / downsampling filters (``None``, 1-D separable or 2-D).
        b: ``[C]`` bias, or ``None``.
        up, down: integer resampling factors.
        padding: ``int``, ``(px, py)`` or ``(x0, x1, y0, y1)`` on the upsampled signal.
        gain, slope, clamp: as in :func:`ops.bias_act.bias_act` with ``act='lrelu'``.
        flip_filter: correlate instead of convolve.
        impl: ``'auto'``, ``'ref'`` or ``'cuda'`` (see :mod:`ops.impl`). The fused kernel gives
            gradients for ``x`` and ``b`` only: where it runs, a filter that requires grad is refused.

    Returns:
        ``[N, C, out_h, out_w]`` in ``x``'s dtype (see :func:`filtered_lrelu_output_size`).
    """
    pads = check_filtered_lrelu_args(x, fu, fd, b, up, down, padding, gain, slope, clamp)
    args = (x, fu, fd, b, up, down, pads, float(gain), float(slope), clamp, bool(flip_filter))
    if resolve_impl(impl, "filtered_lrelu", x.device, x.dtype) == "cuda":
        for name, f in (("fu", fu), ("fd", fd)):
            if f is not None and f.requires_grad and torch.is_grad_enabled():
                raise ValueError(
                    f"{name}: requires grad, but the fused filtered_lrelu kernel gives no gradient for the "
                    f"filters; pass impl='ref' (or detach the filter)"
                )
        from ops._build import NAMESPACE

        return _filtered_lrelu_kernels(NAMESPACE, *args)
    return _filtered_lrelu_ref(*args)


def _filtered_lrelu_ref(
    x: torch.Tensor,
    fu: torch.Tensor | None,
    fd: torch.Tensor | None,
    b: torch.Tensor | None,
    up: int,
    down: int,
    padding: tuple[int, int, int, int],
    gain: float,
    slope: float,
    clamp: float | None,
    flip_filter: bool,
) -> torch.Tensor:
    """Pure-PyTorch reference of :func:`filtered_lrelu` (arguments already validated)."""
    if b is not None:
        x = _bias_act_ref(x, b, 1, "linear", None, None, None)
    # Upsample: zero insertion, padding, fu; gain up**2 keeps the level (sec. 3.2).
    x = _upfirdn2d_ref(x, fu, (up, up), (1, 1), padding, flip_filter, up**2)
    x = _bias_act_ref(x, None, 1, "lrelu", slope, gain, clamp)
    # Low-pass at the temporary rate, then keep every down-th sample.
    return _upfirdn2d_ref(x, fd, (1, 1), (down, down), (0, 0, 0, 0), flip_filter, 1)


# --- The registered kernel (csrc/filtered_lrelu.*) ----------------------------------------------
#
# filtered_lrelu_masked runs the chain "stage 1 (up by `up`, pad (px0, py0), f1 * gain1) -> times
# the saved code's factor -> stage 2 (pad (qx0, qy0), f2 * gain2, down by `down`)"; these are its
# parameters after x, mask, f1, f2. The op's forward is that chain with f1 = fu (gain up**2), the
# leaky ReLU for the factor, f2 = fd and no stage-2 padding.

_MASKED_PARAMS = ("up", "down", "px0", "py0", "qx0", "qy0", "t_w", "t_h", "out_w", "out_h", "gain1", "gain2",
                  "flip1", "flip2", "gain", "slope")


def _as_filter(f: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
    """The kernel's filter: ``None`` is one tap (1-D, so separable), on ``x``'s device."""
    if f is None:
        return torch.ones([1], dtype=torch.float32, device=x.device)
    return f.to(x.device)


def _temporary_size(in_size: tuple[int, int], fu: torch.Tensor, up: int, px0: int, px1: int, py0: int, py1: int):
    """``(t_w, t_h)``: the upsampled, padded and fu-filtered signal the activation runs on."""
    fu_w, fu_h = _filter_size(fu)
    return in_size[1] * up + px0 + px1 - fu_w + 1, in_size[0] * up + py0 + py1 - fu_h + 1


def _transposed(f1: torch.Tensor, f2: torch.Tensor, params: tuple, in_size: tuple[int, int]):
    """The adjoint of the masked chain with ``params`` on an input of ``in_size`` ``(h, w)``: stage 2
    transposed (f2 flipped, up by ``down``, padding mirrored) becomes stage 1, and vice versa; the
    factors are the same, so the adjoint of the adjoint is the chain itself."""
    up, down, px0, py0, qx0, qy0, t_w, t_h, out_w, out_h, gain1, gain2, flip1, flip2, gain, slope = params
    f1_w, f1_h = _filter_size(f1)
    f2_w, f2_h = _filter_size(f2)
    transposed = (down, up, f2_w - qx0 - 1, f2_h - qy0 - 1, f1_w - px0 - 1, f1_h - py0 - 1, t_w, t_h,
                  in_size[1], in_size[0], gain2, gain1, not flip2, not flip1, gain, slope)
    return f2, f1, transposed


def _filtered_lrelu_kernels(
    namespace: str,
    x: torch.Tensor,
    fu: torch.Tensor | None,
    fd: torch.Tensor | None,
    b: torch.Tensor | None,
    up: int,
    down: int,
    padding: tuple[int, int, int, int],
    gain: float,
    slope: float,
    clamp: float | None,
    flip_filter: bool,
) -> torch.Tensor:
    """:func:`filtered_lrelu` through the registered operators of ``namespace`` (arguments validated)."""
    op = getattr(torch.ops, namespace).filtered_lrelu
    if b is not None:
        b = b.to(x.dtype)
    # The codes are written only when a backward will read them.
    write_mask = torch.is_grad_enabled() and (x.requires_grad or (b is not None and b.requires_grad))
    y, _ = op(x, _as_filter(fu, x), _as_filter(fd, x), b, up, down, *padding, float(gain), float(slope),
              None if clamp is None else float(clamp), bool(flip_filter), bool(write_mask))
    return y


@functools.cache
def _register_kernels(namespace: str) -> None:
    """Fake (meta) implementations and autograd formulas of the operators in ``namespace``; called
    once, after the extension that defines them is loaded (ops/extension.py)."""
    from ops.extension import kernel_layout

    masked = getattr(torch.ops, namespace).filtered_lrelu_masked

    @torch.library.register_fake(f"{namespace}::filtered_lrelu")
    def _(x, fu, fd, b, up, down, px0, px1, py0, py1, gain, slope, clamp, flip_filter, write_mask):
        n, c, h, w = x.shape
        t_w, t_h = _temporary_size((h, w), fu, up, px0, px1, py0, py1)
        fd_w, fd_h = _filter_size(fd)
        out_h, out_w = (t_h - fd_h) // down + 1, (t_w - fd_w) // down + 1
        y = torch.empty((n, c, out_h, out_w), dtype=x.dtype, device=x.device, memory_format=kernel_layout(x))
        shape = (n, c, t_h, (t_w + 3) // 4) if write_mask else (0,)
        return y, torch.empty(shape, dtype=torch.uint8, device=x.device)

    @torch.library.register_fake(f"{namespace}::filtered_lrelu_masked")
    def _(x, mask, f1, f2, *params):
        out_w, out_h = params[8], params[9]
        n, c = x.shape[:2]
        return torch.empty((n, c, out_h, out_w), dtype=x.dtype, device=x.device, memory_format=kernel_layout(x))

    def setup_forward(ctx, inputs, output):
        x, fu, fd, b, up, down, px0, px1, py0, py1, gain, slope, clamp, flip, write_mask = inputs
        t_w, t_h = _temporary_size(tuple(x.shape[2:]), fu, up, px0, px1, py0, py1)
        out_h, out_w = output[0].shape[2:]
        # The forward as a masked chain, for _transposed.
        ctx.params = (up, down, px0, py0, 0, 0, t_w, t_h, out_w, out_h, float(up * up), 1.0, flip, flip, gain, slope)
        ctx.in_size = tuple(x.shape[2:])
        ctx.write_mask = write_mask
        ctx.save_for_backward(fu, fd, output[1])

    def backward_forward(ctx, dy, _dmask):
        fu, fd, mask = ctx.saved_tensors
        if not ctx.write_mask:
            raise RuntimeError("filtered_lrelu: the forward ran with write_mask=False, so there is no backward")
        f1, f2, params = _transposed(fu, fd, ctx.params, ctx.in_size)
        dx = masked(dy, mask, f1, f2, *params)
        db = dx.sum([0, 2, 3]) if ctx.needs_input_grad[3] else None
        return (dx if ctx.needs_input_grad[0] else None), None, None, db, *([None] * 11)

    torch.library.register_autograd(f"{namespace}::filtered_lrelu", backward_forward, setup_context=setup_forward)

    def setup_masked(ctx, inputs, output):
        x, mask, f1, f2, *params = inputs
        ctx.params = tuple(params)
        ctx.in_size = tuple(x.shape[2:])
        ctx.save_for_backward(mask, f1, f2)

    def backward_masked(ctx, dy):
        mask, f1, f2 = ctx.saved_tensors
        g1, g2, params = _transposed(f1, f2, ctx.params, ctx.in_size)
        dx = masked(dy, mask, g1, g2, *params) if ctx.needs_input_grad[0] else None
        return dx, None, None, None, *([None] * len(_MASKED_PARAMS))

    torch.library.register_autograd(f"{namespace}::filtered_lrelu_masked", backward_masked, setup_context=setup_masked)
