"""The exponential moving average of G's weights (``G_ema``), the network that gets sampled.

Karras et al. (ProGAN sec. A.1, StyleGAN2-ADA appendix D) average the generator's weights with a
half-life measured in images: after ``ema_kimg`` thousand images the old weights count for one
half. Per step of ``batch`` images the decay is therefore ``beta = 0.5 ** (batch / ema_nimg)``.
The ramp-up (ADA) caps the half-life at ``ema_rampup`` times the images seen so far, so that the
average forgets the random initialisation quickly early in training. Buffers (``w_avg``, the
constant noise) are copied, not averaged.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class EmaSchedule:
    """The half-life of ``G_ema`` in thousands of images, with optional ramp-up."""

    ema_kimg: float
    ema_rampup: float | None = None

    def beta(self, cur_nimg: int, batch: int) -> float:
        """The decay for one step of ``batch`` images taken after ``cur_nimg`` images."""
        ema_nimg = self.ema_kimg * 1000
        if self.ema_rampup:
            ema_nimg = min(ema_nimg, cur_nimg * self.ema_rampup)
        if ema_nimg <= 0:
            return 0.0
        return 0.5 ** (batch / ema_nimg)


@torch.no_grad()
def update_ema(G_ema: torch.nn.Module, G: torch.nn.Module, beta: float) -> None:
    """``G_ema <- lerp(G, G_ema, beta)`` for parameters; buffers are copied from ``G``."""
    ema_params = list(G_ema.parameters())
    params = list(G.parameters())
    if len(ema_params) != len(params):
        raise ValueError(f"G_ema has {len(ema_params)} parameters but G has {len(params)}: not copies")
    for p_ema, p in zip(ema_params, params):
        p_ema.lerp_(p.detach(), 1.0 - beta)  # p_ema + (1 - beta) * (p - p_ema)
    for b_ema, b in zip(G_ema.buffers(), G.buffers()):
        b_ema.copy_(b)
