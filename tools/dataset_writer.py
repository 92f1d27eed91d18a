"""Output of tools/dataset_tool.py: WebDataset shards and dataset.json, committed atomically.

Everything is written into a hidden `.partial-<pid>-<id>` folder inside the destination. Only when
the conversion has finished are the shards moved into place and dataset.json written last, with
`os.replace`; dataset.json is what marks a dataset as complete (the reader needs it), so a run
killed at any moment leaves no dataset that looks complete. The tar members get fixed metadata so
that the same inputs and seed give byte-identical shards.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import tarfile
import uuid
from pathlib import Path

INFO_NAME = "dataset.json"
_PARTIAL = re.compile(r"^\.partial-(\d+)-[0-9a-f]+$")


class ShardWriter:
    """Append samples to `<folder>/<prefix>-%06d.tar`, starting a new shard every `shard_size`."""

    def __init__(self, folder: Path, prefix: str, shard_size: int, key_digits: int = 8):
        self.folder, self.prefix, self.shard_size, self.key_digits = folder, prefix, shard_size, key_digits
        self.shards: list[dict] = []  # {"name", "count"}, in order
        self.num_written = 0
        self.bytes_written = 0
        self._tar: tarfile.TarFile | None = None

    def add(self, png: bytes, label: int | None) -> None:
        if self._tar is None or self.shards[-1]["count"] == self.shard_size:
            self._start_shard()
        key = f"{self.num_written:0{self.key_digits}d}"
        self._member(f"{key}.png", png)
        if label is not None:
            self._member(f"{key}.cls", str(label).encode())
        self.shards[-1]["count"] += 1
        self.num_written += 1

    def _start_shard(self) -> None:
        self.close()
        name = f"{self.prefix}-{len(self.shards):06d}.tar"
        self._tar = tarfile.open(self.folder / name, "w", format=tarfile.USTAR_FORMAT)
        self.shards.append({"name": name, "count": 0})

    def _member(self, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = len(data), 0o644, 0
        self._tar.addfile(info, io.BytesIO(data))

    def close(self) -> None:
        if self._tar is not None:
            self._tar.close()
            self.bytes_written += (self.folder / self.shards[-1]["name"]).stat().st_size
            self._tar = None


def shard_files(dest: Path, prefix: str) -> list[Path]:
    """Files in dest that look like shards of `prefix` (whether or not a dataset.json lists them)."""
    pattern = re.compile(rf"^{re.escape(prefix)}-\d{{6,}}\.tar$")
    return sorted(p for p in dest.iterdir() if pattern.match(p.name)) if dest.is_dir() else []


def check_dest(dest: Path, prefix: str, overwrite: bool) -> str | None:
    """None when dest may be written; otherwise why not (the CLI adds the option names)."""
    if dest.exists() and not dest.is_dir():
        return f"{dest} exists and is not a folder"
    if overwrite:
        return None
    if (dest / INFO_NAME).exists():
        return f"{dest} already holds a dataset ({INFO_NAME})"
    stray = shard_files(dest, prefix)
    if stray:
        return f"{dest} holds shard files without a complete dataset ({stray[0].name}, ...), e.g. from an interrupted run"
    return None


def new_partial(dest: Path) -> Path:
    """Create the hidden working folder; stale ones from killed runs (dead pid) are removed."""
    dest.mkdir(parents=True, exist_ok=True)
    for p in dest.iterdir():
        m = _PARTIAL.match(p.name)
        if m and p.is_dir() and not _pid_alive(int(m.group(1))):
            shutil.rmtree(p, ignore_errors=True)
    work = dest / f".partial-{os.getpid()}-{uuid.uuid4().hex[:12]}"
    work.mkdir()
    return work


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def commit(work: Path, dest: Path, prefix: str, info: dict) -> None:
    """Move the finished shards from `work` into `dest`, then write dataset.json last.

    An existing dataset (overwrite) is retired first: its dataset.json goes before any shard, so
    at no moment does dest hold a dataset.json that names missing or foreign shards.
    """
    old_info = dest / INFO_NAME
    old_names = []
    if old_info.exists():
        try:
            old_names = [s["name"] for s in json.loads(old_info.read_text())["shards"]]
        except (ValueError, KeyError, TypeError):
            old_names = []
        old_info.unlink()
    for p in {*(dest / n for n in old_names), *shard_files(dest, prefix)}:
        if p.is_file() and p.parent == dest:
            p.unlink()
    for s in info["shards"]:
        os.replace(work / s["name"], dest / s["name"])
    tmp = dest / f".{INFO_NAME}.{uuid.uuid4().hex}.tmp"
    tmp.write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, dest / INFO_NAME)
    shutil.rmtree(work, ignore_errors=True)
