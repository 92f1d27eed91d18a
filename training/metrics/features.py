"""Feature extractors: the pluggable protocol, a seeded random-conv extractor, and the factory.

Every metric sees images only through a :class:`FeatureExtractor`: a callable that takes uint8
images ``[N, C, H, W]`` (C = 1, 3 or 4, any size, on its ``device``) and returns float32
``{"features": [N, feature_dim]}`` plus ``"logits": [N, num_classes]`` when it classifies
(Inception Score needs logits; FID, KID and precision / recall need features). Its ``name`` goes
into the real-statistics cache key, so it must change whenever the features would.

Extractors (``build_extractor(kind)``):

* ``inception`` (:mod:`training.metrics.inception`): the TensorFlow FID reference network
  through torch-fidelity; the only one whose numbers compare with published ones.
* ``random`` (:class:`RandomConvFeatures`): a small convolutional network with weights drawn from
  a seeded generator. No download, no training, deterministic, fast on a CPU: for tests and for
  demos on data that Inception does not fit (32x32 grayscale digits). Random convolutional
  features separate image distributions well enough to rank snapshots of one run and to show mode
  collapse, but the numbers mean nothing outside this code and this seed.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import nn

EXTRACTORS = ("inception", "random")


@runtime_checkable
class FeatureExtractor(Protocol):
    """What the runner needs from a feature network (see the module docstring)."""

    name: str
    feature_dim: int
    num_classes: int
    device: torch.device

    def __call__(self, images: torch.Tensor) -> dict[str, torch.Tensor]: ...


def to_rgb(images: torch.Tensor) -> torch.Tensor:
    """uint8 [N, 1|3|4, H, W] -> [N, 3, H, W]: grayscale is repeated, alpha dropped."""
    if images.ndim != 4 or images.shape[1] not in (1, 3, 4):
        raise ValueError(f"images of shape {tuple(images.shape)}: expected [N, C, H, W] with C = 1, 3 or 4")
    if images.shape[1] == 1:
        return images.expand(-1, 3, -1, -1)
    return images[:, :3]


def check_images(images: torch.Tensor) -> None:
    if not torch.is_tensor(images) or images.dtype != torch.uint8:
        raise ValueError(f"images must be a uint8 tensor [N, C, H, W], got {getattr(images, 'dtype', type(images))}")


class RandomConvFeatures(nn.Module):
    """Features of a fixed random convolutional network (not comparable to anything published).

    Images are scaled to [-1, 1], resized to ``size`` x ``size`` (area for shrinking, bilinear for
    growing), turned to RGB, and sent through three 3x3 conv + leaky-ReLU layers (32, 64, ``dim``
    channels, two 2x average-pool steps); the features are the spatial mean and standard
    deviation of the last layer (``2 * dim`` values), the logits a fixed random linear map of them
    to ``num_classes``. Weights are He-scaled normals from ``torch.Generator().manual_seed(seed)``
    on the CPU, so they are identical on every device and process.
    """

    def __init__(self, seed: int = 0, dim: int = 64, size: int = 32, num_classes: int = 10,
                 device: torch.device | str = "cpu") -> None:
        super().__init__()
        if dim < 1 or size < 8 or num_classes < 2:
            raise ValueError(
                f"dim={dim}, size={size}, num_classes={num_classes}: expected dim >= 1, size >= 8, classes >= 2"
            )
        gen = torch.Generator().manual_seed(seed)
        widths = [3, 32, 64, dim]
        self.weights = nn.ParameterList(
            nn.Parameter(torch.randn(o, i, 3, 3, generator=gen) * math.sqrt(2.0 / (i * 9)), requires_grad=False)
            for i, o in zip(widths[:-1], widths[1:])
        )
        self.head = nn.Parameter(torch.randn(num_classes, 2 * dim, generator=gen) / math.sqrt(2 * dim), requires_grad=False)
        self.size, self.feature_dim, self.num_classes = size, 2 * dim, num_classes
        self.name = f"random-conv-v1-seed{seed}-dim{dim}-size{size}-classes{num_classes}"
        self.device = torch.device(device)
        self.to(self.device).eval()

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        check_images(images)
        x = to_rgb(images.to(self.device)).float() / 127.5 - 1.0
        if x.shape[-1] != self.size or x.shape[-2] != self.size:
            mode = "area" if x.shape[-1] > self.size else "bilinear"
            extra = {} if mode == "area" else {"align_corners": False}
            x = F.interpolate(x, size=(self.size, self.size), mode=mode, **extra)
        for i, w in enumerate(self.weights):
            x = F.leaky_relu(F.conv2d(x, w, padding=1), 0.2)
            if i < len(self.weights) - 1:
                x = F.avg_pool2d(x, 2)
        features = torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3))], dim=1)
        return {"features": features, "logits": features @ self.head.T}


def build_extractor(
    kind: str,
    device: torch.device | str = "cpu",
    *,
    inception_weights: str | Path | None = None,
    cache_dir: str | Path | None = None,
    seed: int = 0,
) -> FeatureExtractor:
    """The extractor named ``kind`` (one of :data:`EXTRACTORS`) on ``device``.

    ``inception`` raises :class:`training.metrics.inception.MetricUnavailable` when torch-fidelity
    or the weights file is missing; the message says what to install and where to put the file.
    """
    if kind == "inception":
        from training.metrics.inception import load_inception

        return load_inception(inception_weights, cache_dir=cache_dir, device=device)
    if kind == "random":
        return RandomConvFeatures(seed=seed, device=device)
    raise ValueError(f"feature extractor {kind!r}: expected one of {', '.join(EXTRACTORS)}")
