"""Compute metrics for a generator: generation and feature extraction split over processes.

:func:`compute_metrics` is the one entry point (``tools/metrics.py`` and the training loop's
snapshot hook both call it). For a list of metrics it makes

1. one pass over the reals (skipped on a cache hit, :mod:`training.metrics.stats_cache`):
   moments of all real features plus the first ones as samples, shard by shard;
2. one pass over generated images, seeds ``seed .. seed + N - 1`` for the largest N asked,
   shared by all metrics (``fid50k_full`` and ``kid50k_full`` see the same 50k images);
3. for the equivariance metrics (StyleGAN3), one pass that renders each seed's ``w`` with the
   identity input transform and with each metric's transform (:mod:`training.metrics.equivariance`),
   keeping per-sample sums of squared differences and valid pixels;
4. the metrics on rank 0, broadcast to every process.

Generated images (StyleGAN2-ADA's protocol): z for seed s is the first ``z_dim`` draws of
``torch.Generator().manual_seed(s)`` (``tools/generate.py`` draws NVIDIA's numpy latent instead); a
conditional generator gets a class drawn from the same generator with the dataset's class
frequencies; noise inputs are random (``noise_mode='random'``), drawn from the same per-seed
generator, so an image depends on its seed only, never on the batch size or number of processes;
truncation psi 1 unless asked; images are quantised to uint8 as written files would be.

Everything is reproducible: the same seeds, batch size and device type give the same numbers on
any number of processes (see :mod:`training.metrics.gather`).
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import nn
from tqdm import tqdm

from stylegan.sampling import class_generator, noise_generator, seed_latents, to_uint8

from training.metrics import equivariance
from training.metrics.features import FeatureExtractor
from training.metrics.frechet import FeatureMoments, frechet_distance
from training.metrics.gather import Ranks, all_gather_objects, broadcast_object, run_parts
from training.metrics.inception_score import inception_score
from training.metrics.kid import kernel_inception_distance
from training.metrics.precision_recall import precision_recall
from training.metrics.reals import PartTally, RealSource, check_tallies, iter_part, open_reals
from training.metrics.specs import MetricSpec
from training.metrics.stats_cache import RealStats, cache_key, entry_path, load_stats, save_stats

NOISE_MODES = ("random", "const", "none")


@dataclass(frozen=True)
class MetricResult:
    """One metric's numbers (``results``: its keys, e.g. ``pr50k3_full_precision``) and its inputs;
    ``real_skipped``: damaged real images left out of the statistics (docs/metrics.md, "Damaged reals")."""

    metric: str
    results: dict[str, float]
    num_gen: int
    num_real: int
    features: str
    real_skipped: int = 0


def generator_resolution(G: nn.Module) -> int:
    """The resolution G produces now (its progressive-growing stage, if it has one)."""
    return int(getattr(G, "growth_resolution", G.img_resolution))


def seed_inputs(
    seeds: Sequence[int], z_dim: int, class_probs: torch.Tensor | None, info_codes: tuple = ()
) -> tuple[torch.Tensor, torch.Tensor | None, list[torch.Generator]]:
    """``z`` [N, z_dim], one-hot ``c`` [N, classes] (or None) and each seed's noise generator, all
    from :mod:`stylegan.sampling`: seed ``s``'s latent is the one ``tools/generate.py`` draws, its
    class comes from the seed's class generator, its noise inputs from its noise generator, its
    InfoGAN codes (if any) from its code generator."""
    z = seed_latents(seeds, z_dim, info_codes)
    gens = [noise_generator(s) for s in seeds]
    if class_probs is None:
        return z, None, gens
    cs = torch.cat([torch.multinomial(class_probs, 1, generator=class_generator(s)) for s in seeds])
    return z, nn.functional.one_hot(cs, class_probs.numel()).float(), gens


@torch.no_grad()
def generate_uint8(G: nn.Module, seeds: Sequence[int], *, class_probs: torch.Tensor | None,
                   truncation_psi: float, noise_mode: str) -> torch.Tensor:
    """uint8 images [N, C, r, r] on G's device for ``seeds``; each image depends on its seed only."""
    device = next(G.parameters()).device
    z, c, gens = seed_inputs(seeds, G.z_dim, class_probs, getattr(getattr(G, "config", None), "info_codes", ()))
    img = G(z.to(device), None if c is None else c.to(device), truncation_psi=truncation_psi,
            noise_mode=noise_mode, generator=gens)
    return to_uint8(img)  # as StyleGAN2-ADA quantises


def _bar(total: int, desc: str, enabled: bool) -> tqdm:
    return tqdm(total=total, desc=desc, unit="img", disable=not enabled, file=sys.stderr, dynamic_ncols=True, leave=False)


def real_stats(src: RealSource, extractor: FeatureExtractor, *, keep: int, ranks: Ranks, batch_size: int,
               progress: bool) -> RealStats | None:
    """Moments of every usable real image's features and the first ``keep`` of them (rank 0; None
    elsewhere). Damaged images are skipped and counted; :class:`training.data.DataError` on every
    process when the pass cannot stand (decided from all processes' tallies, so none is left
    waiting in a collective)."""
    dim, device = extractor.feature_dim, extractor.device
    moments = FeatureMoments(dim, device) if ranks.is_main else None
    kept: list[torch.Tensor] = []
    kept_n = 0
    tallies: dict[int, PartTally] = {}
    named = [0]  # bad samples this process has named in a warning

    def work(part: int) -> dict[str, torch.Tensor]:
        tally = tallies[part] = PartTally(named=named)
        feats = [extractor(b)["features"] for b in iter_part(src, part, batch_size, tally)]
        return {"features": torch.cat(feats) if feats else torch.zeros(0, dim, device=device)}

    def consume(part: int, out: dict[str, torch.Tensor]) -> None:
        nonlocal kept_n
        moments.add(out["features"])
        if kept_n < keep:
            take = out["features"][: keep - kept_n].cpu()
            kept.append(take)
            kept_n += take.shape[0]

    desc = f"reals ({src.resolution}px{', mirrored' if src.mirror else ''})"
    with _bar(src.num_images, desc, progress and ranks.is_main) as bar:
        run_parts(src.num_parts, work, {"features": dim}, ranks, device, consume, bar.update)
    merged: dict[int, PartTally] = {}
    for part_tallies in all_gather_objects(tallies, ranks):
        merged.update(part_tallies)
    skipped = check_tallies(src, [merged[p] for p in range(src.num_parts)])
    if not ranks.is_main:
        return None
    mu, sigma = moments.mean_cov()
    features = torch.cat(kept) if kept else torch.zeros(0, dim)
    return RealStats(mu=mu, sigma=sigma, num_images=moments.count, features=features, skipped=skipped)


def generated_outputs(G: nn.Module, extractor: FeatureExtractor, *, num_gen: int, outputs: Sequence[str], seed: int,
                      class_probs: torch.Tensor | None, truncation_psi: float, noise_mode: str, ranks: Ranks,
                      batch_size: int, progress: bool) -> dict[str, torch.Tensor] | None:
    """Extractor outputs (CPU, seed order) for seeds ``seed .. seed + num_gen - 1`` (rank 0; None elsewhere)."""
    dims = {name: extractor.feature_dim if name == "features" else extractor.num_classes for name in outputs}
    collected: dict[str, list[torch.Tensor]] = {name: [] for name in outputs}

    def work(part: int) -> dict[str, torch.Tensor]:
        seeds = range(seed + part * batch_size, seed + min((part + 1) * batch_size, num_gen))
        images = generate_uint8(G, seeds, class_probs=class_probs, truncation_psi=truncation_psi,
                                noise_mode=noise_mode)
        out = extractor(images)
        return {name: out[name] for name in outputs}

    def consume(part: int, out: dict[str, torch.Tensor]) -> None:
        for name in outputs:
            collected[name].append(out[name].cpu())

    with _bar(num_gen, f"generated ({generator_resolution(G)}px)", progress and ranks.is_main) as bar:
        run_parts(-(-num_gen // batch_size), work, dims, ranks, extractor.device, consume, bar.update)
    if not ranks.is_main:
        return None
    return {name: torch.cat(parts) for name, parts in collected.items()}


def equivariance_sums(G: nn.Module, specs: Sequence[MetricSpec], *, seed: int, class_probs: torch.Tensor | None,
                      truncation_psi: float, ranks: Ranks, batch_size: int, device: torch.device,
                      progress: bool) -> tuple[list[str], torch.Tensor] | None:
    """Per-sample ``(squared differences, valid values)`` of every equivariance kind in ``specs``, for
    seeds ``seed ..`` (the largest count asked), as ``(kinds, [N, 2 * len(kinds)] float64)`` on rank 0
    (None elsewhere). Each seed's ``z`` and class are the generated pass's; a kind renders only as
    many samples as its largest metric asks. The sums travel as float32 (relative error 6e-8)."""
    kinds = list(dict.fromkeys(s.kind for s in specs))
    active = {k: max(s.num_gen for s in specs if s.kind == k) for k in kinds}
    total = max(active.values())
    info_codes = getattr(getattr(G, "config", None), "info_codes", ())
    g_device = next(G.parameters()).device
    collected: list[torch.Tensor] = []

    def work(part: int) -> dict[str, torch.Tensor]:
        seeds = list(range(seed + part * batch_size, seed + min((part + 1) * batch_size, total)))
        z, c, _ = seed_inputs(seeds, G.z_dim, class_probs, info_codes)
        ws = G.mapping(z.to(g_device), None if c is None else c.to(g_device), truncation_psi=truncation_psi)
        rows = equivariance.sample_sums(G, ws, seeds, seed, kinds, active)
        return {"sums": rows.float()}

    def consume(part: int, out: dict[str, torch.Tensor]) -> None:
        collected.append(out["sums"].cpu().double())

    desc = f"equivariance ({', '.join(kinds)}, {generator_resolution(G)}px)"
    with _bar(total, desc, progress and ranks.is_main) as bar:
        with torch.no_grad():
            run_parts(-(-total // batch_size), work, {"sums": 2 * len(kinds)}, ranks, device, consume, bar.update)
    if not ranks.is_main:
        return None
    return kinds, torch.cat(collected)


def class_probabilities(G: nn.Module, src: RealSource | None) -> torch.Tensor | None:
    """Class frequencies for a conditional G: the dataset's, or uniform when no dataset is given or it lists no counts."""
    if G.c_dim == 0:
        return None
    if src is None:
        return torch.full((G.c_dim,), 1.0 / G.c_dim)
    counts = src.info.class_counts
    if not src.info.labelled:
        raise ValueError(f"the network is conditional ({G.c_dim} classes) but the dataset {src.source} has no labels")
    if counts is None:  # a dataset.json that lists no class counts (not one of dataset_tool's): uniform
        return torch.full((G.c_dim,), 1.0 / G.c_dim)
    if len(counts) != G.c_dim:
        raise ValueError(f"the network has {G.c_dim} classes but the dataset {src.source} has {len(counts)}")
    probs = torch.tensor(counts, dtype=torch.float64)
    return (probs / probs.sum()).float()


def _evaluate(spec: MetricSpec, gen: dict[str, torch.Tensor] | None, reals: RealStats | None, device: torch.device,
              batch_size: int, progress: bool, eq: tuple[list[str], torch.Tensor] | None = None) -> dict[str, float]:
    n = spec.num_gen
    if spec.is_equivariance:  # sums over the first n samples, exactly (fsum: no dependence on order or threads)
        kinds, rows = eq
        col = 2 * kinds.index(spec.kind)
        sq, count = rows[:n, col].tolist(), rows[:n, col + 1].tolist()
        return {spec.name: equivariance.psnr(math.fsum(sq), math.fsum(count))}
    if spec.kind == "is":
        mean, std = inception_score(gen["logits"][:n])
        return {f"{spec.name}_mean": mean, f"{spec.name}_std": std}
    features = gen["features"][:n]
    if spec.kind == "fid":
        moments = FeatureMoments(features.shape[1], device)
        for chunk in features.split(batch_size):  # fixed chunks: the same sums on any world size
            moments.add(chunk)
        return {spec.name: frechet_distance(*moments.mean_cov(), reals.mu, reals.sigma)}
    if spec.kind == "kid":  # only the sampled subsets go to the device
        return {spec.name: kernel_inception_distance(features, reals.features[: spec.max_real], device=device)}
    real = reals.features[: spec.max_real].to(device)
    total = 2 * (real.shape[0] + features.shape[0])
    with _bar(total, f"{spec.name} distances", progress) as bar:
        precision, recall = precision_recall(real, features.to(device), k=spec.nhood, progress=bar.update)
    return {f"{spec.name}_precision": precision, f"{spec.name}_recall": recall}


def compute_metrics(
    G: nn.Module,
    specs: Sequence[MetricSpec],
    extractor: FeatureExtractor | None,
    *,
    data: str | None = None,
    mirror: bool = False,
    ranks: Ranks | None = None,
    batch_size: int = 64,
    truncation_psi: float = 1.0,
    noise_mode: str = "random",
    seed: int = 0,
    cache: bool = True,
    cache_dir: str | None = None,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> list[MetricResult]:
    """Compute ``specs`` for generator ``G`` (on its device) with ``extractor``; every rank gets the results.

    ``data`` (a dataset directory or shard pattern) is required unless only Inception Scores and
    equivariance metrics are asked; ``extractor`` may be None when only equivariance metrics are
    (they compare pixels). Equivariance metrics need a StyleGAN3 ``G`` (``ValueError`` otherwise,
    before any pass) and always render without noise. ``ranks`` defaults to the initialised
    ``torch.distributed`` group; every process must call this with the same arguments. ``log``
    receives one-line notes (cache hits, timings).
    """
    ranks = ranks or Ranks.current()
    say = log if (log is not None and ranks.is_main) else (lambda msg: None)
    specs = list(specs)
    if not specs:
        raise ValueError("specs: empty; expected at least one metric")
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size}: expected >= 1")
    if noise_mode not in NOISE_MODES:
        raise ValueError(f"noise_mode={noise_mode!r}: expected one of {', '.join(NOISE_MODES)}")
    needs_reals = any(s.needs_reals for s in specs)
    if needs_reals and data is None:
        names = ", ".join(s.name for s in specs if s.needs_reals)
        raise ValueError(f"data: required for {names} (they compare with the real images); pass the dataset")
    feature_specs = [s for s in specs if s.needs_features]
    eq_specs = [s for s in specs if s.is_equivariance]
    equivariance.check_network(G, [s.name for s in eq_specs])
    if feature_specs and extractor is None:
        raise ValueError(f"extractor: required for {', '.join(s.name for s in feature_specs)} (a feature network)")
    if any(s.kind == "is" for s in specs) and extractor.num_classes < 2:
        raise ValueError(f"the feature extractor {extractor.name!r} has no class logits; Inception Score needs them")
    device = extractor.device if extractor is not None else next(G.parameters()).device
    start = time.perf_counter()
    src = None
    if data is not None:
        src = open_reals(data, mirror=mirror, resolution=generator_resolution(G), channels=G.img_channels,
                         labels=G.c_dim > 0)
    class_probs = class_probabilities(G, src)

    reals = None
    if needs_reals:
        keep = max(s.max_real or 0 for s in specs)
        reals = _cached_real_stats(src, extractor, keep=keep, ranks=ranks, batch_size=batch_size, cache=cache,
                                   cache_dir=cache_dir, progress=progress, say=say)
    gen = eq = None
    if feature_specs:
        outputs = (["features"] if needs_reals else []) + (["logits"] if any(s.kind == "is" for s in specs) else [])
        gen = generated_outputs(G, extractor, num_gen=max(s.num_gen for s in feature_specs), outputs=outputs,
                                seed=seed, class_probs=class_probs, truncation_psi=truncation_psi,
                                noise_mode=noise_mode, ranks=ranks, batch_size=batch_size, progress=progress)
    if eq_specs:
        eq = equivariance_sums(G, eq_specs, seed=seed, class_probs=class_probs, truncation_psi=truncation_psi,
                               ranks=ranks, batch_size=batch_size, device=device, progress=progress)
    results = None
    if ranks.is_main:
        results = []
        for spec in specs:
            values = _evaluate(spec, gen, reals, device, batch_size, progress, eq)
            num_real = 0 if reals is None else (reals.num_images if spec.kind == "fid" else min(reals.kept, spec.max_real))
            features = extractor.name if spec.needs_features else "none"
            results.append(MetricResult(spec.name, values, spec.num_gen, num_real, features,
                                        0 if reals is None else reals.skipped))
        say(f"metrics: {', '.join(f'{k} {v:.4g}' for r in results for k, v in r.results.items())} "
            f"({time.perf_counter() - start:.1f} s)")
    return broadcast_object(results, ranks, device)


def _cached_real_stats(src: RealSource, extractor: FeatureExtractor, *, keep: int, ranks: Ranks, batch_size: int,
                       cache: bool, cache_dir: str | None, progress: bool, say: Callable[[str], None]) -> RealStats | None:
    """Real statistics from the cache (rank 0 reads it) or from a pass over the data (all ranks)."""
    key = stats = None
    if ranks.is_main and cache:
        key = cache_key(src, extractor.name, cache_dir, progress)
        stats = load_stats(key, cache_dir)
        if stats is not None and not stats.covers(keep):
            need = min(keep, stats.num_images)
            say(f"metrics: cached real statistics hold {stats.kept} samples, {need} needed; recomputing")
            stats = None
        elif stats is not None:
            say(f"metrics: real statistics from the cache ({entry_path(key, cache_dir)})")
    if broadcast_object(stats is not None, ranks, extractor.device):
        return stats
    stats = real_stats(src, extractor, keep=keep, ranks=ranks, batch_size=batch_size, progress=progress)
    if ranks.is_main and stats.skipped:
        say(f"metrics: {stats.skipped} damaged real image(s) skipped (named in the warnings); the statistics "
            f"cover the other {stats.num_images // (2 if src.mirror else 1)}")
    if ranks.is_main and cache:
        path = save_stats(stats, key, cache_dir)
        say(f"metrics: real statistics of {stats.num_images} images cached in {path}")
    return stats
