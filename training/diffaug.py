"""DiffAugment: differentiable augmentation of every image D sees (Zhao et al. 2020).

Zhao, Liu, Lin, Zhu and Han, "Differentiable Augmentation for Data-Efficient GAN Training"
(NeurIPS 2020), sec. 3: the same random transform family T is applied to real and generated
images in both D's and G's updates, ``D(T(x))`` and ``D(T(G(z)))``, so D cannot memorise the few
real images and G still gets a gradient through T. The paper's three policies, on images in
[-1, 1]:

- ``color``: brightness ``x + b`` with ``b ~ U[-0.5, 0.5]``; saturation ``(x - m) * s + m`` with
  ``s ~ U[0, 2]`` and ``m`` the per-pixel mean over channels; contrast ``(x - M) * c + M`` with
  ``c ~ U[0.5, 1.5]`` and ``M`` the mean of the whole image. One draw of each per image, applied in
  that order. With one channel ``x - m`` is zero, so saturation is the identity on grayscale.
- ``translation``: an integer shift in y and x, each uniform in ``[-round(H/8), round(H/8)]``
  (resp. W), with zeros entering where the image moved away.
- ``cutout``: a square of ``round(H/2) x round(W/2)`` pixels set to zero, its centre uniform over
  the image so that it is clipped at the borders as often at one side as at the other.

Every transform is linear in the image (the means included), built from additions, products,
``pad`` and ``gather``, so first and second derivatives flow through it: R1's double backward
works when D sees augmented reals.

Randomness: ``draw_params`` takes every random number from one ``torch.Generator`` as uniform
floats in [0, 1), in an order that depends only on the number of images and the policy (never on
C, H, W, the dtype or the data), and ``apply_params`` turns them into the transforms above. Drawing
for a global batch and slicing the rows of each process gives the same augmentation on any
process layout.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

POLICIES: tuple[str, ...] = ("color", "translation", "cutout")

# The draws of each policy, in order: name -> uniforms per image.
_DRAWS: dict[str, tuple[tuple[str, int], ...]] = {
    "color": (("brightness", 1), ("saturation", 1), ("contrast", 1)),
    "translation": (("translation", 2),),  # (y, x)
    "cutout": (("cutout", 2),),  # (y, x) of the square's centre
}


def parse_policy(text: str) -> tuple[str, ...]:
    """``"color,translation,cutout"`` -> ``("color", "translation", "cutout")``, in the given order.

    Raises one-line ``ValueError``s for an empty list, an unknown name or a repeated one, naming
    what is allowed, so the CLI can pass the message on unchanged.
    """
    names = tuple(part.strip() for part in text.split(","))
    if not any(names):
        raise ValueError(f"diffaug policy {text!r} is empty: expected a comma-separated list of {', '.join(POLICIES)}")
    for name in names:
        if name not in POLICIES:
            raise ValueError(
                f"diffaug policy {text!r}: unknown name {name!r}; expected a comma-separated list of {', '.join(POLICIES)}"
            )
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"diffaug policy {text!r} names {', '.join(repeated)} more than once: give each at most once")
    return names


def _check_policy(policy: Sequence[str]) -> None:
    if isinstance(policy, str):
        raise ValueError(f"diffaug policy {policy!r} is a string: pass parse_policy({policy!r}) instead")
    for name in policy:
        if name not in POLICIES:
            raise ValueError(f"diffaug policy name {name!r}: expected one of {', '.join(POLICIES)}")


def draw_params(n: int, policy: Sequence[str], gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Every random number ``n`` images need under ``policy``: float32 uniforms in [0, 1).

    Returns ``{"brightness": [n], "saturation": [n], "contrast": [n], "translation": [n, 2],
    "cutout": [n, 2]}`` restricted to the policy, on ``gen``'s device. Rows are images, so
    ``{k: v[a:b]}`` are the draws of images ``a..b-1``.
    """
    _check_policy(policy)
    if n < 0:
        raise ValueError(f"diffaug: number of images {n} must be >= 0")
    params: dict[str, torch.Tensor] = {}
    for name in policy:
        for key, width in _DRAWS[name]:
            u = torch.rand([n, width], generator=gen, device=gen.device, dtype=torch.float32)
            params[key] = u[:, 0] if width == 1 else u
    return params


def _pick(u: torch.Tensor, count: int) -> torch.Tensor:
    """Uniform integers in ``[0, count)`` from uniforms in [0, 1) (clamped against float rounding)."""
    return (u * count).floor().long().clamp_(0, count - 1)


def _color(x: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
    b = params["brightness"].to(x.dtype).view(-1, 1, 1, 1) - 0.5  # U[-0.5, 0.5]
    x = x + b
    s = params["saturation"].to(x.dtype).view(-1, 1, 1, 1) * 2.0  # U[0, 2]
    m = x.mean(dim=1, keepdim=True)  # [N, 1, H, W] per-pixel channel mean; C=1: x - m = 0
    x = (x - m) * s + m
    c = params["contrast"].to(x.dtype).view(-1, 1, 1, 1) + 0.5  # U[0.5, 1.5]
    mean = x.mean(dim=[1, 2, 3], keepdim=True)  # [N, 1, 1, 1] image mean
    return (x - mean) * c + mean


def _translation(x: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
    N, C, H, W = x.shape
    sy, sx = (H + 4) // 8, (W + 4) // 8  # round(H / 8), halves rounded up
    u = params["translation"].to(x.device)
    ty = _pick(u[:, 0], 2 * sy + 1) - sy  # [N] shift down by ty rows
    tx = _pick(u[:, 1], 2 * sx + 1) - sx  # [N] shift right by tx columns
    # out[n, c, y, x] = in[n, c, y - ty, x - tx], zero outside: read from a zero-padded copy.
    padded = F.pad(x, [sx, sx, sy, sy])  # [N, C, H + 2sy, W + 2sx]
    rows = torch.arange(H, device=x.device)[None, :] - ty[:, None] + sy  # [N, H]
    cols = torch.arange(W, device=x.device)[None, :] - tx[:, None] + sx  # [N, W]
    rows = rows[:, None, :, None].expand(N, C, H, W + 2 * sx)
    x = padded.gather(2, rows)  # [N, C, H, W + 2sx]
    cols = cols[:, None, None, :].expand(N, C, H, W)
    return x.gather(3, cols)  # [N, C, H, W]


def _cutout(x: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
    N, C, H, W = x.shape
    h, w = (H + 1) // 2, (W + 1) // 2  # round(H / 2), halves rounded up
    u = params["cutout"].to(x.device)
    # Top-left corner in [-(h // 2), H - h + h // 2]: the centre (top + h // 2) runs over [0, H - 1]
    # for odd h and [0, H] for even h, so the square is clipped symmetrically at both borders.
    top = _pick(u[:, 0], H - h + 2 * (h // 2) + 1) - h // 2  # [N]
    left = _pick(u[:, 1], W - w + 2 * (w // 2) + 1) - w // 2  # [N]
    ys = torch.arange(H, device=x.device)[None, :] - top[:, None]  # [N, H]
    xs = torch.arange(W, device=x.device)[None, :] - left[:, None]  # [N, W]
    inside = ((ys >= 0) & (ys < h))[:, :, None] & ((xs >= 0) & (xs < w))[:, None, :]  # [N, H, W]
    keep = (~inside).to(x.dtype)[:, None]  # [N, 1, H, W]
    return x * keep


def _check_images(images: torch.Tensor) -> None:
    if images.ndim != 4 or not images.is_floating_point():
        raise ValueError(f"diffaug: images must be a float [N, C, H, W] tensor, got {images.dtype} {list(images.shape)}")


_APPLY = {"color": _color, "translation": _translation, "cutout": _cutout}


def apply_params(images: torch.Tensor, policy: Sequence[str], params: dict[str, torch.Tensor]) -> torch.Tensor:
    """Apply ``policy`` in its order to ``images`` [N, C, H, W] with the draws ``params``."""
    _check_policy(policy)
    _check_images(images)
    x = images
    for name in policy:
        for key, width in _DRAWS[name]:
            got = params.get(key)
            want = [x.shape[0]] if width == 1 else [x.shape[0], width]
            if got is None or list(got.shape) != want:
                have = None if got is None else list(got.shape)
                raise ValueError(f"diffaug: params[{key!r}] has shape {have}, policy {name!r} needs {want}")
        x = _APPLY[name](x, params)
    return x


def diff_augment(images: torch.Tensor, policy: Sequence[str], gen: torch.Generator) -> torch.Tensor:
    """DiffAugment ``images`` [N, C, H, W] under ``policy`` with draws from ``gen``.

    ``gen`` lives on the images' device (a CPU generator also works with CUDA images and makes
    the draws identical on both, at the cost of one tiny host-to-device copy). An empty policy
    returns the images unchanged.
    """
    _check_images(images)
    params = draw_params(images.shape[0], policy, gen)
    params = {k: v.to(images.device) for k, v in params.items()}
    return apply_params(images, policy, params)
