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

import contextlib
import io
import math
import tarfile
import warnings
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from training.data_info import DatasetInfo, _is_url, load_dataset_info, open_url, pipe_timeout_seconds, url2path
from training.signals import forking_loader_workers, ignore_stop_signals

try:
    import pyspng
except ImportError:  # pyspng is optional: Pillow decodes the same PNGs, slower
    pyspng = None

__all__ = ["DatasetInfo", "load_dataset_info", "open_stream", "StreamPlan", "decode_png", "read_shard", "scan_shard",
           "Batches", "DataError", "DataWarning", "BadSample", "ShardCheck", "check_shard", "decode_sample",
           "UnreadableRun", "forward_data_warnings"]

Decoder = Literal["auto", "pyspng", "pillow"]
_TAG_EPOCH, _TAG_GROUP, _TAG_STAND_IN = 0, 1, 2
# A stream stops when this many shards in a row cannot be read at all (docs/data.md, "Bad data").
UNREADABLE_IN_A_ROW = 3
# Bad samples named one by one in warnings per stream; later ones are only counted.
NAMED_BAD_SAMPLES = 20


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


@dataclass
class ShardRead:
    """What could be read of one shard: its samples in tar order, and why reading stopped early."""

    samples: list[tuple[str, dict[str, bytes]]]
    error: str | None = None  # None: the whole shard was read
    last_member: str | None = None  # the last member read before the error


def scan_shard(url: str) -> ShardRead:
    """Read the samples of one WebDataset shard as (key, {extension: bytes}), keeping what was read
    before an error (a truncated or damaged tar) instead of raising."""
    out = ShardRead([])
    try:
        stream = open(url2path(url), "rb") if not _is_url(url) or url.startswith("file:") else open_url(url)
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
                if not out.samples or out.samples[-1][0] != key:
                    out.samples.append((key, {}))
                out.samples[-1][1][ext.lower()] = data
                out.last_member = member.name
    except (OSError, tarfile.TarError, EOFError, zlib.error) as e:
        out.error = f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"
    return out


def read_shard(url: str) -> list[tuple[str, dict[str, bytes]]]:
    """All samples of one WebDataset shard as (key, {extension: bytes}), in tar order; raises
    ``OSError`` naming the shard if any part of it cannot be read."""
    got = scan_shard(url)
    if got.error is not None:
        raise OSError(f"cannot read shard {url!r}: {got.error}")
    return got.samples


@dataclass
class ShardCheck:
    """One shard read and compared with ``dataset.json``: what a reader may use, and what is wrong.

    ``samples`` holds at most ``expected`` samples that have a PNG, in tar order (extra images
    beyond the count are not part of the dataset). ``unreadable`` says why not one image could be
    read; ``problem`` is the start of a one-line warning about a damaged shard or a count that
    disagrees (the training stream and the metrics pass finish it with what they do about it).
    """

    url: str
    expected: int
    samples: list[tuple[str, dict[str, bytes]]]
    unreadable: str | None = None
    problem: str | None = None
    damaged: bool = False  # the problem is a damaged tar (images after it were lost)

    @property
    def missing(self) -> int:
        """Images dataset.json lists that the shard did not deliver."""
        return self.expected - len(self.samples)

    def warning(self, action: str) -> str | None:
        """The one-line warning, ``action`` saying what happens to the images not read."""
        if self.unreadable is not None:
            return f"shard {self.url!r} cannot be read ({self.unreadable}): its {self.expected} images are {action}"
        if self.problem is None:
            return None
        return f"{self.problem}, the rest are {action}" if self.damaged else self.problem


def check_shard(url: str, expected: int) -> ShardCheck:
    """Read shard ``url`` (:func:`scan_shard`) and compare it with the ``expected`` count of dataset.json."""
    got = scan_shard(url)
    samples = [(k, f) for k, f in got.samples if "png" in f]
    if not samples:
        return ShardCheck(url, expected, [], unreadable=got.error or f"it holds no images but dataset.json lists {expected}")
    check = ShardCheck(url, expected, samples[:expected])
    if got.error is not None:
        check.problem = (f"shard {url!r} is damaged after member {got.last_member!r} ({got.error}): "
                         f"{len(samples)} of {expected} images read")
        check.damaged = True
    elif len(samples) != expected:
        extra = f", from member {samples[expected][0] + '.png'!r} on" if len(samples) > expected else ""
        check.problem = (f"shard {url!r} holds {len(samples)} images but dataset.json lists {expected}: "
                         f"{abs(len(samples) - expected)} skipped{extra}; rebuild dataset.json for these shards")
    return check


class UnreadableRun:
    """Shards that could not be read at all, in a row: the third one in a row stops the reader with
    :class:`DataError` (docs/data.md, "Bad data"); a readable shard starts the count again."""

    def __init__(self) -> None:
        self.urls: list[str] = []

    def add(self, url: str, why: str) -> None:
        self.urls.append(url)
        if len(self.urls) >= UNREADABLE_IN_A_ROW:
            raise DataError(f"cannot read shard {url!r} ({why}): {len(self.urls)} shards in a row unreadable "
                            f"({', '.join(map(repr, self.urls[-UNREADABLE_IN_A_ROW:]))}); stopping")

    def clear(self) -> None:
        self.urls.clear()


class DataWarning(UserWarning):
    """A problem with the data that the reader works around (one line naming the shard and member)."""


@contextlib.contextmanager
def forward_data_warnings(emit: Callable[[str], None]) -> Iterator[None]:
    """Send every :class:`DataWarning` shown in this process to ``emit`` as its one-line text
    (``shard '…' …``) instead of Python's two-line form on stderr; other warnings are shown as
    before. Each text is emitted once: a damaged shard is read again every epoch (and by the
    sample grid's own stream), and the log should name it once, whatever the warning filters say."""
    shown = warnings.showwarning
    seen: set[str] = set()

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, DataWarning):
            if str(message) not in seen:
                seen.add(str(message))
                emit(str(message))
        else:
            shown(message, category, filename, lineno, file, line)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


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


class DataError(OSError):
    """The data stream cannot go on: shards unreadable several times in a row, or no usable image
    left to stand in for bad ones. The message is one line naming the shards."""


class BadSample(ValueError):
    """One sample is unusable; the message names its shard and member."""


def decode_sample(info: DatasetInfo, url: str, key: str, fields: dict[str, bytes], *, decoder: Decoder = "auto",
                  use_labels: bool = False) -> tuple[np.ndarray, int]:
    """(uint8 image [H, W, C], class index or -1) of one sample of shard ``url``, checked against
    ``info``; raises :class:`BadSample` naming the shard and member when it cannot be used."""
    res, ch = info.resolution, info.channels
    try:
        image = decode_png(fields["png"], decoder)
    except (OSError, ValueError, RuntimeError, SyntaxError, EOFError) as e:
        raise BadSample(f"shard {url!r} member {key + '.png'!r}: unreadable image ({e})") from None
    if image.shape != (res, res, ch):
        raise BadSample(f"shard {url!r} member {key + '.png'!r}: {image.shape[1]}x{image.shape[0]}x{image.shape[2]} "
                        f"pixels, dataset.json says {res}x{res}x{ch}")
    return image, _label(info, url, key, fields) if use_labels else -1


def _label(info: DatasetInfo, url: str, key: str, fields: dict[str, bytes]) -> int:
    where = f"shard {url!r} member {key + '.cls'!r}"
    if "cls" not in fields:
        raise BadSample(f"{where}: missing, but the dataset is labelled")
    text = fields["cls"][:40].decode("utf-8", "replace").strip()
    try:
        c = int(text)
    except ValueError:
        raise BadSample(f"{where}: label {text!r} is not a whole number") from None
    if not 0 <= c < info.num_classes:
        raise BadSample(f"{where}: class {c} is outside 0..{info.num_classes - 1} (num_classes in dataset.json)")
    return c


class _Bad:
    """A slot of the plan whose sample could not be read; ``why`` names the shard and member."""

    __slots__ = ("why",)

    def __init__(self, why: str) -> None:
        self.why = why


class _Group:
    """One group of the plan in memory: its slots (one per image dataset.json lists) and order."""

    def __init__(self, slots: list, perm: np.ndarray, flips: np.ndarray) -> None:
        self.slots, self.perm, self.flips = slots, perm, flips
        self.bad: set[int] = set()  # slot indices known to be unusable

    @property
    def size(self) -> int:
        return len(self.slots)


class _Stream(IterableDataset):
    """One rank's batches; inside a loader worker, that worker's share of them.

    Bad data never shifts the plan: every image dataset.json lists keeps its slot. A slot whose
    sample is unusable (corrupt PNG, wrong size, bad label, a member missing from a short or
    truncated shard, an unreadable shard) is filled with a stand-in drawn deterministically from the
    same group (or the next two), so batches stay reproducible and resumable; each batch carries the
    number of slots filled this way. Each problem is one warning naming the shard and the member.
    """

    def __init__(self, info: DatasetInfo, *, rank: int, seed: int, batch_size: int, num_workers: int, mirror: bool,
                 use_labels: bool, skip_batches: int, shuffle_buffer: int, decoder: Decoder):
        super().__init__()
        self.info, self.rank, self.seed, self.batch_size = info, rank, seed, batch_size
        self.num_workers, self.mirror, self.use_labels = num_workers, mirror, use_labels
        self.skip_batches, self.shuffle_buffer, self.decoder = skip_batches, shuffle_buffer, decoder

    def __iter__(self) -> Iterator[tuple]:
        winfo = get_worker_info()
        loader_id = 0 if winfo is None else winfo.id
        W, K = self.num_workers, self.skip_batches
        # After skipping K batches the loader's worker 0 must deliver global batch K, so loader
        # worker d plays logical worker (d + K) % W; worker w has already delivered ceil((K-w)/W).
        w = (loader_id + K) % W
        done = max(0, -(-(K - w) // W))
        plan = StreamPlan(self.info.shard_counts, seed=self.seed, rank=self.rank, worker=w, shuffle_buffer=self.shuffle_buffer)
        self._groups: dict[int, _Group] = {}
        self._unreadable = UnreadableRun()
        self._named = 0  # bad samples named in a warning so far
        self._notes: list[str] = []  # warnings not yet handed over with a batch
        samples = self._samples(plan, *plan.locate(done * self.batch_size))
        try:
            while True:
                batch = [next(samples) for _ in range(self.batch_size)]
                yield (*self._collate(batch), self._take_notes())
        except DataError as e:
            # Handed over as data, not raised here: a loader worker's exception reaches the main
            # process wrapped in its traceback, and the user should read one line.
            yield (torch.empty(0), torch.empty(0), 0, str(e), self._take_notes())

    def _note(self, text: str) -> None:
        """A warning for the consumer: it travels with the next batch and is shown (and logged) in
        the process that reads the batches, not on a loader worker's stderr alone."""
        self._notes.append(text)

    def _take_notes(self) -> tuple[str, ...]:
        notes, self._notes = tuple(self._notes), []
        return notes

    # ----- reading groups -------------------------------------------------------------------
    def _group(self, plan: StreamPlan, j: int) -> _Group:
        if j not in self._groups:
            slots = []
            cache: dict[int, list] = {}
            for s in plan.group_shards(j):
                if s not in cache:
                    cache[s] = self._read_slots(s)
                slots.extend(cache[s])
            perm, flips = plan.group_order(j, len(slots))
            self._groups[j] = _Group(slots, perm, flips)
        return self._groups[j]

    def _read_slots(self, s: int) -> list:
        """The ``count`` slots dataset.json promises for shard ``s``: samples, or :class:`_Bad`."""
        url, expected = self.info.shards[s], self.info.shard_counts[s]
        check = check_shard(url, expected)
        if check.unreadable is not None:
            self._unreadable.add(url, check.unreadable)
            self._note(check.warning("skipped and replaced"))
            return [_Bad(f"shard {url!r} unreadable")] * expected
        self._unreadable.clear()
        if check.problem is not None:
            self._note(check.warning("skipped and replaced"))
        slots: list = [(url, k, f) for k, f in check.samples]
        slots += [_Bad(f"shard {url!r}: missing image {i + 1} of {expected}") for i in range(len(slots), expected)]
        return slots

    # ----- samples ------------------------------------------------------------------------------
    def _samples(self, plan: StreamPlan, j: int, pos: int) -> Iterator[tuple[np.ndarray, int, bool, int]]:
        """(image HWC, label, flip, 1 if a stand-in else 0) for every slot from (group j, pos) on."""
        while True:
            group = self._group(plan, j)
            for p in range(pos, group.size):
                flip = bool(group.flips[p]) and self.mirror
                got = self._usable(group, int(group.perm[p]))
                if got is not None:
                    yield got[0], got[1], flip, 0
                else:
                    image, label = self._stand_in(plan, j, p)
                    yield image, label, flip, 1
            for old in [g for g in self._groups if g <= j]:
                del self._groups[old]
            j, pos = j + 1, 0

    def _stand_in(self, plan: StreamPlan, j: int, p: int) -> tuple[np.ndarray, int]:
        """A usable sample for bad slot (j, p): seeded random tries in group j, then j+1, j+2,
        then a scan of them, so stand-ins spread over the data and depend on the data alone."""
        rng = np.random.default_rng(np.random.SeedSequence([*plan.key, _TAG_STAND_IN, j, p]))
        for g in range(j, j + 3):
            group = self._group(plan, g)
            for slot in rng.integers(0, group.size, size=min(64, group.size)):
                got = self._usable(group, int(slot))
                if got is not None:
                    return got
        for g in range(j, j + 3):
            group = self._group(plan, g)
            for slot in range(group.size):
                got = self._usable(group, slot)
                if got is not None:
                    return got
        shards = sorted({self.info.shards[s] for g in range(j, j + 3) for s in plan.group_shards(g)})
        raise DataError(f"no usable image in {len(shards)} shard(s) ({', '.join(map(repr, shards[:4]))}"
                        f"{', ...' if len(shards) > 4 else ''}): every image or label is bad; stopping")

    def _usable(self, group: _Group, slot: int) -> tuple[np.ndarray, int] | None:
        """The decoded image and label of a slot, or None (warned once) when it is unusable."""
        if slot in group.bad:
            return None
        item = group.slots[slot]
        why = item.why if isinstance(item, _Bad) else None
        if why is None:
            url, key, fields = item
            try:
                return decode_sample(self.info, url, key, fields, decoder=self.decoder, use_labels=self.use_labels)
            except BadSample as e:
                why = str(e)
                self._warn(why)
        group.bad.add(slot)
        return None

    def _warn(self, why: str) -> None:
        self._named += 1
        if self._named <= NAMED_BAD_SAMPLES:
            more = " (further bad samples of this stream are counted, not named)" if self._named == NAMED_BAD_SAMPLES else ""
            self._note(f"skipping {why}; a stand-in from the same shards takes its place{more}")

    def _collate(self, batch: list[tuple[np.ndarray, int, bool, int]]) -> tuple:
        res, ch = self.info.resolution, self.info.channels
        images = np.empty((len(batch), res, res, ch), dtype=np.uint8)
        labels = np.empty(len(batch), dtype=np.int64)
        for i, (image, label, flip, _) in enumerate(batch):
            images[i] = image[:, ::-1] if flip else image
            labels[i] = label
        stand_ins = sum(b[3] for b in batch)
        return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(labels), stand_ins, None


class Batches:
    """An endless iterator of ``(uint8 images [N, C, H, W], int64 labels [N])``.

    ``skipped`` counts the samples that were unusable and replaced by a stand-in, over all batches
    delivered so far; the training loop reports it per tick. A stream that cannot go on raises
    :class:`DataError` here, in the caller's process, with one line.
    """

    def __init__(self, batches: Iterator[tuple], pin_memory: bool = False) -> None:
        self._batches, self._pin = batches, pin_memory
        self.skipped = 0

    def __iter__(self) -> "Batches":
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels, stand_ins, error, notes = next(self._batches)
        for note in notes:  # shown here, in the reading process, where the run's log can catch them
            warnings.warn(note, DataWarning, stacklevel=2)
        if error is not None:
            raise DataError(error)
        self.skipped += int(stand_ins)
        if self._pin:
            images, labels = images.pin_memory(), labels.pin_memory()
        return images, labels


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
    if any(url.startswith("pipe:") for url in info.shards):
        pipe_timeout_seconds()  # a bad $STYLEGAN_PIPE_TIMEOUT stops here with one line, not in a worker
    if use_labels and not info.labelled:
        raise ValueError(f"use_labels=True but the dataset {source} has no labels (num_classes=0): "
                         "train unconditionally or rebuild the dataset with --labels")


def open_stream(source: str, *, rank: int, world_size: int, seed: int, batch_size: int, workers: int = 2,
                mirror: bool = False, use_labels: bool = False, skip_batches: int = 0, shuffle_buffer: int = 1000,
                resolution: int | None = None, channels: int | None = None, decoder: Decoder = "auto",
                pin_memory: bool = False) -> tuple[DatasetInfo, Batches]:
    """Open one rank's endless, reproducible stream of (images, labels) batches.

    Returns the dataset's metadata and an iterator (:class:`Batches`) of (uint8 [batch_size, C, H, W]
    contiguous CPU tensor, int64 [batch_size] class indices, -1 when `use_labels` is False); its
    `skipped` counts the bad samples replaced so far (docs/data.md, "Bad data"). For fixed (source,
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
        return info, Batches(iter(dataset), pin_memory=pin_memory)
    # The workers ignore SIGTERM / SIGINT: a scheduler signals the whole process group, and the
    # training process must finish its step and save instead of losing a worker (training.signals).
    loader = DataLoader(dataset, batch_size=None, num_workers=workers, persistent_workers=True, pin_memory=pin_memory,
                        worker_init_fn=ignore_stop_signals)
    with forking_loader_workers():
        batches = iter(loader)
    return info, Batches(batches)
