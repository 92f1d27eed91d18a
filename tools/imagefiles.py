"""Images on disk: float network output to uint8, grids, and atomic PNG/JPEG/GIF/MP4 writers.

Networks produce float NCHW in [-1, 1]; files hold uint8 HWC (DESIGN.md, conventions). The
channel count picks the file's mode: 1 grayscale, 2 grayscale + alpha, 3 RGB, 4 RGBA. Every writer
goes to a temporary name in the target folder and renames it into place, so an interrupted run
never leaves a truncated image under the final name.
"""

from __future__ import annotations

import math
import os
import uuid
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from stylegan import sampling
from PIL import Image

IMAGE_FORMATS = ("png", "jpg")
_MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}
_PIL_FORMAT = {"png": "PNG", "jpg": "JPEG", "gif": "GIF"}
# Which channel counts each format stores (JPEG and MP4 have no alpha channel).
_FORMAT_CHANNELS = {"png": (1, 2, 3, 4), "jpg": (1, 3), "gif": (1, 2, 3, 4), "mp4": (1, 3)}


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """float [N, C, H, W] in [-1, 1] -> uint8 [N, H, W, C], quantised as StyleGAN2-ADA does
    (:func:`stylegan.sampling.to_uint8`: ``x * 127.5 + 128``, clamped, truncated)."""
    if images.ndim != 4:
        raise ValueError(f"images: expected [N, C, H, W], got shape {tuple(images.shape)}")
    return sampling.to_uint8(images.detach().cpu()).permute(0, 2, 3, 1).contiguous().numpy()


def check_channels(channels: int, fmt: str) -> None:
    """Refuse channel counts a format cannot store, rather than dropping channels silently."""
    allowed = _FORMAT_CHANNELS.get(fmt)
    if allowed is None:
        raise ValueError(f"format={fmt!r}: expected one of {', '.join(map(repr, _FORMAT_CHANNELS))}")
    if channels not in allowed:
        kinds = ", ".join(f"{c} ({_MODES[c]})" for c in allowed)
        raise ValueError(
            f"format={fmt!r} cannot store images with {channels} channels; it stores {kinds}"
            + ("; use png" if channels in (2, 4) else "")
        )


def to_pil(image: np.ndarray) -> Image.Image:
    """uint8 [H, W, C] -> a Pillow image in the mode of its channel count."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] not in _MODES:
        raise ValueError(
            f"image: expected uint8 [H, W, C] with C in 1-4, got {image.dtype} shape {tuple(image.shape)}"
        )
    if image.shape[2] == 1:
        return Image.fromarray(image[:, :, 0], mode="L")
    return Image.fromarray(image, mode=_MODES[image.shape[2]])


def make_grid(images: np.ndarray, cols: int | None = None) -> np.ndarray:
    """Tile uint8 [N, H, W, C] row by row into [rows * H, cols * W, C]; empty cells are 0.

    ``cols`` defaults to ``ceil(sqrt(N))``, which keeps the grid close to square.
    """
    if images.ndim != 4 or images.shape[0] == 0:
        raise ValueError(f"images: expected a non-empty [N, H, W, C] array, got shape {tuple(images.shape)}")
    n, h, w, c = images.shape
    cols = cols or math.ceil(math.sqrt(n))
    if cols < 1:
        raise ValueError(f"cols={cols!r}: expected an int >= 1")
    rows = math.ceil(n / cols)
    grid = np.zeros((rows * h, cols * w, c), dtype=images.dtype)
    for i in range(n):
        r, k = divmod(i, cols)
        grid[r * h : (r + 1) * h, k * w : (k + 1) * w] = images[i]
    return grid


def _tmp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")


def _replace_atomically(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def save_image(image: np.ndarray, path: str | Path, fmt: str | None = None) -> Path:
    """Write uint8 [H, W, C] as PNG or JPEG (quality 95); ``fmt`` defaults to the file's suffix."""
    path = Path(path)
    fmt = (fmt or path.suffix.lstrip(".")).lower().replace("jpeg", "jpg")
    if fmt not in IMAGE_FORMATS:
        raise ValueError(f"format={fmt!r} for {str(path)!r}: expected one of {', '.join(map(repr, IMAGE_FORMATS))}")
    check_channels(image.shape[2], fmt)
    pil = to_pil(image)
    options = {"quality": 95} if fmt == "jpg" else {}
    _replace_atomically(path, lambda tmp: pil.save(tmp, format=_PIL_FORMAT[fmt], **options))
    return path


def save_gif(frames: Sequence[np.ndarray], path: str | Path, fps: float) -> Path:
    """An endlessly looping GIF of uint8 [H, W, C] frames.

    GIF stores frame durations in 1/100 s, so the played rate is ``100 / round(100 / fps)``.
    Pillow folds a frame identical to the one before into the previous frame's duration.
    """
    if not frames:
        raise ValueError("frames: expected at least one frame")
    check_channels(frames[0].shape[2], "gif")
    pils = [to_pil(f) for f in frames]
    duration_ms = 10 * max(1, round(100 / fps))

    def write(tmp: Path) -> None:
        pils[0].save(tmp, format="GIF", save_all=True, append_images=pils[1:], duration=duration_ms, loop=0)

    path = Path(path)
    _replace_atomically(path, write)
    return path


def save_mp4(frames: Iterable[np.ndarray], path: str | Path, fps: float, size: tuple[int, int], channels: int) -> Path:
    """An H.264 MP4 through the optional ``imageio-ffmpeg`` package (``size`` is (width, height)).

    Raises ``ImportError`` with the install hint when the package is missing.
    """
    try:
        import imageio_ffmpeg  # optional dependency, only for MP4
    except ImportError as exc:
        raise ImportError(
            "writing MP4 needs the optional package imageio-ffmpeg (pip install imageio-ffmpeg); "
            "or write a .gif, which needs nothing extra"
        ) from exc
    check_channels(channels, "mp4")
    path = Path(path)

    def write(tmp: Path) -> None:
        # yuv420p needs even sizes; macro_block_size=2 pads odd sizes instead of the default 16.
        writer = imageio_ffmpeg.write_frames(
            str(tmp), size, fps=fps, pix_fmt_in="gray" if channels == 1 else "rgb24",
            output_params=["-f", "mp4"], macro_block_size=2, quality=8,
        )
        writer.send(None)  # start the encoder
        try:
            for frame in frames:
                writer.send(np.ascontiguousarray(frame))
        finally:
            writer.close()

    _replace_atomically(path, write)
    return path
