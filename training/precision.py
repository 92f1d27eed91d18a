"""Mixed precision, chosen in this one place: the networks' precision and the loss scalers.

The layout is StyleGAN2-ADA's (Karras et al. 2020, appendix D): only the preset's top
``num_fp16_res`` blocks of the synthesis network and of the discriminator run in reduced precision,
with their convolutions clamped to ``+-conv_clamp``; the mapping network, the affine (style)
layers, the lower blocks, D's 4x4 epilogue (minibatch std, conv, fc, out) and D's label mapping
stay float32. The networks apply it themselves (:mod:`stylegan.precision`): the trainer passes
:func:`network_precision` as their ``precision=`` argument and wraps nothing in ``torch.autocast``,
which would also run the float32 layers' convolutions and matmuls in reduced precision.

* ``fp32``: every block float32 (a config with ``num_fp16_res=0`` has no reduced block anyway).
* ``fp16``: the top blocks in float16, on any device; each network gets its **own** dynamic loss
  scaler (one scaler shared by G and D would let one network's overflow shrink the other's scale;
  see accelerate#439).
* ``bf16``: the same blocks in bfloat16. bfloat16 has float32's exponent range, so it needs no loss
  scaler; it keeps the float16 layout because its 8-bit mantissa is coarser than float16's. On a
  CPU the double backward of the regularisers runs without oneDNN (:func:`onednn_unsafe`).

Weights, gradients and optimizer state stay float32 in every mode. We do not use
``Accelerator(mixed_precision=...)``: Accelerate's state is a process-wide singleton that cannot
change precision within a process, it autocasts whole forward passes, and it owns a single shared
scaler, which is exactly what fp16 GAN training must avoid.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

import torch

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def check_precision(precision: str, device: torch.device) -> None:
    """Raise ``ValueError`` when ``precision`` cannot run on ``device``."""
    if precision not in DTYPES:
        raise ValueError(f"--precision={precision!r}: expected one of {', '.join(DTYPES)}")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError("--precision=bf16: this GPU does not support bfloat16; use fp16 or fp32")


# CPU flags (Linux /proc/cpuinfo) that mean native bfloat16 arithmetic: x86's AVX512-BF16 and AMX-BF16,
# Arm's BF16 extension.
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool | None:
    """Whether this CPU computes bfloat16 natively, from the flags in ``/proc/cpuinfo`` (or the text
    given); ``None`` where that cannot be told (no /proc, no flags line). Without such flags PyTorch
    emulates bfloat16 in float32 with a conversion around every op: slower than float32 itself."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            return None
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() in ("flags", "Features"):  # x86, Arm; every core lists the same
            return any(flag in value.split() for flag in BF16_CPU_FLAGS)
    return None


def precision_warning(precision: str, device: torch.device, native_bf16: bool | None = None) -> str | None:
    """One start-up line when ``precision`` will run slowly on ``device``, else ``None``: bfloat16 on a
    CPU without native bfloat16 (an AVX2-only CPU ran the demo 24x slower in bf16 than in fp32).
    ``native_bf16`` defaults to :func:`cpu_has_native_bf16`."""
    if precision != "bf16" or device.type != "cpu":
        return None
    native = cpu_has_native_bf16() if native_bf16 is None else native_bf16
    if native is not False:
        return None
    capability = torch.backends.cpu.get_cpu_capability()
    return (f"warning: --precision bf16 on a CPU without native bfloat16 (no {'/'.join(BF16_CPU_FLAGS[:2])} flag; "
            f"torch uses {capability}): expect it many times slower than fp32 (24x measured on an AVX2 CPU); "
            f"use --precision fp32 here")


def network_precision(precision: str) -> str:
    """The ``precision=`` argument for G and D under ``--precision``: the same name (``'fp32'``,
    ``'fp16'`` or ``'bf16'``), which runs the networks' low-precision blocks in that dtype on any
    device (never ``'auto'``, which would keep them float32 on a CPU)."""
    if precision not in DTYPES:
        raise ValueError(f"--precision={precision!r}: expected one of {', '.join(DTYPES)}")
    return precision


def make_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler | None:
    """A dynamic loss scaler for fp16, ``None`` otherwise."""
    if precision != "fp16":
        return None
    # 2**10 rather than the default 2**16: the double backward of R1 and path length overflows
    # float16 at large scales, and every overflow costs a skipped step while the scale backs off.
    return torch.amp.GradScaler(device.type, init_scale=2.0**10)


def onednn_unsafe(precision: str, device: torch.device) -> bool:
    """Whether a double backward (R1, path length, gradient penalty) in ``precision`` on ``device``
    must not run on oneDNN's convolutions: bfloat16 on a CPU.

    Their double backward convolves an activation with a gradient, a convolution whose "kernel" is
    a whole feature map. oneDNN's bfloat16 convolution returns wrong numbers for some such shapes
    on CPUs with AMX (measured 2026-12-03, torch 2.14.1, Xeon with ``amx_bf16``: a 32x32 kernel over
    4 input channels with padding 1 is 100% off, its float32 twin and the same call with oneDNN
    off are right; kernels 16, 24, 32 wide fail, 15, 17 and 31 do not). That made R1's gradient of
    D's 3x3 convolutions ~100% wrong (the whole D_reg gradient 0.27 off float32) and path
    length's 0.14 off. The failing shapes follow oneDNN's blocking, not a rule we can check
    cheaply, so every bfloat16 double backward on a CPU avoids oneDNN; GPUs never use it."""
    return precision == "bf16" and device.type == "cpu"


@contextlib.contextmanager
def without_onednn(active: bool = True) -> Iterator[None]:
    """Run the block with PyTorch's oneDNN (mkldnn) kernels off when ``active``, and restore the
    previous setting after. PyTorch then uses its own convolution and matmul kernels, which are
    right for every shape and several times slower (see :func:`onednn_unsafe`)."""
    if not active:
        yield
        return
    before = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = before


def loss_scale(scaler: torch.amp.GradScaler | None) -> float:
    """The factor the loss is multiplied by before backward (1 without a scaler)."""
    return 1.0 if scaler is None else float(scaler.get_scale())
