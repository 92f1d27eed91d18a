"""Seeds to network inputs, and network outputs to pixels: one definition for training, metrics and tools.

* :func:`seed_latent`: seed ``s``'s latent is ``np.random.RandomState(s).randn(z_dim)`` as float32,
  the latent NVIDIA's tools draw for that seed, so a seed names the same image in
  ``tools/generate.py``, the metrics' generated set and a run's sample grid.
* :func:`noise_generator` and :func:`class_generator`: the seed's own CPU generators for its noise
  inputs and its class draw. Seeding a torch generator with ``s`` itself would give the Mersenne
  Twister state of ``RandomState(s)`` (both use MT19937's ``init_genrand``) and reuse the latent's raw
  bits, so each stream is seeded from ``(s, stream)`` through numpy's ``SeedSequence`` hash.
* InfoGAN codes (:mod:`stylegan.info_codes`): for a network with codes, seed ``s``'s latent keeps
  NVIDIA's noise in its first ``z_dim - K`` entries and takes its codes (the last ``K``) from the
  seed's own code generator, so the seed still names one image and the codes have their own
  distribution (one-hot classes, Uniform(-1, 1)).
* :func:`to_uint8`: float images in [-1, 1] to uint8 as StyleGAN2-ADA quantises them
  (``x * 127.5 + 128``, clamped, truncated): round half up of ``x * 127.5 + 127.5``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from stylegan.info_codes import InfoCodes, sample_codes, with_codes

MAX_SEED = 2**32 - 1  # RandomState's seeds
_NOISE_STREAM = 0x6E6F697365  # "noise"
_CLASS_STREAM = 0x636C617373  # "class"
_CODE_STREAM = 0x636F646573  # "codes"


def seed_latent(seed: int, z_dim: int, info_codes: InfoCodes = ()) -> torch.Tensor:
    """``z`` [z_dim] for ``seed`` in [0, 2**32): ``np.random.RandomState(seed).randn(z_dim)`` as float32,
    with its last entries replaced by InfoGAN codes drawn from :func:`code_generator` when
    ``info_codes`` is given."""
    z = torch.from_numpy(np.random.RandomState(seed).randn(z_dim)).float()
    if not info_codes:
        return z
    return with_codes(z[None], info_codes, sample_codes(info_codes, 1, code_generator(seed)))[0]


def seed_latents(seeds: Sequence[int], z_dim: int, info_codes: InfoCodes = ()) -> torch.Tensor:
    """``z`` for each seed, ``[len(seeds), z_dim]`` on the CPU."""
    if not len(seeds):
        return torch.zeros(0, z_dim)
    return torch.stack([seed_latent(s, z_dim, info_codes) for s in seeds])


def _stream(seed: int, stream: int) -> torch.Generator:
    state = np.random.SeedSequence([seed, stream]).generate_state(1, np.uint32)[0]
    return torch.Generator(device="cpu").manual_seed(int(state))


def noise_generator(seed: int) -> torch.Generator:
    """The CPU generator that draws the noise inputs of ``seed``'s image (``noise_mode='random'``)."""
    return _stream(seed, _NOISE_STREAM)


def class_generator(seed: int) -> torch.Generator:
    """The CPU generator that draws ``seed``'s class where one is drawn (the metrics' fakes)."""
    return _stream(seed, _CLASS_STREAM)


def code_generator(seed: int) -> torch.Generator:
    """The CPU generator that draws ``seed``'s InfoGAN codes (:func:`seed_latent`)."""
    return _stream(seed, _CODE_STREAM)


def to_uint8(img: torch.Tensor) -> torch.Tensor:
    """Float images in [-1, 1] (any layout) -> uint8 in [0, 255], StyleGAN2-ADA's quantisation."""
    return (img.float() * 127.5 + 128).clamp(0, 255).to(torch.uint8)
