"""The training loop: :func:`fit` runs steps, closes ticks, writes snapshots and the state.

One *step* takes ``batch`` real images (split over processes and micro-batches) through the phases
of :mod:`training.step`, then updates ``G_ema``. A *tick* is ``--tick`` kimg of steps: it ends with a
line in ``log.txt`` / ``stats.jsonl`` and a check that every process still holds identical weights.
Every ``--snap`` ticks (and at the end) the main process writes a network snapshot, a sample grid and
``state/``, while the other processes wait at a barrier.

Failures: a non-finite loss skips that optimizer step on every process (:func:`run_phase`); after
``--max-skipped`` steps in a row with skips the run stops with :class:`TrainingDiverged`, leaving the
last good ``state/`` untouched. A stop request (SIGTERM / SIGINT, :mod:`training.signals`) ends the
run after the current step, with ``state/`` written and a snapshot and grid named ``...-stop`` (never
overwriting a regular one). Every ``--state-every`` minutes (the main process's clock, shared through
the step's all-reduce so that every process saves at the same step) ``state/`` alone is written too.
"""

from __future__ import annotations

import resource
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from tqdm import tqdm

import stylegan
from ops.upfirdn2d import setup_filter
from stylegan.config import NetworkConfig
from training import grids
from training.checkpoint import load_state, save_state
from training.config import TrainConfig
from training.data import DatasetInfo, load_dataset_info, open_stream
from training.distributed import Dist, module_fingerprint
from training.ema import update_ema
from training.feed import DataFeed
from training.init_from import apply_init, plan_init
from training.metrics import evaluate_snapshot
from training.outputs import clean_leftovers, writing
from training.progressive import prepare_reals
from training.resolve import DataShape, network_config
from training.runlog import RunLog
from training.counters import derive_seed
from training.session import Session, build_session
from training.signals import StopRequest
from training.loss import PHASES, StyleGAN2Loss
from training.step import MicroBatch, PhaseResult, run_phase


class TrainingDiverged(RuntimeError):
    """Too many optimizer steps in a row had a non-finite loss; the run stopped."""


@dataclass
class FitResult:
    """How :func:`fit` ended: ``status`` is ``'done'`` or ``'stopped'`` (by a signal)."""

    status: str
    nimg: int
    run_dir: Path
    state_dir: Path | None = None
    snapshot: Path | None = None
    signal: str | None = None


@dataclass
class StepOutcome:
    results: list[PhaseResult]
    batch: int
    skipped: int
    stop: bool
    save: bool  # write state/ after this step (--state-every), agreed by every process
    phase: str
    resolution: int
    alpha: float


@dataclass
class TickStats:
    """Sums over the steps of one tick, turned into a ``stats.jsonl`` record by :meth:`record`."""

    start_time: float = field(default_factory=time.perf_counter)
    start_wait: float = 0.0
    sums: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    skipped: int = 0
    nimg: int = 0
    last: StepOutcome | None = None

    def add(self, outcome: StepOutcome) -> None:
        self.last = outcome
        self.nimg += outcome.batch
        self.skipped += outcome.skipped
        for r in outcome.results:
            if r.skipped:
                continue
            for key, value in r.sums.items():
                self.sums[key] += value
                self.counts[key] += r.count

    def means(self) -> dict[str, float | None]:
        """Every statistic the loss reports (:attr:`StyleGAN2Loss.STATS`), averaged over the tick's
        samples; ``None`` for a phase that did not run in this tick."""
        keys = [k for names in StyleGAN2Loss.STATS.values() for k in names]
        return {k: (self.sums[k] / self.counts[k] if self.counts.get(k) else None) for k in keys}


# ---------------------------------------------------------------------------------------- steps
def train_step(session: Session, feed: DataFeed, stop: StopRequest, resample_filter: torch.Tensor,
               save_due: bool = False) -> StepOutcome:
    """One iteration: every phase of :func:`phases_for_step`, then the EMA update. ``save_due``: this
    process asks for a state save after the step (only the main process asks; all learn of it)."""
    dist, p = session.dist, session.progress
    phase, alpha = session.schedule.at(p.nimg)
    session.set_growth(phase.resolution, alpha)
    batch_gpu = session.micro_batch(phase.batch)
    rounds = phase.batch // (batch_gpu * dist.world_size)
    feed.ensure(batch_gpu)
    reals = []
    for _ in range(rounds):
        images, c = feed.next()
        reals.append((prepare_reals(images, phase.resolution, alpha, resample_filter), c))
    # One seed per (phase, round), drawn in full every step so the stream does not depend on
    # which regularisers run.
    seeds = torch.randint(0, 2**62, (len(PHASES), rounds), generator=session.rank_gen).tolist()
    results = []
    for name in session.loss.phases(p.step):
        on_G = name.startswith("G")
        micro = [MicroBatch(real, c, seeds[PHASES.index(name)][i]) for i, (real, c) in enumerate(reals)]
        result = run_phase(
            name, session.loss, session.opt_G if on_G else session.opt_D, micro, dist=dist,
            scaler=session.scaler_G if on_G else session.scaler_D, stop_requested=stop.requested,
            save_requested=save_due,
        )
        session.augmentation.observe(result)
        results.append(result)
    update_ema(session.G_ema, session.G, session.ema.beta(p.nimg, phase.batch))
    skipped = sum(r.skipped for r in results)
    p.step += 1
    p.nimg += phase.batch
    p.data_batches += rounds
    p.skipped_total += skipped
    p.bad_in_row = p.bad_in_row + 1 if skipped else 0
    stop_all = any(r.stop_requested for r in results)
    save_all = any(r.save_requested for r in results)
    return StepOutcome(results, phase.batch, skipped, stop_all, save_all, phase.name, phase.resolution, alpha)


# ---------------------------------------------------------------------------------------- outputs
class Samples:
    """The fixed-seed sample grids of a run (main process)."""

    def __init__(self, run_dir: Path, info: DatasetInfo, session: Session, log: RunLog) -> None:
        self.dir, self.session, self.log = Path(run_dir) / "samples", session, log
        c_dim = session.G.c_dim
        self.layout = grids.grid_layout(c_dim, info.class_names if c_dim else None)
        self.z, self.c = grids.grid_inputs(self.layout, session.G.z_dim, c_dim, derive_seed(session.cfg.seed, "grid") % 2**63)
        self.tile = max(info.resolution, grids.MIN_TILE)

    def write_reals(self, source: str, seed: int) -> None:
        if (self.dir / "reals.png").exists():
            return
        _, batches = open_stream(source, rank=0, world_size=1, seed=seed, batch_size=64, workers=0,
                                 use_labels=self.layout.row_classes is not None)
        images = grids.collect_reals(batches, self.layout)
        grids.save_png(self.dir / "reals.png", grids.make_grid(images, self.layout, tile=self.tile, header="reals"))

    def write_fakes(self, nimg: int, phase_name: str, alpha: float, stop: bool = False) -> Path:
        G_ema = self.session.G_ema
        images = grids.generate_images(G_ema, self.z, self.c, self.session.dist.device,
                                       precision=self.session.settings.precision)
        header = f"kimg {nimg / 1000:.1f}  {phase_name}  alpha {alpha:.2f}  {G_ema.growth_resolution}px"
        grid = grids.make_grid(images, self.layout, tile=self.tile, header=header)
        path = self.dir / f"fakes{kimg_label(nimg, self.session.cfg, stop)}.png"
        text = {"kimg": f"{nimg / 1000:.3f}", "phase": phase_name, "alpha": f"{alpha:.4f}",
                "resolution": str(G_ema.growth_resolution)}
        grids.save_png(path, grid, text)
        self.log.image("fakes", grid, nimg)
        return path


def kimg_label(nimg: int, cfg: TrainConfig, stop: bool = False) -> str:
    """The kimg in snapshot and grid names: ``000200`` as in StyleGAN2's runs, or ``000000.256``
    when snapshots come more often than once per kimg, so that no snapshot overwrites another.
    A stop's (SIGTERM / SIGINT) is always exact and marked, ``000001.280-stop``: it falls between
    the regular ones and must not replace ``000001`` (the snapshot of kimg 1.024, say)."""
    if stop:
        return f"{nimg // 1000:06d}.{nimg % 1000:03d}-stop"
    fine = cfg.tick * cfg.snap < 1
    return f"{nimg // 1000:06d}" + (f".{nimg % 1000:03d}" if fine else "")


def snapshot_path(run_dir: Path, nimg: int, cfg: TrainConfig, stop: bool = False) -> Path:
    return Path(run_dir) / f"network-snapshot-{kimg_label(nimg, cfg, stop)}.safetensors"


def write_snapshot(session: Session, run_dir: Path, run_name: str, stop: bool = False,
                   class_names: Sequence[str] | None = None) -> Path:
    """``network-snapshot-<kimg>.safetensors`` with G, D, G_ema, their config and the progress
    (``<kimg>-stop`` for a stop's, see :func:`kimg_label`), and the dataset's class names."""
    p = session.progress
    phase, alpha = session.schedule.at(p.nimg)
    path = snapshot_path(run_dir, p.nimg, session.cfg, stop)
    meta = {"kimg": p.nimg / 1000, "step": p.step, "phase": phase.name, "resolution": phase.resolution,
            "alpha": alpha, "run": run_name, "train_config": session.cfg.to_dict(), "stopped": stop,
            "class_names": list(class_names) if class_names and session.G.c_dim else None}
    if session.augmentation.p is not None:
        meta["augment_p"] = session.augmentation.p  # ADA's p: --init from this file starts there
    with writing(path):
        stylegan.save_network(path, {"G": session.G, "D": session.D, "G_ema": session.G_ema}, session.net_config, meta)
    return path


def evaluate_metrics(session: Session, cfg: TrainConfig, dist: Dist, run_dir: Path, log: RunLog, *,
                     progress: bool) -> dict[str, float]:
    """``--metrics`` for G_ema at this snapshot, on every process; results go to ``stats.jsonl``,
    TensorBoard and ``metric-<name>.jsonl``. A missing feature network is a warning, never a crash."""
    p = session.progress
    name = snapshot_path(run_dir, p.nimg, cfg).name  # every process knows the name; only the main one wrote it
    results = evaluate_snapshot(
        session.G_ema, metrics=cfg.metrics, data=cfg.data, mirror=cfg.mirror, run_dir=run_dir, snapshot=name,
        kimg=p.nimg / 1000, features=cfg.metrics_features, inception_weights=cfg.inception_weights,
        device=dist.device, log=log.info, progress=progress and dist.is_main,
    )
    if results:  # evaluate_snapshot has logged them; stats.jsonl and TensorBoard get them here
        log.stats({"kimg": p.nimg / 1000, "tick": p.tick, "snapshot": name, **results})
    return results


def peak_memory_gb(device: torch.device) -> float:
    """Peak GPU memory allocated, or the process's peak resident memory on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux reports KiB


def check_replicas(session: Session) -> None:
    """Raise if the processes' weights differ (they must stay bit-identical)."""
    spread = session.dist.max_difference(module_fingerprint([session.G, session.D, session.G_ema]))
    if spread != 0:
        raise RuntimeError(
            f"the processes' networks have diverged (fingerprint spread {spread:g}) at step "
            f"{session.progress.step}: gradients or buffers were not synchronised"
        )


def tick_record(session: Session, tick: TickStats, feed: DataFeed, state_age: float | None = None,
                elapsed: float = 0.0) -> dict[str, Any]:
    """One tick's ``stats.jsonl`` record; ``state_age``: seconds since ``state/`` was last written (or
    the run resumed from it), ``None`` before the first; ``elapsed``: wall seconds since this process
    started training. ``eta_sec`` is the rest of ``--kimg`` at this tick's speed."""
    p, dist = session.progress, session.dist
    sec = max(time.perf_counter() - tick.start_time, 1e-9)
    left = max(round(session.cfg.kimg * 1000) - p.nimg, 0)
    phase, alpha = session.schedule.at(p.nimg)
    # The phase, resolution and alpha of the tick's last step (not of the step to come).
    name, res, alpha = (tick.last.phase, tick.last.resolution, tick.last.alpha) if tick.last else (phase.name, phase.resolution, alpha)
    return {
        "tick": p.tick, "kimg": p.nimg / 1000, "step": p.step, "sec": sec, "total_sec": p.train_sec,
        "sec_per_kimg": sec / max(tick.nimg / 1000, 1e-9), "img_per_sec": tick.nimg / sec,
        "data_wait": (feed.wait_sec - tick.start_wait) / sec, **tick.means(), "pl_mean": float(session.loss.pl_mean), **session.augmentation.stats(),
        "skipped": tick.skipped, "skipped_total": p.skipped_total, "data_skipped": feed.take_skipped(),
        "glr": session.opt_G.param_groups[0]["lr"], "dlr": session.opt_D.param_groups[0]["lr"],
        "peak_mem_gb": peak_memory_gb(dist.device), "phase": name, "resolution": res,
        "alpha": alpha, "batch": tick.last.batch if tick.last else phase.batch, "processes": dist.world_size,
        "state_age_sec": state_age, "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "elapsed_sec": elapsed,
        "eta_sec": left / max(tick.nimg / sec, 1e-9),
    }


def format_tick(r: dict[str, Any]) -> str:
    def f(key: str, fmt: str) -> str:
        return "-" if r.get(key) is None else format(r[key], fmt)

    return (
        f"tick {r['tick']:<4d} kimg {r['kimg']:<8.2f} {r['phase']:<9s} a={r['alpha']:.2f}  "
        f"sec/kimg {r['sec_per_kimg']:<7.2f} img/s {r['img_per_sec']:<7.1f} data {100 * r['data_wait']:4.1f}%  "
        f"G {f('loss_G', '.3f')} D {f('loss_D', '.3f')} R1 {f('r1_penalty', '.4f')} PL {f('pl_penalty', '.4f')}  "
        f"{_aug_part(r)}skipped {r['skipped']}  bad data {r.get('data_skipped', 0)}  mem {r['peak_mem_gb']:.2f}GB  "
        f"state {format_age(r.get('state_age_sec'))}  elapsed {format_duration(r['elapsed_sec'])}  "
        f"eta {format_duration(r['eta_sec'])}{_clock_after(r['eta_sec'])}"
    )


def _aug_part(r: dict[str, Any]) -> str:
    """``p 0.123 rt 0.61  `` with augmentation (ADA's r_t once measured), else nothing."""
    if r.get("aug_p") is None:
        return ""
    rt = r.get("aug_rt")
    return f"p {r['aug_p']:.3f} rt {'-' if rt is None else format(rt, '.2f')}  "


def format_duration(seconds: float) -> str:
    """``'42s'``, ``'12m05s'``, ``'3h07m'``, ``'2d04h'``."""
    s = int(round(max(seconds, 0.0)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def _clock_after(seconds: float) -> str:
    """`` (at 14:05)`` when that is within a day, else the date too; nothing at the end."""
    if seconds <= 0:
        return ""
    when = time.time() + seconds
    return time.strftime(" (at %H:%M)" if seconds < 86400 else " (at %Y-%m-%d %H:%M)", time.localtime(when))


def format_age(seconds: float | None) -> str:
    """``'42s ago'``, ``'12.5min ago'``, ``'3.2h ago'``; ``'none yet'`` before the first state."""
    if seconds is None:
        return "none yet"
    if seconds < 60:
        return f"{seconds:.0f}s ago"
    return f"{seconds / 60:.1f}min ago" if seconds < 3600 else f"{seconds / 3600:.1f}h ago"


# ---------------------------------------------------------------------------------------- fit
def fit(
    cfg: TrainConfig,
    dist: Dist,
    run_dir: Path,
    *,
    state_dir: Path | None = None,
    stop: StopRequest | None = None,
    log: RunLog | None = None,
    progress_bar: bool = True,
    net_config: NetworkConfig | None = None,
) -> FitResult:
    """Train until ``cfg.kimg`` thousand images (or a stop request); ``cfg`` must be resolved.
    ``net_config`` is the run's network (:func:`training.resolve.resolve_run`); by default the
    preset's for this data."""
    run_dir = Path(run_dir)
    log = log or RunLog(run_dir, enabled=False)
    stop = stop or StopRequest()
    if dist.is_main and (removed := clean_leftovers(run_dir)):
        log.info(f"removed {len(removed)} temporary file(s) an interrupted run left: {', '.join(removed)}")
    info = load_dataset_info(cfg.data)
    c_dim = info.num_classes if cfg.cond else 0
    net_config = net_config or network_config(cfg, DataShape.of(info))
    session = build_session(cfg, dist, net_config, class_counts=info.class_counts)
    if state_dir is not None:
        for note in session.load_state_dict(load_state(state_dir, dist.device)):
            log.info(f"note: {note}")
        log.info(f"resumed from {state_dir} at kimg {session.progress.nimg / 1000:.3f} (step {session.progress.step})")
    elif cfg.init is not None:
        for line in apply_init(session, plan_init(cfg.init, session.net_config)):
            log.info(line)
    p = session.progress
    feed = DataFeed(cfg.data, dist=dist, seed=cfg.seed, workers=cfg.workers, mirror=cfg.mirror, c_dim=c_dim,
                    progress=p, stop=stop)
    samples = Samples(run_dir, info, session, log) if dist.is_main else None
    dist.main_writes(lambda: samples.write_reals(cfg.data, derive_seed(cfg.seed, "reals") % 2**31))
    resample_filter = setup_filter([1, 3, 3, 1], device=dist.device)
    total = int(round(cfg.kimg * 1000))
    tick = TickStats(start_wait=feed.wait_sec)
    saver = Saver(session, run_dir, samples, log, state_dir, info.class_names)
    signal_name = None
    # Whole images (an int never overshoots total as a float sum of kimg did: tqdm's clamping warning).
    bar = tqdm(total=total, initial=min(p.nimg, total), unit="img", unit_scale=1 / 1000,
               disable=not (progress_bar and dist.is_main), dynamic_ncols=True, mininterval=1.0,
               bar_format="{l_bar}{bar}| {n:.1f}/{total:.1f} kimg [{elapsed}<{remaining}]")
    clock = time.perf_counter()
    try:
        while p.nimg < total:
            if stop.requested and not dist.active:
                signal_name = stop.signal_name
                break
            outcome = train_step(session, feed, stop, resample_filter, save_due=saver.state_due())
            now = time.perf_counter()
            p.train_sec += now - clock
            clock = now
            tick.add(outcome)
            bar.update(min(outcome.batch, max(total - bar.n, 0)))  # the last step may overshoot
            if p.bad_in_row >= cfg.max_skipped:
                raise TrainingDiverged(
                    f"{p.bad_in_row} optimizer steps in a row had a non-finite loss (at kimg {p.nimg / 1000:.3f}, "
                    f"{p.skipped_total} skipped in all); stopping. The last good state is "
                    f"{saver.last_state if saver.last_state else '(none saved yet)'}; try a lower --glr/--dlr or a higher --gamma"
                )
            if outcome.stop:
                signal_name = stop.signal_name or "a stop request on another process"
                break
            if p.nimg >= p.tick_start_nimg + cfg.tick * 1000 or p.nimg >= total:
                end_tick(session, tick, feed, log, saver)
                if p.tick % cfg.snap == 0 or p.nimg >= total:
                    saver.save(final=p.nimg >= total, metrics=True, progress=progress_bar)
                tick = TickStats(start_wait=feed.wait_sec)
            if outcome.save and saver.saved_nimg != p.nimg:
                took = saver.save_state()
                tick.start_time += took  # the tick's sec/kimg is training, not saving
            clock = time.perf_counter()
        if signal_name is not None:
            if tick.nimg:
                end_tick(session, tick, feed, log, saver)
            if saver.saved_nimg != p.nimg:
                saver.save(final=False, metrics=False, stop=True)  # a stop wants a quick exit, not metrics
            if feed.reused_last_batch:
                log.info("note: the data loader stopped with the signal; the last step reused its previous batch")
            log.info(f"stopped by {signal_name} at kimg {p.nimg / 1000:.3f}; state saved in {saver.last_state}")
            return FitResult("stopped", p.nimg, run_dir, saver.last_state, saver.last_snapshot, signal_name)
        if saver.saved_nimg != p.nimg:
            saver.save(final=True, metrics=True, progress=progress_bar)  # resumed at (or past) the end: still a final snapshot
        return FitResult("done", p.nimg, run_dir, saver.last_state, saver.last_snapshot)
    finally:
        bar.close()
        feed.close()


class Saver:
    """Writes snapshots, grids and ``state/`` for :func:`fit`, and keeps ``--state-every``'s clock.

    Every method is a collective (every process calls it at the same step); only the main process
    writes. The clock is the main process's: it alone asks for a timed save (:meth:`state_due`), and
    the request reaches the others through the step's all-reduce (``StepOutcome.save``).
    """

    def __init__(self, session: Session, run_dir: Path, samples: Samples | None, log: RunLog,
                 state_dir: Path | None, class_names: Sequence[str] | None = None) -> None:
        self.session, self.run_dir, self.samples, self.log = session, run_dir, samples, log
        self.class_names = class_names
        self.last_state, self.last_snapshot = state_dir, None
        self.saved_nimg = -1  # of the last snapshot: the same on every process, unlike the paths
        self._started = time.monotonic()
        self.expectation_said = False
        # When state/ was last written, or the run resumed from it.
        self._state_clock = self._started if state_dir is not None else None

    def state_age(self) -> float | None:
        """Seconds since ``state/`` was last written (or resumed from); ``None`` before the first."""
        return None if self._state_clock is None else time.monotonic() - self._state_clock

    def elapsed(self) -> float:
        """Wall seconds since this process started training (saving included)."""
        return time.monotonic() - self._started

    def state_due(self) -> bool:
        """Whether ``--state-every`` minutes have passed since the last state (or the start)."""
        every = self.session.cfg.state_every
        if not self.session.dist.is_main or not every:
            return False
        since = self._state_clock if self._state_clock is not None else self._started
        return time.monotonic() - since >= every * 60

    def save_state(self) -> float:
        """``state/`` alone (``--state-every``); returns the seconds it took."""
        t0 = time.monotonic()
        p, dist = self.session.progress, self.session.dist
        payload = self.session.state_dict()  # collective: every process takes part

        def write() -> None:
            self.last_state = save_state(self.run_dir, **payload)
            self.log.info(f"state saved at kimg {p.nimg / 1000:.3f} (--state-every {self.session.cfg.state_every:g} min)")

        dist.main_writes(write)  # a failed write stops every process, none waits for the main one
        self._state_clock = time.monotonic()
        return self._state_clock - t0

    def save(self, *, final: bool, metrics: bool, stop: bool = False, progress: bool = False) -> None:
        """A network snapshot, a sample grid and ``state/`` (``-stop`` names for a stop); then the
        metrics unless ``metrics`` is false."""
        session, p, dist, cfg = self.session, self.session.progress, self.session.dist, self.session.cfg
        self.saved_nimg = p.nimg
        payload = session.state_dict()  # collective: every process takes part

        def write() -> None:
            phase, alpha = session.schedule.at(p.nimg)
            self.last_snapshot = write_snapshot(session, self.run_dir, self.run_dir.name, stop, self.class_names)
            self.samples.write_fakes(p.nimg, phase.name, alpha, stop)
            self.last_state = save_state(self.run_dir, **payload)
            self.log.info(f"{'final ' if final else ''}snapshot {self.last_snapshot.name}, state saved")

        dist.main_writes(write)  # a failed write stops every process, none waits for the main one
        self._state_clock = time.monotonic()
        if metrics and cfg.metrics.strip():
            evaluate_metrics(session, cfg, dist, self.run_dir, self.log, progress=progress)


def end_tick(session: Session, tick: TickStats, feed: DataFeed, log: RunLog, saver: "Saver") -> None:
    """Close a tick: replica check, ``stats.jsonl`` record, log line; after this process's first
    tick, a line with the time the run is expected to take (the speed depends on the machine)."""
    p = session.progress
    p.tick += 1
    p.tick_start_nimg = p.nimg
    check_replicas(session)
    record = tick_record(session, tick, feed, saver.state_age(), saver.elapsed())
    expect = not saver.expectation_said and record["eta_sec"] > 0
    saver.expectation_said = saver.expectation_said or expect

    def write() -> None:
        log.stats(record)
        log.info(format_tick(record))
        if expect:
            log.info(f"expected: {format_duration(record['eta_sec'])} more{_clock_after(record['eta_sec'])} at "
                     f"{record['img_per_sec']:.0f} img/s to --kimg {session.cfg.kimg:g}; the speed depends on the "
                     f"device and on other work sharing it (the ETA on each tick line follows it)")

    session.dist.main_writes(write)  # a failed write stops every process, none waits for the main one
