"""Convert NVIDIA's StyleGAN2 or StyleGAN3 snapshot pickle into our network file.

    python tools/convert.py --source network-snapshot-000200.pkl --dest network.safetensors

Reads a stylegan2-ada-pytorch or stylegan3-repository snapshot (``--cfg=stylegan2``, ``stylegan3-t``,
``stylegan3-r``), or one of the published FFHQ / AFHQ / MetFaces files, without running any code from it
(:mod:`stylegan.nvidia_pickle`), and writes whichever of G, D, G_ema it holds with the config
rebuilt from the pickled constructor arguments. It prints what it found and what it left out (the
augmentation pipeline and its probability p, the training-set arguments). The file is written
under a temporary name and renamed into place. A TensorFlow-era pickle, a file that is not a
pickle, a truncated one or one that asks for anything but tensors, arrays and
containers stops with one line (exit 2).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python tools/convert.py` from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import click

import stylegan


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.option("--source", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="NVIDIA StyleGAN2 or StyleGAN3 snapshot (.pkl).")
@click.option("--dest", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Network file to write (.safetensors); replaced if it exists.")
def main(source: Path, dest: Path) -> None:
    """Convert an NVIDIA StyleGAN2/StyleGAN3 .pkl into a .safetensors network file, running none of its code."""
    if dest.suffix != ".safetensors":
        raise click.BadParameter(f"{str(dest)!r}: expected a .safetensors file name", param_hint="'--dest'")
    if not source.is_file():
        raise click.BadParameter(f"{str(source)!r} does not exist or is not a file", param_hint="'--source'")
    if dest.exists() and dest.resolve() == source.resolve():
        raise click.BadParameter("is the same file as --source", param_hint="'--dest'")
    try:
        net = stylegan.read_nvidia_pickle(source)
    except stylegan.NvidiaPickleError as exc:
        raise click.BadParameter(" ".join(str(exc).split()), param_hint="'--source'") from None
    for line in net.describe():
        click.echo(line)
    metadata = {"converted_from": source.name}
    if net.augment_p is not None:
        metadata["augment_p"] = net.augment_p  # ADA's last augmentation probability, for a later --init
    dest.parent.mkdir(parents=True, exist_ok=True)
    stylegan.save_network(dest, net.modules, net.config, metadata=metadata)
    click.echo(f"Wrote {', '.join(net.modules)} to {dest}")


if __name__ == "__main__":
    main()
