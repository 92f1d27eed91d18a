"""End-to-end tests of the training loop on a tiny dataset (8x8 / 16x16, tiny preset, CPU).

Exact resume, SIGTERM then resume, non-finite losses, progressive growing through every phase,
snapshots that ``stylegan.load_network`` opens, and the files a run writes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import stylegan
from train_fixtures import make_dataset, resolve_cfg
from training import loss as L
from training.checkpoint import load_state
from training.config import TrainConfig
from training.data import load_dataset_info
from training.distributed import Dist
from training.loop import fit
from training.runlog import RunLog
from training.train import main

REPO = Path(__file__).resolve().parents[1]
# Small and quick, with both regularisers and the EMA ramp-up active within a few steps.
# pl_weight and mixing given: every phase and style mixing run, whatever tiny's recipe (which has neither).
BASE = dict(batch=8, tick=0.016, snap=2, workers=0, r1_interval=4, pl_interval=3, pl_weight=2.0, mixing=0.9,
            ema_kimg=0.05)


@pytest.fixture(scope="module")
def data8(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data8"), resolution=8, num_images=64, num_classes=4)


def run_fit(data: Path, run_dir: Path, state_dir: Path | None = None, **changes):
    info = load_dataset_info(str(data))
    cfg = TrainConfig(data=str(data), outdir=str(run_dir.parent), **{**BASE, **changes})
    cfg = resolve_cfg(cfg, info)
    run_dir.mkdir(parents=True, exist_ok=True)
    log = RunLog(run_dir, tensorboard=False)
    try:
        return fit(cfg, Dist(), run_dir, state_dir=state_dir, log=log, progress_bar=False)
    finally:
        log.close()


def read_stats(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "stats.jsonl").read_text().splitlines()]


def assert_same_state(a: Path, b: Path) -> None:
    """Bit-identical networks, optimizer states, path-length mean, RNG states and counters."""
    sa, sb = load_state(a), load_state(b)
    for name in ("G", "D", "G_ema"):
        assert sa.modules[name].keys() == sb.modules[name].keys()
        for key in sa.modules[name]:
            assert torch.equal(sa.modules[name][key], sb.modules[name][key]), f"{name}.{key} differs"
    _assert_equal_tree(sa.training, sb.training, "training")
    # The per-rank generators that drive training must match. torch's global RNG is saved too, but
    # DataLoader draws worker seeds from it as iterators are made, so it is not compared.
    _assert_equal_tree([r["gen"] for r in sa.rng], [r["gen"] for r in sb.rng], "rng.gen")
    for key in ("nimg", "step", "data_batches", "data_segment", "skipped_total"):
        assert sa.progress[key] == sb.progress[key], key


def _assert_equal_tree(x, y, where: str) -> None:
    if isinstance(x, dict):
        assert x.keys() == y.keys(), where
        for k in x:
            _assert_equal_tree(x[k], y[k], f"{where}.{k}")
    elif isinstance(x, (list, tuple)):
        assert len(x) == len(y), where
        for i, (u, v) in enumerate(zip(x, y)):
            _assert_equal_tree(u, v, f"{where}[{i}]")
    elif isinstance(x, torch.Tensor):
        assert torch.equal(x, y), where
    else:
        assert x == y, where


# ---------------------------------------------------------------------------------------- resume
def test_resume_is_bit_identical(data8, tmp_path):
    """Training 9 steps in one go == 4 steps, stop, resume for 5 (data workers included)."""
    straight = run_fit(data8, tmp_path / "straight", kimg=0.072, workers=2)
    first = run_fit(data8, tmp_path / "split", kimg=0.032, workers=2)
    assert first.status == "done" and first.nimg == 32
    second = run_fit(data8, tmp_path / "split", state_dir=first.state_dir, kimg=0.072, workers=2)
    assert straight.nimg == second.nimg == 72
    assert_same_state(straight.state_dir, second.state_dir)

    # The outputs of a run, and a snapshot that stylegan.load_network opens.
    run = tmp_path / "split"
    names = {p.name for p in run.iterdir()}
    # Snapshots every 0.032 kimg (under 1 kimg apart): names carry the fraction, none overwritten.
    snapshots = {f"network-snapshot-000000.{k}.safetensors" for k in ("032", "064", "072")}
    assert {"log.txt", "stats.jsonl", "samples", "state"} | snapshots <= names
    assert {"reals.png", "fakes000000.032.png", "fakes000000.064.png", "fakes000000.072.png"} <= {
        p.name for p in (run / "samples").iterdir()}
    stats = read_stats(run)
    assert [round(s["kimg"], 3) for s in stats] == [0.016, 0.032, 0.048, 0.064, 0.072]
    for key in ("sec", "sec_per_kimg", "img_per_sec", "data_wait", "loss_G", "loss_D", "skipped", "glr", "dlr",
                "peak_mem_gb", "phase", "alpha", "pl_mean"):
        assert key in stats[-1], key
    assert any(s["r1_penalty"] is not None for s in stats) and any(s["pl_penalty"] is not None for s in stats)
    nets = stylegan.load_network(second.snapshot)
    assert set(nets) == {"G", "D", "G_ema"}
    z, c = torch.randn(2, nets["G_ema"].z_dim), torch.eye(4)[:2]
    img = nets["G_ema"](z, c, noise_mode="const")
    assert img.shape == (2, 1, 8, 8) and torch.isfinite(img).all()
    logits = nets["D"](img, c)
    assert logits.shape == (2, 1)


def _cli(out: Path, data: Path, *extra: str) -> list[str]:
    return [sys.executable, str(REPO / "training" / "train.py"), "--preset", "tiny", "--data", str(data), "--outdir", str(out),
            "--batch", "8", "--tick", "0.008", "--snap", "1000", "--workers", "0", "--threads", "1",
            "--r1-interval", "4", "--pl-interval", "3", "--pl-weight", "2", "--mixing", "0.9", *extra]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


@pytest.mark.e2e
def test_sigterm_saves_state_and_resume_matches_an_uninterrupted_run(data8, tmp_path):
    out = tmp_path / "runs"
    proc = subprocess.Popen(_cli(out, data8, "--kimg", "10"), cwd=REPO, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 240
    stats = None
    while time.time() < deadline and proc.poll() is None:
        found = list(out.glob("*/stats.jsonl"))
        if found and len(found[0].read_text().splitlines()) >= 3:
            stats = found[0]
            break
        time.sleep(0.2)
    assert stats is not None, "the run wrote no stats in time"
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0, output
    run = stats.parent
    log = (run / "log.txt").read_text()
    assert "stopped by SIGTERM" in log and "--resume" in log
    stopped = load_state(run / "state").progress
    assert stopped["nimg"] >= 24 and stopped["nimg"] % 8 == 0

    end_kimg = f"{(stopped['nimg'] + 24) / 1000:.3f}"
    resumed = subprocess.run(_cli(out, data8, "--resume", "auto", "--kimg", end_kimg), cwd=REPO, env=_env(),
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert [p.name for p in out.iterdir()] == [run.name]  # continued the same run
    assert f"resumed from {run / 'state'}" in (run / "log.txt").read_text()
    ref_out = tmp_path / "ref"
    ref = subprocess.run(_cli(ref_out, data8, "--kimg", end_kimg), cwd=REPO, env=_env(),
                         capture_output=True, text=True, timeout=300)
    assert ref.returncode == 0, ref.stdout + ref.stderr
    assert_same_state(next(ref_out.iterdir()) / "state", run / "state")
    kimgs = [s["kimg"] for s in read_stats(run)]
    assert kimgs == sorted(kimgs) and len(kimgs) == len(set(kimgs))  # no tick logged twice


# ---------------------------------------------------------------------------------------- faults
def _nan_on(calls_to_poison: set[int] | None):
    real = L.g_main_loss
    count = {"n": 0}

    def poisoned(*args, **kwargs):
        count["n"] += 1
        loss, logits = real(*args, **kwargs)
        if calls_to_poison is None or count["n"] in calls_to_poison:
            loss = loss * float("nan")
        return loss, logits

    return poisoned


def test_non_finite_loss_skips_the_step_and_is_counted(data8, tmp_path, monkeypatch):
    monkeypatch.setattr(L, "g_main_loss", _nan_on({2, 3}))
    result = run_fit(data8, tmp_path / "run", kimg=0.048)
    assert result.status == "done"
    # Snapshots carry the dataset's class names (generate.py --class NAME reads them).
    assert stylegan.read_network_info(result.snapshot).metadata["class_names"] == ["c0", "c1", "c2", "c3"]
    stats = read_stats(tmp_path / "run")
    assert sum(s["skipped"] for s in stats) == 2 and stats[-1]["skipped_total"] == 2
    state = load_state(result.state_dir)
    assert all(torch.isfinite(t).all() for m in state.modules.values() for t in m.values())


def test_too_many_non_finite_steps_stop_and_keep_the_last_good_state(data8, tmp_path, monkeypatch):
    out = tmp_path / "runs"
    args = ["--preset", "tiny", "--data", str(data8), "--outdir", str(out), "--batch", "8", "--tick", "0.016", "--workers", "0",
            "--threads", "1"]
    ok = CliRunner().invoke(main, [*args, "--kimg", "0.016"])
    assert ok.exit_code == 0, ok.output
    state = next(out.iterdir()) / "state"
    before = (state / "progress.json").read_text()
    monkeypatch.setattr(L, "g_main_loss", _nan_on(None))
    bad = CliRunner().invoke(main, [*args, "--kimg", "1", "--resume", "auto", "--max-skipped", "3"])
    assert bad.exit_code == 1
    assert "3 optimizer steps in a row had a non-finite loss" in bad.output and str(state) in bad.output
    assert (state / "progress.json").read_text() == before


# ---------------------------------------------------------------------------------------- growth
def test_progressive_growing_passes_through_every_phase(tmp_path):
    data = make_dataset(tmp_path / "data16", resolution=16, num_images=32, num_classes=2)
    # stable4 (1 step), fade8 (2 steps), stable8 (1), fade16 (4 steps at batch 4), stable16 (2).
    result = run_fit(data, tmp_path / "run", kimg=0.056, growth="progressive", fade_kimg=0.016, stable_kimg=0.008,
                     growth_batch="16:4", tick=0.004, snap=100)
    stats = read_stats(tmp_path / "run")
    phases = [s["phase"] for s in stats]
    assert phases == ["stable4", "fade8", "fade8", "stable8"] + ["fade16"] * 4 + ["stable16"] * 2
    assert [s["alpha"] for s in stats if s["phase"] == "fade16"] == [0.0, 0.25, 0.5, 0.75]
    assert [s["resolution"] for s in stats][:4] == [4, 8, 8, 8] and stats[-1]["batch"] == 4
    state = load_state(result.state_dir)
    assert state.progress["phase"] == "stable16" and state.progress["data_segment"] == 1
    info = stylegan.read_network_info(result.snapshot)
    assert info.growth["G_ema"] == (16, 1.0) and info.metadata["phase"] == "stable16"
    with Image.open(tmp_path / "run" / "samples" / "fakes000000.056.png") as im:
        assert im.text["phase"] == "stable16" and im.text["resolution"] == "16"


@pytest.mark.e2e
def test_resume_in_the_middle_of_a_fade_is_exact(tmp_path):
    data = make_dataset(tmp_path / "data16", resolution=16, num_images=32, num_classes=0)
    kw = dict(growth="progressive", growth_start=8, fade_kimg=0.032, stable_kimg=0.008, tick=0.008, snap=1,
              growth_batch="8:8,16:4", workers=1)
    straight = run_fit(data, tmp_path / "a", kimg=0.04, **kw)
    first = run_fit(data, tmp_path / "b", kimg=0.02, **kw)  # stops inside fade16
    assert load_state(first.state_dir).progress["phase"] == "fade16"
    second = run_fit(data, tmp_path / "b", state_dir=first.state_dir, kimg=0.04, **kw)
    assert_same_state(straight.state_dir, second.state_dir)
