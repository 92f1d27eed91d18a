"""Generate images from a network file: one file per seed, optionally a grid of them all.

    python tools/generate.py --network network.safetensors --seeds 0-15,20 --truncation 0.7 \\
        --outdir out [--class N] [--grid] [--format png|jpg] [--batch 16] [--device auto]

``--network`` also takes NVIDIA's StyleGAN2 and StyleGAN3 ``.pkl`` (converted in memory), and seed
N's latent is NVIDIA's (``np.random.RandomState(N).randn(z_dim)``), so such a file gives NVIDIA's
image for the same seed, truncation and class. Seeds are rendered in batches; each seed's latent and noise are
its own (tools/genlib.py), so the image for a seed does not depend on the batch size or the device.
Files are ``seed<NNNN>.<format>`` (uint8; grayscale, RGB or RGBA as the network's channels).
``--class`` takes an index or a class name; without it a conditional network gives seed N class
``N mod C``, and the grid has one row per class. ``--code 0=3,1=0.5`` sets InfoGAN codes of a
network trained with ``--info-codes`` (code index = a class index for a categorical code, a number
in [-1, 1] for a continuous one) for every seed; the seed gives the rest of z, codes not named
included. ``--translate X,Y`` and ``--rotate DEG`` (StyleGAN3 networks, as NVIDIA's gen_images.py)
render every image translated by X,Y (units of the image: x right, y down) and rotated by DEG
degrees (counter-clockwise) by moving StyleGAN3's input grid (tools/genlib.py, ``set_view``).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python tools/generate.py` from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import click
import numpy as np

from tools import genlib
from tools.cli_common import SEEDS, finite_float, flags, load_checked, network_options, nvidia_flag, progress, vec2
from tools.imagefiles import IMAGE_FORMATS, check_channels, make_grid, save_image, to_uint8


def seed_filename(seed: int, fmt: str) -> str:
    """``seed0042.png``: four digits at least, more for larger seeds."""
    return f"seed{seed:04d}.{fmt}"


def rows_by_class(images: np.ndarray, classes: list[int]) -> np.ndarray:
    """A grid with one row per class that occurs (in class order), each row its images in list order
    (``images`` uint8 [N, H, W, C], ``classes[i]`` the class of image i); short rows end in blanks."""
    order = sorted(set(classes))
    rows = [[i for i, c in enumerate(classes) if c == k] for k in order]
    cols = max(len(r) for r in rows)
    tiles = np.zeros((len(rows) * cols, *images.shape[1:]), dtype=images.dtype)
    for r, members in enumerate(rows):
        tiles[r * cols : r * cols + len(members)] = images[members]
    return make_grid(tiles, cols=cols)


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@network_options
@click.option("--seeds", type=SEEDS, required=True, help="Seeds: numbers and inclusive ranges, e.g. 0-15,20,30-35.")
@click.option("--outdir", type=click.Path(file_okay=False, path_type=Path), required=True, help="Output folder.")
@click.option("--grid/--no-grid", default=False, help="Also write grid.<format>, all seeds in one image.")
@click.option("--format", "fmt", type=click.Choice(IMAGE_FORMATS), default="png", help="Image file format.")
@click.option("--code", "code_spec", default=None, metavar="I=V,...",
              help="InfoGAN codes (networks trained with --info-codes): code index = value, a class index for a "
                   "categorical code, a number in [-1, 1] for a continuous one, e.g. 0=3,1=0.5. Codes not given come "
                   "from the seed.")
@nvidia_flag("--projected-w", "projected latents are not supported here (no projector yet)")
@click.option("--translate", default=None, metavar="X,Y", callback=vec2,
              help="StyleGAN3 networks: translate the images by X,Y in units of the image (x right, y down; "
                   "1/resolution is one pixel), as NVIDIA's gen_images.py. Refused for other networks.")
@click.option("--rotate", type=float, default=None, metavar="DEG", callback=finite_float,
              help="StyleGAN3 networks: rotate the images by DEG degrees, counter-clockwise, as NVIDIA's "
                   "gen_images.py. Refused for other networks.")
def main(
    network: Path,
    seeds: list[int],
    truncation_psi: float,
    truncation_cutoff: int | None,
    class_idx: str | None,
    noise_mode: str,
    outdir: Path,
    batch_size: int,
    device: str,
    grid: bool,
    fmt: str,
    code_spec: str | None,
    translate: tuple[float, float] | None,
    rotate: float | None,
) -> None:
    """Generate one image per seed from a trained network file."""
    G, class_idx = load_checked(network, device, class_idx, truncation_psi, truncation_cutoff, noise_mode)
    with flags({"translate": "--translate", "rotate": "--rotate"}):
        codes = genlib.parse_codes(code_spec, genlib.network_codes(G))
        genlib.check_view(G, translate=translate, rotate=rotate)
        if translate is not None or rotate is not None:
            genlib.set_view(G, translate or (0.0, 0.0), rotate or 0.0)
    cycled = genlib.seed_classes(G, seeds) if class_idx is None else None  # conditional, no --class
    try:
        check_channels(G.img_channels, fmt)
    except ValueError as exc:
        raise click.BadParameter(f"this network makes {G.img_channels}-channel images: {exc}", param_hint="'--format'")
    outdir.mkdir(parents=True, exist_ok=True)

    kept = [] if grid else None
    with flags(), progress(len(seeds)) as bar:
        batches = genlib.iter_generate(
            G, seeds, class_idx=class_idx, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
            noise_mode=noise_mode, batch_size=batch_size, codes=codes,
        )
        for batch_seeds, images in batches:
            images = to_uint8(images)
            for seed, image in zip(batch_seeds, images):
                save_image(image, outdir / seed_filename(seed, fmt), fmt)
            if kept is not None:
                kept.append(images)
            bar.update(len(batch_seeds))

    message = f"Wrote {len(seeds)} image{'s' if len(seeds) != 1 else ''}"
    if cycled is not None:
        message += f" (no --class: seed N has class N mod {G.c_dim})"
    message += f" to {outdir}"
    if kept is not None:
        images = np.concatenate(kept)
        grid = make_grid(images) if cycled is None else rows_by_class(images, cycled)
        grid_path = save_image(grid, outdir / f"grid.{fmt}", fmt)
        message += f", and their grid{' (one row per class)' if cycled is not None else ''} to {grid_path}"
    click.echo(message)


if __name__ == "__main__":
    main()
