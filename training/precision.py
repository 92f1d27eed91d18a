"""Mixed precision, chosen in this one place: the autocast context and the per-network loss scaler.

``--precision fp32`` runs everything in float32. ``bf16`` and ``fp16`` run the forward and backward
passes under ``torch.autocast`` while the weights, gradients and optimizer state stay float32.
``fp16`` has a narrow exponent range, so each network gets its **own** dynamic loss scaler (one
scaler shared by G and D would let one network's overflow shrink the other's scale; see
accelerate#439). bf16 has float32's range and needs no scaler.

We use ``torch.autocast`` directly rather than ``Accelerator(mixed_precision=...)``: Accelerate's
state is a process-wide singleton that cannot change precision within a process, and it owns a
single shared scaler, which is exactly what fp16 GAN training must avoid.
"""

from __future__ import annotations

import contextlib
from typing import ContextManager

import torch

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def check_precision(precision: str, device: torch.device) -> None:
    """Raise ``ValueError`` when ``precision`` cannot run on ``device``."""
    if precision not in DTYPES:
        raise ValueError(f"--precision={precision!r}: expected one of {', '.join(DTYPES)}")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError("--precision=bf16: this GPU does not support bfloat16; use fp16 or fp32")


def autocast(precision: str, device: torch.device) -> ContextManager:
    """The context that runs forward passes (and their backward) in ``precision``."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=DTYPES[precision])


def make_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler | None:
    """A dynamic loss scaler for fp16, ``None`` otherwise."""
    if precision != "fp16":
        return None
    return torch.amp.GradScaler(device.type)


def loss_scale(scaler: torch.amp.GradScaler | None) -> float:
    """The factor the loss is multiplied by before backward (1 without a scaler)."""
    return 1.0 if scaler is None else float(scaler.get_scale())
