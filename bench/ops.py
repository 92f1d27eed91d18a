"""Benchmark of the ops on the shapes the networks use.

    python bench/ops.py                      # CPU: small shapes (a quick look)
    python bench/ops.py --device cuda --full # GPU: 512 channels 4x4..256x256, 64 channels at 1024x1024

Prints one row per (op, shape, dtype, device, impl): forward ms and forward+backward ms (median of
repeats after warm-up, synchronised). Never asserts a time.
"""

from __future__ import annotations

import os
import sys
from typing import Callable

import click
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.timing import print_table, time_ms  # noqa: E402
from ops import bias_act, conv2d_resample, setup_filter, upfirdn2d  # noqa: E402
from ops.impl import CudaOpsUnavailableError  # noqa: E402

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def _shapes(full: bool, device: torch.device) -> list[tuple[int, int, int]]:
    """(batch, channels, resolution) triples."""
    if full:
        shapes = [(8, 512, r) for r in (4, 8, 16, 32, 64, 128, 256)]
        if device.type == "cuda":
            shapes.append((8, 64, 1024))
        return shapes
    return [(8, 512, 4), (8, 512, 16), (8, 256, 32), (8, 64, 64)]


def _cases(x: torch.Tensor, impl: str) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    """The ops to time with ``impl``. conv2d_resample has no impl of its own (its upfirdn2d calls
    resolve 'auto'), so it is timed once, under 'ref'."""
    c = x.shape[1]
    b = torch.zeros(c, device=x.device, dtype=x.dtype)
    f = setup_filter([1, 3, 3, 1], device=x.device)
    w = torch.randn(c, c, 3, 3, device=x.device, dtype=x.dtype) / (3 * c**0.5)
    cases = {
        "bias_act lrelu": lambda t: bias_act(t, b, act="lrelu", clamp=256, impl=impl),
        "upfirdn2d up2": lambda t: upfirdn2d(t, f, up=2, padding=(2, 1, 2, 1), gain=4, impl=impl),
        "upfirdn2d down2": lambda t: upfirdn2d(t, f, down=2, padding=1, impl=impl),
    }
    if impl == "ref":
        cases["conv2d_resample up2"] = lambda t: conv2d_resample(t, w, f, up=2, padding=1)
        cases["conv2d_resample down2"] = lambda t: conv2d_resample(t, w, f, down=2, padding=1)
    return cases


def _fwd_bwd(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        x.grad = None
        fn(x).square().mean().backward()

    return run


@click.command()
@click.option("--device", default="cuda" if torch.cuda.is_available() else "cpu", show_default=True, help="cpu or cuda")
@click.option("--dtypes", default="fp32", show_default=True, help="comma-separated subset of fp32,fp16,bf16")
@click.option("--impls", default="ref,cuda", show_default=True, help="implementations to time; unavailable ones are reported")
@click.option("--full/--quick", default=False, show_default=True, help="all network shapes, or a quick subset")
@click.option("--repeats", default=5, show_default=True, help="timed repeats per measurement")
def main(device: str, dtypes: str, impls: str, full: bool, repeats: int) -> None:
    """Time forward and forward+backward of each op."""
    dev = torch.device(device)
    rows = []
    for name in dtypes.split(","):
        if name not in DTYPES:
            raise click.BadParameter(f"{name!r}: expected one of {', '.join(DTYPES)}", param_hint="--dtypes")
        dtype = DTYPES[name]
        for batch, channels, res in _shapes(full, dev):
            x = torch.randn(batch, channels, res, res, device=dev, dtype=dtype, requires_grad=True)
            for impl in impls.split(","):
                for op, fn in _cases(x.detach(), impl).items():
                    shape = f"{batch}x{channels}x{res}x{res}"
                    try:
                        fwd = time_ms(lambda: fn(x), dev, repeats=repeats)
                        both = time_ms(_fwd_bwd(fn, x), dev, repeats=repeats)
                    except CudaOpsUnavailableError:
                        rows.append([op, shape, name, device, impl, "unavailable", "unavailable"])
                        continue
                    rows.append([op, shape, name, device, impl, f"{fwd:.3f}", f"{both:.3f}"])
    print_table(["op", "shape", "dtype", "device", "impl", "fwd ms", "fwd+bwd ms"], rows)


if __name__ == "__main__":
    main()
