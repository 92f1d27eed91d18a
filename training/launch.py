"""``python -m training.launch``: ``torchrun`` whose exit status tells a clean stop from a failure.

Schedulers end a job with a signal (SLURM's ``scancel`` and ``--signal``, Kubernetes, Ctrl-C). The
training processes answer it cleanly: they finish the step, write ``state/`` and exit 0. Their
launcher does not say so. ``torchrun`` raises ``SignalException`` and exits 1, ``accelerate launch``
exits 128 + the signal, and for one process Accelerate (1.16) also kills its child 5 s after the
signal, whether or not ``state/`` is written. A job script then cannot tell a preempted run that
saved everything from one that crashed.

This module runs torchrun itself, in this process, with the same arguments (``--nproc-per-node``,
``--nnodes``, ``--rdzv-*``, ``--max-restarts`` …). torchrun passes the signal on and waits for its
workers as usual. Each training process that stopped cleanly leaves a small report in a folder
named by :data:`STOP_REPORTS_ENV`. After a signal, the launcher exits 0 only if every process of
this machine reported; otherwise it exits 128 + the signal, as Accelerate does, and names the
processes that did not report. Anything else (success, a failed worker, restarts) is torchrun's own.

Two defaults differ from torchrun's:
- The grace period before torchrun SIGKILLs its workers after a signal is 90 s (torchrun: 30 s),
  so a large ``state/`` on slow shared storage can still be written within SLURM's usual
  ``--signal=TERM@120``. ``--shutdown-timeout`` or ``TORCH_ELASTIC_SHUTDOWN_TIMEOUT`` override it.
- A failed worker is reported in torchrun's summary block, without the launcher's own traceback.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import Mapping, Sequence

STOP_REPORTS_ENV = "STYLEGAN_STOP_REPORTS"
SHUTDOWN_TIMEOUT_ENV = "TORCH_ELASTIC_SHUTDOWN_TIMEOUT"
DEFAULT_SHUTDOWN_TIMEOUT_SEC = 90


def resume_command(run_dir: str | os.PathLike, env: Mapping[str, str] = os.environ) -> str:
    """The line a stopped run prints: how to resume it, under the launcher that started it (told
    apart by the environment each sets: ``accelerate launch`` always sets ACCELERATE_MIXED_PRECISION,
    and of several processes runs torchrun inside, so it is checked before torchrun's run id). The launcher's own options (process
    count, rendezvous) are not visible from here, so for a launcher the line asks for them again."""
    if env.get(STOP_REPORTS_ENV):
        launcher = "python -m training.launch"
    elif "ACCELERATE_MIXED_PRECISION" in env:
        launcher = "accelerate launch"
    elif env.get("TORCHELASTIC_RUN_ID"):
        launcher = "torchrun"
    else:
        return f"resume with: python training/train.py --resume {run_dir}"
    return f"resume with: {launcher} [its options as before] training/train.py --resume {run_dir}"


def report_clean_stop(nimg: int, reason: str) -> None:
    """Worker side: record that this process stopped cleanly (``state/`` written, about to exit 0).
    Does nothing unless started by this launcher."""
    folder = os.environ.get(STOP_REPORTS_ENV)
    if not folder:
        return
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    report = {
        "local_rank": local_rank,
        "local_world_size": int(os.environ.get("LOCAL_WORLD_SIZE", "1")),
        "rank": int(os.environ.get("RANK", "0")),
        "restart": int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")),
        "nimg": nimg,
        "reason": reason,
    }
    path = Path(folder) / f"local{local_rank}.json"
    try:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(report))
        os.replace(tmp, path)
    except OSError as err:  # the launcher then reports this process as not stopped cleanly
        print(f"warning: cannot write the stop report {path}: {err.strerror}", file=sys.stderr)


def read_reports(folder: Path) -> list[dict]:
    """The reports of the newest restart attempt in ``folder``."""
    reports = []
    for path in sorted(folder.glob("local*.json")):
        try:
            reports.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    if not reports:
        return []
    newest = max(r["restart"] for r in reports)
    return [r for r in reports if r["restart"] == newest]


def status_after_signal(folder: Path, sig: signal.Signals) -> tuple[int, str]:
    """Exit status and one line after the launcher got ``sig``: 0 when every local process said it
    stopped cleanly, else 128 + the signal."""
    reports = read_reports(folder)
    failed = 128 + int(sig)
    if not reports:
        return failed, (f"training.launch: got {sig.name}; no training process reported a clean stop "
                        f"(killed, crashed, or not started yet): exit {failed}")
    expected = reports[0]["local_world_size"]
    missing = sorted(set(range(expected)) - {r["local_rank"] for r in reports})
    if missing:
        return failed, (f"training.launch: got {sig.name}; local process(es) {', '.join(map(str, missing))} "
                        f"of {expected} did not report a clean stop: exit {failed}")
    kimg = max(r["nimg"] for r in reports) / 1000
    return 0, (f"training.launch: got {sig.name}; all {expected} training process(es) stopped cleanly with "
               f"state/ saved at kimg {kimg:.3f}: exit 0")


def _gives_shutdown_timeout(argv: Sequence[str]) -> bool:
    return any(a.split("=")[0] in ("--shutdown-timeout", "--shutdown_timeout") for a in argv)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not _gives_shutdown_timeout(argv) and SHUTDOWN_TIMEOUT_ENV not in os.environ:
        os.environ[SHUTDOWN_TIMEOUT_ENV] = str(DEFAULT_SHUTDOWN_TIMEOUT_SEC)
    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    with tempfile.TemporaryDirectory(prefix="stylegan-stop-reports-") as folder:
        os.environ[STOP_REPORTS_ENV] = folder
        try:
            torchrun.main(argv)
        except SignalException as stop:
            status, line = status_after_signal(Path(folder), signal.Signals(stop.sigval))
            print(line, file=sys.stderr, flush=True)
            return status
        except ChildFailedError as failure:
            print(failure, file=sys.stderr, flush=True)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
