"""Generation throughput: images per second by batch size and noise mode (tools/genlib.py).

    python bench/generate.py                       # tiny preset, 32x32, CPU
    python bench/generate.py --preset paper256 --device cuda --batches 1,8,32

The networks are freshly built (weights do not change the cost). ``random`` noise renders one image
per synthesis call (each seed owns its noise generator), so it shows what that costs against the
fully batched ``const``.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import click

import stylegan
from bench.timing import print_table, time_ms
from tools import genlib


@click.command()
@click.option("--preset", default="tiny", show_default=True, help="Network preset (stylegan.PRESETS).")
@click.option("--resolution", type=int, default=None, help="Override the preset's resolution.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--batches", default="1,4,16", show_default=True, help="Batch sizes to time.")
@click.option("--images", type=int, default=32, show_default=True, help="Images per timed call.")
@click.option("--noise-modes", default="const,random", show_default=True)
def main(preset: str, resolution: int | None, device: str, batches: str, images: int, noise_modes: str) -> None:
    dev = genlib.resolve_device(device)
    G, _ = stylegan.build(preset, resolution=resolution)
    G = G.eval().requires_grad_(False).to(dev)
    seeds = list(range(images))
    rows = []
    for mode in noise_modes.split(","):
        for batch in (int(b) for b in batches.split(",")):
            ms = time_ms(lambda: genlib.generate(G, seeds, noise_mode=mode, batch_size=batch), dev, warmup=1, repeats=3)
            rows.append([preset, G.img_resolution, dev.type, mode, batch, f"{ms:.1f}", f"{images / ms * 1e3:.1f}"])
    print_table(["preset", "res", "device", "noise", "batch", "ms/call", "img/s"], rows)


if __name__ == "__main__":
    main()
