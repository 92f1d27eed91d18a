"""Presets are whole recipes: StyleGAN2-ADA's published training values, ADA's ``auto`` formula, what
the user gives always wins, and every value's source is printed and saved."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from train_fixtures import make_dataset
from training.config import TrainConfig
from training.resolve import DataShape, resolve_run
from training.train import main

# StyleGAN2-ADA train.py cfg_specs (published values): res, ref_gpus, kimg, mb, mbstd, fmaps, lrate, gamma,
# ema, ramp (None = off), map.
ADA = {
    "stylegan2": (1024, 8, 25000, 32, 4, 1, 0.002, 10, 10, None, 8),
    "paper256": (256, 8, 25000, 64, 8, 0.5, 0.0025, 1, 20, None, 8),
    "paper512": (512, 8, 25000, 64, 8, 1, 0.0025, 0.5, 20, None, 8),
    "paper1024": (1024, 8, 25000, 32, 4, 1, 0.002, 2, 10, None, 8),
    "cifar": (32, 2, 100000, 64, 32, 1, 0.0025, 0.01, 500, 0.05, 2),
}


@pytest.mark.parametrize("preset", sorted(ADA))
def test_named_presets_resolve_to_adas_published_recipe(preset):
    res, gpus, kimg, mb, mbstd, fmaps, lr, gamma, ema, ramp, mapping = ADA[preset]
    labels = 10 if preset == "cifar" else 0
    run = resolve_run(TrainConfig(preset=preset), DataShape(res, 3, labels), world_size=gpus, device_type="cuda")
    cfg, net = run.train, run.network
    assert (cfg.kimg, cfg.batch, cfg.batch_gpu, cfg.glr, cfg.dlr) == (kimg, mb, mb // gpus, lr, lr)
    assert cfg.gamma == pytest.approx(gamma) and cfg.ema_kimg == ema and cfg.ema_rampup == (ramp or 0)
    assert (cfg.map, cfg.mbstd_group, cfg.cbase, cfg.cmax) == (mapping, mbstd, int(fmaps * 32768), 512)
    assert (net.mapping_layers, net.mbstd_group_size, net.channel_base) == (mapping, mbstd, int(fmaps * 32768))
    # ADA's loss defaults, and cifar's exceptions (no path length, no style mixing, D 'orig').
    cifar = preset == "cifar"
    assert (cfg.pl_weight, cfg.mixing) == ((0, 0) if cifar else (2, 0.9))
    assert net.d_architecture == ("orig" if cifar else "resnet")
    assert (cfg.r1_interval, cfg.pl_interval, cfg.pl_batch_shrink, cfg.pl_decay) == (16, 4, 2, 0.01)
    # On CUDA the recipe runs ADA's mixed precision: 4 float16 resolutions clamped at 256.
    assert cfg.precision == "fp16" and (net.num_fp16_res, net.conv_clamp) == (4, 256)
    for name in ("kimg", "batch", "batch_gpu", "glr", "gamma", "ema_kimg", "map", "mbstd_group", "cbase", "precision"):
        assert run.sources[name] == "preset", name


def test_fewer_gpus_than_published_accumulate_to_the_same_batch():
    run = resolve_run(TrainConfig(preset="paper256"), DataShape(256, 3), world_size=1, device_type="cuda")
    assert (run.train.batch, run.train.batch_gpu) == (64, 8)  # 8 rounds of 8, as ADA's batch_gpu = mb / ref_gpus
    many = resolve_run(TrainConfig(preset="paper256"), DataShape(256, 3), world_size=16, device_type="cuda")
    assert (many.train.batch, many.train.batch_gpu) == (64, 4)


@pytest.mark.parametrize(
    "res, gpus, batch, mbstd, cbase, lr",
    [(256, 1, 16, 4, 16384, 0.0025), (128, 4, 64, 4, 16384, 0.0025), (1024, 8, 32, 4, 32768, 0.002),
     (512, 2, 16, 4, 32768, 0.0025), (32, 1, 32, 4, 16384, 0.0025), (64, 64, 64, 1, 16384, 0.0025)],
)
def test_auto_is_adas_formula(res, gpus, batch, mbstd, cbase, lr):
    run = resolve_run(TrainConfig(preset="auto", data="mine"), DataShape(res, 3), world_size=gpus, device_type="cuda")
    cfg = run.train
    assert (cfg.batch, cfg.batch_gpu, cfg.mbstd_group, cfg.cbase, cfg.glr, cfg.dlr) == (batch, batch // gpus, mbstd, cbase, lr, lr)
    assert cfg.gamma == pytest.approx(0.0002 * res**2 / batch) and cfg.ema_kimg == pytest.approx(batch * 10 / 32)
    assert (cfg.ema_rampup, cfg.map, cfg.kimg) == (0.05, 2, 25000)


def test_the_preset_is_auto_for_data_and_tiny_for_the_demo():
    assert resolve_run(TrainConfig(data="mine"), DataShape(64, 3)).train.preset == "auto"
    demo = resolve_run(TrainConfig(), DataShape(32, 1, 10))
    assert demo.train.preset == "tiny" and demo.sources["preset"] == "derived"
    # The demo's recipe: 64 kimg without path length and style mixing, EMA ramp-up 0.15 (docs/benchmarks.md).
    cfg = demo.train
    assert (cfg.batch, cfg.batch_gpu, cfg.glr, cfg.dlr, cfg.kimg, cfg.snap) == (32, 32, 0.0025, 0.0025, 64, 5)
    assert (cfg.gamma, cfg.ema_kimg, cfg.ema_rampup, cfg.pl_weight, cfg.mixing) == (0.0064, 10, 0.15, 0, 0)
    assert (cfg.precision, demo.network.num_fp16_res, demo.network.conv_clamp) == ("fp32", 0, None)


def test_what_the_user_gives_always_wins():
    given = TrainConfig(preset="paper256", gamma=5.0, batch=32, glr=0.001, kimg=100.0, mbstd_group=4, precision="bf16")
    run = resolve_run(given, DataShape(256, 3), world_size=2, device_type="cuda")
    cfg = run.train
    assert (cfg.gamma, cfg.batch, cfg.glr, cfg.kimg, cfg.mbstd_group, cfg.precision) == (5, 32, 0.001, 100, 4, "bf16")
    assert cfg.dlr == 0.0025 and cfg.batch_gpu == 16  # a given --batch is split over the processes, as ADA's --batch
    assert all(run.sources[n] == "given" for n in ("gamma", "batch", "glr", "kimg", "mbstd_group", "precision"))
    assert run.network.mbstd_group_size == 4


def test_precision_decides_float16_blocks_and_clamping():
    shape = DataShape(256, 3)
    fp32 = resolve_run(TrainConfig(preset="paper256", precision="fp32"), shape, device_type="cuda").network
    assert (fp32.num_fp16_res, fp32.conv_clamp) == (0, None)  # ADA's --fp32
    for precision in ("fp16", "bf16"):
        net = resolve_run(TrainConfig(preset="paper256", precision=precision), shape, device_type="cuda").network
        assert (net.num_fp16_res, net.conv_clamp) == (4, 256)
    cpu = resolve_run(TrainConfig(preset="paper256"), shape, device_type="cpu")
    assert cpu.train.precision == "fp32" and "needs CUDA" in cpu.notes["precision"]
    accel = resolve_run(TrainConfig(preset="paper256"), shape, device_type="cuda", accelerate_precision="bf16")
    assert accel.train.precision == "bf16" and accel.notes["precision"] == "accelerate config"
    # accelerate launch's default 'no' is no choice: the preset's fp16 stays.
    default = resolve_run(TrainConfig(preset="paper256"), shape, device_type="cuda", accelerate_precision="no")
    assert default.train.precision == "fp16" and default.sources["precision"] == "preset"


@pytest.mark.parametrize("preset", sorted(ADA))
def test_dry_run_prints_adas_values_for_each_named_preset(preset):
    res, gpus, kimg, mb, mbstd, fmaps, lr, gamma, ema, ramp, mapping = ADA[preset]
    result = CliRunner().invoke(main, ["--preset", preset, "--resolution", str(res), "--dry-run", "--threads", "1"])
    assert result.exit_code == 0, result.output
    line = next(x for x in result.output.splitlines() if x.startswith(f"from --preset {preset}: "))
    expected = [f"--kimg={kimg}", f"--batch={mb}", f"--glr={lr:g}", f"--dlr={lr:g}", f"--gamma={gamma:g}",
                f"--ema-kimg={ema}", f"--ema-rampup={ramp or 0:g}", f"--map={mapping}", f"--mbstd-group={mbstd}",
                f"--cbase={int(fmaps * 32768)}", f"--batch-gpu={mb // gpus}"]
    for flag in expected:
        assert flag in line.split(), (flag, line)
    assert "--precision=fp32 (the preset's fp16 needs CUDA)" in result.output  # this machine has no GPU


def test_config_json_records_every_value_and_its_source(tmp_path):
    data = make_dataset(tmp_path / "data", resolution=8, num_images=16, num_classes=2, shards=1)
    out = tmp_path / "runs"
    result = CliRunner().invoke(main, ["--data", str(data), "--outdir", str(out), "--preset", "tiny", "--batch", "8",
                                       "--kimg", "0.008", "--tick", "0.008", "--workers", "0", "--threads", "1"])
    assert result.exit_code == 0, result.output
    saved = json.loads((next(out.iterdir()) / "config.json").read_text())
    assert all(v is not None for k, v in saved["train"].items() if k not in ("growth_start", "inception_weights", "init", "p"))  # p: only with a pipeline
    sources = saved["resolution"]["sources"]
    assert set(sources) == set(saved["train"])
    assert sources["batch"] == "given" and sources["gamma"] == "preset" and sources["cond"] == "derived"
    assert sources["r1_interval"] == "default"
    assert "from --preset tiny: " in result.output and "--gamma=0.0064" in result.output


def test_nvidias_flags_get_one_line_naming_ours():
    for args, ours in ((["--cfg", "paper256"], "--preset paper256"), (["--gpus", "8"], "--num_processes 8"),
                       (["--fp32", "1"], "--precision fp32")):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 2 and ours in result.output and "NVIDIA" in result.output, result.output

