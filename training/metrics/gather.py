"""Work split over processes, gathered in a fixed order, so results do not depend on the world size.

A pass (real images, generated images) is cut into *parts* whose contents do not depend on the
number of processes: a shard of the dataset, or ``batch_size`` consecutive seeds. Process ``r`` of
``W`` computes parts ``r, r + W, r + 2W, ...``; in round ``t`` every process holds part
``t * W + r`` (or nothing, past the end), and one ``all_gather`` hands them to rank 0, which
consumes them in part order ``0, 1, 2, ...``. Each part's features come from the same images in
the same forward batches whatever ``W`` is, and rank 0 adds them up in the same order, so one
process and eight give bit-identical numbers (on the same kind of device).

``all_gather`` needs equal shapes: each round first gathers the row counts, then the rows padded
to the largest count, all outputs of a part concatenated into one float32 buffer (one collective
per round). Works with gloo (CPU tensors) and NCCL (CUDA tensors): the buffer lives on ``device``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch
import torch.distributed as torch_dist

Outputs = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Ranks:
    """This process's place: ``rank`` of ``world_size`` (1 process when no group is initialised)."""

    rank: int = 0
    world_size: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank={self.rank}, world_size={self.world_size}: expected 0 <= rank < world_size")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def current(cls) -> Ranks:
        """From the initialised ``torch.distributed`` group (Accelerate, torchrun), else one process."""
        if torch_dist.is_available() and torch_dist.is_initialized():
            return cls(torch_dist.get_rank(), torch_dist.get_world_size())
        return cls()

    def check_group(self) -> None:
        if self.world_size > 1 and not (torch_dist.is_available() and torch_dist.is_initialized()):
            raise RuntimeError(
                f"world_size={self.world_size} but torch.distributed is not initialised; start the processes with "
                "torchrun / accelerate launch (or call torch.distributed.init_process_group)"
            )


def broadcast_object(obj: Any, ranks: Ranks, device: torch.device) -> Any:
    """Rank 0's ``obj`` on every process (small picklable values: flags, result dicts)."""
    if ranks.world_size == 1:
        return obj
    box = [obj]
    torch_dist.broadcast_object_list(box, src=0, device=device if device.type == "cuda" else None)
    return box[0]


def all_gather_objects(obj: Any, ranks: Ranks) -> list[Any]:
    """Every process's ``obj`` (small picklable values: per-part tallies), in rank order."""
    if ranks.world_size == 1:
        return [obj]
    out: list[Any] = [None] * ranks.world_size
    torch_dist.all_gather_object(out, obj)
    return out


def run_parts(
    num_parts: int,
    work: Callable[[int], Outputs],
    dims: Mapping[str, int],
    ranks: Ranks,
    device: torch.device,
    consume: Callable[[int, Outputs], None],
    progress: Callable[[int], None] | None = None,
) -> None:
    """Run ``work(part)`` for this rank's parts and call ``consume(part, outputs)`` on rank 0, in order.

    ``work`` returns float tensors ``{name: [n, dims[name]]}`` (n may differ between parts, may be
    0); ``consume`` receives them on ``device``. ``progress(n)`` is called on rank 0 with the rows
    of each round. Every rank must call this with the same ``num_parts`` and ``dims``.
    """
    ranks.check_group()
    names = list(dims)
    width = sum(dims.values())
    report = progress or (lambda n: None)
    rounds = -(-num_parts // ranks.world_size)
    for t in range(rounds):
        part = t * ranks.world_size + ranks.rank
        out = work(part) if part < num_parts else {n: torch.zeros(0, dims[n], device=device) for n in names}
        _check_outputs(out, dims, part)
        if ranks.world_size == 1:
            consume(part, {n: out[n].to(device) for n in names})
            report(next(iter(out.values())).shape[0] if out else 0)
            continue
        rows = torch.cat([out[n].to(device, torch.float32) for n in names], dim=1)      # [n, width]
        counts = [torch.zeros(1, dtype=torch.int64, device=device) for _ in range(ranks.world_size)]
        torch_dist.all_gather(counts, torch.tensor([rows.shape[0]], dtype=torch.int64, device=device))
        counts_list = [int(c.item()) for c in counts]
        padded = torch.zeros(max(counts_list), width, device=device)
        padded[: rows.shape[0]] = rows
        gathered = [torch.empty_like(padded) for _ in range(ranks.world_size)]
        torch_dist.all_gather(gathered, padded)
        if ranks.is_main:
            for r, (buf, n) in enumerate(zip(gathered, counts_list)):
                p = t * ranks.world_size + r
                if p < num_parts:
                    consume(p, dict(zip(names, buf[:n].split(list(dims.values()), dim=1))))
            report(sum(counts_list))


def _check_outputs(out: Outputs, dims: Mapping[str, int], part: int) -> None:
    if set(out) != set(dims):
        raise ValueError(f"part {part}: outputs {sorted(out)} but expected {sorted(dims)}")
    sizes = {t.shape[0] for t in out.values()}
    for name, t in out.items():
        if t.ndim != 2 or t.shape[1] != dims[name]:
            raise ValueError(f"part {part}: output {name!r} of shape {tuple(t.shape)}; expected [n, {dims[name]}]")
    if len(sizes) > 1:
        raise ValueError(f"part {part}: outputs have different row counts {sorted(sizes)}")
