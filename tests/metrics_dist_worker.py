"""One process of the 2-process metrics test (started by torch.multiprocessing.spawn with gloo)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.distributed as dist

# Imported before init_process_group, as the entry points do: stylegan imports ops, which imports
# torch._dynamo, and importing torch._dynamo after the group exists leaves references to it that
# destroy_process_group cannot drop; gloo's threads then outlive it, and about one exit in six
# aborted ("terminate called without an active exception", torch 2.13).
import stylegan
from equivariance_helpers import FourierToy
from training.metrics import MetricUnavailable, RandomConvFeatures, Ranks, compute_metrics, parse_metrics
from training.metrics.gather import run_parts
from training.metrics.snapshot import build_extractor_everywhere

METRICS = "fid30_full,kid30_full,pr30_3_full,is30"
# 7 seeds in parts of 3: groups of 4 seeds (one transform each) straddle parts and processes.
EQ_METRICS = "eqt7_int,eqt7_frac,eqr7,eqr5"


def tiny_generator():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        G, _ = stylegan.build("tiny", resolution=16, img_channels=1)
    return G.eval()


def ragged_part(part: int) -> dict[str, torch.Tensor]:
    """Parts of 0, 1, 2 rows, so rounds are uneven and some ranks send nothing."""
    n = part % 3
    return {"a": torch.arange(2 * n, dtype=torch.float32).reshape(n, 2) + 10 * part, "b": torch.full((n, 1), -float(part))}


def metrics_and_parts(ranks: Ranks, dataset: str) -> dict:
    results = compute_metrics(tiny_generator(), parse_metrics(METRICS), RandomConvFeatures(dim=16), data=dataset,
                              cache=False, batch_size=8, ranks=ranks)
    seen: list = []
    run_parts(7, ragged_part, {"a": 2, "b": 1}, ranks, torch.device("cpu"),
              lambda p, out: seen.append([p, out["a"].tolist(), out["b"].tolist()]))
    eq = compute_metrics(FourierToy(), parse_metrics(EQ_METRICS), None, batch_size=3, ranks=ranks)
    return {"results": {k: v for r in results for k, v in r.results.items()}, "parts": seen,
            "eq": {k: v for r in eq for k, v in r.results.items()}}


def run(rank: int, world_size: int, init_file: str, dataset: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        ranks = Ranks.current()
        out = metrics_and_parts(ranks, dataset)
        # The extractor fails on rank 1 only: every rank must learn it (no rank may go on alone and hang).
        try:
            build_extractor_everywhere("random" if rank == 0 else "inception", torch.device("cpu"), ranks,
                                       inception_weights=f"{out_dir}/missing.pth")
            out["unavailable"] = None
        except MetricUnavailable as exc:
            out["unavailable"] = str(exc)
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps(out))
    finally:
        dist.destroy_process_group()
