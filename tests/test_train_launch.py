"""``python -m training.launch``: torchrun whose exit status tells a clean stop from a failure (CPU).

The workers here are small stand-in scripts (no torch import), so each case takes a few seconds; the
real trainer under this launcher is tested in tests/test_train_signals.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from training.launch import DEFAULT_SHUTDOWN_TIMEOUT_SEC, STOP_REPORTS_ENV, resume_command, status_after_signal

REPO = Path(__file__).resolve().parents[1]

WORKER = textwrap.dedent('''
    """Stand-in training process: says it is ready, waits for SIGTERM / SIGINT, then stops as told."""
    import os, signal, sys, time
    from pathlib import Path
    from training.launch import report_clean_stop

    out, mode = Path(sys.argv[1]), sys.argv[2]
    rank = int(os.environ["LOCAL_RANK"])
    got = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: got.append(signum))
    (out / f"ready{rank}").write_text(os.environ.get("TORCH_ELASTIC_SHUTDOWN_TIMEOUT", ""))
    if mode == "finish":
        sys.exit(0)
    if mode == "fail":
        sys.exit(3)
    while not got:
        time.sleep(0.05)
    if mode == "clean" or (mode == "rank1-silent" and rank == 0):
        report_clean_stop(1234, signal.Signals(got[0]).name)
    sys.exit(0)
''')


def start(tmp_path: Path, mode: str, *extra: str) -> subprocess.Popen:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("TORCH_ELASTIC_SHUTDOWN_TIMEOUT", None)
    return subprocess.Popen([sys.executable, "-m", "training.launch", "--nproc-per-node", "2", *extra,
                             str(script), str(tmp_path), mode],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def wait_ready(proc: subprocess.Popen, tmp_path: Path, n: int = 2, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if all((tmp_path / f"ready{r}").exists() for r in range(n)):
            return
        if proc.poll() is not None:
            raise AssertionError(f"the launcher ended (rc {proc.returncode}):\n{proc.communicate()[0][-3000:]}")
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    raise AssertionError(f"workers not ready:\n{proc.communicate()[0][-3000:]}")


def finish(proc: subprocess.Popen, timeout: float = 120) -> str:
    try:
        return proc.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise AssertionError(f"no exit within {timeout} s:\n{proc.communicate()[0][-3000:]}") from None


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.parametrize("target", ["group", "launcher"])
def test_a_clean_stop_on_every_process_exits_0(tmp_path, sig, target):
    """To the group (scancel, Ctrl-C) or to the launcher alone (Kubernetes' PID 1): torchrun passes
    the signal on, both workers report a clean stop, the launcher exits 0 with one line."""
    proc = start(tmp_path, "clean")
    wait_ready(proc, tmp_path)
    os.killpg(proc.pid, sig) if target == "group" else proc.send_signal(sig)
    output = finish(proc)
    assert proc.returncode == 0, output[-3000:]
    assert (f"training.launch: got {sig.name}; all 2 training process(es) stopped cleanly with state/ saved at "
            "kimg 1.234: exit 0") in output
    assert "Traceback" not in output


def test_a_process_that_did_not_report_makes_it_128_plus_the_signal(tmp_path):
    proc = start(tmp_path, "rank1-silent")
    wait_ready(proc, tmp_path)
    os.killpg(proc.pid, signal.SIGTERM)
    output = finish(proc)
    assert proc.returncode == 128 + signal.SIGTERM, output[-3000:]
    assert "training.launch: got SIGTERM; local process(es) 1 of 2 did not report a clean stop: exit 143" in output


@pytest.mark.e2e
def test_success_and_failure_are_torchruns_and_the_grace_period_is_90_s(tmp_path):
    done = start(tmp_path, "finish")
    output = finish(done)
    assert done.returncode == 0, output[-3000:]
    assert (tmp_path / "ready0").read_text() == str(DEFAULT_SHUTDOWN_TIMEOUT_SEC)
    for r in range(2):
        (tmp_path / f"ready{r}").unlink()
    failed = start(tmp_path, "fail", "--shutdown-timeout", "7")
    output = finish(failed)
    assert failed.returncode == 1
    assert "FAILED" in output and "exitcode  : 3" in output  # torchrun's summary block
    assert "training/launch.py" not in output  # no launcher traceback
    assert (tmp_path / "ready0").read_text() == ""  # --shutdown-timeout given: torchrun's option, not our env


def test_status_after_signal_reads_only_the_newest_attempt(tmp_path):
    def report(local_rank: int, restart: int) -> None:
        (tmp_path / f"local{local_rank}.json").write_text(json.dumps(
            {"local_rank": local_rank, "local_world_size": 2, "rank": local_rank, "restart": restart,
             "nimg": 64, "reason": "SIGTERM"}))

    assert status_after_signal(tmp_path, signal.SIGTERM)[0] == 143
    report(0, restart=1)
    report(1, restart=0)  # left by an earlier attempt: does not count
    status, line = status_after_signal(tmp_path, signal.SIGTERM)
    assert status == 143 and "local process(es) 1 of 2" in line
    report(1, restart=1)
    assert status_after_signal(tmp_path, signal.SIGINT) == (
        0, "training.launch: got SIGINT; all 2 training process(es) stopped cleanly with state/ saved at kimg 0.064: exit 0")


def test_the_resume_line_names_the_launcher_that_started_the_run():
    """A stopped run says how to resume it with the launcher it ran under (each is told apart by what
    it sets in the environment; Accelerate of several processes also sets torchrun's run id)."""
    base = {"PATH": "/usr/bin", "HOME": "/home/u"}
    tail = "training/train.py --resume runs/00003-x"
    assert resume_command("runs/00003-x", base) == f"resume with: python {tail}"
    torchrun = {**base, "TORCHELASTIC_RUN_ID": "none", "LOCAL_RANK": "0"}
    assert resume_command("runs/00003-x", torchrun) == f"resume with: torchrun [its options as before] {tail}"
    accelerate = {**torchrun, "ACCELERATE_MIXED_PRECISION": "no"}
    assert resume_command("runs/00003-x", accelerate) == f"resume with: accelerate launch [its options as before] {tail}"
    ours = {**torchrun, STOP_REPORTS_ENV: "/tmp/reports"}
    assert resume_command("runs/00003-x", ours) == f"resume with: python -m training.launch [its options as before] {tail}"
