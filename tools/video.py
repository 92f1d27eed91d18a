"""Interpolation video: walk through keyframe seeds in W (lerp) or Z (slerp), as a GIF or MP4.

    python tools/video.py --network network.safetensors --seeds 0-7 --grid 2x2 --space w \\
        --frames 30 --fps 30 --out walk.gif

``--grid CxR`` shows C x R walks side by side; the seeds are split evenly between the cells (cell k
walks the k-th slice). ``--frames`` is the number of frames between two consecutive keyframes; a
looping walk (the default) has ``keys * frames`` frames, an open one ``(keys - 1) * frames + 1``.
GIF needs nothing extra; MP4 needs the optional package imageio-ffmpeg.

``--sweep-code I`` (networks trained with ``--info-codes``) makes a different video: each grid cell
is one seed, and InfoGAN code I sweeps its range while the rest of z stays fixed: a continuous code
from -1 to 1 in ``--frames`` steps (and back with ``--loop``), a categorical code through its
classes, ``--frames`` frames each (tools/latent_walks.py, ``iter_code_sweep_frames``).

StyleGAN3 networks can be watched from a moving view: ``--translate X,Y`` and ``--rotate DEG`` place
the first frame as ``generate.py``'s options place an image, and ``--pan X,Y`` / ``--spin DEG`` move
and turn the view by that much over the whole video, linearly (``--spin 360`` with ``--loop``: one
seamless turn). Units as ``generate.py``'s: the image's size, x right, y down; degrees
counter-clockwise (tools/latent_walks.py, ``Motion``).
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python tools/video.py` from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import click

from tools import genlib
from tools.cli_common import SEEDS, finite_float, flags, load_checked, network_options, nvidia_flag, progress, vec2
from tools.imagefiles import check_channels, save_gif, save_mp4
from tools.latent_walks import (
    SPACES, Motion, code_sweep_values, iter_code_sweep_frames, iter_video_frames, num_video_frames, parse_grid,
    split_cells,
)

VIDEO_FORMATS = ("gif", "mp4")


def _grid(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, int]:
    try:
        return parse_grid(value)
    except genlib.ArgumentError as exc:
        raise click.BadParameter(exc.reason, ctx=ctx, param=param) from None


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@network_options
@click.option("--seeds", type=SEEDS, required=True, help="Keyframe seeds, split evenly between the grid cells.")
@click.option("--grid", default="1x1", callback=_grid, help="COLSxROWS walks side by side.")
@click.option("--space", type=click.Choice(SPACES), default="w", help="Interpolate in w (lerp) or z (slerp).")
@click.option("--frames", type=click.IntRange(min=1), default=30, help="Frames between two consecutive keyframes.")
@click.option("--fps", type=click.FloatRange(min=0, min_open=True, max=1000), default=30.0, help="Frames per second.")
@click.option("--loop/--no-loop", default=True, help="Walk back to the first keyframe (a seamless loop).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Output file, .gif or .mp4.")
@click.option("--sweep-code", "sweep_code", type=click.IntRange(min=0), default=None, metavar="INDEX",
              help="InfoGAN networks: instead of a walk, sweep code INDEX (a continuous one from -1 to 1, a "
                   "categorical one through its classes) with the rest of z fixed; one seed per grid cell.")
@click.option("--translate", default=None, metavar="X,Y", callback=vec2,
              help="StyleGAN3 networks: the first frame translated by X,Y in units of the image (x right, y down).")
@click.option("--rotate", type=float, default=None, metavar="DEG", callback=finite_float,
              help="StyleGAN3 networks: the first frame rotated by DEG degrees, counter-clockwise.")
@click.option("--pan", default=None, metavar="X,Y", callback=vec2,
              help="StyleGAN3 networks: move the view by X,Y (units of the image) over the whole video.")
@click.option("--spin", type=float, default=None, metavar="DEG", callback=finite_float,
              help="StyleGAN3 networks: turn the view by DEG degrees over the whole video (360 with --loop: a "
                   "seamless turn).")
@nvidia_flag("--w-frames", "here it is --frames (frames between two consecutive keyframes)")
@nvidia_flag("--num-keyframes", "here the keyframes are the seeds: give each grid cell as many seeds as keyframes")
@nvidia_flag("--output", "here it is --out (a .gif or .mp4 file)")
def main(
    network: Path,
    seeds: list[int],
    grid: tuple[int, int],
    space: str,
    frames: int,
    fps: float,
    loop: bool,
    truncation_psi: float,
    truncation_cutoff: int | None,
    class_idx: str | None,
    noise_mode: str,
    batch_size: int,
    device: str,
    out: Path,
    sweep_code: int | None,
    translate: tuple[float, float] | None,
    rotate: float | None,
    pan: tuple[float, float] | None,
    spin: float | None,
) -> None:
    """Write a video that interpolates between seeds."""
    fmt = out.suffix.lower().lstrip(".")
    if fmt not in VIDEO_FORMATS:
        raise click.BadParameter(f"{str(out)!r} has suffix {out.suffix!r}; expected .gif or .mp4", param_hint="'--out'")
    with flags({"seeds": "--seeds", "grid": "--grid", "frames": "--frames"}):
        cells = split_cells(seeds, grid[0] * grid[1])
        if sweep_code is not None and len(cells[0]) != 1:
            raise genlib.ArgumentError("seeds", f"{len(seeds)} seeds for {len(cells)} grid cells; --sweep-code takes "
                                                f"one seed per cell ({len(cells)})")
        if sweep_code is None and len(cells[0]) < 2:
            raise genlib.ArgumentError(
                "seeds", f"{len(seeds)} seeds for {len(cells)} grid cells give each walk {len(cells[0])} keyframe; "
                f"expected at least 2 per cell ({2 * len(cells)} seeds)"
            )
    G, class_idx = load_checked(network, device, class_idx, truncation_psi, truncation_cutoff, noise_mode)
    view_flags = {name: f"--{name}" for name in ("translate", "rotate", "pan", "spin")}
    with flags(view_flags):
        genlib.check_view(G, translate=translate, rotate=rotate, pan=pan, spin=spin)
    motion = None
    if any(v is not None for v in (translate, rotate, pan, spin)):
        motion = Motion(translate or (0.0, 0.0), rotate or 0.0, pan or (0.0, 0.0), spin or 0.0)
    try:
        check_channels(G.img_channels, fmt)
    except ValueError as exc:
        raise click.BadParameter(f"this network makes {G.img_channels}-channel images: {exc}", param_hint="'--out'")
    if fmt == "mp4":
        try:
            import imageio_ffmpeg  # noqa: F401  (checked before rendering anything)
        except ImportError:
            raise click.BadParameter(
                "writing MP4 needs the optional package imageio-ffmpeg (pip install imageio-ffmpeg); "
                "or write a .gif, which needs nothing extra", param_hint="'--out'",
            ) from None

    common = dict(grid=grid, frames_per_transition=frames, loop=loop, class_idx=class_idx, truncation_psi=truncation_psi,
                  truncation_cutoff=truncation_cutoff, noise_mode=noise_mode, batch_size=batch_size)
    with flags():
        if sweep_code is None:
            total = num_video_frames(len(seeds), len(cells), frames, loop)
            stream = iter_video_frames(G, seeds, space=space, motion=motion, **common)
        else:
            total = len(code_sweep_values(genlib.network_codes(G), sweep_code, frames, loop))
            stream = iter_code_sweep_frames(G, seeds, sweep_code, **common)
    with flags(), progress(total, unit="frame") as bar:

        def counted():
            for frame in stream:
                bar.update(1)
                yield frame

        if fmt == "gif":
            save_gif(list(counted()), out, fps)
        else:
            frames_iter = counted()
            first = next(frames_iter)  # the encoder needs the frame size up front
            size = (first.shape[1], first.shape[0])
            save_mp4(itertools.chain([first], frames_iter), out, fps, size, first.shape[2])
    classes = f"; no --class: each walk has its first seed's class, seed mod {G.c_dim}" if class_idx is None and G.c_dim else ""
    what = f"walks in {space}" if sweep_code is None else f"sweeps of code {sweep_code}"
    if motion is not None:
        what += (f", view from translate {motion.translate[0]:g},{motion.translate[1]:g} rotate {motion.rotate:g} "
                 f"moving by {motion.pan[0]:g},{motion.pan[1]:g} and {motion.spin:g} degrees")
    click.echo(f"Wrote {total} frames ({grid[0]}x{grid[1]} {what}, {fps:g} fps{classes}) to {out}")


if __name__ == "__main__":
    main()
