"""Counted FLOPs and the CPU's speed: the expected time of a CPU run before it starts.

A training step's cost is counted, not guessed: ``torch.utils.flop_counter``'s formulas count the
multiply-adds of every matrix product and convolution (forward, backward and the double backward of
R1 and path length; element-wise work is not counted, as is usual). Counted phase by phase, a step's
FLOPs per image are :data:`STEP_G` forward passes of G plus :data:`STEP_D` of D (plus
:data:`STEP_PL_G` of G with path length every 4 steps): the coefficients hold for StyleGAN2's and
StyleGAN3's networks alike (they were fitted to both demo presets and give ``bench/flops.py``'s
whole-step counts). The share of this CPU's float32 GEMM rate a step reaches is per family
(:data:`CPU_GEMM_SHARE`, measured with ``bench/flops.py`` on the 2-core VM): small convolutions and
element-wise work keep a CPU far from its GEMM peak, and StyleGAN3's reference filtered leaky ReLU
(depthwise FIR filters at twice the sampling rate) much further. The start-up estimate counts a
preset's G and D forward passes on the meta device and applies the same ratios: larger networks reach
a larger share of the GEMM rate, so for them the estimate is on the long side.
"""

from __future__ import annotations

import copy
import time

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

# A step's FLOPs per image in forward passes of G and of D, counted per phase (one image per
# micro-batch; 2026-12-08): G_main 2.45 G + 2.48 D (G's backward takes its input and weight gradients,
# D's only its input's), D_main 1.0 G (rendered without a graph) + 5.88 D (fakes and reals, forward
# and backward), R1 5.94 D every 16 steps; path length every 4 steps on half the batch adds about
# 0.6 G. tiny's step: 6.2 (G + D) without path length, 6.5 with it, as bench/flops.py counts it whole.
STEP_G, STEP_D, STEP_PL_G = 3.45, 8.73, 0.6
# bench/flops.py on the 2-core development VM (docs/benchmarks.md): the step's achieved FLOP rate over
# the same machine's float32 GEMM rate, channels-last (the CPU default): tiny 0.25 alone (0.19
# contiguous); stylegan3-tiny 0.29 times tiny's in the same conditions (its step is 2.2 times tiny's
# FLOPs and took 8 times as long), where the reference filtered leaky ReLU's depthwise FIR filters
# run at a few GFLOP/s. Other families: StyleGAN2's.
CPU_GEMM_SHARE = {"stylegan3": 0.07}
DEFAULT_CPU_GEMM_SHARE = 0.25


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
        if formula is None:
            return out
        if func._overloadpacket is torch.ops.aten.convolution_backward and not kwargs and args[9] > 1 and args[10][1]:
            # The registry's weight-gradient formula ignores groups, counting every group's weight
            # against every other's input: ``groups`` times too many (StyleGAN3's modulated conv is
            # one grouped conv per batch, so its count grew with the batch). Count that part apart.
            mask, groups = list(args[10]), args[9]
            rest = formula(*args[:10], [mask[0], False, mask[2]], out_val=out)
            weight = formula(*args[:10], [False, True, False], out_val=out)
            self.total += rest + weight // groups
        else:
            self.total += formula(*args, **kwargs, out_val=out)
        return out


def forward_flops(G: torch.nn.Module, D: torch.nn.Module) -> tuple[float, float]:
    """FLOPs of one image through G's and D's forward passes (counted at batch 2, in their current
    train/eval mode: batch norm needs two samples). The formulas need shapes alone, so copies on the
    meta device run the passes: the same counts in a fraction of a second for any network size (a
    1024x1024 StyleGAN3 forward with the reference ops would take minutes on a CPU)."""
    G_meta, D_meta = copy.deepcopy(G).to("meta"), copy.deepcopy(D).to("meta")
    z = torch.zeros([2, G.z_dim], device="meta")
    c = torch.zeros([2, G.c_dim], device="meta")
    with torch.no_grad():
        with FlopCount() as g_count:
            img = G_meta(z, c)
        with FlopCount() as d_count:
            D_meta(img, c)
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


def step_flops(g: float, d: float, path_length: bool = True) -> float:
    """A training step's FLOPs per image from one forward pass's of G (``g``) and D (``d``)."""
    return STEP_G * g + STEP_D * d + (STEP_PL_G * g if path_length else 0.0)


def expected_cpu_seconds(G: torch.nn.Module, D: torch.nn.Module, kimg: float, gemm_rate: float | None = None,
                         path_length: bool = True) -> float:
    """About how long ``kimg`` thousand images take to train on this CPU (see the module docstring);
    ``path_length``: the run has a G_reg phase."""
    g, d = forward_flops(G, D)
    family = getattr(getattr(G, "config", None), "family", "stylegan2")
    rate = (gemm_rate or gemm_flops_per_sec()) * CPU_GEMM_SHARE.get(family, DEFAULT_CPU_GEMM_SHARE)
    return kimg * 1000 * step_flops(g, d, path_length) / rate
