"""Training throughput on a shared CPU: alone, beside one busy process, beside two.

    python bench/contention.py                       # the demo step, python and torch neighbours
    python bench/contention.py --append              # and add the table to docs/benchmarks.md
    python bench/contention.py --busy python --settings fixed,auto --steps 16

Each case times the demo's training step (``bench/train.py``'s worker: ``training.loop.train_step``
on in-memory data) in a fresh process while 0, 1 or 2 other busy processes run beside it. A
"busy process" is ``python -c 'while True: pass'`` (one core of plain work: a compile, a data
job) or a torch process multiplying matrices with its default thread count (another training run,
a test suite). The settings compared:

- ``fixed``: what training did before ``--threads auto``: one thread per core, OpenMP's default
  wait policy (idle threads spin for a while before they sleep);
- ``passive``: the same with ``OMP_WAIT_POLICY=PASSIVE`` (idle threads sleep at once);
- ``one``: ``--threads 1``;
- ``auto``: ``--threads auto``, the default now (training/cpu_threads.py).

Each figure is also given as a fraction of the same setting alone and of ``fixed`` alone (the
machine's speed before this change, which the goal "beside one busy process, at least 40 % of the
alone figure" is stated against). Run it with nothing else busy on the machine; the busy processes
are its own. Nothing is asserted.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.train import machine, run_case  # noqa: E402
from training.cpu_threads import usable_cores  # noqa: E402

BUSY = {
    "python": "while True: pass",
    "torch": "import torch\na = torch.randn(256, 256)\nwhile True: a @ a",
}
SETTINGS = ("fixed", "passive", "one", "auto")


def setting_case(name: str, cores: int) -> tuple[int | str, dict[str, str]]:
    """(threads, extra environment) of a setting."""
    return {
        "fixed": (cores, {}),
        "passive": (cores, {"OMP_WAIT_POLICY": "PASSIVE"}),
        "one": (1, {}),
        "auto": ("auto", {}),
    }[name]


def measure(setting: str, busy: str | None, count: int, steps: int, cores: int) -> float:
    """img/s of the demo step under ``setting`` beside ``count`` busy processes of kind ``busy``."""
    neighbours = [subprocess.Popen([sys.executable, "-c", BUSY[busy]]) for _ in range(count if busy else 0)]
    try:
        if neighbours:
            time.sleep(1.0)  # past their start-up
        threads, env = setting_case(setting, cores)
        spec = dict(preset="tiny", resolution=32, channels=1, c_dim=10, batch=32, batch_gpu=None, precision="fp32",
                    processes=1, threads=threads, steps=steps, warmup=2, ops="ref")
        return run_case(spec, env)["img_per_sec"]
    finally:
        for p in neighbours:
            p.kill()
        for p in neighbours:
            p.wait()


@click.command()
@click.option("--busy", "kinds", default="python,torch", show_default=True,
              help="Kinds of busy neighbour, comma-separated: python, torch.")
@click.option("--settings", default=",".join(SETTINGS), show_default=True,
              help=f"Settings to compare, comma-separated: {', '.join(SETTINGS)}.")
@click.option("--steps", type=int, default=16, show_default=True, help="Timed steps per case (a multiple of 16).")
@click.option("--append/--no-append", default=False, show_default=True,
              help="Also append the table to docs/benchmarks.md (with the date and machine).")
def main(kinds: str, settings: str, steps: int, append: bool) -> None:
    """Measure training throughput beside busy processes (see the module docstring)."""
    kinds_list = [k.strip() for k in kinds.split(",") if k.strip()]
    settings_list = [s.strip() for s in settings.split(",") if s.strip()]
    for k in kinds_list:
        if k not in BUSY:
            raise click.BadParameter(f"{k!r}: expected one of {', '.join(BUSY)}", param_hint="--busy")
    for s in settings_list:
        if s not in SETTINGS:
            raise click.BadParameter(f"{s!r}: expected one of {', '.join(SETTINGS)}", param_hint="--settings")
    cores = len(usable_cores())
    alone = {s: measure(s, None, 0, steps, cores) for s in settings_list}
    base = alone.get("fixed")
    header = "| setting | neighbours | img/s | of the same setting alone | of `fixed` alone |"
    rows = []

    def row(setting: str, who: str, value: float) -> str:
        of_base = "-" if base is None else f"{100 * value / base:.0f} %"
        return f"| {setting} | {who} | {value:.1f} | {100 * value / alone[setting]:.0f} % | {of_base} |"

    click.echo(header)
    click.echo("|---|---|---|---|---|")
    for s in settings_list:
        rows.append(row(s, "none", alone[s]))
        click.echo(rows[-1])
    for kind in kinds_list:
        for count in (1, 2):
            for s in settings_list:
                rows.append(row(s, f"{count} {kind}", measure(s, kind, count, steps, cores)))
                click.echo(rows[-1])
    if append:
        path = ROOT / "docs" / "benchmarks.md"
        with open(path, "a", encoding="utf-8") as f:
            f.write(f"\n## bench/contention.py, {time.strftime('%Y-%m-%d %H:%M')}\n\n{machine()}; the demo step "
                    f"(tiny, 32x32, batch 32, fp32), {steps} timed steps per case, beside busy processes of its own.\n\n")
            f.write(header + "\n|---|---|---|---|---|\n" + "\n".join(rows) + "\n")
        click.echo(f"appended to {path}")


if __name__ == "__main__":
    main()
