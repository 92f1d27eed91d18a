"""Resampling kernels of the ADA pipeline (Karras et al. 2020, "Training Generative Adversarial
Networks with Limited Data", appendix B): reflect padding, a bilinear grid sample with a second
derivative, the per-sample affine warp and the 4-band image-space equaliser.

Everything here is linear in the images, and made only of ops whose derivatives are again ops of
this kind, so R1's double backward (the gradient of D(aug(x)) w.r.t. x, backpropagated into D) runs
through it. ``torch.nn.functional.grid_sample`` has a first derivative only: its input-gradient
(``grid_sampler_2d_backward``) has no backward. :class:`_GridSample` and :class:`_GridSampleAdjoint`
are each other's backward, so derivatives of every order w.r.t. the image exist; the grid is
computed from the augmentation matrices and never needs a gradient.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from ops.upfirdn2d import upfirdn2d

# Decomposition low-pass taps of the symlet-6 wavelet (Daubechies' least-asymmetric wavelet with 6
# vanishing moments), as published (e.g. PyWavelets' ``Wavelet('sym6').dec_lo``). ADA resamples
# through a 2x grid with this filter (appendix B). The taps sum to sqrt(2), are orthonormal to their
# even shifts, and their even and odd taps sum alike, so a constant survives up- and downsampling.
SYM6 = (
    0.015404109327027373, 0.0034907120842174702, -0.11799011114819057, -0.048311742585633,
    0.4910559419267466, 0.787641141030194, 0.3379294217276218, -0.07263752278646252,
    -0.021060292512300564, 0.04472490177066578, 0.0017677118642428036, -0.007800708325034148,
)  # fmt: skip

# The 4-point Deslauriers-Dubuc interpolating half-band low-pass (the autocorrelation of the sym2
# wavelet's low-pass, halved): zero-phase, response 1/2 exactly at pi/2. Cascading it at rates
# z, z^2, z^4 gives the low-passes with cut-offs pi/2, pi/4, pi/8 that bound ADA's four bands.
HALFBAND = (-1 / 32, 0.0, 9 / 32, 16 / 32, 9 / 32, 0.0, -1 / 32)


def reflect_index(n: int, pad0: int, pad1: int, device: torch.device) -> torch.Tensor:
    """Indices ``[-pad0, n + pad1)`` folded into ``[0, n)`` by mirroring without repeating the edge
    sample (``F.pad(mode='reflect')``), for any amount of padding (the fold repeats)."""
    return _fold(torch.arange(-pad0, n + pad1, device=device), n)


def _fold(i: torch.Tensor, n: int) -> torch.Tensor:
    """Mirror integer coordinates into ``[0, n)`` (period ``2 (n - 1)``, edge sample not repeated)."""
    if n == 1:
        return torch.zeros_like(i)
    period = 2 * (n - 1)
    i = i.remainder(period)
    return torch.where(i >= n, period - i, i)


def reflect_pad(x: torch.Tensor, x0: int, x1: int, y0: int, y1: int) -> torch.Tensor:
    """Reflect-pad ``[N, C, H, W]`` by gathering rows and columns; index_select's backward is
    index_add and its double backward index_select again, so any derivative order works."""
    x = x.index_select(3, reflect_index(x.shape[3], x0, x1, x.device))
    return x.index_select(2, reflect_index(x.shape[2], y0, y1, x.device))


# --- Bilinear grid sample with derivatives of every order w.r.t. the image ------------------------


def _sample(x: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _sample_adjoint(dy: torch.Tensor, grid: torch.Tensor, x_shape: torch.Size) -> torch.Tensor:
    # The transpose of the (linear) sampling operator: grid_sample's input-gradient. Its values do
    # not depend on the input, only its shape, so zeros stand in for it.
    x_stub = dy.new_zeros(x_shape)
    dx, _ = torch.ops.aten.grid_sampler_2d_backward(dy, x_stub, grid, 0, 0, False, [True, False])
    return dx


class _GridSample(torch.autograd.Function):
    """y = A x, A the bilinear sampling matrix of ``grid``; backward: A^T dy."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(grid)
        ctx.x_shape = x.shape
        return _sample(x, grid)

    @staticmethod
    def backward(ctx, dy: torch.Tensor):
        (grid,) = ctx.saved_tensors
        return _GridSampleAdjoint.apply(dy, grid, ctx.x_shape), None


class _GridSampleAdjoint(torch.autograd.Function):
    """dx = A^T dy; backward: A ddx, i.e. the forward sample again."""

    @staticmethod
    def forward(ctx, dy: torch.Tensor, grid: torch.Tensor, x_shape: torch.Size) -> torch.Tensor:
        ctx.save_for_backward(grid)
        return _sample_adjoint(dy, grid, x_shape)

    @staticmethod
    def backward(ctx, ddx: torch.Tensor):
        (grid,) = ctx.saved_tensors
        return _GridSample.apply(ddx, grid), None, None


def grid_sample(x: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Bilinear ``grid_sample`` (zeros outside, ``align_corners=False``), differentiable to any order
    w.r.t. ``x``. ``grid`` is treated as a constant."""
    return _GridSample.apply(x, grid.detach().to(x.dtype))


# --- The affine warp through a 2x grid (appendix B) -----------------------------------------------


def _filter_delay(taps: torch.Tensor) -> float:
    """Centre of mass (DC group delay) of the taps, in samples."""
    t = taps.detach().to(device="cpu", dtype=torch.float64)
    k = torch.arange(t.numel(), dtype=torch.float64)
    return float((k * t).sum() / t.sum())


def _fir(x: torch.Tensor, f: torch.Tensor, **kwargs) -> torch.Tensor:
    """:func:`upfirdn2d` with the batch folded into the channels: the op is per channel, and the
    reference's depthwise convolution over ``N * C`` channels of one image is 10-40x faster on a CPU
    than the same work as ``N`` images of few channels."""
    n, c = x.shape[:2]
    y = upfirdn2d(x.reshape(1, n * c, *x.shape[2:]), f, **kwargs)
    return y.reshape(n, c, *y.shape[2:])


def _map_grid(G: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply ``[N, 3, 3]`` affine matrices to the grid ``xs`` x ``ys``: two ``[N, len(ys), len(xs)]``."""
    a = G[:, :2, :, None, None]  # [N, 2, 3, 1, 1]
    mapped = a[:, :, 0] * xs[None, None, None, :] + a[:, :, 1] * ys[None, None, :, None] + a[:, :, 2]
    return mapped[:, 0], mapped[:, 1]


def affine_resample(x: torch.Tensor, G: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """Warp each image by its 3x3 matrix: ``out(v) = x(G v)``, in pixel units centred on the image.

    ADA (appendix B): reflect-pad, upsample 2x with the wavelet low-pass, sample bilinearly on the
    affine grid, low-pass and downsample 2x, crop. The padding covers everything the sampled grid
    and both filters reach, at most ``size + len(taps)`` per side (beyond that the image is zero).
    The upsampling convolves with the taps and the downsampling correlates with them, so for a
    translation the chain is the translation and a zero-phase blur; sample positions are placed by
    the taps' centre of mass, so the warp is not shifted by the filter's delay.

    Args:
        x: ``[N, C, H, W]`` images (H, W >= 2).
        G: ``[N, 3, 3]`` matrices from output to input pixel coordinates, origin at the image centre.
        taps: 1-D low-pass taps (sym6), normalised to sum 1.
    """
    n, _, h, w = x.shape
    L = taps.numel()
    tau = _filter_delay(taps)
    gdt = torch.float64 if x.dtype == torch.float64 else torch.float32
    G = G.to(device=x.device, dtype=gdt)
    cx, cy = (w - 1) / 2, (h - 1) / 2

    # Sample points of the 2x output grid that the downsampling reads: grid index k sits at output
    # pixel (k - tau) / 2, and Kx = 2W + L - 2 of them give exactly W outputs.
    kx, ky = 2 * w + L - 2, 2 * h + L - 2
    vx = (torch.arange(kx, device=x.device, dtype=gdt) - tau) / 2 - cx
    vy = (torch.arange(ky, device=x.device, dtype=gdt) - tau) / 2 - cy

    # Input region those points map to (an affine image of a rectangle: its corners bound it).
    ones = torch.ones(4, device=x.device, dtype=gdt)
    corners = torch.stack([vx[[0, -1, 0, -1]], vy[[0, 0, -1, -1]], ones])  # [3, 4]
    src = G[:, :2, :] @ corners  # [N, 2, 4], centred input pixel coordinates
    u_min = src.amin(dim=(0, 2)) + torch.tensor([cx, cy], device=x.device, dtype=gdt)
    u_max = src.amax(dim=(0, 2)) + torch.tensor([cx, cy], device=x.device, dtype=gdt)
    # Upsampled pixel k (upfirdn2d, no padding) sits at padded input coordinate (k + L - 1 - tau) / 2;
    # bilinear taps must stay in [0, 2 * padded_size - L]. One extra pixel of margin each side.
    lo = ((L - 1 - tau) / 2 - u_min + 1).ceil()
    hi = (u_max - torch.tensor([w - 1, h - 1], device=x.device, dtype=gdt) + (tau - 1) / 2 + 1).ceil()
    x0, y0, x1, y1 = [int(v) for v in torch.cat([lo, hi]).tolist()]
    x0, x1 = (min(max(v, 0), w + L) for v in (x0, x1))
    y0, y1 = (min(max(v, 0), h + L) for v in (y0, y1))

    xp = reflect_pad(x, x0, x1, y0, y1)
    up = _fir(xp, taps, up=2, gain=4)  # [N, C, 2 * Hp - L + 1, 2 * Wp - L + 1]
    up_h, up_w = up.shape[2], up.shape[3]

    # Output -> input -> upsampled pixel index -> grid_sample's normalised coordinate.
    gx, gy = _map_grid(G, vx, vy)
    kxs = 2 * (gx + cx + x0) - (L - 1 - tau)
    kys = 2 * (gy + cy + y0) - (L - 1 - tau)
    grid = torch.stack([(2 * kxs + 1) / up_w - 1, (2 * kys + 1) / up_h - 1], dim=3)  # [N, Ky, Kx, 2]

    warped = grid_sample(up, grid)  # [N, C, 2H + L - 2, 2W + L - 2]
    return _fir(warped, taps, down=2, flip_filter=True)  # [N, C, H, W]


def integer_blit(x: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
    """Warp by matrices that map pixel centres onto pixel centres (flips, 90-degree rotations, integer
    translations): an exact gather, reflected outside the image like the resampling path."""
    n, c, h, w = x.shape
    cx, cy = (w - 1) / 2, (h - 1) / 2
    G = G.to(device=x.device, dtype=torch.float64)
    jx = torch.arange(w, device=x.device, dtype=torch.float64) - cx
    jy = torch.arange(h, device=x.device, dtype=torch.float64) - cy
    ux, uy = _map_grid(G, jx, jy)
    ix = _fold((ux + cx).round().long(), w)
    iy = _fold((uy + cy).round().long(), h)
    index = (iy * w + ix).reshape(n, 1, h * w).expand(n, c, h * w)
    return x.reshape(n, c, h * w).gather(2, index).reshape(n, c, h, w)


def is_integer_blit(G: torch.Tensor, w: int, h: int, tol: float = 1e-6) -> torch.Tensor:
    """``[N]`` bool: whether the matrix maps every pixel centre onto a pixel centre (affine, so the
    centres (0, 0), (1, 0) and (0, 1) decide)."""
    G = G.to(torch.float64)
    cx, cy = (w - 1) / 2, (h - 1) / 2
    pts = torch.tensor([[-cx, 1 - cx, -cx], [-cy, -cy, 1 - cy], [1.0, 1.0, 1.0]], dtype=torch.float64, device=G.device)
    u = G[:, :2, :] @ pts + torch.tensor([[cx], [cy]], dtype=torch.float64, device=G.device)
    return ((u - u.round()).abs() <= tol).flatten(1).all(dim=1)


# --- Image-space filtering: four bands with per-sample gains --------------------------------------


@functools.cache
def band_lowpasses() -> tuple[torch.Tensor, ...]:
    """Zero-phase low-passes with cut-offs pi/8, pi/4, pi/2 (float64 taps, odd lengths 43, 19, 7).

    The half-band filter at z, z^2, z^4 (the dilated copies have their own stop band where the
    previous copy's image sits): L_pi/2 = h(z), L_pi/4 = h(z) h(z^2), L_pi/8 = h(z) h(z^2) h(z^4).
    """
    h = torch.tensor(HALFBAND, dtype=torch.float64)
    cascade, out = torch.ones(1, dtype=torch.float64), []
    for rate in (1, 2, 4):
        dilated = torch.zeros((h.numel() - 1) * rate + 1, dtype=torch.float64)
        dilated[::rate] = h
        cascade = _convolve(cascade, dilated)
        out.append(cascade)
    return out[2], out[1], out[0]


def _convolve(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Full 1-D convolution of two tap vectors (polynomial product)."""
    return F.conv1d(a[None, None], b.flip(0)[None, None], padding=b.numel() - 1)[0, 0]


def equalize(x: torch.Tensor, gains: torch.Tensor, lowpasses: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """Filter each image separably (along x, then y) with ``H = sum_i gains_i * band_i``.

    The bands [0, pi/8], [pi/8, pi/4], [pi/4, pi/2], [pi/2, pi] are differences of consecutive
    low-passes (L_0 = 0, L_4 = identity), so they sum to the identity and
    ``H = t4 + (t3 - t4) L_pi/2 + (t2 - t3) L_pi/4 + (t1 - t2) L_pi/8``: three filterings per axis.
    Borders are reflect-padded.

    Args:
        x: ``[N, C, H, W]``.
        gains: ``[N, 4]`` gains t_1..t_4 of the bands from low to high frequency.
        lowpasses: :func:`band_lowpasses` (pi/8, pi/4, pi/2).
    """
    t = gains.to(x.dtype)
    coeffs = [t[:, 0] - t[:, 1], t[:, 1] - t[:, 2], t[:, 2] - t[:, 3]]
    for axis in ("x", "y"):
        out = x * t[:, 3, None, None, None]
        for a, taps in zip(coeffs, lowpasses):
            half = taps.numel() // 2
            f = taps.to(device=x.device, dtype=torch.float32 if x.dtype != torch.float64 else torch.float64)
            if axis == "x":
                padded, f = reflect_pad(x, half, half, 0, 0), f[None, :]
            else:
                padded, f = reflect_pad(x, 0, 0, half, half), f[:, None]
            out = out + a[:, None, None, None] * _fir(padded, f)
        x = out
    return x


__all__ = [
    "SYM6",
    "affine_resample",
    "band_lowpasses",
    "equalize",
    "grid_sample",
    "integer_blit",
    "is_integer_blit",
    "reflect_pad",
]
