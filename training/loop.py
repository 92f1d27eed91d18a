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

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from tqdm import tqdm

from ops.upfirdn2d import setup_filter
from stylegan.config import NetworkConfig
from training.blur import blur_sigma_at
from training.checkpoint import load_state, save_state
from training.config import TrainConfig
from training.data import load_dataset_info
from training.distributed import Dist, module_fingerprint
from training.ema import update_ema
from training.feed import DataFeed
from training.init_from import apply_init, plan_init
from training.outputs import clean_leftovers
from stylegan.families import reals_resample_taps
from training.progressive import prepare_reals
from training.resolve import DataShape, network_config
from training.run_outputs import (
    Samples, TickStats, evaluate_metrics, expectation_line, format_tick, tick_record, write_snapshot,
)
from training.runlog import RunLog
from training.counters import derive_seed
from training.cpu_threads import ThreadGovernor, cpu_record
from training.session import Session, build_session
from training.signals import StopRequest
from training.speedups import EAGER_PHASES_NOTE, images_in
from training.loss import PHASES
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


# ---------------------------------------------------------------------------------------- steps
def train_step(session: Session, feed: DataFeed, stop: StopRequest, resample_filter: torch.Tensor,
               save_due: bool = False) -> StepOutcome:
    """One iteration: every phase of :func:`phases_for_step`, then the EMA update. ``save_due``: this
    process asks for a state save after the step (only the main process asks; all learn of it)."""
    dist, p = session.dist, session.progress
    phase, alpha = session.schedule.at(p.nimg)
    session.set_growth(phase.resolution, alpha)
    session.loss.blur_sigma = blur_sigma_at(p.nimg, session.cfg.blur_sigma, session.cfg.blur_fade_kimg)
    batch_gpu = session.micro_batch(phase.batch)
    rounds = phase.batch // (batch_gpu * dist.world_size)
    feed.ensure(batch_gpu)
    reals = []
    for _ in range(rounds):
        images, c = feed.next()
        real = prepare_reals(images, phase.resolution, alpha, resample_filter)
        reals.append((images_in(real, session.cfg.memory_format), c))
    # One seed per (phase, round), drawn in full every step so the stream does not depend on
    # which regularisers run.
    seeds = torch.randint(0, 2**62, (len(PHASES), rounds), generator=session.rank_gen).tolist()
    session.power_iteration()  # spectral norm's u and v: once per step, alike on every process
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


def check_replicas(session: Session) -> None:
    """Raise if the processes' weights differ (they must stay bit-identical)."""
    spread = session.dist.max_difference(module_fingerprint([session.G, session.D, session.G_ema]))
    if spread != 0:
        raise RuntimeError(
            f"the processes' networks have diverged (fingerprint spread {spread:g}) at step "
            f"{session.progress.step}: gradients or buffers were not synchronised"
        )


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
    threads: ThreadGovernor | None = None,
) -> FitResult:
    """Train until ``cfg.kimg`` thousand images (or a stop request); ``cfg`` must be resolved.
    ``net_config`` is the run's network (:func:`training.resolve.resolve_run`); by default the
    preset's for this data. ``threads``: the CPU thread count that follows the load
    (:mod:`training.cpu_threads`), polled between steps; None leaves the count alone."""
    run_dir = Path(run_dir)
    log = log or RunLog(run_dir, enabled=False)
    stop = stop or StopRequest()
    if dist.is_main and (removed := clean_leftovers(run_dir)):
        log.info(f"removed {len(removed)} temporary file(s) an interrupted run left: {', '.join(removed)}")
    info = load_dataset_info(cfg.data)
    c_dim = info.num_classes if cfg.cond else 0
    net_config = net_config or network_config(cfg, DataShape.of(info))
    session = build_session(cfg, dist, net_config, class_counts=info.class_counts,
                            warn=lambda text: log.warning(text, dist.rank))
    if cfg.compile:
        log.info(f"note: {EAGER_PHASES_NOTE}")
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
    resample_filter = setup_filter(reals_resample_taps(session.net_config), device=dist.device)
    total = int(round(cfg.kimg * 1000))
    tick = TickStats(start_wait=feed.wait_sec)
    saver = Saver(session, run_dir, samples, log, state_dir, info.class_names, threads=threads)
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
            if threads is not None and (change := threads.poll()) is not None:
                log.info(change.line())
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
                 state_dir: Path | None, class_names: Sequence[str] | None = None,
                 threads: ThreadGovernor | None = None) -> None:
        self.session, self.run_dir, self.samples, self.log = session, run_dir, samples, log
        self.class_names = class_names
        self.last_state, self.last_snapshot = state_dir, None
        self.saved_nimg = -1  # of the last snapshot: the same on every process, unlike the paths
        self._started = time.monotonic()
        self.expectation_said = False
        self.threads = threads  # the CPU thread count that follows the load, for the tick line
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
    record.update(cpu_record(saver.threads))
    expect = not saver.expectation_said and record["eta_sec"] > 0
    saver.expectation_said = saver.expectation_said or expect

    def write() -> None:
        log.stats(record)
        log.info(format_tick(record))
        if expect:
            log.info(expectation_line(record, session.cfg.kimg))

    session.dist.main_writes(write)  # a failed write stops every process, none waits for the main one
