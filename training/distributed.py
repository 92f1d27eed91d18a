"""Processes, devices and the few collectives the loop uses.

Accelerate's :class:`~accelerate.PartialState` (the process-group part of ``Accelerator``) sets up the
process group from whatever launched us (``accelerate launch``, ``torchrun``, SLURM through either,
or a plain ``python``) and picks the device. The networks are **not** wrapped in
``DistributedDataParallel``: R1 and path-length regularisation take a double backward, which DDP's
hooks do not support (pytorch#63812). Instead every optimizer step ends with one explicit all-reduce
of a flat buffer holding every gradient (plus a few statistics), so that a step on ``P`` processes
sums exactly the per-sample gradients that one process would sum over the same global batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
import torch.distributed as torch_dist

from training.outputs import OutputError


def _join_elastic_attempt() -> None:
    """Under ``torchrun``'s elastic agent, join the process group through a store prefix of this
    restart attempt.

    The agent lets the workers use its own store (``TORCHELASTIC_USE_AGENT_STORE``), and that store
    outlives a restart: the gloo addresses the killed attempt's workers published there are still
    present when the new workers connect. A new worker that reads its peer's old address before the
    peer has replaced it waits forever in gloo's ``connectFullMesh`` (seen here in 2 of 4 restarts
    under load: both new workers listening, neither connected). Keys under a per-attempt prefix are
    fresh by construction. Outside torchelastic (``accelerate launch``, plain ``python``) nothing
    changes; Accelerate then finds the group initialised and uses it."""
    import os

    env = os.environ
    if torch_dist.is_initialized() or env.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return
    world = int(env.get("WORLD_SIZE", "1"))
    if world < 2:
        return
    from datetime import timedelta

    attempt = env.get("TORCHELASTIC_RESTART_COUNT", "0")
    store = torch_dist.TCPStore(env["MASTER_ADDR"], int(env["MASTER_PORT"]), world, is_master=False,
                                timeout=timedelta(minutes=30))
    prefixed = torch_dist.PrefixStore(f"stylegan/attempt_{attempt}", store)
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(env.get("LOCAL_RANK", "0")))
    torch_dist.init_process_group(backend, store=prefixed, rank=int(env["RANK"]), world_size=world)


@dataclass(frozen=True)
class Dist:
    """Where this process stands: its rank, the number of processes and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        """True when there is more than one process to talk to."""
        return self.world_size > 1

    @classmethod
    def from_accelerate(cls) -> "Dist":
        """Initialise (or join) the process group the launcher describes; CPU runs use gloo."""
        from accelerate import PartialState

        # Imported before the group exists, on purpose: torch._dynamo imported after it keeps
        # references to the default group that destroy_process_group cannot drop, so gloo's threads
        # outlive it and the process can abort at exit ("terminate called without an active
        # exception"; torch 2.13, CPU). Our ops import it anyway (ops.impl), maybe too late.
        import torch._dynamo  # noqa: F401

        _join_elastic_attempt()
        state = PartialState(cpu=not torch.cuda.is_available())
        device = torch.device(state.device)
        if device.type == "cpu":
            device = torch.device("cpu")  # accelerate says "cpu:0"; tensors say "cpu"
        return cls(
            rank=state.process_index,
            world_size=state.num_processes,
            local_rank=state.local_process_index,
            device=device,
        )

    # ------------------------------------------------------------------ collectives
    def sum_(self, tensors: Sequence[torch.Tensor]) -> None:
        """Sum each tensor over all processes, in place, with one flat all-reduce.

        The tensors are concatenated into one float32 buffer on this process's device, reduced
        once and copied back; one collective per optimizer step keeps latency out of the loop.
        """
        if not self.active or not tensors:
            return
        flat = torch.cat([t.detach().reshape(-1).to(self.device, torch.float32) for t in tensors])
        torch_dist.all_reduce(flat, op=torch_dist.ReduceOp.SUM)
        offset = 0
        for t in tensors:
            n = t.numel()
            t.copy_(flat[offset : offset + n].view_as(t))
            offset += n

    def barrier(self) -> None:
        if self.active:
            torch_dist.barrier()

    def main_writes(self, write: Callable[[], Any]) -> Any:
        """Run ``write`` on the main process alone (only it writes files) and tell every process how
        it went: its result (a small value, e.g. a path) is returned everywhere, and an
        :class:`OutputError` (a full disk, a read-only folder) is raised on every process, which
        then stops with the same one line. A plain barrier after the write would leave the others
        waiting for a process that has stopped, until the launcher kills them or gloo reports the
        lost peer with a traceback. A collective: every process calls it at the same point."""
        result, failure = None, None
        if self.is_main:
            try:
                result = write()
            except OutputError as err:
                if not self.active:
                    raise
                failure = (err.filename, err.strerror, err.errno)
        result, failure = self.broadcast_object((result, failure))
        if failure is not None:
            raise OutputError(*failure)
        return result

    def broadcast_object(self, obj: Any, src: int = 0) -> Any:
        """``obj`` from rank ``src`` on every process (small picklable values only: paths, flags)."""
        if not self.active:
            return obj
        box = [obj]
        torch_dist.broadcast_object_list(box, src=src, device=self._object_device())
        return box[0]

    def all_gather_object(self, obj: Any) -> list[Any]:
        """Every process's ``obj``, in rank order (small values: RNG states)."""
        if not self.active:
            return [obj]
        out: list[Any] = [None] * self.world_size
        torch_dist.all_gather_object(out, obj)
        return out

    def broadcast_module_(self, module: torch.nn.Module, src: int = 0) -> None:
        """Copy rank ``src``'s parameters and buffers into ``module`` on every process."""
        if not self.active:
            return
        with torch.no_grad():
            for t in list(module.parameters()) + list(module.buffers()):
                torch_dist.broadcast(t.data, src=src)

    def max_difference(self, values: torch.Tensor) -> float:
        """Largest spread (max - min over processes) of any element of ``values``; 0 on one process."""
        if not self.active:
            return 0.0
        v = values.detach().to(self.device, torch.float64).reshape(-1)
        hi, lo = v.clone(), -v.clone()
        torch_dist.all_reduce(hi, op=torch_dist.ReduceOp.MAX)
        torch_dist.all_reduce(lo, op=torch_dist.ReduceOp.MAX)
        return float((hi + lo).max())

    def _object_device(self) -> torch.device | None:
        return self.device if self.device.type == "cuda" else None


def module_fingerprint(modules: Sequence[torch.nn.Module]) -> torch.Tensor:
    """Two float64 numbers per parameter and buffer that change when any of its values changes.

    The plain sum and a position-weighted sum (so that swapped values show too), computed tensor by
    tensor so the extra memory is that of the largest tensor, not of the whole network.
    """
    parts = []
    for module in modules:
        for t in list(module.parameters()) + list(module.buffers()):
            flat = t.detach().reshape(-1).double()
            weights = torch.arange(1, flat.numel() + 1, dtype=torch.float64, device=flat.device) / max(flat.numel(), 1)
            parts.append(torch.stack([flat.sum(), (flat * weights).sum()]))
    return torch.cat(parts) if parts else torch.zeros(2, dtype=torch.float64)
