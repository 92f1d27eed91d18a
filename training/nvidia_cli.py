"""NVIDIA's ``train.py`` spellings, met where its users come from (docs/from-nvidia.md).

StyleGAN2-ADA's CLI writes booleans as values (``--mirror=1``, ``--cond=1``) and turns metrics off
with ``--metrics=none``; ours has flag pairs (``--mirror/--no-mirror``) and an empty list. A click
flag refuses a value ("Option '--mirror' does not take a value"), so :class:`NvidiaSpellings`
rewrites ``--mirror=1`` to ``--mirror`` (and ``=0`` to ``--no-mirror``) before click parses the
arguments; both of our spellings keep working. :class:`PresetChoice` adds "did you mean" to a
mistyped ``--preset``.
"""

from __future__ import annotations

import difflib
from typing import Any

import click

# Flags of ours that NVIDIA's CLI spells as --NAME=BOOL.
BOOL_FLAGS = ("--mirror", "--cond")
TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def rewrite_bool_values(args: list[str]) -> list[str]:
    """``--mirror=1`` / ``--mirror 1`` -> ``--mirror``; ``=0`` -> ``--no-mirror`` (also ``--cond``,
    and true/false, yes/no, on/off). Anything else after ``--mirror=`` stops with one line."""
    out: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        name, eq, value = arg.partition("=")
        if name in BOOL_FLAGS and not eq and i + 1 < len(args) and args[i + 1].lower() in TRUE + FALSE:
            value, eq = args[i + 1], "="  # NVIDIA's click also takes "--mirror 1"
            i += 1
        if name in BOOL_FLAGS and eq:
            if value.lower() in TRUE:
                arg = name
            elif value.lower() in FALSE:
                arg = "--no-" + name[2:]
            else:
                raise click.UsageError(
                    f"{name}={value}: expected 1/0 (or true/false), as NVIDIA's train.py, or {name} / --no-{name[2:]}"
                )
        out.append(arg)
        i += 1
    return out


class NvidiaSpellings(click.Command):
    """A click command that accepts NVIDIA's ``--mirror=1`` / ``--cond=0`` spellings."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, rewrite_bool_values(list(args)))


class PresetChoice(click.Choice):
    """``click.Choice`` whose error for a typo names the closest choice."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            return super().convert(value, param, ctx)
        except click.BadParameter:
            close = difflib.get_close_matches(str(value).lower(), [str(c) for c in self.choices], n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            self.fail(f"{value!r} is not one of {', '.join(map(repr, self.choices))}{hint}", param, ctx)


def metrics_none(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """``--metrics=none`` (NVIDIA's spelling for no metrics) is our empty list."""
    return "" if value is not None and value.strip().lower() == "none" else value
