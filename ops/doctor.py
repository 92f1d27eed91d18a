"""``python -m ops doctor``: what the CUDA ops need, what this machine has, whether they build and
agree with the reference, and one line saying whether the fast path is active and, if not, why.

Exit codes (documented in docs/cuda_ops.md): 0 the fast path is active; 1 it is not (no GPU, a
CPU-only PyTorch, a failed build, or ``STYLEGAN_OPS=ref``); 2 the kernels run but disagree with
the reference.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Callable

import torch

from ops import _build, _toolchain, extension
from ops.impl import ENV_VAR

ACTIVE, INACTIVE, MISMATCH = 0, 1, 2
Emit = Callable[[str], None]


@dataclass(frozen=True)
class Check:
    """One comparison of the kernels with the reference: the largest error and what is allowed."""

    name: str
    error: float
    tolerance: float

    @property
    def ok(self) -> bool:
        return self.error <= self.tolerance


def environment_lines() -> list[str]:
    """Versions and locations of everything the build and the kernels depend on."""
    lines = [f"python        {sys.version.split()[0]} ({sys.executable})"]
    lines.append(f"torch         {torch.__version__} (CUDA {torch.version.cuda or 'none: CPU-only build'})")
    nvcc = _toolchain.find_nvcc()
    if nvcc.path:
        home = _toolchain.cuda_home(nvcc.path)
        lines.append(f"nvcc          {nvcc.version or '?'} at {nvcc.path} (toolkit {home or 'unknown'})")
    else:
        lines.append(f"nvcc          missing: {nvcc.problem}")
    for label, tool in (("ninja", _toolchain.find_ninja()), ("c++", _toolchain.find_cxx())):
        text = f"{tool.version} at {tool.path}" if tool.path else f"missing: {tool.problem}"
        lines.append(f"{label:<14}{text}")
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            lines.append(
                f"GPU {i:<10}{props.name} (sm_{props.major}{props.minor}, {props.total_memory / 2**30:.1f} GiB)"
            )
    else:
        lines.append("GPU           none visible to PyTorch")
    root = _build.cache_root()
    builds = len(list(root.glob("*/build.json"))) if root.is_dir() else 0
    writable = os.access(root if root.exists() else root.parent, os.W_OK)
    lines.append(f"cache         {root} ({builds} builds, {'writable' if writable else 'NOT writable'})")
    lines.append(f"{ENV_VAR:<14}{os.environ.get(ENV_VAR, 'unset (auto)')}")
    return lines


def compare_with_reference(device: torch.device, dtype: torch.dtype) -> list[Check]:
    """Forward, backward and double backward of every op, kernels vs reference, on random inputs."""
    from ops import bias_act, setup_filter, upfirdn2d
    from ops.filtered_lrelu import filtered_lrelu

    gen = torch.Generator().manual_seed(0)
    tol = {torch.float32: 1e-4, torch.float16: 2e-2, torch.bfloat16: 1e-1}.get(dtype, 1e-4)
    cases: dict[str, Callable[[torch.Tensor, str], torch.Tensor]] = {}
    b = torch.randn(16, generator=gen).to(device)
    f4 = setup_filter([1, 3, 3, 1], device=device)
    f_sep = setup_filter([1, 2, 1], device=device, separable=True)
    cases["bias_act lrelu clamp"] = lambda x, impl: bias_act(x, b, act="lrelu", clamp=1.5, impl=impl)
    cases["bias_act swish"] = lambda x, impl: bias_act(x, b, act="swish", impl=impl)
    cases["upfirdn2d up2"] = lambda x, impl: upfirdn2d(x, f4, up=2, padding=(2, 1, 2, 1), gain=4, impl=impl)
    cases["upfirdn2d down2"] = lambda x, impl: upfirdn2d(x, f4, down=2, padding=1, impl=impl)
    cases["upfirdn2d filter"] = lambda x, impl: upfirdn2d(x, f4, padding=(2, 1, 2, 1), impl=impl)
    cases["upfirdn2d general"] = lambda x, impl: upfirdn2d(x, f_sep, up=(3, 1), down=(1, 2), padding=1, impl=impl)
    f12 = setup_filter(torch.kaiser_window(12, periodic=False, beta=8.0).tolist(), device=device, separable=True)
    f2d = setup_filter([1, 3, 3, 1], device=device)
    cases["filtered_lrelu up2 down2"] = lambda x, impl: filtered_lrelu(x, f12, f12, b, 2, 2, 11, clamp=256, impl=impl)
    cases["filtered_lrelu 2-D filters"] = lambda x, impl: filtered_lrelu(x, f2d, f2d, b, 2, 1, (2, 1, 2, 1), impl=impl)
    x0 = torch.randn(2, 16, 12, 12, generator=gen).to(device=device, dtype=dtype)
    checks = []
    for name, fn in cases.items():
        results = {}
        for impl in ("cuda", "ref"):
            # The reference in float32 on the same (rounded) inputs: the kernels accumulate in float32,
            # and a float16 reference would round filtered_lrelu's pre-activation differently, moving
            # samples across the leaky ReLU's kink and changing the gradient there.
            x = (x0 if impl == "cuda" else x0.float()).clone().requires_grad_(True)
            y = fn(x, impl)
            (g,) = torch.autograd.grad(y.square().sum(), x, create_graph=True)
            (gg,) = torch.autograd.grad(g.square().sum(), x)
            results[impl] = (y, g, gg)
        for label, got, want in zip(("fwd", "bwd", "2nd"), results["cuda"], results["ref"]):
            scale = want.detach().abs().max().float().item() or 1.0
            error = (got.detach().float() - want.detach().float()).abs().max().item() / scale
            checks.append(Check(f"{name} {label}", error, tol))
    return checks


def run(arch: str | None, build: bool, emit: Emit = print) -> int:
    """Print the report; return the exit code."""
    emit("stylegan ops doctor")
    for line in environment_lines():
        emit(f"  {line}")
    problem = extension.environment_problem()
    if arch is not None and torch.version.cuda is not None and build:
        archs = _build.parse_arch_list(arch)
        jobs = [(op, spec, archs) for op, spec in _build.EXTENSIONS.items()]
        for r in _build.build_many(jobs):
            if r.library is not None:
                emit(f"  build {r.label:<15}ok for {';'.join(archs)} ({r.library})")
            else:
                emit(f"  build {r.label:<15}FAILED for {';'.join(archs)}:\n{_indent(r.error)}")
                problem = problem or extension.Availability(False, f"building {r.label} failed", "")
    if problem is not None:
        if arch is None and build and torch.version.cuda is not None:
            emit("  build         skipped: no GPU to build for (pass --arch 9.0 to test the compiler anyway)")
        emit(f"fast path: INACTIVE: {problem.reason}" + (f"; fix: {problem.hint}" if problem.hint else ""))
        return INACTIVE
    index = torch.cuda.current_device()
    statuses = extension.device_status(index)
    for op, status in statuses.items():
        emit(f"  kernels {op:<15}{'ok' if status.ok else 'FAILED: ' + status.reason}")
    failed = [op for op, status in statuses.items() if not status.ok]
    if failed:
        hint = statuses[failed[0]].hint
        emit(f"fast path: INACTIVE: {statuses[failed[0]].reason}" + (f"; fix: {hint}" if hint else ""))
        return INACTIVE
    device = torch.device("cuda", index)
    checks = [c for dtype in (torch.float32, torch.float16) for c in compare_with_reference(device, dtype)]
    for c in checks:
        emit(f"  check {c.name:<32} rel. error {c.error:.2e} (<= {c.tolerance:.0e}) {'ok' if c.ok else 'MISMATCH'}")
    if not all(c.ok for c in checks):
        emit("fast path: the kernels DISAGREE with the reference; please report this output")
        return MISMATCH
    env = os.environ.get(ENV_VAR, "auto").strip().lower()
    if env == "ref":
        emit(f"fast path: INACTIVE: {ENV_VAR}=ref selects the reference (the kernels work; unset it to use them)")
        return INACTIVE
    emit(f"fast path: ACTIVE on cuda:{index} ({torch.cuda.get_device_name(index)})")
    return ACTIVE


def _indent(text: str, prefix: str = "      ") -> str:
    return "\n".join(prefix + line for line in text.splitlines())
