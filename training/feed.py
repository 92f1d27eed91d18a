"""This process's supply of real images: the data stream, its position, and the wait for it.

The stream (:func:`training.data.open_stream`) is split per rank and seeded from ``--seed``; it is
kept out of ``accelerator.prepare`` on purpose (accelerate#2162, #4075), and batches are moved to
the device here. Its position is a number of batches, so resuming opens the same stream and skips
to the same batch. The per-process batch can change during a run (``--growth-batch``) or on resume
(``--batch-gpu``); each change starts a new *segment*: a fresh stream with its own seed, position 0.
``Progress.data_*`` records segment, batch size and position.
"""

from __future__ import annotations

import time
from typing import Iterator

import torch
import torch.nn.functional as F

from training.data import open_stream
from training.distributed import Dist
from training.counters import Progress, derive_seed
from training.signals import StopRequest


class DataFeed:
    """Batches of reals for one process; counts the seconds spent waiting for them."""

    def __init__(self, source: str, *, dist: Dist, seed: int, workers: int, mirror: bool, c_dim: int,
                 progress: Progress, stop: StopRequest | None = None) -> None:
        self.source, self.dist, self.seed, self.workers = source, dist, seed, workers
        self.mirror, self.c_dim, self.progress, self.stop = mirror, c_dim, progress, stop
        self.wait_sec = 0.0
        self.reused_last_batch = False
        self._skipped_closed = 0  # bad samples replaced by streams already closed (earlier segments)
        self._skipped_taken = 0
        self._iter: Iterator[tuple[torch.Tensor, torch.Tensor]] | None = None
        self._last: tuple[torch.Tensor, torch.Tensor] | None = None

    def ensure(self, batch_gpu: int) -> None:
        """Open (or re-open at a new segment) the stream for micro-batches of ``batch_gpu``."""
        p = self.progress
        same_shape = p.data_batch_gpu == batch_gpu and p.data_world_size == self.dist.world_size
        if self._iter is not None and same_shape:
            return
        if not same_shape:
            if p.data_batch_gpu:  # an earlier segment exists: this is a change, not the start
                p.data_segment += 1
            p.data_batch_gpu, p.data_world_size, p.data_batches = batch_gpu, self.dist.world_size, 0
        self.close()
        _, self._iter = open_stream(
            self.source,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
            seed=derive_seed(self.seed, "data", p.data_segment) % 2**31,
            batch_size=batch_gpu,
            workers=self.workers,
            mirror=self.mirror,
            use_labels=self.c_dim > 0,
            skip_batches=p.data_batches,
            pin_memory=self.dist.device.type == "cuda",
        )

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 images ``[n, C, H, W]`` and one-hot labels ``[n, c_dim]``, on the device."""
        if self._iter is None:
            raise RuntimeError("DataFeed.next() before ensure()")
        t0 = time.perf_counter()
        try:
            images, labels = next(self._iter)
        except Exception:
            # The loader workers ignore SIGTERM / SIGINT (training.signals), but one may still die
            # (a SIGKILL to the group, the OOM killer). While a stop is under way, finish the last
            # step with the previous batch instead of failing: the other processes are waiting for
            # this one in the step's all-reduce.
            if self.stop is None or not self.stop.requested or self._last is None:
                raise
            images, labels = self._last
            self.reused_last_batch = True
        self._last = (images, labels)
        self.wait_sec += time.perf_counter() - t0
        device = self.dist.device
        images = images.to(device, non_blocking=True)
        if self.c_dim:
            c = F.one_hot(labels.to(device), self.c_dim).float()
        else:
            c = torch.zeros([images.shape[0], 0], device=device)
        return images, c

    def take_skipped(self) -> int:
        """Bad samples the stream replaced (training.data, "stand-ins") since the last call, summed
        over all processes: a collective, so every process calls it at the same point (a tick)."""
        now = self._skipped_closed + getattr(self._iter, "skipped", 0)
        count = torch.tensor([float(now - self._skipped_taken)])
        self._skipped_taken = now
        self.dist.sum_([count])
        return int(count.item())

    def close(self) -> None:
        """Drop the stream; its loader workers exit when the iterator is collected."""
        self._skipped_closed += getattr(self._iter, "skipped", 0)
        self._iter = None
