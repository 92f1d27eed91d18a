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

if __name__ == "__main__":
    # First, before the imports that take seconds: a SIGTERM / SIGINT from now on stops the run
    # cleanly (training.signals.EarlySignals) instead of killing it half-started.
    from training.signals import EarlySignals

    _EARLY_SIGNALS: "EarlySignals | None" = EarlySignals.install()
else:
    _EARLY_SIGNALS = None

import contextlib
import json
import platform
import time
from typing import Any

import click
import torch

import stylegan
from stylegan.config import NetworkConfig
from training.checkpoint import read_progress, resolve_resume
from training.config import ConfigError, TrainConfig
from training.cpu_threads import ThreadGovernor, local_share
from training.data import DataError, forward_data_warnings
from training.distributed import Dist
from training.init_from import network_config_from_file, options_from_file, plan_init
from training.loop import TrainingDiverged, fit
from training.nvidia_cli import NvidiaSpellings, PresetChoice, metrics_none
from training.outputs import OutputError, writing
from training.resolve import DataShape, ResolvedRun, resolve_run, with_network_fields
from training.runlog import RunLog, next_run_dir, trim_stats, write_json_atomic
from training.runs import candidates, choose_run, data_location, dataset_fingerprint, fingerprint_differences
from training.session import make_schedule
from training.launch import report_clean_stop, resume_command
from training.signals import StopRequest

_DEFAULT = TrainConfig()
# Options a resumed run may change; the others define the run and must stay as saved.
RESUME_MAY_CHANGE = (
    "kimg", "tick", "snap", "state_every", "workers", "batch_gpu", "max_skipped", "metrics", "metrics_features", "inception_weights",
    "memory_format", "compile",
)


def _opt(*decls: str, help: str, **kw: Any):
    """A click option whose help line ends with its default."""
    kw.setdefault("show_default", True)
    return click.option(*decls, help=help, **kw)


def _nvidia_flag(ours: str):
    """A hidden option for a StyleGAN2-ADA / StyleGAN3 flag that stops with one line naming ours."""

    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> None:
        if value is not None:
            raise click.UsageError(f"{param.opts[0]}={value} is NVIDIA's train.py flag; here: {ours.format(value=value)}")

    return callback


_FROM_PRESET = "[default: from --preset, printed at start]"


@click.command(cls=NvidiaSpellings, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@_opt("--data", default=_DEFAULT.data, help="Dataset: a folder with dataset.json + shards, or a shard pattern/URL.")
@_opt("--outdir", default=_DEFAULT.outdir, help="Where run folders <NNNNN>-<name>/ are created.")
@_opt("--preset", type=PresetChoice(stylegan.PRESETS), default=None,
      help="Network and training recipe (StyleGAN2-ADA's configurations; see docs/training.md).  "
           "[default: auto with --data, tiny for the demo]")
@_opt("--cond/--no-cond", default=None, help="Condition on the class labels.  [default: on when the dataset has labels]")
@_opt("--kimg", type=float, default=None, help=f"Training length in thousands of real images shown to D.  {_FROM_PRESET}")
@_opt("--batch", type=int, default=None, help=f"Global batch size (all processes together).  {_FROM_PRESET}")
@_opt("--batch-gpu", type=int, default=None,
      help="Micro-batch per process; the rest of --batch comes from gradient accumulation.  "
           "[default: the preset's, else batch / processes]")
@_opt("--gamma", type=float, default=None, help=f"R1 regularisation weight.  {_FROM_PRESET}")
@_opt("--r1-interval", type=int, default=_DEFAULT.r1_interval, help="Run R1 every this many steps (lazy regularisation).")
@_opt("--pl-weight", type=float, default=None, help=f"Path-length regularisation weight (0 disables it).  {_FROM_PRESET}")
@_opt("--pl-interval", type=int, default=None,
      help="Run path-length regularisation every this many steps (lazy regularisation); 0: no G regularisation "
           f"phase and no Adam correction for G (StyleGAN3).  {_FROM_PRESET}")
@_opt("--mixing", type=float, default=None, help=f"Style-mixing probability.  {_FROM_PRESET}")
@_opt("--ema-kimg", type=float, default=None, help=f"Half-life of G_ema in kimg.  {_FROM_PRESET}")
@_opt("--ema-rampup", type=float, default=None,
      help=f"Cap the EMA half-life at this fraction of the images seen so far (0: off).  {_FROM_PRESET}")
@_opt("--blur-sigma", type=float, default=None,
      help="Blur every image D sees with a Gaussian of this sigma in pixels, fading to 0 over --blur-fade-kimg "
           f"(StyleGAN3-R: 10; 0: off).  {_FROM_PRESET}")
@_opt("--blur-fade-kimg", type=float, default=None,
      help="kimg over which --blur-sigma fades linearly to 0 (0: it never fades).  [default: the preset's, else "
           "NVIDIA's 200 x batch / 32]")
@_opt("--glr", type=float, default=None, help=f"Generator learning rate (Adam).  {_FROM_PRESET}")
@_opt("--dlr", type=float, default=None, help=f"Discriminator learning rate (Adam).  {_FROM_PRESET}")
@_opt("--cbase", type=int, default=None, help=f"Network width: channel_base (ADA's fmaps x 32768).  {_FROM_PRESET}")
@_opt("--cmax", type=int, default=None, help=f"At most this many feature maps per layer.  {_FROM_PRESET}")
@_opt("--map", type=int, default=None, help=f"Mapping network depth.  {_FROM_PRESET}")
@_opt("--mbstd-group", type=int, default=None, help=f"Minibatch-stddev group size.  {_FROM_PRESET}")
@_opt("--mirror/--no-mirror", default=_DEFAULT.mirror, help="Augment with random x-flips.")
@_opt("--growth", type=click.Choice(["none", "progressive"]), default=None,
      help="'progressive': grow from --growth-start up to the dataset's resolution (ProGAN).  [default: the "
           "preset's: progressive for progan, else none]")
@_opt("--growth-start", type=int, default=None, help="Progressive growing: first resolution.  [default: 4]")
@_opt("--fade-kimg", type=float, default=_DEFAULT.fade_kimg, help="Progressive growing: kimg per fade-in phase.")
@_opt("--stable-kimg", type=float, default=_DEFAULT.stable_kimg, help="Progressive growing: kimg per stable phase.")
@_opt("--growth-batch", default=None,
      help="Progressive growing: global batch per resolution, e.g. '4:128,8:128,16:64' (others use --batch).  "
           "[default: the preset's: 256:14,512:6,1024:3 for progan, else none]")
@_opt("--spectral-norm", type=str, default=_DEFAULT.spectral_norm,
      help="Spectral normalisation (Miyato et al. 2018) of D's weights (d), or of G's and D's (gd), or none.")
@_opt("--attention", type=str, default=_DEFAULT.attention, show_default="none",
      help="Self-attention blocks (SAGAN) in G and D at these resolutions, e.g. '16,32'.")
@_opt("--info-codes", type=str, default=_DEFAULT.info_codes, show_default="none",
      help="InfoGAN's latent codes (Chen et al. 2016), the last entries of z, and D's head Q for them: cat:N "
           "(N classes) and cont:M (M codes in [-1, 1]), e.g. 'cat:10,cont:2'.")
@_opt("--info-weight", type=float, default=_DEFAULT.info_weight,
      help="--info-codes: lambda, the weight of InfoGAN's mutual-information term in G's and D's losses.")
@_opt("--info-cont-weight", type=float, default=_DEFAULT.info_cont_weight,
      help="--info-codes: extra factor on the continuous codes' terms (the paper uses a smaller lambda for them, "
           "e.g. 0.1).")
@_opt("--loss", type=str, default=None,
      help="Adversarial loss: ns (non-saturating logistic, StyleGAN2), minimax (Goodfellow et al. 2014), lsgan "
           "(least squares, Mao et al. 2017), hinge (SAGAN/BigGAN), wgan (Arjovsky et al. 2017, weight clipping), "
           f"wgan-gp (Gulrajani et al. 2017, with ProGAN's drift).  {_FROM_PRESET}")
@_opt("--gp-weight", type=float, default=_DEFAULT.gp_weight, help="--loss wgan-gp: weight of the gradient penalty.")
@_opt("--drift", type=float, default=_DEFAULT.drift, help="--loss wgan-gp: weight of ProGAN's drift term D(x)^2.")
@_opt("--clip", type=float, default=_DEFAULT.clip,
      help="--loss wgan: clip D's (effective) weights to [-clip, clip] after each D step.")
@_opt("--n-critic", type=int, default=None,
      help="D steps per G step (WGAN's n_critic).  [default: 5 for --loss wgan, else the preset's (1)]")
@_opt("--optimizer", type=str, default=None,
      help="adam or rmsprop, for G and D.  [default: rmsprop for --loss wgan (its paper), else the preset's (adam)]")
@_opt("--beta1", type=float, default=None, help=f"Adam's beta1 (StyleGAN2 0, DCGAN 0.5).  {_FROM_PRESET}")
@_opt("--beta2", type=float, default=None, help=f"Adam's beta2 (StyleGAN2 0.99, DCGAN 0.999).  {_FROM_PRESET}")
@_opt("--aug", type=str, default=None,
      help="Augmentation of every image D sees: ada (StyleGAN2-ADA, p adapts to D's overfitting), fixed (the ADA "
           "pipeline at --p), diffaug (DiffAugment), none.  [default: the preset's: ada for the paper presets "
           "and auto, as StyleGAN2-ADA; none for tiny]")
@_opt("--augpipe", type=str, default=_DEFAULT.augpipe,
      help="ADA's pipeline: blit, geom, color, filter, noise, cutout, bg, bgc, bgcf, bgcfn, bgcfnc.")
@_opt("--target", type=float, default=_DEFAULT.target, help="ADA's target for r_t = E[sign(D(real))].")
@_opt("--ada-kimg", type=float, default=_DEFAULT.ada_kimg, help="ADA: kimg for p to go from 0 to 1 at the fastest.")
@_opt("--p", type=float, default=None,
      help="--aug fixed: the augmentation probability; --aug ada: where p starts.  [default: ada: 0, or the "
           "--init file's p]")
@_opt("--diffaug", type=str, default=_DEFAULT.diffaug, help="DiffAugment's policies (--aug diffaug).")
@_opt("--precision", type=click.Choice(["fp32", "fp16", "bf16"]), default=None,
      help="fp16/bf16: the preset's top num_fp16_res blocks in reduced precision with conv_clamp, the rest fp32; "
           "fp32: no reduced precision, no clamping.  [default: accelerate config's mixed_precision, else the "
           "preset's (fp16 on CUDA for the paper presets), else fp32]")
@_opt("--memory-format", type=click.Choice(["auto", "contiguous", "channels-last"]), default="auto",
      callback=lambda ctx, param, value: None if value == "auto" else value,
      help="Layout of the networks' weights and the images: channels-last (NHWC) or contiguous (NCHW); the same "
           "results up to float rounding. auto: channels-last on a CPU (measured faster), contiguous on CUDA.")
@_opt("--compile/--no-compile", default=_DEFAULT.compile,
      help="torch.compile G's and D's forward passes (the phases without a double backward; the regularisers run "
           "eagerly). Costs minutes of compiling at start-up; see docs/training.md.")
@_opt("--tick", type=float, default=_DEFAULT.tick, help="Progress report (stats.jsonl line) every this many kimg.")
@_opt("--snap", type=int, default=None, help=f"Snapshot, sample grid and state every this many ticks.  {_FROM_PRESET}")
@_opt("--state-every", type=float, default=_DEFAULT.state_every, metavar="MINUTES",
      help="Also write state/ every this many minutes of wall-clock time, so that a SIGKILL or a lost node costs at "
           "most that much (0: only with the snapshots).")
@_opt("--resume", default=None, help="'auto' (newest run in --outdir with a state, else start anew) or a run folder.  [default: none, a new run]")
@_opt("--init", default=None, type=click.Path(dir_okay=False),
      help="Start this new run from the weights (G, D, G_ema) of a network file, e.g. a network-snapshot-*."
           "safetensors: fine-tuning. Optimizers and counters start afresh.  [default: none, random weights]")
@_opt("--seed", type=int, default=_DEFAULT.seed, help="Random seed (weights, data order, latents).")
@_opt("--workers", type=int, default=_DEFAULT.workers, help="Data loader processes per training process.")
@_opt("--max-skipped", type=int, default=_DEFAULT.max_skipped,
      help="Stop after this many steps in a row with a non-finite loss.")
@_opt("--metrics", default=_DEFAULT.metrics, show_default="none", callback=metrics_none,
      help="Metrics at each snapshot, comma-separated (fid50k_full,kid50k_full,pr50k3_full,is50k; StyleGAN3 "
           "networks also eqt50k_int,eqt50k_frac,eqr50k; smaller counts like fid2k_full). Empty: none. "
           "See docs/metrics.md.")
@_opt("--metrics-features", type=click.Choice(["inception", "random"]), default=_DEFAULT.metrics_features,
      help="Feature network for --metrics: the TF-FID Inception-v3 (published-comparable; needs torch-fidelity "
           "and its weights, else the metrics are skipped with a warning) or a seeded random network (demos).")
@_opt("--inception-weights", default=None,
      help="Path of the Inception weights file.  [default: $STYLEGAN_INCEPTION_WEIGHTS, else the cache folder]")
@_opt("--threads", default="auto", show_default=True,
      help="CPU threads per process: 'auto' takes the cores other busy processes leave free (at most this "
           "machine's cores / its training processes) and follows the load as it changes; N fixes the count "
           "(bit-reproducible CPU runs). Ignored on a GPU.")
@_opt("--no-progress", is_flag=True, default=False,
      help="No progress bar (for batch logs: SLURM's output file, CI); the tick lines still say kimg, elapsed and ETA.  [default: off]")
@_opt("--dry-run", is_flag=True, default=False,
      help="Print the resolved config (what came from the preset, what was derived), parameter counts and a memory "
           "estimate, then exit.  [default: off]")
@_opt("--resolution", type=int, default=None,
      help="With --dry-run and no dataset: the image size to plan for.  [default: the dataset's]")
@_opt("--channels", type=int, default=None, help="With --dry-run and no dataset: image channels.  [default: 3]")
@_opt("--classes", type=int, default=None, help="With --dry-run and no dataset: number of classes.  [default: 0]")
@click.option("--cfg", hidden=True, callback=_nvidia_flag("--preset {value}"), expose_value=False)
@click.option("--gpus", hidden=True, callback=_nvidia_flag(
    "accelerate launch --multi_gpu --num_processes {value} training/train.py ... (one process per GPU)"),
    expose_value=False)
@click.option("--fp32", hidden=True, callback=_nvidia_flag("--precision fp32"), expose_value=False)
@click.option("--batch-size", hidden=True, callback=_nvidia_flag("--batch {value}"), expose_value=False)
def main(**opts: Any) -> None:
    """Train a StyleGAN2 / ProGAN generator (see docs/training.md)."""
    ctx = click.get_current_context()
    threads, dry_run, resume = opts.pop("threads"), opts.pop("dry_run"), opts.pop("resume")
    no_progress = opts.pop("no_progress")
    planned = {k: opts.pop(k) for k in ("resolution", "channels", "classes")}
    threads = _parse_threads(threads)
    dist = Dist.from_accelerate()
    given = {k for k in opts if ctx.get_parameter_source(k) not in (click.core.ParameterSource.DEFAULT, None)}

    outdir = Path(opts["outdir"])
    if outdir.exists() and not outdir.is_dir():
        raise click.BadParameter(f"{str(outdir)!r} exists and is not a folder", param_hint="--outdir")
    run_dir, state_dir, found_line = _find_resume(resume, opts, given, dist)
    cfg, given, saved_network = _config_for(opts, given, run_dir)
    run = _resolve(cfg, given, dist, new_run=run_dir is None, planned=planned, dry_run=dry_run,
                   saved_network=saved_network)
    cfg, info = run.train, run.info
    if run_dir is not None:
        _check_same_data(run_dir, info)
        if _report_complete(run_dir, state_dir, cfg, dist, found_line):
            return
    governor = _set_threads(threads, dist)

    lines = ([found_line] if found_line else []) + _describe(run, dist, governor)
    if dry_run:
        _dry_run(run, lines, dist)
        return

    try:  # a full disk or a read-only --outdir at start-up: one line, nothing half-written
        if run_dir is None:
            def new_run_dir() -> str:
                with writing(cfg.outdir):
                    return str(next_run_dir(Path(cfg.outdir), _run_name(cfg)))

            run_dir = Path(dist.main_writes(new_run_dir))

        def write_start() -> None:
            with writing(run_dir / "config.json"):
                _write_config(run_dir, run, info, dist, resumed=state_dir is not None)
            if state_dir is not None:
                with writing(run_dir / "stats.jsonl"):
                    trim_stats(run_dir / "stats.jsonl", read_progress(state_dir)["nimg"] / 1000)

        dist.main_writes(write_start)  # a failure stops every process with the same line
        with writing(run_dir / "log.txt"):
            log = RunLog(run_dir, enabled=dist.is_main)
    except OutputError as err:
        raise click.ClickException(str(err)) from None
    try:
        for line in lines:
            log.info(line)
        log.info(f"run folder: {run_dir}")
        with StopRequest(early=_EARLY_SIGNALS) as stop, forward_data_warnings(lambda text: log.warning(text, dist.rank)):
            result = fit(cfg, dist, run_dir, state_dir=state_dir, stop=stop, log=log, net_config=run.network,
                         progress_bar=not no_progress, threads=governor)
        if result.status == "stopped":
            log.info(resume_command(run_dir))
        else:
            log.info(
                f"done: {result.nimg / 1000:g} kimg. Run folder {run_dir}: final network {result.snapshot}, "
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
    except BaseException as err:  # an exception, out of memory, a second Ctrl-C: one line in log.txt, then the traceback
        log.crash(err, dist.rank)
        raise
    finally:
        log.close()
        if dist.active and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    if result.status == "stopped":  # for python -m training.launch: this process saved and exits 0
        report_clean_stop(result.nimg, result.signal or "stop")


# ---------------------------------------------------------------------------------------- start-up
def _parse_threads(value: str | int | None) -> int | None:
    """``--threads``: ``'auto'`` (None) or an integer >= 1."""
    if value is None or str(value).strip().lower() == "auto":
        return None
    try:
        threads = int(str(value))
    except ValueError:
        threads = 0
    if threads < 1:
        raise click.BadParameter(f"{value}: expected an integer >= 1 or 'auto'", param_hint="--threads")
    return threads


def _set_threads(threads: int | None, dist: Dist) -> ThreadGovernor | None:
    """CPU threads per process (:mod:`training.cpu_threads`): ``--threads auto`` starts with the cores
    other processes leave free and follows the load; ``--threads N`` fixes N. ``accelerate launch``
    exports OMP_NUM_THREADS=1 by default, which would leave all but one core idle on a CPU
    machine, so we decide here. On a GPU the count is left alone (None)."""
    if dist.device.type != "cpu":
        if threads is not None:
            torch.set_num_threads(threads)
        return None
    limit = threads or local_share()
    governor = ThreadGovernor(limit, fixed=threads is not None)
    governor.start()
    return governor


def _find_resume(
    resume: str | None, opts: dict[str, Any], given: set[str], dist: Dist
) -> tuple[Path | None, Path | None, str | None]:
    """``(run_dir, state_dir, line)`` to continue, or ``(None, None, line)`` for a new run; ``line``
    says what ``--resume auto`` chose and why (:mod:`training.runs`)."""
    if resume is None:
        return None, None, None
    found_line = None
    if resume == "auto":
        found, found_line = dist.broadcast_object(_auto_resume(opts, given) if dist.is_main else None)
        if not found:
            return None, None, found_line
        resume = found
    if Path(resume).is_file() and resume.endswith((".safetensors", ".pkl")):
        raise click.BadParameter(
            f"{resume!r} is a network file; --resume continues a run from its folder (state/). To start a new run "
            f"from this network's weights (NVIDIA's --resume=PKL), use --init {resume}", param_hint="--resume",
        )
    try:
        return (*resolve_resume(Path(resume)), found_line)
    except (FileNotFoundError, ValueError) as err:
        raise click.BadParameter(f"{resume!r}: {err}; expected 'auto' or a run folder with state/", param_hint="--resume")


def _auto_resume(opts: dict[str, Any], given: set[str]) -> tuple[str, str]:
    """The newest run in ``--outdir`` that matches the options given (``''`` for none) and a line."""
    from training.data import load_dataset_info

    fingerprint = None
    if "data" in given:
        try:
            fingerprint = dataset_fingerprint(load_dataset_info(opts["data"]))
        except (OSError, ValueError) as err:
            raise click.BadParameter(str(err), param_hint="--data")
    chosen, line = choose_run(candidates(Path(opts["outdir"]), {k: opts[k] for k in given}, RESUME_MAY_CHANGE, fingerprint))
    return (str(chosen.run_dir) if chosen else ""), line


def _check_same_data(run_dir: Path, info: Any) -> None:
    """A resumed run reads the data it started with: the same shards (names and counts) at any path."""
    if info is None:
        return
    saved = json.loads((run_dir / "config.json").read_text()).get("dataset", {})
    if saved.get("fingerprint") is None:
        return  # a run from before fingerprints were recorded
    diffs = fingerprint_differences(saved["fingerprint"], dataset_fingerprint(info))
    if diffs:
        raise click.BadParameter(
            f"not the data {run_dir.name} was trained on (recorded: {saved.get('location') or saved.get('source')}): "
            f"{'; '.join(diffs)}. Give --data where that dataset is now, or start a new run", param_hint="--data")


def _report_complete(run_dir: Path, state_dir: Path, cfg: TrainConfig, dist: Dist, found_line: str | None) -> bool:
    """Say so and do nothing when the run already reached ``--kimg`` (a requeued job after the end)."""
    nimg = read_progress(state_dir)["nimg"]
    if nimg < round(cfg.kimg * 1000):
        return False
    if dist.is_main:
        snaps = sorted(run_dir.glob("network-snapshot-*.safetensors"), key=lambda p: p.stat().st_mtime)
        final = f"; final network {snaps[-1]}" if snaps else ""
        if found_line:
            click.echo(found_line)
        click.echo(f"{run_dir} is complete: {nimg / 1000:g} of --kimg {cfg.kimg:g} trained{final}. Nothing to do; "
                   f"to train on, --resume {run_dir} --kimg N with N > {cfg.kimg:g}")
    return True


def _config_for(
    opts: dict[str, Any], given: set[str], run_dir: Path | None
) -> tuple[TrainConfig, set[str], NetworkConfig | None]:
    """The options, the names given and the network to build: from the CLI, or for a resumed run the
    saved ones (all given then, the network as saved) with the changes a resumed run allows."""
    if run_dir is None:
        return TrainConfig(**opts), given, None
    saved_json = json.loads((run_dir / "config.json").read_text())
    saved_json["train"].setdefault("aug", "none")  # a run from before augmentation trained without it
    saved_json["train"].setdefault("memory_format", "contiguous")  # ... and one from before --memory-format
    saved = TrainConfig.from_dict(with_network_fields(saved_json["train"], saved_json.get("network", {})))
    changes = {}
    for key in sorted(given):
        if key == "outdir" or opts[key] == getattr(saved, key):
            continue
        if key not in RESUME_MAY_CHANGE and key != "data":  # data: the same shards at another path (_check_same_data)
            flag = "--" + key.replace("_", "-")
            raise click.BadParameter(
                f"{opts[key]!r} differs from the run being resumed ({getattr(saved, key)!r}); a resumed run may "
                f"change only {', '.join('--' + k.replace('_', '-') for k in RESUME_MAY_CHANGE)}",
                param_hint=flag,
            )
        changes[key] = opts[key]
    cfg = saved.replace(**changes)
    network = NetworkConfig.from_dict(saved_json["network"]) if "network" in saved_json else None
    return cfg, {name for name, value in cfg.to_dict().items() if value is not None}, network


def _data_shape(cfg: TrainConfig, planned: dict[str, int | None], dry_run: bool, resumed: bool = False):
    """``(DataShape, DatasetInfo or None)``: the dataset's, or for ``--dry-run`` without one the planned."""
    from training.data import load_dataset_info

    if planned["resolution"] is None:
        for name in ("channels", "classes"):
            if planned[name] is not None:
                raise click.BadParameter("only with --dry-run --resolution N (a run takes the dataset's)", param_hint=f"--{name}")
        try:
            info = load_dataset_info(cfg.data)
        except (OSError, ValueError) as err:
            moved = ("; resuming a run: if its data moved, give --data where it is now "
                     "(the same shards are recognised by their names and counts)") if resumed else ""
            raise click.BadParameter(str(err) + moved, param_hint="--data")
        return DataShape.of(info), info
    if not dry_run:
        raise click.BadParameter("only with --dry-run (a run takes the dataset's resolution)", param_hint="--resolution")
    res, channels, classes = planned["resolution"], planned["channels"] or 3, planned["classes"] or 0
    if not (res >= 4 and res & (res - 1) == 0):
        raise click.BadParameter(f"{res}: expected a power of two >= 4", param_hint="--resolution")
    if channels < 1 or classes < 0:
        raise click.BadParameter(f"channels {channels}, classes {classes}: expected >= 1 and >= 0", param_hint="--channels")
    return DataShape(res, channels, classes), None


def _resolve(cfg: TrainConfig, given: set[str], dist: Dist, *, new_run: bool, planned: dict[str, int | None],
             dry_run: bool, saved_network: NetworkConfig | None = None) -> "_Run":
    """The run's complete configuration (:func:`training.resolve.resolve_run`), as CLI errors."""
    from training.precision import check_precision

    try:
        cfg.validate()
    except ConfigError as err:
        raise click.BadParameter(err.detail, param_hint=err.option)
    shape, info = _data_shape(cfg, planned, dry_run, resumed=not new_run)
    file_options, file_network = {}, None
    if new_run and cfg.init is not None:
        file_options = options_from_file(cfg.init)
        file_network = network_config_from_file(cfg.init)
        if file_network is not None and file_network.preset in stylegan.PRESETS:
            file_network = None  # one of ours: the preset (taken from the file) rebuilds it
    try:
        run = resolve_run(
            cfg, shape, world_size=dist.world_size, device_type=dist.device.type,
            accelerate_precision=os.environ.get("ACCELERATE_MIXED_PRECISION"), given=given, file_options=file_options,
            file_network=file_network, saved_network=saved_network,
        )
        check_precision(run.train.precision, dist.device)
    except ConfigError as err:
        raise click.BadParameter(err.detail, param_hint=err.option)
    except ValueError as err:
        raise click.BadParameter(str(err).split(": ", 1)[-1], param_hint="--precision")
    if new_run and run.train.init is not None:
        try:
            plan_init(run.train.init, run.network)
        except ValueError as err:
            raise click.BadParameter(str(err), param_hint="--init")
    return _Run(run, info)


class _Run:
    """A resolved run and the dataset it reads (``None`` for a dry run without one)."""

    def __init__(self, resolved: ResolvedRun, info: Any) -> None:
        self.resolved, self.info = resolved, info
        self.train, self.network = resolved.train, resolved.network


def _describe(run: _Run, dist: Dist, governor: ThreadGovernor | None = None) -> list[str]:
    from training.precision import precision_warning

    cfg = run.train
    accumulate = cfg.batch // (cfg.batch_gpu * dist.world_size)
    slow = precision_warning(cfg.precision, dist.device)
    schedule = make_schedule(cfg, run.network.resolution)
    return [
        "config: " + json.dumps(cfg.to_dict(), sort_keys=True),
        *run.resolved.describe(),
        f"processes: {dist.world_size} on {dist.device.type}, micro-batch {cfg.batch_gpu}, "
        f"{accumulate} accumulation round(s) per step, {torch.get_num_threads()} CPU threads per process"
        + ("" if governor is None else f" ({governor.describe()})"),
        *([slow] if slow else []),
        *schedule.describe(cfg.kimg),
        *_cpu_time_notes(run, dist),
    ]


# A CPU run expected to take longer than this gets the CPU preset's expected time beside it.
_CPU_PATIENCE_SEC = 24 * 3600


def _cpu_time_notes(run: _Run, dist: Dist) -> list[str]:
    """On a CPU: about how long the run will take (counted FLOPs at this CPU's measured matrix speed,
    training/flops.py), and, when that is more than a day, what ``--preset tiny`` would take on the
    same data (the preset sized for CPUs). Said before the first step, so a user whose ``--data``
    picked ``auto``'s GPU-sized networks learns it at once, not after the first tick."""
    if dist.device.type != "cpu" or not dist.is_main:
        return []
    from training.flops import expected_cpu_seconds, gemm_flops_per_sec
    from training.run_outputs import format_duration

    cfg, net = run.train, run.network
    gemm = gemm_flops_per_sec(seconds=0.1) * dist.world_size  # every process's threads together
    G, D = stylegan.build_from_config(net)
    seconds = expected_cpu_seconds(G, D, cfg.kimg, gemm, path_length=cfg.pl_weight > 0)
    del G, D
    lines = [f"expected on this CPU: about {format_duration(seconds)} for --kimg {cfg.kimg:g} "
             f"({_size(net)}; counted FLOPs at this CPU's measured speed; the first tick measures it)"]
    if cfg.preset == "tiny" or seconds <= _CPU_PATIENCE_SEC:
        return lines
    shape = DataShape(net.resolution, net.img_channels, net.c_dim)
    tiny = resolve_run(TrainConfig(preset="tiny", data=cfg.data), shape, world_size=dist.world_size,
                       device_type="cpu")
    G, D = stylegan.build_from_config(tiny.network)
    tiny_sec = expected_cpu_seconds(G, D, tiny.train.kimg, gemm, path_length=tiny.train.pl_weight > 0)
    lines.append(
        f"warning: --preset {cfg.preset} has networks sized for GPUs: on this CPU that is about "
        f"{format_duration(seconds)}. --preset tiny (the CPU preset: 64 feature maps at most) trains "
        f"this {net.resolution}x{net.resolution} data in about {format_duration(tiny_sec)} for its --kimg "
        f"{tiny.train.kimg:g} (docs/training.md, 'Training on a CPU')")
    return lines


def _size(net: NetworkConfig) -> str:
    return f"{net.resolution}x{net.resolution}, {net.channel_max} feature maps at most"


def _dry_run(run: _Run, lines: list[str], dist: Dist) -> None:
    from training.estimate import estimate, format_estimate

    if not dist.is_main:
        return
    cfg = run.train
    G, D = stylegan.build_from_config(run.network)
    for line in lines:
        click.echo(line)
    click.echo("network: " + json.dumps(run.network.to_dict(), sort_keys=True))
    e = estimate(G, D, cfg.batch_gpu, cfg.precision, path_length=cfg.pl_weight > 0, pl_batch_shrink=cfg.pl_batch_shrink)
    click.echo(format_estimate(e, cfg.batch_gpu))
    click.echo("dry run: nothing trained, nothing written")


def _run_name(cfg: TrainConfig) -> str:
    stem = Path(cfg.data.rstrip("/")).name.split("{")[0].removesuffix(".json").strip("-_.") or "data"
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in stem)
    growth = "-prog" if cfg.growth == "progressive" else ""
    return f"{safe}-{cfg.preset}-{'cond' if cfg.cond else 'uncond'}-b{cfg.batch}{growth}"


def _write_config(run_dir: Path, run: _Run, info, dist: Dist, resumed: bool) -> None:
    path = run_dir / "config.json"
    history, resolution = [], run.resolved.to_json()
    if resumed and path.is_file():
        saved = json.loads(path.read_text())
        history = saved.get("history", [])
        resolution = saved.get("resolution", resolution)  # where the values came from when the run began
    history.append({"started": time.strftime("%Y-%m-%d %H:%M:%S"), "resumed": resumed, "kimg": run.train.kimg,
                    "processes": dist.world_size})
    write_json_atomic(path, {
        "train": run.train.to_dict(),
        "network": run.network.to_dict(),
        "resolution": resolution,
        "dataset": {"source": run.train.data, "location": data_location(run.train.data),
                    "fingerprint": dataset_fingerprint(info), "resolution": info.resolution, "channels": info.channels,
                    "num_images": info.num_images, "num_classes": info.num_classes,
                    "class_names": list(info.class_names) if info.class_names else None,
                    "class_counts": list(info.class_counts) if info.class_counts else None},
        "runtime": {"processes": dist.world_size, "device": str(dist.device), "torch": torch.__version__,
                    "python": platform.python_version(), "threads": torch.get_num_threads()},
        "history": history,
    })


if __name__ == "__main__":
    main()
