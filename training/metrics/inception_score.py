"""Inception Score (Salimans et al. 2016, sec. 4): ``exp(E_x KL(p(y|x) || p(y)))``.

Computed as the reference implementation reports it: the samples are cut, in order, into
``num_splits`` (10) equal parts; each part gives ``exp(mean_x KL(p(y|x) || mean_x p(y|x)))``; the
result is the mean and standard deviation over parts. ``p(y|x)`` is the softmax of the classifier's
logits; for the Inception network these are the 1008 logits without the final bias, as in the
original TensorFlow code (torch-fidelity's ``logits_unbiased``). float64 throughout.
"""

from __future__ import annotations

import torch

DEFAULT_SPLITS = 10


def inception_score(logits: torch.Tensor, num_splits: int = DEFAULT_SPLITS) -> tuple[float, float]:
    """``(mean, std)`` of the Inception Score of ``logits`` [N, classes] over ``num_splits`` parts."""
    if logits.ndim != 2 or logits.shape[1] < 2:
        raise ValueError(f"logits of shape {tuple(logits.shape)}: expected [N, classes] with >= 2 classes")
    n = logits.shape[0]
    if not 1 <= num_splits <= n:
        raise ValueError(f"num_splits={num_splits} with {n} samples: expected 1 <= num_splits <= samples")
    log_p = torch.log_softmax(logits.double(), dim=1)  # log p(y|x)                          [N, K]
    scores = []
    for i in range(num_splits):
        part = log_p[i * n // num_splits : (i + 1) * n // num_splits]
        log_marginal = torch.logsumexp(part, dim=0) - torch.log(torch.tensor(float(part.shape[0]), dtype=torch.float64))
        kl = (part.exp() * (part - log_marginal[None, :])).sum(dim=1)  # KL(p(y|x) || p(y))     [n_part]
        scores.append(kl.mean().exp())
    scores_t = torch.stack(scores)
    return float(scores_t.mean()), float(scores_t.std(unbiased=False))
