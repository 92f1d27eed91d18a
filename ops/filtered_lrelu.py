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
"""

from __future__ import annotations

import math
from typing import Sequence, Union

import torch

from ops.bias_act import _bias_act_ref
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
        impl: ``'auto'``, ``'ref'`` or ``'cuda'`` (see :mod:`ops.impl`).

    Returns:
        ``[N, C, out_h, out_w]`` in ``x``'s dtype (see :func:`filtered_lrelu_output_size`).
    """
    pads = check_filtered_lrelu_args(x, fu, fd, b, up, down, padding, gain, slope, clamp)
    return _filtered_lrelu_ref(x, fu, fd, b, up, down, pads, float(gain), float(slope), clamp, bool(flip_filter))


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
