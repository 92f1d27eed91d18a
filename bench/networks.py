"""Benchmark the networks: parameters, G forward img/s, G+D forward+backward img/s, peak memory.

    python bench/networks.py                                  # tiny at 32x32 on CPU (and CUDA if present)
    python bench/networks.py --preset tiny --preset cifar --batch 32 --threads 2
    python bench/networks.py --preset paper256 --resolution 64 --device cuda

Each case runs in a fresh process (so that the CPU peak memory, the process's peak resident set
size, belongs to that case alone; on CUDA the peak is ``torch.cuda.max_memory_allocated``). G
forward runs in eval mode under ``no_grad`` (fused modulated conv); G+D forward+backward runs in
train mode (non-fused), D on G's output, one backward through both. Warm-up iterations are not
timed; CUDA is synchronised before reading the clock. Nothing is asserted.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import click
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import stylegan  # noqa: E402


@dataclass(frozen=True)
class Case:
    preset: str
    resolution: int | None
    device: str
    batch: int
    iters: int
    warmup: int
    threads: int
    img_channels: int
    c_dim: int


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rate(fn, device: torch.device, batch: int, iters: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    _sync(device)
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    _sync(device)
    return batch * iters / (time.perf_counter() - start)


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def run_case(case: Case) -> dict:
    """Measure one case (runs in its own process)."""
    torch.set_num_threads(case.threads)
    device = torch.device(case.device)
    base_rss = _peak_rss_mib()
    torch.manual_seed(0)
    G, D = stylegan.build(case.preset, case.resolution, img_channels=case.img_channels, c_dim=case.c_dim)
    G.to(device), D.to(device)
    res = G.img_resolution
    gen = torch.Generator(device=device).manual_seed(0)
    z = torch.randn(case.batch, G.z_dim, device=device, generator=gen)
    c = None
    if case.c_dim:
        c = torch.nn.functional.one_hot(torch.arange(case.batch, device=device) % case.c_dim, case.c_dim).float()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def g_forward() -> None:
        with torch.no_grad():
            G(z, c)

    def gd_forward_backward() -> None:
        G.zero_grad(set_to_none=True), D.zero_grad(set_to_none=True)
        D(G(z, c), c).sum().backward()

    G.eval()
    g_rate = _rate(g_forward, device, case.batch, case.iters, case.warmup)
    G.train(), D.train()
    gd_rate = _rate(gd_forward_backward, device, case.batch, case.iters, case.warmup)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        peak = _peak_rss_mib() - base_rss
    return dict(
        preset=case.preset, res=res, device=case.device, batch=case.batch,
        g_params=sum(p.numel() for p in G.parameters()), d_params=sum(p.numel() for p in D.parameters()),
        g_fwd=g_rate, gd_fwd_bwd=gd_rate, peak_mib=peak,
    )


def _print_table(rows: list[dict]) -> None:
    header = f"{'preset':<10} {'res':>5} {'device':<7} {'batch':>5} {'G params':>12} {'D params':>12} " \
             f"{'G fwd img/s':>12} {'G+D f+b img/s':>14} {'peak MiB':>9}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['preset']:<10} {r['res']:>5} {r['device']:<7} {r['batch']:>5} {r['g_params']:>12,} "
            f"{r['d_params']:>12,} {r['g_fwd']:>12.1f} {r['gd_fwd_bwd']:>14.1f} {r['peak_mib']:>9.0f}"
        )


@click.command()
@click.option("--preset", "presets", multiple=True, default=["tiny"], show_default=True,
              type=click.Choice(stylegan.PRESETS), help="Preset(s) to measure.")
@click.option("--resolution", "resolutions", multiple=True, type=int,
              help="Resolution(s); default: each preset's own.")
@click.option("--device", "devices", multiple=True, type=click.Choice(["cpu", "cuda"]),
              help="Device(s); default: cpu, plus cuda when present.")
@click.option("--batch", default=32, show_default=True, type=click.IntRange(min=1), help="Batch size.")
@click.option("--iters", default=5, show_default=True, type=click.IntRange(min=1), help="Timed iterations.")
@click.option("--warmup", default=2, show_default=True, type=click.IntRange(min=0), help="Untimed iterations.")
@click.option("--threads", default=torch.get_num_threads(), show_default=True, type=click.IntRange(min=1),
              help="CPU threads (torch.set_num_threads).")
@click.option("--img-channels", default=3, show_default=True, type=click.IntRange(min=1), help="Image channels.")
@click.option("--c-dim", default=0, show_default=True, type=click.IntRange(min=0), help="Classes (0: unconditional).")
def main(presets, resolutions, devices, batch, iters, warmup, threads, img_channels, c_dim) -> None:
    """Print parameters, throughput and peak memory per preset, resolution and device."""
    if not devices:
        devices = ("cpu", "cuda") if torch.cuda.is_available() else ("cpu",)
    if "cuda" in devices and not torch.cuda.is_available():
        raise click.BadParameter("no CUDA device is present", param_hint="--device")
    for r in resolutions:
        if r < 4 or r & (r - 1):
            raise click.BadParameter(f"{r}: expected a power of two >= 4", param_hint="--resolution")
    cases = [
        Case(p, r, d, batch, iters, warmup, threads, img_channels, c_dim)
        for p in presets for r in (resolutions or (None,)) for d in devices
    ]
    rows = []
    ctx = multiprocessing.get_context("spawn")
    for case in cases:
        with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
            try:
                rows.append(pool.submit(run_case, case).result())
            except (RuntimeError, ValueError, MemoryError) as err:
                click.echo(f"{case.preset} res={case.resolution} {case.device}: failed: {err}", err=True)
    print(f"torch {torch.__version__}, threads {threads}")
    _print_table(rows)


if __name__ == "__main__":
    main()
