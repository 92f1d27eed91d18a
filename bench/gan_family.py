"""The GAN family on the demo digits: every loss, regulariser and preset of issue 17, each trained for
the same wall-clock budget and scored by a digit classifier.

    pip install scikit-learn                            # the scorer (bench/limited_data.py) lives in bench/
    python bench/gan_family.py --minutes 12             # the default demo's time on the 2-core VM, per method
    python bench/gan_family.py --methods ns,wgan-gp --minutes 2
    python bench/gan_family.py --minutes 12 --append    # also add the table to docs/gan-family.md

Each method runs ``training/train.py`` on all 1,797 demo digits (conditional) with the options in
:data:`METHODS`, for ``--minutes`` of wall time: the run gets SIGTERM when the budget is spent, stops
cleanly after its step (writing a ``-stop`` snapshot) and that final snapshot's G_ema is scored as in
bench/limited_data.py: ``acc`` (the fraction of generated digits the classifier assigns to the class
asked for, 200 per class) and ``fd`` (Fréchet distance of the classifier's hidden features to the real
digits'; the real digits' two halves give the floor). ``infogan`` is unconditional, so its accuracy
is that of its categorical code naming the digits (:func:`code_accuracy`). The table also gives how many images each
method saw in its budget (``kimg``) and the speed (``img/s``): a time budget favours fast methods, as
it does in practice. Nothing is asserted; a method that does not learn in the budget shows it.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.limited_data import features, fit_scorer, frechet, generated, real_digits, score  # noqa: E402

# name -> (train.py options, what differs from the paper's own recipe in this comparison)
METHODS: dict[str, tuple[list[str], str]] = {
    "ns": ([], "the demo's run (tiny preset, StyleGAN2's loss with R1)"),
    "minimax": (["--loss", "minimax"], ""),
    "lsgan": (["--loss", "lsgan"], ""),
    "hinge": (["--loss", "hinge"], ""),
    "wgan": (["--loss", "wgan"], "RMSProp 5e-5, n_critic 5, clip 0.01 (the paper's)"),
    "wgan-gp": (["--loss", "wgan-gp"], "gp 10, drift 0.001, the tiny preset's Adam"),
    "sn-d": (["--spectral-norm", "d"], "ns loss, R1 kept"),
    "attention": (["--attention", "16"], "ns loss, attention at 16x16 in G and D"),
    "progan": (["--preset", "progan", "--cbase", "1024", "--cmax", "64", "--fade-kimg", "6", "--stable-kimg", "6",
                "--ema-kimg", "0.5"],
               "tiny's widths (paper: 512 maps); 6k images per growth phase (paper: 800k), so that 32x32 is reached "
               "in the budget, and G_ema's half-life cut with them to 0.5 kimg (paper: 11.1 kimg, 1/72 of a phase)"),
    "dcgan": (["--preset", "dcgan", "--cbase", "1024", "--cmax", "64"], "at most 64 maps (paper: 1024 at 4x4)"),
    "infogan": (["--no-cond", "--info-codes", "cat:10,cont:2"],
                "unconditional, as the paper's MNIST run: does the 10-way code find the digits on its own? "
                "Class accuracy here is the codes' (each code value matched to one digit, see code_accuracy)"),
}


def code_accuracy(codes: np.ndarray, digits: np.ndarray, n: int = 10) -> tuple[float, list[int]]:
    """How well one categorical InfoGAN code of ``n`` values names the ``n`` digit classes: each code
    value is matched to a different digit so that the most images agree (the Hungarian assignment on
    the code-by-digit counts, the usual accuracy of unsupervised clustering), and the fraction that
    agree is returned with the matched digit of each code value. 1.0: every code value draws one digit,
    each a different one; a code that G ignores scores 1/n whatever the digits' shares."""
    from scipy.optimize import linear_sum_assignment

    counts = np.zeros((n, n), dtype=np.int64)
    np.add.at(counts, (codes, digits), 1)
    rows, cols = linear_sum_assignment(counts, maximize=True)
    return float(counts[rows, cols].sum() / len(codes)), [int(c) for c in cols[np.argsort(rows)]]


def score_codes(clf, snapshot: Path, real_feat: np.ndarray) -> tuple[float, float, list[int]]:
    """``(code accuracy, fd, digit of each code value)`` of an unconditional InfoGAN snapshot whose
    first code is cat:10: PER_CLASS images (200) per value of that code, classified as digits."""
    fake, codes = generated(snapshot, code=0)
    if codes.max() != 9:
        raise click.ClickException(f"{snapshot.name}: expected a first InfoGAN code cat:10")
    pred = clf.predict(fake.reshape(len(fake), -1) / 255.0)
    acc, matched = code_accuracy(codes, pred, 10)
    return acc, frechet(features(clf, fake), real_feat), matched


def _die_with_parent() -> None:
    """In the child, before exec: on Linux, get SIGTERM when the thread that started it ends, so that
    killing the bench does not leave its training runs going (they would hold the CPU for hours)."""
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def train_for(options: list[str], minutes: float, outdir: Path, threads: int) -> tuple[Path, float]:
    """Run train.py until ``minutes`` have passed, then stop it with SIGTERM; returns the run folder
    and the seconds it ran."""
    cmd = [sys.executable, str(ROOT / "training" / "train.py"), "--kimg", "100000", "--snap", "1000",
           "--outdir", str(outdir), "--no-progress", "--threads", str(threads), *options]
    log = open(outdir.parent / f"{outdir.name}.log", "w")
    t0 = time.time()
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, preexec_fn=_die_with_parent)
    try:
        proc.wait(timeout=minutes * 60)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        proc.wait()
    log.close()
    if proc.returncode != 0:
        raise click.ClickException(f"{' '.join(options) or 'ns'}: train.py exited {proc.returncode}; see {log.name}")
    (run,) = outdir.iterdir()
    return run, time.time() - t0


@click.command()
@click.option("--methods", default=",".join(METHODS), show_default=True, help="Which methods to run.")
@click.option("--minutes", default=12.0, show_default=True, help="Wall-clock budget per method.")
@click.option("--threads", default=max(1, os.cpu_count() or 1), show_default=True, help="CPU threads per run.")
@click.option("--keep", type=click.Path(path_type=Path), default=None, help="Keep the runs in this folder.")
@click.option("--append", is_flag=True, help="Also append the table to docs/gan-family.md.")
def main(methods: str, minutes: float, threads: int, keep: Path | None, append: bool) -> None:
    names = [m.strip() for m in methods.split(",") if m.strip()]
    unknown = [m for m in names if m not in METHODS]
    if unknown:
        raise click.BadParameter(f"{', '.join(unknown)}: expected some of {', '.join(METHODS)}", param_hint="--methods")
    images, labels = real_digits()
    clf = fit_scorer(images, labels)
    real_feat = features(clf, images)
    half = len(images) // 2
    floor = frechet(real_feat[:half], real_feat[half:])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for name in names:
            options, note = METHODS[name]
            run, seconds = train_for(options, minutes, work / f"runs-{name}", threads)
            snapshot = max(run.glob("network-snapshot-*.safetensors"), key=lambda p: p.stat().st_mtime)
            if "--info-codes" in options:
                acc, fd, matched = score_codes(clf, snapshot, real_feat)
                note = f"{note}; code values 0-9 matched to digits {matched}"
            else:
                acc, fd, _ = score(clf, snapshot, real_feat, labels)
            kimg = json.loads((run / "state" / "progress.json").read_text())["nimg"] / 1000
            speed = kimg * 1000 / seconds  # start-up included, as a user's clock counts it
            rows.append({"method": name, "options": " ".join(options), "acc": acc, "fd": fd, "kimg": kimg,
                         "img_s": speed, "min": seconds / 60, "note": note, "grid": snapshot.name})
            print(f"{name:10s} acc {acc:.3f}  fd {fd:6.2f}  kimg {kimg:6.1f}  img/s {speed:5.1f}  "
                  f"({seconds / 60:.1f} min; {snapshot.name})", flush=True)
    header = (f"`python bench/gan_family.py --minutes {minutes:g} --threads {threads}` on {platform.processor() or platform.machine()}, "
              f"{time.strftime('%Y-%m-%d')}; fd real/real {floor:.2f}\n\n"
              "| method | options | class accuracy | fd | kimg in budget | img/s | differs from the paper |\n"
              "|---|---|---|---|---|---|---|\n")
    table = header + "".join(
        f"| {r['method']} | `{r['options'] or '(defaults)'}` | {r['acc']:.3f} | {r['fd']:.2f} | {r['kimg']:.1f} | "
        f"{r['img_s']:.0f} | {r['note']} |\n" for r in rows)
    print(table)
    if append:
        with open(ROOT / "docs" / "gan-family.md", "a") as f:
            f.write("\n" + table)


if __name__ == "__main__":
    main()
