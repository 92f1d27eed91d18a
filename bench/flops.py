"""The training step's counted FLOPs, its achieved FLOP rate, and the machine's GEMM rate.

    python bench/flops.py                       # the demo step (tiny, 32x32, batch 32) on this CPU
    python bench/flops.py --append              # and add the table to docs/benchmarks.md
    python bench/flops.py --preset auto --resolution 64 --channels 3 --classes 0 --steps 16

FLOPs are counted with ``torch.utils.flop_counter``'s formulas (``training.flops.FlopCount``) over ``--steps`` real training
steps (``training.loop.train_step``, the regularisation phases at their real intervals when
``--steps`` is a multiple of 16): matrix products and convolutions, forward, backward and double
backward; element-wise work is not counted. The same steps are then timed without the counter,
and the float32 GEMM rate (1024x1024 matrices, the same thread count) is measured in the same run,
so the share of the hardware's matrix speed the step reaches is one number. Also printed: the step's
FLOPs per image over one forward pass of G and D (the ratio ``training/flops.py`` uses to estimate
a CPU run's time at start-up). Nothing is asserted.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.train import SyntheticFeed, machine  # noqa: E402


@click.command()
@click.option("--preset", default="tiny", show_default=True, help="Network preset.")
@click.option("--resolution", type=int, default=None, help="Image size.  [default: the preset's]")
@click.option("--channels", type=int, default=1, show_default=True, help="Image channels.")
@click.option("--classes", "c_dim", type=int, default=10, show_default=True, help="Classes (0: unconditional).")
@click.option("--batch", type=int, default=32, show_default=True, help="Batch.")
@click.option("--steps", type=int, default=16, show_default=True, help="Counted and timed steps (a multiple of 16).")
@click.option("--threads", type=int, default=None, help="CPU threads.  [default: all cores]")
@click.option("--append/--no-append", default=False, show_default=True,
              help="Also append the table to docs/benchmarks.md (with the date and machine).")
def main(preset, resolution, channels, c_dim, batch, steps, threads, append) -> None:
    """Count and time the training step (see the module docstring)."""
    import stylegan
    from ops.upfirdn2d import setup_filter
    from training.config import TrainConfig
    from training.cpu_threads import usable_cores
    from training.distributed import Dist
    from training.flops import FlopCount, forward_flops, gemm_flops_per_sec
    from training.loop import train_step
    from training.resolve import DataShape, resolve_run
    from training.session import build_session
    from training.signals import StopRequest

    torch.set_num_threads(threads or len(usable_cores()))
    res = resolution or stylegan.resolve_config(preset).resolution
    dist = Dist.from_accelerate()
    cfg = TrainConfig(preset=preset, batch=batch, precision="fp32", kimg=1.0)
    run = resolve_run(cfg, DataShape(res, channels, c_dim), world_size=1, device_type=dist.device.type)
    session = build_session(run.train, dist, run.network)
    feed = SyntheticFeed(res, channels, c_dim, dist.device, seed=0)
    stop, f = StopRequest(), setup_filter([1, 3, 3, 1], device=dist.device)

    train_step(session, feed, stop, f)  # warm-up (not counted)
    session.progress.step = 0
    with FlopCount() as counter:
        for _ in range(steps):
            train_step(session, feed, stop, f)
    step_flops = counter.total / (steps * batch)
    g_fwd, d_fwd = forward_flops(session.G_ema, session.D)

    session.progress.step = 0
    start = time.perf_counter()
    for _ in range(steps):
        train_step(session, feed, stop, f)
    img_per_sec = steps * batch / (time.perf_counter() - start)
    gemm = gemm_flops_per_sec(seconds=1.0)
    achieved = step_flops * img_per_sec

    header = ("| preset | res | batch | threads | GFLOP per image (step) | G+D forward GFLOP (G / D) | step / forward | img/s "
              "| achieved GFLOP/s | fp32 GEMM GFLOP/s | share of GEMM |")
    row = (f"| {preset} | {res} | {batch} | {torch.get_num_threads()} | {step_flops / 1e9:.3f} | {(g_fwd + d_fwd) / 1e9:.4f} "
           f"({g_fwd / 1e9:.4f} / {d_fwd / 1e9:.4f}) "
           f"| {step_flops / (g_fwd + d_fwd):.2f} | {img_per_sec:.1f} | {achieved / 1e9:.1f} | {gemm / 1e9:.1f} "
           f"| {100 * achieved / gemm:.1f} % |")
    click.echo(header)
    click.echo("|" + "---|" * (header.count("|") - 1))
    click.echo(row)
    if append:
        path = ROOT / "docs" / "benchmarks.md"
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(f"\n## bench/flops.py, {time.strftime('%Y-%m-%d %H:%M')}\n\n{machine()}; {steps} counted and timed "
                     "steps (torch.utils.flop_counter formulas: matrix products and convolutions, forward, backward, double backward), "
                     "synthetic in-memory data, fp32.\n\n")
            fh.write(header + "\n|" + "---|" * (header.count("|") - 1) + "\n" + row + "\n")
        click.echo(f"appended to {path}")


if __name__ == "__main__":
    main()
