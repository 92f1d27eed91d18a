"""The training loop's hook: metrics of one snapshot, written to ``metric-<name>.jsonl``.

:func:`evaluate_snapshot` is what ``training/loop.py`` calls after writing a network snapshot
(all processes call it; see docs/metrics.md for the exact call). It returns a flat dict of numbers
(``{"fid50k_full": 12.3, "pr50k3_full_precision": 0.71, ...}``) for ``stats.jsonl`` and
TensorBoard, and the main process appends one line per metric to ``<run_dir>/metric-<name>.jsonl``
naming the snapshot. When the feature network cannot be had here (torch-fidelity or the Inception
weights are missing, on any process), it warns once per call (through ``log`` when given, else
``warnings.warn``) with the message that says what to install and where to put the file, and
skips the metrics that need it (the equivariance metrics compare pixels and still run; with none
left it returns ``{}``): training goes on. Other errors (a damaged
dataset, a wrong argument, an equivariance metric for a network that is not StyleGAN3) raise.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.distributed as torch_dist
from torch import nn

from training.metrics.features import FeatureExtractor, build_extractor
from training.metrics.gather import Ranks
from training.metrics.inception import MetricUnavailable
from training.metrics.runner import MetricResult, compute_metrics
from training.metrics.specs import MetricSpec, parse_metrics


def build_extractor_everywhere(kind: str, device: torch.device, ranks: Ranks, **kwargs) -> FeatureExtractor:
    """Build the extractor on every process; if it fails on any, raise the same MetricUnavailable on all.

    A process that goes on alone into a collective would hang the others, so the outcome is agreed
    with one ``all_gather_object`` before any pass starts.
    """
    extractor, error = None, None
    try:
        extractor = build_extractor(kind, device, **kwargs)
    except MetricUnavailable as exc:
        error = str(exc)
    if ranks.world_size > 1:
        errors: list[str | None] = [None] * ranks.world_size
        torch_dist.all_gather_object(errors, error)
        failed = [(r, e) for r, e in enumerate(errors) if e is not None]
        if failed:
            rank, message = failed[0]
            raise MetricUnavailable(message if rank == 0 else f"(on rank {rank}) {message}")
    elif error is not None:
        raise MetricUnavailable(error)
    return extractor


def write_metric_records(run_dir: Path, results: Sequence[MetricResult], *, snapshot: str, kimg: float | None,
                         sec: float, extra: dict | None = None) -> list[Path]:
    """Append one JSON line per metric to ``run_dir/metric-<name>.jsonl`` (main process only)."""
    paths = []
    for r in results:
        record = {
            "metric": r.metric,
            "results": {k: (v if math.isfinite(v) else None) for k, v in r.results.items()},
            "snapshot": snapshot,
            "kimg": kimg,
            "num_gen": r.num_gen,
            "num_real": r.num_real,
            "real_skipped": r.real_skipped,
            "features": r.features,
            "total_sec": round(sec, 3),
            "timestamp": time.time(),
            **(extra or {}),
        }
        path = Path(run_dir) / f"metric-{r.metric}.jsonl"
        with open(path, "a", encoding="utf-8") as f:  # one short line, appended: a crash loses at most that line
            f.write(json.dumps(record, sort_keys=True) + "\n")
        paths.append(path)
    return paths


def flat_results(results: Sequence[MetricResult]) -> dict[str, float]:
    """``{"fid50k_full": ..., "pr50k3_full_precision": ..., "is50k_mean": ...}`` in metric order."""
    return {k: v for r in results for k, v in r.results.items()}


def evaluate_snapshot(
    G: nn.Module,
    *,
    metrics: Sequence[str] | str | Sequence[MetricSpec],
    data: str,
    run_dir: str | Path,
    snapshot: str,
    kimg: float | None = None,
    mirror: bool = False,
    features: str = "inception",
    inception_weights: str | None = None,
    cache_dir: str | None = None,
    batch_size: int = 64,
    ranks: Ranks | None = None,
    device: torch.device | str | None = None,
    log: Callable[[str], None] | None = None,
    progress: bool = False,
) -> dict[str, float]:
    """Compute ``metrics`` for ``G`` (G_ema) and record them; call on every process.

    Returns the flat results on every process (without the feature metrics when the feature network is
    unavailable).
    ``device`` defaults to G's; ``ranks`` to the ``torch.distributed`` group. ``log`` (main
    process) gets one-line notes and the unavailability warning (without ``log`` that warning is
    a ``UserWarning``).
    """
    ranks = ranks or Ranks.current()
    device = torch.device(device) if device is not None else next(G.parameters()).device
    if isinstance(metrics, str) or not all(isinstance(m, MetricSpec) for m in metrics):
        specs = parse_metrics(metrics)
    else:
        specs = list(metrics)
    start = time.perf_counter()
    extractor = None
    if any(s.needs_features for s in specs):
        try:
            extractor = build_extractor_everywhere(features, device, ranks, inception_weights=inception_weights,
                                                   cache_dir=cache_dir)
        except MetricUnavailable as exc:
            skipped = [s for s in specs if s.needs_features]
            message = f"metrics {', '.join(s.name for s in skipped)} skipped for {snapshot}: {exc}"
            if ranks.is_main:  # one message: to the run's log when there is one, else as a Python warning
                if log is not None:
                    log(f"warning: {message}")
                else:
                    warnings.warn(message, stacklevel=2)
            specs = [s for s in specs if not s.needs_features]  # the equivariance metrics need no features
            if not specs:
                return {}
    was_training = G.training
    G.eval()
    try:
        results = compute_metrics(G, specs, extractor, data=data, mirror=mirror, ranks=ranks, batch_size=batch_size,
                                  cache_dir=cache_dir, progress=progress, log=log)
    finally:
        G.train(was_training)
    if ranks.is_main:
        write_metric_records(Path(run_dir), results, snapshot=snapshot, kimg=kimg, sec=time.perf_counter() - start,
                             extra={"processes": ranks.world_size, "mirror": mirror})
    return flat_results(results)
