"""Command line of the CUDA ops: ``python -m ops build | doctor | cache``.

    python -m ops build --arch "8.0;8.6;9.0"   # ahead of time, e.g. in a Docker image or CI
    python -m ops doctor                       # what works, what does not, and why
    python -m ops cache [--clean]              # list (or delete) the cached builds
"""

from __future__ import annotations

import os
import shutil
import sys

import click
import torch

from ops import _build, doctor


def _resolve_archs(arch: str | None) -> tuple[str, ...]:
    """--arch, else $TORCH_CUDA_ARCH_LIST (read, never set), else the visible GPUs."""
    source = "--arch"
    if arch is None and os.environ.get("TORCH_CUDA_ARCH_LIST"):
        arch, source = os.environ["TORCH_CUDA_ARCH_LIST"], "TORCH_CUDA_ARCH_LIST"
    if arch is None:
        if not torch.cuda.is_available():
            raise click.UsageError(
                "no GPU is visible to choose the architectures from: pass --arch (e.g. --arch 9.0 or "
                "--arch '8.0;8.6;9.0') or set TORCH_CUDA_ARCH_LIST"
            )
        caps = {torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())}
        return tuple(sorted(f"{major}.{minor}" for major, minor in caps))
    try:
        return _build.parse_arch_list(arch)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint=source) from None


@click.group()
def cli() -> None:
    """Build, check and manage the fused CUDA ops (bias_act, upfirdn2d, filtered_lrelu)."""


@cli.command()
@click.option("--arch", default=None, help="GPU architectures, e.g. '9.0' or '8.0;8.6;9.0+PTX' (default: "
              "$TORCH_CUDA_ARCH_LIST, else the visible GPUs)")
@click.option("--emulation/--no-emulation", default=False, show_default=True,
              help="also build the CPU emulation the tests use")
@click.option("--verbose", is_flag=True, help="show the compiler's output")
def build(arch: str | None, emulation: bool, verbose: bool) -> None:
    """Compile the extensions into the cache now (ahead of time), all at once."""
    if torch.version.cuda is None:
        raise click.ClickException(
            f"this PyTorch ({torch.__version__}) is a CPU-only build; the CUDA ops need a CUDA build of PyTorch"
        )
    archs = _resolve_archs(arch)
    jobs = [(op, spec, archs) for op, spec in _build.EXTENSIONS.items()]
    if emulation:
        jobs.append(("emulation", _build.EMULATION, ()))
    click.echo(f"building {', '.join(op for op, _, _ in jobs)} for {';'.join(archs)} into {_build.cache_root()}")

    results = _build.build_many(jobs, verbose=verbose)
    for r in results:
        click.echo(f"  {r.label:<14} {'ok' if r.library else 'FAILED'} in {r.seconds:.0f} s: {r.library or r.error}")
    if not all(r.library for r in results):
        raise click.ClickException("some extensions failed to build (the compiler's output is above)")


@cli.command(name="doctor")
@click.option("--arch", default=None, help="also build for these architectures (tests the compiler without a GPU)")
@click.option("--build/--no-build", default=True, show_default=True, help="build the extensions if needed")
def doctor_cmd(arch: str | None, build: bool) -> None:
    """Report versions, build and check the ops; exit 0 (fast path active), 1 (inactive), 2 (mismatch)."""
    if arch is not None:
        try:
            _build.parse_arch_list(arch)
        except ValueError as err:
            raise click.BadParameter(str(err), param_hint="--arch") from None
    sys.exit(doctor.run(arch, build, emit=click.echo))


@cli.command()
@click.option("--clean", is_flag=True, help="delete every cached build")
def cache(clean: bool) -> None:
    """List the cached builds (folder, architectures, torch, date), or delete them."""
    root = _build.cache_root()
    folders = sorted(p.parent for p in root.glob("*/build.json")) if root.is_dir() else []
    click.echo(f"{root}: {len(folders)} builds")
    for folder in folders:
        manifest = _build._read_json(folder / "build.json") or {}
        key = manifest.get("key") or {}
        archs = ";".join(key.get("archs") or []) or "cpu"
        click.echo(f"  {folder.name}  archs {archs}  torch {key.get('torch')}  built {manifest.get('built')}")
    if clean and root.is_dir():
        for entry in root.iterdir():
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        click.echo(f"deleted everything under {root}")


if __name__ == "__main__":
    cli(prog_name="python -m ops")
