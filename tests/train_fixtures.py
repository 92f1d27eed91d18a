"""Helpers for the training tests: a tiny labelled dataset and small configs (not a test module)."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def make_dataset(
    dest: Path, *, resolution: int = 8, channels: int = 1, num_images: int = 64, num_classes: int = 4,
    shards: int = 2, seed: int = 0,
) -> Path:
    """Write ``num_images`` small class-dependent images as WebDataset shards + dataset.json."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    per_shard = -(-num_images // shards)
    entries = []
    index = 0
    for s in range(shards):
        name = f"test-{s:06d}.tar"
        count = 0
        with tarfile.open(dest / name, "w") as tar:
            for _ in range(per_shard):
                if index >= num_images:
                    break
                label = index % max(num_classes, 1)
                yy, xx = np.mgrid[0:resolution, 0:resolution]
                base = 128 + 100 * np.sin((xx * (label + 1) + yy) / resolution * np.pi)
                img = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
                img = np.repeat(img[:, :, None], channels, axis=2)
                buf = io.BytesIO()
                Image.fromarray(img[:, :, 0] if channels == 1 else img).save(buf, format="PNG")
                files = {f"{index:06d}.png": buf.getvalue()}
                if num_classes:
                    files[f"{index:06d}.cls"] = str(label).encode()
                for fname, data in files.items():
                    info = tarfile.TarInfo(fname)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
                index += 1
                count += 1
        entries.append({"name": name, "count": count})
    meta = {
        "resolution": resolution, "channels": channels, "num_images": num_images,
        "num_classes": num_classes, "class_names": [f"c{i}" for i in range(num_classes)] if num_classes else None,
        "shards": entries,
    }
    (dest / "dataset.json").write_text(json.dumps(meta))
    return dest


def resolve_cfg(cfg, info, world_size: int = 1):
    """``cfg`` resolved for the dataset ``info`` (the tiny preset unless the test names one)."""
    from training.resolve import DataShape, resolve_run

    if cfg.preset is None:
        cfg = cfg.replace(preset="tiny")
    return resolve_run(cfg, DataShape.of(info), world_size=world_size).train


class RecordGrads(torch.optim.Optimizer):
    """An optimizer whose step only copies the (unscaled) gradients it is given (``None`` where none)."""

    def __init__(self, params):
        super().__init__(params, {})
        self.grads: list[torch.Tensor | None] = []

    def step(self, closure=None):
        self.grads = [None if p.grad is None else p.grad.detach().clone() for g in self.param_groups for p in g["params"]]


def run_loss_phase(name, G, D, opt, micro, *, settings, dist, pl_mean, scaler=None, augment=None, blur_sigma=0.0):
    """:func:`training.step.run_phase` of a fresh :class:`training.loss.StyleGAN2Loss` whose
    path-length running mean starts at ``pl_mean`` and whose D inputs are blurred with ``blur_sigma``
    (the tests' way to run one phase)."""
    from training.loss import StyleGAN2Loss
    from training.step import run_phase

    loss = StyleGAN2Loss(G, D, settings, augment=augment)
    loss.pl_mean.copy_(torch.as_tensor(pl_mean))
    loss.blur_sigma = blur_sigma
    return run_phase(name, loss, opt, micro, dist=dist, scaler=scaler)


def rewrite_shard(shard: Path, change) -> None:
    """Rewrite a shard's members through ``change(name, data) -> data | None`` (None drops the member):
    the damaged copies of the data-fault tests."""
    with tarfile.open(shard) as tar:
        members = [(m.name, tar.extractfile(m).read()) for m in tar if m.isfile()]
    with tarfile.open(shard, "w") as tar:
        for name, data in members:
            data = change(name, data)
            if data is not None:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
