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
from nvidia_fixtures import SG2_FIXTURES, SG3_FIXTURES, fixture, reference
from stylegan.nvidia_pickle import module_record, our_key, stylegan3_layers
from stylegan.safe_unpickle import safe_loads
from tools import convert, generate, genlib, metrics, style_mixing, video
from training.init_from import apply_init, network_config_from_file, options_from_file, plan_init
from training.progressive import GrowthSchedule
from training.counters import Progress

TOL = 1e-4  # the README's tolerance; measured: StyleGAN2 images ~1e-5, StyleGAN3 ~1e-6, ws 0

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


# What each StyleGAN3 fixture is (the fixtures' README); G's channel schedule equals D's in all three.
EXPECTED_SG3 = {
    "sg3t-refuse": dict(
        family="stylegan3", preset="nvidia-stylegan3-t", conv_kernel=3, use_radial_filters=False, z_dim=16, w_dim=16,
        c_dim=0, resolution=16, img_channels=3, channel_base=512, channel_max=32, g_channel_base=None,
        g_channel_max=None, mapping_layers=1, num_fp16_res=4, conv_clamp=256.0,  # NVIDIA's defaults in its G
    ),
    "sg3-t-cond-rgb32": dict(
        family="stylegan3", preset="nvidia-stylegan3-t", conv_kernel=3, use_radial_filters=False, z_dim=32, w_dim=32,
        c_dim=10, resolution=32, img_channels=3, channel_base=2048, channel_max=64, g_channel_base=None,
        mapping_layers=2, magnitude_ema_beta=0.999, num_fp16_res=0, conv_clamp=None, w_avg_beta=0.998,
    ),
    "sg3-r-uncond-gray32": dict(
        family="stylegan3", preset="nvidia-stylegan3-r", conv_kernel=1, use_radial_filters=True, z_dim=32, w_dim=32,
        c_dim=0, resolution=32, img_channels=1, channel_base=4096, channel_max=128, g_channel_base=None,
        mapping_layers=2, num_fp16_res=0, conv_clamp=None, sg3_layers=14, sg3_critical_layers=2, margin_size=10,
    ),
}


def _check_outputs(G, D, ref: dict[str, np.ndarray]) -> None:
    """Every output the fixture's ``.npz`` holds (StyleGAN3's have no cutoff-2 entries; one has no logits)."""
    z = torch.from_numpy(ref["z"])
    c = torch.from_numpy(ref["c"]) if ref["c"].size else None
    close = lambda ours, key: torch.testing.assert_close(ours, torch.from_numpy(ref[key]), atol=TOL, rtol=0)  # noqa: E731
    run = dict(noise_mode="const", precision="fp32")
    with torch.no_grad():
        close(G.mapping(z, c), "ws")
        close(G.mapping(z, c, truncation_psi=0.7), "ws_psi07")
        close(G(z, c, **run), "img")
        close(G(z, c, truncation_psi=0.7, **run), "img_psi07")
        if "img_psi07_cutoff2" in ref:
            close(G.mapping(z, c, truncation_psi=0.7, truncation_cutoff=2), "ws_psi07_cutoff2")
            close(G(z, c, truncation_psi=0.7, truncation_cutoff=2, **run), "img_psi07_cutoff2")
        if "logits" in ref:
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


@pytest.mark.parametrize("name", SG3_FIXTURES)
def test_stylegan3_read_directly_and_converted_give_nvidias_outputs(name, tmp_path):
    path, ref = fixture(name), reference(name)
    net = stylegan.read_nvidia_pickle(path)
    assert list(net.modules) == ["G", "D", "G_ema"]
    for key, value in EXPECTED_SG3[name].items():
        assert getattr(net.config, key) == value, key
    # Every tensor NVIDIA stored is kept as it is (magnitude_ema, the input's transform, freqs and
    # phases, w_avg, ...), except the filters, which are rebuilt (and were checked equal to 1e-6).
    raw = safe_loads(path.read_bytes())
    for module in ("G", "G_ema"):
        rec = module_record(raw[module], module)
        index = {n: i for i, (n, _) in enumerate(stylegan3_layers(rec.child("synthesis")))}
        ours = net.modules[module].state_dict()
        kept = {our_key("generator", k, index): v for k, v in rec.flat_tensors().items()}
        assert None in kept and set(kept) - {None} == set(ours), module  # None: the filters
        assert all(torch.equal(ours[k], v) for k, v in kept.items() if k is not None), module
        for key in ("synthesis.input.transform", "synthesis.input.freqs", "synthesis.input.phases",
                    "synthesis.layers.3.magnitude_ema", "mapping.w_avg"):
            assert key in ours
    _check_outputs(net.modules["G_ema"], net.modules["D"], ref)

    dest = tmp_path / "net.safetensors"
    result = CliRunner().invoke(convert.main, ["--source", str(path), "--dest", str(dest)])
    assert result.exit_code == 0, result.output
    assert f"found G, D, G_ema: {net.family_name}, G 14 layers" in result.output
    loaded = stylegan.load_network(dest)
    for module in ("G", "D", "G_ema"):
        ours, theirs = loaded[module].state_dict(), net.modules[module].state_dict()
        assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours), module
    assert stylegan.read_network_info(dest).config == net.config
    # Same config and tensors, so the same network; one image shows it (config-R renders slowly on a CPU).
    z, c = torch.from_numpy(ref["z"][:1]), torch.from_numpy(ref["c"][:1]) if ref["c"].size else None
    with torch.no_grad():
        img = loaded["G_ema"](z, c, truncation_psi=0.7, precision="fp32")
    torch.testing.assert_close(img, torch.from_numpy(ref["img_psi07"][:1]), atol=TOL, rtol=0)


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


@pytest.mark.parametrize("name", SG2_FIXTURES + SG3_FIXTURES)
def test_generate_on_a_pickle_writes_nvidias_images(name, tmp_path):
    path, ref = fixture(name), reference(name)
    expected = _nvidia_uint8(ref["img_psi07"])
    family = "StyleGAN2" if name.startswith("sg2") else "StyleGAN3-R" if "-r-" in name else "StyleGAN3-T"
    conditional = ref["c"].size > 0
    # Seed i with class i (for the conditional file), as the README's gen_images.py command.
    runs = [(str(i), ["--class", str(i)]) for i in range(4)] if conditional else [("0-3", [])]
    for seeds, extra in runs:
        result = CliRunner().invoke(generate.main, [
            "--network", str(path), "--seeds", seeds, "--trunc", "0.7", "--noise-mode", "const",
            "--outdir", str(tmp_path), "--device", "cpu", *extra,
        ])
        assert result.exit_code == 0, result.output
        assert result.stderr.count(f"NVIDIA {family} pickle read without running its code") == 1
    for i in range(4):
        ours = np.asarray(Image.open(tmp_path / f"seed{i:04d}.png"))
        ours = ours.reshape(expected[i].shape)
        diff = np.abs(ours.astype(int) - expected[i].astype(int))
        assert diff.max() <= 1, (i, diff.max())
        assert (diff == 0).mean() > 0.99  # same quantisation; a pixel within ~1e-6 of a level boundary may differ


@pytest.mark.parametrize("name", ["sg2-uncond-rgba16-resnetG", "sg3t-refuse"])
def test_the_other_tools_take_a_pickle(name, tmp_path):
    path = fixture(name)
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


def test_init_from_a_stylegan3_pickle_copies_nvidias_weights():
    """``train.py --init NET.pkl`` for a StyleGAN3 snapshot, at the init_from level."""
    path, ref = fixture("sg3t-refuse"), reference("sg3t-refuse")
    net = stylegan.read_nvidia_pickle(path)
    config = network_config_from_file(path)
    assert config == net.config and config.preset == "nvidia-stylegan3-t"
    assert options_from_file(path) == {"cond": False, "cbase": 512, "cmax": 32, "map": 1, "mbstd_group": 4,
                                       "p": pytest.approx(net.augment_p)}
    G, D = stylegan.build_from_config(config)
    assert type(G).__name__ == "StyleGAN3Generator"
    session = SimpleNamespace(G=G, D=D, G_ema=stylegan.build_from_config(config)[0],
                              schedule=GrowthSchedule.fixed(16, 4), progress=Progress())
    session.set_growth = lambda res, alpha: [m.set_growth(res, alpha) for m in (session.G, session.D, session.G_ema)]
    plan = plan_init(path, config)
    assert plan.sources == {"G": "G", "G_ema": "G_ema", "D": "D"}
    lines = apply_init(session, plan)
    assert "NVIDIA StyleGAN3-T pickle" in lines[0] and lines[1].startswith(f"initialised from {path}")
    _check_outputs(session.G_ema.eval(), session.D.eval(), ref)
    # The run's float32 layout (no float16 layers, no clamp) takes the same weights.
    fp32 = config.replace(num_fp16_res=0, conv_clamp=None)
    assert plan_init(path, fp32).sources == plan.sources
