"""The train.py CLI: every option's validation, --help, --dry-run and resume rules."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from train_fixtures import make_dataset
from training.train import main


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli-data")
    return {
        "labelled": make_dataset(root / "labelled", resolution=8, num_images=16, num_classes=4, shards=1),
        "unlabelled": make_dataset(root / "unlabelled", resolution=8, num_images=16, num_classes=0, shards=1),
        "odd": make_dataset(root / "odd", resolution=12, num_images=8, num_classes=0, shards=1),
    }


def invoke(args: list[str]):
    """train.py with ``args``, on the tiny preset unless they name one (``auto`` would be slow here)."""
    return CliRunner().invoke(main, args if "--preset" in args else [*args, "--preset", "tiny"])


BAD = [
    (["--data", "{tmp}/missing"], "--data", "does not exist"),
    (["--data", "{odd}"], "--data", "does not fit --preset='tiny'"),
    (["--outdir", "{file}"], "--outdir", "not a folder"),
    (["--preset", "huge"], "--preset", "tiny"),
    (["--data", "{unlabelled}", "--cond"], "--cond", "has no labels"),
    (["--kimg", "0"], "--kimg", "expected a number > 0"),
    (["--kimg", "many"], "--kimg", "not a valid float"),
    (["--batch", "0"], "--batch", "expected an integer >= 1"),
    (["--batch", "10", "--batch-gpu", "4"], "--batch", "multiple of --batch-gpu"),
    (["--batch-gpu", "0"], "--batch-gpu", "expected an integer >= 1"),
    (["--batch", "8", "--batch-gpu", "16"], "--batch-gpu", "larger than --batch"),
    (["--batch", "12", "--batch-gpu", "6"], "--batch-gpu", "minibatch-stddev groups of 4"),
    (["--gamma", "-1"], "--gamma", "expected a number >= 0"),
    (["--r1-interval", "0"], "--r1-interval", "expected an integer >= 1"),
    (["--pl-weight", "-1"], "--pl-weight", "expected a number >= 0"),
    (["--pl-interval", "-1"], "--pl-interval", "expected an integer >= 0"),
    (["--pl-interval", "0", "--pl-weight", "2"], "--pl-weight", "give --pl-interval N"),
    (["--blur-sigma", "-1"], "--blur-sigma", "expected a number >= 0"),
    (["--blur-sigma", "2000"], "--blur-sigma", "expected at most 1000"),
    (["--blur-fade-kimg", "-3"], "--blur-fade-kimg", "expected a number >= 0"),
    (["--mixing", "1.5"], "--mixing", "probability in [0, 1]"),
    (["--ema-kimg", "-1"], "--ema-kimg", "expected a number >= 0"),
    (["--ema-rampup", "-0.5"], "--ema-rampup", "expected a number >= 0"),
    (["--glr", "0"], "--glr", "expected a number > 0"),
    (["--dlr", "-0.1"], "--dlr", "expected a number > 0"),
    (["--growth", "fast"], "--growth", "progressive"),
    (["--growth", "progressive", "--growth-start", "3"], "--growth-start", "power of two >= 4"),
    (["--growth", "progressive", "--growth-start", "16"], "--growth-start", "above the dataset's resolution"),
    (["--fade-kimg", "0"], "--fade-kimg", "expected a number > 0"),
    (["--stable-kimg", "-2"], "--stable-kimg", "expected a number > 0"),
    (["--growth-batch", "4-8"], "--growth-batch", "RES:BATCH"),
    (["--growth-batch", "16:8"], "--growth-batch", "above the dataset's resolution"),
    (["--precision", "fp64"], "--precision", "fp32"),
    (["--tick", "0"], "--tick", "expected a number > 0"),
    (["--snap", "0"], "--snap", "expected an integer >= 1"),
    (["--resume", "{tmp}/nope"], "--resume", "no resumable state"),
    (["--seed", "-1"], "--seed", "[0, 2**31)"),
    (["--workers", "-1"], "--workers", "expected an integer >= 0"),
    (["--max-skipped", "0"], "--max-skipped", "expected an integer >= 1"),
    (["--threads", "0"], "--threads", "expected an integer >= 1 or 'auto'"),
    (["--threads", "many"], "--threads", "expected an integer >= 1 or 'auto'"),
    (["--metrics", "fud50k"], "--metrics", "fid50k_full"),
    (["--metrics-features", "vgg"], "--metrics-features", "inception"),
]


@pytest.mark.parametrize("args, option, allowed", BAD, ids=[b[1] + ":" + " ".join(b[0]) for b in BAD])
def test_bad_values_stop_at_start_up_naming_the_option(args, option, allowed, datasets, tmp_path):
    (tmp_path / "a-file").write_text("")
    subs = {"tmp": str(tmp_path), "file": str(tmp_path / "a-file"), **{k: str(v) for k, v in datasets.items()}}
    args = [a.format(**subs) for a in args]
    if "--data" not in args:
        args = ["--data", str(datasets["labelled"]), *args]
    result = invoke([*args, "--outdir", str(tmp_path / "runs")] if "--outdir" not in args else args)
    assert result.exit_code == 2, result.output
    assert option in result.output and allowed in result.output, result.output
    assert not (tmp_path / "runs").exists()  # nothing was written


def test_help_lists_every_option_with_its_default():
    result = invoke(["--help"])
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    options = ["--data", "--outdir", "--preset", "--cond", "--kimg", "--batch", "--batch-gpu", "--gamma",
               "--r1-interval", "--pl-weight", "--pl-interval", "--mixing", "--ema-kimg", "--ema-rampup", "--glr",
               "--dlr", "--cbase", "--cmax", "--map", "--mbstd-group", "--mirror", "--growth", "--growth-start", "--fade-kimg", "--stable-kimg", "--growth-batch",
               "--precision", "--memory-format", "--compile", "--tick", "--snap", "--state-every", "--resume", "--init", "--seed", "--workers", "--max-skipped", "--metrics",
               "--metrics-features", "--inception-weights", "--threads", "--no-progress", "--dry-run",
               "--aug", "--augpipe", "--target", "--ada-kimg", "--p", "--diffaug", "--loss", "--gp-weight", "--drift",
               "--clip", "--n-critic", "--optimizer", "--beta1", "--beta2", "--spectral-norm", "--attention",
               "--info-codes", "--info-weight", "--info-cont-weight", "--blur-sigma", "--blur-fade-kimg",
               "--resolution", "--channels", "--classes"]
    for opt in options:
        assert f" {opt} " in f" {text} ", opt
    assert text.count("[default:") == len(options)


def test_dry_run_prints_config_parameters_and_memory(datasets, tmp_path):
    result = invoke(["--data", str(datasets["labelled"]), "--outdir", str(tmp_path / "runs"), "--batch", "8",
                     "--dry-run", "--threads", "1"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert '"batch_gpu": 8' in out and '"cond": true' in out
    preset_line = next(line for line in out.splitlines() if line.startswith("from --preset tiny: "))
    assert "--gamma=0.0064" in preset_line and "--batch=" not in preset_line  # --batch was given
    assert "--batch-gpu=8 (batch / processes)" in out and "--cond (the dataset has labels)" in out
    assert "parameters: G " in out and "D " in out and "memory per process (estimate):" in out
    assert not (tmp_path / "runs").exists()


def test_nvidia_spellings_are_accepted_or_get_one_line(datasets, tmp_path):
    base = ["--data", str(datasets["labelled"]), "--outdir", str(tmp_path / "runs"), "--dry-run"]

    def config(*args: str) -> str:
        result = invoke([*base, *args])
        assert result.exit_code == 0, result.output
        return next(line for line in result.output.splitlines() if line.startswith("config: "))

    assert '"mirror": true' in config("--mirror=1") and '"mirror": true' in config("--mirror", "true")
    off = config("--mirror=0", "--cond=0", "--metrics=none")
    assert '"mirror": false' in off and '"cond": false' in off and '"metrics": ""' in off
    assert '"cond": true' in config("--cond=1") and '"mirror": true' in config("--mirror")  # ours still work
    assert '"mirror": false' in config("--no-mirror")
    # ADA's augmentation flags are ours too; its 'noaug' gets a pointer.
    ada = config("--aug=ada", "--target=0.7", "--augpipe=bgcfnc")
    assert '"aug": "ada"' in ada and '"target": 0.7' in ada and '"augpipe": "bgcfnc"' in ada
    assert '"p": 0.2' in config("--aug=fixed", "--p=0.2")
    for args, text in [(["--mirror=maybe"], "expected 1/0"), (["--aug=noaug"], "NVIDIA's 'noaug' is 'none' here"),
                       (["--preset", "tiyn"], "did you mean 'tiny'?")]:
        result = invoke([*base, *args])
        assert result.exit_code == 2 and text in result.output, result.output
        assert "Traceback" not in result.output and len(result.output.strip().splitlines()[-1]) > 0
    assert not (tmp_path / "runs").exists()


def test_bf16_on_a_cpu_without_native_bf16_warns_at_start_up(datasets, tmp_path, monkeypatch):
    import training.precision

    args = ["--data", str(datasets["labelled"]), "--outdir", str(tmp_path / "runs"), "--precision", "bf16", "--dry-run"]
    monkeypatch.setattr(training.precision, "cpu_has_native_bf16", lambda: False)
    result = invoke(args)
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if line.startswith("warning: --precision bf16")]
    assert len(warnings) == 1 and "slower than fp32" in warnings[0]
    monkeypatch.setattr(training.precision, "cpu_has_native_bf16", lambda: True)
    assert "warning: --precision bf16" not in invoke(args).output


def test_resume_refuses_changes_that_define_the_run(datasets, tmp_path):
    out = tmp_path / "runs"
    base = ["--data", str(datasets["labelled"]), "--outdir", str(out), "--batch", "8", "--workers", "0",
            "--threads", "1", "--tick", "0.008"]
    first = invoke([*base, "--kimg", "0.008"])
    assert first.exit_code == 0, first.output
    run = next(out.iterdir())
    assert "done: 0.008 kimg" in first.output and str(run) in first.output
    for args, option in ((["--preset", "cifar"], "--preset"), (["--glr", "0.01"], "--glr")):
        bad = invoke([*base, "--resume", str(run), *args])
        assert bad.exit_code == 2 and option in bad.output and "differs from the run being resumed" in bad.output
    # Allowed: a longer run, continued in the same folder.
    more = invoke([*base, "--resume", str(run / "state"), "--kimg", "0.016"])
    assert more.exit_code == 0, more.output
    assert [p.name for p in out.iterdir()] == [run.name] and "resumed from" in more.output
