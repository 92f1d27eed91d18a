"""The blur of D's inputs that StyleGAN3-R trains with (``--blur-sigma``, ``--blur-fade-kimg``).

Karras et al. 2021 (appendix D, "config R"): early in training the discriminator sees every image,
real and fake, blurred by a Gaussian whose sigma starts at 10 pixels and fades linearly to 0 over
the first 200 kimg (NVIDIA's ``train.py``: ``200 * batch / 32`` kimg), so that G is not pushed to
produce high frequencies before its rotation-equivariant layers can represent them. The blur comes
before the augmentation, as in NVIDIA's loss; R1's gradient is taken with respect to the image before
both, so its double backward runs through the blur.

The taps are NVIDIA's: ``2 ** -(x / sigma) ** 2`` for the integers ``x`` in ``[-floor(3 sigma),
floor(3 sigma)]``, normalised to sum 1, applied separably (rows, then columns) with zero padding that
keeps the image size. (``2 ** -(x / sigma) ** 2`` is a Gaussian of standard deviation
``sigma / sqrt(2 ln 2) ~ 0.85 sigma``.) Below ``sigma = 1 / 3`` the filter has one tap: no blur.

The sigma is a function of the images shown so far alone, so every process uses the same one and a
resumed run continues exactly without any state.
"""

from __future__ import annotations

import math

import torch

from ops.upfirdn2d import filter2d


def blur_sigma_at(nimg: int, sigma: float, fade_kimg: float) -> float:
    """The sigma after ``nimg`` images: ``sigma`` fading linearly to 0 over ``fade_kimg`` kimg
    (``fade_kimg = 0``: the blur stays at ``sigma``)."""
    if sigma <= 0:
        return 0.0
    if fade_kimg <= 0:
        return float(sigma)
    return float(sigma) * max(1.0 - nimg / (fade_kimg * 1000), 0.0)


def blur_taps(sigma: float, device: torch.device | str = "cpu") -> torch.Tensor | None:
    """The normalised 1-D taps for ``sigma`` (``None``: one tap, no blur)."""
    half = math.floor(sigma * 3) if sigma > 0 else 0
    if half <= 0:
        return None
    x = torch.arange(-half, half + 1, dtype=torch.float64)
    taps = torch.exp2(-(x / sigma).square())
    return (taps / taps.sum()).to(device=device, dtype=torch.float32)


def blur_images(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """``images [N, C, H, W]`` blurred with :func:`blur_taps` (the same size; unchanged when no blur)."""
    taps = blur_taps(sigma, images.device)
    if taps is None:
        return images
    return filter2d(images, taps)
