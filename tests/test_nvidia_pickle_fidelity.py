"""NVIDIA's snapshots render NVIDIA's numbers here: read directly, after conversion, in the CLIs.

The reference outputs were computed by NVIDIA's own code (``../shared/fixtures/nvidia-pickles``,
see its README); the tests skip with the reason when that folder is absent.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import stylegan
from nvidia_fixtures import SG2_FIXTURES, fixture, reference
from stylegan.safe_unpickle import safe_loads
from tools import convert, generate, genlib, metrics, style_mixing, video
from training.init_from import apply_init, network_config_from_file, options_from_file, plan_init
from training.progressive import GrowthSchedule
from training.counters import Progress

TOL = 1e-4  # the README's tolerance; measured differences are ~1e-5 (images) and 0 (ws)

# What the README says each fixture is.
EXPECTED = {
    "sg2-cond-rgb32": dict(
        g_architecture="skip", z_dim=64, w_dim=64, c_dim=10, resolution=32, img_channels=3, channel_base=1024,
        channel_max=64, mapping_layers=2, num_fp16_res=0, conv_clamp=None, d_architecture="resnet",
        mbstd_group_size=4,
    ),
    "sg2-uncond-gray64-fp16": dict(
        g_architecture="skip", z_dim=32, w_dim=32, c_dim=0, resolution=64, img_channels=1, channel_base=2048,
        channel_max=64, mapping_layers=3, num_fp16_res=2, conv_clamp=256, d_architecture="orig",
        mbstd_group_size=2,
    ),
    "sg2-uncond-rgba16-resnetG": dict(
        g_architecture="resnet", z_dim=16, w_dim=16, c_dim=0, resolution=16, img_channels=4, channel_base=512,
        channel_max=32, mapping_layers=1, num_fp16_res=0, conv_clamp=None, d_architecture="skip",
        mbstd_group_size=4,
    ),
}


def _check_outputs(G, D, ref: dict[str, np.ndarray]) -> None:
    z = torch.from_numpy(ref["z"])
    c = torch.from_numpy(ref["c"]) if ref["c"].size else None
    close = lambda ours, key: torch.testing.assert_close(ours, torch.from_numpy(ref[key]), atol=TOL, rtol=0)  # noqa: E731
    with torch.no_grad():
        close(G.mapping(z, c), "ws")
        close(G.mapping(z, c, truncation_psi=0.7), "ws_psi07")
        close(G.mapping(z, c, truncation_psi=0.7, truncation_cutoff=2), "ws_psi07_cutoff2")
        run = dict(noise_mode="const", precision="fp32")
        close(G(z, c, **run), "img")
        close(G(z, c, truncation_psi=0.7, **run), "img_psi07")
        close(G(z, c, truncation_psi=0.7, truncation_cutoff=2, **run), "img_psi07_cutoff2")
        close(D(torch.from_numpy(ref["img"]), c, precision="fp32"), "logits")


@pytest.mark.parametrize("name", SG2_FIXTURES)
def test_read_directly_and_converted_give_nvidias_outputs(name, tmp_path):
    path, ref = fixture(name), reference(name)
    net = stylegan.read_nvidia_pickle(path)
    assert list(net.modules) == ["G", "D", "G_ema"]
    for key, value in EXPECTED[name].items():
        assert getattr(net.config, key) == value, key
    _check_outputs(net.modules["G_ema"], net.modules["D"], ref)

    # Converted with the CLI, then loaded as any network file.
    dest = tmp_path / "net.safetensors"
    result = CliRunner().invoke(convert.main, ["--source", str(path), "--dest", str(dest)])
    assert result.exit_code == 0, result.output
    loaded = stylegan.load_network(dest)
    assert set(loaded) == {"G", "D", "G_ema"}
    for module in ("G", "D", "G_ema"):
        ours, theirs = loaded[module].state_dict(), net.modules[module].state_dict()
        assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours), module
    _check_outputs(loaded["G_ema"], loaded["D"], ref)
    info = stylegan.read_network_info(dest)
    assert info.config == net.config and info.metadata["converted_from"] == path.name


def test_convert_prints_what_it_found_and_left_out(tmp_path):
    path = fixture("sg2-cond-rgb32")
    raw_p = float(safe_loads(path.read_bytes())["augment_pipe"].state["_buffers"]["p"])
    dest = tmp_path / "sub" / "net.safetensors"
    result = CliRunner().invoke(convert.main, ["--source", str(path), "--dest", str(dest)])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "found G, D, G_ema: StyleGAN2, G skip / D resnet, 32x32, 3 channels, 10 classes" in out
    assert f"G {stylegan.read_nvidia_pickle(path).parameters['G']:,}" in out
    assert f"augment_pipe (ADA's AugmentPipe, p={raw_p:.4f})" in out and "training_set_kwargs (" in out
    assert stylegan.read_network_info(dest).metadata["augment_p"] == pytest.approx(raw_p)
    assert [p.name for p in dest.parent.iterdir()] == ["net.safetensors"]  # no temporary left behind
    bad = CliRunner().invoke(convert.main, ["--source", str(path), "--dest", str(tmp_path / "net.pt")])
    assert bad.exit_code == 2 and "expected a .safetensors file name" in bad.output


def _nvidia_uint8(img: np.ndarray) -> np.ndarray:
    """NVIDIA's conversion: ``(img * 127.5 + 128).clamp(0, 255).to(torch.uint8)``, as [N, H, W, C]."""
    x = (torch.from_numpy(img) * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    return x.permute(0, 2, 3, 1).numpy()


@pytest.mark.parametrize("name", SG2_FIXTURES)
def test_generate_on_a_pickle_writes_nvidias_images(name, tmp_path):
    path, ref = fixture(name), reference(name)
    expected = _nvidia_uint8(ref["img_psi07"])
    conditional = ref["c"].size > 0
    # Seed i with class i (for the conditional file), as the README's gen_images.py command.
    runs = [(str(i), ["--class", str(i)]) for i in range(4)] if conditional else [("0-3", [])]
    for seeds, extra in runs:
        result = CliRunner().invoke(generate.main, [
            "--network", str(path), "--seeds", seeds, "--trunc", "0.7", "--noise-mode", "const",
            "--outdir", str(tmp_path), "--device", "cpu", *extra,
        ])
        assert result.exit_code == 0, result.output
        assert result.stderr.count("NVIDIA StyleGAN2 pickle read without running its code") == 1
    for i in range(4):
        ours = np.asarray(Image.open(tmp_path / f"seed{i:04d}.png"))
        ours = ours.reshape(expected[i].shape)
        diff = np.abs(ours.astype(int) - expected[i].astype(int))
        assert diff.max() <= 1, (i, diff.max())
        assert (diff == 0).mean() > 0.99  # same quantisation; a pixel within ~1e-6 of a level boundary may differ


def test_the_other_tools_take_a_pickle(tmp_path):
    path = fixture("sg2-uncond-rgba16-resnetG")
    common = ["--network", str(path), "--device", "cpu"]
    mix = CliRunner().invoke(style_mixing.main, [*common, "--rows", "0-1", "--cols", "2-3", "--out", str(tmp_path / "m.png")])
    assert mix.exit_code == 0 and (tmp_path / "m.png").is_file(), mix.output
    vid = CliRunner().invoke(video.main, [*common, "--seeds", "0-1", "--frames", "2", "--out", str(tmp_path / "v.gif")])
    assert vid.exit_code == 0 and (tmp_path / "v.gif").is_file(), vid.output
    met = CliRunner().invoke(metrics.main, ["--network", str(path), "--device", "cpu", "--metrics", "is50k",
                                            "--num-gen", "10", "--features", "random", "--batch", "4"])
    assert met.exit_code == 0, met.output
    for result in (mix, vid, met):
        assert result.stderr.count("converted in memory") == 1, result.stderr


def test_load_generator_uses_g_ema_of_a_pickle():
    path, ref = fixture("sg2-uncond-gray64-fp16"), reference("sg2-uncond-gray64-fp16")
    lines: list[str] = []
    G = genlib.load_generator(path, log=lines.append)
    assert len(lines) == 1 and str(path) in lines[0]
    images = genlib.generate(G, [0, 1, 2, 3], truncation_psi=0.7, noise_mode="const", batch_size=3)
    torch.testing.assert_close(images, torch.from_numpy(ref["img_psi07"]), atol=TOL, rtol=0)


def test_init_from_a_pickle_copies_nvidias_weights():
    """``train.py --init NET.pkl`` at the init_from level (the CLI: tests/test_train_init.py)."""
    path, ref = fixture("sg2-cond-rgb32"), reference("sg2-cond-rgb32")
    config = network_config_from_file(path)
    assert config == stylegan.read_nvidia_pickle(path).config and config.preset == "nvidia"
    # Conditional and no preset of ours: only the width, which decides the tensors' shapes.
    # ADA's augment_pipe p too, where the pickle kept one: an --aug ada run starts there.
    raw_p = float(safe_loads(path.read_bytes())["augment_pipe"].state["_buffers"]["p"])
    assert options_from_file(path) == {"cbase": 1024, "cmax": 64, "map": 2, "mbstd_group": 4,
                                       "p": pytest.approx(raw_p)}
    other = options_from_file(fixture("sg2-uncond-rgba16-resnetG"))
    other_p = stylegan.read_nvidia_pickle(fixture("sg2-uncond-rgba16-resnetG")).augment_p
    assert other == {"cond": False, "cbase": 512, "cmax": 32, "map": 1, "mbstd_group": 4,
                     **({"p": pytest.approx(other_p)} if other_p is not None else {})}
    # A run of another network is refused with the fields that differ.
    G_tiny, _ = stylegan.build("tiny", 32, 3, 10)
    with pytest.raises(ValueError, match="preset: file 'nvidia', this run 'tiny'"):
        plan_init(path, G_tiny.config)
    # A run that builds the file's network starts from its weights.
    G, D = stylegan.build_from_config(config)
    session = SimpleNamespace(G=G, D=D, G_ema=stylegan.Generator(config), schedule=GrowthSchedule.fixed(32, 4),
                              progress=Progress())
    session.set_growth = lambda res, alpha: [m.set_growth(res, alpha) for m in (session.G, session.D, session.G_ema)]
    plan = plan_init(path, config)
    raw_p = float(safe_loads(path.read_bytes())["augment_pipe"].state["_buffers"]["p"])
    assert plan.sources == {"G": "G", "G_ema": "G_ema", "D": "D"} and plan.augment_p == pytest.approx(raw_p)
    lines = apply_init(session, plan)
    assert "converted in memory" in lines[0] and lines[1].startswith(f"initialised from {path}")
    _check_outputs(session.G_ema.eval(), session.D.eval(), ref)
