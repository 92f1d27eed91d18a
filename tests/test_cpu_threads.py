"""The CPU thread count that follows the load (training/cpu_threads.py): the load arithmetic on
made-up /proc/stat snapshots, the governor's decisions, a real busy process being seen, and what
the tick line says when the CPU is shared."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from training.cpu_threads import LoadProbe, ThreadGovernor, cpu_record, threads_for
from training.run_outputs import expectation_line, format_tick


@pytest.fixture(autouse=True)
def keep_thread_count():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def write_stat(path: Path, per_cpu: dict[int, tuple[int, int]]) -> None:
    """A /proc/stat with ``cpuN`` lines: (busy ticks as 'user', idle ticks)."""
    lines = ["cpu  0 0 0 0 0 0 0 0 0 0"]
    lines += [f"cpu{i} {busy} 0 0 {idle} 0 0 0 0 0 0" for i, (busy, idle) in sorted(per_cpu.items())]
    path.write_text("\n".join(lines) + "\nintr 0\n")


def test_threads_for_takes_the_free_cores_rounded_within_limits():
    assert threads_for(2, 0.0, 2) == 2
    assert threads_for(2, 0.4, 2) == 2
    assert threads_for(2, 0.6, 2) == 1
    assert threads_for(2, 1.9, 2) == 1  # never 0
    assert threads_for(16, 1.0, 16) == 15
    assert threads_for(16, 1.0, 8) == 8  # the process's share of the machine


def test_probe_subtracts_this_processes_own_time_and_counts_only_its_cores(tmp_path):
    stat, own = tmp_path / "stat", [0.0]
    hz = os.sysconf("SC_CLK_TCK")
    write_stat(stat, {0: (0, 0), 1: (0, 0), 2: (0, 0)})
    probe = LoadProbe(cores=[0, 1], stat=stat, own_seconds=lambda: own[0])
    # 10 s pass on cores 0 and 1: 15 core-seconds busy, of which 6 were this process's own.
    write_stat(stat, {0: (10 * hz, 0), 1: (5 * hz, 5 * hz), 2: (10 * hz, 0)})
    own[0] = 6.0
    assert probe.others() == pytest.approx(0.9)  # (15 - 6) core-s over 10 s; cpu2 is not ours
    write_stat(stat, {0: (10 * hz, 10 * hz), 1: (5 * hz, 15 * hz), 2: (10 * hz, 0)})
    assert probe.others() == pytest.approx(0.0)


def test_probe_without_proc_stat_reports_nothing(tmp_path):
    probe = LoadProbe(cores=[0], stat=tmp_path / "missing")
    assert not probe.available and probe.others() is None


class FakeProbe:
    def __init__(self, loads: list[float], cores: int = 2) -> None:
        self.loads, self.cores, self.available = list(loads), list(range(cores)), True

    def others(self) -> float:
        return self.loads.pop(0) if len(self.loads) > 1 else self.loads[0]


def test_governor_starts_with_the_free_cores_and_changes_after_two_agreeing_windows():
    # start(): a discarded reading, then the start-up load; start() then opens the next window.
    probe = FakeProbe([0.0, 1.0, 0.0, 1.0, 0.1, 0.1, 0.1, 0.1])
    gov = ThreadGovernor(limit=2, probe=probe, window_sec=0.0)
    assert gov.start(settle_sec=0.001) == 1 and torch.get_num_threads() == 1
    assert gov.shared and "other processes use 1.0 of 2 cores, 1 thread here" in gov.hint()
    assert gov.poll() is None  # 1.0 -> still 1 thread
    assert gov.poll() is None  # 0.1: the first window that asks for 2
    change = gov.poll()        # the second: change
    assert change is not None and (change.before, change.after) == (1, 2) and torch.get_num_threads() == 2
    assert "2 CPU threads instead of 1" in change.line()
    assert gov.poll() is None and gov.hint() is None


def test_a_short_burst_does_not_flip_the_count():
    probe = FakeProbe([0.0, 0.0, 0.0, 1.2, 0.0, 1.2, 0.0, 0.0])
    gov = ThreadGovernor(limit=2, probe=probe, window_sec=0.0)
    assert gov.start(settle_sec=0.001) == 2
    for _ in range(5):
        assert gov.poll() is None
    assert torch.get_num_threads() == 2


def test_fixed_threads_never_move_but_say_why_the_run_is_slow():
    probe = FakeProbe([0.0, 1.0, 0.0, 1.0])
    gov = ThreadGovernor(limit=2, fixed=True, probe=probe, window_sec=0.0)
    assert gov.start(settle_sec=0.001) == 2
    assert gov.poll() is None and gov.poll() is None and torch.get_num_threads() == 2
    assert "fixed --threads 2 makes waiting threads spin: --threads auto (or 1)" in gov.hint()


def test_the_tick_line_and_the_expectation_say_the_cpu_is_shared():
    probe = FakeProbe([0.0, 1.1, 0.0])
    gov = ThreadGovernor(limit=2, probe=probe, window_sec=0.0)
    gov.start(settle_sec=0.001)
    record = {"tick": 1, "kimg": 1.0, "phase": "stable32", "alpha": 1.0, "sec_per_kimg": 40.0, "img_per_sec": 25.0,
              "data_wait": 0.0, "skipped": 0, "peak_mem_gb": 1.0, "elapsed_sec": 40.0, "eta_sec": 3000.0,
              **cpu_record(gov)}
    assert record["threads"] == 1 and record["cpu_others"] == pytest.approx(1.1)
    assert "(CPU shared: other processes use 1.1 of 2 cores, 1 thread here)" in format_tick(record)
    assert "this run is slower than the machine alone allows" in expectation_line(record, 80)
    assert cpu_record(None) == {}
    quiet = {**record, **cpu_record(ThreadGovernor(2, probe=FakeProbe([0.0]), window_sec=0.0))}
    assert "CPU shared" not in format_tick(quiet)


@pytest.mark.skipif(not Path("/proc/stat").is_file(), reason="needs /proc/stat")
def test_a_real_busy_process_is_seen():
    probe = LoadProbe()
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)  # its start-up
        probe.others()
        time.sleep(1.0)
        others = probe.others()
    finally:
        busy.kill()
        busy.wait()
    # One spinning process takes one core (less where it must share it with others' work).
    assert others is not None and others >= 0.7
