"""Losses and regularisers of StyleGAN2, as per-sample tensors.

Every function returns one value per sample (shape ``[N]``); the caller sums them and divides by
the global number of samples of the phase, so that gradient accumulation and any number of
processes give the gradient of the same global mean.

* Adversarial loss: the non-saturating logistic loss (Goodfellow et al. 2014, sec. 3, the
  practical form), ``softplus(-D(G(z)))`` for G and ``softplus(D(G(z))) + softplus(-D(x))`` for D.
* R1 (Mescheder et al. 2018, eq. 9): ``gamma / 2 * ||grad_x D(x)||^2`` on reals.
* Path-length regularisation (Karras et al. 2020, StyleGAN2 eq. 4): ``(||J_w^T y||_2 - a)^2`` with
  ``y`` random images with normal pixels scaled by ``1/sqrt(H*W)`` and ``a`` a running mean of the
  lengths.
* Style mixing (Karras et al. 2019, StyleGAN sec. 3.1): with probability ``mixing``, a sample's
  ``ws`` switch to those of a second latent from a random layer on.

First-order gradients that the regularisers penalise are taken with
``torch.autograd.grad(create_graph=True)``; the caller then runs a plain ``backward``.

Mixed precision is the networks' own (``precision``, see :func:`training.precision.network_precision`):
they run their top blocks in float16 / bfloat16 and return float32 images and logits, so every loss
here is computed in float32 and no autocast context is needed.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F


def sample_z(n: int, z_dim: int, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    """``n`` latents from N(0, I)."""
    return torch.randn([n, z_dim], generator=gen, device=device)


def sample_c(
    n: int, c_dim: int, gen: torch.Generator, device: torch.device, class_probs: Sequence[float] | None = None
) -> torch.Tensor:
    """``n`` one-hot labels for the fakes (``[n, 0]`` when unconditional).

    Drawn from ``class_probs``, the dataset's class frequencies, as StyleGAN2-ADA draws the labels of
    random dataset items: on imbalanced data G then sees each class as often as D sees it in the reals.
    Uniform when no frequencies are given.
    """
    if c_dim == 0:
        return torch.zeros([n, 0], device=device)
    if class_probs is None:
        idx = torch.randint(0, c_dim, [n], generator=gen, device=device)
    else:
        probs = torch.as_tensor(class_probs, dtype=torch.float64, device=device)
        idx = torch.multinomial(probs, n, replacement=True, generator=gen)
    return F.one_hot(idx, c_dim).float()


def run_G(
    G: torch.nn.Module,
    z: torch.Tensor,
    c: torch.Tensor,
    *,
    mixing: float,
    gen: torch.Generator,
    update_emas: bool = False,
    precision: str = "fp32",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generate images with style-mixing regularisation; returns ``(img, ws)``.

    ``ws`` is the ``[N, num_ws, w_dim]`` tensor that synthesis consumed (after mixing), which is what
    path-length regularisation differentiates against. ``update_emas`` lets the main mapping call
    move G's ``w_avg`` (StyleGAN2-ADA does so in every phase that runs G: G_main, G_reg and D_main);
    the second mapping call of style mixing never does. The noise inputs are drawn from ``gen``;
    ``precision`` is the networks' own (see :func:`training.precision.network_precision`): it
    reaches only the synthesis blocks; the mapping network runs in float32 (``w_avg`` is a float32
    running mean, and in StyleGAN2-ADA only synthesis blocks use float16).
    """
    ws = G.mapping(z, c, update_emas=update_emas)
    if mixing > 0:
        n, num_ws = ws.shape[0], ws.shape[1]
        # Per sample: mix with probability `mixing`, from a layer drawn uniformly in [1, num_ws).
        cutoff = torch.randint(1, max(num_ws, 2), [n], generator=gen, device=z.device)
        use = torch.rand([n], generator=gen, device=z.device) < mixing
        cutoff = torch.where(use, cutoff, torch.full_like(cutoff, num_ws))
        z2 = torch.randn(z.shape, generator=gen, device=z.device, dtype=z.dtype)
        ws2 = G.mapping(z2, c, update_emas=False)
        layer = torch.arange(num_ws, device=z.device)
        take2 = (layer[None, :] >= cutoff[:, None])[:, :, None]  # [N, num_ws, 1]
        ws = torch.where(take2, ws2, ws)
    img = G.synthesis(ws, precision=precision, generator=gen)
    return img, ws


def run_D(D: torch.nn.Module, img: torch.Tensor, c: torch.Tensor, precision: str = "fp32") -> torch.Tensor:
    """Discriminator logits as a float32 ``[N]`` tensor."""
    return D(img, c, precision=precision).reshape(img.shape[0]).float()


def g_main_loss(
    G, D, z, c, *, mixing: float, gen: torch.Generator, precision: str = "fp32"
):
    """Non-saturating G loss ``softplus(-D(G(z)))`` per sample, and the fake logits."""
    img, _ = run_G(G, z, c, mixing=mixing, gen=gen, update_emas=True, precision=precision)
    logits = run_D(D, img, c, precision)
    return F.softplus(-logits), logits.detach()


def d_fake_loss(
    G, D, z, c, *, mixing: float, gen: torch.Generator, precision: str = "fp32"
):
    """D loss on fakes ``softplus(D(G(z)))`` per sample, and the logits; G runs without a graph."""
    with torch.no_grad():
        img, _ = run_G(G, z, c, mixing=mixing, gen=gen, update_emas=True, precision=precision)
    logits = run_D(D, img, c, precision)
    return F.softplus(logits), logits.detach()


def d_real_loss(
    D, real: torch.Tensor, c: torch.Tensor, *, precision: str = "fp32"
):
    """D loss on reals ``softplus(-D(x))`` per sample, and the logits."""
    logits = run_D(D, real, c, precision)
    return F.softplus(-logits), logits.detach()


def r1_penalty(
    D,
    real: torch.Tensor,
    c: torch.Tensor,
    *,
    grad_scale: float = 1.0,
    precision: str = "fp32",
) -> torch.Tensor:
    """``||grad_x D(x)||^2`` per sample: R1 (Mescheder et al. 2018, eq. 9) without ``gamma / 2``.

    ``grad_scale`` is the fp16 loss scale: the inner gradient is taken of the scaled logits (so it
    does not underflow) and unscaled before squaring, as the AMP recipe for gradient penalties does.
    """
    real = real.detach().requires_grad_(True)
    logits = run_D(D, real, c, precision)
    (grads,) = torch.autograd.grad(logits.sum() * grad_scale, real, create_graph=True)
    grads = grads.float() / grad_scale
    return grads.square().sum(dim=[1, 2, 3])


def path_lengths(
    G,
    z: torch.Tensor,
    c: torch.Tensor,
    *,
    mixing: float,
    gen: torch.Generator,
    grad_scale: float = 1.0,
    precision: str = "fp32",
) -> torch.Tensor:
    """``||J_w^T y||_2`` per sample (StyleGAN2 eq. 4), averaged over the ``ws`` of each sample."""
    img, ws = run_G(G, z, c, mixing=mixing, gen=gen, update_emas=True, precision=precision)
    h, w = img.shape[2], img.shape[3]
    # y ~ N(0, I) / sqrt(H*W) makes the expected length independent of the resolution.
    y = torch.randn(img.shape, generator=gen, device=img.device, dtype=torch.float32) / math.sqrt(h * w)
    (grads,) = torch.autograd.grad((img.float() * y).sum() * grad_scale, ws, create_graph=True)
    grads = grads.float() / grad_scale  # [N, num_ws, w_dim]
    return grads.square().sum(dim=2).mean(dim=1).sqrt()


def pl_penalty(lengths: torch.Tensor, pl_mean: torch.Tensor) -> torch.Tensor:
    """``(length - a)^2`` per sample against the running mean ``a`` (already updated with this
    phase's lengths, see :func:`updated_pl_mean`)."""
    return (lengths - pl_mean.detach()).square()


def updated_pl_mean(pl_mean: torch.Tensor, lengths_mean: float, decay: float) -> torch.Tensor:
    """StyleGAN2's running mean of the path lengths, moved towards this phase's mean *before* the
    penalty is taken against it, in StyleGAN2-ADA's order: ``a' = lerp(a, mean(lengths), decay)``."""
    return pl_mean.detach().lerp(torch.full_like(pl_mean, lengths_mean), decay)


def pl_surrogate_weights(lengths: torch.Tensor, new_mean: torch.Tensor, lengths_mean: float, decay: float) -> torch.Tensor:
    """Per-sample weights ``w_i`` whose ``sum(w_i * length_i)`` has the gradient of the penalty
    ``sum_i (length_i - a')^2`` with ``a' = (1 - decay) a + decay * mean(lengths)``.

    StyleGAN2-ADA lets the gradient flow through ``mean(lengths)`` inside ``a'`` too. Its chain rule
    gives ``w_i = 2 (length_i - a') - 2 decay (mean(lengths) - a')``; with the mean taken over the
    phase's samples on every process, the gradient does not depend on how they are split.
    """
    a = new_mean.detach()
    return (2 * (lengths.detach() - a) - 2 * decay * (lengths_mean - a)).detach()
