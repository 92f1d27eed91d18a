"""Quality metrics of a network file: FID, KID, precision / recall, Inception Score, and StyleGAN3's
equivariance (EQ-T, EQ-R).

    python tools/metrics.py --network network-snapshot-000200.safetensors --data DATASET \\
        --metrics fid50k_full,kid50k_full,pr50k3_full,is50k [--truncation 1] [--mirror]
    python tools/metrics.py --network stylegan3-snapshot.safetensors --metrics eqt50k_int,eqt50k_frac,eqr50k
    torchrun --nproc-per-node 8 tools/metrics.py ...          # split over 8 GPUs, same numbers

Published-comparable numbers need the Inception weights and torch-fidelity (docs/metrics.md);
``--features random`` runs the same code with a weight-free random network (demos, tests).
``--network`` also takes NVIDIA's StyleGAN2 and StyleGAN3 ``.pkl`` (read without running its code,
converted in memory; said in one line on stderr).
The library is :mod:`training.metrics`; this CLI loads the network, sets up the processes that
torchrun started, and prints (and optionally records) the results.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as `python tools/metrics.py` from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import click
import torch
import torch.distributed as torch_dist
from tqdm import tqdm

from tools import genlib
from tools.cli_common import NETWORK_HELP, finite_float, flags, nvidia_flag, say
from training import metrics as M
from training.cpu_threads import local_share, set_threads_for_load
from training.data import DataError, forward_data_warnings


class DataStop(click.ClickException):
    """The reals cannot give statistics (damaged beyond use): one line, exit status 2."""

    exit_code = 2


def _metrics_option(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        M.parse_metrics(value, ctx.params.get("num_gen"))
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None
    return value


def run_defaults(network: Path) -> tuple[str | None, bool | None, Path | None]:
    """``(data, mirror, config.json)`` of the training run a snapshot lies in (``config.json``
    beside it), as NVIDIA's calc_metrics takes them from the run's options; ``None``s elsewhere.
    A relative data path is taken from where the run was started when it is not found from here."""
    config = network.parent / "config.json"
    try:
        train = json.loads(config.read_text()).get("train") or {}
    except (OSError, ValueError, AttributeError):
        return None, None, None
    data, mirror = train.get("data"), train.get("mirror")
    data = data if isinstance(data, str) and data else None
    if data is not None and "://" not in data and ":" not in data.split("/")[0] and not Path(data).is_absolute():
        outdir = Path(str(train.get("outdir") or "."))
        started = network.resolve().parent.parent  # the run's --outdir ...
        if not outdir.is_absolute():
            for _ in outdir.parts:  # ... and the folder the run was started from
                started = started.parent
        if not Path(data).exists() and (started / data).exists():
            data = str(started / data)
    return data, mirror if isinstance(mirror, bool) else None, config


def _init_processes(device: str) -> tuple[M.Ranks, torch.device]:
    """Join the process group torchrun describes (if any); the device of this process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise click.BadParameter("'cuda': CUDA is not available here; use 'cpu' or 'auto'", param_hint="'--device'")
    dev = torch.device(f"cuda:{local}") if device == "cuda" else torch.device("cpu")
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    else:  # the cores other busy processes leave free, shared among this machine's processes
        set_threads_for_load(local_share())
    if world > 1 and not torch_dist.is_initialized():
        torch_dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return M.Ranks.current(), dev


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.option("--network", required=True, type=click.Path(dir_okay=False, path_type=Path), help=NETWORK_HELP)
@click.option("--num-gen", type=click.IntRange(min=2), default=None, is_eager=True,
              help="Generated images per metric, replacing the count in the names (fid50k_full -> fid2k_full).")
@click.option("--metrics", "metric_names", default="fid50k_full", callback=_metrics_option,
              help="Comma-separated: fid50k_full, kid50k_full, pr50k3_full, is50k, and for StyleGAN3 networks "
                   "eqt50k_int, eqt50k_frac, eqr50k (or smaller: fid2k_full, eqt1k_int, ...).")
@click.option("--data", default=None,
              help="Dataset directory or shard pattern (reals; required except for is*).  [default: the run's, from "
                   "config.json beside --network]")
@click.option("--mirror/--no-mirror", default=False,
              help="Add the x-flip of every real image (as training --mirror).  [default: the run's, else off]")
@click.option("--truncation", "truncation_psi", type=float, default=1.0, callback=finite_float,
              help="Truncation psi of the generated images (1 = none, as published metrics).")
@click.option("--noise-mode", type=click.Choice(["random", "const", "none"]), default="random",
              help="Noise inputs of the generator (published metrics: random).")
@click.option("--seed", type=click.IntRange(min=0, max=genlib.MAX_SEED), default=0,
              help="First seed: images are made from seeds SEED .. SEED + N - 1.")
@click.option("--features", type=click.Choice(M.EXTRACTORS), default="inception",
              help="Feature network: inception (published-comparable) or random (weight-free, demos and tests).")
@click.option("--inception-weights", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Inception weights file (else $STYLEGAN_INCEPTION_WEIGHTS, then the cache dir).")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Cache for weights and real statistics (else $STYLEGAN_CACHE_DIR or ~/.cache/stylegan-train).")
@click.option("--cache/--no-cache", default=True, help="Reuse (and store) real-data statistics.")
@click.option("--batch", "batch_size", type=click.IntRange(min=1), default=64, help="Images per forward pass.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
              help="auto = CUDA when available; under torchrun, process i uses cuda:LOCAL_RANK.")
@click.option("--outdir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Also append the results to OUTDIR/metric-<name>.jsonl (as training does).")
@nvidia_flag("--gpus", "here start one process per GPU: torchrun --nproc-per-node N tools/metrics.py ...")
def main(network: Path, num_gen: int | None, metric_names: str, data: str | None, mirror: bool, truncation_psi: float,
         noise_mode: str, seed: int, features: str, inception_weights: Path | None, cache_dir: Path | None,
         cache: bool, batch_size: int, device: str, outdir: Path | None) -> None:
    """Compute quality metrics of a trained network against its dataset."""
    specs = M.parse_metrics(metric_names, num_gen)
    run_data, run_mirror, run_config = run_defaults(network)
    taken = []
    if data is None and run_data is not None and any(s.needs_reals for s in specs):
        data = run_data
        taken.append(f"--data {data}")
    if click.get_current_context().get_parameter_source("mirror") is click.core.ParameterSource.DEFAULT and run_mirror:
        mirror = True
        taken.append("--mirror")
    if taken and int(os.environ.get("RANK", "0")) == 0:
        say(f"{' '.join(taken)}: from {run_config}")
    if data is None and any(s.needs_reals for s in specs):
        needs = ", ".join(s.name for s in specs if s.needs_reals)
        raise click.BadParameter(f"required for {needs} (they compare with the real images)", param_hint="'--data'")
    ranks, dev = _init_processes(device)
    start = time.perf_counter()
    try:
        with flags():
            G = genlib.load_generator(network, device=dev, log=say if ranks.is_main else None)
        try:
            M.check_equivariance_network(G, [s.name for s in specs if s.is_equivariance])
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="'--metrics'") from None
        extractor = None
        if any(s.needs_features for s in specs):  # the equivariance metrics compare pixels
            try:
                extractor = M.build_extractor(features, dev, inception_weights=inception_weights, cache_dir=cache_dir)
            except M.MetricUnavailable as exc:
                raise click.ClickException(str(exc)) from None
        log = (lambda msg: click.echo(msg, err=True)) if ranks.is_main else None
        try:
            with forward_data_warnings(lambda text: tqdm.write(f"warning: {text}", file=sys.stderr)):  # one line each, under the bar
                results = M.compute_metrics(
                    G, specs, extractor, data=data, mirror=mirror, ranks=ranks, batch_size=batch_size,
                    truncation_psi=truncation_psi, noise_mode=noise_mode, seed=seed, cache=cache,
                    cache_dir=None if cache_dir is None else str(cache_dir), progress=ranks.is_main, log=log,
                )
        except DataError as exc:
            raise DataStop(" ".join(str(exc).split())) from None
        except (ValueError, FileNotFoundError) as exc:
            raise click.ClickException(" ".join(str(exc).split())) from None
        if ranks.is_main:
            if outdir is not None:
                outdir.mkdir(parents=True, exist_ok=True)
                M.write_metric_records(outdir, results, snapshot=network.name, kimg=None, sec=time.perf_counter() - start,
                                       extra={"processes": ranks.world_size, "mirror": mirror,
                                              "truncation_psi": truncation_psi, "noise_mode": noise_mode, "seed": seed})
            for r in results:
                click.echo(json.dumps({"metric": r.metric, "results": r.results, "num_gen": r.num_gen,
                                       "num_real": r.num_real, "real_skipped": r.real_skipped, "features": r.features,
                                       "network": str(network)}))
    finally:
        if torch_dist.is_initialized():
            torch_dist.destroy_process_group()


if __name__ == "__main__":
    main()
