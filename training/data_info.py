"""Dataset metadata: the `dataset.json` that sits beside WebDataset shards (DESIGN.md, "Shards").

Owns `DatasetInfo` (a frozen view of dataset.json with the shards resolved to readable URLs) and
`load_dataset_info`, which accepts every kind of shard source the reader takes: a dataset directory,
the path of a dataset.json, a brace pattern (`data/demo-{000000..000003}.tar`), or `http(s)://`,
`file:` and `pipe:` URLs as WebDataset's `gopen` opens them. The reader needs the per-shard image
counts from dataset.json to plan an exactly reproducible, seekable stream, so a source without a
findable dataset.json is an error rather than a guess.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
import re
import select
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import webdataset as wds
from webdataset.gopen import rewrite_url
from webdataset.shardlists import expand_urls

FORMAT = "stylegan-dataset/1"
INFO_NAME = "dataset.json"
_SHARD_NAME = re.compile(r"[^/\s'\"]+\.tar(?:\.gz)?")


@dataclass(frozen=True)
class DatasetInfo:
    """What dataset.json says, with `shards` resolved to URLs or paths the reader can open.

    `num_images` and `shard_counts` describe the shards selected by the source (all of them for a
    directory; the matching subset for a pattern). `class_counts` always covers the whole dataset.
    """

    resolution: int
    channels: int
    num_images: int
    num_classes: int = 0
    class_names: tuple[str, ...] | None = None
    class_counts: tuple[int, ...] | None = None
    shards: tuple[str, ...] = ()
    shard_counts: tuple[int, ...] = ()
    source: str = ""
    transform: str = ""
    resize_filter: str = ""
    seed: int = 0
    skipped: tuple[dict[str, str], ...] = ()
    created_by: str = ""
    format: str = FORMAT

    @property
    def labelled(self) -> bool:
        return self.num_classes > 0

    def to_dict(self) -> dict[str, Any]:
        """The dataset.json form, the one schema that tools/dataset_tool.py writes and
        :meth:`from_dict` reads: shard entries are `{"name", "count"}` with names, not URLs."""
        return {
            "format": self.format, "resolution": self.resolution, "channels": self.channels,
            "num_images": self.num_images, "num_classes": self.num_classes,
            "class_names": None if self.class_names is None else list(self.class_names),
            "class_counts": None if self.class_counts is None else list(self.class_counts),
            "shards": [{"name": _shard_name(u), "count": c} for u, c in zip(self.shards, self.shard_counts)],
            "source": self.source, "transform": self.transform, "resize_filter": self.resize_filter,
            "seed": self.seed, "skipped": [dict(s) for s in self.skipped], "created_by": self.created_by,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], base: str = "") -> DatasetInfo:
        """Parse dataset.json; shard names are joined to `base` (a directory or URL prefix).

        Unknown keys are rejected with the closest known one, so a typo in a hand-edited
        dataset.json fails here and not deep inside a worker.
        """
        known = {f.name for f in dataclasses.fields(cls)} - {"shard_counts"}
        for key in d:
            if key not in known:
                close = difflib.get_close_matches(key, sorted(known), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ValueError(f"dataset.json: unknown key {key!r}{hint} (known: {', '.join(sorted(known))})")
        for key in ("resolution", "channels", "num_images", "shards"):
            if key not in d:
                raise ValueError(f"dataset.json: missing required key {key!r}")
        if d.get("format", FORMAT) != FORMAT:
            raise ValueError(f"dataset.json: format {d['format']!r} is not supported (expected {FORMAT!r})")
        shards = d["shards"]
        if not isinstance(shards, list) or not all(isinstance(s, dict) and {"name", "count"} <= set(s) for s in shards):
            raise ValueError('dataset.json: "shards" must be a list of {"name": ..., "count": ...} objects')
        names = d.get("class_names")
        counts = d.get("class_counts")
        return cls(
            resolution=int(d["resolution"]),
            channels=int(d["channels"]),
            num_images=int(d["num_images"]),
            num_classes=int(d.get("num_classes") or 0),
            class_names=None if names is None else tuple(str(n) for n in names),
            class_counts=None if counts is None else tuple(int(c) for c in counts),
            shards=tuple(_join(base, s["name"]) for s in shards),
            shard_counts=tuple(int(s["count"]) for s in shards),
            source=str(d.get("source", "")),
            transform=str(d.get("transform", "")),
            resize_filter=str(d.get("resize_filter", "")),
            seed=int(d.get("seed", 0)),
            skipped=tuple(dict(s) for s in d.get("skipped", [])),
            created_by=str(d.get("created_by", "")),
            format=str(d.get("format", FORMAT)),
        )


def _shard_name(url: str) -> str:
    """The shard's file name inside a path, URL or `pipe:` command (the last `*.tar` token)."""
    found = _SHARD_NAME.findall(url)
    return found[-1] if found else url.rstrip("/").rsplit("/", 1)[-1]


def _join(base: str, name: str) -> str:
    if not base:
        return name
    if _is_url(base):
        return base.rstrip("/") + "/" + name
    return str(Path(base) / name)


def _is_url(source: str) -> bool:
    scheme = urlparse(source).scheme
    return len(scheme) > 1  # a one-letter "scheme" is a Windows drive letter


def _beside(url: str, name: str) -> str:
    """The URL of file `name` in the same folder as shard `url` (also inside a `pipe:` command)."""
    matches = list(_SHARD_NAME.finditer(url))
    if not matches:
        raise ValueError(f"cannot find a shard file name (*.tar) in {url!r}")
    m = matches[-1]
    return url[: m.start()] + name + url[m.end():]


# How long an http(s) read may try before it fails (docs/data.md, "Unreachable shards"): curl
# gives up connecting after CONNECT_TIMEOUT s, and a transfer that moves less than 1 byte/s for
# STALL_TIMEOUT s; it tries 1 + RETRIES times, RETRY_DELAY s apart. At most
# (1 + RETRIES) * (CONNECT_TIMEOUT + STALL_TIMEOUT) + RETRIES * RETRY_DELAY = 92 s per shard.
# (WebDataset's own curl call: 30 s to connect, 30 retries 2 s apart, no stall limit: hangs forever
# on a server that accepts and never answers.)
CONNECT_TIMEOUT, STALL_TIMEOUT, RETRIES, RETRY_DELAY = 10, 20, 2, 1


def curl_command(url: str, *, connect_timeout: float = CONNECT_TIMEOUT, stall_timeout: float = STALL_TIMEOUT,
                 retries: int = RETRIES, retry_delay: float = RETRY_DELAY) -> list[str]:
    """The bounded ``curl`` command that reads ``url`` to stdout (see the bound above)."""
    return ["curl", "--fail", "--silent", "--location", "--connect-timeout", f"{connect_timeout:g}",
            "--speed-limit", "1", "--speed-time", f"{stall_timeout:g}", "--retry", str(retries),
            "--retry-delay", f"{retry_delay:g}", "--retry-connrefused", url]


_CURL_EXIT = {
    6: "the host name does not resolve", 7: "nothing answers at that address and port",
    18: "the transfer ended early", 22: "the server answered with an HTTP error (404, 503, ...)",
    28: f"timed out (no connection within {CONNECT_TIMEOUT} s, or no data for {STALL_TIMEOUT} s)",
    35: "the TLS handshake failed", 56: "the connection broke off", 60: "the server's TLS certificate is not trusted",
}


class CurlStream:
    """A URL's bytes from a bounded ``curl`` (:func:`curl_command`), as a readable stream; when the
    transfer fails, reading raises ``OSError`` with one line: the URL and what went wrong."""

    def __init__(self, url: str, command: list[str]) -> None:
        self.url = url
        try:
            self._proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        except FileNotFoundError:
            raise OSError(f"cannot read {url}: http(s) data is read with curl, which is not installed") from None

    def read(self, n: int = -1) -> bytes:
        data = self._proc.stdout.read() if n is None or n < 0 else self._proc.stdout.read(n)
        if n is None or n < 0 or len(data) < n:  # a blocking pipe returns short only at its end
            code = self._proc.wait()
            if code:
                why = _CURL_EXIT.get(code, "see 'man curl', EXIT CODES")
                raise OSError(f"cannot read {self.url}: curl exit {code}: {why} (tried {1 + RETRIES} times at most)")
        return data

    def close(self) -> None:
        if self._proc.poll() is None:  # the reader stopped early: end the transfer
            self._proc.kill()
            self._proc.wait()
        self._proc.stdout.close()

    def __enter__(self) -> "CurlStream":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# How long a ``pipe:`` command may stay silent (docs/data.md, "pipe: commands"): a command that
# writes no byte for this many seconds is stopped and its shard counts as unreadable. 120 s: well
# above what an object-store client needs to start, authenticate and send a first byte (and above
# curl's 30 s per try above, so a `pipe:curl ...` retries inside it), yet a hung mount, a stalled
# transfer or a command waiting for a password costs two minutes per shard, not the job's whole
# allocation. A transfer that keeps moving is never stopped, however long it takes.
PIPE_TIMEOUT = 120.0
PIPE_TIMEOUT_ENV = "STYLEGAN_PIPE_TIMEOUT"


def pipe_timeout_seconds() -> float:
    """The silence bound of ``pipe:`` commands: ``$STYLEGAN_PIPE_TIMEOUT`` seconds, else :data:`PIPE_TIMEOUT`.
    An environment variable, so that it reaches loader workers and the metrics pass unplumbed."""
    text = os.environ.get(PIPE_TIMEOUT_ENV, "").strip()
    if not text:
        return PIPE_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{PIPE_TIMEOUT_ENV}={text!r}: expected a number of seconds > 0 (default {PIPE_TIMEOUT:g})")
    return value


class PipeStream:
    """The output of a ``pipe:`` command as a readable stream, with a bound on silence: when the
    command writes no byte for ``timeout`` seconds it is stopped (its whole process group) and
    reading raises ``OSError`` with one line naming the URL; a command that exits non-zero is one
    line with the URL, the exit status and the last line the command wrote to stderr."""

    def __init__(self, url: str, command: str, timeout: float) -> None:
        self.url, self.timeout = url, timeout
        self._err = tempfile.TemporaryFile()
        # A session of its own, so that stopping it stops the whole pipeline (`a | b`), not only the shell.
        self._proc = subprocess.Popen(command, shell=True, stdout=subprocess.PIPE, stderr=self._err,
                                      start_new_session=True)
        self._fd = self._proc.stdout.fileno()

    def read(self, n: int = -1) -> bytes:
        want = None if n is None or n < 0 else n
        chunks, got = [], 0
        while want is None or got < want:
            if not select.select([self._fd], [], [], self.timeout)[0]:
                self._stop()
                raise OSError(f"cannot read {self.url}: the command produced no bytes for {self.timeout:g} s "
                              f"({PIPE_TIMEOUT_ENV}); stopped it")
            data = os.read(self._fd, 1 << 20 if want is None else min(want - got, 1 << 20))
            if not data:
                self._check_exit()
                break
            chunks.append(data)
            got += len(data)
        return b"".join(chunks)

    def _check_exit(self) -> None:
        try:
            code = self._proc.wait(timeout=self.timeout)
        except subprocess.TimeoutExpired:  # closed its output but goes on: as silent as any
            self._stop()
            raise OSError(f"cannot read {self.url}: the command closed its output but did not exit within "
                          f"{self.timeout:g} s ({PIPE_TIMEOUT_ENV}); stopped it") from None
        if code:
            how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
            self._err.seek(0)
            lines = [line.strip() for line in self._err.read()[-4096:].decode("utf-8", "replace").splitlines()]
            said = next((line for line in reversed(lines) if line), "")
            raise OSError(f"cannot read {self.url}: the command {how}" + (f": {said[:200]}" if said else ""))

    def _stop(self) -> None:
        if self._proc.poll() is None:
            try:
                os.killpg(self._proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._proc.wait()

    def close(self) -> None:
        self._stop()  # a reader that stopped early (a tar's end) ends the command
        self._proc.stdout.close()
        self._err.close()

    def __enter__(self) -> "PipeStream":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def open_url(url: str, *, pipe_timeout: float | None = None, **bounds: float) -> Any:
    """A readable stream of ``url``: http(s) through :func:`curl_command` (failing within a bounded
    time, with one line), ``pipe:`` commands through :class:`PipeStream` (stopped after
    ``pipe_timeout`` silent seconds, default :func:`pipe_timeout_seconds`), other schemes (``s3:``, ...)
    through WebDataset's ``gopen``."""
    url = rewrite_url(url)
    scheme = urlparse(url).scheme
    if scheme in ("http", "https"):
        return CurlStream(url, curl_command(url, **bounds))
    if scheme == "pipe":
        timeout = pipe_timeout_seconds() if pipe_timeout is None else pipe_timeout
        if not (math.isfinite(timeout) and timeout > 0):
            raise ValueError(f"pipe_timeout={timeout!r}: expected a number of seconds > 0")
        return PipeStream(url, url[len("pipe:"):], timeout)
    return wds.gopen(url, "rb")


def _read_text(url: str) -> str:
    if not _is_url(url) or url.startswith("file:"):
        path = url2path(url)
        return Path(path).read_text(encoding="utf-8")
    with open_url(url) as stream:
        return stream.read().decode("utf-8")


def url2path(url: str) -> str:
    """A local path for a plain path or a `file:` URL."""
    return urlparse(url).path if url.startswith("file:") else url


def _validate(info: DatasetInfo, where: str) -> DatasetInfo:
    if info.resolution <= 0 or info.channels not in (1, 3, 4):
        raise ValueError(f"{where}: resolution={info.resolution}, channels={info.channels}: expected a positive resolution and 1, 3 or 4 channels")
    if not info.shards or info.num_images <= 0:
        raise ValueError(f"{where}: the dataset holds no images (shards: {len(info.shards)}, images: {info.num_images})")
    if info.num_classes and info.class_names is not None and len(info.class_names) != info.num_classes:
        raise ValueError(f"{where}: num_classes={info.num_classes} but {len(info.class_names)} class_names")
    return info


def load_dataset_info(source: str) -> DatasetInfo:
    """Read the metadata of a shard source.

    source: a directory holding dataset.json, the path of a dataset.json, the URL of a dataset
    folder (`https://host/ds/`), or a shard pattern/URL (brace-expanded; `::` joins several) whose
    dataset.json lies beside the first shard.
    Raises FileNotFoundError for a missing local source and ValueError for one that holds no images
    or whose shards dataset.json does not list.
    """
    source = str(source)
    if not source.strip():
        raise ValueError("data source is empty: pass a dataset directory or a shard pattern/URL")
    if source.startswith("file:"):
        source = url2path(source)  # a local path after all
    if _is_url(source) and not _SHARD_NAME.search(source):
        return _load_for_folder_url(source)
    if not _is_url(source) and "{" not in source and "::" not in source and not source.endswith(".tar"):
        path = Path(source)
        info_path = path / INFO_NAME if path.is_dir() else path
        if not path.exists():
            raise FileNotFoundError(f"data source {source!r} does not exist (expected a dataset directory made by tools/dataset_tool.py, or a shard pattern/URL)")
        if not info_path.is_file() or info_path.name != INFO_NAME:
            raise FileNotFoundError(f"data source {source!r} holds no {INFO_NAME}: pass a directory made by tools/dataset_tool.py, or a shard pattern with {INFO_NAME} beside the shards")
        d = json.loads(info_path.read_text(encoding="utf-8"))
        return _validate(DatasetInfo.from_dict(d, base=str(info_path.parent)), str(info_path))
    return _load_for_urls(source)


def _load_for_urls(source: str) -> DatasetInfo:
    urls = expand_urls(source)
    if not urls:
        raise ValueError(f"data source {source!r} expands to no shards")
    absent = [u for u in urls if (not _is_url(u) or u.startswith("file:")) and not os.path.isfile(url2path(u))]
    if absent:
        raise FileNotFoundError(f"data source {source!r}: shard {absent[0]!r} does not exist ({len(absent)} of {len(urls)} missing)")
    info_url = _beside(urls[0], INFO_NAME)
    try:
        d = json.loads(_read_text(info_url))
    except (OSError, ValueError) as e:
        raise FileNotFoundError(
            f"data source {source!r}: cannot read {INFO_NAME} beside the shards (looked for {info_url!r}: {e}). "
            f"Pass the dataset directory, or put {INFO_NAME} beside the shards."
        ) from e
    full = DatasetInfo.from_dict(d)
    counts = dict(zip(full.shards, full.shard_counts))
    missing = [u for u in urls if _shard_name(u) not in counts]
    if missing:
        raise ValueError(f"data source {source!r}: shard {missing[0]!r} is not listed in {info_url} ({len(missing)} unlisted)")
    selected = tuple(counts[_shard_name(u)] for u in urls)
    info = dataclasses.replace(full, shards=tuple(urls), shard_counts=selected, num_images=sum(selected))
    return _validate(info, info_url)


def _load_for_folder_url(source: str) -> DatasetInfo:
    info_url = source.rstrip("/") + "/" + INFO_NAME
    try:
        d = json.loads(_read_text(info_url))
    except (OSError, ValueError) as e:
        raise FileNotFoundError(f"data source {source!r}: cannot read {info_url!r} ({e}); pass the URL of a dataset "
                                f"folder holding {INFO_NAME}, or a shard pattern with {INFO_NAME} beside the shards") from e
    return _validate(DatasetInfo.from_dict(d, base=source), info_url)
