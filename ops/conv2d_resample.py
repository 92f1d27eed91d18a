"""2-D convolution fused with FIR up/down-sampling: the building block of modulated convolution.

StyleGAN2 (Karras et al. 2020, appendix B) upsamples with a stride-2 transposed convolution followed
by a [1, 3, 3, 1] low-pass filter, and downsamples with the low-pass filter followed by a stride-2
convolution. :func:`conv2d_resample` picks the cheapest equivalent order of operations for the
given kernel and factors; every path computes the same function as
``downsample(conv(upsample(x)))`` with aligned padding.

Weight convention: ``w`` is ``[out_channels, in_channels // groups, kh, kw]``. With
``flip_weight=True`` (default) the weight is cross-correlated, as ``torch.nn.functional.conv2d``
does; ``False`` convolves (flips the kernel).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ops.upfirdn2d import Padding, _filter_size, _parse_padding, upfirdn2d


def _conv(
    x: torch.Tensor,
    w: torch.Tensor,
    stride: int = 1,
    padding: tuple[int, int] = (0, 0),
    groups: int = 1,
    transpose: bool = False,
    flip_weight: bool = True,
) -> torch.Tensor:
    """``conv2d`` or ``conv_transpose2d`` with the flip convention of this module."""
    if not flip_weight and (w.shape[2] > 1 or w.shape[3] > 1):
        w = w.flip([2, 3])
    w = w.to(x.dtype)
    if transpose:
        return F.conv_transpose2d(x, w, stride=stride, padding=padding, groups=groups)
    return F.conv2d(x, w, stride=stride, padding=padding, groups=groups)


def _check_args(x: torch.Tensor, w: torch.Tensor, up: int, down: int, groups: int) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or not x.is_floating_point():
        raise ValueError("x: expected a floating-point 4-D tensor [N, C, H, W]")
    if not isinstance(w, torch.Tensor) or w.ndim != 4:
        raise ValueError("w: expected a 4-D weight [out_channels, in_channels // groups, kh, kw]")
    if not (isinstance(up, int) and up >= 1):
        raise ValueError(f"up={up!r}: expected an int >= 1")
    if not (isinstance(down, int) and down >= 1):
        raise ValueError(f"down={down!r}: expected an int >= 1")
    if not (isinstance(groups, int) and groups >= 1) or w.shape[0] % groups:
        raise ValueError(f"groups={groups!r}: expected an int >= 1 that divides out_channels = {w.shape[0]}")
    if x.shape[1] != w.shape[1] * groups:
        raise ValueError(
            f"w: expected in_channels // groups = {x.shape[1]} // {groups}, got weight shape {tuple(w.shape)}"
        )


def conv2d_resample(
    x: torch.Tensor,
    w: torch.Tensor,
    f: torch.Tensor | None = None,
    up: int = 1,
    down: int = 1,
    padding: Padding = 0,
    groups: int = 1,
    flip_weight: bool = True,
    flip_filter: bool = False,
) -> torch.Tensor:
    """Convolve ``x`` with ``w``, upsampling by ``up`` before and/or downsampling by ``down`` after.

    Args:
        x: ``[N, C, H, W]`` input.
        w: ``[O, C // groups, kh, kw]`` weight.
        f: low-pass filter from :func:`ops.upfirdn2d.setup_filter`; ``None`` is identity.
        up: integer upsampling factor.
        down: integer downsampling factor.
        padding: padding of the upsampled image, ``int``, ``(px, py)`` or ``(x0, x1, y0, y1)``.
        groups: grouped convolution (the fused modulated convolution uses one group per sample).
        flip_weight: ``True`` cross-correlates (as ``conv2d``), ``False`` convolves.
        flip_filter: passed to :func:`ops.upfirdn2d.upfirdn2d`.
    """
    _check_args(x, w, up, down, groups)
    out_channels, in_per_group, kh, kw = w.shape
    fw, fh = _filter_size(f)
    px0, px1, py0, py1 = _parse_padding(padding)

    # Padding that keeps the resampled image aligned with the input (as upsample2d/downsample2d).
    if up > 1:
        px0, px1 = px0 + (fw + up - 1) // 2, px1 + (fw - up) // 2
        py0, py1 = py0 + (fh + up - 1) // 2, py1 + (fh - up) // 2
    if down > 1:
        px0, px1 = px0 + (fw - down + 1) // 2, px1 + (fw - down) // 2
        py0, py1 = py0 + (fh - down + 1) // 2, py1 + (fh - down) // 2
    pads = (px0, px1, py0, py1)

    # 1x1 kernel with downsampling: filter and downsample first, then the cheap 1x1 conv.
    if kw == 1 and kh == 1 and down > 1 and up == 1:
        x = upfirdn2d(x, f, down=down, padding=pads, flip_filter=flip_filter)
        return _conv(x, w, groups=groups, flip_weight=flip_weight)

    # 1x1 kernel with upsampling: conv at low resolution, then upsample.
    if kw == 1 and kh == 1 and up > 1 and down == 1:
        x = _conv(x, w, groups=groups, flip_weight=flip_weight)
        return upfirdn2d(x, f, up=up, padding=pads, gain=up**2, flip_filter=flip_filter)

    # Downsampling only: low-pass, then strided conv.
    if down > 1 and up == 1:
        x = upfirdn2d(x, f, padding=pads, flip_filter=flip_filter)
        return _conv(x, w, stride=down, groups=groups, flip_weight=flip_weight)

    # Upsampling: transposed strided conv (zero insertion + conv in one), then low-pass.
    if up > 1:
        if groups == 1:
            w = w.transpose(0, 1)
        else:
            w = w.reshape(groups, out_channels // groups, in_per_group, kh, kw)
            w = w.transpose(1, 2).reshape(groups * in_per_group, out_channels // groups, kh, kw)
        px0, px1 = px0 - (kw - 1), px1 - (kw - up)
        py0, py1 = py0 - (kh - 1), py1 - (kh - up)
        # Let the transposed conv do the symmetric part of any cropping (negative padding).
        pxt = max(min(-px0, -px1), 0)
        pyt = max(min(-py0, -py1), 0)
        x = _conv(x, w, stride=up, padding=(pyt, pxt), groups=groups, transpose=True, flip_weight=not flip_weight)
        x = upfirdn2d(x, f, padding=(px0 + pxt, px1 + pxt, py0 + pyt, py1 + pyt), gain=up**2, flip_filter=flip_filter)
        if down > 1:
            x = upfirdn2d(x, f, down=down, flip_filter=flip_filter)
        return x

    # No resampling: a plain conv, when the padding is symmetric and non-negative.
    if up == 1 and down == 1 and px0 == px1 >= 0 and py0 == py1 >= 0:
        return _conv(x, w, padding=(py0, px0), groups=groups, flip_weight=flip_weight)

    # General case: pad (and upsample) explicitly, conv, then downsample.
    x = upfirdn2d(x, f if up > 1 else None, up=up, padding=pads, gain=up**2, flip_filter=flip_filter)
    x = _conv(x, w, groups=groups, flip_weight=flip_weight)
    if down > 1:
        x = upfirdn2d(x, f, down=down, flip_filter=flip_filter)
    return x
