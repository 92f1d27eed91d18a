"""Augmentation in training (issue 15): ADA's p adapts, is in state/ (bit-exact resume), in
stats.jsonl, the tick line and snapshots; --init starts p from a file; fixed and DiffAugment train.
The 2-process gradient equality with augmentation is in tests/test_train_distributed.py."""

from __future__ import annotations

import json
import math

import pytest
import torch
from click.testing import CliRunner

import stylegan
from test_train_loop import assert_same_state, read_stats, run_fit
from train_fixtures import make_dataset
from training.augmentation import ADA_INTERVAL, Augmentation
from training.checkpoint import load_state
from training.step import PhaseResult
from training.train import main

@pytest.fixture(scope="module")
def data8(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("data8"), resolution=8, num_images=64, num_classes=4)


# ADA that moves fast enough to see in a few steps: 8 * 4 / 500 = 0.064 per update.
ADA = dict(aug="ada", ada_kimg=0.5, target=0.6, p=0.0)


def test_ada_resume_is_bit_identical_and_p_moves(data8, tmp_path):
    straight = run_fit(data8, tmp_path / "straight", kimg=0.128, **ADA)
    first = run_fit(data8, tmp_path / "split", kimg=0.064, **ADA)
    second = run_fit(data8, tmp_path / "split", state_dir=first.state_dir, kimg=0.128, **ADA)
    assert_same_state(straight.state_dir, second.state_dir)
    state = load_state(straight.state_dir).training["augment"]
    # 16 D steps: 4 updates of p, each +-0.064 from 0, so p is a multiple of 0.064 and r_t was measured.
    assert state["mode"] == "ada" and state["d_steps"] == 16 and state["controller"]["last_rt"] is not None
    assert state["p"] == pytest.approx(round(state["p"] / 0.064) * 0.064, abs=1e-6)
    stats = read_stats(tmp_path / "straight")
    assert all("aug_p" in s and "aug_rt" in s for s in stats)
    assert stats[-1]["aug_p"] == pytest.approx(state["p"])
    assert stats[-1]["signs_real"] is not None and -1 <= stats[-1]["signs_real"] <= 1
    log = (tmp_path / "straight" / "log.txt").read_text()
    assert f"p {stats[-1]['aug_p']:.3f} rt " in log
    # The snapshot carries p: --init from it starts there.
    snap = max((tmp_path / "straight").glob("network-snapshot-*.safetensors"))
    assert stylegan.read_network_info(snap).metadata["augment_p"] == pytest.approx(state["p"])


def test_controller_follows_r_t_of_d_main():
    aug = Augmentation("ada", batch=8, ada_kimg=0.5, target=0.6)
    step = 8 * ADA_INTERVAL / 500
    for i in range(ADA_INTERVAL):
        # Every real logit positive (r_t = 1 > target): after 4 D steps p goes up by one step.
        aug.observe(PhaseResult("D_main", count=8, sums={"signs_real": 8.0}))
        aug.observe(PhaseResult("G_main", count=8, sums={}))  # other phases do not count
        assert aug.p == (pytest.approx(step) if i == ADA_INTERVAL - 1 else 0.0)
    assert aug.stats() == {"aug_p": pytest.approx(step), "aug_rt": 1.0}
    # A skipped step is not evidence.
    for _ in range(ADA_INTERVAL):
        aug.observe(PhaseResult("D_main", count=8, sums={"signs_real": -8.0}, skipped=True))
    assert aug.p == pytest.approx(step)
    for _ in range(ADA_INTERVAL):
        aug.observe(PhaseResult("D_main", count=8, sums={"signs_real": -8.0}))
    assert aug.p == 0.0 and aug.stats()["aug_rt"] == -1.0
    restored = Augmentation("ada", batch=8, ada_kimg=0.5, target=0.6)
    restored.load_state_dict(json.loads(json.dumps(aug.state_dict())))
    assert restored.state_dict() == aug.state_dict()
    with pytest.raises(ValueError, match="saved with --aug ada, this run has --aug fixed"):
        Augmentation("fixed", p=0.1).load_state_dict(aug.state_dict())


@pytest.mark.parametrize("changes", [dict(aug="fixed", p=0.3), dict(aug="diffaug", diffaug="translation,cutout")])
def test_fixed_and_diffaug_train(data8, tmp_path, changes):
    result = run_fit(data8, tmp_path / "run", kimg=0.032, **changes)
    assert result.status == "done"
    stats = read_stats(tmp_path / "run")
    assert all(math.isfinite(s["loss_D"]) and math.isfinite(s["loss_G"]) for s in stats)
    expected = {"aug_p": pytest.approx(0.3), "aug_rt": None} if changes["aug"] == "fixed" else {}
    assert {k: v for k, v in stats[-1].items() if k.startswith("aug_")} == expected


def test_augmentation_changes_what_d_sees(data8, tmp_path):
    """The same seed with and without augmentation: D's gradients differ (the pipe is in the loss)."""
    plain = run_fit(data8, tmp_path / "plain", kimg=0.008)
    fixed = run_fit(data8, tmp_path / "fixed", kimg=0.008, aug="fixed", p=1.0)
    a, b = load_state(plain.state_dir).modules["D"], load_state(fixed.state_dir).modules["D"]
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_init_from_a_snapshot_starts_p_there(data8, tmp_path):
    run_fit(data8, tmp_path / "ada", kimg=0.064, **ADA)
    snap = max((tmp_path / "ada").glob("network-snapshot-*.safetensors"))
    p = stylegan.read_network_info(snap).metadata["augment_p"]
    base = ["--data", str(data8), "--outdir", str(tmp_path / "runs"), "--init", str(snap), "--dry-run"]
    res = CliRunner().invoke(main, [*base, "--aug", "ada"])
    assert res.exit_code == 0, res.output
    assert f"--p={p:g} (ADA starts at the --init file's augmentation probability)" in res.output
    assert f'"p": {p}' in res.output
    # Given, --p wins; without ADA the file's p is not used.
    assert '"p": 0.5' in CliRunner().invoke(main, [*base, "--aug", "ada", "--p", "0.5"]).output
    assert '"p": null' in CliRunner().invoke(main, [*base, "--aug", "none"]).output


def test_augmentation_options_are_checked(data8, tmp_path):
    base = ["--data", str(data8), "--outdir", str(tmp_path / "runs"), "--dry-run", "--preset", "tiny"]
    for args, option, text in [
        (["--aug", "fixed"], "--p", "--aug fixed needs --p"),
        (["--aug", "ada", "--augpipe", "bgcx"], "--augpipe", "did you mean 'bgc"),
        (["--aug", "none", "--target", "0.5"], "--target", "applies to --aug ada only"),
        (["--aug", "diffaug", "--p", "0.2"], "--p", "applies to --aug ada / fixed only"),
        (["--aug", "diffaug", "--diffaug", "color,zoom"], "--diffaug", "unknown name 'zoom'"),
        (["--aug", "ada", "--target", "1.5"], "--target", "expected a number in (0, 1)"),
    ]:
        res = CliRunner().invoke(main, [*base, *args])
        assert res.exit_code == 2 and option in res.output and text in res.output, (args, res.output)
