"""Issue 17's networks and options in training, on one process: the progan and dcgan presets resolve
to their papers' recipes, and each of --preset progan, --preset dcgan, --spectral-norm and
--attention goes through --dry-run, a short run, an exact resume and tools/generate.py. Two
processes: tests/test_train_distributed.py (test_torchrun_two_processes_gan_family, and the
gradient equality of spectrally normalised networks)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import stylegan
from test_train_loop import assert_same_state, read_stats, run_fit
from train_fixtures import make_dataset
from training.checkpoint import load_state
from training.train import main

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data16(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("data16"), resolution=16, num_images=64, num_classes=4)


def dry_run(data: Path, tmp_path: Path, *args: str) -> dict:
    res = CliRunner().invoke(main, ["--data", str(data), "--outdir", str(tmp_path / "runs"), "--dry-run", *args])
    assert res.exit_code == 0, res.output
    config = next(line for line in res.output.splitlines() if line.startswith("config: "))
    network = next(line for line in res.output.splitlines() if line.startswith("network: "))
    return {**json.loads(config[len("config: "):]), "network": json.loads(network[len("network: "):]), "output": res.output}


def test_progan_preset_is_the_papers_recipe(data16, tmp_path):
    cfg = dry_run(data16, tmp_path, "--preset", "progan")
    assert cfg["network"]["family"] == "progan" and cfg["network"]["channel_base"] == 16384
    assert (cfg["loss"], cfg["drift"], cfg["gp_weight"], cfg["gamma"]) == ("wgan-gp", 0.001, 10.0, 0.0)
    assert (cfg["optimizer"], cfg["glr"], cfg["dlr"], cfg["beta1"], cfg["beta2"]) == ("adam", 0.001, 0.001, 0.0, 0.99)
    assert (cfg["growth"], cfg["fade_kimg"], cfg["stable_kimg"], cfg["batch"]) == ("progressive", 800.0, 800.0, 16)
    # 16x16 data: stable 4, fade and stable 8, fade and stable 16 = 800 + 2 x 1600 kimg; the batch
    # reductions above 128x128 do not apply.
    assert cfg["kimg"] == 4000.0 and cfg["growth_batch"] == ""
    assert (cfg["pl_weight"], cfg["mixing"], cfg["aug"], cfg["precision"]) == (0.0, 0.0, "none", "fp32")
    assert "--kimg=4000 (the growth schedule up to this resolution, then one stable phase)" in cfg["output"]


# A changed value for each field some family does not read (stylegan.families.unused_fields).
CHANGED = {"w_dim": 32, "mapping_layers": 3, "mapping_lr_multiplier": 0.5, "d_mapping_layers": 3,
           "g_architecture": "orig", "d_architecture": "orig", "resample_filter": (1.0, 1.0), "use_noise": None,
           "conv_clamp": 128.0, "mbstd_group_size": 2, "mbstd_num_channels": 2,
           # StyleGAN3's synthesis (stylegan/stylegan3.py)
           "g_channel_base": 512, "g_channel_max": 16, "conv_kernel": 1, "use_radial_filters": True,
           "magnitude_ema_beta": 0.5, "sg3_layers": 6, "sg3_critical_layers": 1, "first_cutoff": 3.0,
           "first_stopband": 5.0, "last_stopband_rel": 1.5, "margin_size": 5, "output_scale": 0.5, "filter_size": 4,
           "lrelu_upsampling": 1}
# Each family's small networks (preset and overrides) for the comparison; stylegan3 with 4 layers.
SMALL = {"channel_base": 256, "channel_max": 32}
FAMILY_BUILDS = {"stylegan2": ("tiny", {}), "progan": ("progan", SMALL), "dcgan": ("dcgan", SMALL),
                 "stylegan3": ("stylegan3-tiny", {"sg3_layers": 4})}


@pytest.mark.parametrize("family", sorted(FAMILY_BUILDS))
def test_the_fields_a_family_does_not_use_change_nothing(family):
    """Each field ``unused_fields`` names for a family builds the same networks, weight for weight and
    image for image, when changed (or, for G's own channel schedule outside stylegan3, is refused);
    --dry-run then does not list the matching option as the preset's."""
    from stylegan.families import unused_fields

    preset, extra = FAMILY_BUILDS[family]

    def outputs(**overrides):
        torch.manual_seed(0)
        G, D = stylegan.build(preset, 16, 1, 2, **{**extra, **overrides})
        assert G.config.family == family
        z, c = torch.randn([4, G.z_dim], generator=torch.Generator().manual_seed(1)), torch.eye(2)[[0, 1, 0, 1]]
        with torch.no_grad():
            img = G(z, c, noise_mode="const")
            return G.state_dict(), D.state_dict(), img, D(img, c)

    base = stylegan.preset_network(preset, 16, 1)
    ref = outputs()
    assert unused_fields(family) <= set(CHANGED)
    for name in sorted(unused_fields(family)):
        value = (not base.get("use_noise", True)) if name == "use_noise" else CHANGED[name]
        if name in ("g_channel_base", "g_channel_max"):
            with pytest.raises(ValueError, match="exists in the stylegan3 family only"):
                outputs(**{name: value})
            continue
        got = outputs(**{name: value})
        for a, b in zip(ref[:2], got[:2]):
            assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), (family, name)
        assert torch.equal(ref[2], got[2]) and torch.equal(ref[3], got[3]), (family, name)
    # Against a field the family does read: the comparison has teeth.
    assert not torch.equal(ref[2], outputs(channel_max=16, g_channel_max=8 if family == "stylegan3" else None)[2])
    # Every StyleGAN3 field is read by the stylegan3 family.
    assert not unused_fields("stylegan3") & set(CHANGED) - {"g_architecture", "use_noise"}


def test_dry_run_lists_only_the_network_options_a_family_reads(data16, tmp_path):
    def preset_line(preset: str) -> str:
        output = dry_run(data16, tmp_path, "--preset", preset)["output"]
        return next(x for x in output.splitlines() if x.startswith(f"from --preset {preset}: "))

    assert "--map=" not in preset_line("progan") and "--mbstd-group=4" in preset_line("progan")
    assert "--map=" not in preset_line("dcgan") and "--mbstd-group=" not in preset_line("dcgan")
    assert "--map=2" in preset_line("tiny") and "--cmax=64" in preset_line("tiny")


def test_dcgan_preset_is_the_papers_recipe(data16, tmp_path):
    cfg = dry_run(data16, tmp_path, "--preset", "dcgan")
    assert cfg["network"]["family"] == "dcgan" and cfg["network"]["z_dim"] == 100
    assert (cfg["loss"], cfg["optimizer"], cfg["glr"], cfg["dlr"]) == ("ns", "adam", 0.0002, 0.0002)
    assert (cfg["beta1"], cfg["beta2"], cfg["batch"], cfg["gamma"], cfg["pl_weight"]) == (0.5, 0.999, 128, 0.0, 0.0)
    assert (cfg["ema_kimg"], cfg["growth"], cfg["aug"]) == (0.0, "none", "none")


def test_network_options_reach_the_network_config(data16, tmp_path):
    cfg = dry_run(data16, tmp_path, "--preset", "tiny", "--spectral-norm", "gd", "--attention", "8")
    assert cfg["network"]["spectral_norm"] == "gd" and cfg["network"]["attention"] == [8]
    for args, option, text in [
        (["--spectral-norm", "dg"], "--spectral-norm", "expected one of none, d, gd"),
        (["--attention", "12"], "--attention", "expected distinct resolutions, powers of two >= 8"),
        (["--attention", "16"], "--data", "powers of two in [8, 8]"),
        (["--preset", "dcgan", "--attention", "8"], "--attention", "self-attention blocks exist in the stylegan2 family only"),
    ]:
        res = CliRunner().invoke(main, ["--data", str(data16), "--outdir", str(tmp_path / "r"), "--dry-run",
                                        "--preset", "tiny", *args])
        assert res.exit_code in (1, 2) and option in res.output and text in res.output, (args, res.output)


VARIANTS = {
    # ProGAN small enough for a test, fading in 8x8 during the split: the box-filtered reals and the
    # fade resume exactly.
    "progan": dict(preset="progan", cbase=256, cmax=32, batch=8, fade_kimg=0.016, stable_kimg=0.016),
    "dcgan": dict(preset="dcgan", cbase=256, cmax=32, batch=8),
    "sn-attention": dict(preset="tiny", spectral_norm="gd", attention="8"),
    "wgan-sn-d": dict(preset="tiny", loss="wgan", spectral_norm="d", n_critic=2),
}


@pytest.mark.e2e
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_trains_resumes_exactly_and_generates(data16, tmp_path, variant):
    opts = VARIANTS[variant]
    straight = run_fit(data16, tmp_path / "straight", kimg=0.048, **opts)
    first = run_fit(data16, tmp_path / "split", kimg=0.024, **opts)
    second = run_fit(data16, tmp_path / "split", state_dir=first.state_dir, kimg=0.048, **opts)
    assert_same_state(straight.state_dir, second.state_dir)
    stats = read_stats(tmp_path / "straight")
    assert all(s["loss_D"] is not None for s in stats)
    state = load_state(straight.state_dir)
    if "spectral_norm" in opts:  # u and v are in state/ and moved during training
        assert any(k.endswith("_u") for k in state.modules["D"])
    network = straight.snapshot
    nets = stylegan.load_network(network)
    assert nets["G_ema"].config.family == {"progan": "progan", "dcgan": "dcgan"}.get(variant, "stylegan2")
    out = tmp_path / "images"
    gen = subprocess.run([sys.executable, "tools/generate.py", "--network", str(network), "--seeds", "0-1",
                          "--outdir", str(out), "--class", "1"], cwd=REPO, capture_output=True, text=True, timeout=120,
                         env={**__import__("os").environ, "PYTHONPATH": str(REPO)})
    assert gen.returncode == 0, gen.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == ["seed0000.png", "seed0001.png"]
