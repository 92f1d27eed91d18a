"""A run's files when the disk says no, and what a killed run leaves behind.

Every file of a run (``state/``, snapshots, grids, ``stats.jsonl``, ``log.txt``, ``config.json``)
is written through a temporary name and renamed into place, so a kill never leaves a half-written
file under its real name. Two things remain to handle, and this module owns both:

* a write that fails (a full disk, a quota, a read-only ``--outdir``) raises :class:`OutputError`,
  whose message is one line naming the file and the operating system's reason (``No space left on
  device``) instead of a traceback chained through the serialiser. The file that was being
  replaced, and the previous ``state/``, are left as they were;
* the temporary names a kill leaves behind are removed by :func:`clean_leftovers` when the run
  folder is next started or resumed. Only names this project makes are touched, never a user's
  files.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from pathlib import Path
from typing import Iterator

# The temporary names our writers use: ``.<name>.<32 hex>.tmp`` (files, and the folder a network
# file is written in, see STYLE.md) and ``.state-tmp-<32 hex>`` (state folders, training.checkpoint).
_TMP_NAME = re.compile(r"^\..+\.[0-9a-f]{32}\.tmp$")
_STATE_TMP = re.compile(r"^\.state-tmp-[0-9a-f]{32}$")
_STATE_OLD = re.compile(r"^\.state-old-[0-9a-f]{32}$")


class OutputError(OSError):
    """A file of the run could not be written; ``str()`` is one line: the path and the reason."""

    def __init__(self, path: str | os.PathLike, reason: str, code: int | None = None) -> None:
        super().__init__(code or 0, reason, str(path))

    def __str__(self) -> str:
        return f"cannot write {self.filename}: {self.strerror}"


@contextlib.contextmanager
def writing(path: str | os.PathLike) -> Iterator[None]:
    """Turn an ``OSError`` raised while writing ``path`` into an :class:`OutputError` naming it."""
    try:
        yield
    except OutputError:
        raise
    except OSError as err:
        raise OutputError(path, reason(err), err.errno) from None


def reason(err: OSError) -> str:
    """The operating system's words for ``err`` (``No space left on device``)."""
    if err.errno:
        return os.strerror(err.errno)
    return err.strerror or str(err) or type(err).__name__


def clean_leftovers(run_dir: str | os.PathLike) -> list[str]:
    """Remove the temporary files and folders an interrupted run left in ``run_dir`` and its
    ``samples/``; returns their names. A moved-aside ``.state-old-*`` is kept unless ``state/`` is
    complete, since :func:`training.checkpoint.find_state` may need it."""
    run_dir = Path(run_dir)
    state_complete = (run_dir / "state" / "progress.json").is_file()
    removed = []
    for folder in (run_dir, run_dir / "samples"):
        if not folder.is_dir():
            continue
        for entry in sorted(folder.iterdir()):
            name = entry.name
            if entry.is_symlink():
                continue
            if entry.is_file() and _TMP_NAME.match(name):
                entry.unlink(missing_ok=True)
            elif entry.is_dir() and (
                _TMP_NAME.match(name)
                or (folder == run_dir and (_STATE_TMP.match(name) or (_STATE_OLD.match(name) and state_complete)))
            ):
                shutil.rmtree(entry, ignore_errors=True)
            else:
                continue
            removed.append(str(entry.relative_to(run_dir)))
    return removed

