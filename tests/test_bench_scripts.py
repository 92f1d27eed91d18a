"""The benchmark drivers run where there is no GPU too: gpu_check.sh validates its stages before it
starts anything, and bench/train.py reports a case that cannot run (the fused kernels on a CPU) as a
failed row and a failing exit code, without losing the cases that ran."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GPU_CHECK = ROOT / "bench" / "gpu_check.sh"


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_gpu_check_is_valid_bash_and_rejects_unknown_stages(tmp_path: Path) -> None:
    assert GPU_CHECK.stat().st_mode & 0o111, "bench/gpu_check.sh is not executable"
    subprocess.run(["bash", "-n", str(GPU_CHECK)], check=True)
    out = tmp_path / "out"
    run = subprocess.run(["bash", str(GPU_CHECK), str(out), "doctor", "typo"], capture_output=True, text=True)
    assert run.returncode == 64
    assert "unknown stage 'typo'" in run.stderr and "doctor, tests, ops, compile, train, speedups" in run.stderr
    assert not (out / "doctor.log").exists()  # nothing ran


@pytest.mark.e2e
def test_train_bench_reports_a_case_that_cannot_run(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "train.py"), "--device", "cpu", "--precision", "fp32", "--processes", "1",
         "--threads", "1", "--steps", "1", "--warmup", "0", "--ops", "ref", "--ops", "cuda", "--no-append"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600,
    )
    assert run.returncode == 1, run.stdout + run.stderr
    rows = [line for line in run.stdout.splitlines() if line.startswith("| cpu ")]
    assert len(rows) == 2
    ref, cuda = (row.split("|")[1:-1] for row in rows)
    assert ref[6].strip() == "ref" and float(ref[10]) > 0  # sec/kimg measured
    assert ref[7].strip() == "channels-last" and ref[8].strip() == "off"  # train.py's defaults on a CPU
    assert cuda[6].strip() == "cuda" and cuda[10].strip() == "failed"
    assert "CUDA devices only" in run.stderr and "1 of 2 cases failed" in run.stderr


@pytest.mark.e2e
@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_gpu_check_tests_stage_fails_when_no_gpu_test_ran(tmp_path: Path) -> None:
    """Without CUDA every GPU test is skipped and pytest exits 0; the stage must say so and fail."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here: the GPU tests run")
    out = tmp_path / "out"
    env = {**os.environ, "PYTHON": sys.executable}
    run = subprocess.run(["bash", str(GPU_CHECK), str(out), "tests"], capture_output=True, text=True, env=env,
                         timeout=600)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "no GPU test ran" in (out / "tests.log").read_text()
    assert "| tests | 1 |" in (out / "summary.md").read_text()


def test_train_bench_appends_to_the_docs_only_when_asked() -> None:
    sys.path.insert(0, str(ROOT))
    try:
        from bench.train import main
    finally:
        sys.path.remove(str(ROOT))
    append = next(p for p in main.params if p.name == "append")
    assert append.default is False and "--append" in append.opts


def test_gan_family_methods_are_valid_training_options() -> None:
    """Every method of bench/gan_family.py goes through train.py's own parser and resolves (a renamed
    or refused option fails here, not an hour into the benchmark); unknown names are refused."""
    from click.testing import CliRunner

    from bench.gan_family import METHODS, main as bench_main
    from training.train import main as train_main

    for name, (options, _) in METHODS.items():
        res = CliRunner().invoke(train_main, [*options, "--dry-run"])
        assert res.exit_code == 0, (name, res.output[-2000:])
    res = CliRunner().invoke(bench_main, ["--methods", "ns,bogus"])
    assert res.exit_code == 2 and "bogus: expected some of ns, minimax" in res.output


def test_gan_family_code_accuracy_matches_each_code_value_to_one_digit() -> None:
    """The InfoGAN row's score: a code that names the digits under any relabelling scores 1, a code G
    ignores scores 1/10 whatever the digits' shares, and two code values can not claim the same digit."""
    import numpy as np

    from bench.gan_family import code_accuracy

    codes = np.repeat(np.arange(10), 20)
    perm = np.array([3, 7, 0, 9, 1, 4, 8, 2, 6, 5])
    assert code_accuracy(codes, perm[codes]) == (1.0, perm.tolist())
    ignored = np.tile(np.array([1] * 6 + [2] * 4 + [5] * 10), 10)  # every code value: 30% 1s, 20% 2s, 50% 5s
    acc, matched = code_accuracy(codes, ignored)
    assert acc == (10 + 6 + 4) / 200 and len(set(matched)) == 10
    half = np.where(codes < 5, codes, codes - 5)  # values k and k+5 both draw digit k
    assert code_accuracy(codes, half)[0] == 0.5
