"""One of two torchrun processes: join the group the way training does, import the networks (and
with them torch._dynamo) afterwards, leave the group, and report whether gloo's threads are gone."""

from __future__ import annotations

import os
import sys

import torch.distributed as torch_dist

from training.distributed import Dist  # imports neither stylegan nor ops

assert "torch._dynamo" not in sys.modules, "the check needs torch._dynamo unimported before the group exists"
dist = Dist.from_accelerate()
import stylegan  # noqa: E402,F401  (imports ops -> torch._dynamo, after the group exists)

torch_dist.barrier()
torch_dist.destroy_process_group()
names = []
for task in os.listdir("/proc/self/task"):
    try:
        names.append(open(f"/proc/self/task/{task}/comm").read().strip())
    except OSError:
        pass
print(f"rank {dist.rank} threads after destroy: {sorted(names)}", flush=True)
sys.exit(1 if any(name.startswith(("gloo", "pt_gloo")) for name in names) else 0)
