"""What the generation CLIs share: option types, loading the network, turning errors into click's.

Library functions raise :class:`tools.genlib.ArgumentError` naming their Python argument; each CLI
maps those names to its own flags, so a user sees ``Invalid value for '--class': ...`` and no
traceback.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Any, Iterator, Mapping

import click
from torch import nn
from tqdm import tqdm

from tools import genlib
from training.cpu_threads import set_threads_for_load

# More images than this get a progress bar.
PROGRESS_MIN = 8

# Python argument names of the library -> the flags every generation CLI uses for them.
FLAGS = {
    "network": "--network",
    "device": "--device",
    "seeds": "--seeds",
    "class_idx": "--class",
    "truncation_psi": "--truncation",
    "truncation_cutoff": "--truncation-cutoff",
    "noise_mode": "--noise-mode",
    "batch_size": "--batch",
    "codes": "--code",
    "code": "--sweep-code",
}


class RangesType(click.ParamType):
    """A click type for ``'0-15,20,30-35'`` lists (seeds, layers)."""

    name = "LIST"

    def __init__(self, hi: int = genlib.MAX_SEED) -> None:
        self.hi = hi

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> list[int]:
        if isinstance(value, list):
            return value
        try:
            return genlib.parse_ranges(value, arg=param.name if param else "value", lo=0, hi=self.hi)
        except genlib.ArgumentError as exc:
            self.fail(exc.reason, param, ctx)


SEEDS = RangesType()


@contextlib.contextmanager
def flags(extra: Mapping[str, str] | None = None) -> Iterator[None]:
    """Re-raise library :class:`ArgumentError` as ``click.BadParameter`` naming the CLI flag."""
    names = {**FLAGS, **(extra or {})}
    try:
        yield
    except genlib.ArgumentError as exc:
        raise click.BadParameter(exc.reason, param_hint=f"'{names.get(exc.arg, exc.arg)}'") from None


def finite_float(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """click callback: refuse ``nan`` and ``inf``, which click's FLOAT accepts."""
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"{value!r}; expected a finite number", ctx=ctx, param=param)
    return value


def vec2(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[float, float] | None:
    """click callback: ``'X,Y'`` -> two finite floats (:func:`tools.genlib.parse_vec2`)."""
    if value is None:
        return None
    try:
        return genlib.parse_vec2(value, param.name if param else "value")
    except genlib.ArgumentError as exc:
        raise click.BadParameter(exc.reason, ctx=ctx, param=param) from None


def load_checked(
    network: str | Path,
    device: str,
    class_value: str | int | None,
    truncation_psi: float,
    truncation_cutoff: int | None,
    noise_mode: str,
) -> tuple[nn.Module, int | None]:
    """``(G, class index or None)``: load the generator and check every option against it before any
    image is made. ``--class`` is an index or a name (:func:`tools.genlib.parse_class`, names from
    the file or its run's ``config.json``). A ``.pkl`` (NVIDIA's snapshot, converted in memory) is
    announced in one line on stderr, and so is a class number that is also another class's name."""
    with flags():
        dev = genlib.resolve_device(device)
        if dev.type == "cpu":  # as many threads as the cores other busy processes leave free
            set_threads_for_load()
        G = genlib.load_generator(network, device=dev, log=say)
        names = genlib.read_class_names(network, G.c_dim) if class_value is not None and G.c_dim else None
        class_idx, note = genlib.parse_class(class_value, G.c_dim, names)
        if note:
            say(f"note: {note}")
        genlib.check_truncation(G, truncation_psi, truncation_cutoff)
        genlib.check_noise_mode(noise_mode)
    return G, class_idx


def say(message: str) -> None:
    """One line on stderr (stdout keeps the tool's own result line)."""
    click.echo(message, err=True)


NETWORK_HELP = (
    "Network file (.safetensors), or NVIDIA's StyleGAN2/StyleGAN3 .pkl (read without running its code, converted in "
    "memory); uses G_ema when present, else G."
)


def nvidia_flag(flag: str, advice: str):
    """A hidden option for a flag of NVIDIA's tool that we name or handle differently: given, it stops
    with one line (exit 2) that names our equivalent, instead of click's bare "No such option"."""

    def refuse(ctx: click.Context, param: click.Parameter, value: Any) -> None:
        if value is not None:
            raise click.UsageError(f"{flag} is the flag of NVIDIA's tool; {advice}", ctx=ctx)

    return click.option(flag, hidden=True, default=None, expose_value=False, callback=refuse, is_eager=True)


def progress(total: int, unit: str = "img") -> tqdm:
    """A tqdm bar on stderr for more than :data:`PROGRESS_MIN` items, else a silent counter."""
    return tqdm(total=total, unit=unit, disable=total <= PROGRESS_MIN, leave=False, dynamic_ncols=True)


def network_options(fn):
    """The options every generation CLI shares, in the order ``--help`` lists them."""
    options = [
        click.option("--network", "network", required=True, type=click.Path(dir_okay=False, path_type=Path),
                     help=NETWORK_HELP),
        click.option("--truncation", "--trunc", "truncation_psi", type=float, default=1.0, show_default=True,
                     callback=finite_float,
                     help="Truncation psi: 1 = none, 0 = the average image (w_avg). --trunc is NVIDIA's name for it."),
        click.option("--truncation-cutoff", type=click.IntRange(min=0), default=None,
                     help="Truncate only the first N layers (ws); default: all."),
        click.option("--class", "class_idx", default=None, metavar="INDEX|NAME",
                     help="Class index or name (names: from dataset.json, stored by training). Conditional networks "
                          "without it: seed N gets class N mod the number of classes. Refused for unconditional ones."),
        click.option("--noise-mode", type=click.Choice(genlib.NOISE_MODES), default="const", show_default=True,
                     help="Noise inputs: const (fixed, stored in the network), random (per seed), none."),
        click.option("--batch", "batch_size", type=click.IntRange(min=1), default=16, show_default=True,
                     help="Images per forward pass."),
        click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
                     help="auto = CUDA when available, else CPU."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn
