"""Two ways to a faster step that change no result beyond float rounding: memory format and torch.compile.

**Memory format** (``--memory-format``). The networks' 4-D weights and the reals can be kept
channels-last (NHWC) instead of contiguous (NCHW); every later activation follows its input's
layout. On a CPU oneDNN's convolutions then skip their layout reorders: the demo step measured
11-14 % faster (bench/train.py, docs/benchmarks.md), so ``auto`` picks channels-last there. On CUDA
it is not measured yet (no GPU was lent so far), so ``auto`` keeps contiguous, the layout every
CUDA figure in this project was made with; ``bench/gpu_check.sh`` measures both.

**torch.compile** (``--compile``). The forward passes of G (mapping and synthesis) and D are
compiled for the phases whose backward is a plain one (``G_main``, ``D_main``). The regularisation
phases (path length, R1, WGAN-GP's penalty) differentiate a gradient (``create_graph=True``), which
a compiled graph cannot do (AOTAutograd has no double backward: ``tests/test_train_speedups.py``
checks that this is still so), so they run the same modules eagerly, said once at start-up. If a
compile fails (no C++ compiler for inductor's CPU code, no Triton), the phase says so once and runs
eagerly from then on. Off by default on every device: on the 2-core CPU the first step took about
two minutes to compile, which a demo-sized run never wins back (docs/benchmarks.md).

Neither changes what a run computes, only the order of float operations; a resumed run that
changes either is correct but not bit-identical to the run it continues.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Iterable

import torch

MEMORY_FORMATS = {"contiguous": torch.contiguous_format, "channels-last": torch.channels_last}

log = logging.getLogger(__name__)


def default_memory_format(device_type: str) -> tuple[str, str]:
    """``(format, why)``: what ``--memory-format auto`` picks on ``device_type``."""
    if device_type == "cpu":
        return "channels-last", "13 % faster on a CPU in bench/train.py"
    return "contiguous", "channels-last not yet measured on CUDA"


def memory_format(name: str | None) -> torch.memory_format:
    """The torch memory format of a ``--memory-format`` value (``None``, not resolved: contiguous)."""
    try:
        return MEMORY_FORMATS[name or "contiguous"]
    except KeyError:
        raise ValueError(f"--memory-format {name!r}: expected one of {', '.join(MEMORY_FORMATS)}") from None


def to_memory_format(modules: Iterable[torch.nn.Module], name: str | None) -> None:
    """Bring every 4-D parameter and buffer of ``modules`` to the layout ``name`` (in place)."""
    fmt = memory_format(name)
    for module in modules:
        module.to(memory_format=fmt)


def images_in(images: torch.Tensor, name: str | None) -> torch.Tensor:
    """``images`` (4-D) in the layout ``name``; the same tensor when it already is."""
    return images.contiguous(memory_format=memory_format(name))


class Compiled:
    """A callable's compiled version that falls back to the callable itself, with one warning, when
    compiling fails; ``label`` names it in the warning (``"D"``, ``"G.synthesis"``)."""

    def __init__(self, fn: Callable[..., Any], label: str, backend: str = "inductor",
                 warn: Callable[[str], None] | None = None) -> None:
        self.fn, self.label, self.backend = fn, label, backend
        self.compiled: Callable[..., Any] | None = torch.compile(fn, backend=backend)
        self.warn = warn or log.warning

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.compiled is None:
            return self.fn(*args, **kwargs)
        try:
            return self.compiled(*args, **kwargs)
        except Exception as err:  # noqa: BLE001 - a compile failure: say it once, run eagerly
            if not _is_compile_error(err):
                raise
            # Dynamo reports the model's own errors (a wrong shape) wrapped as its own: the eager
            # call raises those as they are, and only a call that then succeeds was a compile failure.
            out = self.fn(*args, **kwargs)
            self.compiled = None
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            self.warn(f"--compile: {self.label} could not be compiled ({type(err).__name__}: {first[:200]}); "
                      "it runs eagerly from now on")
            return out


def _is_compile_error(err: Exception) -> bool:
    """Whether ``err`` came from torch.compile's machinery (dynamo, AOTAutograd, inductor), not from
    the model's own code (a shape error is raised in the eager path as well and must surface)."""
    return (type(err).__module__ or "").startswith(("torch._dynamo", "torch._inductor", "torch._functorch"))


class CompiledGenerator:
    """G with compiled ``mapping`` and ``synthesis``; every other attribute is G's own, so the losses
    use it where they use G (``z_dim``, ``c_dim``, parameters)."""

    def __init__(self, G: torch.nn.Module, backend: str = "inductor", warn: Callable[[str], None] | None = None) -> None:
        self._G = G
        self.mapping = Compiled(G.mapping, "G.mapping", backend, warn)
        self.synthesis = Compiled(G.synthesis, "G.synthesis", backend, warn)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._G, name)


def compile_networks(G: torch.nn.Module, D: torch.nn.Module, backend: str = "inductor",
                     warn: Callable[[str], None] | None = None) -> tuple[Any, Any]:
    """``(G, D)`` with compiled forward passes, for the phases with a plain backward."""
    return CompiledGenerator(G, backend, warn), Compiled(D, "D", backend, warn)


EAGER_PHASES_NOTE = ("--compile: the regularisation phases (path length, R1, WGAN-GP's penalty) run eagerly: "
                     "torch.compile cannot differentiate a compiled gradient (no double backward)")
