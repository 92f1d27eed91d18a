#!/usr/bin/env python
"""Train a StyleGAN2 / ProGAN generator: ``accelerate launch training/train.py [OPTIONS]``.

Also runs as ``python training/train.py`` (one process) and under ``torchrun``. With no options it
trains the ``tiny`` preset on the demo digits in ``data/``, conditioned on the digit. Every option is
checked at start-up; a bad value stops the run with a message that names the option and what is
allowed. See docs/training.md.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

if __package__ in (None, ""):
    # Run as a file: Python put training/ first on sys.path, where our modules would shadow the
    # standard library's; put the repository root there instead.
    _here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _here]
    sys.path.insert(0, str(_here.parent))

import contextlib
import json
import platform
import time
from typing import Any

import click
import torch

import stylegan
from training.checkpoint import find_resumable, read_progress, resolve_resume
from training.config import ConfigError, TrainConfig, micro_batch, parse_growth_batch
from training.data import DataError
from training.distributed import Dist
from training.init_from import options_from_file, plan_init
from training.loop import TrainingDiverged, fit
from training.outputs import OutputError
from training.runlog import RunLog, next_run_dir, trim_stats, write_json_atomic
from training.signals import StopRequest

_DEFAULT = TrainConfig()
# Options a resumed run may change; the others define the run and must stay as saved.
RESUME_MAY_CHANGE = (
    "kimg", "tick", "snap", "workers", "batch_gpu", "max_skipped", "metrics", "metrics_features", "inception_weights",
)


def _opt(*decls: str, help: str, **kw: Any):
    """A click option whose help line ends with its default."""
    kw.setdefault("show_default", True)
    return click.option(*decls, help=help, **kw)


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@_opt("--data", default=_DEFAULT.data, help="Dataset: a folder with dataset.json + shards, or a shard pattern/URL.")
@_opt("--outdir", default=_DEFAULT.outdir, help="Where run folders <NNNNN>-<name>/ are created.")
@_opt("--preset", type=click.Choice(stylegan.PRESETS), default=_DEFAULT.preset, help="Network size and architecture.")
@_opt("--cond/--no-cond", default=None, help="Condition on the class labels.  [default: on when the dataset has labels]")
@_opt("--kimg", type=float, default=_DEFAULT.kimg, help="Training length in thousands of real images shown to D.")
@_opt("--batch", type=int, default=_DEFAULT.batch, help="Global batch size (all processes together).")
@_opt("--batch-gpu", type=int, default=None,
      help="Micro-batch per process; the rest of --batch comes from gradient accumulation.  [default: batch / processes]")
@_opt("--gamma", type=float, default=None,
      help="R1 regularisation weight.  [default: 0.0002 * resolution^2 / batch, printed at start]")
@_opt("--r1-interval", type=int, default=_DEFAULT.r1_interval, help="Run R1 every this many steps (lazy regularisation).")
@_opt("--pl-weight", type=float, default=_DEFAULT.pl_weight, help="Path-length regularisation weight (0 disables it).")
@_opt("--pl-interval", type=int, default=_DEFAULT.pl_interval, help="Run path-length regularisation every this many steps.")
@_opt("--mixing", type=float, default=_DEFAULT.mixing, help="Style-mixing probability.")
@_opt("--ema-kimg", type=float, default=None, help="Half-life of G_ema in kimg.  [default: batch * 10 / 32]")
@_opt("--ema-rampup", type=float, default=_DEFAULT.ema_rampup,
      help="Cap the EMA half-life at this fraction of the images seen so far (0 disables the ramp-up).")
@_opt("--glr", type=float, default=_DEFAULT.glr, help="Generator learning rate (Adam).")
@_opt("--dlr", type=float, default=_DEFAULT.dlr, help="Discriminator learning rate (Adam).")
@_opt("--mirror/--no-mirror", default=_DEFAULT.mirror, help="Augment with random x-flips.")
@_opt("--growth", type=click.Choice(["none", "progressive"]), default=_DEFAULT.growth,
      help="'progressive': grow from --growth-start up to the dataset's resolution (ProGAN).")
@_opt("--growth-start", type=int, default=None, help="Progressive growing: first resolution.  [default: 4]")
@_opt("--fade-kimg", type=float, default=_DEFAULT.fade_kimg, help="Progressive growing: kimg per fade-in phase.")
@_opt("--stable-kimg", type=float, default=_DEFAULT.stable_kimg, help="Progressive growing: kimg per stable phase.")
@_opt("--growth-batch", default=_DEFAULT.growth_batch,
      help="Progressive growing: global batch per resolution, e.g. '4:128,8:128,16:64' (others use --batch).")
@_opt("--precision", type=click.Choice(["fp32", "fp16", "bf16"]), default=None,
      help="Arithmetic precision.  [default: accelerate config's mixed_precision, else fp32]")
@_opt("--tick", type=float, default=_DEFAULT.tick, help="Progress report (stats.jsonl line) every this many kimg.")
@_opt("--snap", type=int, default=_DEFAULT.snap, help="Snapshot, sample grid and state every this many ticks.")
@_opt("--resume", default=None, help="'auto' (newest run in --outdir with a state, else start anew) or a run folder.  [default: none, a new run]")
@_opt("--init", default=None, type=click.Path(dir_okay=False),
      help="Start this new run from the weights (G, D, G_ema) of a network file, e.g. a network-snapshot-*."
           "safetensors: fine-tuning. Optimizers and counters start afresh.  [default: none, random weights]")
@_opt("--seed", type=int, default=_DEFAULT.seed, help="Random seed (weights, data order, latents).")
@_opt("--workers", type=int, default=_DEFAULT.workers, help="Data loader processes per training process.")
@_opt("--max-skipped", type=int, default=_DEFAULT.max_skipped,
      help="Stop after this many steps in a row with a non-finite loss.")
@_opt("--metrics", default=_DEFAULT.metrics, show_default="none",
      help="Metrics at each snapshot, comma-separated (fid50k_full,kid50k_full,pr50k3_full,is50k; smaller "
           "counts like fid2k_full). Empty: none. See docs/metrics.md.")
@_opt("--metrics-features", type=click.Choice(["inception", "random"]), default=_DEFAULT.metrics_features,
      help="Feature network for --metrics: the TF-FID Inception-v3 (published-comparable; needs torch-fidelity "
           "and its weights, else the metrics are skipped with a warning) or a seeded random network (demos).")
@_opt("--inception-weights", default=None,
      help="Path of the Inception weights file.  [default: $STYLEGAN_INCEPTION_WEIGHTS, else the cache folder]")
@_opt("--threads", type=int, default=None,
      help="CPU threads per process.  [default: this machine's cores / its training processes]")
@_opt("--dry-run", is_flag=True, default=False,
      help="Print the resolved config, parameter counts and a memory estimate, then exit.  [default: off]")
def main(**opts: Any) -> None:
    """Train a StyleGAN2 / ProGAN generator (see docs/training.md)."""
    ctx = click.get_current_context()
    threads, dry_run, resume = opts.pop("threads"), opts.pop("dry_run"), opts.pop("resume")
    if threads is not None and threads < 1:
        raise click.BadParameter(f"{threads}: expected an integer >= 1", param_hint="--threads")
    dist = Dist.from_accelerate()
    given = {k for k in opts if ctx.get_parameter_source(k) not in (click.core.ParameterSource.DEFAULT, None)}

    outdir = Path(opts["outdir"])
    if outdir.exists() and not outdir.is_dir():
        raise click.BadParameter(f"{str(outdir)!r} exists and is not a folder", param_hint="--outdir")
    run_dir, state_dir = _find_resume(resume, opts["outdir"], dist)
    inherited = {}  # a new run from a network file takes its preset and conditioning unless given
    if run_dir is None and opts["init"] is not None:
        inherited = {k: v for k, v in options_from_file(opts["init"]).items() if k not in given}
        opts.update(inherited)
    cfg = _config_for(opts, given, run_dir)
    if cfg.init is not None and run_dir is None and "ema_rampup" not in given:
        cfg = cfg.replace(ema_rampup=0.0)  # G_ema starts trained: no ramp-up that would overwrite it at once
    cfg, info, net_config = _resolve(cfg, dist)
    if cfg.init is not None and state_dir is None:
        try:
            plan_init(cfg.init, net_config)
        except ValueError as err:
            raise click.BadParameter(str(err), param_hint="--init")
    _set_threads(threads)

    lines = _describe(cfg, opts, given | set(inherited), dist)
    if inherited:
        flags = [f"--preset={v}" if k == "preset" else ("--cond" if v else "--no-cond") for k, v in inherited.items()]
        lines.insert(2, "from --init: " + ", ".join(flags))
    if dry_run:
        _dry_run(cfg, info, net_config, lines, dist)
        return

    if run_dir is None:
        run_dir = Path(dist.broadcast_object(str(next_run_dir(Path(cfg.outdir), _run_name(cfg))) if dist.is_main else None))
    if dist.is_main:
        _write_config(run_dir, cfg, info, net_config, dist, resumed=state_dir is not None)
        if state_dir is not None:
            trim_stats(run_dir / "stats.jsonl", read_progress(state_dir)["nimg"] / 1000)
    dist.barrier()
    log = RunLog(run_dir, enabled=dist.is_main)
    try:
        for line in lines:
            log.info(line)
        log.info(f"run folder: {run_dir}")
        with StopRequest() as stop:
            result = fit(cfg, dist, run_dir, state_dir=state_dir, stop=stop, log=log)
        if result.status == "stopped":
            log.info(f"resume with: accelerate launch training/train.py --resume {run_dir}")
        else:
            log.info(
                f"done: {result.nimg / 1000:.1f} kimg. Run folder {run_dir}: final network {result.snapshot}, "
                f"samples in {run_dir / 'samples'}, stats in {run_dir / 'stats.jsonl'}, state in {result.state_dir}; "
                f"TensorBoard: tensorboard --logdir {run_dir}"
            )
    except TrainingDiverged as err:
        log.info(f"error: {err}")
        raise click.ClickException(str(err)) from None
    except (OutputError, DataError) as err:  # a full disk, data that cannot go on: one line, state/ as saved
        with contextlib.suppress(OSError):
            log.info(f"error: {err}")
        saved = (run_dir / "state" / "progress.json").is_file()
        then = f"state/ is as last saved; fix this, then --resume {run_dir}" if saved else "no state was saved yet"
        raise click.ClickException(f"{err} ({then})") from None
    finally:
        log.close()
        if dist.active and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


# ---------------------------------------------------------------------------------------- start-up
def _set_threads(threads: int | None) -> None:
    """CPU threads per process. ``accelerate launch`` exports OMP_NUM_THREADS=1 by default, which
    would leave all but one core idle on a CPU machine, so we decide here."""
    if threads is None:
        if torch.cuda.is_available():
            return
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        threads = max(1, cores // max(local, 1))
    torch.set_num_threads(threads)


def _find_resume(resume: str | None, outdir: str, dist: Dist) -> tuple[Path | None, Path | None]:
    """``(run_dir, state_dir)`` to continue, or ``(None, None)`` for a new run."""
    if resume is None:
        return None, None
    if resume == "auto":
        found = dist.broadcast_object(str(find_resumable(Path(outdir)) or "") if dist.is_main else None)
        if not found:
            return None, None
        resume = found
    if Path(resume).is_file() and resume.endswith(".safetensors"):
        raise click.BadParameter(
            f"{resume!r} is a network file; --resume continues a run from its folder (state/). To start a new run "
            f"from this network's weights, use --init {resume}", param_hint="--resume",
        )
    try:
        return resolve_resume(Path(resume))
    except (FileNotFoundError, ValueError) as err:
        raise click.BadParameter(f"{resume!r}: {err}; expected 'auto' or a run folder with state/", param_hint="--resume")


def _config_for(opts: dict[str, Any], given: set[str], run_dir: Path | None) -> TrainConfig:
    """The CLI's config, or for a resumed run the saved one with the changes it allows."""
    if run_dir is None:
        return TrainConfig(**opts)
    saved = TrainConfig.from_dict(json.loads((run_dir / "config.json").read_text())["train"])
    changes = {}
    for key in sorted(given):
        if key == "outdir" or opts[key] == getattr(saved, key):
            continue
        if key not in RESUME_MAY_CHANGE:
            flag = "--" + key.replace("_", "-")
            raise click.BadParameter(
                f"{opts[key]!r} differs from the run being resumed ({getattr(saved, key)!r}); a resumed run may "
                f"change only {', '.join('--' + k.replace('_', '-') for k in RESUME_MAY_CHANGE)}",
                param_hint=flag,
            )
        changes[key] = opts[key]
    return saved.replace(**changes)


def _resolve(cfg: TrainConfig, dist: Dist):
    """Check ``cfg`` against the dataset, the preset and the processes; returns the resolved config."""
    from training.data import load_dataset_info
    from training.precision import check_precision

    try:
        cfg.validate()
    except ConfigError as err:
        raise click.BadParameter(err.detail, param_hint=err.option)
    try:
        info = load_dataset_info(cfg.data)
    except (OSError, ValueError) as err:
        raise click.BadParameter(str(err), param_hint="--data")
    try:
        cfg = cfg.resolve(
            resolution=info.resolution, num_classes=info.num_classes, world_size=dist.world_size,
            accelerate_precision=os.environ.get("ACCELERATE_MIXED_PRECISION"),
        )
        check_precision(cfg.precision, dist.device)
    except ConfigError as err:
        raise click.BadParameter(err.detail, param_hint=err.option)
    except ValueError as err:
        raise click.BadParameter(str(err).split(": ", 1)[-1], param_hint="--precision")
    c_dim = info.num_classes if cfg.cond else 0
    try:
        net_config = stylegan.resolve_config(cfg.preset, info.resolution, info.channels, c_dim, growth=cfg.growth)
    except ValueError as err:
        raise click.BadParameter(
            f"the dataset {cfg.data!r} ({info.resolution}x{info.resolution}, {info.channels} channels) does not fit "
            f"--preset={cfg.preset!r}: {err}", param_hint="--data",
        )
    start = cfg.growth_start or 4
    if cfg.growth == "progressive" and start > info.resolution:
        raise click.BadParameter(f"{start} is above the dataset's resolution {info.resolution}", param_hint="--growth-start")
    group = net_config.mbstd_group_size if net_config.mbstd_num_channels else 1
    batches = {cfg.batch} | set(parse_growth_batch(cfg.growth_batch).values())
    for b in sorted(batches):
        n = micro_batch(b, cfg.batch_gpu, dist.world_size)
        if n % min(group, n):
            raise click.BadParameter(
                f"{n} images per micro-batch do not split into D's minibatch-stddev groups of "
                f"{group}; use a multiple of {group}", param_hint="--batch-gpu",
            )
    return cfg, info, net_config


def _describe(cfg: TrainConfig, opts: dict[str, Any], given: set[str], dist: Dist) -> list[str]:
    derived = []
    if "gamma" not in given:
        derived.append(f"--gamma={cfg.gamma:g} (from resolution and batch)")
    if "ema_kimg" not in given:
        derived.append(f"--ema-kimg={cfg.ema_kimg:g}")
    if cfg.init is not None and "ema_rampup" not in given:
        derived.append(f"--ema-rampup={cfg.ema_rampup:g} (--init: G_ema starts trained)")
    if "batch_gpu" not in given:
        derived.append(f"--batch-gpu={cfg.batch_gpu}")
    if "cond" not in given:
        derived.append(f"--{'cond' if cfg.cond else 'no-cond'}")
    accumulate = cfg.batch // (cfg.batch_gpu * dist.world_size)
    return [
        "config: " + json.dumps(cfg.to_dict(), sort_keys=True),
        "derived: " + ", ".join(derived) if derived else "derived: nothing",
        f"processes: {dist.world_size} on {dist.device.type}, micro-batch {cfg.batch_gpu}, "
        f"{accumulate} accumulation round(s) per step, {torch.get_num_threads()} CPU threads per process",
    ]


def _dry_run(cfg: TrainConfig, info, net_config, lines: list[str], dist: Dist) -> None:
    from training.estimate import estimate, format_estimate

    if not dist.is_main:
        return
    G, D = stylegan.build_from_config(net_config)
    for line in lines:
        click.echo(line)
    click.echo("network: " + json.dumps(net_config.to_dict(), sort_keys=True))
    click.echo(format_estimate(estimate(G, D, cfg.batch_gpu, cfg.precision), cfg.batch_gpu))
    click.echo("dry run: nothing trained, nothing written")


def _run_name(cfg: TrainConfig) -> str:
    stem = Path(cfg.data.rstrip("/")).name.split("{")[0].removesuffix(".json").strip("-_.") or "data"
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in stem)
    growth = "-prog" if cfg.growth == "progressive" else ""
    return f"{safe}-{cfg.preset}-{'cond' if cfg.cond else 'uncond'}-b{cfg.batch}{growth}"


def _write_config(run_dir: Path, cfg: TrainConfig, info, net_config, dist: Dist, resumed: bool) -> None:
    path = run_dir / "config.json"
    history = []
    if resumed and path.is_file():
        history = json.loads(path.read_text()).get("history", [])
    history.append({"started": time.strftime("%Y-%m-%d %H:%M:%S"), "resumed": resumed, "kimg": cfg.kimg,
                    "processes": dist.world_size})
    write_json_atomic(path, {
        "train": cfg.to_dict(),
        "network": net_config.to_dict(),
        "dataset": {"source": cfg.data, "resolution": info.resolution, "channels": info.channels,
                    "num_images": info.num_images, "num_classes": info.num_classes,
                    "class_names": list(info.class_names) if info.class_names else None},
        "runtime": {"processes": dist.world_size, "device": str(dist.device), "torch": torch.__version__,
                    "python": platform.python_version(), "threads": torch.get_num_threads()},
        "history": history,
    })


if __name__ == "__main__":
    main()
