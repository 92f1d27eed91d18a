"""What can be checked of the Dockerfile without pulling an image: it builds the ops with the
script CI runs, for the common architectures, installs the project, drops root and documents
`accelerate launch training/train.py`; the scripts it and CI run are valid bash."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from ops import _build

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def _instructions(keyword: str) -> list[str]:
    """The arguments of every ``keyword`` instruction (continuation lines joined)."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    return [line.split(None, 1)[1] for line in text.splitlines() if line.startswith(keyword + " ")]


def test_cuda_devel_base_and_matching_torch() -> None:
    assert any("nvidia/cuda:" in arg and "devel" in arg for arg in _instructions("ARG"))
    cuda = re.search(r"nvidia/cuda:(\d+)\.(\d+)", DOCKERFILE)
    index = re.search(r"download\.pytorch\.org/whl/cu(\d+)", DOCKERFILE)
    assert cuda and index and index.group(1) == cuda.group(1) + cuda.group(2)  # e.g. 12.8 <-> cu128


def test_builds_the_ops_with_the_ci_script_for_common_archs() -> None:
    runs = " ".join(_instructions("RUN"))
    assert ".ci/build_cuda_ops.sh" in runs and "pip install -e ." in runs
    archs = re.search(r'TORCH_CUDA_ARCH_LIST="([^"]+)"', DOCKERFILE).group(1)
    parsed = _build.parse_arch_list(archs)
    for cap in [(7, 0), (7, 5), (8, 0), (8, 6), (8, 9), (9, 0)]:
        assert _build.covers(parsed, cap), cap
    assert ".ci/build_cuda_ops.sh" in (ROOT / ".ci" / "compile_cuda_ops.sh").read_text()  # CI runs it too


def test_runs_as_a_user_with_accelerate_launch() -> None:
    users = _instructions("USER")
    assert users and users[-1] not in ("root", "0")
    assert _instructions("ENTRYPOINT") == ['["accelerate", "launch"]']
    assert "training/train.py" in _instructions("CMD")[-1]


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.parametrize("script", ["build_cuda_ops.sh", "compile_cuda_ops.sh"])
def test_scripts_are_valid_executable_bash(script: str) -> None:
    path = ROOT / ".ci" / script
    assert path.stat().st_mode & 0o111, f"{script} is not executable"
    subprocess.run(["bash", "-n", str(path)], check=True)
