"""CPU threads that follow the load: fast alone, no collapse beside other busy processes.

Why: torch's OpenMP threads spin while they wait for each other. Alone, that is what makes a
2-core step fast; beside another busy process, the thread that shares its core with that process
is descheduled, and its partner spins until it comes back, so a whole step runs at the pace of the
slowest core. On the 2-core development VM (bench/contention.py, docs/benchmarks.md) the demo
step ran at 79 img/s alone with 2 threads, 8 img/s with 2 threads beside one busy process, and
46 img/s with 1 thread beside it. ``OMP_WAIT_POLICY=PASSIVE`` avoids the collapse but costs a
third of the alone speed (54 img/s), and it can only be set before torch starts. So instead of a
wait policy we choose the thread count: as many threads as there are cores that other processes
leave free, measured from ``/proc/stat`` over the cores this process may run on, and measured
again every few seconds so that a run adapts when another job starts or ends.

A changed thread count changes float rounding (a GEMM split differently sums in another order),
so a run whose thread count moved is not bit-identical to one whose count did not; ``--threads N``
fixes the count for runs that must be reproducible to the bit.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

# Seconds between two load measurements while training; a change of thread count needs two
# measurements in a row that agree (so a short burst of other work does not flip it).
WINDOW_SEC = 3.0
# Cores of other work that count as "busy": below this, noise (a shell, a daemon, the data loader).
SHARED_AT = 0.5


def usable_cores() -> list[int]:
    """The CPUs this process may run on (its affinity: a cpuset, SLURM's binding, ``taskset``)."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def local_share() -> int:
    """This process's share of its cores: the cores divided among the processes that torchrun or
    ``accelerate launch`` started on this machine (``LOCAL_WORLD_SIZE``), at least 1."""
    return max(1, len(usable_cores()) // max(int(os.environ.get("LOCAL_WORLD_SIZE", "1")), 1))


def _busy_and_total_ticks(cores: list[int], stat: Path) -> tuple[int, int] | None:
    """Busy and total clock ticks of ``cores`` since boot from ``/proc/stat`` (None without it)."""
    try:
        lines = stat.read_text().splitlines()
    except OSError:
        return None
    wanted = {f"cpu{i}" for i in cores}
    busy = total = 0
    found = 0
    for line in lines:
        parts = line.split()
        if not parts or parts[0] not in wanted:
            continue
        # user nice system idle iowait irq softirq steal [guest guest_nice: already in user/nice]
        values = [int(v) for v in parts[1:9]]
        values += [0] * (8 - len(values))
        idle = values[3] + values[4]
        total += sum(values)
        busy += sum(values) - idle
        found += 1
    return (busy, total) if found else None


def _own_cpu_seconds() -> float:
    """CPU seconds this process has used (all its threads, not its child processes)."""
    t = os.times()
    return t.user + t.system


class LoadProbe:
    """How many of ``cores`` other processes kept busy between two calls of :meth:`others`."""

    def __init__(self, cores: list[int] | None = None, stat: Path = Path("/proc/stat"),
                 own_seconds: Callable[[], float] = _own_cpu_seconds) -> None:
        self.cores = cores if cores is not None else usable_cores()
        self.stat, self.own_seconds = stat, own_seconds
        self.hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self._last = self._read()

    def _read(self) -> tuple[float, tuple[int, int] | None, float]:
        return time.monotonic(), _busy_and_total_ticks(self.cores, self.stat), self.own_seconds()

    @property
    def available(self) -> bool:
        return self._last[1] is not None

    def others(self) -> float | None:
        """Cores that other processes used since the last call (None where /proc/stat is missing)."""
        now = self._read()
        (t0, ticks0, own0), (t1, ticks1, own1) = self._last, now
        self._last = now
        if ticks0 is None or ticks1 is None or ticks1[1] <= ticks0[1]:
            return None
        wall_cores = (ticks1[1] - ticks0[1]) / self.hz  # core-seconds that passed on these cores
        seconds = wall_cores / len(self.cores)
        busy = (ticks1[0] - ticks0[0]) / self.hz - (own1 - own0)
        return max(busy, 0.0) / max(seconds, 1e-9) if seconds > 0 else None


def threads_for(cores: int, others: float, limit: int) -> int:
    """Threads to run beside ``others`` busy cores: the free cores, rounded to the nearest whole
    core, at least 1 and at most ``limit`` (the process's share when several train on one machine)."""
    return max(1, min(limit, int(cores - others + 0.5)))


@dataclass
class ThreadChange:
    """What :class:`ThreadGovernor` did, for the log."""

    before: int
    after: int
    others: float
    cores: int

    def line(self) -> str:
        why = (f"other processes use {self.others:.1f} of this process's {self.cores} cores"
               if self.after < self.before else f"other processes now use {self.others:.1f} of {self.cores} cores")
        return (f"note: {why}: {self.after} CPU thread{'s' * (self.after != 1)} instead of {self.before} "
                "(--threads auto follows the load; --threads N fixes the count)")


class ThreadGovernor:
    """Keeps ``torch``'s intra-op thread count at the cores other work leaves free.

    ``fixed``: the user gave ``--threads N``: the count never moves, but the load is still measured
    so that a slow run can say why (:meth:`hint`). ``limit``: the most threads this process takes
    (the cores divided among the training processes of this machine).
    """

    def __init__(self, limit: int, fixed: bool = False, probe: LoadProbe | None = None,
                 window_sec: float = WINDOW_SEC) -> None:
        self.limit, self.fixed, self.window_sec = max(1, limit), fixed, window_sec
        self.probe = probe or LoadProbe()
        self.cores = len(self.probe.cores)
        self.others_now: float | None = None
        self._pending: int | None = None
        self._last_check = time.monotonic()

    def start(self, settle_sec: float = 0.3) -> int:
        """Measure the load for ``settle_sec`` (this process idle) and set the thread count."""
        if self.probe.available and settle_sec > 0:
            self.probe.others()
            time.sleep(settle_sec)
            self.others_now = self.probe.others()
        threads = self.limit if self.fixed or self.others_now is None else threads_for(self.cores, self.others_now, self.limit)
        torch.set_num_threads(threads)
        self._last_check = time.monotonic()
        self.probe.others()  # the next window starts now
        return threads

    def poll(self) -> ThreadChange | None:
        """Call between steps: every ``window_sec`` re-measure; change the count when two windows in
        a row ask for the same new count. Returns the change made, if any."""
        now = time.monotonic()
        if now - self._last_check < self.window_sec:
            return None
        self._last_check = now
        others = self.probe.others()
        if others is None:
            return None
        self.others_now = others
        if self.fixed:
            return None
        current = torch.get_num_threads()
        wanted = threads_for(self.cores, others, self.limit)
        if wanted == current:
            self._pending = None
            return None
        if self._pending != wanted:
            self._pending = wanted
            return None
        self._pending = None
        torch.set_num_threads(wanted)
        return ThreadChange(current, wanted, others, self.cores)

    def describe(self) -> str:
        """How the count was chosen, for the start-up log."""
        if self.fixed:
            return "fixed by --threads"
        if self.others_now is None:
            return "--threads auto; the load cannot be measured here (no /proc/stat)"
        return (f"--threads auto: other processes used {self.others_now:.1f} of {self.cores} cores at start-up; "
                "the count follows the load")

    @property
    def shared(self) -> bool:
        """Other processes kept at least half a core of this process's cores busy (last measurement)."""
        return self.others_now is not None and self.others_now >= SHARED_AT

    def hint(self) -> str | None:
        """A sentence for the tick line when the CPU is shared, else None."""
        if not self.shared:
            return None
        threads = torch.get_num_threads()
        text = f"CPU shared: other processes use {self.others_now:.1f} of {self.cores} cores, {threads} thread{'s' * (threads != 1)} here"
        if self.fixed and threads > threads_for(self.cores, self.others_now, self.limit):
            text += (f"; fixed --threads {threads} makes waiting threads spin: --threads auto (or "
                     f"{threads_for(self.cores, self.others_now, self.limit)}) should be several times faster")
        return text


def cpu_record(governor: ThreadGovernor | None) -> dict[str, object]:
    """The tick record's CPU fields: ``threads``, ``cpu_others`` (cores other processes used in the
    last window) and ``cpu_hint`` (why the run is slower than the machine allows, or None); empty
    for a run that does not manage its threads (a GPU run)."""
    if governor is None:
        return {}
    others = None if governor.others_now is None else round(governor.others_now, 2)
    return {"threads": torch.get_num_threads(), "cpu_others": others, "cpu_hint": governor.hint()}


def set_threads_for_load(limit: int | None = None, settle_sec: float = 0.2) -> int:
    """For one-shot tools (generate, metrics, tests): measure the load once and set the threads."""
    cores = len(usable_cores())
    return ThreadGovernor(limit or cores).start(settle_sec)
