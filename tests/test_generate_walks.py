"""Style mixing and interpolation: the math, the figure layout, GIF sizes and frame counts, CLIs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from generate_helpers import RESOLUTION, make_generator, make_network_file
from tools import genlib, latent_walks, style_mixing, video
from tools.genlib import ArgumentError
from tools.imagefiles import to_uint8

R = RESOLUTION


@pytest.fixture(scope="module")
def G():
    return make_generator()[0]


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    return make_network_file(tmp_path_factory.mktemp("nets") / "net.safetensors")


def close_uint8(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal up to a rare +-1 level from float rounding in different batch shapes."""
    d = np.abs(a.astype(int) - b.astype(int))
    return d.max() <= 1 and (d > 0).mean() < 1e-2


# ----- style mixing ------------------------------------------------------------------------------------


def test_mix_styles_takes_exactly_the_chosen_layers():
    row = torch.arange(2 * 6 * 3, dtype=torch.float32).reshape(2, 6, 3)
    col = -torch.arange(3 * 6 * 3, dtype=torch.float32).reshape(3, 6, 3) - 1
    ws = latent_walks.mix_styles(row, col, [1, 4])
    assert ws.shape == (2, 3, 6, 3)
    for r in range(2):
        for c in range(3):
            for layer in range(6):
                src = col[c] if layer in (1, 4) else row[r]
                assert torch.equal(ws[r, c, layer], src[layer])
    with pytest.raises(ArgumentError, match="layers 0-5"):
        latent_walks.mix_styles(row, col, [6])


def test_default_mix_layers_are_the_fine_half():
    assert latent_walks.default_mix_layers(6) == [3, 4, 5]
    assert latent_walks.default_mix_layers(18) == list(range(9, 18))


def test_style_mixing_figure_layout(G):
    rows, cols = [1, 2], [7, 8, 9]
    fig = latent_walks.style_mixing_figure(G, rows, cols, layers=[4, 5])
    assert fig.shape == (3 * R, 4 * R, 3) and fig.dtype == np.uint8
    cell = lambda r, c: fig[r * R : (r + 1) * R, c * R : (c + 1) * R]  # noqa: E731
    assert not cell(0, 0).any()  # empty corner
    singles = to_uint8(genlib.generate(G, rows + cols))
    for j in range(3):
        assert close_uint8(cell(0, j + 1), singles[2 + j])  # header row: column seeds
    for i in range(2):
        assert close_uint8(cell(i + 1, 0), singles[i])  # header column: row seeds
    ws = latent_walks.mix_styles(genlib.map_seeds(G, rows), genlib.map_seeds(G, cols), [4, 5])
    expected = to_uint8(torch.cat(list(genlib.iter_synthesize(G, ws.flatten(0, 1)))))
    for i in range(2):
        for j in range(3):
            assert close_uint8(cell(i + 1, j + 1), expected[i * 3 + j])
    # Mixing changes the row seed's image, yet keeps it apart from the column seed's.
    assert not close_uint8(cell(1, 1), cell(1, 0)) and not close_uint8(cell(1, 1), cell(0, 1))


def test_style_mixing_all_layers_reproduces_the_columns(G):
    fig = latent_walks.style_mixing_figure(G, [1], [7], layers=range(G.num_ws))
    assert close_uint8(fig[R:, R:], fig[:R, R:])


def test_style_mixing_cli(net, tmp_path):
    out = tmp_path / "mix.png"
    result = CliRunner().invoke(style_mixing.main, ["--network", str(net), "--rows", "0-2", "--cols", "10-13", "--out", str(out)])
    assert result.exit_code == 0, result.output
    with Image.open(out) as im:
        assert im.size == (5 * R, 4 * R) and im.mode == "RGB"
    assert str(out) in result.stdout.strip().splitlines()[-1]
    bad = CliRunner().invoke(style_mixing.main, ["--network", str(net), "--rows", "0", "--cols", "1", "--layers", "2-9",
                                                 "--out", str(tmp_path / "bad.png")])
    assert bad.exit_code != 0 and isinstance(bad.exception, SystemExit)
    assert "--layers" in bad.output and "0-5" in bad.output and "Traceback" not in bad.output


# ----- interpolation -----------------------------------------------------------------------------------


def test_lerp_and_slerp_endpoints():
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(4, 64, generator=gen), torch.randn(4, 64, generator=gen)
    for f in (latent_walks.lerp, latent_walks.slerp):
        torch.testing.assert_close(f(a, b, torch.zeros(4)), a)
        torch.testing.assert_close(f(a, b, torch.ones(4)), b)
    # Between two vectors of equal norm, slerp stays on their sphere; lerp cuts inside it.
    b_eq = b / b.norm(dim=1, keepdim=True) * a.norm(dim=1, keepdim=True)
    half = torch.full((4,), 0.5)
    torch.testing.assert_close(latent_walks.slerp(a, b_eq, half).norm(dim=1), a.norm(dim=1))
    assert (latent_walks.lerp(a, b_eq, half).norm(dim=1) < 0.9 * a.norm(dim=1)).all()
    torch.testing.assert_close(latent_walks.slerp(a, a, half), a)  # parallel: no division by zero


def test_walk_positions():
    loop = latent_walks.walk_positions(3, 4, loop=True)
    assert len(loop) == 12 and loop[0] == (0, 1, 0.0) and loop[-1] == (2, 0, 0.75)
    open_walk = latent_walks.walk_positions(3, 4, loop=False)
    assert len(open_walk) == 9 and open_walk[-1] == (2, 2, 0.0) and open_walk[4] == (1, 2, 0.0)
    with pytest.raises(ArgumentError):
        latent_walks.walk_positions(1, 4, loop=True)


@pytest.mark.parametrize("space", ["w", "z"])
def test_video_frames_start_on_the_seeds(G, space):
    frames = list(latent_walks.iter_video_frames(G, [3, 4, 5, 6], grid=(2, 1), space=space, frames_per_transition=3,
                                                 loop=False, batch_size=4))
    assert len(frames) == latent_walks.num_video_frames(4, 2, 3, loop=False) == 4
    assert frames[0].shape == (R, 2 * R, 3)
    seeds_img = to_uint8(genlib.generate(G, [3, 5, 4, 6]))  # cell 0 walks 3 -> 4, cell 1 walks 5 -> 6
    assert close_uint8(frames[0][:, :R], seeds_img[0]) and close_uint8(frames[0][:, R:], seeds_img[1])
    assert close_uint8(frames[-1][:, :R], seeds_img[2]) and close_uint8(frames[-1][:, R:], seeds_img[3])
    assert not close_uint8(frames[1], frames[0])


def test_w_and_z_walks_differ_in_between(G):
    kw = dict(grid=(1, 1), frames_per_transition=2, loop=False)
    mid_w = list(latent_walks.iter_video_frames(G, [3, 4], space="w", **kw))[1]
    mid_z = list(latent_walks.iter_video_frames(G, [3, 4], space="z", **kw))[1]
    assert not close_uint8(mid_w, mid_z)


@pytest.mark.parametrize(
    "args, size, n_frames",
    [
        (["--seeds", "0-2", "--frames", "4"], (R, R), 12),
        (["--seeds", "0-2", "--frames", "4", "--no-loop"], (R, R), 9),
        (["--seeds", "0-7", "--grid", "2x2", "--frames", "3", "--space", "z"], (2 * R, 2 * R), 6),
        (["--seeds", "0-5", "--grid", "3x1", "--frames", "2", "--fps", "10"], (3 * R, R), 4),
    ],
)
def test_video_cli_gif(net, tmp_path, args, size, n_frames):
    out = tmp_path / "walk.gif"
    result = CliRunner().invoke(video.main, ["--network", str(net), "--out", str(out), *args])
    assert result.exit_code == 0, result.output
    with Image.open(out) as im:
        assert im.format == "GIF" and im.size == size and im.n_frames == n_frames
        if "--fps" in args:
            assert im.info["duration"] == 100
    assert f"Wrote {n_frames} frames" in result.stdout


@pytest.mark.parametrize(
    "args, option, fragment",
    [
        (["--seeds", "0-2", "--grid", "2x1"], "--seeds", "multiple of 2"),
        (["--seeds", "0-1", "--grid", "2x1"], "--seeds", "at least 2"),
        (["--seeds", "0-3", "--grid", "2by1"], "--grid", "COLSxROWS"),
        (["--seeds", "0-3", "--frames", "0"], "--frames", "0"),
        (["--seeds", "0-3", "--fps", "0"], "--fps", "0"),
    ],
)
def test_video_cli_errors(net, tmp_path, args, option, fragment):
    result = CliRunner().invoke(video.main, ["--network", str(net), "--out", str(tmp_path / "v.gif"), *args])
    assert result.exit_code != 0 and isinstance(result.exception, SystemExit)
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and option in errors[0] and fragment in errors[0], result.output
    assert not (tmp_path / "v.gif").exists()


def test_video_cli_wrong_suffix(net, tmp_path):
    result = CliRunner().invoke(video.main, ["--network", str(net), "--seeds", "0-1", "--out", str(tmp_path / "v.avi")])
    assert result.exit_code != 0 and "--out" in result.output and ".gif or .mp4" in result.output


def test_video_cli_mp4(net, tmp_path):
    out = tmp_path / "walk.mp4"
    result = CliRunner().invoke(video.main, ["--network", str(net), "--seeds", "0-1", "--frames", "5", "--out", str(out)])
    try:
        import imageio_ffmpeg
    except ImportError:
        # Without the optional package: one clear error that suggests GIF, and no file.
        assert result.exit_code != 0 and isinstance(result.exception, SystemExit)
        assert "imageio-ffmpeg" in result.output and ".gif" in result.output and "--out" in result.output
        assert not out.exists()
        return
    assert result.exit_code == 0, result.output
    reader = imageio_ffmpeg.read_frames(str(out))
    meta = next(reader)
    assert tuple(meta["size"]) == (R, R)
    assert sum(1 for _ in reader) == 10
