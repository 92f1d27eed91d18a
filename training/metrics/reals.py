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
* A PNG that cannot be decoded is skipped with a warning naming it (the statistics then hold one
  image fewer); a shard whose image count differs from ``dataset.json`` is an error.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from training.data import DatasetInfo, decode_png, load_dataset_info, read_shard


@dataclass(frozen=True)
class RealSource:
    """A dataset read for statistics: its metadata, the mirror setting and the output resolution."""

    source: str
    info: DatasetInfo
    mirror: bool
    resolution: int

    @property
    def num_parts(self) -> int:
        return len(self.info.shards)

    @property
    def num_images(self) -> int:
        """Images the pass yields (doubled by ``mirror``), as ``dataset.json`` counts them."""
        return self.info.num_images * (2 if self.mirror else 1)


def open_reals(source: str, *, mirror: bool = False, resolution: int | None = None,
               channels: int | None = None) -> RealSource:
    """Read ``dataset.json`` of ``source`` and check it against the generator's resolution and channels."""
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
    return RealSource(str(source), info, bool(mirror), int(res))


def _decode_shard(src: RealSource, part: int) -> Iterator[np.ndarray]:
    url, expected = src.info.shards[part], src.info.shard_counts[part]
    samples = [(key, fields["png"]) for key, fields in read_shard(url) if "png" in fields]
    if len(samples) != expected:
        raise ValueError(
            f"shard {url!r} holds {len(samples)} images but dataset.json lists {expected}: the shard is damaged or "
            "dataset.json belongs to other shards"
        )
    res, ch = src.info.resolution, src.info.channels
    for key, data in samples:
        try:
            image = decode_png(data)
        except (OSError, ValueError, RuntimeError) as exc:
            warnings.warn(f"metrics: skipping unreadable image {url}:{key}.png ({exc})", stacklevel=2)
            continue
        if image.shape != (res, res, ch):
            raise ValueError(
                f"image {url}:{key}.png is {image.shape[1]}x{image.shape[0]}x{image.shape[2]} but dataset.json says "
                f"{res}x{res}x{ch}: the shards do not match their dataset.json"
            )
        yield image


def downsample(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """uint8 [N, C, R, R] -> [N, C, r, r] by averaging R/r x R/r boxes, rounded to nearest."""
    factor = images.shape[-1] // resolution
    if factor == 1:
        return images
    x = F.avg_pool2d(images.float(), kernel_size=factor)
    return x.round_().clamp_(0, 255).to(torch.uint8)


def iter_part(src: RealSource, part: int, batch_size: int) -> Iterator[torch.Tensor]:
    """The images of shard ``part`` as uint8 [B, C, r, r] CPU batches (each followed by its flip when mirrored)."""
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size}: expected >= 1")
    buffer: list[np.ndarray] = []
    images = _decode_shard(src, part)
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
