"""Parameter counts and a memory estimate for ``--dry-run``, without running a real step.

The networks are copied to PyTorch's ``meta`` device (shapes only, no storage), and one forward pass
of G then D records the tensors autograd saves for the backward pass. Per process the estimate is

* weights: G, D and G_ema, plus gradients and Adam's two moments for G and D (all float32);
* activations: the saved tensors of one G + D forward per sample, times ``--batch-gpu``, times 2
  because R1 and path length differentiate through a first backward (double backward). The forward
  runs in the run's precision, so the float16 / bfloat16 blocks count 2 bytes per element and the
  float32 layers (mapping, lower blocks, D's epilogue) 4.

It is an estimate of this implementation (reference ops keep more intermediates than fused kernels)
and leaves out the allocator's fragmentation and CUDA's context (a few hundred MiB).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from training.precision import network_precision


@dataclass(frozen=True)
class Estimate:
    params_G: int
    params_D: int
    params_mapping: int
    weights_bytes: int
    activation_bytes_per_sample: int
    activation_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.weights_bytes + self.activation_bytes


def count_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def saved_bytes_per_sample(G: torch.nn.Module, D: torch.nn.Module, n: int = 2, precision: str = "fp32") -> int:
    """Bytes autograd saves for one G + D forward, per sample (measured on the meta device), with
    the networks' ``precision`` argument (``'fp32'``, ``'fp16'`` or ``'bf16'``)."""
    G_meta = copy.deepcopy(G).to("meta").train()
    D_meta = copy.deepcopy(D).to("meta").train()
    seen: dict[int, int] = {}
    keep: list[torch.Tensor] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        if id(t) not in seen:
            seen[id(t)] = t.numel() * t.element_size()
            keep.append(t)  # hold a reference so ids stay unique
        return t

    z = torch.zeros([n, G.z_dim], device="meta")
    c = torch.zeros([n, G.c_dim], device="meta")
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        img = G_meta(z, c, precision=precision)
        D_meta(img, c, precision=precision)
    return sum(seen.values()) // n


def estimate(G: torch.nn.Module, D: torch.nn.Module, batch_gpu: int, precision: str) -> Estimate:
    """See the module docstring."""
    pg, pd = count_params(G), count_params(D)
    weights = 4 * (pg + pd + pg) + 4 * 3 * (pg + pd)  # G, D, G_ema + grad and Adam m, v for G and D
    per_sample = saved_bytes_per_sample(G, D, precision=network_precision(precision))
    return Estimate(
        params_G=pg,
        params_D=pd,
        params_mapping=count_params(G.mapping),
        weights_bytes=weights,
        activation_bytes_per_sample=per_sample,
        activation_bytes=2 * per_sample * batch_gpu,
    )


def format_estimate(e: Estimate, batch_gpu: int) -> str:
    gib = 2**30
    return "\n".join(
        [
            f"parameters: G {e.params_G:,} (mapping {e.params_mapping:,}, synthesis {e.params_G - e.params_mapping:,}), "
            f"D {e.params_D:,}",
            f"memory per process (estimate): {e.total_bytes / gib:.2f} GiB = weights+grads+Adam "
            f"{e.weights_bytes / gib:.2f} GiB + activations {e.activation_bytes / gib:.2f} GiB "
            f"({e.activation_bytes_per_sample / 2**20:.1f} MiB per sample x {batch_gpu} x 2 for double backward)",
        ]
    )
