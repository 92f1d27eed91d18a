"""What a run writes for people and tools: network snapshots, sample grids, tick records.

:func:`training.loop.fit` decides *when* (every ``--tick`` kimg a record, every ``--snap`` ticks a
snapshot and a grid, at a stop a ``-stop`` snapshot); this module decides *what* and *under which
name*: ``network-snapshot-<kimg>.safetensors`` (:func:`kimg_label`), ``samples/fakes<kimg>.png``
(:class:`Samples`), the ``stats.jsonl`` record of a tick (:func:`tick_record`, its statistics by the
names the loss reports) and its line in ``log.txt`` (:func:`format_tick`). A write that fails raises
:class:`training.outputs.OutputError` (one line: the path and the reason).
"""

from __future__ import annotations

import resource
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import torch

import stylegan
from training import grids
from training.config import TrainConfig
from training.data import DatasetInfo, open_stream
from training.distributed import Dist
from training.feed import DataFeed
from training.metrics import evaluate_snapshot
from training.outputs import writing
from training.runlog import RunLog
from training.session import Session

if TYPE_CHECKING:
    from training.loop import StepOutcome


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

    def means(self, stats: dict[str, tuple[str, ...]]) -> dict[str, float | None]:
        """Every statistic the loss reports (``stats``: :attr:`StyleGAN2Loss.stats`, phase -> names),
        averaged over the tick's samples; ``None`` for a phase that did not run in this tick."""
        keys = [k for names in stats.values() for k in names]
        return {k: (self.sums[k] / self.counts[k] if self.counts.get(k) else None) for k in keys}


class Samples:
    """The fixed-seed sample grids of a run (main process)."""

    def __init__(self, run_dir: Path, info: DatasetInfo, session: Session, log: RunLog) -> None:
        self.dir, self.session, self.log = Path(run_dir) / "samples", session, log
        c_dim = session.G.c_dim
        self.layout = grids.grid_layout(c_dim, info.class_names if c_dim else None)
        self.z, self.c = grids.grid_inputs(self.layout, session.G.z_dim, c_dim, session.net_config.info_codes)
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
        "data_wait": (feed.wait_sec - tick.start_wait) / sec, **tick.means(session.loss.stats), "pl_mean": float(session.loss.pl_mean), **session.augmentation.stats(),
        "skipped": tick.skipped, "skipped_total": p.skipped_total, "data_skipped": feed.take_skipped(),
        "glr": session.opt_G.param_groups[0]["lr"], "dlr": session.opt_D.param_groups[0]["lr"],
        "peak_mem_gb": peak_memory_gb(dist.device), "phase": name, "resolution": res,
        "alpha": alpha, "batch": tick.last.batch if tick.last else phase.batch, "processes": dist.world_size,
        "state_age_sec": state_age, "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "elapsed_sec": elapsed,
        "eta_sec": left / max(tick.nimg / sec, 1e-9),
        **({"blur_sigma": session.loss.blur_sigma} if session.cfg.blur_sigma else {}),  # D's input blur (StyleGAN3-R)
    }


def format_tick(r: dict[str, Any]) -> str:
    def f(key: str, fmt: str) -> str:
        return "-" if r.get(key) is None else format(r[key], fmt)

    return (
        f"tick {r['tick']:<4d} kimg {r['kimg']:<8.2f} {r['phase']:<9s} a={r['alpha']:.2f}  "
        f"sec/kimg {r['sec_per_kimg']:<7.2f} img/s {r['img_per_sec']:<7.1f} data {100 * r['data_wait']:4.1f}%  "
        f"G {f('loss_G', '.3f')} D {f('loss_D', '.3f')} R1 {f('r1_penalty', '.4f')} PL {f('pl_penalty', '.4f')}  "
        f"{'' if 'info_loss' not in r else 'I ' + f('info_loss', '.4f') + '  '}"
        f"{_aug_part(r)}{'' if 'blur_sigma' not in r else 'blur ' + f('blur_sigma', '.2f') + '  '}skipped {r['skipped']}  bad data {r.get('data_skipped', 0)}  mem {r['peak_mem_gb']:.2f}GB  "
        f"state {format_age(r.get('state_age_sec'))}  elapsed {format_duration(r['elapsed_sec'])}  "
        f"eta {format_duration(r['eta_sec'])}{_clock_after(r['eta_sec'])}"
        f"{'' if not r.get('cpu_hint') else '  (' + r['cpu_hint'] + ')'}"
    )


def expectation_line(record: dict[str, Any], kimg: float) -> str:
    """After a process's first tick: how long the rest of the run should take at that tick's speed."""
    eta = record["eta_sec"]
    line = (f"expected: {format_duration(eta)} more{_clock_after(eta)} at {record['img_per_sec']:.0f} img/s to "
            f"--kimg {kimg:g}; the speed depends on the device and on other work sharing it (the ETA on each "
            "tick line follows it)")
    if record.get("cpu_hint"):
        line += f". {record['cpu_hint']}: this run is slower than the machine alone allows"
    return line


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
