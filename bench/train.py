"""Benchmark training throughput: sec/kimg and img/s of full training steps.

    python bench/train.py                                   # tiny, 32x32, batch 32, CPU: fp32/bf16 x 1/2 processes
    python bench/train.py --append                          # the same, and add the table to docs/benchmarks.md
    python bench/train.py --device cuda --preset paper256 --batch 32 --precision fp32 --precision fp16
    python bench/train.py --processes 1 --steps 32
    python bench/train.py --device cuda --preset stylegan2 --batch 4 --ops cuda --ops ref   # fused kernels vs reference
    python bench/train.py --processes 1 --precision fp32 --memory-format contiguous --memory-format channels-last \
        --compile off --compile on                          # the layouts and torch.compile, 4 cases

A step is exactly what ``training/train.py`` runs (``training.loop.train_step``: G_main, G_reg,
D_main, D_reg by their intervals, the all-reduce, the EMA update), fed with random uint8 images
that are already in memory, so the figures are compute (and communication) without data loading.
The timed steps are a multiple of the regularisation intervals (16 by default), so R1 and path
length are counted at their real frequency. ``--ops`` runs each case with ``STYLEGAN_OPS`` set to
``cuda`` (the fused kernels; a case fails, and says why, if they cannot be used) or ``ref`` (the
PyTorch reference), so the two compare in one table. Each case runs in fresh processes (``torchrun`` for
more than one); CPU threads are split evenly between the processes of a case. ``--memory-format``
and ``--compile`` are train.py's (training/speedups.py); the warm-up column is the untimed first
steps' seconds, where torch.compile does its compiling. Warm-up steps are not timed; CUDA is
synchronised before reading the clock. The table is printed, and with ``--append`` also appended to docs/benchmarks.md with the date and machine. Nothing is asserted.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import click
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing


class SyntheticFeed:
    """Stands in for :class:`training.feed.DataFeed`: random reals already in memory."""

    def __init__(self, resolution: int, channels: int, c_dim: int, device: torch.device, seed: int) -> None:
        self.shape, self.c_dim, self.device = (channels, resolution, resolution), c_dim, device
        self.gen = torch.Generator().manual_seed(seed)
        self.wait_sec = 0.0
        self.batch_gpu = 0

    def ensure(self, batch_gpu: int) -> None:
        if batch_gpu != self.batch_gpu:
            self.batch_gpu = batch_gpu
            self.images = torch.randint(0, 256, [batch_gpu, *self.shape], generator=self.gen, dtype=torch.uint8)
            self.images = self.images.to(self.device)
            labels = torch.randint(0, max(self.c_dim, 1), [batch_gpu], generator=self.gen)
            self.c = torch.nn.functional.one_hot(labels, self.c_dim).float().to(self.device) if self.c_dim else (
                torch.zeros([batch_gpu, 0], device=self.device))

    def next(self):
        return self.images, self.c


def worker(spec: dict) -> None:
    """One process of one case; rank 0 prints ``RESULT <json>``."""
    import stylegan
    from ops.upfirdn2d import setup_filter
    from training.config import TrainConfig
    from training.distributed import Dist
    from training.resolve import DataShape, resolve_run
    from training.loop import train_step
    from training.run_outputs import peak_memory_gb
    from training.session import build_session
    from training.signals import StopRequest

    from training.cpu_threads import ThreadGovernor, usable_cores

    governor = None
    if spec["threads"] == "auto":  # what training/train.py does by default on a CPU
        governor = ThreadGovernor(len(usable_cores()) // spec["processes"])
        governor.start()
    else:
        torch.set_num_threads(spec["threads"])
    dist = Dist.from_accelerate()
    res = spec["resolution"] or stylegan.resolve_config(spec["preset"]).resolution
    cfg = TrainConfig(preset=spec["preset"], batch=spec["batch"], batch_gpu=spec["batch_gpu"],
                      precision=spec["precision"], kimg=1.0, memory_format=spec.get("memory_format"),
                      compile=spec.get("compile", False))
    run = resolve_run(cfg, DataShape(res, spec["channels"], spec["c_dim"]), world_size=dist.world_size,
                      device_type=dist.device.type)
    cfg = run.train
    session = build_session(cfg, dist, run.network)
    feed = SyntheticFeed(res, spec["channels"], spec["c_dim"], dist.device, seed=dist.rank)
    stop, f = StopRequest(), setup_filter([1, 3, 3, 1], device=dist.device)

    def sync() -> None:
        if dist.device.type == "cuda":
            torch.cuda.synchronize(dist.device)

    t_warm = time.perf_counter()
    for _ in range(spec["warmup"]):
        train_step(session, feed, stop, f)
    sync()
    warmup_sec = time.perf_counter() - t_warm
    # Start the timed steps at a multiple of the intervals: R1 and PL run at their real rate.
    session.progress.step = 0
    sync()
    dist.barrier()
    t0 = time.perf_counter()
    for _ in range(spec["steps"]):
        train_step(session, feed, stop, f)
        if governor is not None:
            governor.poll()
    sync()
    dist.barrier()
    sec = time.perf_counter() - t0
    images = spec["steps"] * cfg.batch
    if dist.is_main:
        print("RESULT " + json.dumps({"sec_per_kimg": sec / (images / 1000), "img_per_sec": images / sec,
                                     "peak_mem_gb": peak_memory_gb(dist.device), "batch_gpu": cfg.batch_gpu,
                                     "memory_format": cfg.memory_format, "warmup_sec": warmup_sec}),
              flush=True)
    if dist.active:
        torch.distributed.destroy_process_group()


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    text = f"{cpu}, {cores} cores"
    if torch.cuda.is_available():
        text += f"; {torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}"
    return f"{text}; torch {torch.__version__}"


def run_case(spec: dict, env: dict[str, str] | None = None) -> dict:
    """Run one case in fresh processes; ``env``: extra environment (e.g. ``OMP_WAIT_POLICY``)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
    if spec["processes"] > 1:
        torchrun = Path(sys.executable).parent / "torchrun"
        cmd = [str(torchrun), "--standalone", f"--nproc-per-node={spec['processes']}", *cmd[1:]]
    threads = spec["threads"] if spec["threads"] != "auto" else 1  # auto: the worker decides
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(threads), "STYLEGAN_OPS": spec["ops"],
           **(env or {})}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise click.ClickException(f"case {spec} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")


@click.command()
@click.option("--preset", default="tiny", show_default=True, help="Network preset.")
@click.option("--resolution", type=int, default=None, help="Image size.  [default: the preset's]")
@click.option("--channels", type=int, default=1, show_default=True, help="Image channels.")
@click.option("--classes", "c_dim", type=int, default=10, show_default=True, help="Classes (0: unconditional).")
@click.option("--batch", type=int, default=32, show_default=True, help="Global batch.")
@click.option("--batch-gpu", type=int, default=None, help="Micro-batch per process.  [default: batch / processes]")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="'auto': CUDA when present.")
@click.option("--precision", "precisions", multiple=True, type=click.Choice(["fp32", "fp16", "bf16"]),
              help="Repeatable.  [default: fp32 and bf16 on CPU, fp32 and fp16 on CUDA]")
@click.option("--processes", "process_counts", multiple=True, type=int, help="Repeatable.  [default: 1 and 2]")
@click.option("--threads", type=int, default=None, help="CPU threads per case, split over its processes.  [default: all cores]")
@click.option("--steps", type=int, default=16, show_default=True, help="Timed steps (keep a multiple of 16).")
@click.option("--warmup", type=int, default=2, show_default=True, help="Untimed steps first.")
@click.option("--ops", "ops_impls", multiple=True, type=click.Choice(["auto", "cuda", "ref"]),
              help="STYLEGAN_OPS per case, repeatable.  [default: cuda and ref on CUDA, ref on CPU]")
@click.option("--memory-format", "layouts", multiple=True, type=click.Choice(["auto", "contiguous", "channels-last"]),
              help="Repeatable: each case in each layout.  [default: auto, train.py's choice for the device]")
@click.option("--compile", "compiles", multiple=True, type=click.Choice(["off", "on"]),
              help="Repeatable: torch.compile off and/or on (train.py's --compile).  [default: off]")
@click.option("--append/--no-append", default=False, show_default=True,
              help="Also append the table to docs/benchmarks.md (with the date and machine).")
@click.option("--worker", default=None, hidden=True)
def main(preset, resolution, channels, c_dim, batch, batch_gpu, device, precisions, process_counts, threads, steps,
         warmup, ops_impls, layouts, compiles, append, worker) -> None:
    """Measure training throughput (see the module docstring)."""
    if worker is not None:
        return globals()["worker"](json.loads(worker))
    cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    precisions = precisions or (("fp32", "fp16") if cuda else ("fp32", "bf16"))
    gpus = torch.cuda.device_count() if cuda else 0
    process_counts = process_counts or ((1, 2) if not cuda or gpus >= 2 else (1,))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = threads or cores
    ops_impls = ops_impls or (("cuda", "ref") if cuda else ("ref",))
    layouts, compiles = layouts or ("auto",), compiles or ("off",)
    import stylegan

    resolution = resolution or stylegan.resolve_config(preset).resolution
    rows, failed = [], 0
    header = ("| device | preset | res | batch | batch/proc | precision | ops | layout | compile | processes | sec/kimg "
              "| img/s | warm-up s | peak mem GB (per process) |")
    columns = header.count("|") - 1
    click.echo(header)
    click.echo("|" + "---|" * columns)
    cases = [(precision, ops_impl, layout, comp, p) for precision in precisions for ops_impl in ops_impls
             for layout in layouts for comp in compiles for p in process_counts]
    for precision, ops_impl, layout, comp, p in cases:
        spec = dict(preset=preset, resolution=resolution, channels=channels, c_dim=c_dim, batch=batch,
                    batch_gpu=batch_gpu, precision=precision, processes=p, threads=max(1, threads // p),
                    steps=steps, warmup=warmup, ops=ops_impl, memory_format=None if layout == "auto" else layout,
                    compile=comp == "on")
        prefix = f"| {'cuda' if cuda else 'cpu'} | {preset} | {resolution} | {batch} |"
        try:
            r = run_case(spec)
        except click.ClickException as err:  # one failed case (e.g. --ops cuda without kernels)
            click.echo(err.format_message(), err=True)
            failed += 1
            row = f"{prefix} - | {precision} | {ops_impl} | {layout} | {comp} | {p} | failed | failed | - | - |"
        else:
            row = (f"{prefix} {r['batch_gpu']} | {precision} | {ops_impl} | {r['memory_format']} | {comp} | {p} | "
                   f"{r['sec_per_kimg']:.1f} | {r['img_per_sec']:.1f} | {r['warmup_sec']:.1f} | {r['peak_mem_gb']:.2f} |")
        rows.append(row)
        click.echo(row)
    if append:
        path = ROOT / "docs" / "benchmarks.md"
        new = not path.exists()
        with open(path, "a", encoding="utf-8") as f:
            if new:
                f.write("# Benchmarks\n\nAppended by the scripts in bench/.\n")
            f.write(f"\n## bench/train.py, {time.strftime('%Y-%m-%d %H:%M')}\n\n{machine()}; {threads} CPU threads "
                    f"per case; {steps} timed steps after {warmup} warm-up; synthetic in-memory data.\n\n")
            f.write(header + "\n|" + "---|" * columns + "\n" + "\n".join(rows) + "\n")
        click.echo(f"appended to {path}")
    if failed:
        raise click.ClickException(f"{failed} of {len(rows)} cases failed (their errors are above)")


if __name__ == "__main__":
    main()
