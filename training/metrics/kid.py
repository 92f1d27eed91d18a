"""Kernel Inception Distance (Bińkowski et al. 2018, "Demystifying MMD GANs", sec. 4 and eq. 2).

KID is the unbiased estimate of the squared maximum mean discrepancy between the feature
distributions, with the cubic polynomial kernel

    k(x, y) = (x·y / d + 1)^3                                                (d = feature dim)

    MMD²_u = 1/(m(m-1)) Σ_{i≠j} [k(x_i, x_j) + k(y_i, y_j)] - 2/m² Σ_{i,j} k(x_i, y_j)

averaged over ``num_subsets`` random subsets of ``m`` samples from each set, drawn without
replacement (the paper's block estimator, as StyleGAN2-ADA reports it: 100 subsets of at most
1000). Unlike FID it is unbiased in the number of samples, so small sample counts compare fairly.
The subsets come from a seeded ``torch.Generator``, so the value is reproducible.
"""

from __future__ import annotations

import torch

DEFAULT_SUBSETS = 100
DEFAULT_SUBSET_SIZE = 1000


def polynomial_kernel(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``(x @ y.T / d + 1) ** 3`` for features ``x`` [N, d], ``y`` [M, d]."""
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(x: torch.Tensor, y: torch.Tensor) -> float:
    """Unbiased MMD² (eq. 2 of the paper's appendix) between equally sized samples ``x``, ``y`` [m, d]."""
    m = x.shape[0]
    if y.shape[0] != m or m < 2:
        raise ValueError(f"samples of {x.shape[0]} and {y.shape[0]} rows: expected the same size m >= 2")
    k_xx, k_yy, k_xy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    within = (k_xx.sum() - k_xx.diagonal().sum() + k_yy.sum() - k_yy.diagonal().sum()) / (m * (m - 1))
    return float(within - 2.0 * k_xy.sum() / (m * m))


def subset_indices(
    n_gen: int, n_real: int, num_subsets: int, subset_size: int, seed: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The (generated, real) row indices of each subset: ``subset_size`` of each, without replacement."""
    gen = torch.Generator().manual_seed(seed)
    return [(torch.randperm(n_gen, generator=gen)[:subset_size], torch.randperm(n_real, generator=gen)[:subset_size])
            for _ in range(num_subsets)]


def kernel_inception_distance(
    gen_features: torch.Tensor,
    real_features: torch.Tensor,
    num_subsets: int = DEFAULT_SUBSETS,
    max_subset_size: int = DEFAULT_SUBSET_SIZE,
    seed: int = 0,
    device: torch.device | str | None = None,
) -> float:
    """KID between ``gen_features`` [N, d] and ``real_features`` [M, d] (float64 arithmetic).

    Each subset holds ``min(N, M, max_subset_size)`` rows of each set. The kernels run on
    ``device`` (default: the inputs'); only the subsets are moved there, so up to a million real
    features can stay in CPU memory. The value can be slightly negative (it is an unbiased
    estimate of a non-negative number).
    """
    if gen_features.ndim != 2 or real_features.ndim != 2 or gen_features.shape[1] != real_features.shape[1]:
        raise ValueError(
            f"features of shapes {tuple(gen_features.shape)} and {tuple(real_features.shape)}: expected [N, d] and [M, d]"
        )
    if num_subsets < 1 or max_subset_size < 2:
        raise ValueError(f"num_subsets={num_subsets}, max_subset_size={max_subset_size}: expected >= 1 and >= 2")
    m = min(gen_features.shape[0], real_features.shape[0], max_subset_size)
    if m < 2:
        raise ValueError(
            f"{gen_features.shape[0]} generated and {real_features.shape[0]} real features: KID needs >= 2 of each"
        )
    dev = torch.device(device) if device is not None else gen_features.device
    total = 0.0
    for gen_idx, real_idx in subset_indices(gen_features.shape[0], real_features.shape[0], num_subsets, m, seed):
        x = gen_features[gen_idx.to(gen_features.device)].to(dev, torch.float64)
        y = real_features[real_idx.to(real_features.device)].to(dev, torch.float64)
        total += mmd2_unbiased(x, y)
    return total / num_subsets
