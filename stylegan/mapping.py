"""Mapping network: latent ``z`` (and label ``c``) to intermediate latents ``w`` (StyleGAN sec. 2).

``z`` is normalised to unit second moment, the label (conditional models) is embedded, normalised
the same way and concatenated, then ``num_layers`` fully connected lrelu layers with learning-rate
multiplier 0.01 map it to ``w``. The generator keeps a running average ``w_avg`` for the truncation
trick (StyleGAN sec. 5.2 / appendix B): ``w' = w_avg + psi * (w - w_avg)``, optionally applied only
to the first ``cutoff`` of the broadcast ws (the coarse layers).

The discriminator reuses this class with ``z_dim=0`` and ``num_ws=None`` to embed labels for its
projection head, without ``w_avg``.
"""

from __future__ import annotations

import torch
from torch import nn

from stylegan.layers import FullyConnectedLayer, normalize_2nd_moment


def check_labels(c: torch.Tensor | None, c_dim: int, n: int) -> torch.Tensor | None:
    """Validate ``c``: ``None`` or ``[N, 0]`` for unconditional models, ``[N, c_dim]`` otherwise."""
    if c_dim == 0:
        if c is not None and (c.ndim != 2 or c.shape[1] != 0 or c.shape[0] not in (0, n)):
            raise ValueError(f"c: this model is unconditional; expected None or shape [{n}, 0], got {tuple(c.shape)}")
        return None
    if c is None:
        raise ValueError(f"c: this model is conditional (c_dim={c_dim}); expected labels of shape [{n}, {c_dim}]")
    if c.ndim != 2 or c.shape != (n, c_dim):
        raise ValueError(f"c: expected shape [{n}, {c_dim}] (one-hot labels), got {tuple(c.shape)}")
    return c


class MappingNetwork(nn.Module):
    """``z [N, z_dim], c [N, c_dim] -> ws [N, num_ws, w_dim]`` (or ``[N, w_dim]`` when num_ws is None)."""

    def __init__(
        self,
        z_dim: int,
        c_dim: int,
        w_dim: int,
        num_ws: int | None,
        num_layers: int = 8,
        lr_multiplier: float = 0.01,
        w_avg_beta: float | None = 0.995,
    ) -> None:
        super().__init__()
        if z_dim == 0 and c_dim == 0:
            raise ValueError("MappingNetwork: needs z_dim > 0 or c_dim > 0 (it would have no input)")
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = z_dim, c_dim, w_dim, num_ws
        self.num_layers, self.w_avg_beta = num_layers, w_avg_beta
        embed_features = w_dim if c_dim > 0 else 0
        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed_features)
        features = [z_dim + embed_features] + [w_dim] * num_layers
        self.layers = nn.ModuleList(
            FullyConnectedLayer(features[i], features[i + 1], activation="lrelu", lr_multiplier=lr_multiplier)
            for i in range(num_layers)
        )
        if num_ws is not None and w_avg_beta is not None:
            self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(
        self,
        z: torch.Tensor | None,
        c: torch.Tensor | None = None,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        update_emas: bool = False,
    ) -> torch.Tensor:
        x = self._embed_inputs(z, c)
        for layer in self.layers:
            x = layer(x)

        has_avg = hasattr(self, "w_avg")
        if update_emas and has_avg:
            # Running average of w; lerp(a, b, beta) = a + beta * (b - a), so w_avg keeps beta of itself.
            with torch.no_grad():
                self.w_avg.copy_(x.detach().float().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))

        if self.num_ws is None:
            return x
        ws = x.unsqueeze(1).repeat(1, self.num_ws, 1)  # broadcast: one w per synthesis layer
        if truncation_psi != 1:
            ws = self._truncate(ws, truncation_psi, truncation_cutoff)
        return ws

    def _embed_inputs(self, z: torch.Tensor | None, c: torch.Tensor | None) -> torch.Tensor:
        parts = []
        n = None
        if self.z_dim > 0:
            if z is None or z.ndim != 2 or z.shape[1] != self.z_dim:
                shape = None if z is None else tuple(z.shape)
                raise ValueError(f"z: expected shape [N, {self.z_dim}], got {shape}")
            n = z.shape[0]
            parts.append(normalize_2nd_moment(z.to(self.layers[0].weight.dtype)))
        if self.c_dim > 0:
            if n is None:
                n = c.shape[0] if isinstance(c, torch.Tensor) and c.ndim >= 1 else -1
            c = check_labels(c, self.c_dim, n)
            y = self.embed(c.to(self.layers[0].weight.dtype))
            parts.append(normalize_2nd_moment(y))
        elif c is not None and n is not None:
            check_labels(c, 0, n)
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)

    def _truncate(self, ws: torch.Tensor, psi: float, cutoff: int | None) -> torch.Tensor:
        if not hasattr(self, "w_avg"):
            raise ValueError("truncation_psi: this mapping network tracks no w_avg (w_avg_beta=None)")
        avg = self.w_avg.to(ws.dtype)
        if cutoff is None:
            return avg.lerp(ws, psi)
        if not isinstance(cutoff, int) or isinstance(cutoff, bool) or not 0 <= cutoff <= self.num_ws:
            raise ValueError(f"truncation_cutoff={cutoff!r}: expected None or an int in [0, {self.num_ws}]")
        # Only the first `cutoff` ws (coarse resolutions) are pulled towards the average.
        return torch.cat([avg.lerp(ws[:, :cutoff], psi), ws[:, cutoff:]], dim=1)

    def extra_repr(self) -> str:
        return f"z_dim={self.z_dim}, c_dim={self.c_dim}, w_dim={self.w_dim}, num_ws={self.num_ws}"
