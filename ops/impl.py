"""The one place that decides which implementation of an op runs.

``impl`` is ``'auto'``, ``'ref'`` or ``'cuda'``. An explicit ``'ref'`` or ``'cuda'`` is obeyed.
``'auto'`` resolves to the environment variable ``STYLEGAN_OPS`` when it is set, else to the fused
CUDA kernels when they are available for the input's device, else to the reference.

The CUDA kernels are not part of this build yet (they arrive with the fused-ops issue), so today
``'auto'`` always resolves to ``'ref'`` and ``'cuda'`` raises :class:`CudaOpsUnavailableError`.
"""

from __future__ import annotations

import os
from typing import Literal

import torch

IMPLS = ("auto", "ref", "cuda")
ENV_VAR = "STYLEGAN_OPS"

Impl = Literal["auto", "ref", "cuda"]


class CudaOpsUnavailableError(RuntimeError):
    """Raised when ``impl='cuda'`` is asked for and the CUDA kernels cannot be used."""


def _check_impl(value: str, source: str) -> None:
    if value not in IMPLS:
        raise ValueError(f"{source}={value!r}: expected one of {', '.join(map(repr, IMPLS))}")


def cuda_unavailable_reason(op: str, device: torch.device) -> str | None:
    """Why the CUDA kernels of ``op`` cannot run on ``device``, or ``None`` when they can."""
    if device.type != "cuda":
        return f"the input is on {device.type!r}, and the fused {op} kernels run on CUDA devices only"
    return (
        f"the fused CUDA kernels for {op} are not part of this build yet; "
        f"use impl='ref' (or {ENV_VAR}=ref)"
    )


def resolve_impl(impl: str, op: str, device: torch.device) -> Literal["ref", "cuda"]:
    """Resolve ``impl`` for one call of ``op`` on ``device`` to ``'ref'`` or ``'cuda'``."""
    _check_impl(impl, "impl")
    if impl == "auto":
        env = os.environ.get(ENV_VAR, "auto").strip().lower() or "auto"
        _check_impl(env, ENV_VAR)
        impl = env
    if impl == "ref":
        return "ref"
    reason = cuda_unavailable_reason(op, device)
    if impl == "cuda":
        if reason is not None:
            raise CudaOpsUnavailableError(f"impl='cuda' for {op}: {reason}")
        return "cuda"
    return "ref" if reason is not None else "cuda"
