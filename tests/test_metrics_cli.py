"""tools/metrics.py through click's runner: results, records, and every error names its option."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from generate_helpers import make_network_file
from metrics_helpers import random_images, write_dataset
from tools.metrics import main
from training.metrics import inception


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    return {
        "gray": make_network_file(root / "gray.safetensors", img_channels=1),
        "rgb": make_network_file(root / "rgb.safetensors", img_channels=3),
        "data": write_dataset(root / "ds", random_images(30, res=16, channels=1), per_shard=10),
        "root": root,
    }


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_prints_and_records_results(setup, tmp_path):
    out = tmp_path / "out"
    result = run("--network", setup["gray"], "--data", setup["data"], "--metrics", "fid50k_full,pr50k3_full,is50k",
                 "--num-gen", 24, "--features", "random", "--batch", 8, "--cache-dir", tmp_path / "c",
                 "--outdir", out, "--device", "cpu")
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [x["metric"] for x in lines] == ["fid24_full", "pr24_3_full", "is24"]
    assert lines[0]["num_gen"] == 24 and lines[0]["num_real"] == 30
    record = json.loads((out / "metric-fid24_full.jsonl").read_text())
    assert record["snapshot"] == "gray.safetensors" and record["results"] == lines[0]["results"]
    assert record["truncation_psi"] == 1.0 and record["processes"] == 1
    assert "reals" in result.stderr and "generated" in result.stderr  # progress bars on stderr


@pytest.mark.parametrize("args, option, text", [
    (["--metrics", "fid50k"], "--metrics", "did you mean 'fid50k_full'"),
    (["--metrics", "fid50k_full", "--data", None], "--data", "required for fid50k_full"),
    (["--num-gen", "1"], "--num-gen", "1 is not in the range"),
    (["--truncation", "nan"], "--truncation", "finite"),
    (["--features", "vgg"], "--features", "'vgg' is not one of"),
])
def test_bad_options_name_the_option(setup, args, option, text):
    base = {"--network": setup["gray"], "--data": setup["data"], "--features": "random", "--metrics": "is10"}
    for flag, value in zip(args[::2], args[1::2]):
        base[flag] = value
    argv = [x for flag, value in base.items() if value is not None for x in (flag, value)]
    result = run(*argv)
    assert result.exit_code == 2
    assert option in result.output and text in result.output


def test_missing_network_and_mismatched_data(setup, tmp_path):
    result = run("--network", tmp_path / "none.safetensors", "--metrics", "is10", "--features", "random")
    assert result.exit_code == 2 and "'--network'" in result.output and "does not exist" in result.output
    result = run("--network", setup["rgb"], "--data", setup["data"], "--metrics", "fid10_full", "--features", "random",
                 "--cache-dir", tmp_path)
    assert result.exit_code == 1 and "3-channel images but the dataset" in result.output


def test_missing_inception_weights_is_one_clear_error(setup, tmp_path, monkeypatch):
    monkeypatch.delenv(inception.ENV_WEIGHTS, raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    result = run("--network", setup["gray"], "--data", setup["data"], "--metrics", "fid10_full",
                 "--cache-dir", tmp_path / "cache")
    assert result.exit_code == 1
    assert "Error: " in result.output and inception.WEIGHTS_URL in result.output
    assert str(tmp_path / "cache" / "weights-inception-2015-12-05-6726825d.pth") in result.output
    assert "Traceback" not in result.output


def test_data_and_mirror_default_to_the_runs(tmp_path, monkeypatch):
    """As NVIDIA's calc_metrics: a snapshot in a run folder takes --data and --mirror from config.json,
    a relative data path from where the run was started; given options win."""
    write_dataset(tmp_path / "ds", random_images(12, res=16, channels=1), per_shard=6)
    run_dir = tmp_path / "runs" / "00000-ds-tiny-uncond-b32"
    run_dir.mkdir(parents=True)
    net = make_network_file(run_dir / "network-snapshot-000000.safetensors", img_channels=1)
    (run_dir / "config.json").write_text(json.dumps({"train": {"data": "ds", "outdir": "runs", "mirror": True}}))
    monkeypatch.chdir(run_dir)  # not where the run was started: "ds" is found from the run's outdir
    common = ("--network", net, "--metrics", "fid50k_full", "--num-gen", 8, "--features", "random",
              "--cache-dir", tmp_path / "c", "--device", "cpu")
    result = run(*common)
    assert result.exit_code == 0, result.output
    assert f"--data {tmp_path / 'ds'} --mirror: from {run_dir / 'config.json'}" in result.stderr
    line = json.loads(next(x for x in result.stdout.splitlines() if x.startswith("{")))
    assert line["num_real"] == 24  # 12 images and their mirror images
    given = run(*common, "--no-mirror")
    assert given.exit_code == 0, given.output
    assert json.loads(next(x for x in given.stdout.splitlines() if x.startswith("{")))["num_real"] == 12
