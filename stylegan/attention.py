"""Self-attention block of SAGAN (Zhang et al. 2019, "Self-Attention Generative Adversarial
Networks", sec. 3), for G's and D's feature maps at chosen resolutions (``--attention``).

For features ``x`` with C channels at N = H x W positions (sec. 3, eq. 1-3):
``f(x) = W_f x``, ``g(x) = W_g x``, ``h(x) = W_h x`` (1x1 convolutions to C/8 channels),
``beta[j, i] = softmax_i(f(x_i)^T g(x_j))`` (how much position j attends to position i),
``o_j = v(sum_i beta[j, i] h(x_i))`` (``v`` a 1x1 convolution back to C channels) and
``y = gamma * o + x`` with the learned gate ``gamma`` starting at 0, so that the network first
relies on its local convolutions and learns to use attention gradually (sec. 3). The 1x1
convolutions use this project's equalised learning rate like every other layer. The attention is
computed in float32 inside a float16 or bfloat16 block (the softmax over N positions needs the range).
"""

from __future__ import annotations

import torch
from torch import nn

from stylegan.layers import Conv2dLayer

REDUCTION = 8  # C / C-bar (SAGAN sec. 3: "we use k = 8")


class SelfAttention(nn.Module):
    """``x [B, C, H, W] -> gamma * attention(x) + x``, same shape; the identity while gamma is 0."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        inner = max(1, channels // REDUCTION)
        self.channels, self.inner = channels, inner
        self.f = Conv2dLayer(channels, inner, kernel_size=1, bias=False)  # keys ("f" in the paper)
        self.g = Conv2dLayer(channels, inner, kernel_size=1, bias=False)  # queries
        self.h = Conv2dLayer(channels, inner, kernel_size=1, bias=False)  # values
        self.v = Conv2dLayer(inner, channels, kernel_size=1, bias=False)
        self.gate = nn.Parameter(torch.zeros([]))  # gamma, 0 at initialisation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        xf = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        b, c, hgt, wid = xf.shape
        keys = self.f(xf).reshape(b, self.inner, hgt * wid)  # [B, C', N]
        queries = self.g(xf).reshape(b, self.inner, hgt * wid)
        values = self.h(xf).reshape(b, self.inner, hgt * wid)
        # beta[b, j, i] = softmax over i of f(x_i) . g(x_j)  (eq. 1)
        beta = torch.softmax(torch.bmm(queries.transpose(1, 2), keys), dim=-1)  # [B, N_j, N_i]
        attended = torch.bmm(values, beta.transpose(1, 2)).reshape(b, self.inner, hgt, wid)  # sum_i beta_ji h(x_i)
        out = self.v(attended)
        return (xf + self.gate * out).to(dtype)  # eq. 3

    def extra_repr(self) -> str:
        return f"channels={self.channels}, inner={self.inner}"


def attention_blocks(config, resolutions: tuple[int, ...]) -> nn.ModuleDict:
    """One :class:`SelfAttention` per resolution (named ``a<res>``), with that resolution's width."""
    return nn.ModuleDict({f"a{r}": SelfAttention(config.channels(r)) for r in resolutions})
