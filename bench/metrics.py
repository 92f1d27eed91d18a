"""Cost of the metric parts: the math at published sizes (scaled down by --scale) and the extractors.

    python bench/metrics.py                          # CPU, 1/10 of the published sample counts
    python bench/metrics.py --device cuda --scale 1  # 50k generated, 200k reals for PR, D = 2048

Rows: Fréchet distance of two D x D covariances (two eigendecompositions), the float64 moment
accumulation of N feature vectors, KID (100 subsets of 1000), precision / recall (N generated vs
M reals, k = 3), and extractor throughput (random conv; Inception when torch-fidelity and its
weights are here, else the row says why not).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import click
import numpy as np
import torch

from bench.timing import print_table, time_ms
from training.metrics import (
    FeatureMoments,
    MetricUnavailable,
    RandomConvFeatures,
    frechet_distance,
    kernel_inception_distance,
    load_inception,
    precision_recall,
)


@click.command()
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--scale", type=float, default=0.1, show_default=True, help="Fraction of the published sample counts.")
@click.option("--dim", type=int, default=2048, show_default=True, help="Feature dimension (Inception: 2048).")
@click.option("--images", type=int, default=64, show_default=True, help="Images per extractor call.")
@click.option("--resolution", type=int, default=32, show_default=True, help="Image size for the extractors.")
def main(device: str, scale: float, dim: int, images: int, resolution: int) -> None:
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device))
    gen = torch.Generator().manual_seed(0)
    n_gen, n_real = max(int(50_000 * scale), 1000), max(int(200_000 * scale), 1000)
    feats = torch.randn(n_gen, dim, generator=gen).to(dev)
    reals = torch.randn(n_real, dim, generator=gen).to(dev)
    rows = []

    sigma = np.cov(np.random.default_rng(0).standard_normal((dim * 2, dim)), rowvar=False)
    ms = time_ms(lambda: frechet_distance(np.zeros(dim), sigma, np.zeros(dim), sigma), torch.device("cpu"), 1, 3)
    rows.append(["frechet_distance", f"D={dim}", "cpu (numpy)", f"{ms:.0f}"])

    def accumulate() -> None:
        m = FeatureMoments(dim, dev)
        for chunk in feats.split(1000):
            m.add(chunk)
        m.mean_cov()

    rows.append(["moments (float64)", f"N={n_gen}, D={dim}", dev.type, f"{time_ms(accumulate, dev, 1, 3):.0f}"])
    ms = time_ms(lambda: kernel_inception_distance(feats, reals), dev, 1, 3)
    rows.append(["kid (100 x 1000)", f"D={dim}", dev.type, f"{ms:.0f}"])
    ms = time_ms(lambda: precision_recall(reals, feats, k=3), dev, 0, 1)
    rows.append(["precision_recall k=3", f"N={n_gen}, M={n_real}, D={dim}", dev.type, f"{ms:.0f}"])

    batch = torch.randint(0, 256, (images, 3, resolution, resolution), dtype=torch.uint8, generator=gen)
    extractors = [("random conv", lambda: RandomConvFeatures(device=dev))]
    extractors.append(("inception (torch-fidelity)", lambda: load_inception(device=dev)))
    for name, build in extractors:
        try:
            ex = build()
        except MetricUnavailable as exc:
            rows.append([name, f"{images} x {resolution}px", dev.type, f"unavailable: {str(exc)[:60]}..."])
            continue
        ms = time_ms(lambda: ex(batch), dev, 1, 3)
        rows.append([name, f"{images} x {resolution}px", dev.type, f"{ms:.0f} ({images / ms * 1e3:.0f} img/s)"])
    print_table(["part", "size", "device", "ms"], rows)


if __name__ == "__main__":
    main()
