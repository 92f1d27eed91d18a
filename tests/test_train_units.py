"""Unit tests of the training pieces: config, EMA, lazy regularisation, schedule, losses, state, grids."""

from __future__ import annotations

import json
import math
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import stylegan
from training import checkpoint, grids, runs
from training import loss as L
from training.config import ConfigError, TrainConfig, parse_growth_batch
from training.resolve import DataShape, resolve_run
from training.distributed import Dist, module_fingerprint
from training.ema import EmaSchedule, update_ema
from training.progressive import GrowthSchedule, prepare_reals
from training.signals import StopRequest
from training.loss import LossSettings, StyleGAN2Loss
from training.step import lazy_adam_settings


# ---------------------------------------------------------------------------------------- config
def test_config_round_trip_and_unknown_key_suggestion():
    cfg = TrainConfig(kimg=12.5, batch=16)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="did you mean 'gamma'"):
        TrainConfig.from_dict({"gamma_": 1.0})


def test_config_resolve_fills_derived_values():
    run = resolve_run(TrainConfig(batch=32, preset="tiny"), DataShape(64, 3, 10), world_size=4)
    cfg = run.train
    assert cfg.cond is True and cfg.batch_gpu == 8 and cfg.precision == "fp32"
    assert run.sources["batch_gpu"] == "derived" and run.sources["batch"] == "given" and run.sources["gamma"] == "preset"
    assert cfg.gamma == pytest.approx(0.0064) and cfg.ema_kimg == pytest.approx(10.0)
    tiny = TrainConfig(preset="tiny")
    assert resolve_run(tiny, DataShape(32, 3, 0)).train.cond is False
    assert resolve_run(tiny, DataShape(32, 3, 0), accelerate_precision="bf16").train.precision == "bf16"


@pytest.mark.parametrize(
    "changes, option",
    [
        ({"batch": 30, "batch_gpu": 4}, "--batch"),
        ({"batch": 6}, "--batch"),  # 6 is not divisible by 4 processes
        ({"cond": True}, "--cond"),  # unlabelled dataset
        ({"growth_batch": "64:8"}, "--growth-batch"),  # above the dataset's resolution
    ],
)
def test_config_resolve_errors_name_the_option(changes, option):
    with pytest.raises(ConfigError) as err:
        resolve_run(TrainConfig(preset="tiny", **changes), DataShape(32, 3, 0), world_size=4)
    assert err.value.option == option and option in str(err.value)


def test_parse_growth_batch():
    assert parse_growth_batch("4:64, 8:32") == {4: 64, 8: 32}
    assert parse_growth_batch("") == {}
    for bad in ("4-64", "3:8", "8:0", "a:b"):
        with pytest.raises(ConfigError, match="--growth-batch"):
            parse_growth_batch(bad)


# ---------------------------------------------------------------------------------------- EMA
def test_ema_half_life_and_rampup():
    ema = EmaSchedule(ema_kimg=10.0, ema_rampup=None)
    beta = ema.beta(cur_nimg=10**6, batch=32)
    # After ema_kimg * 1000 images (ema_nimg / batch steps) the old weights weigh one half.
    assert beta ** (10_000 / 32) == pytest.approx(0.5)
    ramped = EmaSchedule(ema_kimg=10.0, ema_rampup=0.05)
    assert ramped.beta(cur_nimg=1000, batch=32) == pytest.approx(0.5 ** (32 / 50))  # capped at 0.05 * 1000
    assert ramped.beta(cur_nimg=10**7, batch=32) == pytest.approx(beta)
    assert ramped.beta(cur_nimg=0, batch=32) == 0.0  # first step: copy G


def test_update_ema_lerps_parameters_and_copies_buffers():
    G, G_ema = torch.nn.BatchNorm1d(3), torch.nn.BatchNorm1d(3)
    with torch.no_grad():
        G.weight.fill_(1.0)
        G_ema.weight.fill_(0.0)
        G.running_mean.fill_(5.0)
    update_ema(G_ema, G, beta=0.75)
    assert torch.allclose(G_ema.weight, torch.full([3], 0.25))
    assert torch.equal(G_ema.running_mean, G.running_mean)


# ---------------------------------------------------------------------------------------- lazy reg
def test_lazy_adam_settings_follow_stylegan2_appendix_b():
    lr, betas = lazy_adam_settings(0.002, (0.0, 0.99), 16)
    c = 16 / 17
    assert lr == pytest.approx(0.002 * c) and betas == (0.0, pytest.approx(0.99**c))
    assert lazy_adam_settings(0.002, (0.0, 0.99), None) == (0.002, (0.0, 0.99))


def test_phases_for_step_runs_regularisers_on_their_interval():
    G, D = stylegan.build("tiny", resolution=8, img_channels=1)
    s = LossSettings(r1_gamma=1.0, r1_interval=4, pl_weight=2.0, pl_interval=2, pl_batch_shrink=2, mixing=0.9)
    phases = StyleGAN2Loss(G, D, s).phases
    assert phases(0) == ["G_main", "G_reg", "D_main", "D_reg"]
    assert phases(1) == ["G_main", "D_main"]
    assert phases(2) == ["G_main", "G_reg", "D_main"]
    off = LossSettings(r1_gamma=0.0, r1_interval=4, pl_weight=0.0, pl_interval=2, pl_batch_shrink=2, mixing=0.9)
    assert StyleGAN2Loss(G, D, off).phases(0) == ["G_main", "D_main"]


# ---------------------------------------------------------------------------------------- losses
class LinearD(torch.nn.Module):
    def __init__(self, shape):
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(shape))

    def forward(self, img, c=None, precision="fp32"):
        return (img * self.w).sum(dim=[1, 2, 3])[:, None]


def test_r1_penalty_matches_the_analytic_gradient_norm():
    D = LinearD([1, 2, 4, 4])
    real = torch.randn(3, 2, 4, 4)
    penalty = L.r1_penalty(D, real, torch.zeros(3, 0))
    assert torch.allclose(penalty, torch.full([3], float(D.w.detach().square().sum())))
    penalty.sum().backward()  # double backward: d/dw of ||w||^2 is 2w per sample
    assert torch.allclose(D.w.grad, 3 * 2 * D.w.detach())


def test_non_saturating_losses():
    D = LinearD([1, 1, 2, 2])
    real = torch.randn(4, 1, 2, 2)
    loss, logits = L.d_real_loss(D, real, torch.zeros(4, 0))
    assert torch.allclose(loss, torch.nn.functional.softplus(-logits))
    assert torch.allclose(L.pl_penalty(torch.tensor([1.0, 3.0]), torch.tensor(2.0)), torch.tensor([1.0, 1.0]))


# ---------------------------------------------------------------------------------------- schedule
def test_progressive_schedule_phases_and_alpha():
    s = GrowthSchedule.progressive(16, fade_kimg=2, stable_kimg=1, batch=8, batch_per_res={16: 4})
    assert [p.name for p in s.phases] == ["stable4", "fade8", "stable8", "fade16", "stable16"]
    assert [p.start_nimg for p in s.phases] == [0, 1000, 3000, 4000, 6000]
    assert s.phases[-1].end_nimg == math.inf and s.phases[-1].batch == 4 and s.phases[0].batch == 8
    phase, alpha = s.at(2000)
    assert phase.name == "fade8" and alpha == pytest.approx(0.5)
    assert s.at(3500) == (s.phases[2], 1.0)
    assert s.at(10**9)[0].name == "stable16"
    fixed = GrowthSchedule.fixed(32, 16)
    assert fixed.at(123)[0].name == "stable32" and fixed.at(123)[1] == 1.0


def test_prepare_reals_scales_downsamples_and_fades():
    images = torch.randint(0, 256, [2, 1, 16, 16], dtype=torch.uint8)
    full = prepare_reals(images, 16, 1.0)
    assert torch.allclose(full, images.float() / 127.5 - 1)
    low = prepare_reals(images, 8, 1.0)
    assert low.shape == (2, 1, 8, 8)
    assert torch.allclose(low.mean(dim=[2, 3]), full.mean(dim=[2, 3]), atol=0.05)  # low-pass keeps the mean
    faded0, faded1 = prepare_reals(images, 8, 0.0), prepare_reals(images, 8, 1.0)
    assert torch.allclose(faded1, low) and not torch.allclose(faded0, low)
    half = prepare_reals(images, 8, 0.5)
    assert torch.allclose(half, (faded0 + faded1) / 2, atol=1e-6)


# ---------------------------------------------------------------------------------------- state
class TinyNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(2, 2)


def _fake_save(tmp_path, value: float, monkeypatch):
    """save_state with stylegan.save_network replaced by a plain tensor file (no real networks)."""
    from safetensors.torch import save_file

    def fake_save_network(path, modules, config, metadata=None):
        save_file({f"{k}.{n}": t.contiguous() for k, m in modules.items() for n, t in m.state_dict().items()}, str(path))

    monkeypatch.setattr(checkpoint.stylegan, "save_network", fake_save_network)
    net = TinyNet()
    with torch.no_grad():
        net.lin.weight.fill_(value)
    return checkpoint.save_state(
        tmp_path, modules={"G": net}, net_config=None, training={"pl_mean": torch.tensor(value)},
        rng=[{"gen": torch.Generator().get_state()}], progress={"nimg": int(value)},
    )


def test_state_is_written_whole_and_found_again(tmp_path, monkeypatch):
    run = tmp_path / "00000-run"
    run.mkdir()
    assert checkpoint.find_state(run) is None
    state = _fake_save(run, 1.0, monkeypatch)
    assert state == run / "state" and checkpoint.is_state(state)
    _fake_save(run, 2.0, monkeypatch)
    loaded = checkpoint.load_state(run / "state")
    assert loaded.progress["nimg"] == 2 and float(loaded.training["pl_mean"]) == 2.0
    assert torch.all(loaded.modules["G"]["lin.weight"] == 2.0)
    assert sorted(p.name for p in run.iterdir()) == ["state"]  # no temporary or old folders left


def test_state_survives_a_crash_between_the_two_renames(tmp_path, monkeypatch):
    run = tmp_path / "00001-run"
    run.mkdir()
    _fake_save(run, 3.0, monkeypatch)
    # A crash after "state -> .state-old-*" and before ".state-tmp-* -> state":
    os.replace(run / "state", run / ".state-old-abc")
    (run / ".state-tmp-def").mkdir()  # an unfinished new state: no progress.json
    found = checkpoint.find_state(run)
    assert found == run / ".state-old-abc"
    assert checkpoint.resolve_resume(run) == (run, found)
    with pytest.raises(FileNotFoundError, match="no resumable state"):
        checkpoint.resolve_resume(tmp_path)


def test_resume_auto_picks_the_most_recently_saved_run(tmp_path, monkeypatch):
    for name in ("00000-a", "00001-b", "00002-c"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(json.dumps({"train": {"gamma": 1.0}}))
    _fake_save(tmp_path / "00001-b", 1.0, monkeypatch)
    _fake_save(tmp_path / "00000-a", 2.0, monkeypatch)  # saved later, lower number
    chosen, _ = runs.choose_run(runs.candidates(tmp_path, {}, (), None))
    assert chosen.run_dir == tmp_path / "00000-a"
    assert runs.choose_run(runs.candidates(tmp_path / "missing", {}, (), None))[0] is None


# ---------------------------------------------------------------------------------------- grids
def test_grid_layout_rows_per_class_and_png_text(tmp_path):
    layout = grids.grid_layout(3, ["zero", "one", "two"])
    assert (layout.rows, layout.cols, layout.row_classes) == (3, grids.CLASS_COLS, (0, 1, 2))
    z, c = grids.grid_inputs(layout, 5, 3)
    assert z.shape == (layout.size, 5) and torch.equal(c.argmax(1).reshape(3, -1)[:, 0], torch.arange(3))
    # Cell i is seed i as tools/generate.py draws it (NVIDIA's RandomState latent).
    assert torch.equal(z[7], torch.from_numpy(np.random.RandomState(7).randn(5)).float())
    images = torch.randint(0, 256, [layout.size, 1, 8, 8], dtype=torch.uint8)
    grid = grids.make_grid(images, layout, header="kimg 1.0")
    assert grid.dtype == np.uint8 and grid.shape[2] == 3 and grid.shape[0] == 16 + 3 * grids.MIN_TILE
    grids.save_png(tmp_path / "g.png", grid, {"phase": "fade8"})
    with Image.open(tmp_path / "g.png") as im:
        assert im.text["phase"] == "fade8" and im.size == (grid.shape[1], grid.shape[0])
    assert grids.grid_layout(0).size == 64


def test_collect_reals_fills_class_rows():
    layout = grids.grid_layout(2)
    batches = iter([(torch.full([4, 1, 2, 2], i, dtype=torch.uint8), torch.tensor([0, 1, 0, 1])) for i in range(20)])
    reals = grids.collect_reals(batches, layout)
    assert reals.shape == (layout.size, 1, 2, 2)


# ---------------------------------------------------------------------------------------- misc
def test_single_process_dist_and_fingerprint():
    d = Dist()
    t = torch.ones(3)
    d.sum_([t])
    assert torch.equal(t, torch.ones(3)) and d.max_difference(t) == 0.0
    net = TinyNet()
    before = module_fingerprint([net])
    with torch.no_grad():
        w = net.lin.weight.flatten()
        w[0], w[1] = w[1].clone(), w[0].clone()  # a swap keeps the plain sum
    assert not torch.equal(before, module_fingerprint([net]))


def test_stop_request_turns_sigterm_into_a_flag():
    previous = signal.getsignal(signal.SIGTERM)
    with StopRequest() as stop:
        assert not stop.requested
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested and stop.signal_name == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) is previous


@pytest.mark.parametrize("early", [False, True])
def test_a_repeated_sigint_interrupts_only_when_it_comes_later(monkeypatch, early):
    """A launcher's copy of the terminal's Ctrl-C (torchrun forwards it within milliseconds) must
    not abort the stop; a person's second Ctrl-C, a second or more later, interrupts at once. With
    ``early``, the first came during start-up (EarlySignals) and the repeat during training."""
    from training import signals as S

    clock = [100.0]
    monkeypatch.setattr(S.time, "monotonic", lambda: clock[0])
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        first = S.EarlySignals.install() if early else None
        if early:
            os.kill(os.getpid(), signal.SIGINT)
        with StopRequest(early=first) as stop:
            if not early:
                os.kill(os.getpid(), signal.SIGINT)
            clock[0] += S.REPEAT_AFTER_SEC / 10
            os.kill(os.getpid(), signal.SIGINT)  # the launcher's copy: dropped
            assert stop.requested and stop.signal_name.startswith("SIGINT")
            os.kill(os.getpid(), signal.SIGTERM)  # a SIGTERM never interrupts
            clock[0] += S.REPEAT_AFTER_SEC
            with pytest.raises(KeyboardInterrupt):
                os.kill(os.getpid(), signal.SIGINT)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def test_run_log_trim_stats(tmp_path):
    from training.runlog import trim_stats

    path = tmp_path / "stats.jsonl"
    path.write_text("".join(json.dumps({"kimg": k}) + "\n" for k in (1, 2, 3)) + '{"kimg": 4')
    trim_stats(path, 2.0)
    assert [json.loads(x)["kimg"] for x in path.read_text().splitlines()] == [1, 2]


def test_snapshot_names_are_integer_kimg_unless_snapshots_come_faster_than_one_per_kimg():
    from training.run_outputs import kimg_label, snapshot_path

    default = TrainConfig(snap=5)  # a snapshot every 4 kimg x 5 ticks (the demo)
    assert kimg_label(200_032, default) == "000200"
    assert snapshot_path(Path("run"), 200_032, default).name == "network-snapshot-000200.safetensors"
    fast = TrainConfig(tick=0.25, snap=2)  # every 0.5 kimg: 1.0 and 1.5 must not share a name
    assert [kimg_label(n, fast) for n in (1000, 1500, 2000)] == ["000001.000", "000001.500", "000002.000"]
    assert kimg_label(1500, TrainConfig(tick=0.5, snap=2)) == "000001"
