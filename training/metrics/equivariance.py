"""Equivariance metrics of StyleGAN3 (Karras et al. 2021, sec. 3 and appendix E): EQ-T and EQ-R.

A generator is equivariant to a transform when rendering the transformed input gives the transformed
image. StyleGAN3 samples its input Fourier features through a user-set matrix
(``G.synthesis.input.transform``), so for one ``w`` we render

* ``orig``: the image with the identity transform;
* ``img``: the image with transform ``M`` (the features sampled at ``M p``: translated by ``t`` for
  ``M = [[1, 0, -t_x], [0, 1, -t_y]]``, rotated by ``angle`` for ``M = rot(-angle)``);

and compare ``img`` with ``ref(p) = orig(M p)``, the identity render transformed by resampling. The
metric is a PSNR in dB over the pixels where the comparison is valid (``mask``), with the intended
range of the images, [-1, 1], as peak: ``20 log10(2) - 10 log10(MSE)``, the MSE summed over every
colour channel and valid pixel of every sample before dividing (NVIDIA's ``metrics/equivariance.py``
does the same). Higher is better; a perfectly equivariant network scores +inf.

| metric | transform (drawn per group of :data:`GROUP` samples) | reference |
|---|---|---|
| ``eqt50k_int`` | translation uniform in +-1/8 of the image per axis, rounded to whole pixels | exact shift |
| ``eqt50k_frac`` | translation uniform in +-1/8 of the image per axis | Lanczos-3 shift |
| ``eqr50k`` | rotation uniform in +-180 degrees about the image centre | band-limited rotation |

The reference resampling:

* Integer shift (:func:`integer_translate`): ``ref[i] = orig[i - n]``, valid where ``i - n`` lies
  in the image.
* Fractional shift (:func:`fractional_translate`): separable Lanczos interpolation with ``a = 3``
  (``L(x) = sinc(x) sinc(x / a)`` for ``|x| < a``), the 2a taps of each pixel normalised to sum 1 so
  a constant stays constant; valid where every tap lies in the image.
* Rotation (:func:`affine_resample`, :func:`pseudo_resample`). The identity render holds a
  band-limited signal whose spectrum fills the grid's square band ``B = [-1/2, 1/2]^2`` (cycles per
  pixel). Rotating it turns the square, and sampling the result on the output grid would alias the
  corners that leave ``B``. The ideal resampler keeps the frequencies in both bands, the octagon
  ``P = B ∩ rot(B)``: ``ref(p) = sum_k orig[k] h(M p - k)`` where ``h`` is the inverse Fourier
  transform of the indicator of ``P``. ``h`` has a closed form (the divergence theorem turns the
  integral over a polygon into a sum over its edges, :func:`polygon_kernel`), so it is evaluated at
  the exact offset of every tap, times a radial Lanczos window of radius :data:`ROTATION_RADIUS`
  pixels, the taps of each pixel normalised to sum 1. The rendered ``img`` carries a spectrum that is
  its own square band; only the part inside the same octagon can be compared with ``ref``, so ``img``
  goes through the same filter without moving (NVIDIA's "pseudo-rotation": the octagon's kernel in
  output coordinates at integer offsets, the same window). Valid: pixels whose taps all lie in the
  image for both.

NVIDIA's metric rotates by 4x upsampling with a tabulated windowed kernel and bilinear sampling of
the upsampled image; here the kernel is evaluated exactly at each tap instead (docs/metrics.md says
what that changes). Integer and fractional translations follow NVIDIA's definitions.

Transforms come from each group's own seeded generator (the group of seeds ``s0 + 4g .. s0 + 4g +
3`` shares one transform, as NVIDIA's batches of 4 share one), so the numbers depend neither on the
batch size nor on the number of processes.
"""

from __future__ import annotations

import inspect
import math
from typing import Sequence

import numpy as np
import torch
from torch import nn

KINDS = ("eqt_int", "eqt_frac", "eqr")
TRANSLATE_MAX = 0.125  # fraction of the image, per axis (appendix E: 1/8)
ROTATE_MAX = math.pi  # radians: the full circle
GROUP = 4  # consecutive samples that share one transform (NVIDIA renders batches of 4 under one transform)
LANCZOS_A = 3  # fractional translation: Lanczos-3, as NVIDIA's
ROTATION_RADIUS = 6  # pixels: radius of the rotation kernel's window (NVIDIA's tabulated kernel spans 2 * 3)
PEAK = 2.0  # the intended dynamic range of the images, [-1, 1]
_STREAMS = {"eqt_int": 0x6571745F69, "eqt_frac": 0x6571745F66, "eqr": 0x6571725F72}  # "eqt_i", "eqt_f", "eqr_r"


# ----- PSNR -------------------------------------------------------------------------------------------


def psnr(sum_sq: float, count: float, peak: float = PEAK) -> float:
    """``20 log10(peak) - 10 log10(sum_sq / count)`` in dB: +inf for identical images, nan without pixels."""
    if count <= 0:
        return math.nan
    if sum_sq <= 0:
        return math.inf
    return 20 * math.log10(peak) - 10 * math.log10(sum_sq / count)


# ----- translation ------------------------------------------------------------------------------------


def _shift_axis(x: torch.Tensor, n: int, dim: int) -> torch.Tensor:
    """``out[i] = x[i - n]`` along ``dim``, zeros where ``i - n`` falls outside."""
    size = x.shape[dim]
    out = torch.zeros_like(x)
    if abs(n) >= size:
        return out
    src = x.narrow(dim, max(-n, 0), size - abs(n))
    out.narrow(dim, max(n, 0), size - abs(n)).copy_(src)
    return out


def _axis_mask(size: int, lo: int, hi: int, device: torch.device) -> torch.Tensor:
    """1 for indices in ``[lo, hi)`` of ``range(size)``, else 0 (float)."""
    i = torch.arange(size, device=device)
    return ((i >= lo) & (i < hi)).float()


def integer_translate(x: torch.Tensor, dx: int, dy: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` [..., H, W] moved by ``dx`` pixels right and ``dy`` down, and the ``[H, W]`` mask of the
    pixels that came from inside ``x`` (elsewhere the output is 0)."""
    dx, dy = int(dx), int(dy)
    h, w = x.shape[-2:]
    out = _shift_axis(_shift_axis(x, dx, -1), dy, -2)
    mask = _axis_mask(h, dy, h + dy, x.device)[:, None] * _axis_mask(w, dx, w + dx, x.device)[None, :]
    return out, mask


def lanczos(x: torch.Tensor, a: int) -> torch.Tensor:
    """The Lanczos kernel ``sinc(x) sinc(x / a)`` on ``|x| < a``, 0 elsewhere."""
    return torch.where(x.abs() < a, torch.sinc(x) * torch.sinc(x / a), torch.zeros_like(x))


def _fractional_axis(x: torch.Tensor, d: float, dim: int, a: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Move ``x`` by ``d`` pixels (any real) along ``dim``: ``out[i] = sum_j x[i - n - j] L(j - f)`` for
    ``d = n + f``, ``n = floor(d)``, ``j = -a + 1 .. a``, the taps normalised to sum 1. Returns the
    output and the 1-D mask of the indices whose taps all lie inside."""
    n = math.floor(d)
    f = d - n
    js = list(range(-a + 1, a + 1))
    taps = lanczos(torch.tensor([j - f for j in js], dtype=torch.float64), a)
    taps = (taps / taps.sum()).tolist()
    out = torch.zeros_like(x)
    for j, tap in zip(js, taps):
        out += tap * _shift_axis(x, n + j, dim)
    size = x.shape[dim]
    return out, _axis_mask(size, n + a, size + n - a + 1, x.device)


def fractional_translate(x: torch.Tensor, dx: float, dy: float,
                         a: int = LANCZOS_A) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` [..., H, W] moved by ``dx`` pixels right and ``dy`` down with separable Lanczos-``a``
    interpolation (the band-limited shift, windowed), and the ``[H, W]`` mask of the pixels whose taps
    all lie inside ``x`` (elsewhere the output is 0)."""
    y, mx = _fractional_axis(x, float(dx), -1, a)
    y, my = _fractional_axis(y, float(dy), -2, a)
    mask = my[:, None] * mx[None, :]
    return y * mask, mask


# ----- band-limited affine resampling (rotation) ------------------------------------------------------

Polygon = list[tuple[float, float]]
_SQUARE: Polygon = [(-0.5, -0.5), (0.5, -0.5), (0.5, 0.5), (-0.5, 0.5)]  # the grid's band, counter-clockwise


def _cross(o: tuple[float, float], a: tuple[float, float], b: tuple[float, float]) -> float:
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def clip_polygon(subject: Polygon, clip: Polygon) -> Polygon:
    """The intersection of two convex counter-clockwise polygons (Sutherland-Hodgman), counter-clockwise."""
    out = list(subject)
    for i in range(len(clip)):
        c0, c1 = clip[i], clip[(i + 1) % len(clip)]
        points, out = out, []
        for j in range(len(points)):
            p, q = points[j - 1], points[j]
            p_in, q_in = _cross(c0, c1, p) >= 0, _cross(c0, c1, q) >= 0
            if p_in != q_in:  # the edge p -> q crosses the clip line: add the crossing
                dp, dq = _cross(c0, c1, p), _cross(c0, c1, q)
                s = dp / (dp - dq)
                out.append((p[0] + s * (q[0] - p[0]), p[1] + s * (q[1] - p[1])))
            if q_in:
                out.append(q)
        if not out:
            return []
    return out


def _map_polygon(poly: Polygon, m: np.ndarray) -> Polygon:
    """``poly`` under the linear map ``m`` [2, 2], kept counter-clockwise."""
    pts = [(float(m[0, 0] * x + m[0, 1] * y), float(m[1, 0] * x + m[1, 1] * y)) for x, y in poly]
    return pts if np.linalg.det(m) > 0 else pts[::-1]


def polygon_area(poly: Polygon) -> float:
    return 0.5 * sum(_cross((0.0, 0.0), poly[i - 1], poly[i]) for i in range(len(poly)))


def passband(linear: np.ndarray) -> tuple[Polygon, Polygon]:
    """For ``out(p) = in(L p)`` (``L`` = ``linear`` [2, 2], pixels to pixels), the frequencies both
    grids carry: in the input's coordinates ``B ∩ L^-T B`` and in the output's ``L^T B ∩ B`` (the same
    set, mapped by ``L^T``)."""
    lin = np.asarray(linear, dtype=np.float64)
    inp = clip_polygon(_SQUARE, _map_polygon(_SQUARE, np.linalg.inv(lin).T))
    out = clip_polygon(_map_polygon(_SQUARE, lin.T), _SQUARE)
    return inp, out


def polygon_kernel(poly: Polygon, dx: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
    """``h(d) = integral over poly of exp(2 pi i nu . d) d nu`` for a centrally symmetric convex polygon
    (so ``h`` is real), at the offsets ``(dx, dy)`` (float64 tensors of one shape).

    With ``k = 2 pi d`` the divergence theorem gives ``i |k|^2 integral_P e^{i k.nu} = integral over the
    boundary of (k . n) e^{i k.nu}``; on the edge ``e_j`` with midpoint ``m_j`` the line integral is
    ``|e_j| e^{i k.m_j} sinc(k.e_j / 2)``, and ``(k . n_j) |e_j| = k x e_j``. The real part is
    ``sum_j (k x e_j) sin(k . m_j) sinc(k . e_j / 2) / |k|^2``; every term is of the order of the
    result, so it stays accurate down to tiny ``|k|``; ``h(0)`` is the area."""
    kx, ky = 2 * math.pi * dx, 2 * math.pi * dy
    k2 = kx * kx + ky * ky
    total = torch.zeros_like(kx)
    for i in range(len(poly)):
        (x0, y0), (x1, y1) = poly[i], poly[(i + 1) % len(poly)]
        ex, ey, mx, my = x1 - x0, y1 - y0, 0.5 * (x0 + x1), 0.5 * (y0 + y1)
        # torch.sinc(u) = sin(pi u) / (pi u); sin(t) / t at t = k.e / 2 is torch.sinc(k.e / (2 pi)).
        along = torch.sinc((kx * ex + ky * ey) / (2 * math.pi))
        total = total + (kx * ey - ky * ex) * torch.sin(kx * mx + ky * my) * along
    tiny = k2 < 1e-20
    safe = torch.where(tiny, torch.ones_like(k2), k2)
    return torch.where(tiny, torch.full_like(kx, polygon_area(poly)), total / safe)


def radial_window(r: torch.Tensor, radius: float) -> torch.Tensor:
    """Lanczos's window made radial: ``sinc(r / radius)`` inside the disc, 0 outside."""
    return torch.where(r < radius, torch.sinc(r / radius), torch.zeros_like(r))


def _pixel_map(transform: torch.Tensor, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """``transform`` [3, 3] (in units of the image size, centred, x right, y down: G's input transform)
    as ``q = L p + b`` on pixel indices (pixel ``i``'s centre is at ``(i + 0.5) / size - 0.5``)."""
    m = np.asarray(transform.detach().double().cpu(), dtype=np.float64)
    scale = np.array([w, h], dtype=np.float64)
    centre = (scale - 1) / 2
    lin = m[:2, :2] * scale[:, None] / scale[None, :]
    shift = centre + m[:2, 2] * scale - lin @ centre
    return lin, shift


def affine_resample(x: torch.Tensor, transform: torch.Tensor, radius: float = ROTATION_RADIUS,
                    rows_per_chunk: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``out(p) = x(M p)`` for ``x`` [N, C, H, W] and ``M`` = ``transform`` (G's input-transform
    convention), band-limited to the frequencies both grids carry (see the module docstring), and the
    ``[H, W]`` mask of the pixels whose taps all lie in ``x`` (elsewhere the output is 0)."""
    n, c, h, w = x.shape
    lin, shift = _pixel_map(transform, h, w)
    band, _ = passband(lin)
    reach = math.ceil(radius)
    offsets = torch.arange(-reach + 1, reach + 1, dtype=torch.float64, device=x.device)
    taps = offsets.numel()
    flat = x.reshape(n * c, h * w)
    out = torch.zeros(n * c, h * w, dtype=x.dtype, device=x.device)
    mask = torch.zeros(h * w, dtype=x.dtype, device=x.device)
    rows_per_chunk = rows_per_chunk or max(1, (1 << 20) // (w * taps * taps))
    cols = torch.arange(w, dtype=torch.float64, device=x.device)
    lin_t = torch.tensor(lin, dtype=torch.float64, device=x.device)
    for r0 in range(0, h, rows_per_chunk):
        rows = torch.arange(r0, min(r0 + rows_per_chunk, h), dtype=torch.float64, device=x.device)
        py, px = torch.meshgrid(rows, cols, indexing="ij")
        qx = lin_t[0, 0] * px + lin_t[0, 1] * py + shift[0]  # [rows, W]: where each output pixel samples x
        qy = lin_t[1, 0] * px + lin_t[1, 1] * py + shift[1]
        kx = qx.floor()[..., None, None] + offsets[None, :]  # [rows, W, 1, T]: tap columns
        ky = qy.floor()[..., None, None] + offsets[:, None]  # [rows, W, T, 1]: tap rows
        dx, dy = qx[..., None, None] - kx, qy[..., None, None] - ky
        dx, dy = torch.broadcast_tensors(dx, dy)
        weights = polygon_kernel(band, dx, dy) * radial_window(torch.sqrt(dx * dx + dy * dy), radius)
        weights = weights / weights.sum(dim=(-2, -1), keepdim=True)
        used = weights != 0
        inside = (kx >= 0) & (kx < w) & (ky >= 0) & (ky < h)
        valid = (inside | ~used).all(dim=-1).all(dim=-1)  # [rows, W]
        index = (ky.clamp(0, h - 1) * w + kx.clamp(0, w - 1)).long().reshape(-1)
        weights = torch.where(inside, weights, torch.zeros_like(weights)).reshape(len(rows) * w, taps * taps)
        gathered = flat[:, index].reshape(n * c, len(rows) * w, taps * taps)
        chunk = (gathered * weights.to(x.dtype)).sum(dim=-1)
        start = r0 * w
        out[:, start:start + len(rows) * w] = chunk * valid.reshape(-1).to(x.dtype)
        mask[start:start + len(rows) * w] = valid.reshape(-1).to(x.dtype)
    return out.reshape(n, c, h, w), mask.reshape(h, w)


def pseudo_kernel(transform: torch.Tensor, h: int, w: int, radius: float = ROTATION_RADIUS) -> torch.Tensor:
    """The square 2D filter (float64) that keeps, in place, the frequencies :func:`affine_resample` with
    the same ``transform`` keeps: the passband in output coordinates, same window, normalised to sum 1."""
    lin, _ = _pixel_map(transform, h, w)
    _, band = passband(lin)
    reach = math.ceil(radius) - 1
    d = torch.arange(-reach, reach + 1, dtype=torch.float64)
    dy, dx = torch.meshgrid(d, d, indexing="ij")
    f = polygon_kernel(band, dx, dy) * radial_window(torch.sqrt(dx * dx + dy * dy), radius)
    return f / f.sum()


def pseudo_resample(x: torch.Tensor, transform: torch.Tensor,
                    radius: float = ROTATION_RADIUS) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` [N, C, H, W] filtered by :func:`pseudo_kernel` (NVIDIA's "pseudo-rotation": the frequencies a
    rotation keeps, without moving), and the ``[H, W]`` mask of the pixels the whole filter covers."""
    n, c, h, w = x.shape
    f = pseudo_kernel(transform, h, w, radius).to(x.device, x.dtype)
    reach = f.shape[0] // 2
    y = nn.functional.conv2d(x.reshape(n * c, 1, h, w), f[None, None], padding=reach).reshape(n, c, h, w)
    mask = _axis_mask(h, reach, h - reach, x.device)[:, None] * _axis_mask(w, reach, w - reach, x.device)[None, :]
    return y * mask.to(x.dtype), mask.to(x.dtype)


# ----- transforms ---------------------------------------------------------------------------------------


def group_generator(kind: str, group_seed: int) -> torch.Generator:
    """The CPU generator of one group's transform for metric ``kind``, seeded from (seed, kind)
    through numpy's ``SeedSequence`` (independent of the latents' and noise streams)."""
    state = np.random.SeedSequence([group_seed, _STREAMS[kind]]).generate_state(1, np.uint32)[0]
    return torch.Generator(device="cpu").manual_seed(int(state))


def translation_matrix(tx: float, ty: float) -> torch.Tensor:
    """G's input transform that renders the image moved by ``(tx, ty)`` (fractions of the image, x
    right, y down): the features are sampled at ``p - t``."""
    return torch.tensor([[1.0, 0.0, -tx], [0.0, 1.0, -ty], [0.0, 0.0, 1.0]], dtype=torch.float64)


def rotation_matrix(angle: float) -> torch.Tensor:
    """``[[cos, -sin, 0], [sin, cos, 0], [0, 0, 1]]`` of ``angle`` (radians)."""
    c, s = math.cos(angle), math.sin(angle)
    return torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)


def draw_transform(kind: str, group_seed: int, resolution: tuple[int, int]) -> torch.Tensor:
    """The group's input transform (float64 [3, 3]): a translation uniform in ``+-TRANSLATE_MAX`` per
    axis (``eqt_int``: rounded to whole pixels of ``resolution`` = (H, W)), or a rotation by an angle
    uniform in ``+-ROTATE_MAX`` (``eqr``: the transform rotates by minus that angle, so the image turns
    by it)."""
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r}: expected one of {', '.join(KINDS)}")
    u = torch.rand(2, generator=group_generator(kind, group_seed), dtype=torch.float64) * 2 - 1
    if kind == "eqr":
        return rotation_matrix(-float(u[0]) * ROTATE_MAX)
    tx, ty = float(u[0]) * TRANSLATE_MAX, float(u[1]) * TRANSLATE_MAX
    if kind == "eqt_int":
        h, w = resolution
        tx, ty = round(tx * w) / w, round(ty * h) / h
    return translation_matrix(tx, ty)


def reference(kind: str, orig: torch.Tensor, img: torch.Tensor, transform: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(ref, cmp, mask)``: what ``img`` (rendered under ``transform``) is compared with, ``img`` as it
    is compared, and the ``[H, W]`` mask of the valid pixels."""
    h, w = orig.shape[-2:]
    t = transform.double()
    if kind == "eqt_int":
        ref, mask = integer_translate(orig, round(-float(t[0, 2]) * w), round(-float(t[1, 2]) * h))
        return ref, img, mask
    if kind == "eqt_frac":
        ref, mask = fractional_translate(orig, -float(t[0, 2]) * w, -float(t[1, 2]) * h)
        return ref, img, mask
    ref, ref_mask = affine_resample(orig, transform)
    cmp, cmp_mask = pseudo_resample(img, transform)
    return ref, cmp, ref_mask * cmp_mask


# ----- the generator ------------------------------------------------------------------------------------


def input_transform(G: nn.Module) -> torch.Tensor | None:
    """``G.synthesis.input.transform`` when G has one ([3, 3]: a StyleGAN3 generator), else None."""
    t = getattr(getattr(getattr(G, "synthesis", None), "input", None), "transform", None)
    return t if isinstance(t, torch.Tensor) and tuple(t.shape) == (3, 3) else None


def _refusal(names: Sequence[str], what: str) -> str:
    return (f"{', '.join(names)}: the equivariance metrics need a StyleGAN3 generator (one whose synthesis input "
            f"takes a user-set transform, G.synthesis.input.transform); this is {what}")


def check_network(G: nn.Module, names: Sequence[str]) -> None:
    """Raise ``ValueError`` (one line naming the metrics) unless G takes a user-set input transform."""
    if names and input_transform(G) is None:
        family = getattr(getattr(G, "config", None), "family", None)
        raise ValueError(_refusal(names, f"a {family} network" if family else f"a {type(G).__name__}"))


def check_family(names: Sequence[str], family: str) -> None:
    """The same refusal from a network family alone (training's start-up, before G is built)."""
    if names and family != "stylegan3":
        raise ValueError(_refusal(names, f"a {family} network"))


def _synthesis_kwargs(G: nn.Module) -> dict:
    """Render without noise, in float32 where the network lets one choose (as NVIDIA's metric forces)."""
    kwargs = {"noise_mode": "const"}
    try:
        params = inspect.signature(G.synthesis.forward).parameters
    except (TypeError, ValueError):
        return kwargs
    if "precision" in params:
        kwargs["precision"] = "fp32"
    return kwargs


@torch.no_grad()
def sample_sums(G: nn.Module, ws: torch.Tensor, seeds: Sequence[int], first_seed: int, kinds: Sequence[str],
                active: dict[str, int] | None = None) -> torch.Tensor:
    """Per seed and metric kind, ``(sum of squared differences, valid values)`` over channels and
    pixels: ``[len(seeds), 2 * len(kinds)]`` float64 on the CPU. ``ws`` are the seeds' ``w``; seed ``s``
    belongs to group ``(s - first_seed) // GROUP``, which draws one transform per kind. ``active``: per
    kind, the number of samples (from ``first_seed``) it needs; later ones are left at 0."""
    transform = input_transform(G)
    check_network(G, list(kinds))
    kwargs = _synthesis_kwargs(G)
    saved = transform.detach().clone()
    out = torch.zeros(len(seeds), 2 * len(kinds), dtype=torch.float64)
    try:
        transform.copy_(torch.eye(3))
        orig = G.synthesis(ws, **kwargs).float()
        h, w = orig.shape[-2:]
        positions = [s - first_seed for s in seeds]
        groups: dict[int, list[int]] = {}
        for i, pos in enumerate(positions):
            groups.setdefault(pos // GROUP, []).append(i)
        for col, kind in enumerate(kinds):
            limit = (active or {}).get(kind)
            for g, members in groups.items():
                members = [i for i in members if limit is None or positions[i] < limit]
                if not members:
                    continue
                # The reference resamples with exactly the matrix G sees (its buffer's precision).
                m = draw_transform(kind, first_seed + g * GROUP, (h, w)).to(transform.dtype).double()
                transform.copy_(m.to(transform.dtype))
                img = G.synthesis(ws[members], **kwargs).float()
                ref, cmp, mask = reference(kind, orig[members], img, m)
                diff = (ref - cmp).double().square() * mask.double()
                out[members, 2 * col] = diff.sum(dim=(1, 2, 3)).cpu()
                out[members, 2 * col + 1] = float(mask.double().sum()) * orig.shape[1]
    finally:
        transform.copy_(saved)
    return out
