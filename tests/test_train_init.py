"""``--init FILE``: a new run that starts from a network file's weights (fine-tuning)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import stylegan
from test_train_loop import BASE, run_fit
from train_fixtures import make_dataset, resolve_cfg
from training.config import TrainConfig
from training.data import load_dataset_info
from training.distributed import Dist
from training.init_from import apply_init, plan_init
from training.resolve import DataShape, network_config
from training.session import build_session
from training.train import main


@pytest.fixture(scope="module")
def data8(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data8"), resolution=8, num_images=32, num_classes=4)


@pytest.fixture(scope="module")
def snapshot(data8, tmp_path_factory) -> Path:
    """The final snapshot of a short run (2 steps: its weights are no longer the initial ones)."""
    run = tmp_path_factory.mktemp("runs") / "00000-a"
    result = run_fit(data8, run, kimg=0.016, seed=0)
    return Path(result.snapshot)


def fresh_session(data: Path, seed: int):
    info = load_dataset_info(str(data))
    cfg = TrainConfig(data=str(data), **{**BASE, "seed": seed})
    cfg = resolve_cfg(cfg, info)
    return build_session(cfg, Dist(), network_config(cfg, DataShape.of(info)))


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_init_copies_g_d_and_g_ema_and_nothing_else(data8, snapshot):
    saved = stylegan.load_network(snapshot)
    session = fresh_session(data8, seed=1)
    assert not any(same_weights(getattr(session, n), saved[n]) for n in ("G", "D", "G_ema"))
    lines = apply_init(session, plan_init(snapshot, session.net_config))
    for name in ("G", "D", "G_ema"):
        assert same_weights(getattr(session, name), saved[name]), name
    assert not same_weights(saved["G"], saved["G_ema"])  # each came from its own tensors
    assert session.progress.nimg == 0 and session.progress.step == 0
    assert not session.opt_G.state and not session.opt_D.state  # optimizers start afresh
    assert not any(p.requires_grad for p in session.G_ema.parameters())
    assert "initialised from" in lines[0] and "(trained 0.016 kimg)" in lines[0] and "D <- D" in lines[0]


def test_a_generator_only_file_leaves_d_fresh(data8, snapshot, tmp_path):
    saved = stylegan.load_network(snapshot)
    only_g = tmp_path / "generator.safetensors"
    stylegan.save_network(only_g, {"G_ema": saved["G_ema"]}, saved["G_ema"].config)
    session = fresh_session(data8, seed=1)
    fresh_d = {k: v.clone() for k, v in session.D.state_dict().items()}
    plan = plan_init(only_g, session.net_config)
    assert plan.sources == {"G": "G_ema", "G_ema": "G_ema", "D": None} and plan.kimg is None
    lines = apply_init(session, plan)
    assert same_weights(session.G, saved["G_ema"]) and same_weights(session.G_ema, saved["G_ema"])
    assert all(torch.equal(v, fresh_d[k]) for k, v in session.D.state_dict().items())
    assert any("has no discriminator" in line for line in lines)


def test_a_file_of_another_architecture_is_refused_with_the_differences(data8, tmp_path):
    session = fresh_session(data8, seed=0)
    G16, D16 = stylegan.build("tiny", 16, 1, 4)
    other = tmp_path / "res16.safetensors"
    stylegan.save_network(other, {"G": G16, "D": D16}, G16.config)
    with pytest.raises(ValueError, match=r"resolution: file 16, this run 8"):
        plan_init(other, session.net_config)
    with pytest.raises(ValueError, match="no such network file"):
        plan_init(tmp_path / "missing.safetensors", session.net_config)


def test_cli_init_starts_a_new_run_from_the_file(data8, snapshot, tmp_path):
    out = tmp_path / "runs"
    base = ["--preset", "tiny", "--data", str(data8), "--outdir", str(out), "--batch", "8", "--workers", "0", "--threads", "1",
            "--tick", "0.008", "--kimg", "0.008"]
    result = CliRunner().invoke(main, [*base, "--init", str(snapshot)])
    assert result.exit_code == 0, result.output
    assert f"initialised from {snapshot} (trained 0.016 kimg)" in result.output
    assert "--ema-rampup=0 (--init: G_ema starts trained)" in result.output
    run = next(out.iterdir())
    train = json.loads((run / "config.json").read_text())["train"]
    assert train["init"] == str(snapshot) and train["ema_rampup"] == 0
    # The same command with --resume auto (a requeued job) continues that run from its state.
    again = CliRunner().invoke(main, [*base[:-1], "0.016", "--init", str(snapshot), "--resume", "auto"])
    assert again.exit_code == 0, again.output
    assert "resumed from" in again.output and "initialised from" not in again.output
    assert [p.name for p in out.iterdir()] == [run.name]
    # A network file given to --resume is refused with a pointer to --init.
    bad = CliRunner().invoke(main, [*base, "--resume", str(snapshot)])
    assert bad.exit_code == 2 and f"use --init {snapshot}" in bad.output
    # A bad --init stops at start-up, naming the option, and writes nothing.
    (tmp_path / "junk.safetensors").write_bytes(b"not a network")
    for path, message in ((tmp_path / "nope.safetensors", "no such network file"),
                          (tmp_path / "junk.safetensors", "not a readable safetensors file")):
        bad = CliRunner().invoke(main, [*base, "--outdir", str(tmp_path / "other"), "--init", str(path)])
        assert bad.exit_code == 2 and "--init" in bad.output and message in bad.output, bad.output
        assert not (tmp_path / "other").exists()


def test_cli_init_takes_the_files_preset_and_unconditional_setting_unless_given(data8, tmp_path):
    G, D = stylegan.build("cifar", 8, 1, 0)  # unconditional, although data8 has labels
    init = tmp_path / "cifar8.safetensors"
    stylegan.save_network(init, {"G": G, "D": D}, G.config)
    base = ["--data", str(data8), "--outdir", str(tmp_path / "runs"), "--batch", "8", "--init", str(init)]
    result = CliRunner().invoke(main, [*base, "--dry-run"])
    assert result.exit_code == 0, result.output
    line = next(x for x in result.output.splitlines() if x.startswith(f"from --init {init}: "))
    assert {"--no-cond", "--preset=cifar", "--cbase=32768", "--map=2", "--mbstd-group=32"} <= set(line.split()), line
    assert '"preset": "cifar"' in result.output and '"cond": false' in result.output
    given = CliRunner().invoke(main, [*base, "--preset", "tiny", "--dry-run"])  # what is given wins
    assert given.exit_code == 2 and "preset: file 'cifar', this run 'tiny'" in given.output
    # A conditional file on unlabelled data: the class mismatch is what is reported.
    Gc, Dc = stylegan.build("tiny", 8, 1, 3)
    stylegan.save_network(tmp_path / "cond.safetensors", {"G": Gc, "D": Dc}, Gc.config)
    unlabelled = make_dataset(tmp_path / "unlabelled", resolution=8, num_images=8, num_classes=0, shards=1)
    bad = CliRunner().invoke(main, ["--data", str(unlabelled), "--init", str(tmp_path / "cond.safetensors"), "--dry-run"])
    assert bad.exit_code == 2 and "c_dim: file 3, this run 0" in bad.output, bad.output


def test_cli_init_from_an_nvidia_pickle_trains_its_network(tmp_path):
    from nvidia_fixtures import fixture

    pkl = fixture("sg2-cond-rgb32")  # NVIDIA's StyleGAN2: 32x32 RGB, 10 classes, z/w 64, mapping 2
    data = make_dataset(tmp_path / "rgb32", resolution=32, channels=3, num_images=16, num_classes=10, shards=1)
    out = tmp_path / "runs"
    base = ["--data", str(data), "--outdir", str(out), "--batch", "4", "--workers", "0", "--threads", "1",
            "--tick", "0.004", "--kimg", "0.004", "--init", str(pkl)]
    dry = CliRunner().invoke(main, [*base, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "--preset=auto (the recipe for --init's 'nvidia' network)" in dry.output
    assert '"z_dim": 64' in dry.output and '"w_avg_beta": 0.998' in dry.output  # the file's network, not auto's
    result = CliRunner().invoke(main, [*base])
    assert result.exit_code == 0, result.output
    assert "converted in memory" in result.output and f"initialised from {pkl}" in result.output
    run = next(out.iterdir())
    saved = json.loads((run / "config.json").read_text())
    assert saved["network"]["preset"] == "nvidia" and saved["network"]["z_dim"] == 64
    # A requeue resumes the same run with the network it saved.
    again = CliRunner().invoke(main, [*base[:-3], "0.008", "--init", str(pkl), "--resume", "auto"])
    assert again.exit_code == 0, again.output
    assert "resumed from" in again.output
    # Data the file's network cannot read is refused with the differing fields.
    gray = make_dataset(tmp_path / "gray32", resolution=32, channels=1, num_images=8, num_classes=10, shards=1)
    bad = CliRunner().invoke(main, ["--data", str(gray), "--init", str(pkl), "--dry-run"])
    assert bad.exit_code == 2 and "--init" in bad.output and "img_channels: file 3, this run 1" in bad.output, bad.output


def test_cli_init_from_a_stylegan3_pickle_builds_its_network(tmp_path):
    """``--init`` with NVIDIA's StyleGAN3-T snapshot: the run builds that StyleGAN3 network (a short
    run of it took 16 s here, so only --dry-run is tested; init_from's copy of the weights:
    tests/test_nvidia_pickle_fidelity.py)."""
    from nvidia_fixtures import fixture

    pkl = fixture("sg3t-refuse")  # StyleGAN3-T: 16x16 RGB, unconditional, z/w 16, mapping 1
    data = make_dataset(tmp_path / "rgb16", resolution=16, channels=3, num_images=8, num_classes=0, shards=1)
    dry = CliRunner().invoke(main, ["--data", str(data), "--outdir", str(tmp_path / "runs"), "--batch", "4",
                                    "--init", str(pkl), "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "--preset=auto (the recipe for --init's 'nvidia-stylegan3-t' network)" in dry.output
    network = json.loads(next(x for x in dry.output.splitlines() if x.startswith("network: "))[len("network: "):])
    got = (network["family"], network["z_dim"], network["conv_kernel"], network["sg3_layers"])
    assert got == ("stylegan3", 16, 3, 14)


def test_the_fields_stylegan3_does_not_read_change_nothing():
    """``stylegan.families.unused_fields('stylegan3')``: G's architecture and noise switch."""
    from stylegan.config import NetworkConfig
    from stylegan.families import unused_fields

    def outputs(**overrides):
        torch.manual_seed(0)
        config = NetworkConfig(family="stylegan3", resolution=16, img_channels=1, z_dim=8, w_dim=8, mapping_layers=1,
                               channel_base=256, channel_max=16, sg3_layers=4, **overrides)
        G, D = stylegan.build_from_config(config)
        with torch.no_grad():
            img = G(torch.randn([2, 8], generator=torch.Generator().manual_seed(1)))
            return G.state_dict(), D.state_dict(), img, D(img)

    ref = outputs()
    assert unused_fields("stylegan3") == {"g_architecture", "use_noise"}
    for change in (dict(g_architecture="orig"), dict(use_noise=False)):
        got = outputs(**change)
        for a, b in zip(ref[:2], got[:2]):
            assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), change
        assert torch.equal(ref[2], got[2]) and torch.equal(ref[3], got[3]), change
