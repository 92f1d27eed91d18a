"""Runs found, never overwritten, portable; what a person reads while one runs (issue 16).

``--resume auto`` continues the newest run whose configuration matches the command and says which;
a run that reached ``--kimg`` says it is complete and writes nothing; the data is recognised by its
shards wherever it lives, and other data is refused with what differs. The log carries the growth
schedule, time stamps, elapsed time and an ETA.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import pytest
from click.testing import CliRunner

from train_fixtures import make_dataset
from training import runs
from training.run_outputs import format_duration
from training.progressive import GrowthSchedule
from training.runlog import stamped, unstamped
from training.train import main


@pytest.fixture(scope="module")
def data8(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("data") / "d8", resolution=8, num_images=32, num_classes=4)


def _args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["--preset", "tiny", "--data", str(data), "--outdir", str(out), "--batch", "8", "--tick", "0.008",
            "--workers", "0", "--threads", "1", "--no-progress", *extra]


def _train(*args: str):
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result


def _log(run: Path) -> list[str]:
    return [unstamped(line) for line in (run / "log.txt").read_text().splitlines()]


# ---------------------------------------------------------------------------------------- --resume auto
def test_resume_auto_continues_the_newest_run_that_matches(data8, tmp_path):
    out = tmp_path / "runs"
    _train(*_args(data8, out, "--kimg", "0.008", "--gamma", "1"))
    _train(*_args(data8, out, "--kimg", "0.008", "--gamma", "2"))  # newer, different gamma
    a, b = sorted(out.iterdir())
    # gamma 1 names the older run: it is continued, and the newer one is named as passed over.
    res = _train(*_args(data8, out, "--kimg", "0.016", "--gamma", "1", "--resume", "auto"))
    assert f"--resume auto: continuing {a}" in res.output
    assert f"{b.name}: --gamma 2.0 vs 1.0" in res.output
    assert json.loads((a / "state" / "progress.json").read_text())["nimg"] == 16
    assert json.loads((b / "state" / "progress.json").read_text())["nimg"] == 8
    assert len(list(out.iterdir())) == 2
    # No run matches gamma 3: a new run, and the line says why neither was taken.
    res = _train(*_args(data8, out, "--kimg", "0.008", "--gamma", "3", "--resume", "auto"))
    assert "no run in --outdir matches this command" in res.output and "--gamma" in res.output
    assert len(list(out.iterdir())) == 3


def test_a_complete_run_says_so_and_writes_nothing(data8, tmp_path):
    out = tmp_path / "runs"
    _train(*_args(data8, out, "--kimg", "0.016"))
    (run,) = out.iterdir()
    before = {p.name: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}
    for resume in ("auto", str(run)):
        res = _train(*_args(data8, out, "--resume", resume))
        assert f"{run} is complete: 0.016 of --kimg 0.016 trained" in res.output
        assert "network-snapshot-000000.016.safetensors" in res.output
    after = {p.name: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}
    assert after == before and len(list(out.iterdir())) == 1
    # Asking for more trains on.
    _train(*_args(data8, out, "--resume", "auto", "--kimg", "0.024"))
    assert json.loads((run / "state" / "progress.json").read_text())["nimg"] == 24


# ---------------------------------------------------------------------------------------- data that moves
def test_the_same_data_at_another_path_is_accepted_and_other_data_refused(data8, tmp_path):
    out = tmp_path / "runs"
    _train(*_args(data8, out, "--kimg", "0.008"))
    (run,) = out.iterdir()
    saved = json.loads((run / "config.json").read_text())["dataset"]
    assert saved["location"] == str(data8.resolve())
    assert saved["fingerprint"]["shards"] == [["test-000000.tar", 16], ["test-000001.tar", 16]]

    moved = tmp_path / "scratch" / "copy"
    shutil.copytree(data8, moved)
    res = _train(*_args(moved, out, "--kimg", "0.016", "--resume", "auto"))
    assert f"continuing {run}" in res.output
    config = json.loads((run / "config.json").read_text())
    assert config["train"]["data"] == str(moved) and config["dataset"]["location"] == str(moved.resolve())

    other = make_dataset(tmp_path / "other", resolution=8, num_images=24, num_classes=4)
    res = CliRunner().invoke(main, _args(other, out, "--kimg", "0.024", "--resume", str(run)))
    assert res.exit_code == 2
    assert f"not the data {run.name} was trained on" in res.output
    assert "num_images 32 vs 24" in res.output and "missing" not in res.output
    # --resume auto with other data: no run matches, so a new one starts (never the old run on new data).
    res = _train(*_args(other, out, "--kimg", "0.008", "--resume", "auto"))
    assert "no run in --outdir matches" in res.output and "num_images 32 vs 24" in res.output
    assert json.loads((run / "state" / "progress.json").read_text())["nimg"] == 16


def test_fingerprint_differences_name_what_differs():
    a = {"resolution": 8, "channels": 1, "num_images": 32, "num_classes": 4, "class_counts": None,
         "shards": [["x-0.tar", 16], ["x-1.tar", 16]]}
    assert runs.fingerprint_differences(a, dict(a)) == []
    b = dict(a, shards=[["x-0.tar", 15], ["x-2.tar", 16]], num_images=31)
    diffs = runs.fingerprint_differences(a, b)
    assert diffs[0] == "num_images 32 vs 31"
    assert diffs[1] == "shards missing x-1.tar; extra x-2.tar; x-0.tar: 16 vs 15 samples"


def test_a_moved_dataset_that_is_gone_names_the_fix(data8, tmp_path):
    out = tmp_path / "runs"
    copy = tmp_path / "copy"
    shutil.copytree(data8, copy)
    _train(*_args(copy, out, "--kimg", "0.008"))
    shutil.rmtree(copy)
    res = CliRunner().invoke(main, ["--outdir", str(out), "--resume", "auto", "--kimg", "0.016"])
    assert res.exit_code == 2 and "if its data moved, give --data where it is now" in res.output


# ---------------------------------------------------------------------------------------- what a person reads
def test_log_has_stamps_schedule_elapsed_and_eta(data8, tmp_path):
    out = tmp_path / "runs"
    res = _train(*_args(data8, out, "--kimg", "0.024"))
    assert "kimg [" not in res.output  # --no-progress: no bar (its format ends "N/M kimg [elapsed<remaining]")
    (run,) = out.iterdir()
    raw = (run / "log.txt").read_text().splitlines()
    assert all(unstamped(line) != line for line in raw)
    lines = _log(run)
    assert "growth: none, 8x8 from the first image, batch 8" in lines
    ticks = [line for line in lines if line.startswith("tick")]
    assert len(ticks) == 3 and all(" elapsed " in t and " eta " in t for t in ticks)
    # A loaded machine appends "  (CPU shared: ...)" after the eta (training/cpu_threads.py).
    assert ticks[-1].split("  (CPU shared:")[0].endswith("eta 0s")
    assert sum(line.startswith("expected: ") for line in lines) == 1
    stats = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    assert [s["eta_sec"] > 0 for s in stats] == [True, True, False]
    assert stats[0]["elapsed_sec"] <= stats[1]["elapsed_sec"] <= stats[2]["elapsed_sec"]
    assert stats[-1]["time"][:4].isdigit() and "T" in stats[-1]["time"]


def test_the_bar_ends_without_tqdm_warnings(data8, tmp_path):
    """0.020 kimg at batch 8 overshoots by 4 images: the bar stops at its total, no clamping warning."""
    args = [a for a in _args(data8, tmp_path / "runs", "--kimg", "0.020") if a != "--no-progress"]
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        res = _train(*args)
    assert "0.0/0.0 kimg [" in res.output and "-" not in res.output.split("kimg [")[-1].split("]")[0]
    assert not [w for w in seen if "tqdm" in type(w.message).__name__.lower()], [str(w.message) for w in seen]


def test_stamp_round_trip_and_durations():
    assert unstamped(stamped("tick 1 x")) == "tick 1 x"
    assert unstamped("tick 1 x") == "tick 1 x"
    assert [format_duration(s) for s in (0, 42.4, 725, 11220, 190000)] == ["0s", "42s", "12m05s", "3h07m", "2d04h"]


def test_growth_schedule_is_described_and_a_short_run_warned():
    s = GrowthSchedule.progressive(32, fade_kimg=800, stable_kimg=800, batch=32)
    lines = s.describe(80)
    assert lines[0] == ("growth: progressive, stable4 0-800, fade8 800-1600, stable8 1600-2400, fade16 2400-3200, "
                        "stable16 3200-4000, fade32 4000-4800, stable32 from 4800 kimg (batch 32)")
    assert lines[1].startswith("warning: --kimg 80 ends in stable4 (4x4); reaching 32x32 needs --kimg above 4800")
    assert len(s.describe(4801)) == 1
    assert len(GrowthSchedule.progressive(32, fade_kimg=10, stable_kimg=10, batch=32).describe(80)) == 1
    assert GrowthSchedule.fixed(16, 8).describe(1) == ["growth: none, 16x16 from the first image, batch 8"]


def test_dry_run_prints_the_schedule_and_its_warning():
    res = CliRunner().invoke(main, ["--dry-run", "--preset", "tiny", "--resolution", "32", "--channels", "1",
                                    "--growth", "progressive", "--kimg", "80"])
    assert res.exit_code == 0, res.output
    assert "growth: progressive, stable4 0-800," in res.output
    assert "warning: --kimg 80 ends in stable4 (4x4)" in res.output
