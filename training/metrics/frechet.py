"""Fréchet distance between Gaussians fitted to two feature sets (FID, Heusel et al. 2017, eq. 6).

Owns the streaming moment accumulator (:class:`FeatureMoments`) that reduces any number of feature
vectors to a mean and covariance, and :func:`frechet_distance` itself:

    d² = |mu1 - mu2|² + tr(S1 + S2 - 2 (S1 S2)^{1/2})

The trace of the matrix square root is the delicate part. ``scipy.linalg.sqrtm(S1 @ S2)`` (what
the reference implementations call) works on a non-symmetric product: for covariances estimated
from fewer samples than dimensions, or for near-identical distributions, it returns complex values,
NaNs or a large imaginary part that the callers then discard or patch with an ``eps * I`` offset.
We use an identity instead: ``S1 S2`` has the same eigenvalues as the symmetric positive
semi-definite ``M = S1^{1/2} S2 S1^{1/2}`` (AB and BA share eigenvalues), so

    tr((S1 S2)^{1/2}) = sum_i sqrt(lambda_i(M)),

computed with two symmetric eigendecompositions (``eigh``), eigenvalues clipped at 0 against
rounding. It is always real, needs no offset, and equals the SciPy value wherever that one is
well defined (the tests check both, and the corner cases against closed forms).
"""

from __future__ import annotations

import numpy as np
import torch


class FeatureMoments:
    """Running count, sum and sum of outer products of feature vectors, in float64.

    ``add`` may be called with any chunking; the result depends on the chunking only through
    float64 rounding. The runner always adds the same chunks in the same order, whatever the
    number of processes, so its results are bit-identical across world sizes.
    """

    def __init__(self, dim: int, device: torch.device | str = "cpu") -> None:
        if dim < 1:
            raise ValueError(f"dim={dim!r}: expected a feature dimension >= 1")
        self.dim = dim
        self.count = 0
        self._sum = torch.zeros(dim, dtype=torch.float64, device=device)
        self._outer = torch.zeros(dim, dim, dtype=torch.float64, device=device)

    def add(self, features: torch.Tensor) -> None:
        """Accumulate ``features`` [N, dim]."""
        if features.ndim != 2 or features.shape[1] != self.dim:
            raise ValueError(f"features of shape {tuple(features.shape)}: expected [N, {self.dim}]")
        x = features.to(self._sum.device, torch.float64)
        self.count += x.shape[0]
        self._sum += x.sum(dim=0)
        self._outer += x.T @ x

    def mean_cov(self) -> tuple[np.ndarray, np.ndarray]:
        """``(mu [dim], sigma [dim, dim])`` with the unbiased (N - 1) covariance, as float64 NumPy."""
        if self.count < 2:
            raise ValueError(f"{self.count} feature vector(s): a covariance needs at least 2")
        n = self.count
        mu = self._sum / n
        sigma = (self._outer - n * torch.outer(mu, mu)) / (n - 1)
        sigma = 0.5 * (sigma + sigma.T)  # exact symmetry against rounding in the sums
        return mu.cpu().numpy(), sigma.cpu().numpy()


def mean_cov(features: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance of ``features`` [N, D] (a convenience over :class:`FeatureMoments`)."""
    x = torch.as_tensor(np.asarray(features) if not torch.is_tensor(features) else features)
    moments = FeatureMoments(x.shape[1])
    moments.add(x)
    return moments.mean_cov()


def _psd_sqrt(sigma: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix; negative (rounding) eigenvalues count as 0."""
    eigval, eigvec = np.linalg.eigh(sigma)
    return (eigvec * np.sqrt(np.clip(eigval, 0.0, None))) @ eigvec.T


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """``tr((sigma1 @ sigma2)^{1/2})`` for symmetric PSD matrices, via ``eig(S1^½ S2 S1^½)``."""
    root1 = _psd_sqrt(sigma1)
    m = root1 @ sigma2 @ root1
    m = 0.5 * (m + m.T)
    eigval = np.linalg.eigvalsh(m)
    return float(np.sqrt(np.clip(eigval, 0.0, None)).sum())


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2) (FID when fed Inception features).

    Inputs are float64-converted; shapes must agree (``mu`` [D], ``sigma`` [D, D]). The result is
    clipped at 0: a tiny negative value can only come from rounding.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    d = mu1.shape[0]
    if mu1.shape != (d,) or mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise ValueError(
            f"shapes mu1 {mu1.shape}, sigma1 {sigma1.shape}, mu2 {mu2.shape}, sigma2 {sigma2.shape}: "
            f"expected [D] and [D, D] with one D"
        )
    for name, value in (("mu1", mu1), ("sigma1", sigma1), ("mu2", mu2), ("sigma2", sigma2)):
        if not np.all(np.isfinite(value)):
            raise ValueError(f"{name} holds non-finite values (NaN or inf); the features are broken")
    diff = mu1 - mu2
    dist = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt_product(sigma1, sigma2)
    return float(max(dist, 0.0))
