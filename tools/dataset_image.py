"""One input image to one output PNG: decode, check, convert channels, crop/resize/pad, encode.

Runs in the worker processes of tools/dataset_tool.py. A bad input never raises out of
`process`: it comes back with a short reason code (the summary groups by it) and a detail line
(dataset.json keeps both), so one broken file among millions does not end a conversion.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

from tools.dataset_sources import read_item

TRANSFORMS = ("center-crop", "center-crop-wide", "resize", "pad")
FILTERS = {"lanczos": Image.Resampling.LANCZOS, "box": Image.Resampling.BOX, "bicubic": Image.Resampling.BICUBIC}
MODES = {1: "L", 3: "RGB", 4: "RGBA"}
PNG_COMPRESS_LEVEL = 6  # zlib's default: most of level 9's size at a fraction of its time

_GRAY = {"1", "L", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"}
_ALPHA = {"LA", "La", "PA", "RGBA", "RGBa"}


class BadImage(Exception):
    """An input that cannot become a sample; `reason` is the short code the summary counts."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


@dataclass(frozen=True)
class ImageSpec:
    resolution: int
    channels: int
    transform: str = "center-crop"
    resize_filter: str = "lanczos"
    min_size: int = 1


@dataclass(frozen=True)
class Result:
    """What a worker sends back: the PNG, or why there is none, and notes (e.g. colour dropped)."""

    index: int
    png: bytes | None
    reason: str = ""
    detail: str = ""
    note: str = ""


def mode_kind(mode: str, palette_mode: str | None = None, has_transparency: bool = False) -> tuple[bool, bool]:
    """(has colour, has alpha) for a Pillow mode."""
    if mode == "P" or mode == "PA":
        return palette_mode not in (None, "L", "LA"), mode == "PA" or has_transparency or palette_mode == "RGBA"
    return mode not in _GRAY and mode not in ("LA", "La"), mode in _ALPHA


def peek_kind(data: bytes) -> tuple[bool, bool] | None:
    """(has colour, has alpha) from the header alone; None when it is not a readable image."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            pal = im.palette.mode if im.mode in ("P", "PA") and im.palette is not None else None
            return mode_kind(im.mode, pal, "transparency" in im.info)
    except Exception:  # noqa: BLE001 - any failure here only means "not usable for the guess"
        return None


def load_image(data: bytes, spec: ImageSpec | None = None) -> Image.Image:
    """Decode fully (so truncation shows now) and undo EXIF rotation; raises BadImage.

    With a spec, the size is checked against --min-size from the header, before any decoding, and
    big JPEGs are decoded at reduced scale.
    """
    if not data:
        raise BadImage("empty file", "0 bytes")
    try:
        im = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as e:
        raise BadImage("too large", str(e)) from None
    except Image.UnidentifiedImageError:
        raise BadImage("not an image", f"Pillow cannot identify the format (starts with {data[:16]!r})") from None
    except Exception as e:  # noqa: BLE001 - Pillow raises many types for non-images
        raise BadImage("not an image", f"{type(e).__name__}: {e}") from None
    if spec is not None:
        if min(im.size) < spec.min_size:
            raise BadImage("too small", f"{im.size[0]}x{im.size[1]}, smaller than --min-size {spec.min_size}")
        _draft(im, spec)
    try:
        im.load()
        return ImageOps.exif_transpose(im)
    except Image.DecompressionBombError as e:
        raise BadImage("too large", str(e)) from None
    except Exception as e:  # noqa: BLE001 - truncated data surfaces as OSError, SyntaxError, zlib.error, ...
        raise BadImage("truncated or corrupt", f"{im.format or '?'} {type(e).__name__}: {e}") from None


def to_channels(im: Image.Image, channels: int) -> tuple[Image.Image, str]:
    """Convert to L/RGB/RGBA; alpha is composited over black when dropped. Returns (image, note)."""
    if im.mode.startswith("I") or im.mode == "F":
        a = np.asarray(im).astype(np.float64)
        a = a / 257.0 if im.mode.startswith("I;16") or a.max(initial=0) > 255 else a  # 16-bit to 8-bit
        im = Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L")
    if im.mode in ("P", "PA"):
        im = im.convert("RGBA")
    color, alpha = mode_kind(im.mode)
    note = "colour converted to grayscale" if color and channels == 1 else ""
    target = MODES[channels]
    if alpha and channels != 4:
        rgba = np.asarray(im.convert("RGBA")).astype(np.uint16)
        premul = (rgba[..., :3] * rgba[..., 3:] + 127) // 255  # over black: c * a / 255
        im = Image.fromarray(premul.astype(np.uint8), "RGB")
        note = note or "alpha composited over black"
    return (im if im.mode == target else im.convert(target)), note


def transform(im: Image.Image, spec: ImageSpec) -> Image.Image:
    """Crop/resize/pad to exactly resolution x resolution."""
    r, f = spec.resolution, FILTERS[spec.resize_filter]
    w, h = im.size
    if spec.transform == "resize":
        return im.resize((r, r), f)
    if spec.transform == "center-crop":
        s = min(w, h)
        left, top = (w - s) // 2, (h - s) // 2
        return im.resize((r, r), f, box=(left, top, left + s, top + s))
    if spec.transform == "center-crop-wide":
        # A 2:1 crop (as for LSUN cars), scaled to r x r/2 and centred on a black r x r canvas.
        cw, ch = (w, w // 2) if w < 2 * h else (2 * h, h)
        left, top = (w - cw) // 2, (h - ch) // 2
        inner = im.resize((r, r // 2), f, box=(left, top, left + cw, top + ch))
        return _paste_centered(inner, r)
    if spec.transform == "pad":
        scale = r / max(w, h)
        inner = im.resize((max(1, round(w * scale)), max(1, round(h * scale))), f)
        return _paste_centered(inner, r)
    raise ValueError(f"--transform={spec.transform!r}: expected one of {', '.join(TRANSFORMS)}")


def _paste_centered(inner: Image.Image, r: int) -> Image.Image:
    canvas = Image.new(inner.mode, (r, r))  # zeros: black, transparent for RGBA
    canvas.paste(inner, ((r - inner.width) // 2, (r - inner.height) // 2))
    return canvas


def _draft(im: Image.Image, spec: ImageSpec) -> None:
    """Let libjpeg decode big JPEGs at 1/2..1/8 scale, keeping at least twice the needed pixels."""
    if im.format != "JPEG":
        return
    w, h = im.size
    side = min(w, h) if spec.transform in ("center-crop", "resize") else max(w, h)
    k = 2 * spec.resolution / side
    if k < 0.5:
        im.draft(im.mode, (math.ceil(w * k), math.ceil(h * k)))


def encode_png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buf.getvalue()


def convert(data: bytes, spec: ImageSpec) -> tuple[bytes, str]:
    """Input bytes to output PNG bytes (and a note); raises BadImage."""
    im, note = to_channels(load_image(data, spec), spec.channels)
    return encode_png(transform(im, spec)), note


def process(index: int, locator: tuple, spec: ImageSpec) -> Result:
    """One input to a Result; never raises for bad input."""
    try:
        data = read_item(locator)
    except OSError as e:
        return Result(index, None, "unreadable", f"{type(e).__name__}: {e}")
    try:
        png, note = convert(data, spec)
    except BadImage as e:
        return Result(index, None, e.reason, e.detail)
    return Result(index, png, note=note)


def process_chunk(jobs: list[tuple[int, tuple]], spec: ImageSpec) -> list[Result]:
    """Worker entry point: a few inputs per call keeps the inter-process overhead small."""
    return [process(index, locator, spec) for index, locator in jobs]
