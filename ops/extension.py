"""Whether the CUDA kernels can run here: build or find the extensions, load them, register their
Python parts, and check them once on each device.

Everything is computed once per process (``functools.cache`` on loaders that never raise: a
failure is a result, :class:`Availability` with the reason and a fix). :mod:`ops.impl` turns the
result into a decision; ``python -m ops doctor`` prints it.
"""

from __future__ import annotations

import functools
import importlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

from ops import _build

OPS = ("bias_act", "upfirdn2d", "filtered_lrelu")
KERNEL_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


@dataclass(frozen=True)
class Availability:
    """Whether one op's kernels can run; if not, why (with the compiler's error) and how to fix it."""

    ok: bool
    reason: str = ""
    hint: str = ""


def kernel_layout(t: torch.Tensor) -> torch.memory_format:
    """The memory layout the kernels bring a tensor to, and give their outputs: channels_last for a
    4-D channels_last tensor (that is not also contiguous), else contiguous. The same rule as
    ``layout_of`` in csrc/*.cpp; the fake (meta) implementations use it to predict strides."""
    if t.ndim == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def arch_of(capability: tuple[int, int]) -> str:
    return f"{capability[0]}.{capability[1]}"


def environment_problem() -> Availability | None:
    """What keeps any CUDA kernel from running here, before trying to build one."""
    if torch.version.cuda is None:
        return Availability(
            False,
            f"this PyTorch ({torch.__version__}) is a CPU-only build",
            "install a CUDA build of PyTorch (see https://pytorch.org/get-started/locally/)",
        )
    if not torch.cuda.is_available():
        return Availability(
            False,
            "no CUDA device is visible to PyTorch (torch.cuda.is_available() is False)",
            "check the NVIDIA driver (nvidia-smi) and CUDA_VISIBLE_DEVICES",
        )
    return None


def _hint_for(error: str) -> str:
    """How to fix a build error, from the symptoms users hit most."""
    text = error.lower()
    if "nvcc" in text and "not found" in text:
        return "install a CUDA toolkit matching torch.version.cuda and put its bin/ on PATH (or set CUDA_HOME)"
    if "ninja" in text:
        return "pip install ninja"
    if "unsupported gpu architecture" in text or "unsupported gpu" in text:
        return "this nvcc is too old or too new for the GPU; use the toolkit matching torch.version.cuda"
    if "unsupported gnu version" in text or "host compiler" in text:
        return "the host compiler is not supported by this nvcc; set CXX/CC to a supported g++ version"
    if "lock" in text:
        return "another process holds the build lock; see the message above"
    return (
        f"read the compiler error above; rebuild with `python -m ops build --verbose`; the build folders are "
        f"under {_build.cache_root()} (delete one to force a rebuild)"
    )


def _library_for(op: str, capabilities: list[tuple[int, int]], root: Path) -> Path:
    spec = _build.EXTENSIONS[op]
    prebuilt = _build.find_prebuilt(spec, capabilities, root)
    if prebuilt is not None:
        return prebuilt
    archs = tuple(sorted({arch_of(c) for c in capabilities}))
    return _build.ensure_built(spec, archs, root)


def _load_and_register(op: str, library: Path) -> None:
    torch.ops.load_library(str(library))
    importlib.import_module(f"ops.{op}")._register_kernels(_build.NAMESPACE)


@functools.cache
def load_extensions() -> dict[str, Availability]:
    """Build (both at once, in parallel) or find, then load the extensions for the visible GPUs."""
    problem = environment_problem()
    if problem is not None:
        return {op: problem for op in OPS}
    capabilities = sorted({torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())})
    root = _build.cache_root()

    def build(op: str) -> Path | Availability:
        try:
            return _library_for(op, capabilities, root)
        except (_build.BuildError, OSError) as err:
            return Availability(False, f"building the {op} extension failed: {err}", _hint_for(str(err)))

    with ThreadPoolExecutor(len(OPS)) as pool:
        built = dict(zip(OPS, pool.map(build, OPS)))
    result: dict[str, Availability] = {}
    for op, library in built.items():
        if isinstance(library, Availability):
            result[op] = library
            continue
        try:
            _load_and_register(op, library)
        except (OSError, RuntimeError) as err:
            result[op] = Availability(
                False, f"loading {library} failed: {err}", f"delete {library.parent} to force a rebuild"
            )
            continue
        result[op] = Availability(True)
    return result


def _smoke_test(op: str, device: torch.device) -> str | None:
    """Run the kernel once against the reference; ``None`` when they agree, else what went wrong."""
    from ops.bias_act import _bias_act_ref
    from ops.filtered_lrelu import _filtered_lrelu_ref
    from ops.upfirdn2d import _upfirdn2d_ref, setup_filter

    kernels = getattr(torch.ops, _build.NAMESPACE)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 8, 6, 6, generator=gen).to(device)
    if op == "bias_act":
        b = torch.randn(8, generator=gen).to(device)
        got = kernels.bias_act(x, b, 1, "lrelu", 0.2, 2**0.5, 256.0)
        want = _bias_act_ref(x, b, 1, "lrelu", 0.2, 2**0.5, 256.0)
    elif op == "upfirdn2d":
        f = setup_filter([1, 3, 3, 1], device=device)
        got = kernels.upfirdn2d(x, f, 2, 2, 1, 1, 2, 1, 2, 1, False, 4.0)
        want = _upfirdn2d_ref(x, f, (2, 2), (1, 1), (2, 1, 2, 1), False, 4.0)
    else:
        f = setup_filter([1, 3, 3, 1], device=device, separable=True)
        b = torch.randn(8, generator=gen).to(device)
        got = kernels.filtered_lrelu(x, f, f, b, 2, 2, 3, 3, 3, 3, 2**0.5, 0.2, 2.0, False, False)[0]
        want = _filtered_lrelu_ref(x, f, f, b, 2, 2, (3, 3, 3, 3), 2**0.5, 0.2, 2.0, False)
    torch.cuda.synchronize(device)
    err = (got - want).abs().max().item()
    return None if err <= 1e-4 else f"the {op} kernel differs from the reference by {err:.3g} on a test input"


@functools.cache
def device_status(index: int) -> dict[str, Availability]:
    """:func:`load_extensions`, then one run of each loaded kernel on ``cuda:index``."""
    loaded = load_extensions()
    device = torch.device("cuda", index)
    result = {}
    for op in OPS:
        if not loaded[op].ok:
            result[op] = loaded[op]
            continue
        try:
            problem = _smoke_test(op, device)
        except RuntimeError as err:  # e.g. "no kernel image is available for execution on the device"
            problem = f"running the {op} kernel failed: {err}"
        if problem is None:
            result[op] = Availability(True)
        else:
            name, cap = torch.cuda.get_device_name(index), torch.cuda.get_device_capability(index)
            result[op] = Availability(
                False,
                f"{problem} (cuda:{index}, {name}, sm_{cap[0]}{cap[1]})",
                f"rebuild for this GPU: python -m ops build --arch {arch_of(cap)}; if it persists, report "
                f"the output of `python -m ops doctor`",
            )
    return result


@functools.cache
def load_emulation(root: Path | None = None) -> str:
    """Build and load the tests' CPU emulation of the kernels (C++ compiler and ninja only) and
    register its Python parts; returns its operator namespace. Raises :class:`ops._build.BuildError`."""
    library = _build.ensure_built(_build.EMULATION, (), root)
    torch.ops.load_library(str(library))
    for op in OPS:
        importlib.import_module(f"ops.{op}")._register_kernels(_build.EMULATION_NAMESPACE)
    return _build.EMULATION_NAMESPACE
