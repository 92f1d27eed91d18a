"""One deterministic pass over every real image, shard by shard (the "_full" in ``fid50k_full``).

The training stream (:func:`training.data.open_stream`) is endless and resampled: right for
training, wrong for statistics that must see each image exactly once. This reader walks the shards
listed in ``dataset.json`` in order and yields each image once, in tar order, as uint8
``[B, C, r, r]`` batches, using the data module's shard reader and PNG decoder. A shard is the
unit of work that :mod:`training.metrics.gather` spreads over processes.

* ``mirror=True`` adds the x-flip of every image (the dataset doubles, as with ``--mirror`` in
  training), each batch followed by its flipped copy.
* ``resolution`` below the dataset's (a progressive-growing snapshot that runs at 64x64 on a
  256x256 dataset) box-filters the reals down to it, as the generator's images are compared at
  the resolution it produces.
* Damaged data is read with the training stream's own checks (:func:`training.data.check_shard`,
  :func:`training.data.decode_sample`): an undecodable PNG, an image of the wrong size, a label
  that is not a class (when the network is conditional), the images a truncated, missing or empty
  shard does not deliver, are **skipped**, never replaced (a stand-in, as training uses, would
  count one real image twice and bias the statistics). Each is one :class:`DataWarning` naming the
  shard and member, and counted in a :class:`PartTally`; the runner decides from the tallies,
  in shard order, whether the pass can stand (three unreadable shards in a row, or no usable
  image at all, stop it with :class:`DataError`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from training.data import (NAMED_BAD_SAMPLES, BadSample, DataError, DataWarning, DatasetInfo, UnreadableRun,
                           check_shard, decode_sample, load_dataset_info)


@dataclass(frozen=True)
class RealSource:
    """A dataset read for statistics: its metadata, the mirror setting and the output resolution."""

    source: str
    info: DatasetInfo
    mirror: bool
    resolution: int
    labels: bool = False  # check each sample's label, as a conditional network's training does

    @property
    def num_parts(self) -> int:
        return len(self.info.shards)

    @property
    def num_images(self) -> int:
        """Images the pass yields (doubled by ``mirror``), as ``dataset.json`` counts them."""
        return self.info.num_images * (2 if self.mirror else 1)


def open_reals(source: str, *, mirror: bool = False, resolution: int | None = None,
               channels: int | None = None, labels: bool = False) -> RealSource:
    """Read ``dataset.json`` of ``source`` and check it against the generator's resolution and channels.
    ``labels``: also skip samples whose label training would refuse (for a conditional network on
    labelled data; the statistics then cover exactly the images its training could use)."""
    info = load_dataset_info(source)
    res = info.resolution if resolution is None else resolution
    if res > info.resolution or res < 1 or info.resolution % res or (info.resolution // res) & (info.resolution // res - 1):
        raise ValueError(
            f"the network's resolution {res} does not fit the dataset's {info.resolution} ({source}): expected the "
            f"dataset's resolution or a power-of-two fraction of it (a progressive-growing stage)"
        )
    if channels is not None and channels != info.channels:
        raise ValueError(
            f"the network makes {channels}-channel images but the dataset {source} has {info.channels} channels"
        )
    return RealSource(str(source), info, bool(mirror), int(res), bool(labels and info.labelled))


@dataclass
class PartTally:
    """What the pass made of one shard: images used and skipped (dataset images, not doubled by
    ``mirror``), and why the shard could not be read at all (None when it could)."""

    used: int = 0
    skipped: int = 0
    unreadable: str | None = None
    named: list[int] = field(default_factory=lambda: [0])  # bad samples named so far (shared per pass)

    def warn(self, text: str) -> None:
        self.named[0] += 1
        if self.named[0] <= NAMED_BAD_SAMPLES:
            more = " (further bad samples of this pass are counted, not named)" if self.named[0] == NAMED_BAD_SAMPLES else ""
            warnings.warn(text + more, DataWarning, stacklevel=3)


def _decode_shard(src: RealSource, part: int, tally: PartTally) -> Iterator[np.ndarray]:
    url, expected = src.info.shards[part], src.info.shard_counts[part]
    check = check_shard(url, expected)
    if check.unreadable is not None or check.problem is not None:
        warnings.warn(check.warning("skipped"), DataWarning, stacklevel=3)  # a shard's problems are always named
    tally.unreadable, tally.skipped = check.unreadable, check.missing
    for key, fields in check.samples:
        try:
            image, _ = decode_sample(src.info, url, key, fields, use_labels=src.labels)
        except BadSample as exc:
            tally.skipped += 1
            tally.warn(f"skipping {exc}")
            continue
        tally.used += 1
        yield image


def check_tallies(src: RealSource, tallies: Sequence[PartTally]) -> int:
    """The number of images skipped over the pass, or :class:`DataError` (one line) when the pass
    cannot stand: three shards in a row unreadable (the training stream's rule, in shard order), or
    not one usable image."""
    run = UnreadableRun()
    for part, tally in enumerate(tallies):
        if tally.unreadable is not None:
            run.add(src.info.shards[part], tally.unreadable)
        else:
            run.clear()
    skipped = sum(t.skipped for t in tallies)
    if not any(t.used for t in tallies):
        raise DataError(f"no usable real image: all {skipped} images of {len(tallies)} shard(s) of {src.source} were "
                        "skipped (see the warnings above); stopping")
    return skipped


def downsample(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """uint8 [N, C, R, R] -> [N, C, r, r] by averaging R/r x R/r boxes, rounded to nearest."""
    factor = images.shape[-1] // resolution
    if factor == 1:
        return images
    x = F.avg_pool2d(images.float(), kernel_size=factor)
    return x.round_().clamp_(0, 255).to(torch.uint8)


def iter_part(src: RealSource, part: int, batch_size: int, tally: PartTally | None = None) -> Iterator[torch.Tensor]:
    """The usable images of shard ``part`` as uint8 [B, C, r, r] CPU batches (each followed by its
    flip when mirrored); ``tally`` (when given) receives the counts of used and skipped images."""
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size}: expected >= 1")
    buffer: list[np.ndarray] = []
    images = _decode_shard(src, part, tally if tally is not None else PartTally())
    while True:
        buffer.clear()
        for image in images:
            buffer.append(image)
            if len(buffer) == batch_size:
                break
        if not buffer:
            return
        batch = downsample(torch.from_numpy(np.stack(buffer)).permute(0, 3, 1, 2).contiguous(), src.resolution)
        yield batch
        if src.mirror:
            yield batch.flip(-1)
        if len(buffer) < batch_size:
            return
