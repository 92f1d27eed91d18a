"""What a run writes for people: the run folder, ``log.txt``, ``stats.jsonl`` and TensorBoard events.

Only the main process writes; the other processes get a :class:`RunLog` with ``enabled=False``,
whose methods do nothing, so the loop never branches on the rank to log. Messages go to the
console through ``tqdm.write`` (so they do not tear the progress bar) and to ``log.txt``.
``stats.jsonl`` gets one JSON object per tick; TensorBoard gets the same numbers as scalars and the
sample grids as images.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import sys
import time
import uuid
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from training.metrics.specs import is_result_key
from training.outputs import reason, writing

_RUN_ID = re.compile(r"^(\d{5})-")


def next_run_dir(outdir: Path, name: str) -> Path:
    """Create ``outdir/<NNNNN>-<name>`` with the next free number and return it."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    while True:
        ids = [int(m.group(1)) for p in outdir.iterdir() if (m := _RUN_ID.match(p.name))]
        run_dir = outdir / f"{max(ids, default=-1) + 1:05d}-{name}"
        try:
            run_dir.mkdir()
            return run_dir
        except FileExistsError:  # another launcher took this number first
            continue


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` through a temporary file and a rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with writing(path):
            tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n", encoding="utf-8")
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def trim_stats(path: Path, max_kimg: float) -> None:
    """Drop the ``stats.jsonl`` ticks past ``max_kimg`` (those after the state a run resumes from)."""
    path = Path(path)
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line).get("kimg", 0) <= max_kimg + 1e-9:
                kept.append(line)
        except json.JSONDecodeError:  # a line cut short by a crash
            continue
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with writing(path):
            tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


class RunLog:
    """Console + ``log.txt`` + ``stats.jsonl`` + TensorBoard for one run (main process only)."""

    def __init__(self, run_dir: Path | None, enabled: bool = True, tensorboard: bool = True) -> None:
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.enabled = enabled and run_dir is not None
        self._log_file = None
        self._writer = None
        if self.enabled:
            self._log_file = open(self.run_dir / "log.txt", "a", encoding="utf-8", buffering=1)
            if tensorboard:
                from torch.utils.tensorboard import SummaryWriter

                self._writer = SummaryWriter(log_dir=str(self.run_dir))

    def info(self, message: str) -> None:
        """Print ``message`` and append it to ``log.txt`` after the time it was written
        (:func:`stamped`: a log read the next morning says when each line happened)."""
        if not self.enabled:
            return
        from tqdm import tqdm

        tqdm.write(message)
        with writing(self.run_dir / "log.txt"):
            self._log_file.write(stamped(message) + "\n")

    def stats(self, record: dict[str, Any]) -> None:
        """Append one tick's numbers to ``stats.jsonl`` and to TensorBoard."""
        if not self.enabled:
            return
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
        with writing(self.run_dir / "stats.jsonl"), open(self.run_dir / "stats.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(clean, sort_keys=True) + "\n")
        if self._writer is not None:
            step = int(round(record.get("kimg", 0) * 1000))
            for key, value in record.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and value is not None:
                    self._writer.add_scalar(_tb_tag(key), value, global_step=step)
            self._writer.flush()

    def image(self, tag: str, image: np.ndarray, nimg: int) -> None:
        """Send a uint8 ``[H, W, C]`` image to TensorBoard."""
        if self.enabled and self._writer is not None:
            self._writer.add_image(tag, image, global_step=nimg, dataformats="HWC")
            self._writer.flush()

    def warning(self, text: str, rank: int = 0) -> None:
        """``warning: <text>`` on the console and in ``log.txt``, from any process: a data problem
        found by one process's stream (or its loader workers, whose warnings travel with the
        batches, training.data). Another process than the main one appends its line itself, naming
        it, as :meth:`crash` does. A full disk here is not raised: the next regular write says so at
        a point where every process stops together."""
        if self.run_dir is None:
            return
        if self.enabled:
            with contextlib.suppress(OSError):
                self.info(f"warning: {text}")
            return
        line = f"warning (process {rank}): {text}"
        print(line, file=sys.stderr, flush=True)
        with contextlib.suppress(OSError), open(self.run_dir / "log.txt", "a", encoding="utf-8") as f:
            f.write(stamped(line) + "\n")

    def crash(self, err: BaseException, rank: int = 0) -> None:
        """Record in ``log.txt`` the one line :func:`crash_line` makes of what ended the run. Every
        process records its own (the cause is often on one that does not log otherwise): a single
        short append, which the operating system does not interleave with the main process's lines."""
        if self.run_dir is None:
            return
        line = crash_line(err, rank)
        if self.enabled:
            self.info(line)
            return
        with contextlib.suppress(OSError), open(self.run_dir / "log.txt", "a", encoding="utf-8") as f:
            f.write(stamped(line) + "\n")

    def close(self) -> None:
        """Close TensorBoard and ``log.txt``. Runs on every exit, also after a full disk has stopped the
        run: a failing flush then warns instead of hiding the error that stopped it."""
        try:
            if self._writer is not None:
                self._writer.close()
            if self._log_file is not None:
                self._log_file.close()
        except OSError as err:
            warnings.warn(f"closing the logs of {self.run_dir}: {reason(err)}", stacklevel=2)
        finally:
            self._writer = self._log_file = None


def stamped(message: str) -> str:
    """``message`` as a ``log.txt`` line: local date and time, two spaces, the message."""
    return f"{time.strftime('%Y-%m-%d %H:%M:%S')}  {message}"


def unstamped(line: str) -> str:
    """The message of a ``log.txt`` line (:func:`stamped`); a line without the stamp as it is."""
    return _STAMP.sub("", line, count=1)


_STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d  ")


def crash_line(err: BaseException, rank: int = 0) -> str:
    """``error: RuntimeError: <first line of the message>`` (at most 300 characters), naming the
    process when it is not the main one: a run that ends in an exception or out of memory says why
    in ``log.txt``, not only on a console that may be gone."""
    who = f" (process {rank})" if rank else ""
    if isinstance(err, KeyboardInterrupt):
        return f"interrupted{who}: a second Ctrl-C (KeyboardInterrupt); state/ is as last saved"
    text = next((line.strip() for line in str(err).splitlines() if line.strip()), "")
    text = text if len(text) <= 300 else text[:297] + "..."
    return f"error{who}: {type(err).__name__}" + (f": {text}" if text else "") + "; state/ is as last saved"


def _tb_tag(key: str) -> str:
    """Group TensorBoard scalars: losses, regularisers, timing, metrics, progress."""
    if is_result_key(key):
        return f"Metrics/{key}"
    if key.startswith(("loss", "scores")):
        return f"Loss/{key}"
    if key.startswith(("r1", "pl")):
        return f"Reg/{key}"
    if key in ("sec_per_kimg", "img_per_sec", "data_wait", "sec", "peak_mem_gb"):
        return f"Timing/{key}"
    return f"Progress/{key}"
