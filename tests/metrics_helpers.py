"""Fixtures for the metrics tests: tiny sharded datasets and a generator that replays them.

``ReplayGenerator`` has the generator interface the metrics use (``z_dim``, ``c_dim``,
``img_channels``, ``img_resolution``, ``G(z, c, truncation_psi=, noise_mode=, generator=)``) and
returns, for the latent of seed ``s``, real image ``s`` exactly (in [-1, 1], so that quantising it
gives back the uint8 pixels). Metrics of such a "generator" against its own dataset have known
values: FID 0, precision = recall = 1.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import torch

from stylegan.sampling import seed_latent
from PIL import Image
from torch import nn

from tools.dataset_writer import ShardWriter


def random_images(n: int, res: int = 16, channels: int = 1, seed: int = 0) -> np.ndarray:
    """uint8 [n, res, res, channels]: smooth random blobs, so features vary between images."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(n, res // 4, res // 4, channels)).astype(np.float32)
    return np.repeat(np.repeat(coarse, 4, axis=1), 4, axis=2).astype(np.uint8)


def _png(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image).save(buf, format="png")
    return buf.getvalue()


def write_dataset(folder: Path, images: np.ndarray, labels: list[int] | None = None, per_shard: int = 10,
                  num_classes: int = 0) -> Path:
    """Shards + dataset.json (the format of tools/dataset_tool.py) holding ``images`` [N, H, W, C]."""
    folder.mkdir(parents=True, exist_ok=True)
    writer = ShardWriter(folder, "t", per_shard)
    for i, image in enumerate(images):
        writer.add(_png(image), None if labels is None else labels[i])
    writer.close()
    counts = None if labels is None else [labels.count(k) for k in range(num_classes)]
    info = {"format": "stylegan-dataset/1", "resolution": images.shape[1], "channels": images.shape[3],
            "num_images": writer.num_written, "num_classes": num_classes,
            "class_names": [str(k) for k in range(num_classes)] if labels is not None else None,
            "class_counts": counts, "shards": writer.shards, "source": "test"}
    (folder / "dataset.json").write_text(json.dumps(info))
    return folder


def seed_z(seed: int, z_dim: int) -> torch.Tensor:
    """The metrics' latent of ``seed`` (the one definition, stylegan.sampling)."""
    return seed_latent(seed, z_dim)


class ReplayGenerator(nn.Module):
    """Image ``s`` of ``images`` for the latent of seed ``s`` (see the module docstring)."""

    def __init__(self, images: np.ndarray, z_dim: int = 8, c_dim: int = 0) -> None:
        super().__init__()
        self.z_dim, self.c_dim = z_dim, c_dim
        self.img_channels, self.img_resolution = images.shape[3], images.shape[1]
        table = torch.stack([seed_z(s, z_dim) for s in range(len(images))])
        self.register_buffer("table", table)
        pixels = torch.from_numpy(images).permute(0, 3, 1, 2).float()
        self.register_buffer("images", (pixels - 127.5) / 127.5)
        self.anchor = nn.Parameter(torch.zeros(1), requires_grad=False)  # gives the module a device
        self.calls: list[dict] = []

    def forward(self, z, c=None, truncation_psi=1.0, noise_mode="random", generator=None):
        self.calls.append({"n": z.shape[0], "c": c, "truncation_psi": truncation_psi, "noise_mode": noise_mode})
        index = torch.cdist(z, self.table).argmin(dim=1)
        return self.images[index]
