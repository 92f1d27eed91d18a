"""Find the tools that build the CUDA ops: nvcc (and the CUDA toolkit it belongs to), ninja and
the host C++ compiler, with their versions.

Building PyTorch extensions fails most often because a tool is found in the wrong place, not
because it is missing: ``nvcc`` behind a wrapper script makes ``torch.utils.cpp_extension`` guess
``CUDA_HOME=/usr/local``; ``ninja`` installed by pip into a virtual environment is not on ``PATH``
when the environment's Python runs without being activated. This module finds both the way the
tools themselves report it, so the build can pass them to the compiler process explicitly (our own
process environment is never changed).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Tool:
    """A located tool: its path (``None`` when not found), version line, and why it is missing."""

    path: str | None
    version: str = ""
    problem: str = ""


def _run(cmd: list[str], timeout: float = 30) -> str:
    """stdout + stderr of ``cmd``; empty when it cannot run."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError):
        return ""
    return proc.stdout + proc.stderr


def find_nvcc() -> Tool:
    """nvcc from ``$CUDA_HOME``/``$CUDA_PATH``, else ``PATH``, else ``/usr/local/cuda``."""
    candidates = []
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(var):
            candidates.append(str(Path(os.environ[var]) / "bin" / "nvcc"))
    candidates += [shutil.which("nvcc") or "", "/usr/local/cuda/bin/nvcc"]
    for path in candidates:
        if path and os.access(path, os.X_OK):
            out = _run([path, "--version"])
            match = re.search(r"release (\S+), V(\S+)", out)
            if match:
                return Tool(path, match.group(2))
            return Tool(path, "", f"{path} --version printed no release line: {out.strip()[-300:]!r}")
    return Tool(
        None,
        "",
        "nvcc (the CUDA compiler) was not found in $CUDA_HOME/bin, on PATH or in /usr/local/cuda/bin; "
        "install a CUDA toolkit whose major version matches torch.version.cuda and put its bin/ on "
        "PATH (or set CUDA_HOME)",
    )


def cuda_home(nvcc: str) -> str | None:
    """The toolkit root nvcc really belongs to: the ``TOP`` that ``nvcc --dryrun`` reports (this
    sees through wrapper scripts and symlinks)."""
    out = _run([nvcc, "--dryrun", "-x", "cu", "-c", os.devnull, "-o", os.devnull])
    match = re.search(r"^#\$ TOP=(.+)$", out, flags=re.MULTILINE)
    if match:
        return os.path.normpath(match.group(1).strip())
    root = Path(os.path.realpath(nvcc)).parent.parent
    return str(root) if (root / "include" / "cuda_runtime.h").exists() else None


def find_ninja() -> Tool:
    """ninja from this Python's environment (pip's ``ninja`` package) or ``PATH``."""
    env_bin = str(Path(sys.executable).parent)
    path = shutil.which("ninja", path=os.pathsep.join([env_bin, os.environ.get("PATH", "")]))
    if path is None:
        try:  # pip's ninja package keeps the binary inside the package when scripts are elsewhere
            import ninja  # type: ignore[import-not-found]

            candidate = Path(ninja.BIN_DIR) / "ninja"
            path = str(candidate) if candidate.exists() else None
        except (ImportError, AttributeError):
            path = None
    if path is None:
        return Tool(None, "", "ninja was not found; install it with `pip install ninja`")
    return Tool(path, _run([path, "--version"]).strip())


def find_cxx() -> Tool:
    """The host C++ compiler PyTorch will use: ``$CXX`` or ``c++``."""
    name = os.environ.get("CXX", "c++")
    path = shutil.which(name)
    if path is None:
        return Tool(None, "", f"the C++ compiler {name!r} ($CXX, default c++) was not found; install g++")
    first = _run([path, "--version"]).strip().splitlines()
    return Tool(path, first[0] if first else "")


def nvcc_gpu_archs(nvcc: str) -> list[str]:
    """The ``compute_XY`` targets this nvcc can compile for (``nvcc --list-gpu-arch``)."""
    return re.findall(r"compute_\w+", _run([nvcc, "--list-gpu-arch"]))
