"""Benchmark of the data pipeline: conversion speed and sizes, reader throughput by PNG decoder.

    python bench/data.py [--images 2000] [--size 512] [--resolution 128] [--batches 50]

1. Makes `--images` synthetic photos (smooth random colour fields with noise, `--size` px, JPEG q90)
   in a temporary folder; converts them with tools/dataset_tool.py using 1 worker and all cores;
   prints images/s and the input vs output size.
2. Reads the converted shards and the demo dataset (data/) with training/data.py, decoding with
   pyspng and with Pillow, in the calling process and with 2 loader workers; prints images/s into
   batches (after a warm-up of a few batches).
Timings vary with the machine and its load; the benchmark prints them and asserts nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from training.data import open_stream  # noqa: E402


def make_photos(folder: Path, n: int, size: int, seed: int = 0) -> int:
    """JPEGs that compress like photos: a smooth colour field plus mild noise. Returns total bytes."""
    rng = np.random.default_rng(seed)
    total = 0
    for i in range(n):
        low = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
        im = Image.fromarray(low).resize((size, size), Image.Resampling.BICUBIC)
        a = np.asarray(im).astype(np.int16) + rng.integers(-12, 13, (size, size, 3), dtype=np.int16)
        path = folder / f"{i % 10}" / f"{i:06d}.jpg"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(a.clip(0, 255).astype(np.uint8)).save(path, quality=90)
        total += path.stat().st_size
    return total


def convert(src: Path, dest: Path, resolution: int, workers: int) -> float:
    cmd = [sys.executable, str(ROOT / "tools" / "dataset_tool.py"), "--source", str(src), "--dest", str(dest),
           "--resolution", str(resolution), "--labels", "folders", "--workers", str(workers), "--overwrite"]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def read_rate(source: str, decoder: str, workers: int, batch: int, batches: int) -> float:
    _, it = open_stream(source, rank=0, world_size=1, seed=0, batch_size=batch, workers=workers, decoder=decoder,
                        use_labels=True, mirror=True)
    for _ in range(max(3, 2 * workers)):  # warm-up: worker start, first shard groups
        next(it)
    t0 = time.perf_counter()
    for _ in range(batches):
        next(it)
    dt = time.perf_counter() - t0
    del it
    return batches * batch / dt


def dir_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.glob("*.tar"))


@click.command()
@click.option("--images", default=2000, show_default=True, help="Synthetic input images.")
@click.option("--size", default=512, show_default=True, help="Input image size (px).")
@click.option("--resolution", default=128, show_default=True, help="Output resolution of the conversion.")
@click.option("--batches", default=50, show_default=True, help="Timed batches per reader configuration.")
@click.option("--batch", default=64, show_default=True, help="Reader batch size.")
def main(images: int, size: int, resolution: int, batches: int, batch: int) -> None:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    with tempfile.TemporaryDirectory() as tmp:
        src, dest = Path(tmp) / "src", Path(tmp) / "out"
        src.mkdir()
        in_bytes = make_photos(src, images, size)
        print(f"\nConversion: {images} JPEGs {size}x{size} -> {resolution}x{resolution} PNG shards ({cores} cores)")
        print(f"{'workers':>8} {'seconds':>8} {'img/s':>8} {'input MiB':>10} {'output MiB':>11} {'out/in':>7}")
        for workers in sorted({1, cores}):
            dt = convert(src, dest, resolution, workers)
            out_bytes = dir_bytes(dest)
            print(f"{workers:>8} {dt:>8.2f} {images / dt:>8.0f} {in_bytes / 2**20:>10.1f} {out_bytes / 2**20:>11.1f} "
                  f"{out_bytes / in_bytes:>7.2f}")
        print(f"\nReader: img/s into batches of {batch} (mirror, labels)")
        print(f"{'dataset':>18} {'decoder':>8} {'workers':>8} {'img/s':>9}")
        for name, source in ((f"synthetic {resolution}px", str(dest)), ("demo 32px gray", str(ROOT / "data"))):
            if not Path(source, "dataset.json").exists():
                continue
            for decoder in ("pyspng", "pillow"):
                for workers in (0, 2):
                    rate = read_rate(source, decoder, workers, batch, batches)
                    print(f"{name:>18} {decoder:>8} {workers:>8} {rate:>9.0f}")


if __name__ == "__main__":
    main()
