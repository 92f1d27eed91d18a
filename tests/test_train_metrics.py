"""--metrics in training: computed at each snapshot, recorded, and never fatal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from train_fixtures import make_dataset
from training.train import main


@pytest.fixture()
def run_args(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    monkeypatch.setenv("STYLEGAN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("STYLEGAN_INCEPTION_WEIGHTS", raising=False)
    data = make_dataset(tmp_path / "data", resolution=8, num_images=16, num_classes=4, shards=1)
    return ["--preset", "tiny", "--data", str(data), "--outdir", str(tmp_path / "runs"), "--batch", "8", "--workers", "0",
            "--threads", "1", "--kimg", "0.016", "--tick", "0.008", "--snap", "1"]


def _stats(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]


def test_metrics_at_each_snapshot_go_to_stats_and_metric_files(run_args, tmp_path) -> None:
    result = CliRunner().invoke(main, [*run_args, "--metrics", "fid40_full,is40", "--metrics-features", "random"])
    assert result.exit_code == 0, result.output
    run = next((tmp_path / "runs").iterdir())
    records = [r for r in _stats(run) if "fid40_full" in r]
    assert len(records) == 2  # one per snapshot (--snap 1, two ticks)
    assert all(r["fid40_full"] >= 0 and r["is40_mean"] >= 1 - 1e-6 for r in records)
    assert [r["snapshot"] for r in records] == [f"network-snapshot-000000.{k}.safetensors" for k in ("008", "016")]
    lines = (run / "metric-fid40_full.jsonl").read_text().splitlines()
    assert len(lines) == 2 and all("network-snapshot-" in line for line in lines)
    assert (run / "metric-is40.jsonl").exists()


def test_missing_inception_weights_warn_and_training_goes_on(run_args, tmp_path) -> None:
    result = CliRunner().invoke(main, [*run_args, "--metrics", "fid40_full"])
    assert result.exit_code == 0, result.output
    assert "warning: metrics fid40_full skipped" in result.output
    run = next((tmp_path / "runs").iterdir())
    assert not (run / "metric-fid40_full.jsonl").exists()
    assert (run / "state").is_dir() and "done:" in result.output
