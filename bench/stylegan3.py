"""StyleGAN3-T against StyleGAN2 on the demo digits: the same wall-clock budget, the bench's digit
scorer, and equivariance to translation.

    pip install scikit-learn                          # the scorer (bench/limited_data.py)
    python bench/stylegan3.py --minutes 12            # both runs side by side, one thread each
    python bench/stylegan3.py --minutes 12 --append   # also add the table to docs/benchmarks.md

The two runs (``tiny``, the README's StyleGAN2 demo, and the StyleGAN3-T demo preset) train at the
same time with one thread each, so that they share the machine alike whatever else runs on it; each gets
SIGTERM when ``--minutes`` are spent and its final snapshot's G_ema is scored as in
bench/limited_data.py: class accuracy, fd of the classifier's features (real/real floor beside it) and
within-class variety. ``s/kimg`` is the run's wall time per thousand images (start-up included).

Equivariance: ``eqt_int`` and ``eqt_frac`` (PSNR in dB, higher is more equivariant) from
training/metrics/equivariance.py over ``--eq-samples`` seeds. StyleGAN3 takes them as NVIDIA defines
them, through its input transform. StyleGAN2 has no transformable input, so NVIDIA's metric refuses
it; here it gets the closest analogue, its input translated instead: the learned 4x4 constant,
read as samples of a signal that is zero outside them, is moved by the same fraction of its extent by
ideal (sinc) interpolation, and the image rendered from it is compared with the shifted image exactly
as StyleGAN3's is. Its noise inputs are the constant ones (``noise_mode='const'``), which stay where
they are, as StyleGAN2's do when its input moves. This analogue is ours, not NVIDIA's (their paper's
StyleGAN2 figures came from their own, unpublished procedure), and is labelled so in the table.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

import click
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.gan_family import train_for  # noqa: E402
from bench.limited_data import features, fit_scorer, frechet, real_digits, score  # noqa: E402

KINDS = ("eqt_int", "eqt_frac")


def shift_constant(const, tx: float, ty: float):
    """StyleGAN2's ``[C, 4, 4]`` constant moved by ``(tx, ty)`` of its extent (x right, y down): sinc
    interpolation of the 4x4 samples over a zero background, ``out[i, j] = sum_kl const[k, l]
    sinc(i - 4 ty - k) sinc(j - 4 tx - l)``."""
    import torch

    n = const.shape[-1]
    idx = torch.arange(n, dtype=torch.float64)
    ky = torch.sinc(idx[:, None] - ty * n - idx[None, :])  # [i, k]
    kx = torch.sinc(idx[:, None] - tx * n - idx[None, :])  # [j, l]
    return torch.einsum("ik,ckl,jl->cij", ky, const.double(), kx).to(const.dtype)


def stylegan2_as_transformable(G):
    """A stand-in with StyleGAN3's interface (``synthesis.input.transform``) around a StyleGAN2 G: a
    translation in the transform moves G's constant input (:func:`shift_constant`)."""
    import torch
    from torch import nn

    class _Input(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("transform", torch.eye(3))

    class _Synthesis(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.input = _Input()

        def forward(self, ws, noise_mode="const", precision="fp32"):
            block = G.synthesis.blocks["b4"]
            saved = block.const.data.clone()
            t = self.input.transform.double()
            if not torch.allclose(t[:2, :2], torch.eye(2, dtype=torch.float64)):
                raise ValueError("the StyleGAN2 analogue translates only")
            try:
                block.const.data.copy_(shift_constant(saved, -float(t[0, 2]), -float(t[1, 2])))
                return G.synthesis(ws, noise_mode=noise_mode, precision=precision)
            finally:
                block.const.data.copy_(saved)

    class _Wrapper(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.synthesis = _Synthesis()
            self.config = G.config

    return _Wrapper()


def equivariance(snapshot: Path, samples: int, transformable: bool) -> dict[str, float]:
    """EQ-T (integer and fractional) of a snapshot's G_ema over ``samples`` seeds, one label each in
    turn for a conditional G."""
    import torch

    from tools.genlib import load_generator
    from training.metrics.equivariance import psnr, sample_sums

    G = load_generator(str(snapshot), device="cpu").eval()
    net = G if transformable else stylegan2_as_transformable(G)
    sums = torch.zeros(2 * len(KINDS), dtype=torch.float64)
    batch = 20
    for start in range(0, samples, batch):
        seeds = list(range(start, min(start + batch, samples)))
        z = torch.stack([torch.from_numpy(np.random.RandomState(s).randn(G.z_dim)).float() for s in seeds])
        c = torch.eye(G.c_dim)[[s % G.c_dim for s in seeds]] if G.c_dim else None
        with torch.no_grad():
            ws = G.mapping(z, c)
            sums += sample_sums(net, ws, seeds, 0, KINDS).sum(0)
    return {k: psnr(float(sums[2 * i]), float(sums[2 * i + 1])) for i, k in enumerate(KINDS)}


@click.command()
@click.option("--minutes", default=12.0, show_default=True, help="Wall-clock budget of each run (they run side by side).")
@click.option("--sg3-preset", default="stylegan3-tiny", show_default=True, help="The StyleGAN3-T demo preset.")
@click.option("--eq-samples", default=400, show_default=True, help="Seeds for the equivariance figures.")
@click.option("--keep", type=click.Path(path_type=Path), default=None, help="Keep the runs in this folder.")
@click.option("--append", is_flag=True, help="Also append the table to docs/benchmarks.md.")
def main(minutes: float, sg3_preset: str, eq_samples: int, keep: Path | None, append: bool) -> None:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # two torch processes share the cores
    runs = {"stylegan2 (tiny)": ["--preset", "tiny"], f"stylegan3-t ({sg3_preset})": ["--preset", sg3_preset]}
    images, labels = real_digits()
    clf = fit_scorer(images, labels)
    real_feat = features(clf, images)
    half = len(images) // 2
    floor = frechet(real_feat[:half], real_feat[half:])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        results: dict[str, tuple[Path, float] | BaseException] = {}

        def run(name: str, options: list[str], folder: str) -> None:
            try:
                results[name] = train_for(options, minutes, work / folder, 1)
            except BaseException as err:  # reported below, after both ran
                results[name] = err

        threads = [threading.Thread(target=run, args=(name, options, f"runs-{i}"))
                   for i, (name, options) in enumerate(runs.items())]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for name, options in runs.items():
            result = results[name]
            if isinstance(result, BaseException):
                raise click.ClickException(f"{name}: {result}")
            folder, seconds = result
            snapshot = max(folder.glob("network-snapshot-*.safetensors"), key=lambda p: p.stat().st_mtime)
            acc, fd, variety = score(clf, snapshot, real_feat, labels)
            kimg = json.loads((folder / "state" / "progress.json").read_text())["nimg"] / 1000
            t0 = time.time()
            eq = equivariance(snapshot, eq_samples, transformable="stylegan3" in name)
            rows.append({"run": name, "acc": acc, "fd": fd, "variety": variety, "kimg": kimg,
                         "s_kimg": seconds / max(kimg, 1e-9), **eq, "eq_s": time.time() - t0, "grid": snapshot.name})
            print(f"{name}: acc {acc:.3f} fd {fd:.2f} variety {variety:.2f} kimg {kimg:.1f} "
                  f"s/kimg {seconds / max(kimg, 1e-9):.1f} EQ-T {eq['eqt_int']:.1f} EQ-T_frac {eq['eqt_frac']:.1f} dB",
                  flush=True)
    header = (f"`python bench/stylegan3.py --minutes {minutes:g} --eq-samples {eq_samples}` on "
              f"{platform.processor() or platform.machine()}, {time.strftime('%Y-%m-%d')}: both runs side by side, "
              f"one thread each; fd real/real {floor:.2f}\n\n"
              "| run | class accuracy | fd | variety | kimg in budget | s/kimg | EQ-T (dB) | EQ-T_frac (dB) |\n"
              "|---|---|---|---|---|---|---|---|\n")
    table = header + "".join(
        f"| {r['run']} | {r['acc']:.3f} | {r['fd']:.2f} | {r['variety']:.2f} | {r['kimg']:.1f} | {r['s_kimg']:.1f} | "
        f"{r['eqt_int']:.1f}{'*' if 'stylegan2' in r['run'] else ''} | "
        f"{r['eqt_frac']:.1f}{'*' if 'stylegan2' in r['run'] else ''} |\n" for r in rows)
    table += ("\n\\* StyleGAN2 has no transformable input: its figures translate its 4x4 constant instead "
              "(bench/stylegan3.py's analogue, not NVIDIA's metric).\n")
    print(table)
    if append:
        with open(ROOT / "docs" / "benchmarks.md", "a") as f:
            f.write("\n" + table)


if __name__ == "__main__":
    main()
