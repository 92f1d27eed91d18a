"""Benchmark of the ops on the shapes the networks use.

    python bench/ops.py                      # CPU: small shapes (a quick look)
    python bench/ops.py --device cuda --full # GPU: StyleGAN2 config-f shapes, 4x4 .. 1024x1024,
                                             # and StyleGAN3's filtered_lrelu layers, 36 .. 532 px
    python bench/ops.py --ops filtered_lrelu # one family of ops

Prints one row per (op, shape, dtype, device, impl): forward ms and forward+backward ms (median of
repeats after warm-up, synchronised) and, for the memory-bound ops, the achieved bandwidth: the
bytes the op must move at least (read its input, write its output; backward reads the output
gradient and what forward saved, writes the input gradient) over the time, and that as a share of
the device's peak memory bandwidth. ``impl`` is ``ref`` (the PyTorch reference), ``cuda`` (the
fused kernels) or ``compile`` (``torch.compile`` of the reference). Never asserts a time.
"""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass
from typing import Callable, Iterator

import click
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.timing import print_table, time_ms  # noqa: E402
from ops import bias_act, conv2d_resample, filtered_lrelu, setup_filter, upfirdn2d  # noqa: E402
from ops.impl import ENV_VAR, CudaOpsUnavailableError  # noqa: E402

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
IMPLS = ("ref", "cuda", "compile")
FAMILIES = ("bias_act", "upfirdn2d", "conv2d_resample", "filtered_lrelu")


@dataclass(frozen=True)
class Case:
    """One op on one input: the function of x, and the bytes it must move (None: compute-bound)."""

    fn: Callable[[torch.Tensor], torch.Tensor]
    fwd_bytes: int | None = None
    bwd_bytes: int | None = None


def _shapes(full: bool, device: torch.device) -> list[tuple[int, int, int]]:
    """(batch, channels, resolution) triples. --full: StyleGAN2 config-f (channel_base 32768,
    channel_max 512, batch 4 per GPU), up to 1024x1024 on a GPU."""
    if full:
        top = 1024 if device.type == "cuda" else 256
        return [(4, min(32768 // r, 512), r) for r in (4, 8, 16, 32, 64, 128, 256, 512, 1024) if r <= top]
    return [(8, 512, 4), (8, 512, 16), (8, 256, 32), (8, 64, 64)]


def _sg3_shapes(full: bool, device: torch.device) -> list[tuple[int, int, int]]:
    """(batch, channels, size) of filtered_lrelu's input in StyleGAN3-T at 1024x1024 (batch 4 per GPU):
    the layers' sizes with their 10-pixel margins, channels halving from 512; quick: two small ones."""
    if full:
        top = 532 if device.type == "cuda" else 148
        return [(4, c, r) for c, r in ((512, 36), (512, 52), (512, 84), (256, 148), (128, 276), (64, 532)) if r <= top]
    return [(2, 64, 36), (1, 32, 84)]


@contextlib.contextmanager
def _ops_env(value: str) -> Iterator[None]:
    """STYLEGAN_OPS for the ops that have no impl argument (conv2d_resample), restored after."""
    old = os.environ.get(ENV_VAR)
    os.environ[ENV_VAR] = value
    try:
        yield
    finally:
        if old is None:
            del os.environ[ENV_VAR]
        else:
            os.environ[ENV_VAR] = old


def _compiled(cases: dict[str, Case]) -> dict[str, Case]:
    # A fresh start for every input: the cases of all shapes share their code objects, and past
    # dynamo's recompile limit a function would silently run eagerly and be timed as "compile".
    torch._dynamo.reset()
    return {name: Case(torch.compile(case.fn), case.fwd_bytes, case.bwd_bytes) for name, case in cases.items()}


def _filtered_lrelu_cases(x: torch.Tensor, impl: str) -> dict[str, Case]:
    """StyleGAN3's layer: 2x up and 2x down with 12-tap Kaiser filters (separable, as configs T and
    R upsample; 2-D as config R's radial downsampling filters are), clamp 256."""
    c, n = x.shape[1], x.element_size()
    kernel_impl = "ref" if impl == "compile" else impl
    b = torch.zeros(c, device=x.device, dtype=x.dtype)
    taps = torch.kaiser_window(12, periodic=False, beta=8.0).tolist()
    f_sep = setup_filter(taps, device=x.device, separable=True)
    f_2d = setup_filter(taps, device=x.device, separable=False)
    size = x.numel() * n
    # Padding 11 keeps the size: (H * 2 + 22 - 22 + 1) // 2 = H, on 2 * H + 11 upsampled samples per
    # axis. Forward reads x, writes y (the same size) and the 2-bit codes (4 samples per byte);
    # backward reads dy and the codes, writes dx.
    codes = x.shape[0] * c * (2 * x.shape[2] + 11) * ((2 * x.shape[3] + 11 + 3) // 4)
    cases = {
        f"filtered_lrelu up2 down2 {name}": Case(
            lambda t, f=f: filtered_lrelu(t, f, f, b, 2, 2, 11, clamp=256, impl=kernel_impl),
            2 * size + codes,
            2 * size + codes,
        )
        for name, f in (("sep", f_sep), ("2-D", f_2d))
    }
    return _compiled(cases) if impl == "compile" else cases


def _cases(x: torch.Tensor, impl: str) -> dict[str, Case]:
    """The StyleGAN2 ops to time with ``impl`` ('compile' compiles the reference)."""
    c, n = x.shape[1], x.element_size()
    kernel_impl = "ref" if impl == "compile" else impl
    b = torch.zeros(c, device=x.device, dtype=x.dtype)
    f = setup_filter([1, 3, 3, 1], device=x.device)
    w = torch.randn(c, c, 3, 3, device=x.device, dtype=x.dtype) / (3 * c**0.5)
    size = x.numel() * n
    cases = {
        # forward reads x, writes y; backward reads dy and the saved y, writes dx.
        "bias_act lrelu": Case(lambda t: bias_act(t, b, act="lrelu", clamp=256, impl=kernel_impl), 2 * size, 3 * size),
        # up=2 writes 4x the input; backward reads dy (4x) and writes dx (1x).
        "upfirdn2d up2": Case(
            lambda t: upfirdn2d(t, f, up=2, padding=(2, 1, 2, 1), gain=4, impl=kernel_impl), 5 * size, 5 * size
        ),
        "upfirdn2d down2": Case(
            lambda t: upfirdn2d(t, f, down=2, padding=1, impl=kernel_impl), size + size // 4, size + size // 4
        ),
        "upfirdn2d filter": Case(
            lambda t: upfirdn2d(t, f, padding=(2, 1, 2, 1), impl=kernel_impl), 2 * size, 2 * size
        ),
    }
    for name, up, down in (("conv2d_resample up2", 2, 1), ("conv2d_resample down2", 1, 2)):

        def conv(t: torch.Tensor, up: int = up, down: int = down) -> torch.Tensor:
            with _ops_env(kernel_impl):
                return conv2d_resample(t, w, f, up=up, down=down, padding=1)

        cases[name] = Case(conv)
    return _compiled(cases) if impl == "compile" else cases


def _fwd_bwd(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        x.grad = None
        y = fn(x)
        y.backward(torch.ones_like(y))

    return run


def peak_bandwidth(device: torch.device) -> float | None:
    """The device's peak memory bandwidth in GB/s (double data rate x bus width), if known."""
    if device.type != "cuda":
        return None
    props = torch.cuda.get_device_properties(device)
    clock_khz, bus_bits = getattr(props, "memory_clock_rate", 0), getattr(props, "memory_bus_width", 0)
    return 2 * clock_khz * 1e3 * bus_bits / 8 / 1e9 if clock_khz and bus_bits else None


def _gbs(nbytes: int | None, ms: float) -> str:
    return "-" if nbytes is None else f"{nbytes / ms / 1e6:.0f}"


def _time_cases(cases: dict[str, Case], x: torch.Tensor, label: list[str], repeats: int, peak: float | None):
    """One table row per case: forward ms, GB/s and % of peak, forward+backward ms and GB/s."""
    rows = []
    for op, case in cases.items():
        try:
            fwd = time_ms(lambda: case.fn(x), x.device, repeats=repeats)
            both = time_ms(_fwd_bwd(case.fn, x), x.device, repeats=repeats)
        except CudaOpsUnavailableError:
            rows.append([op, *label] + ["unavailable"] * 5)
            continue
        both_bytes = None if case.fwd_bytes is None else case.fwd_bytes + case.bwd_bytes
        share = "-" if case.fwd_bytes is None or not peak else f"{case.fwd_bytes / fwd / 1e6 / peak:.0%}"
        rows.append([op, *label, f"{fwd:.3f}", _gbs(case.fwd_bytes, fwd), share, f"{both:.3f}",
                     _gbs(both_bytes, both)])
    return rows


def _subset(text: str, allowed: tuple[str, ...], option: str) -> list[str]:
    items = text.split(",")
    for item in items:
        if item not in allowed:
            raise click.BadParameter(f"{item!r}: expected a subset of {', '.join(allowed)}", param_hint=option)
    return items


@click.command()
@click.option("--device", default="cuda" if torch.cuda.is_available() else "cpu", show_default=True, help="cpu or cuda")
@click.option("--dtypes", default="fp32", show_default=True, help="comma-separated subset of fp32,fp16,bf16")
@click.option("--impls", default=None, help="comma-separated subset of ref,cuda,compile [default: all on cuda, "
              "ref,cuda on cpu]; unavailable ones are reported")
@click.option("--ops", "families", default=",".join(FAMILIES), show_default=True,
              help="comma-separated subset of the op families to time")
@click.option("--full/--quick", default=False, show_default=True, help="all network shapes, or a quick subset")
@click.option("--repeats", default=5, show_default=True, help="timed repeats per measurement")
@click.option("--peak-gbs", type=float, default=None, help="peak memory bandwidth in GB/s [default: from the device]")
def main(device: str, dtypes: str, impls: str | None, families: str, full: bool, repeats: int,
         peak_gbs: float | None) -> None:
    """Time forward and forward+backward of each op."""
    dev = torch.device(device)
    impl_list = _subset(impls or ("ref,cuda,compile" if dev.type == "cuda" else "ref,cuda"), IMPLS, "--impls")
    family_list = _subset(families, FAMILIES, "--ops")
    dtype_list = _subset(dtypes, tuple(DTYPES), "--dtypes")
    peak = peak_gbs or peak_bandwidth(dev)
    if dev.type == "cuda":
        name = torch.cuda.get_device_name(dev)
        click.echo(f"# {name}, peak memory bandwidth {f'{peak:.0f} GB/s' if peak else 'unknown'}, torch {torch.__version__}")
    # StyleGAN2's ops on its shapes, then StyleGAN3's filtered_lrelu on its own.
    suites = [(_shapes(full, dev), _cases), (_sg3_shapes(full, dev), _filtered_lrelu_cases)]
    rows = []
    for dname in dtype_list:
        for shapes, make_cases in suites:
            for batch, channels, res in shapes:
                x = torch.randn(batch, channels, res, res, device=dev, dtype=DTYPES[dname], requires_grad=True)
                label = [f"{batch}x{channels}x{res}x{res}", dname, device]
                for impl in impl_list:
                    cases = {op: c for op, c in make_cases(x.detach(), impl).items() if op.split()[0] in family_list}
                    rows += _time_cases(cases, x, label + [impl], repeats, peak)
    print_table(["op", "shape", "dtype", "device", "impl", "fwd ms", "fwd GB/s", "fwd % peak", "fwd+bwd ms",
                 "fwd+bwd GB/s"], rows)


if __name__ == "__main__":
    main()
