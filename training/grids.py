"""Sample grids: ``samples/reals.png`` and ``samples/fakes<kimg>.png``, written with Pillow.

The fakes come from ``G_ema`` with the constant noise inputs and latents drawn once from a fixed
seed, so that successive grids show the same samples improving. A conditional run gets one row per
class (labelled with the class name in a left margin) and every image of a row is generated for
that class; an unconditional run gets an 8 x 8 grid. A header line records the training progress
(kimg, progressive phase, alpha), and the same facts go into the PNG's text chunks. Small images
are enlarged with nearest-neighbour so that a 32 x 32 sample is still visible.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont
from PIL.PngImagePlugin import PngInfo

from stylegan.sampling import seed_latents, to_uint8
from training.outputs import writing

MAX_CLASS_ROWS = 16
CLASS_COLS = 10
UNCOND_SIZE = 8
MIN_TILE = 64


@dataclass(frozen=True)
class GridLayout:
    """``rows`` x ``cols`` tiles; ``row_classes[r]`` is the class of row ``r`` (``None``: unconditional)."""

    rows: int
    cols: int
    row_classes: tuple[int, ...] | None
    row_labels: tuple[str, ...] | None

    @property
    def size(self) -> int:
        return self.rows * self.cols


def grid_layout(num_classes: int, class_names: Sequence[str] | None = None) -> GridLayout:
    """One row per class (at most :data:`MAX_CLASS_ROWS`), or 8 x 8 when ``num_classes`` is 0."""
    if num_classes <= 0:
        return GridLayout(UNCOND_SIZE, UNCOND_SIZE, None, None)
    classes = tuple(range(min(num_classes, MAX_CLASS_ROWS)))
    names = tuple(str(class_names[i]) if class_names else str(i) for i in classes)
    return GridLayout(len(classes), CLASS_COLS, classes, names)


def grid_inputs(layout: GridLayout, z_dim: int, c_dim: int, info_codes: tuple = ()) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed latents ``[rows * cols, z_dim]`` and one-hot labels for the grid (CPU tensors): cell
    ``i`` is seed ``i`` (:func:`stylegan.sampling.seed_latent`, the latent ``tools/generate.py``
    draws, InfoGAN codes included), so ``generate.py --seeds`` on a snapshot shows the same digits as its grid."""
    z = seed_latents(range(layout.size), z_dim, info_codes)
    if layout.row_classes is None or c_dim == 0:
        return z, torch.zeros([layout.size, c_dim])
    idx = torch.tensor([cls for cls in layout.row_classes for _ in range(layout.cols)])
    return z, F.one_hot(idx, c_dim).float()


@torch.no_grad()
def generate_images(
    G: torch.nn.Module, z: torch.Tensor, c: torch.Tensor, device: torch.device, batch: int = 32, precision: str = "fp32"
) -> torch.Tensor:
    """uint8 ``[N, C, H, W]`` images of ``G`` (constant noise, no truncation) on the CPU."""
    out = []
    for i in range(0, z.shape[0], batch):
        img = G(z[i : i + batch].to(device), c[i : i + batch].to(device), noise_mode="const", precision=precision)
        out.append(to_uint8(img).cpu())
    return torch.cat(out)




def collect_reals(
    batches: Iterator[tuple[torch.Tensor, torch.Tensor]], layout: GridLayout, max_batches: int = 64
) -> torch.Tensor:
    """Fill the grid from a stream of ``(uint8 images, labels)``: by class row, or in stream order."""
    if layout.row_classes is None:
        got: list[torch.Tensor] = []
        for _, (images, _) in zip(range(max_batches), batches):
            got.extend(images)
            if len(got) >= layout.size:
                break
        if not got:
            raise ValueError("the data stream gave no images for the reals grid")
        while len(got) < layout.size:  # a dataset smaller than the grid: repeat
            got.extend(got[: layout.size - len(got)])
        return torch.stack(got[: layout.size])
    rows: dict[int, list[torch.Tensor]] = {cls: [] for cls in layout.row_classes}
    for _, (images, labels) in zip(range(max_batches), batches):
        for img, lab in zip(images, labels.tolist()):
            if lab in rows and len(rows[lab]) < layout.cols:
                rows[lab].append(img)
        if all(len(r) == layout.cols for r in rows.values()):
            break
    sample = next((r[0] for r in rows.values() if r), None)
    if sample is None:
        raise ValueError("the data stream gave no labelled images for the reals grid")
    blank = torch.zeros_like(sample)
    tiles = [r[i] if i < len(r) else blank for r in rows.values() for i in range(layout.cols)]
    return torch.stack(tiles)


def make_grid(
    images: torch.Tensor, layout: GridLayout, *, tile: int | None = None, header: str | None = None
) -> np.ndarray:
    """Assemble uint8 ``[N, C, h, w]`` images into an RGB ``[H, W, 3]`` grid with labels and header."""
    n, c, h, w = images.shape
    if n != layout.size:
        raise ValueError(f"images: expected {layout.size} for a {layout.rows}x{layout.cols} grid, got {n}")
    tile = tile or max(h, MIN_TILE)
    x = images.float()
    x = x.repeat(1, 3, 1, 1) if c == 1 else x[:, :3] if c >= 3 else x[:, :1].repeat(1, 3, 1, 1)
    x = F.interpolate(x, size=(tile, tile), mode="nearest") if (h, w) != (tile, tile) else x
    x = x.to(torch.uint8).reshape(layout.rows, layout.cols, 3, tile, tile)
    body = x.permute(0, 3, 1, 4, 2).reshape(layout.rows * tile, layout.cols * tile, 3).numpy()

    font = ImageFont.load_default()
    margin = 0
    if layout.row_labels:
        probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
        margin = 8 + max(probe.textbbox((0, 0), s, font=font)[2] for s in layout.row_labels)
    top = 16 if header else 0
    canvas = Image.new("RGB", (margin + body.shape[1], top + body.shape[0]), (0, 0, 0))
    canvas.paste(Image.fromarray(body), (margin, top))
    draw = ImageDraw.Draw(canvas)
    if header:
        draw.text((margin + 2, 2), header, fill=(255, 255, 255), font=font)
    for r, label in enumerate(layout.row_labels or ()):
        draw.text((4, top + r * tile + tile // 2 - 5), label, fill=(255, 255, 255), font=font)
    return np.asarray(canvas)


def save_png(path: Path, image: np.ndarray, text: dict[str, str] | None = None) -> None:
    """Write ``image`` as PNG through a temporary name; ``text`` goes into tEXt chunks. A failed
    write raises :class:`~training.outputs.OutputError` naming ``path``."""
    path = Path(path)
    with writing(path.parent):
        path.parent.mkdir(parents=True, exist_ok=True)
    info = PngInfo()
    for key, value in (text or {}).items():
        info.add_text(key, str(value))
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with writing(path):
            Image.fromarray(image).save(tmp, format="PNG", pnginfo=info)
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
