"""Ways to look at what a generator learned: style mixing and latent interpolation.

Style mixing (StyleGAN sec. 3.1, fig. 3): the synthesis network reads one ``w`` per layer, coarse
resolutions first. Taking some layers' ``w`` from another seed transfers the aspects those layers
control: coarse layers pose and shape, fine layers colour and texture.

Interpolation (StyleGAN sec. 4.2; White 2016, "Sampling Generative Networks"): a walk through
keyframe seeds, linear in W (where the mapping has made the space fairly flat) or spherical in Z
(a Gaussian's mass lies near a sphere, so a straight line between two z's would pass through the
unlikely low-norm interior).

A StyleGAN3 network's walk can also be seen from a moving view (:class:`Motion`): translated and
rotated (:func:`tools.genlib.set_view`), then panned and spun from frame to frame, which shows what
that paper is about: the details move with the image instead of sticking to the pixel grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch
from torch import nn

from tools import genlib
from tools.genlib import ArgumentError
from tools.imagefiles import make_grid, to_uint8

SPACES = ("w", "z")


# ----- style mixing --------------------------------------------------------------------------------


def default_mix_layers(num_ws: int) -> list[int]:
    """The fine half of the layers, ``[num_ws // 2, num_ws)``: rows keep their coarse styles."""
    return list(range(num_ws // 2, num_ws))


def mix_styles(row_ws: torch.Tensor, col_ws: torch.Tensor, layers: Sequence[int]) -> torch.Tensor:
    """``ws`` [R, C, num_ws, w_dim]: row r's ws with ``layers`` replaced by column c's."""
    if row_ws.ndim != 3 or col_ws.ndim != 3 or row_ws.shape[1:] != col_ws.shape[1:]:
        raise ValueError(f"row_ws/col_ws: expected [*, num_ws, w_dim] alike, got {tuple(row_ws.shape)}, {tuple(col_ws.shape)}")
    num_ws = row_ws.shape[1]
    for layer in layers:
        if not 0 <= layer < num_ws:
            raise ArgumentError("layers", f"{layer} is out of range; this network has layers 0-{num_ws - 1}")
    r, c = row_ws.shape[0], col_ws.shape[0]
    ws = row_ws[:, None].repeat(1, c, 1, 1)  # [R, C, num_ws, w_dim]
    idx = list(layers)
    ws[:, :, idx] = col_ws[None, :, idx].expand(r, -1, -1, -1)
    return ws


def style_mixing_figure(
    G: nn.Module,
    row_seeds: Sequence[int],
    col_seeds: Sequence[int],
    layers: Sequence[int] | None = None,
    class_idx: int | None = None,
    truncation_psi: float = 1.0,
    truncation_cutoff: int | None = None,
    noise_mode: str = "const",
    batch_size: int = 16,
) -> np.ndarray:
    """uint8 [(R + 1) * H, (C + 1) * W, channels] figure.

    Top row: the column seeds; left column: the row seeds; cell (r, c): row seed r's ws with
    ``layers`` (default: the fine half) from column seed c. The top-left cell is empty (zeros).
    Random noise, when asked for, is the row seed's in every cell of its row. Without ``class_idx``
    a conditional network gives each seed class ``seed mod c_dim`` (:func:`tools.genlib.seed_classes`).
    """
    if not row_seeds or not col_seeds:
        raise ArgumentError("row_seeds" if not row_seeds else "col_seeds", "empty; expected at least one seed")
    layers = default_mix_layers(G.num_ws) if layers is None else list(layers)
    genlib.check_noise_mode(noise_mode)
    kw = dict(class_idx=class_idx, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff, batch_size=batch_size)
    row_ws = genlib.map_seeds(G, row_seeds, **kw)
    col_ws = genlib.map_seeds(G, col_seeds, **kw)
    mixed = mix_styles(row_ws, col_ws, layers).flatten(0, 1)  # [R * C, num_ws, w_dim], row-major
    all_ws = torch.cat([col_ws, row_ws, mixed])
    noise_seeds = list(col_seeds) + list(row_seeds) + [s for s in row_seeds for _ in col_seeds]
    images = torch.cat(list(genlib.iter_synthesize(G, all_ws, noise_seeds, noise_mode, batch_size)))
    images = to_uint8(images)
    nc, nr = len(col_seeds), len(row_seeds)
    cols, rows, cells = images[:nc], images[nc : nc + nr], images[nc + nr :]
    blank = np.zeros_like(images[:1])
    tiles = [blank, cols]
    for r in range(nr):
        tiles += [rows[r : r + 1], cells[r * nc : (r + 1) * nc]]
    return make_grid(np.concatenate(tiles), cols=nc + 1)


# ----- interpolation -------------------------------------------------------------------------------


def lerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``a + t * (b - a)`` with ``t`` [N] broadcast over the trailing dims of a, b [N, ...]."""
    t = t.reshape(-1, *([1] * (a.ndim - 1))).to(a.dtype)
    return a + t * (b - a)


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Spherical interpolation of rows of a, b [N, D] (Shoemake 1985, as used by White 2016).

    ``sin((1 - t) omega) / sin(omega) * a + sin(t omega) / sin(omega) * b`` with ``omega`` the angle
    between a and b; falls back to :func:`lerp` where the two are (anti)parallel within ``eps``.
    """
    a64, b64, t64 = a.double(), b.double(), t.double().reshape(-1, 1)
    cos = (a64 / a64.norm(dim=1, keepdim=True) * b64 / b64.norm(dim=1, keepdim=True)).sum(dim=1, keepdim=True)
    omega = cos.clamp(-1, 1).acos()
    so = omega.sin()
    near = so.abs() < eps
    safe = torch.where(near, torch.ones_like(so), so)
    out = ((1 - t64) * omega).sin() / safe * a64 + (t64 * omega).sin() / safe * b64
    out = torch.where(near, a64 + t64 * (b64 - a64), out)
    return out.to(a.dtype)


def walk_positions(num_keys: int, frames_per_transition: int, loop: bool) -> list[tuple[int, int, float]]:
    """``(key_a, key_b, t)`` for every frame of a walk through ``num_keys`` keyframes.

    A looping walk has ``num_keys * frames`` frames and returns towards key 0 (its last frame is
    not key 0 again, so the loop is seamless); an open walk has ``(num_keys - 1) * frames + 1``
    frames and ends exactly on the last key.
    """
    if num_keys < 2:
        raise ArgumentError("seeds", f"{num_keys} keyframe(s) per walk; expected at least 2")
    if frames_per_transition < 1:
        raise ArgumentError("frames", f"{frames_per_transition!r}; expected an int >= 1")
    transitions = num_keys if loop else num_keys - 1
    out = []
    for f in range(transitions * frames_per_transition):
        i, k = divmod(f, frames_per_transition)
        out.append((i, (i + 1) % num_keys, k / frames_per_transition))
    if not loop:
        out.append((num_keys - 1, num_keys - 1, 0.0))
    return out


def split_cells(seeds: Sequence[int], cells: int) -> list[list[int]]:
    """Split the seeds into ``cells`` equal walks: cell k walks ``seeds[k * K : (k + 1) * K]``."""
    if cells < 1 or len(seeds) % cells:
        raise ArgumentError(
            "seeds", f"{len(seeds)} seeds do not split evenly into {cells} grid cells; give a multiple of {cells}"
        )
    k = len(seeds) // cells
    return [list(seeds[i * k : (i + 1) * k]) for i in range(cells)]


@dataclass(frozen=True)
class Motion:
    """A StyleGAN3 video's view, frame by frame: the first frame translated by ``translate`` (units of
    the image, x right, y down) and rotated by ``rotate`` degrees (counter-clockwise), then moved by
    ``pan`` and turned by ``spin`` degrees over the whole video, linearly: frame k of n is at
    ``k / n`` of the way in a looping video (so a spin of 360 loops seamlessly) and ``k / (n - 1)``
    in an open one (its last frame is the whole way)."""

    translate: tuple[float, float] = (0.0, 0.0)
    rotate: float = 0.0
    pan: tuple[float, float] = (0.0, 0.0)
    spin: float = 0.0

    def at(self, frame: int, frames: int, loop: bool) -> tuple[tuple[float, float], float]:
        """``(translate, rotate)`` of ``frame`` (0-based) of ``frames``."""
        f = frame / frames if loop else frame / max(frames - 1, 1)
        t = (self.translate[0] + f * self.pan[0], self.translate[1] + f * self.pan[1])
        return t, self.rotate + f * self.spin


def iter_video_frames(
    G: nn.Module,
    seeds: Sequence[int],
    grid: tuple[int, int] = (1, 1),
    space: str = "w",
    frames_per_transition: int = 30,
    loop: bool = True,
    class_idx: int | None = None,
    truncation_psi: float = 1.0,
    truncation_cutoff: int | None = None,
    noise_mode: str = "const",
    batch_size: int = 16,
    motion: Motion | None = None,
) -> Iterator[np.ndarray]:
    """Yield uint8 [rows * H, cols * W, C] frames of ``grid = (cols, rows)`` walks through ``seeds``.

    ``space='w'`` lerps the keyframes' (truncated) ws; ``space='z'`` slerps their z and maps each
    frame. Random noise, when asked for, stays the cell's first seed's for the whole walk, and so
    does the class of a conditional network when ``class_idx`` is ``None`` (seed N: class
    ``N mod c_dim``, :func:`tools.genlib.seed_classes`), so a walk never changes class.
    ``motion`` (StyleGAN3 networks): the view of each frame (:class:`Motion`).
    """
    if space not in SPACES:
        raise ArgumentError("space", f"{space!r}; expected one of {', '.join(map(repr, SPACES))}")
    genlib.check_noise_mode(noise_mode)
    genlib.check_truncation(G, truncation_psi, truncation_cutoff)
    if motion is not None:
        genlib.check_view(G, motion=motion)
    cols, rows = grid
    walks = split_cells(list(seeds), cols * rows)
    positions = walk_positions(len(walks[0]), frames_per_transition, loop)
    kw = dict(truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff, batch_size=batch_size)
    first = genlib.seed_classes(G, [walk[0] for walk in walks])
    cell_class = [class_idx if class_idx is not None or first is None else first[k] for k in range(len(walks))]
    keys_z = [genlib.latents(walk, G.z_dim, genlib.network_codes(G)) for walk in walks]  # per cell [K, z_dim]
    keys_ws = [genlib.map_latents(G, z, cell_class[k], **kw) for k, z in enumerate(keys_z)] if space == "w" else None
    noise_seeds = [walk[0] for walk in walks]
    frames_per_batch = max(1, batch_size // len(walks))
    views = _views(motion, len(positions), loop)
    for start in range(0, len(positions), frames_per_batch):
        chunk = positions[start : start + frames_per_batch]
        ia = torch.tensor([p[0] for p in chunk])
        ib = torch.tensor([p[1] for p in chunk])
        t = torch.tensor([p[2] for p in chunk], dtype=torch.float64)
        ws = []  # frame-major: all cells of frame 0, then of frame 1, ...
        for cell in range(len(walks)):
            if space == "w":
                kws = keys_ws[cell]
                ws.append(lerp(kws[ia.to(kws.device)], kws[ib.to(kws.device)], t.to(kws.device)))
            else:
                z = slerp(keys_z[cell][ia], keys_z[cell][ib], t)
                ws.append(genlib.map_latents(G, z, cell_class[cell], **kw))
        ws = torch.stack(ws, dim=1).flatten(0, 1)  # [F * cells, num_ws, w_dim]
        chunk_views = None if views is None else views[start : start + len(chunk)]
        yield from _frame_grids(G, ws, noise_seeds, cols, noise_mode, batch_size, chunk_views)


def _views(motion: Motion | None, frames: int, loop: bool) -> list[tuple[tuple[float, float], float]] | None:
    """Each frame's ``(translate, rotate)``, or ``None`` without a motion (the network's own view)."""
    return None if motion is None else [motion.at(f, frames, loop) for f in range(frames)]


def _frame_grids(G: nn.Module, ws: torch.Tensor, noise_seeds: list[int], cols: int, noise_mode: str,
                 batch_size: int, views: list[tuple[tuple[float, float], float]] | None = None,
                 ) -> Iterator[np.ndarray]:
    """Render frame-major ``ws`` ``[frames * cells, num_ws, w_dim]`` (cell k's noise from
    ``noise_seeds[k]``) and yield one uint8 grid of ``cols`` columns per frame; with ``views`` (one
    ``(translate, rotate)`` per frame, StyleGAN3) each frame is rendered in its own view."""
    cells = len(noise_seeds)
    frames = ws.shape[0] // cells
    if views is None:
        batches = list(genlib.iter_synthesize(G, ws, noise_seeds * frames, noise_mode, batch_size))
    else:
        batches = []
        for f, (translate, rotate) in enumerate(views):
            with genlib.view(G, translate, rotate):
                batches += genlib.iter_synthesize(G, ws[f * cells : (f + 1) * cells], noise_seeds, noise_mode,
                                                  batch_size)
    images = to_uint8(torch.cat(batches))
    for f in range(frames):
        yield make_grid(images[f * cells : (f + 1) * cells], cols=cols)


def code_sweep_values(codes: Sequence[tuple[str, int]], index: int, frames_per_transition: int, loop: bool) -> list[float]:
    """The values InfoGAN code ``index`` takes, frame by frame, in a sweep (:func:`iter_code_sweep_frames`).

    A continuous code goes linearly from -1 to 1 in ``frames`` steps (``frames + 1`` frames), and
    with ``loop`` back again (``2 * frames`` frames, the last one short of -1 so the loop is seamless).
    A categorical code shows each class in turn for ``frames`` frames (``n * frames`` frames).
    """
    from stylegan.info_codes import check_code_value

    try:
        check_code_value(tuple(codes), index, 0.0)  # index exists (0 is valid for both kinds)
    except ValueError as exc:
        raise ArgumentError("code", str(exc)) from None
    if frames_per_transition < 1:
        raise ArgumentError("frames", f"{frames_per_transition!r}; expected an int >= 1")
    kind, n = codes[index]
    if kind == "cat":
        return [float(k) for k in range(n) for _ in range(frames_per_transition)]
    up = [-1.0 + 2.0 * k / frames_per_transition for k in range(frames_per_transition + 1)]
    return up + up[-2:0:-1] if loop else up


def iter_code_sweep_frames(
    G: nn.Module,
    seeds: Sequence[int],
    code: int,
    grid: tuple[int, int] = (1, 1),
    frames_per_transition: int = 30,
    loop: bool = True,
    class_idx: int | None = None,
    truncation_psi: float = 1.0,
    truncation_cutoff: int | None = None,
    noise_mode: str = "const",
    batch_size: int = 16,
) -> Iterator[np.ndarray]:
    """Yield uint8 frames of ``grid = (cols, rows)`` cells, one seed each, in which InfoGAN code
    ``code`` sweeps its range (:func:`code_sweep_values`) while the rest of each seed's z, its
    class and its noise stay fixed (Chen et al. 2016, fig. 2: varying one code, the others fixed)."""
    genlib.check_noise_mode(noise_mode)
    genlib.check_truncation(G, truncation_psi, truncation_cutoff)
    cols, rows = grid
    seeds = list(seeds)
    if len(seeds) != cols * rows:
        raise ArgumentError("seeds", f"{len(seeds)} seeds for {cols * rows} grid cells; a code sweep takes one seed "
                                     f"per cell ({cols * rows})")
    codes = genlib.network_codes(G)
    values = code_sweep_values(codes, code, frames_per_transition, loop)
    classes = genlib.seed_classes(G, seeds) if class_idx is None else class_idx
    frames_per_batch = max(1, batch_size // len(seeds))
    for start in range(0, len(values), frames_per_batch):
        chunk = values[start : start + frames_per_batch]
        z = torch.cat([genlib.latents(seeds, G.z_dim, codes, {code: v}) for v in chunk])  # frame-major
        labels = classes if classes is None or isinstance(classes, int) else list(classes) * len(chunk)
        ws = genlib.map_latents(G, z, labels, truncation_psi, truncation_cutoff, batch_size)
        yield from _frame_grids(G, ws, seeds, cols, noise_mode, batch_size)


def num_video_frames(num_seeds: int, cells: int, frames_per_transition: int, loop: bool) -> int:
    """How many frames :func:`iter_video_frames` yields."""
    keys = num_seeds // cells
    return (keys if loop else keys - 1) * frames_per_transition + (0 if loop else 1)


def parse_grid(text: str) -> tuple[int, int]:
    """``'3x2'`` -> (3 columns, 2 rows)."""
    parts = text.lower().split("x") if isinstance(text, str) else []
    if len(parts) != 2 or not all(p.strip().isdigit() and int(p) >= 1 for p in parts):
        raise ArgumentError("grid", f"{text!r}; expected COLSxROWS with both >= 1, e.g. '3x2'")
    return int(parts[0]), int(parts[1])
