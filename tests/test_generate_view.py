"""StyleGAN3's view in the generation tools: ``generate.py --translate/--rotate`` and ``video.py
--translate/--rotate/--pan/--spin`` (tools/genlib.py ``set_view``, tools/latent_walks.py ``Motion``).

The property tests use small random StyleGAN3 networks (no fixtures needed): a translation by whole
pixels shifts the image (config-T, away from the borders), a 90-degree turn of config-R turns it,
and the zero view is the plain render bit for bit.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import stylegan
from stylegan.config import NetworkConfig
from tools import generate, genlib, video
from tools.latent_walks import Motion, iter_video_frames

RES = 16


def _sg3(conv_kernel: int = 3, radial: bool = False, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    config = NetworkConfig(family="stylegan3", resolution=RES, img_channels=3, z_dim=8, w_dim=8, mapping_layers=1,
                           channel_base=512, channel_max=32, conv_kernel=conv_kernel, use_radial_filters=radial)
    return stylegan.build_from_config(config)[0].eval()


@pytest.fixture(scope="module")
def sg3_t():
    return _sg3()


@pytest.fixture(scope="module")
def sg3_file(tmp_path_factory, sg3_t):
    path = tmp_path_factory.mktemp("sg3") / "sg3.safetensors"
    stylegan.save_network(path, {"G_ema": sg3_t}, sg3_t.config)
    return path


def _render(G, ws, translate=None, rotate=None):
    with torch.no_grad():
        if translate is None and rotate is None:
            return G.synthesis(ws)
        with genlib.view(G, translate or (0.0, 0.0), rotate or 0.0):
            return G.synthesis(ws)


def test_a_whole_pixel_translation_shifts_the_image(sg3_t):
    """``translate = k / resolution`` moves the image k pixels (x right, y down). Every layer of this
    network samples at 16 per unit (32 inside the nonlinearity), so the shift is whole samples
    everywhere and the layers are shift-equivariant; what differs comes in from the borders (the 3x3 convolutions and filters
    see the feature maps' zero padding), halving about every pixel inwards. Measured 4 px from the
    overlap's borders on three random networks: at most 4.2e-3 (image spread ~0.25); the same
    comparison with the shift the wrong way round gives 0.12-0.36, so the 1e-2 bound has teeth."""
    ws = sg3_t.mapping(genlib.latents([0, 1], 8), None)
    base = _render(sg3_t, ws)
    m = 4
    for k in (1, 3):
        right = _render(sg3_t, ws, translate=(k / RES, 0.0))
        down = _render(sg3_t, ws, translate=(0.0, k / RES))
        err_x = (right[..., m:-m, k + m : -m] - base[..., m:-m, m : -k - m]).abs().max().item()
        err_y = (down[..., k + m : -m, m:-m] - base[..., m : -k - m, m:-m]).abs().max().item()
        wrong = (right[..., m:-m, m : -k - m] - base[..., m:-m, k + m : -m]).abs().max().item()
        assert err_x < 1e-2 and err_y < 1e-2 and wrong > 0.05, (k, err_x, err_y, wrong)


def test_a_quarter_turn_turns_a_config_r_image():
    """Config-R (1x1 convolutions, radial filters) is equivariant to 90-degree turns of its grid:
    ``--rotate 90`` is the plain image turned counter-clockwise (``rot90``), measured to 2.1e-6 of
    an image spread of ~0.9 away from the borders; config-T's 3x3 convolutions are not (error ~1)."""
    G = _sg3(conv_kernel=1, radial=True)
    ws = G.mapping(genlib.latents([0, 1], 8), None)
    base = _render(G, ws)
    inner = (..., slice(4, -4), slice(4, -4))
    for degrees, k in ((90, 1), (-90, -1)):
        turned = _render(G, ws, rotate=degrees)
        torch.testing.assert_close(turned[inner], torch.rot90(base, k, dims=(2, 3))[inner], atol=1e-4, rtol=0)


def test_the_zero_view_is_the_plain_render_and_view_restores_the_network(sg3_t):
    ws = sg3_t.mapping(genlib.latents([2], 8), None)
    before = sg3_t.synthesis.input.transform.clone()
    base = _render(sg3_t, ws)
    assert torch.equal(_render(sg3_t, ws, translate=(0.0, 0.0), rotate=0.0), base)
    with genlib.view(sg3_t, (0.1, 0.2), 30.0):
        assert not torch.equal(sg3_t.synthesis.input.transform, before)
    assert torch.equal(sg3_t.synthesis.input.transform, before)
    for translate, rotate in (((float("nan"), 0.0), 0.0), ((0.0, 0.0, 1.0), 0.0), ((0.0, 0.0), "x")):
        with pytest.raises(genlib.ArgumentError, match="expected two finite numbers and a finite angle"):
            genlib.set_view(sg3_t, translate, rotate)
    assert torch.equal(sg3_t.synthesis.input.transform, before)


def test_the_motion_of_a_video(sg3_t):
    """Frame k of n is at k/n of the pan and spin in a loop, k/(n-1) in an open walk; frame 0 of a
    pure pan or spin is the plain frame."""
    motion = Motion(translate=(0.1, 0.0), rotate=10.0, pan=(0.5, -0.25), spin=360.0)
    assert motion.at(0, 4, True) == ((0.1, 0.0), 10.0) and motion.at(2, 4, True) == ((0.35, -0.125), 190.0)
    assert motion.at(3, 4, False) == ((0.6, -0.25), 370.0)
    common = dict(frames_per_transition=2, loop=False)
    plain = list(iter_video_frames(sg3_t, [0, 1], **common))
    moving = list(iter_video_frames(sg3_t, [0, 1], motion=Motion(spin=90.0), **common))
    assert len(moving) == 3 and np.array_equal(moving[0], plain[0]) and not np.array_equal(moving[2], plain[2])
    ws = sg3_t.mapping(genlib.latents([1], 8), None)  # the last frame of an open walk: the last key
    from tools.imagefiles import to_uint8
    assert np.array_equal(moving[2], to_uint8(_render(sg3_t, ws, rotate=90.0))[0])


def test_generate_translate_and_rotate(sg3_file, sg3_t, tmp_path):
    result = CliRunner().invoke(generate.main, ["--network", str(sg3_file), "--seeds", "3", "--outdir",
                                                str(tmp_path), "--translate", "0.25,-0.125", "--rotate", "30",
                                                "--device", "cpu"])
    assert result.exit_code == 0, result.output
    from tools.imagefiles import to_uint8
    ws = sg3_t.mapping(genlib.latents([3], 8), None)
    expected = to_uint8(_render(sg3_t, ws, translate=(0.25, -0.125), rotate=30.0))[0]
    assert np.array_equal(np.asarray(Image.open(tmp_path / "seed0003.png")), expected)
    assert not np.array_equal(expected, to_uint8(_render(sg3_t, ws))[0])


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--translate", "1"], "Invalid value for '--translate': '1'; expected two finite numbers X,Y"),
        (["--translate", "a,b"], "Invalid value for '--translate': 'a,b'; expected two finite numbers X,Y"),
        (["--translate", "inf,0"], "Invalid value for '--translate': 'inf,0'; expected two finite numbers X,Y"),
        (["--rotate", "nan"], "Invalid value for '--rotate': nan; expected a finite number"),
    ],
)
def test_generate_refuses_bad_values(sg3_file, tmp_path, args, expected):
    result = CliRunner().invoke(generate.main, ["--network", str(sg3_file), "--seeds", "0", "--outdir",
                                                str(tmp_path / "out"), "--device", "cpu", *args])
    assert result.exit_code == 2 and expected in result.output, result.output
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def sg2_file(tmp_path_factory):
    G, _ = stylegan.build("tiny", 8, 1, 0)
    path = tmp_path_factory.mktemp("sg2") / "sg2.safetensors"
    stylegan.save_network(path, {"G": G}, G.config)
    return path


@pytest.mark.parametrize("tool, flag, value", [
    (generate, "--translate", "0.1,0"), (generate, "--rotate", "5"),
    (video, "--translate", "0.1,0"), (video, "--rotate", "5"), (video, "--pan", "0.5,0"), (video, "--spin", "360"),
])
def test_other_families_refuse_the_view_in_one_line(sg2_file, tmp_path, tool, flag, value):
    out = ["--outdir", str(tmp_path / "out")] if tool is generate else ["--out", str(tmp_path / "v.gif")]
    result = CliRunner().invoke(tool.main, ["--network", str(sg2_file), "--seeds", "0-1", "--device", "cpu", *out,
                                            flag, value])
    assert result.exit_code == 2, result.output
    line = f"Error: Invalid value for '{flag}': translation and rotation move StyleGAN3's input grid"
    assert line in result.output and "this is a 'stylegan2' network, which has none" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "out").exists() and not (tmp_path / "v.gif").exists()


def test_video_spins_a_stylegan3_walk(sg3_file, tmp_path):
    out = tmp_path / "v.gif"
    result = CliRunner().invoke(video.main, ["--network", str(sg3_file), "--seeds", "0-1", "--frames", "2",
                                             "--spin", "360", "--pan", "0.5,0", "--out", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "Wrote 4 frames (1x1 walks in w, view from translate 0,0 rotate 0 moving by 0.5,0 and 360 degrees" in (
        result.output)
    with Image.open(out) as gif:
        assert gif.n_frames == 4
