"""Limited data: the tiny preset on 100, 300 and all 1,797 demo digits, with --aug none / ada / diffaug.

    pip install scikit-learn                         # the scorer lives here, not in the package
    python bench/limited_data.py                     # 3 subsets x 3 augmentations, 20 kimg each, ADA at --ada-kimg 5
    python bench/limited_data.py --subsets 100 --augs none,ada --kimg 10
    python bench/limited_data.py --append            # also add the table to docs/benchmarks.md

Every run trains ``training/train.py --preset tiny`` for the same number of images on the first N
digits of the demo's shard order (a class-balanced prefix, as the shards are shuffled), and its final
snapshot's G_ema is scored with a classifier fitted on all 1,797 real digits (scikit-learn's
``MLPClassifier`` on the 32x32 pixels, one hidden layer of 64 units):

* ``acc``: the fraction of generated digits of each class (200 per class, truncation 1) that the
  classifier assigns to that class, averaged over the classes (the real digits score ~1.0);
* ``fd``: the Fréchet distance between the classifier's hidden features of the generated digits
  and of all real digits (as FID, in a feature space that knows digits; the real digits' own split
  halves give the floor printed as ``fd real/real``);
* ``variety`` (``--score``): within-class variety, the generated digits' mean distance to their
  class mean in the same features over the real digits' (1: as varied as the real digits);
* ``p`` and ``rt``: ADA's final probability and last measured r_t = E[sign(D(real))] from
  ``stats.jsonl`` (``-`` without ADA).

The paper's expectation (Karras et al. 2020, Fig. 1): with few images ``none`` overfits (r_t near 1)
and ADA holds r_t near the target and ends better. Nothing is asserted; the table says what happened.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PER_CLASS = 200


def real_digits() -> tuple[np.ndarray, np.ndarray]:
    """All demo digits in shard order: uint8 ``[N, 32, 32]`` and int labels ``[N]``."""
    from training.data import decode_png, read_shard
    from training.data_info import load_dataset_info

    info = load_dataset_info(str(ROOT / "data"))
    images, labels = [], []
    for shard in info.shards:
        for _, files in read_shard(shard):
            png = next(v for k, v in files.items() if k.endswith("png"))
            cls = next(v for k, v in files.items() if k.endswith("cls"))
            images.append(decode_png(png).reshape(32, 32))
            labels.append(int(cls))
    return np.stack(images), np.array(labels)


def write_subset(images: np.ndarray, labels: np.ndarray, n: int, dest: Path) -> Path:
    """The first ``n`` digits as a dataset made by tools/dataset_tool.py (folders per class)."""
    from PIL import Image

    with tempfile.TemporaryDirectory() as tmp:
        for i in range(n):
            folder = Path(tmp) / str(labels[i])
            folder.mkdir(exist_ok=True)
            Image.fromarray(images[i], "L").save(folder / f"{i:04d}.png")
        subprocess.run([sys.executable, str(ROOT / "tools" / "dataset_tool.py"), "--source", tmp, "--dest", str(dest),
                        "--resolution", "32", "--channels", "1", "--labels", "folders", "--seed", "0", "--workers", "1"],
                       check=True, capture_output=True)
    return dest


def fit_scorer(images: np.ndarray, labels: np.ndarray):
    from sklearn.neural_network import MLPClassifier

    clf = MLPClassifier(hidden_layer_sizes=(64,), max_iter=400, random_state=0)
    clf.fit(images.reshape(len(images), -1) / 255.0, labels)
    return clf


def features(clf, images: np.ndarray) -> np.ndarray:
    """The classifier's hidden-layer activations (ReLU) of uint8 images."""
    x = images.reshape(len(images), -1) / 255.0
    return np.maximum(x @ clf.coefs_[0] + clf.intercepts_[0], 0.0)


def frechet(a: np.ndarray, b: np.ndarray) -> float:
    from scipy import linalg

    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(cov_a @ cov_b)
    covmean = covmean[0] if isinstance(covmean, tuple) else covmean
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * np.real(covmean)))


def generated(snapshot: Path, code: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """PER_CLASS digits of each class from the snapshot's G_ema, as uint8 ``[N, 32, 32]``, and the class
    asked for. With ``code`` (an unconditional InfoGAN network): PER_CLASS per value of that
    categorical code instead, and the code value in place of the class."""
    import torch

    from stylegan.sampling import to_uint8
    from tools.genlib import generate, load_generator

    G = load_generator(str(snapshot), device="cpu")
    values = G.c_dim if code is None else G.config.info_codes[code][1]
    out, labels = [], []
    for c in range(values):
        seeds = list(range(c * PER_CLASS, (c + 1) * PER_CLASS))
        with torch.no_grad():
            if code is None:
                img = generate(G, seeds, truncation_psi=1.0, class_idx=c)
            else:
                img = generate(G, seeds, truncation_psi=1.0, codes={code: c})
        if img.shape[-1] < 32:  # a progressive run stopped below full resolution: shown as it is, enlarged
            img = torch.nn.functional.interpolate(img, size=(32, 32), mode="nearest")
        out.append(to_uint8(img[:, 0]).numpy())
        labels += [c] * PER_CLASS
    return np.concatenate(out), np.array(labels)


def spread(feat: np.ndarray, labels: np.ndarray) -> float:
    """Within-class variety: the mean distance of a class's features to their class mean, averaged over
    the classes (a G that draws one 7 per class scores 0)."""
    return float(np.mean([np.linalg.norm(feat[labels == c] - feat[labels == c].mean(0), axis=1).mean()
                          for c in np.unique(labels)]))


def score(clf, snapshot: Path, real_feat: np.ndarray, real_labels: np.ndarray) -> tuple[float, float, float]:
    """``(class accuracy, fd, variety)`` of a snapshot's G_ema against the real digits' features;
    variety is :func:`spread` of the generated digits over that of the real ones (1: as varied)."""
    fake, fake_labels = generated(snapshot)
    pred = clf.predict(fake.reshape(len(fake), -1) / 255.0)
    acc = float(np.mean([(pred[fake_labels == c] == c).mean() for c in range(10)]))
    fake_feat = features(clf, fake)
    return acc, frechet(fake_feat, real_feat), spread(fake_feat, fake_labels) / spread(real_feat, real_labels)


def train(data: Path, aug: str, kimg: float, outdir: Path, threads: int, ada_kimg: float) -> Path:
    cmd = [sys.executable, str(ROOT / "training" / "train.py"), "--preset", "tiny", "--data", str(data), "--aug", aug,
           "--kimg", str(kimg), "--outdir", str(outdir), "--no-progress", "--threads", str(threads), "--snap", "1000"]
    if aug == "ada":
        cmd += ["--ada-kimg", str(ada_kimg)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    (run,) = outdir.iterdir()
    return run


@click.command()
@click.option("--subsets", default="100,300,1797", show_default=True, help="How many real digits each run trains on.")
@click.option("--augs", default="none,ada,diffaug", show_default=True, help="The --aug values to compare.")
@click.option("--kimg", default=20.0, show_default=True, help="Training images per run (thousands), the same for all.")
@click.option("--ada-kimg", default=5.0, show_default=True,
              help="ADA's speed for these short runs (the paper's 500 suits 25,000-kimg runs: p could not move here).")
@click.option("--threads", default=max(1, os.cpu_count() or 1), show_default=True, help="CPU threads per run.")
@click.option("--keep", type=click.Path(path_type=Path), default=None, help="Keep the runs in this folder.")
@click.option("--append", is_flag=True, help="Also append the table to docs/benchmarks.md.")
@click.option("--score", "score_runs", multiple=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Instead of training: score every snapshot of this existing run folder (quality against kimg).")
def main(subsets: str, augs: str, kimg: float, ada_kimg: float, threads: int, keep: Path | None, append: bool,
         score_runs: tuple[Path, ...]) -> None:
    images, labels = real_digits()
    clf = fit_scorer(images, labels)
    real_feat = features(clf, images)
    half = len(images) // 2
    floor = frechet(real_feat[:half], real_feat[half:])
    real_acc = float((clf.predict(images.reshape(len(images), -1) / 255.0) == labels).mean())
    if score_runs:
        for run in score_runs:
            for snapshot in sorted(run.glob("network-snapshot-*.safetensors")):
                acc, fd, var = score(clf, snapshot, real_feat, labels)
                print(f"{run.name} {snapshot.name}: class accuracy {acc:.3f}, fd {fd:.2f} (fd real/real {floor:.2f}), "
                      f"variety {var:.2f}", flush=True)
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = keep or Path(tmp)
        for n in (int(v) for v in subsets.split(",")):
            data = write_subset(images, labels, n, work / f"data{n}")
            for aug in augs.split(","):
                t0 = time.time()
                run = train(data, aug, kimg, work / f"runs-{n}-{aug}", threads, ada_kimg)
                snapshot = max(run.glob("network-snapshot-*.safetensors"), key=lambda p: p.stat().st_mtime)
                acc, fd, _ = score(clf, snapshot, real_feat, labels)
                last = [json.loads(l) for l in (run / "stats.jsonl").read_text().splitlines() if '"tick"' in l][-1]
                rows.append({"n": n, "aug": aug, "acc": acc, "fd": fd,
                             "p": last.get("aug_p"), "rt": last.get("aug_rt"), "min": (time.time() - t0) / 60})
                r = rows[-1]
                print(f"{n:5d} {aug:8s} acc {r['acc']:.3f} fd {r['fd']:.2f} p {r['p']} rt {r['rt']} ({r['min']:.1f} min)",
                      flush=True)
    fmt = lambda v, f: "-" if v is None else format(v, f)  # noqa: E731
    lines = [f"Limited data, tiny preset, {kimg:g} kimg per run (ADA: --ada-kimg {ada_kimg:g}), {platform.node()} ({os.cpu_count()} CPUs), "
             f"{time.strftime('%Y-%m-%d')}; scorer accuracy on the real digits {real_acc:.3f}, fd real/real {floor:.2f}",
             "", "| digits | --aug | class accuracy | fd | final p | last r_t | minutes |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['n']} | {r['aug']} | {r['acc']:.3f} | {r['fd']:.2f} | {fmt(r['p'], '.3f')} | {fmt(r['rt'], '.2f')} | "
              f"{r['min']:.1f} |" for r in rows]
    print("\n".join(lines))
    if append:
        with open(ROOT / "docs" / "benchmarks.md", "a", encoding="utf-8") as f:
            f.write("\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
