"""Adaptive discriminator augmentation (ADA): the augmentation pipeline of Karras et al. 2020,
"Training Generative Adversarial Networks with Limited Data", appendix B.

Every image D sees, real and fake, goes through :class:`AugmentPipe`. It applies 18 transformations
in a fixed order, each to each sample independently with probability ``p * strength`` (the paper's
``p``, adapted by the trainer, times a per-transform multiplier that is 1 in the named pipes):

1. pixel blitting: x-flip, 90-degree rotation, integer translation;
2. general geometry: isotropic scaling, arbitrary rotation (before and after the anisotropic
   scaling, each with probability ``1 - sqrt(1 - p)``, so that some rotation happens with
   probability ``p``), anisotropic scaling, fractional translation;
3. colour: brightness, contrast, luma flip, hue rotation, saturation;
4. image-space filtering: gains of four frequency bands (four transformations);
5. additive Gaussian noise; 6. cutout.

1 and 2 compose into one 3x3 matrix per sample and one resampling (``augment_resample``); 3 into
one 4x4 colour matrix. Since D only ever sees augmented images, G is not pushed to produce the
augmentations as long as they are "non-leaking" (p < ~0.8, paper sec. 2.2).

All randomness comes from the ``torch.Generator`` passed to :meth:`AugmentPipe.forward`, drawn in an
order that depends only on the batch size, the image size and the pipe's configuration (never on
``p``), so a micro-batch augmented with a seeded generator is the same on any process layout.
The pipe is differentiable to second order w.r.t. the images (R1 differentiates through it).
"""

from __future__ import annotations

import difflib
import math
from typing import Any

import torch

from ops.upfirdn2d import setup_filter
from training.augment_resample import (
    SYM6,
    affine_resample,
    band_lowpasses,
    equalize,
    integer_blit,
    is_integer_blit,
)

STRENGTHS = (
    "xflip", "rotate90", "xint", "scale", "rotate", "aniso", "xfrac",
    "brightness", "contrast", "lumaflip", "hue", "saturation", "imgfilter", "noise", "cutout",
)  # fmt: skip

# The paper's ranges (appendix B, Figure 24's pseudo-code): uniform maxima and the standard deviations
# of the normal / log2-normal draws.
RANGES: dict[str, float] = {
    "xint_max": 0.125,  # integer translation: U(-0.125, 0.125) x image size, rounded
    "scale_std": 0.2,  # isotropic scaling: lognormal(0, (0.2 ln 2)^2)
    "rotate_max": 1.0,  # rotation: U(-pi, pi) x rotate_max (1 = full circle)
    "aniso_std": 0.2,  # anisotropic scaling: lognormal(0, (0.2 ln 2)^2)
    "xfrac_std": 0.125,  # fractional translation: N(0, 0.125^2) x image size
    "brightness_std": 0.2,  # brightness: N(0, 0.2^2) added
    "contrast_std": 0.5,  # contrast: lognormal(0, (0.5 ln 2)^2) multiplied
    "hue_max": 1.0,  # hue rotation: U(-pi, pi) x hue_max about the luma axis
    "saturation_std": 1.0,  # saturation: lognormal(0, (1 ln 2)^2) off the luma axis
    "imgfilter_std": 1.0,  # band gains: lognormal(0, (1 ln 2)^2)
    "noise_std": 0.1,  # additive noise: sigma ~ |N(0, 0.1^2)|
    "cutout_size": 0.5,  # cutout: square of 0.5 x image size
}

_BLIT = {"xflip": 1.0, "rotate90": 1.0, "xint": 1.0}
_GEOM = {"scale": 1.0, "rotate": 1.0, "aniso": 1.0, "xfrac": 1.0}
_COLOR = {"brightness": 1.0, "contrast": 1.0, "lumaflip": 1.0, "hue": 1.0, "saturation": 1.0}
_FILTER = {"imgfilter": 1.0}
_NOISE = {"noise": 1.0}
_CUTOUT = {"cutout": 1.0}

# The paper's named pipes (sec. 3 and Figure 4: b = blit, g = geom, c = color, f = filter, n = noise,
# c = cutout); 'bgc' is StyleGAN2-ADA's default.
PIPELINES: dict[str, dict[str, float]] = {
    "blit": dict(_BLIT),
    "geom": dict(_GEOM),
    "color": dict(_COLOR),
    "filter": dict(_FILTER),
    "noise": dict(_NOISE),
    "cutout": dict(_CUTOUT),
    "bg": {**_BLIT, **_GEOM},
    "bgc": {**_BLIT, **_GEOM, **_COLOR},
    "bgcf": {**_BLIT, **_GEOM, **_COLOR, **_FILTER},
    "bgcfn": {**_BLIT, **_GEOM, **_COLOR, **_FILTER, **_NOISE},
    "bgcfnc": {**_BLIT, **_GEOM, **_COLOR, **_FILTER, **_NOISE, **_CUTOUT},
}
DEFAULT_PIPE = "bgc"

# Expected power of natural images in the four bands (1/f spectrum); the band gains are normalised
# so that this power is kept (appendix B).
_BAND_POWER = (10 / 13, 1 / 13, 1 / 13, 1 / 13)
# Luma axis of RGB.
_LUMA = (1 / math.sqrt(3), 1 / math.sqrt(3), 1 / math.sqrt(3))


class AugmentPipe(torch.nn.Module):
    """The ADA pipeline. ``p`` is a scalar float buffer (saved in state dicts); the trainer sets it
    with ``pipe.p.copy_(torch.as_tensor(value))``.

    Args: one strength per transformation in :data:`STRENGTHS` (a multiplier of ``p``; 0 disables
    the transformation and its random draws), the ranges of :data:`RANGES`, and the initial ``p``.
    """

    def __init__(self, *, p: float = 0.0, **kwargs: float) -> None:
        super().__init__()
        allowed = list(STRENGTHS) + list(RANGES)
        for key, value in kwargs.items():
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ValueError(f"AugmentPipe: unknown option {key!r}{hint}; allowed: {', '.join(allowed)}")
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"AugmentPipe: {key}={value!r}: expected a finite number >= 0")
        if not 0 <= p <= 1:
            raise ValueError(f"AugmentPipe: p={p!r}: expected a probability in [0, 1]")
        self.strengths = {k: float(kwargs.get(k, 0.0)) for k in STRENGTHS}
        self.ranges = {k: float(kwargs.get(k, v)) for k, v in RANGES.items()}
        if not 0 < self.ranges["cutout_size"] <= 1:
            raise ValueError(f"AugmentPipe: cutout_size={self.ranges['cutout_size']!r}: expected a fraction in (0, 1]")
        self.register_buffer("p", torch.tensor(float(p), dtype=torch.float32))
        self.register_buffer("geom_taps", setup_filter(list(SYM6), separable=True), persistent=False)

    def config(self) -> dict[str, float]:
        """Every option, resolved (strengths and ranges), for ``config.json``."""
        return {**self.strengths, **self.ranges}

    def extra_repr(self) -> str:
        on = ", ".join(f"{k}={v:g}" for k, v in self.strengths.items() if v)
        return f"p={float(self.p):.4f}, {on or 'no transformations'}"

    def forward(self, images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Augment ``[N, C, H, W]`` float images (about [-1, 1]); every draw comes from ``gen``,
        which must live on the images' device."""
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or not images.is_floating_point():
            is_tensor = isinstance(images, torch.Tensor)
            desc = f"{tuple(images.shape)} {images.dtype}" if is_tensor else type(images).__name__
            raise ValueError(f"AugmentPipe: images: expected a float tensor [N, C, H, W], got {desc}")
        if gen.device.type != images.device.type:
            raise ValueError(
                f"AugmentPipe: gen is on {gen.device} but the images are on {images.device}; "
                "pass a generator on the images' device"
            )
        draw = _Draws(images.shape[0], images.device, gen)
        p = self.p.to(device=images.device, dtype=torch.float32)
        x = self._geometric(images, draw, p)
        x = self._color(x, draw, p)
        x = self._imgfilter(x, draw, p)
        x = self._noise(x, draw, p)
        return self._cutout(x, draw, p)

    # --- 1 and 2: pixel blitting and general geometric transformations ----------------------------

    def _geometric(self, x: torch.Tensor, draw: _Draws, p: torch.Tensor) -> torch.Tensor:
        s, r = self.strengths, self.ranges
        if not any(s[k] for k in ("xflip", "rotate90", "xint", "scale", "rotate", "aniso", "xfrac")):
            return x
        n, _, h, w = x.shape
        if h < 2 or w < 2:
            raise ValueError(f"AugmentPipe: images of {h}x{w}: geometric transforms need at least 2x2 pixels")
        # G maps output pixel coordinates to input ones (origin at the image centre). Each forward
        # transform F_i of the list is applied to the image in turn, so G = F_1^-1 F_2^-1 ... .
        G = torch.eye(3, dtype=torch.float64, device=x.device).repeat(n, 1, 1)
        if s["xflip"]:
            on, i = draw.fire(p * s["xflip"]), draw.integers(2)
            G = G @ _scale2d(torch.where(on, 1 - 2 * i, 1.0), torch.ones_like(i))
        if s["rotate90"]:
            on, i = draw.fire(p * s["rotate90"]), draw.integers(4)
            G = G @ _rotate90(-torch.where(on, i, 0.0))
        if s["xint"]:
            on, t = draw.fire(p * s["xint"]), (draw.uniform(2) * 2 - 1) * r["xint_max"]
            t = torch.where(on[:, None], t, 0.0)
            G = G @ _translate2d(-(t[:, 0] * w).round(), -(t[:, 1] * h).round())
        if s["scale"]:
            on, z = draw.fire(p * s["scale"]), draw.normal(1)[:, 0]
            k = torch.where(on, torch.exp2(z * r["scale_std"]), 1.0)
            G = G @ _scale2d(1 / k, 1 / k)
        p_rot = 1 - torch.sqrt(1 - (p * s["rotate"]).clamp(0, 1))  # two chances: 1 - (1 - p_rot)^2 = p
        if s["rotate"]:
            on, a = draw.fire(p_rot), (draw.uniform(1)[:, 0] * 2 - 1) * math.pi * r["rotate_max"]
            G = G @ _rotate2d(-torch.where(on, a, 0.0))
        if s["aniso"]:
            on, z = draw.fire(p * s["aniso"]), draw.normal(1)[:, 0]
            k = torch.where(on, torch.exp2(z * r["aniso_std"]), 1.0)
            G = G @ _scale2d(1 / k, k)
        if s["rotate"]:
            on, a = draw.fire(p_rot), (draw.uniform(1)[:, 0] * 2 - 1) * math.pi * r["rotate_max"]
            G = G @ _rotate2d(-torch.where(on, a, 0.0))
        if s["xfrac"]:
            on, t = draw.fire(p * s["xfrac"]), draw.normal(2) * r["xfrac_std"]
            t = torch.where(on[:, None], t, 0.0)
            G = G @ _translate2d(-t[:, 0] * w, -t[:, 1] * h)

        # Matrices that move pixel centres onto pixel centres (the identity, flips, 90-degree
        # rotations, integer shifts) are an exact gather: the identity passes through untouched and
        # blitted pixels are not blurred. The others go through one resampling.
        exact = is_integer_blit(G, w, h)
        out = integer_blit(x, torch.where(exact[:, None, None], G, torch.eye(3, dtype=G.dtype, device=G.device)))
        warp = (~exact).nonzero()[:, 0]
        if warp.numel() == 0:
            return out
        taps = self.geom_taps.to(x.device)
        warped = affine_resample(x.index_select(0, warp), G.index_select(0, warp), taps)
        return out.index_copy(0, warp, warped)

    # --- 3: colour transformations ------------------------------------------------------------------

    def _color(self, x: torch.Tensor, draw: _Draws, p: torch.Tensor) -> torch.Tensor:
        s, r = self.strengths, self.ranges
        if not any(s[k] for k in ("brightness", "contrast", "lumaflip", "hue", "saturation")):
            return x
        n, c = x.shape[:2]
        if c not in (1, 3):
            raise ValueError(f"AugmentPipe: colour transforms need 1 or 3 channels, got {c}")
        dev = x.device
        v = torch.tensor([*_LUMA, 0.0], dtype=torch.float64, device=dev)
        vvt = torch.outer(v, v)  # projection onto the luma axis (4x4, homogeneous)
        eye = torch.eye(4, dtype=torch.float64, device=dev)
        C = eye.repeat(n, 1, 1)  # colours are transformed as c' = C c, so C <- F_i C.
        changed = torch.zeros(n, dtype=torch.bool, device=dev)
        if s["brightness"]:
            on, b = draw.fire(p * s["brightness"]), draw.normal(1)[:, 0] * r["brightness_std"]
            b = torch.where(on, b, 0.0)
            C = _translate3d(b) @ C
            changed |= on
        if s["contrast"]:
            on, z = draw.fire(p * s["contrast"]), draw.normal(1)[:, 0]
            k = torch.where(on, torch.exp2(z * r["contrast_std"]), 1.0)
            C = _scale3d(k) @ C
            changed |= on
        if s["lumaflip"]:
            on, i = draw.fire(p * s["lumaflip"]), draw.integers(2)
            i = torch.where(on, i, 0.0)
            C = (eye - 2 * vvt * i[:, None, None]) @ C  # mirror the luma component
            changed |= on & (i > 0)
        if s["hue"]:
            on, a = draw.fire(p * s["hue"]), (draw.uniform(1)[:, 0] * 2 - 1) * math.pi * r["hue_max"]
            C = _rotate3d_luma(torch.where(on, a, 0.0), v) @ C
            changed |= on
        if s["saturation"]:
            on, z = draw.fire(p * s["saturation"]), draw.normal(1)[:, 0]
            k = torch.where(on, torch.exp2(z * r["saturation_std"]), 1.0)
            C = (vvt + (eye - vvt) * k[:, None, None]) @ C  # scale the chroma, keep the luma
            changed |= on

        C = C.to(x.dtype)
        if c == 3:
            y = torch.einsum("nij,njhw->nihw", C[:, :3, :3], x) + C[:, :3, 3, None, None]
        else:
            # Gray g is the RGB colour (g, g, g); back to gray is the mean of the channels (the luma
            # axis): g' = a g + b with a = mean of the row sums of C[:3, :3] and b = mean of C[:3, 3].
            # Hue and saturation keep the luma axis, so gray sees brightness, contrast and luma flip.
            a = C[:, :3, :3].sum(dim=2).mean(dim=1)
            b = C[:, :3, 3].mean(dim=1)
            y = x * a[:, None, None, None] + b[:, None, None, None]
        return torch.where(changed[:, None, None, None], y, x)

    # --- 4: image-space filtering ---------------------------------------------------------------------

    def _imgfilter(self, x: torch.Tensor, draw: _Draws, p: torch.Tensor) -> torch.Tensor:
        s, r = self.strengths, self.ranges
        if not s["imgfilter"]:
            return x
        n = x.shape[0]
        gains, changed = [], torch.zeros(n, dtype=torch.bool, device=x.device)
        for _ in range(4):  # each band is its own transformation, with its own chance
            on, z = draw.fire(p * s["imgfilter"]), draw.normal(1)[:, 0]
            gains.append(torch.where(on, torch.exp2(z * r["imgfilter_std"]), 1.0))
            changed |= on
        t = torch.stack(gains, dim=1).to(torch.float64)  # [N, 4]
        power = torch.tensor(_BAND_POWER, dtype=torch.float64, device=x.device)
        t = t / (power * t.square()).sum(dim=1, keepdim=True).sqrt()  # keep the expected image power
        y = equalize(x, t, band_lowpasses())
        return torch.where(changed[:, None, None, None], y, x)

    # --- 5 and 6: additive noise and cutout -----------------------------------------------------------

    def _noise(self, x: torch.Tensor, draw: _Draws, p: torch.Tensor) -> torch.Tensor:
        if not self.strengths["noise"]:
            return x
        on, z = draw.fire(p * self.strengths["noise"]), draw.normal(1)[:, 0]
        sigma = torch.where(on, z.abs() * self.ranges["noise_std"], 0.0)  # half-normal std
        noise = draw.normal_like(x)
        return torch.where(on[:, None, None, None], x + noise * sigma.to(x.dtype)[:, None, None, None], x)

    def _cutout(self, x: torch.Tensor, draw: _Draws, p: torch.Tensor) -> torch.Tensor:
        if not self.strengths["cutout"]:
            return x
        n, _, h, w = x.shape
        on, centre = draw.fire(p * self.strengths["cutout"]), draw.uniform(2)
        half = self.ranges["cutout_size"] / 2
        px = (torch.arange(w, device=x.device, dtype=torch.float32) + 0.5) / w
        py = (torch.arange(h, device=x.device, dtype=torch.float32) + 0.5) / h
        inside_x = (px[None, :] - centre[:, 0, None]).abs() < half  # [N, W]
        inside_y = (py[None, :] - centre[:, 1, None]).abs() < half  # [N, H]
        hole = inside_y[:, :, None] & inside_x[:, None, :] & on[:, None, None]
        return x * (~hole).to(x.dtype)[:, None]


class _Draws:
    """All random numbers of one forward pass, from one generator, in call order."""

    def __init__(self, n: int, device: torch.device, gen: torch.Generator) -> None:
        self.n, self.device, self.gen = n, device, gen

    def uniform(self, k: int) -> torch.Tensor:
        return torch.rand(self.n, k, generator=self.gen, device=self.device).double()

    def normal(self, k: int) -> torch.Tensor:
        return torch.randn(self.n, k, generator=self.gen, device=self.device).double()

    def integers(self, high: int) -> torch.Tensor:
        """Uniform integers in [0, high), as float64."""
        return (self.uniform(1)[:, 0] * high).floor().clamp(max=high - 1)

    def fire(self, prob: torch.Tensor) -> torch.Tensor:
        """``[N]`` bool: which samples get the transformation (probability ``prob``, a tensor)."""
        return torch.rand(self.n, generator=self.gen, device=self.device) < prob

    def normal_like(self, x: torch.Tensor) -> torch.Tensor:
        return torch.randn(x.shape, generator=self.gen, device=self.device, dtype=torch.float32).to(x.dtype)


# --- Matrices (3x3 homogeneous 2-D, 4x4 homogeneous RGB), batched over [N] -------------------------


def _mat(rows: list[list[Any]], like: torch.Tensor) -> torch.Tensor:
    """Stack a matrix of per-sample ``[N]`` tensors and Python numbers into ``[N, R, C]``."""
    full = [[e if isinstance(e, torch.Tensor) else torch.full_like(like, float(e)) for e in row] for row in rows]
    return torch.stack([torch.stack(row, dim=-1) for row in full], dim=-2)


def _scale2d(sx: torch.Tensor, sy: torch.Tensor) -> torch.Tensor:
    return _mat([[sx, 0, 0], [0, sy, 0], [0, 0, 1]], sx)


def _translate2d(tx: torch.Tensor, ty: torch.Tensor) -> torch.Tensor:
    return _mat([[1, 0, tx], [0, 1, ty], [0, 0, 1]], tx)


def _rotate2d(a: torch.Tensor) -> torch.Tensor:
    c, s = torch.cos(a), torch.sin(a)
    return _mat([[c, -s, 0], [s, c, 0], [0, 0, 1]], a)


def _rotate90(quarters: torch.Tensor) -> torch.Tensor:
    """Rotation by ``quarters`` x 90 degrees with exact 0/1 entries (cos/sin of pi/2 are not exact)."""
    k = quarters.remainder(4).long()
    c = torch.tensor([1.0, 0.0, -1.0, 0.0], dtype=torch.float64, device=k.device)[k]
    s = torch.tensor([0.0, 1.0, 0.0, -1.0], dtype=torch.float64, device=k.device)[k]
    return _mat([[c, -s, 0], [s, c, 0], [0, 0, 1]], c)


def _translate3d(b: torch.Tensor) -> torch.Tensor:
    return _mat([[1, 0, 0, b], [0, 1, 0, b], [0, 0, 1, b], [0, 0, 0, 1]], b)


def _scale3d(k: torch.Tensor) -> torch.Tensor:
    return _mat([[k, 0, 0, 0], [0, k, 0, 0], [0, 0, k, 0], [0, 0, 0, 1]], k)


def _rotate3d_luma(a: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Rotation by ``a`` about the unit axis ``v`` (Rodrigues): cos a I + sin a [v]_x + (1 - cos a) v v^T."""
    x, y, z = (float(e) for e in v[:3])
    c, s = torch.cos(a), torch.sin(a)
    d = 1 - c
    return _mat(
        [
            [c + x * x * d, x * y * d - z * s, x * z * d + y * s, 0],
            [y * x * d + z * s, c + y * y * d, y * z * d - x * s, 0],
            [z * x * d - y * s, z * y * d + x * s, c + z * z * d, 0],
            [0, 0, 0, 1],
        ],
        a,
    )


def make_pipe(name: str = DEFAULT_PIPE, **overrides: float) -> AugmentPipe:
    """The named pipe of :data:`PIPELINES`, with any strength or range replaced by ``overrides``
    (e.g. ``make_pipe('bgc', xflip=0, p=0.2)``)."""
    if name not in PIPELINES:
        raise ValueError(f"augment pipe {name!r}: expected one of {', '.join(PIPELINES)}")
    return AugmentPipe(**{**PIPELINES[name], **overrides})
