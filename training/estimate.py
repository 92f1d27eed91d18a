"""Parameter counts and a memory estimate for ``--dry-run``, without running a real step.

The networks are copied to PyTorch's ``meta`` device (shapes only, no storage), and one forward pass
of G and one of D record the tensors autograd saves for the backward pass, for each network apart.
Per process the estimate is

* weights: G, D and G_ema, plus gradients and Adam's two moments for G and D (all float32);
* activations: the largest of the phases' saved tensors, per sample times ``--batch-gpu``. A phase
  keeps what its backward needs: G_main one graph through G and one through D; D_main two through D
  (fakes and reals; G renders without a graph); R1 (D_reg) and path length (G_reg, on a batch shrunk
  by ``pl_batch_shrink``) differentiate a first backward, which keeps about the forward's tensors a
  second time. So ``max(G + D, 2 D, 2 G / shrink)`` per sample: a StyleGAN2 run's peak is usually
  G_main or R1's, a StyleGAN3 run's (no path length) G_main's, where G's reference filtered leaky
  ReLUs keep the upsampled signal of every layer. The forward runs in the run's precision, so the
  float16 / bfloat16 blocks count 2 bytes per element and the float32 layers (mapping, lower
  blocks, D's epilogue) 4.

It is an estimate of this implementation: the reference ops keep more intermediates than the fused
CUDA kernels (StyleGAN3's filtered leaky ReLU most: NVIDIA's kernel saves 2 bits per upsampled
sample instead of the float32 signal), and the allocator's fragmentation, CUDA's context (a few
hundred MiB) or, on a CPU, the process itself (about 0.5 GiB of libraries) come on top.
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
    peak_phase: str = "G_main"  # the phase whose saved tensors are the largest

    @property
    def total_bytes(self) -> int:
        return self.weights_bytes + self.activation_bytes


def count_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def saved_bytes_per_sample(G: torch.nn.Module, D: torch.nn.Module, n: int = 2, precision: str = "fp32") -> tuple[int, int]:
    """Bytes autograd saves for one forward pass of G and one of D, per sample, ``(G, D)``
    (measured on the meta device), with the networks' ``precision`` argument (``'fp32'``,
    ``'fp16'`` or ``'bf16'``). D's input requires grad, as in every phase that trains G or takes R1."""
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
    g_bytes = sum(seen.values())
    seen.clear()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        D_meta(img.detach().requires_grad_(True), c, precision=precision)
    return g_bytes // n, sum(seen.values()) // n


def phase_activations(g: int, d: int, path_length: bool = True, pl_batch_shrink: int = 2) -> dict[str, int]:
    """Saved bytes per sample of each phase from one forward pass's: G_main ``G + D``, D_main ``2 D``,
    R1 ``2 D`` and path length ``2 G / shrink`` (a double backward keeps about twice the forward's)."""
    phases = {"G_main": g + d, "D_main": 2 * d, "D_reg": 2 * d}
    if path_length:
        phases["G_reg"] = 2 * g // max(pl_batch_shrink, 1)
    return phases


def estimate(G: torch.nn.Module, D: torch.nn.Module, batch_gpu: int, precision: str, path_length: bool = True,
             pl_batch_shrink: int = 2) -> Estimate:
    """See the module docstring; ``path_length``: the run has a G_reg phase (``--pl-weight`` > 0)."""
    pg, pd = count_params(G), count_params(D)
    weights = 4 * (pg + pd + pg) + 4 * 3 * (pg + pd)  # G, D, G_ema + grad and Adam m, v for G and D
    g, d = saved_bytes_per_sample(G, D, precision=network_precision(precision))
    phases = phase_activations(g, d, path_length, pl_batch_shrink)
    peak = max(phases, key=phases.get)
    return Estimate(
        params_G=pg,
        params_D=pd,
        params_mapping=count_params(G.mapping),
        weights_bytes=weights,
        activation_bytes_per_sample=phases[peak],
        activation_bytes=phases[peak] * batch_gpu,
        peak_phase=peak,
    )


def format_estimate(e: Estimate, batch_gpu: int) -> str:
    gib = 2**30
    return "\n".join(
        [
            f"parameters: G {e.params_G:,} (mapping {e.params_mapping:,}, synthesis {e.params_G - e.params_mapping:,}), "
            f"D {e.params_D:,}",
            f"memory per process (estimate): {e.total_bytes / gib:.2f} GiB = weights+grads+Adam "
            f"{e.weights_bytes / gib:.2f} GiB + activations {e.activation_bytes / gib:.2f} GiB "
            f"({e.activation_bytes_per_sample / 2**20:.1f} MiB per sample x {batch_gpu}, in {e.peak_phase}; "
            "reference ops, see docs/training.md)",
        ]
    )
