"""Counted FLOPs and the CPU's speed: the expected time of a CPU run before it starts.

A training step's cost is counted, not guessed: ``torch.utils.flop_counter``'s formulas count the multiply-adds of every matrix product and convolution (forward, backward and the double
backward of R1 and path length; element-wise work is not counted, as is usual). ``bench/flops.py``
counted the demo's step (``tiny``, 32x32, batch 32, R1 every 16 steps, path length every 4 as the
paper presets train) as
:data:`STEP_PER_FORWARD` times the FLOPs of one forward pass of G and D, and measured that the step
reaches :data:`CPU_GEMM_SHARE` of the float32 GEMM rate of the same 2-core VM (small convolutions
and element-wise work keep a CPU far from its GEMM peak). The start-up estimate for another preset
counts its G and D forward passes the same way, times those two ratios: larger networks reach a
larger share of the GEMM rate, so for them the estimate is on the long side.
"""

from __future__ import annotations

import time

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

# bench/flops.py on the 2-core development VM, 2026-12-07 (docs/benchmarks.md): the demo step's
# counted FLOPs per image over (G forward + D forward) FLOPs per image (6.5 with path length every 4
# steps, as the paper presets train; 6.2 without, as tiny now trains), and its achieved FLOP rate over
# the same machine's float32 GEMM rate (0.19 contiguous, 0.25 channels-last: the CPU default).
STEP_PER_FORWARD = 6.5
CPU_GEMM_SHARE = 0.25


class FlopCount(TorchDispatchMode):
    """Counts FLOPs with ``torch.utils.flop_counter``'s per-op formulas (its ``flop_registry``).

    ``FlopCounterMode`` itself cannot count a training step: its module tracker's backward hooks
    refuse ``torch.autograd.grad`` (R1, path length), so this mode applies the same formulas
    without tracking modules."""

    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.total += formula(*args, **kwargs, out_val=out)
        return out


def forward_flops(G: torch.nn.Module, D: torch.nn.Module) -> tuple[float, float]:
    """FLOPs of one image through G's and D's forward passes (counted at batch 2, on the networks'
    device, in their current train/eval mode: batch norm needs two samples)."""
    device = next(G.parameters()).device
    z = torch.randn([2, G.z_dim], device=device)
    c = torch.zeros([2, G.c_dim], device=device)
    with torch.no_grad():
        with FlopCount() as g_count:
            img = G(z, c)
        with FlopCount() as d_count:
            D(img, c)
    return g_count.total / 2, d_count.total / 2


def gemm_flops_per_sec(seconds: float = 0.3, size: int = 1024) -> float:
    """This CPU's float32 matrix-product rate with the current thread count (FLOP/s), measured."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b  # warm-up
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or count < 2:
        a @ b
        count += 1
    return 2 * size**3 * count / (time.perf_counter() - start)


def expected_cpu_seconds(G: torch.nn.Module, D: torch.nn.Module, kimg: float, gemm_rate: float | None = None) -> float:
    """About how long ``kimg`` thousand images take to train on this CPU (see the module docstring)."""
    g, d = forward_flops(G, D)
    rate = (gemm_rate or gemm_flops_per_sec()) * CPU_GEMM_SHARE
    return kimg * 1000 * STEP_PER_FORWARD * (g + d) / rate
