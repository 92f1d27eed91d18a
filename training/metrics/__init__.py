"""Quality metrics: FID, KID, precision / recall, Inception Score and StyleGAN3's equivariance (docs/metrics.md).

Papers: Heusel et al. 2017 (FID), Bińkowski et al. 2018 (KID), Kynkäänniemi et al. 2019
(improved precision and recall), Salimans et al. 2016 (IS); protocol and names of StyleGAN2-ADA
(Karras et al. 2020): ``fid50k_full``, ``kid50k_full``, ``pr50k3_full``, ``is50k``; of StyleGAN3
(Karras et al. 2021): ``eqt50k_int``, ``eqt50k_frac``, ``eqr50k``.

| module | owns |
|---|---|
| ``specs`` | metric names: parsing, counts, result keys |
| ``frechet``, ``kid``, ``precision_recall``, ``inception_score`` | the math, on feature tensors |
| ``equivariance`` | EQ-T / EQ-R: transforms, reference resampling (integer, Lanczos, band-limited rotation), PSNR |
| ``features`` | the extractor protocol, a seeded random-conv extractor, ``build_extractor`` |
| ``inception`` | the TF-FID Inception-v3 through torch-fidelity (optional), weights lookup |
| ``reals`` | one deterministic pass over every real image, shard by shard |
| ``gather`` | work split over processes, gathered in a world-size-independent order |
| ``stats_cache`` | real-data statistics cached on disk by dataset content, resolution, mirror, network |
| ``runner`` | ``compute_metrics``: real pass, generated pass, metrics |
| ``snapshot`` | ``evaluate_snapshot``: the training loop's hook, ``metric-<name>.jsonl`` |
"""

from training.metrics.equivariance import check_network as check_equivariance_network
from training.metrics.features import EXTRACTORS, FeatureExtractor, RandomConvFeatures, build_extractor
from training.metrics.frechet import FeatureMoments, frechet_distance, mean_cov
from training.metrics.gather import Ranks
from training.metrics.inception import MetricUnavailable, find_inception_weights, load_inception
from training.metrics.inception_score import inception_score
from training.metrics.kid import kernel_inception_distance
from training.metrics.precision_recall import precision_recall
from training.metrics.runner import MetricResult, compute_metrics
from training.metrics.snapshot import evaluate_snapshot, flat_results, write_metric_records
from training.metrics.specs import MetricSpec, is_result_key, parse_metric, parse_metrics

__all__ = [
    "EXTRACTORS",
    "FeatureExtractor",
    "FeatureMoments",
    "MetricResult",
    "MetricSpec",
    "MetricUnavailable",
    "RandomConvFeatures",
    "Ranks",
    "build_extractor",
    "check_equivariance_network",
    "compute_metrics",
    "evaluate_snapshot",
    "find_inception_weights",
    "flat_results",
    "frechet_distance",
    "inception_score",
    "is_result_key",
    "kernel_inception_distance",
    "load_inception",
    "mean_cov",
    "parse_metric",
    "parse_metrics",
    "precision_recall",
    "write_metric_records",
]
