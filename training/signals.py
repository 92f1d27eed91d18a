"""Graceful stop on SIGTERM (preemption, ``scancel``, ``kill``) and SIGINT (Ctrl-C).

The first signal only raises a flag: the loop finishes the optimizer step it is in, all processes
agree to stop (the flag rides in the step's all-reduce), the main process writes ``state/`` and the
run exits cleanly. A second SIGINT, a second or more after the first, restores Python's default and
interrupts at once, for people who really mean it; one that comes sooner is the same Ctrl-C passed
on by a launcher (``torchrun`` sends each worker the signal it got, and the worker, in the terminal's
process group, already had it), and is dropped. Handlers are installed for the duration of a ``with`` block and the previous ones are
restored on exit; outside the main thread (where Python allows no handlers) the block does nothing.

Schedulers (SLURM's ``scancel``, Kubernetes, a terminal's Ctrl-C, ``torchrun`` passing a signal on)
signal the whole process group, data-loader workers included. PyTorch's workers die of SIGTERM, and
the main process then raises "DataLoader worker is killed by signal" from its SIGCHLD handler,
anywhere in the step. So only the training process decides: :func:`forking_loader_workers` blocks
the stop signals while workers are forked, and :func:`ignore_stop_signals` (their
``worker_init_fn``) ignores them before unblocking, so no signal reaches a worker in between.
Workers still end with the training process (PyTorch's shutdown, or its watchdog within 5 s).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from types import FrameType
from typing import Any, Iterator

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# A launcher's copy of a Ctrl-C arrives within milliseconds of the terminal's own; a person's second
# press comes later.
REPEAT_AFTER_SEC = 1.0


def _interrupt_if_meant(first_at: float | None, signum: int) -> None:
    """Raise KeyboardInterrupt for a SIGINT that repeats a stop signal seen at ``first_at``
    (``time.monotonic``) at least :data:`REPEAT_AFTER_SEC` earlier; anything else returns."""
    if signum == signal.SIGINT and first_at is not None and time.monotonic() - first_at >= REPEAT_AFTER_SEC:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        raise KeyboardInterrupt


class EarlySignals:
    """SIGTERM / SIGINT that arrive while the trainer is still starting (importing torch, reading the
    data's metadata, building networks: seconds on a busy node), before :class:`StopRequest` is in
    place. Installed first thing by ``training/train.py`` run as a script; they are handed on to the
    :class:`StopRequest`, so the run stops at its first step with ``state/`` written and exits 0,
    instead of dying of the default action. A second SIGINT interrupts at once (as above)."""

    def __init__(self) -> None:
        self.caught: list[str] = []
        self.first_at: float | None = None

    @classmethod
    def install(cls) -> "EarlySignals":
        early = cls()
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                signal.signal(sig, early._handle)
        return early

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        _interrupt_if_meant(self.first_at, signum)
        self.caught.append(signal.Signals(signum).name)
        if self.first_at is None:
            self.first_at = time.monotonic()


class StopRequest:
    """Context manager that turns SIGTERM / SIGINT into :attr:`requested`; ``early``: the signals
    that came before it (:class:`EarlySignals`) count as if they came now."""

    SIGNALS = STOP_SIGNALS

    def __init__(self, early: EarlySignals | None = None) -> None:
        self.signal_name: str | None = None
        self._first_at: float | None = None
        self._previous: dict[int, Any] = {}
        self._early = early

    @property
    def requested(self) -> bool:
        return self.signal_name is not None

    def request(self, name: str = "request") -> None:
        """Ask for a stop without a signal (tests, callers embedding :func:`training.loop.fit`)."""
        if self.signal_name is None:
            self.signal_name = name

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        _interrupt_if_meant(self._first_at, signum)
        if self._first_at is None:
            self._first_at = time.monotonic()
        self.request(signal.Signals(signum).name)

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        if self._early is not None and self._early.caught:
            self.request(f"{self._early.caught[0]} (during start-up)")
            self._first_at = self._early.first_at
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


@contextlib.contextmanager
def forking_loader_workers() -> Iterator[None]:
    """Block SIGTERM / SIGINT in this thread while data-loader workers are forked from it (they
    inherit the mask); a signal that comes meanwhile waits, and is handled here once unblocked."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def ignore_stop_signals(worker_id: int = 0) -> None:
    """``worker_init_fn`` of data-loader workers: the training process alone decides when to stop.

    SIGINT is ignored. SIGTERM stays blocked and a small thread takes each one with ``sigwaitinfo``:
    from the parent (PyTorch's and multiprocessing's ``terminate()`` when the loader shuts down or
    Python exits) the worker exits at once, as it would by default; from anyone else (a group signal
    of SLURM, Kubernetes or a shell) it is dropped. Ignoring SIGTERM outright would make Python's exit
    hang on a worker that ``terminate()`` can no longer end.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if not hasattr(signal, "sigwaitinfo"):  # not Linux: ignore both, as well as we can
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if hasattr(signal, "pthread_sigmask"):
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        return
    parent = os.getppid()
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # every later thread inherits the mask
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})

    def wait_for_parent_sigterm() -> None:
        while True:
            info = signal.sigwaitinfo({signal.SIGTERM})
            if info.si_pid == parent:
                os._exit(0)

    threading.Thread(target=wait_for_parent_sigterm, name="sigterm-from-parent", daemon=True).start()
