"""Mixed precision, chosen in this one place: autocast, the networks' own precision, loss scalers.

``--precision fp32`` runs everything in float32 (the networks' float16 blocks too are kept float32).
``fp16`` is StyleGAN2-ADA's recipe plus autocast: the preset's top ``num_fp16_res`` blocks run in
float16 with their ``conv_clamp`` (networks' ``precision='auto'``, CUDA only), the rest under
``torch.autocast(float16)``, and each network gets its **own** dynamic loss scaler (one scaler shared
by G and D would let one network's overflow shrink the other's scale; see accelerate#439). ``bf16``
runs under ``torch.autocast(bfloat16)``, which has float32's range and needs no scaler. Weights,
gradients and optimizer state stay float32 in every mode.

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


def network_precision(precision: str) -> str:
    """The ``precision=`` argument for G and D: their float16 blocks only under ``fp16``."""
    return "auto" if precision == "fp16" else "fp32"


def autocast(precision: str, device: torch.device) -> ContextManager:
    """The context that runs forward passes (and their backward) in ``precision``."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=DTYPES[precision])


def make_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler | None:
    """A dynamic loss scaler for fp16, ``None`` otherwise."""
    if precision != "fp16":
        return None
    # 2**10 rather than the default 2**16: the double backward of R1 and path length overflows
    # float16 at large scales, and every overflow costs a skipped step while the scale backs off.
    return torch.amp.GradScaler(device.type, init_scale=2.0**10)


def loss_scale(scaler: torch.amp.GradScaler | None) -> float:
    """The factor the loss is multiplied by before backward (1 without a scaler)."""
    return 1.0 if scaler is None else float(scaler.get_scale())
