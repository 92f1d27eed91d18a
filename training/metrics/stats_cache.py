"""On-disk cache of real-data statistics, so the slow pass over the reals runs once per dataset.

An entry holds the mean and covariance of the real features (all of them) and the first ``kept``
feature vectors (for KID and precision / recall, which need samples, not moments). It is keyed by
everything the numbers depend on:

* the dataset's content: the SHA-256 of ``dataset.json`` (as parsed, canonical JSON) and of every
  shard read. Local shards are hashed once per file version: their hashes are remembered in
  ``<cache>/metrics/shard-sha256.json`` by path, size and modification time, so a rewritten
  shard is hashed again and a merely touched one keeps its key. Remote shards (``http(s):``,
  ``pipe:``) cannot be hashed without reading them; their URL stands in for the content, so after
  replacing remote shards in place, clear the cache (``--no-cache`` or delete the file);
* the resolution the reals are compared at, the mirror setting;
* the feature network's ``name`` (for Inception it includes the weights file's hash);
* the cache format version.

Entries are safetensors files ``<cache>/metrics/reals-<hash>.safetensors`` (never pickles), with
the full key in the metadata and compared on load; written through a temporary name and
``os.replace``, so concurrent runs at worst compute the same entry twice.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from tqdm import tqdm

from training.data_info import url2path
from training.metrics.locations import cache_root
from training.metrics.reals import RealSource

FORMAT = "stylegan-metrics-reals/1"
SUBDIR = "metrics"
SHARD_MEMO = "shard-sha256.json"


@dataclass
class RealStats:
    """Moments of all real features and the first ``features.shape[0]`` of them."""

    mu: np.ndarray            # [D] float64
    sigma: np.ndarray         # [D, D] float64
    num_images: int           # images the moments cover
    features: torch.Tensor    # [kept, D] float32, CPU
    skipped: int = 0          # damaged real images left out (training.metrics.reals)

    @property
    def kept(self) -> int:
        return int(self.features.shape[0])

    def covers(self, keep: int) -> bool:
        """Whether the entry holds the first ``keep`` features (or all there are)."""
        return self.kept >= min(keep, self.num_images)


def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _is_remote(url: str) -> bool:
    """``http(s):``, ``pipe:`` and other URLs; plain paths and ``file:`` URLs are local."""
    scheme = urlparse(url).scheme
    return len(scheme) > 1 and scheme != "file"  # a one-letter scheme is a Windows drive letter


def shard_hashes(urls: tuple[str, ...], cache_dir: str | Path | None = None, progress: bool = False) -> list[str]:
    """A content id per shard: ``sha256:<hex>`` for local files (memoised), ``url:<url>`` for remote ones.

    ``progress`` shows a bar (bytes) while shards not seen before are hashed.
    """
    memo_path = cache_root(cache_dir) / SUBDIR / SHARD_MEMO
    try:
        memo = json.loads(memo_path.read_text(encoding="utf-8"))
        if not isinstance(memo, dict):
            memo = {}
    except (OSError, ValueError):
        memo = {}
    ids: dict[str, str] = {url: f"url:{url}" for url in urls if _is_remote(url)}
    todo = []
    for url in urls:
        if url in ids:
            continue
        path = Path(url2path(url)).resolve()
        try:
            st = path.stat()
        except FileNotFoundError:  # a missing shard: its images are skipped; the key says so
            ids[url] = f"missing:{url}"
            continue
        entry = memo.get(str(path))
        if isinstance(entry, dict) and entry.get("size") == st.st_size and entry.get("mtime_ns") == st.st_mtime_ns:
            ids[url] = f"sha256:{entry['sha256']}"
        else:
            todo.append((url, path, st))
    with tqdm(total=sum(st.st_size for _, _, st in todo), desc="hashing shards", unit="B", unit_scale=True,
              disable=not (progress and todo), file=sys.stderr, leave=False) as bar:
        for url, path, st in todo:
            memo[str(path)] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": _hash_file(path)}
            ids[url] = f"sha256:{memo[str(path)]['sha256']}"
            bar.update(st.st_size)
    if todo:
        _atomic_write_text(memo_path, json.dumps(memo, indent=1, sort_keys=True))
    return [ids[url] for url in urls]


def cache_key(src: RealSource, feature_name: str, cache_dir: str | Path | None = None,
              progress: bool = False) -> dict[str, Any]:
    """Everything the real statistics depend on (see the module docstring)."""
    info_json = json.dumps(src.info.to_dict(), sort_keys=True, separators=(",", ":"))
    return {
        "format": FORMAT,
        "dataset_json_sha256": hashlib.sha256(info_json.encode()).hexdigest(),
        "shards": shard_hashes(src.info.shards, cache_dir, progress),
        "resolution": src.resolution,
        "mirror": src.mirror,
        "features": feature_name,
        # Only when labels were checked (a conditional network), so older entries keep their key.
        **({"labels_checked": True} if src.labels else {}),
    }


def entry_path(key: dict[str, Any], cache_dir: str | Path | None = None) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    return cache_root(cache_dir) / SUBDIR / f"reals-{digest}.safetensors"


def load_stats(key: dict[str, Any], cache_dir: str | Path | None = None) -> RealStats | None:
    """The entry for ``key``, or None when there is none (or it is unreadable or for another key)."""
    path = entry_path(key, cache_dir)
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if meta.get("format") != FORMAT or json.loads(meta.get("key", "null")) != key:
                return None
            return RealStats(
                mu=f.get_tensor("mu").numpy(),
                sigma=f.get_tensor("sigma").numpy(),
                num_images=int(meta["num_images"]),
                features=f.get_tensor("features"),
                skipped=int(meta.get("skipped", "0")),
            )
    except (OSError, ValueError, KeyError, RuntimeError, SafetensorError):  # a damaged entry is recomputed, not fatal
        return None


def save_stats(stats: RealStats, key: dict[str, Any], cache_dir: str | Path | None = None) -> Path:
    """Write the entry for ``key`` atomically; returns its path."""
    path = entry_path(key, cache_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tensors = {
        "mu": torch.from_numpy(np.ascontiguousarray(stats.mu, dtype=np.float64)),
        "sigma": torch.from_numpy(np.ascontiguousarray(stats.sigma, dtype=np.float64)),
        "features": stats.features.detach().to("cpu", torch.float32).contiguous(),
    }
    meta = {"format": FORMAT, "key": json.dumps(key, sort_keys=True), "num_images": str(stats.num_images),
            "skipped": str(stats.skipped)}
    try:
        save_file(tensors, str(tmp), metadata=meta)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
