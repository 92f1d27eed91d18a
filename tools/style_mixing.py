"""Style-mixing figure: row seeds' coarse styles combined with column seeds' fine styles.

    python tools/style_mixing.py --network network.safetensors --rows 0-3 --cols 10-14 \\
        [--layers 4-5] --out mixing.png

Top row: the column seeds; left column: the row seeds; cell (r, c): row seed r rendered with the
ws of ``--layers`` (default: the fine half of the layers) taken from column seed c (StyleGAN
sec. 3.1, fig. 3).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python tools/style_mixing.py` from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import click

from tools.cli_common import SEEDS, RangesType, flags, load_checked, network_options, nvidia_flag
from tools.imagefiles import IMAGE_FORMATS, check_channels, save_image
from tools.latent_walks import default_mix_layers, style_mixing_figure


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@network_options
@click.option("--rows", "row_seeds", type=SEEDS, required=True, help="Row seeds (they keep their coarse styles), e.g. 0-3.")
@click.option("--cols", "col_seeds", type=SEEDS, required=True, help="Column seeds (they give their fine styles), e.g. 10-14.")
@click.option("--layers", type=RangesType(hi=10_000), default=None,
              help="Layers (ws indices) taken from the column seeds, e.g. 4-7; default: the fine half.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Output image, .png or .jpg.")
@nvidia_flag("--styles", "here it is --layers (the ws indices taken from the column seeds), e.g. --layers 0-6")
@nvidia_flag("--outdir", "here --out FILE writes the figure (.png or .jpg); use generate.py for single images")
def main(
    network: Path,
    row_seeds: list[int],
    col_seeds: list[int],
    layers: list[int] | None,
    truncation_psi: float,
    truncation_cutoff: int | None,
    class_idx: str | None,
    noise_mode: str,
    batch_size: int,
    device: str,
    out: Path,
) -> None:
    """Write a style-mixing figure of row seeds x column seeds."""
    fmt = out.suffix.lower().lstrip(".").replace("jpeg", "jpg")
    if fmt not in IMAGE_FORMATS:
        raise click.BadParameter(f"{str(out)!r} has suffix {out.suffix!r}; expected .png or .jpg", param_hint="'--out'")
    G, class_idx = load_checked(network, device, class_idx, truncation_psi, truncation_cutoff, noise_mode)
    try:
        check_channels(G.img_channels, fmt)
    except ValueError as exc:
        raise click.BadParameter(f"this network makes {G.img_channels}-channel images: {exc}", param_hint="'--out'")
    if layers is not None:
        bad = [layer for layer in layers if layer >= G.num_ws]
        if bad:
            raise click.BadParameter(
                f"{bad[0]} is out of range; this network has layers 0-{G.num_ws - 1}", param_hint="'--layers'"
            )
    with flags({"layers": "--layers", "row_seeds": "--rows", "col_seeds": "--cols"}):
        figure = style_mixing_figure(
            G, row_seeds, col_seeds, layers=layers, class_idx=class_idx, truncation_psi=truncation_psi,
            truncation_cutoff=truncation_cutoff, noise_mode=noise_mode, batch_size=batch_size,
        )
    save_image(figure, out, fmt)
    used = layers if layers is not None else default_mix_layers(G.num_ws)
    click.echo(
        f"Wrote a {len(row_seeds)}x{len(col_seeds)} style-mixing figure (column layers "
        f"{','.join(map(str, used))} of {G.num_ws}"
        f"{f'; no --class: seed N has class N mod {G.c_dim}' if class_idx is None and G.c_dim else ''}) to {out}"
    )


if __name__ == "__main__":
    main()
