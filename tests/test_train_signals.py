"""Signals as schedulers send them, timed state saves, crash lines and elastic restarts (CPU).

SLURM's ``scancel``, Kubernetes and a terminal's Ctrl-C signal the whole process group, data-loader
workers included; ``torchrun`` passes a signal on to each worker's group. These tests send signals
that way (``os.killpg``) to runs started in their own session, as ``setsid`` would.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import stylegan
from train_fixtures import make_dataset
from training import loss as L
from training.checkpoint import load_state
from training.data import open_stream
from training.runlog import crash_line, unstamped
from training.signals import STOP_SIGNALS
from training.train import main

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def data8(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data8"), resolution=8, num_images=64, num_classes=4)


def train_args(data: Path, out: Path, *extra: str) -> list[str]:
    return [str(REPO / "training" / "train.py"), "--preset", "tiny", "--data", str(data), "--outdir", str(out),
            "--batch", "8", "--threads", "1", "--r1-interval", "4", "--pl-interval", "3", "--pl-weight", "2", "--mixing", "0.9", *extra]


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def wait_for(condition, proc: subprocess.Popen, timeout: float = 240, what: str = "") -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return
        if proc.poll() is not None:
            raise AssertionError(f"the run ended (rc {proc.returncode}) before {what}:\n{proc.communicate()[0][-4000:]}")
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # every run here starts a session of its own
    raise AssertionError(f"timed out waiting for {what}:\n{proc.communicate()[0][-4000:]}")


def finish(proc: subprocess.Popen, timeout: float) -> str:
    """The output of a run started in a session of its own; past ``timeout`` its whole process group
    is killed (no launcher or worker is left behind to disturb later tests) and the test fails with
    the output's tail, which says where it hung."""
    try:
        return proc.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output = proc.communicate()[0]
        raise AssertionError(f"no exit within {timeout:g} s; the output ends:\n{output[-6000:]}") from None


def stats_lines(out: Path) -> int:
    found = list(out.glob("*/stats.jsonl"))
    return len(found[0].read_text().splitlines()) if found else 0


def read_stats(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]


def log_lines(run: Path) -> list[str]:
    """The messages of log.txt; each line must carry its time stamp."""
    lines = (run / "log.txt").read_text().splitlines()
    assert all(unstamped(line) != line for line in lines), [line for line in lines if unstamped(line) == line][:3]
    return [unstamped(line) for line in lines]


# ---------------------------------------------------------------------------------------- workers
def test_loader_workers_ignore_stop_signals(data8):
    """A SIGTERM or SIGINT that reaches a loader worker (a group signal) leaves it working; before,
    PyTorch's worker died of SIGTERM and the main process raised 'DataLoader worker ... killed'."""
    _, batches = open_stream(str(data8), rank=0, world_size=1, seed=0, batch_size=4, workers=2)
    next(batches)
    workers = batches._batches._workers  # the DataLoader iterator's worker processes
    assert len(workers) == 2
    for w, sig in zip(workers, STOP_SIGNALS):  # sent by another process, as a group signal is
        subprocess.run(["kill", f"-{signal.Signals(sig).name[3:]}", str(w.pid)], check=True)
    time.sleep(0.5)
    for _ in range(6):
        images, _ = next(batches)
        assert images.shape == (4, 1, 8, 8)
    assert all(w.is_alive() for w in workers)


def test_a_loader_worker_still_ends_on_its_parents_terminate(data8):
    """multiprocessing's exit handler and PyTorch's shutdown end workers with terminate() (SIGTERM
    from the parent): that must still work, or Python's exit hangs on a live loader."""
    _, batches = open_stream(str(data8), rank=0, world_size=1, seed=0, batch_size=4, workers=2)
    next(batches)
    workers = batches._batches._workers
    t0 = time.monotonic()
    for w in workers:
        w.terminate()
    for w in workers:
        w.join(timeout=10)
    assert not any(w.is_alive() for w in workers) and time.monotonic() - t0 < 10


def test_a_script_that_leaves_a_loader_open_exits(data8):
    """The docs' open_stream snippet: one batch, then the script ends without closing the loader."""
    code = (f"from training.data import open_stream\n_, b = open_stream({str(data8)!r}, rank=0, world_size=1, seed=0, "
            "batch_size=4, workers=2)\nnext(b)\nprint('ok')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=str(Path(__file__).resolve().parents[1]))
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr


# ---------------------------------------------------------------------------------------- one process
def _catches(pid: int, sig: signal.Signals) -> bool:
    """Whether process ``pid`` has a handler for ``sig`` (its SigCgt mask in /proc)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    mask = int(next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:")), 16)
    return bool(mask >> (sig - 1) & 1)


@pytest.mark.e2e
@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads the handler mask from /proc")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_start_up_stops_cleanly(data8, tmp_path, sig):
    """A signal while train.py is still importing torch (seconds on a busy node): before, the default
    action killed it (rc -15); now the run stops at its first step, writes state/ and exits 0."""
    out = tmp_path / "runs"
    proc = subprocess.Popen([sys.executable, *train_args(data8, out, "--kimg", "20", "--workers", "0")],
                            cwd=REPO, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    deadline = time.time() + 60
    # SIGTERM's handler: Python itself handles SIGINT from its first moments, our SIGTERM handler
    # comes with the early one for both.
    while not _catches(proc.pid, signal.SIGTERM) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.005)
    # The early handler is in place; torch (seconds to import) is not yet: the run has not started.
    assert not out.exists() or not any(out.iterdir())
    os.kill(proc.pid, sig)
    output = finish(proc, 180)
    assert proc.returncode == 0, output[-4000:]
    (run,) = out.iterdir()
    stopped = [line for line in log_lines(run) if line.startswith("stopped by")]
    assert stopped == [f"stopped by {sig.name} (during start-up) at kimg 0.000; state saved in {run / 'state'}"]
    assert load_state(run / "state").progress["nimg"] == 0


@pytest.mark.e2e
def test_group_sigterm_saves_under_a_stop_name_and_exits_0(data8, tmp_path):
    """A SIGTERM to the process group, loader workers included: the step ends, state/ is written,
    one line says so, exit 0; the stop's snapshot and grid do not overwrite the regular ones."""
    out = tmp_path / "runs"
    # Snapshots every kimg (ticks of 0.5 kimg, snap 2): names without a fraction, as in long runs.
    args = train_args(data8, out, "--tick", "0.5", "--snap", "2")
    first = CliRunner().invoke(main, [*args[1:], "--kimg", "0.016", "--workers", "0"])
    assert first.exit_code == 0, first.output
    (run,) = out.iterdir()
    regular = run / "network-snapshot-000000.safetensors"
    before = regular.read_bytes()
    proc = subprocess.Popen([sys.executable, *args, "--resume", "auto", "--kimg", "20", "--workers", "2"],
                            cwd=REPO, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    wait_for(lambda: "resumed from" in (run / "log.txt").read_text(), proc, what="the resume")
    time.sleep(2)  # some steps: the signal comes in the middle of one
    os.killpg(proc.pid, signal.SIGTERM)
    output = finish(proc, 120)
    assert proc.returncode == 0, output[-4000:]
    assert "DataLoader worker" not in output
    stopped = [line for line in log_lines(run) if line.startswith("stopped by")]
    assert len(stopped) == 1 and stopped[0].startswith("stopped by SIGTERM at kimg")
    nimg = load_state(run / "state").progress["nimg"]
    assert nimg > 16
    label = f"{nimg // 1000:06d}.{nimg % 1000:03d}-stop"
    assert regular.read_bytes() == before  # the regular snapshot is untouched
    stop_net = run / f"network-snapshot-{label}.safetensors"
    assert stylegan.read_network_info(stop_net).metadata["kimg"] == pytest.approx(nimg / 1000)
    assert {"fakes000000.png", f"fakes{label}.png"} <= {p.name for p in (run / "samples").iterdir()}
    # Tools take the stop's snapshot like any other.
    assert set(stylegan.load_network(stop_net)) == {"G", "D", "G_ema"}


@pytest.mark.e2e
def test_group_sigint_saves_and_exits_0(data8, tmp_path):
    out = tmp_path / "runs"
    proc = subprocess.Popen([sys.executable, *train_args(data8, out, "--kimg", "20", "--tick", "0.016",
                                                          "--snap", "1000", "--workers", "1")],
                            cwd=REPO, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    wait_for(lambda: stats_lines(out) >= 2, proc, what="two ticks")
    os.killpg(proc.pid, signal.SIGINT)
    output = finish(proc, 120)
    assert proc.returncode == 0, output[-4000:]
    (run,) = out.iterdir()
    assert any(line.startswith("stopped by SIGINT") for line in log_lines(run))
    assert f"resume with: python training/train.py --resume {run}" in log_lines(run)
    assert load_state(run / "state").progress["nimg"] >= 16


# ---------------------------------------------------------------------------------------- crashes
@pytest.mark.parametrize("error", [RuntimeError("boom in the loss\nsecond line"),
                                   torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB\ndetails")])
def test_a_crash_writes_one_line_with_the_cause(data8, tmp_path, monkeypatch, error):
    def broken(*args, **kwargs):
        raise error

    monkeypatch.setattr(L, "g_main_loss", broken)
    out = tmp_path / "runs"
    result = CliRunner().invoke(main, train_args(data8, out, "--kimg", "1", "--workers", "0")[1:])
    assert result.exit_code == 1 and result.exception is error
    (run,) = out.iterdir()
    last = log_lines(run)[-1]
    first = str(error).splitlines()[0]
    assert last == f"error: {type(error).__name__}: {first}; state/ is as last saved"


def test_crash_line_names_the_process_and_stays_one_short_line():
    assert crash_line(ValueError("x" * 1000), rank=1).startswith("error (process 1): ValueError: xxx")
    assert len(crash_line(ValueError("x" * 1000))) < 400 and "\n" not in crash_line(ValueError("a\nb"))
    assert crash_line(MemoryError()) == "error: MemoryError; state/ is as last saved"
    assert crash_line(KeyboardInterrupt()).startswith("interrupted: a second Ctrl-C")


# ---------------------------------------------------------------------------------------- --state-every
def test_state_every_writes_state_between_snapshots(data8, tmp_path):
    out = tmp_path / "runs"
    # 0.001 min: a state after nearly every step; snapshots only at the end.
    result = CliRunner().invoke(main, train_args(data8, out, "--kimg", "0.048", "--tick", "0.016", "--snap", "1000",
                                                 "--workers", "0", "--state-every", "0.001")[1:])
    assert result.exit_code == 0, result.output
    (run,) = out.iterdir()
    timed = [line for line in log_lines(run) if line.startswith("state saved at kimg")]
    assert len(timed) >= 2 and "(--state-every 0.001 min)" in timed[0]
    stats = read_stats(run)
    assert stats[0]["state_age_sec"] is None or stats[0]["state_age_sec"] < 60
    assert stats[-1]["state_age_sec"] is not None
    ticks = [line for line in log_lines(run) if line.startswith("tick")]
    ages = [re.search(r"  state (.*?)  elapsed ", line).group(1) for line in ticks]
    assert all(a.endswith(" ago") or a == "none yet" for a in ages) and ages[-1].endswith(" ago")


def test_state_every_is_checked(data8, tmp_path):
    result = CliRunner().invoke(main, train_args(data8, tmp_path, "--state-every", "-1")[1:])
    assert result.exit_code == 2 and "--state-every" in result.output and "-1" in result.output


# ---------------------------------------------------------------------------------------- two processes
@pytest.mark.e2e
def test_two_processes_group_sigterm_then_resume_on_one(data8, tmp_path):
    """Two training processes (and their loader workers) in one process group, as srun starts them,
    all get SIGTERM: both finish the step, agree, state/ is written once, and both exit 0. The run then
    continues on one process (not bit-identically, as documented)."""
    out = tmp_path / "runs"
    launcher = REPO / "tests" / "group_launcher.py"
    args = train_args(data8, out, "--kimg", "20", "--tick", "0.016", "--snap", "1000", "--workers", "1",
                      "--state-every", "0.05")
    proc = subprocess.Popen([sys.executable, str(launcher), "2", *args], cwd=REPO, env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    # A timed state (every 3 s, decided by rank 0 and shared in the step's all-reduce), then the signal.
    wait_for(lambda: any("state saved at kimg" in l for r in out.glob("*") for l in log_lines(r))
             if list(out.glob("*/log.txt")) else False, proc, what="a timed state save")
    os.killpg(proc.pid, signal.SIGTERM)
    output = finish(proc, 180)
    codes = json.loads(output.strip().splitlines()[-1])
    assert proc.returncode == 0 and codes == [0, 0], output[-6000:]
    (run,) = out.iterdir()
    lines = log_lines(run)
    assert sum(line.startswith("stopped by SIGTERM") for line in lines) == 1
    stopped = load_state(run / "state").progress
    assert stopped["world_size"] == 2
    assert all(r["processes"] == 2 and "state_age_sec" in r for r in read_stats(run))

    end = f"{(stopped['nimg'] + 16) / 1000:.3f}"
    one = subprocess.run([sys.executable, *train_args(data8, out, "--resume", "auto", "--kimg", end)],
                         cwd=REPO, env=env(), capture_output=True, text=True, timeout=180)
    assert one.returncode == 0, one.stdout[-3000:] + one.stderr[-3000:]
    assert [p.name for p in out.iterdir()] == [run.name]
    text = (run / "log.txt").read_text()
    assert "saved by 2 processes and this run has 1" in text
    stats = read_stats(run)
    kimgs = [s["kimg"] for s in stats]
    assert kimgs == sorted(kimgs) and len(kimgs) == len(set(kimgs)) and stats[-1]["processes"] == 1
    assert load_state(run / "state").progress["nimg"] == stopped["nimg"] + 16


@pytest.mark.e2e
def test_training_launch_exits_0_after_a_ctrl_c_to_two_processes(data8, tmp_path):
    """``python -m training.launch`` (torchrun in-process) on two processes, a group SIGINT as a
    terminal's Ctrl-C sends it: each worker gets it twice (the terminal's, then torchrun's copy), which
    must not abort the stop; state/ is written once and the launcher, not only the workers, exits 0
    (torchrun itself exits 1 here)."""
    out = tmp_path / "runs"
    args = train_args(data8, out, "--kimg", "20", "--tick", "0.016", "--snap", "1000", "--workers", "1")
    proc = subprocess.Popen([sys.executable, "-m", "training.launch", "--nproc-per-node", "2", *args], cwd=REPO,
                            env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    wait_for(lambda: stats_lines(out) >= 2, proc, what="two ticks")
    os.killpg(proc.pid, signal.SIGINT)
    output = finish(proc, 180)
    assert proc.returncode == 0, output[-6000:]
    assert "all 2 training process(es) stopped cleanly with state/ saved at kimg" in output
    assert "KeyboardInterrupt" not in output
    (run,) = out.iterdir()
    assert sum(line.startswith("stopped by SIGINT") for line in log_lines(run)) == 1
    assert f"resume with: python -m training.launch [its options as before] training/train.py --resume {run}" in log_lines(run)
    assert load_state(run / "state").progress["world_size"] == 2


# ---------------------------------------------------------------------------------------- elastic
def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="finds torchrun's workers through /proc")
@pytest.mark.slow  # its restart hung under load until the group joined through a per-attempt store prefix (docs/reliability.md)
@pytest.mark.parametrize("launcher", ["torchrun", "accelerate", "training.launch"])
def test_torchrun_elastic_restart_after_a_rank_is_killed(data8, tmp_path, launcher):
    """torchrun --max-restarts with c10d rendezvous (and Accelerate's --max_restarts, which runs the
    same agent, and ``python -m training.launch``, which is torchrun): SIGKILL one of two ranks mid-run; the group restarts, --resume auto continues from
    the last state/ (kimg never goes back), the run finishes."""
    out = tmp_path / "runs"
    if launcher != "accelerate":
        start = [str(BIN / "torchrun")] if launcher == "torchrun" else [sys.executable, "-m", "training.launch"]
        head = [*start, "--nnodes", "1:2", "--nproc-per-node", "2", "--max-restarts", "3",
                "--rdzv-backend", "c10d", "--rdzv-endpoint", "localhost:0", "--rdzv-id", "elastic-test",
                "--rdzv-conf", "last_call_timeout=1"]  # do not wait 30 s for a second node that will not come
    else:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        head = [str(BIN / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                "--mixed_precision", "no", "--dynamo_backend", "no", "--max_restarts", "3", "--rdzv_backend", "c10d",
                "--main_process_port", str(port)]
    cmd = [*head, *train_args(data8, out, "--resume", "auto", "--kimg", "0.4", "--tick", "0.016", "--snap", "10",
                              "--workers", "1", "--state-every", "0.02")]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    progress = lambda: next(out.glob("*/state/progress.json"), None)  # noqa: E731
    wait_for(lambda: progress() is not None and stats_lines(out) >= 6, proc, what="a state and six ticks")
    saved = json.loads(progress().read_text())["nimg"]
    ranks = _children(proc.pid)
    assert len(ranks) == 2, ranks
    os.kill(ranks[1], signal.SIGKILL)
    output = finish(proc, 400)
    assert proc.returncode == 0, output[-6000:]
    (run,) = out.iterdir()
    text = (run / "log.txt").read_text()
    # The surviving rank wrote why it stopped (rank 0 as 'error: ...', rank 1 as 'error (process 1): ...').
    assert any(line.startswith("error") and "RuntimeError" in line for line in log_lines(run)), text[-3000:]
    resumed = [line for line in log_lines(run) if line.startswith("resumed from")]
    assert len(resumed) == 1, output[-4000:]
    resumed_nimg = round(float(resumed[0].split(" at kimg ")[1].split()[0]) * 1000)
    assert resumed_nimg >= saved  # nothing lost before the last state
    stats = read_stats(run)
    kimgs = [s["kimg"] for s in stats]
    assert kimgs == sorted(kimgs) and len(kimgs) == len(set(kimgs)) and kimgs[-1] == pytest.approx(0.4)
    assert load_state(run / "state").progress["nimg"] == 400
    for snap in run.glob("network-snapshot-*.safetensors"):
        nets = stylegan.load_network(snap)
        assert all(torch.isfinite(p).all() for p in nets["G_ema"].parameters()), snap.name


# ---------------------------------------------------------------------------------------- chaos
KILLS = (("SIGTERM", "process"), ("SIGTERM", "group"), ("SIGKILL", "process"), ("SIGINT", "group"))


@pytest.mark.slow
def test_chaos_ten_kills_at_random_moments_end_bit_identical(data8, tmp_path):
    """Ten kills at random moments (start-up, steps, state writes): SIGTERM to the process or to its
    group, SIGKILL, a group SIGINT; each time the same command resumes with --resume auto. The end
    state equals that of an uninterrupted run bit for bit. Prints the figures docs/reliability.md quotes."""
    from test_train_loop import assert_same_state

    rng = random.Random(14)
    args = ["--kimg", "2", "--tick", "0.016", "--snap", "8", "--workers", "1", "--state-every", "0.01"]
    out = tmp_path / "runs"
    cmd = [sys.executable, *train_args(data8, out, *args, "--resume", "auto")]
    tried, outcomes = 0, []
    while tried < 10:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            proc.wait(timeout=rng.uniform(2.0, 12.0))
            break  # finished before this kill: the run is complete
        except subprocess.TimeoutExpired:
            pass
        name, target = KILLS[rng.randrange(len(KILLS))]
        sig = getattr(signal, name)
        os.killpg(proc.pid, sig) if target == "group" else proc.send_signal(sig)
        outcomes.append((name, target, proc.wait(timeout=120)))
        tried += 1
    final = subprocess.run(cmd, cwd=REPO, env=env(), capture_output=True, text=True, timeout=600)
    assert final.returncode == 0, final.stdout[-3000:] + final.stderr[-3000:]
    ref_out = tmp_path / "ref"
    ref = subprocess.run([sys.executable, *train_args(data8, ref_out, *args)], cwd=REPO, env=env(),
                         capture_output=True, text=True, timeout=600)
    assert ref.returncode == 0, ref.stdout[-3000:] + ref.stderr[-3000:]

    runs = [r for r in out.iterdir() if (r / "state").is_dir()]
    assert len(runs) == 1, [p.name for p in out.iterdir()]  # a kill before the first state may leave a stub
    (run,) = runs
    assert_same_state(next(ref_out.iterdir()) / "state", run / "state")
    kimgs = [s["kimg"] for s in read_stats(run)]
    assert kimgs == sorted(kimgs) and len(kimgs) == len(set(kimgs)) and kimgs[-1] == pytest.approx(2.0)
    assert tried == 10, f"the run finished after {tried} kills; make it longer"
    clean = sum(rc == 0 for *_, rc in outcomes)
    resumes = (run / "log.txt").read_text().count("resumed from")
    print(f"\nchaos: {tried} kills tried, {tried} survived (end state bit-identical); {clean} ended in a clean stop "
          f"(exit 0), {resumes} resumes; kills: {outcomes}")


def test_stop_labels_are_exact_and_marked():
    from training.config import TrainConfig
    from training.run_outputs import kimg_label, snapshot_path

    coarse, fine = TrainConfig(tick=4, snap=50), TrainConfig(tick=0.016, snap=2)
    assert kimg_label(1280, coarse, stop=True) == kimg_label(1280, fine, stop=True) == "000001.280-stop"
    assert kimg_label(1280, coarse) == "000001"  # the regular name it must not replace
    assert snapshot_path(Path("run"), 200_032, coarse, stop=True).name == "network-snapshot-000200.032-stop.safetensors"
