"""Improved precision and recall (Kynkäänniemi et al. 2019, sec. 3, eq. 1-2).

Each set of feature vectors approximates its manifold as the union of hyperspheres around its
samples, each with the radius of the distance to that sample's k-th nearest neighbour in the same
set (itself excluded; the paper and StyleGAN2-ADA use k = 3):

    precision = fraction of generated samples inside the real manifold   (eq. 1, f(phi_g, Phi_r))
    recall    = fraction of real samples inside the generated manifold   (eq. 2, f(phi_r, Phi_g))

"Inside" is ``distance <= radius`` for at least one sample. Mode collapse shows as high precision
with low recall. Distances are computed in blocks of ``block`` x ``block`` rows so that 50k x 200k
comparisons fit in memory; the result does not depend on the block size (each row's k-th
neighbour and each ``any`` are exact over all columns).

The published StyleGAN2-ADA figures use VGG-16 features (the paper's choice); with Inception
features the numbers show the same trends but are not comparable to those (docs/metrics.md).
"""

from __future__ import annotations

from typing import Callable

import torch

DEFAULT_BLOCK = 10_000


def _pairwise(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Euclidean distances [len(a), len(b)] in float32 (float64 inputs stay float64)."""
    return torch.cdist(a, b)


def kth_neighbour_radii(features: torch.Tensor, k: int, block: int = DEFAULT_BLOCK) -> torch.Tensor:
    """Distance of each row to its k-th nearest other row of ``features`` (the sphere radii)."""
    if not 1 <= k < features.shape[0]:
        raise ValueError(f"k={k} with {features.shape[0]} samples: expected 1 <= k < number of samples")
    radii = []
    for rows in features.split(block):
        dist = torch.cat([_pairwise(rows, cols) for cols in features.split(block)], dim=1)
        # The row itself is at distance 0 and comes first, so the k-th neighbour is value k + 1.
        radii.append(dist.kthvalue(k + 1, dim=1).values)
    return torch.cat(radii)


def inside_manifold(
    probes: torch.Tensor, manifold: torch.Tensor, radii: torch.Tensor, block: int = DEFAULT_BLOCK
) -> torch.Tensor:
    """Bool [len(probes)]: whether each probe lies in some sphere ``(manifold[j], radii[j])``."""
    inside = []
    for rows in probes.split(block):
        hit = torch.zeros(rows.shape[0], dtype=torch.bool, device=rows.device)
        for cols, r in zip(manifold.split(block), radii.split(block)):
            hit |= (_pairwise(rows, cols) <= r[None, :]).any(dim=1)
        inside.append(hit)
    return torch.cat(inside)


def precision_recall(
    real_features: torch.Tensor,
    gen_features: torch.Tensor,
    k: int = 3,
    block: int = DEFAULT_BLOCK,
    progress: Callable[[int], None] | None = None,
) -> tuple[float, float]:
    """``(precision, recall)`` of generated features [N, d] against real features [M, d].

    ``progress(n)`` (optional) is called after each of the four passes with the rows it covered.
    """
    if real_features.ndim != 2 or gen_features.ndim != 2 or real_features.shape[1] != gen_features.shape[1]:
        raise ValueError(
            f"features of shapes {tuple(real_features.shape)} and {tuple(gen_features.shape)}: expected [M, d] and [N, d]"
        )
    if block < 1:
        raise ValueError(f"block={block}: expected >= 1")
    report = progress or (lambda n: None)
    real_radii = kth_neighbour_radii(real_features, k, block)
    report(real_features.shape[0])
    precision = inside_manifold(gen_features, real_features, real_radii, block).double().mean().item()
    report(gen_features.shape[0])
    gen_radii = kth_neighbour_radii(gen_features, k, block)
    report(gen_features.shape[0])
    recall = inside_manifold(real_features, gen_features, gen_radii, block).double().mean().item()
    report(real_features.shape[0])
    return float(precision), float(recall)
