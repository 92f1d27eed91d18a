"""The one place that decides which implementation of an op runs.

``impl`` is ``'auto'``, ``'ref'`` or ``'cuda'``. An explicit ``'ref'`` or ``'cuda'`` is obeyed.
``'auto'`` resolves to the environment variable ``STYLEGAN_OPS`` when it is set, else:

* inputs not on a CUDA device (or of a dtype the kernels lack) run the reference, silently: there
  is nothing to fall back from;
* inputs on a CUDA device run the fused kernels when they build, load and pass a check on that
  device (:mod:`ops.extension`, once per process); when they cannot, the reference runs and ONE
  :class:`CudaOpsFallbackWarning` says what failed, how to fix it and how to silence it.

``'cuda'`` (or ``STYLEGAN_OPS=cuda``) never falls back: it raises :class:`CudaOpsUnavailableError`
with the reason, including the compiler's own error when the build failed.
"""

from __future__ import annotations

import functools
import os
import warnings
from typing import Literal

import torch

IMPLS = ("auto", "ref", "cuda")
ENV_VAR = "STYLEGAN_OPS"

Impl = Literal["auto", "ref", "cuda"]


class CudaOpsUnavailableError(RuntimeError):
    """Raised when ``impl='cuda'`` is asked for and the CUDA kernels cannot be used."""


class CudaOpsFallbackWarning(UserWarning):
    """``impl='auto'`` runs the reference on a CUDA device because the kernels cannot be used."""


def _check_impl(value: str, source: str) -> None:
    if value not in IMPLS:
        raise ValueError(f"{source}={value!r}: expected one of {', '.join(map(repr, IMPLS))}")


def cuda_unavailable_reason(op: str, device: torch.device, dtype: torch.dtype | None = None) -> str | None:
    """Why the CUDA kernels of ``op`` cannot run on ``device`` (and ``dtype``), or ``None`` when they can."""
    from ops import extension

    if device.type != "cuda":
        return f"the input is on {device.type!r}, and the fused {op} kernels run on CUDA devices only"
    if dtype is not None and dtype not in extension.KERNEL_DTYPES:
        return f"the fused {op} kernels support float32, float64, float16 and bfloat16, not {dtype}"
    index = device.index if device.index is not None else torch.cuda.current_device()
    status = extension.device_status(index)[op]
    return None if status.ok else status.reason


@functools.cache
def _warn_fallback(message: str) -> None:
    """Warn once per distinct message (the message summarises every op on one device)."""
    warnings.warn(message, CudaOpsFallbackWarning, stacklevel=4)


def _fallback_message(device: torch.device) -> str:
    from ops import extension

    index = device.index if device.index is not None else torch.cuda.current_device()
    statuses = extension.device_status(index)
    lines = [
        f"stylegan ops: the fused CUDA kernels cannot be used on cuda:{index}; the PyTorch reference "
        f"implementation runs instead (same results, slower, more memory)."
    ]
    lines += [f"  {op}: {status.reason}" for op, status in statuses.items() if not status.ok]
    hints = dict.fromkeys(status.hint for status in statuses.values() if not status.ok and status.hint)
    lines += [f"  fix: {hint}" for hint in hints]
    lines.append("  full report: python -m ops doctor")
    lines.append(
        f"  silence: set {ENV_VAR}=ref to always use the reference ({ENV_VAR}=cuda makes this an error instead)"
    )
    return "\n".join(lines)


# Under torch.compile the decision is taken once, while tracing, and baked into the graph: the
# loader's caches, builds and warning must not be traced (changing STYLEGAN_OPS afterwards does
# not recompile).
@torch.compiler.assume_constant_result
def resolve_impl(
    impl: str, op: str, device: torch.device, dtype: torch.dtype | None = None
) -> Literal["ref", "cuda"]:
    """Resolve ``impl`` for one call of ``op`` on ``device`` (and ``dtype``) to ``'ref'`` or ``'cuda'``."""
    _check_impl(impl, "impl")
    if impl == "auto":
        env = os.environ.get(ENV_VAR, "auto").strip().lower() or "auto"
        _check_impl(env, ENV_VAR)
        impl = env
    if impl == "ref":
        return "ref"
    explicit = impl == "cuda"
    if not explicit and (device.type != "cuda" or (dtype is not None and dtype not in _kernel_dtypes())):
        return "ref"  # nothing to fall back from
    reason = cuda_unavailable_reason(op, device, dtype)
    if reason is None:
        return "cuda"
    if explicit:
        raise CudaOpsUnavailableError(f"impl='cuda' for {op}: {reason}")
    _warn_fallback(_fallback_message(device))
    return "ref"


def _kernel_dtypes() -> tuple[torch.dtype, ...]:
    from ops import extension

    return extension.KERNEL_DTYPES
