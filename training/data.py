"""The training data stream: WebDataset shards in, endless uint8 [N, C, H, W] batches out.

Owns `open_stream` (and re-exports `DatasetInfo` / `load_dataset_info` from `training.data_info`).

Why the stream is planned rather than buffered: training must resume bit-identically, so batch K of
a rank has to be computable without replaying batches 0..K-1. Each stream (one per rank and loader
worker) therefore follows a plan that depends only on (seed, rank, worker) and the per-shard counts
in dataset.json:

* shard order: epoch e of a stream is a seeded permutation of all shards (resampled per stream,
  so any world size works, every shard is read equally often, and no rank is ever without data);
* shuffle: consecutive shards are read in groups of about `shuffle_buffer` samples; each group is
  permuted with its own seeded generator, which also draws the x-flips;
* batches: a worker's samples are cut into consecutive batches of `batch_size`; with W workers,
  global batch i comes from worker i % W (the DataLoader's round-robin order).

Skipping K batches is then arithmetic: each worker skips its share of samples by walking the
group sizes (no I/O, no decoding) and reads only the group it resumes in.
"""

from __future__ import annotations

import io
import math
import tarfile
import warnings
from collections.abc import Iterator
from typing import Literal

import numpy as np
import torch
import webdataset as wds
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from training.data_info import DatasetInfo, load_dataset_info, url2path, _is_url

try:
    import pyspng
except ImportError:  # pyspng is optional: Pillow decodes the same PNGs, slower
    pyspng = None

__all__ = ["DatasetInfo", "load_dataset_info", "open_stream", "StreamPlan", "decode_png", "read_shard"]

Decoder = Literal["auto", "pyspng", "pillow"]
_TAG_EPOCH, _TAG_GROUP = 0, 1


class StreamPlan:
    """The deterministic order of one stream's samples, computed from shard counts alone.

    A sample is addressed by (group j, position p in the group). Group j holds the shards at
    stream positions [j*g, (j+1)*g); position q of the stream is shard perm_e[q % S] with
    e = q // S and perm_e a permutation seeded by (seed, rank, worker, epoch).
    """

    def __init__(self, shard_counts: tuple[int, ...], *, seed: int, rank: int, worker: int, shuffle_buffer: int):
        self.counts = shard_counts
        self.key = (seed, rank, worker)
        mean = sum(shard_counts) / len(shard_counts)
        self.shards_per_group = min(len(shard_counts), max(1, math.ceil(shuffle_buffer / max(mean, 1))))
        self._epoch_cache: dict[int, np.ndarray] = {}

    def _rng(self, tag: int, index: int) -> np.random.Generator:
        return np.random.default_rng(np.random.SeedSequence([*self.key, tag, index]))

    def _epoch(self, e: int) -> np.ndarray:
        if e not in self._epoch_cache:
            if len(self._epoch_cache) > 4:  # a group spans at most two epochs; keep the cache tiny
                self._epoch_cache.clear()
            self._epoch_cache[e] = self._rng(_TAG_EPOCH, e).permutation(len(self.counts))
        return self._epoch_cache[e]

    def group_shards(self, j: int) -> list[int]:
        """Indices of the shards read, in order, for group j."""
        n, g = len(self.counts), self.shards_per_group
        return [int(self._epoch(q // n)[q % n]) for q in range(j * g, (j + 1) * g)]

    def group_size(self, j: int) -> int:
        return sum(self.counts[s] for s in self.group_shards(j))

    def group_order(self, j: int, size: int) -> tuple[np.ndarray, np.ndarray]:
        """(permutation of the group's samples, x-flip flag per output position)."""
        rng = self._rng(_TAG_GROUP, j)
        perm = rng.permutation(size)
        flips = rng.random(size) < 0.5
        return perm, flips

    def locate(self, offset: int) -> tuple[int, int]:
        """(group, position in group) of the stream's sample number `offset`, without I/O."""
        j = 0
        while True:
            size = self.group_size(j)
            if offset < size:
                return j, offset
            offset -= size
            j += 1


def read_shard(url: str) -> list[tuple[str, dict[str, bytes]]]:
    """All samples of one WebDataset shard as (key, {extension: bytes}), in tar order."""
    samples: list[tuple[str, dict[str, bytes]]] = []
    try:
        stream = open(url2path(url), "rb") if not _is_url(url) or url.startswith("file:") else wds.gopen(url, "rb")
        with stream, tarfile.open(fileobj=stream, mode="r|*") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                folder, _, base = member.name.rpartition("/")
                stem, dot, ext = base.partition(".")
                if not dot:
                    continue
                key = f"{folder}/{stem}" if folder else stem
                data = tar.extractfile(member).read()
                if not samples or samples[-1][0] != key:
                    samples.append((key, {}))
                samples[-1][1][ext.lower()] = data
    except (OSError, tarfile.TarError) as e:
        raise OSError(f"cannot read shard {url!r}: {type(e).__name__}: {e}") from e
    return samples


def decode_png(data: bytes, decoder: Decoder = "auto") -> np.ndarray:
    """PNG bytes -> uint8 [H, W, C]; pyspng when installed (and asked), Pillow otherwise."""
    if decoder == "pyspng" or (decoder == "auto" and pyspng is not None):
        if pyspng is None:
            raise ImportError("decoder='pyspng' but pyspng is not installed (pip install pyspng)")
        image = pyspng.load(data)
    else:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as im:
            image = np.asarray(im)
    if image.dtype != np.uint8:
        raise ValueError(f"PNG holds {image.dtype} pixels, expected 8-bit")
    return image[:, :, None] if image.ndim == 2 else image


class _Stream(IterableDataset):
    """One rank's batches; inside a loader worker, that worker's share of them."""

    def __init__(self, info: DatasetInfo, *, rank: int, seed: int, batch_size: int, num_workers: int, mirror: bool,
                 use_labels: bool, skip_batches: int, shuffle_buffer: int, decoder: Decoder):
        super().__init__()
        self.info, self.rank, self.seed, self.batch_size = info, rank, seed, batch_size
        self.num_workers, self.mirror, self.use_labels = num_workers, mirror, use_labels
        self.skip_batches, self.shuffle_buffer, self.decoder = skip_batches, shuffle_buffer, decoder

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        winfo = get_worker_info()
        loader_id = 0 if winfo is None else winfo.id
        W, K = self.num_workers, self.skip_batches
        # After skipping K batches the loader's worker 0 must deliver global batch K, so loader
        # worker d plays logical worker (d + K) % W; worker w has already delivered ceil((K-w)/W).
        w = (loader_id + K) % W
        done = max(0, -(-(K - w) // W))
        plan = StreamPlan(self.info.shard_counts, seed=self.seed, rank=self.rank, worker=w, shuffle_buffer=self.shuffle_buffer)
        samples = self._samples(plan, *plan.locate(done * self.batch_size))
        while True:
            yield self._collate([next(samples) for _ in range(self.batch_size)])

    def _samples(self, plan: StreamPlan, j: int, pos: int) -> Iterator[tuple[str, dict[str, bytes], bool]]:
        while True:
            shard_ids = plan.group_shards(j)
            cache: dict[int, list] = {}
            items = []
            for s in shard_ids:
                if s not in cache:
                    cache[s] = self._read_checked(s)
                items.extend(cache[s])
            perm, flips = plan.group_order(j, len(items))
            for p in range(pos, len(items)):
                key, fields = items[perm[p]]
                yield key, fields, bool(flips[p]) and self.mirror
            j, pos = j + 1, 0

    def _read_checked(self, s: int) -> list:
        url, expected = self.info.shards[s], self.info.shard_counts[s]
        samples = [(f"{url}:{k}", f) for k, f in read_shard(url) if "png" in f]
        if len(samples) != expected:
            raise ValueError(f"shard {url!r} holds {len(samples)} images but dataset.json lists {expected}: "
                             "the shard is damaged or dataset.json belongs to other shards")
        return samples

    def _collate(self, batch: list[tuple[str, dict[str, bytes], bool]]) -> tuple[torch.Tensor, torch.Tensor]:
        res, ch = self.info.resolution, self.info.channels
        images = np.empty((len(batch), res, res, ch), dtype=np.uint8)
        labels = np.full(len(batch), -1, dtype=np.int64)
        good = []
        for i, (key, fields, flip) in enumerate(batch):
            try:
                image = decode_png(fields["png"], self.decoder)
            except (OSError, ValueError, RuntimeError, SyntaxError, EOFError) as e:
                # A corrupt sample is replaced by a neighbour of the same batch: the batch keeps its
                # place in the plan, so resume stays exact; the warning names the sample.
                warnings.warn(f"skipping unreadable image {key}.png ({e}); using another image of the batch instead")
                continue
            if image.shape != (res, res, ch):
                raise ValueError(f"image {key}.png is {image.shape[1]}x{image.shape[0]}x{image.shape[2]} but dataset.json "
                                 f"says {res}x{res}x{ch}: the shards do not match their dataset.json")
            images[i] = image[:, ::-1] if flip else image
            if self.use_labels:
                labels[i] = self._label(key, fields)
            good.append(i)
        if not good:
            raise RuntimeError(f"no image of a batch could be decoded (first: {batch[0][0]}.png)")
        good_set = set(good)
        for i in range(len(batch)):
            if i not in good_set:
                src = max((g for g in good if g < i), default=good[0])
                images[i], labels[i] = images[src], labels[src]
        return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(labels)

    def _label(self, key: str, fields: dict[str, bytes]) -> int:
        if "cls" not in fields:
            raise ValueError(f"sample {key} has no .cls label but the dataset is labelled")
        c = int(fields["cls"].decode().strip())
        if not 0 <= c < self.info.num_classes:
            raise ValueError(f"sample {key}: class {c} is outside 0..{self.info.num_classes - 1}")
        return c


def _check_args(info: DatasetInfo, source: str, *, rank: int, world_size: int, seed: int, batch_size: int,
                workers: int, use_labels: bool, skip_batches: int, shuffle_buffer: int,
                resolution: int | None, channels: int | None, decoder: str) -> None:
    if not 0 <= rank < world_size:
        raise ValueError(f"rank={rank}, world_size={world_size}: expected 0 <= rank < world_size")
    for name, value, low in (("seed", seed, 0), ("batch_size", batch_size, 1), ("workers", workers, 0),
                             ("skip_batches", skip_batches, 0), ("shuffle_buffer", shuffle_buffer, 1)):
        if value < low:
            raise ValueError(f"{name}={value}: expected an integer >= {low}")
    if decoder not in ("auto", "pyspng", "pillow"):
        raise ValueError(f"decoder={decoder!r}: expected 'auto', 'pyspng' or 'pillow'")
    if decoder == "pyspng" and pyspng is None:
        raise ImportError("decoder='pyspng' but pyspng is not installed: pip install pyspng, or use decoder='auto'")
    if resolution is not None and resolution != info.resolution:
        raise ValueError(f"the network's resolution {resolution} does not match the dataset's {info.resolution} "
                         f"({source}): rebuild the dataset with --resolution {resolution} or pick a matching network")
    if channels is not None and channels != info.channels:
        raise ValueError(f"the network's {channels} image channels do not match the dataset's {info.channels} "
                         f"({source}): rebuild the dataset with --channels {channels} or pick a matching network")
    if use_labels and not info.labelled:
        raise ValueError(f"use_labels=True but the dataset {source} has no labels (num_classes=0): "
                         "train unconditionally or rebuild the dataset with --labels")


def open_stream(source: str, *, rank: int, world_size: int, seed: int, batch_size: int, workers: int = 2,
                mirror: bool = False, use_labels: bool = False, skip_batches: int = 0, shuffle_buffer: int = 1000,
                resolution: int | None = None, channels: int | None = None, decoder: Decoder = "auto",
                pin_memory: bool = False) -> tuple[DatasetInfo, Iterator[tuple[torch.Tensor, torch.Tensor]]]:
    """Open one rank's endless, reproducible stream of (images, labels) batches.

    Returns the dataset's metadata and an iterator of (uint8 [batch_size, C, H, W] contiguous CPU
    tensor, int64 [batch_size] class indices, -1 when `use_labels` is False). For fixed (source,
    seed, rank, batch_size, workers, mirror, shuffle_buffer) the batches are identical across runs,
    and `skip_batches=K` starts at batch K of the fresh stream. `workers` loader processes
    (persistent) each decode whole batches; 0 reads in the calling process. Additions to the
    interface: `decoder` ('auto' = pyspng when installed) and `pin_memory`. Keep the stream out
    of `accelerator.prepare`: it is already split per rank.
    """
    info = load_dataset_info(source)
    _check_args(info, source, rank=rank, world_size=world_size, seed=seed, batch_size=batch_size, workers=workers,
                use_labels=use_labels, skip_batches=skip_batches, shuffle_buffer=shuffle_buffer,
                resolution=resolution, channels=channels, decoder=decoder)
    dataset = _Stream(info, rank=rank, seed=seed, batch_size=batch_size, num_workers=max(workers, 1), mirror=mirror,
                      use_labels=use_labels, skip_batches=skip_batches, shuffle_buffer=shuffle_buffer, decoder=decoder)
    if workers == 0:
        batches = iter(dataset)
        return info, (_pin(b) for b in batches) if pin_memory else batches
    loader = DataLoader(dataset, batch_size=None, num_workers=workers, persistent_workers=True, pin_memory=pin_memory)
    return info, iter(loader)


def _pin(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    return batch[0].pin_memory(), batch[1].pin_memory()
