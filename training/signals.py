"""Graceful stop on SIGTERM (preemption, ``scancel``, ``kill``) and SIGINT (Ctrl-C).

The first signal only raises a flag: the loop finishes the optimizer step it is in, all processes
agree to stop (the flag rides in the step's all-reduce), the main process writes ``state/`` and the
run exits cleanly. A second SIGINT restores Python's default and interrupts at once, for people who
really mean it. Handlers are installed for the duration of a ``with`` block and the previous ones are
restored on exit; outside the main thread (where Python allows no handlers) the block does nothing.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any


class StopRequest:
    """Context manager that turns SIGTERM / SIGINT into :attr:`requested`."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signal_name is not None

    def request(self, name: str = "request") -> None:
        """Ask for a stop without a signal (tests, callers embedding :func:`training.loop.fit`)."""
        if self.signal_name is None:
            self.signal_name = name

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.signal_name is not None and signum == signal.SIGINT:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt
        self.request(name)

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
