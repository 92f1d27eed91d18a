"""A run's counters and its seed derivation: the small pieces every part of the loop shares.

:class:`Progress` is what ``state/progress.json`` holds (steps, images, ticks, skipped steps, the data
position); :func:`derive_seed` turns ``--seed`` and a purpose into the seed of one random stream
(network init, each process's generator, the data order of a segment, the sample grid), stable
across Python runs and machines.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from typing import Any


def derive_seed(*parts: int | str) -> int:
    """A 63-bit seed from ``parts`` (stable across Python runs, unlike ``hash``)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


@dataclass
class Progress:
    """Counters saved in ``state/progress.json``; ``data_*`` is this run's position in the data."""

    step: int = 0
    nimg: int = 0
    tick: int = 0
    tick_start_nimg: int = 0
    skipped_total: int = 0
    bad_in_row: int = 0
    data_segment: int = 0
    data_batches: int = 0
    data_batch_gpu: int = 0
    data_world_size: int = 0
    train_sec: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Progress":
        """Read the counters back from ``progress.json`` (other keys there are descriptive)."""
        types = {f.name: (float if f.name == "train_sec" else int) for f in dataclasses.fields(cls)}
        return cls(**{k: types[k](v) for k, v in d.items() if k in types})
