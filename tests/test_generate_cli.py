"""tools/generate.py through click's runner: files, formats, grid, progress, and every error case."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from safetensors.torch import save_file
import torch

from generate_helpers import RESOLUTION, make_network_file
from tools import genlib
from tools.generate import main
from tools.imagefiles import to_uint8


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("nets")
    return {
        "rgb": make_network_file(root / "rgb.safetensors"),
        "gray": make_network_file(root / "gray.safetensors", img_channels=1),
        "rgba": make_network_file(root / "rgba.safetensors", img_channels=4),
        "cond": make_network_file(root / "cond.safetensors", c_dim=3),
    }


def run(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=True)


def read(path) -> np.ndarray:
    with Image.open(path) as im:
        im.load()
        arr = np.asarray(im)
    return arr[:, :, None] if arr.ndim == 2 else arr


@pytest.mark.parametrize("kind, mode, channels", [("rgb", "RGB", 3), ("gray", "L", 1), ("rgba", "RGBA", 4)])
def test_writes_one_uint8_file_per_seed(files, tmp_path, kind, mode, channels):
    out = tmp_path / "out"
    result = run("--network", files[kind], "--seeds", "3,5-6", "--outdir", out, "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["seed0003.png", "seed0005.png", "seed0006.png"]
    G = genlib.load_generator(files[kind])
    expected = to_uint8(genlib.generate(G, [3, 5, 6]))
    for i, seed in enumerate([3, 5, 6]):
        with Image.open(out / f"seed{seed:04d}.png") as im:
            assert im.mode == mode and im.size == (RESOLUTION, RESOLUTION)
        arr = read(out / f"seed{seed:04d}.png")
        assert arr.dtype == np.uint8 and arr.shape == (RESOLUTION, RESOLUTION, channels)
        assert np.array_equal(arr, expected[i])  # same batch as the CLI's: identical
    assert result.stdout.strip().splitlines()[-1] == f"Wrote 3 images to {out}"


def test_batch_size_does_not_change_the_files(files, tmp_path):
    for batch in (1, 4):
        result = run("--network", files["rgb"], "--seeds", "0-6", "--outdir", tmp_path / f"b{batch}", "--batch", batch,
                     "--noise-mode", "random")
        assert result.exit_code == 0, result.output
    for seed in range(7):
        a = read(tmp_path / "b1" / f"seed{seed:04d}.png").astype(int)
        b = read(tmp_path / "b4" / f"seed{seed:04d}.png").astype(int)
        # Identical up to a rare +-1 where float rounding of different batch shapes straddles a level.
        assert np.abs(a - b).max() <= 1 and (a != b).mean() < 1e-2
    assert not np.array_equal(read(tmp_path / "b1" / "seed0000.png"), read(tmp_path / "b1" / "seed0001.png"))


def test_grid_and_jpg(files, tmp_path):
    result = run("--network", files["gray"], "--seeds", "0-4", "--outdir", tmp_path, "--grid", "--format", "jpg")
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["grid.jpg"] + [f"seed{s:04d}.jpg" for s in range(5)]
    with Image.open(tmp_path / "grid.jpg") as im:
        assert im.format == "JPEG" and im.mode == "L" and im.size == (3 * RESOLUTION, 2 * RESOLUTION)
    assert "grid" in result.stdout.strip().splitlines()[-1]


def test_conditional_class(files, tmp_path):
    a = run("--network", files["cond"], "--seeds", "1", "--outdir", tmp_path / "a", "--class", 0)
    b = run("--network", files["cond"], "--seeds", "1", "--outdir", tmp_path / "b", "--class", 2)
    assert a.exit_code == 0 and b.exit_code == 0, a.output + b.output
    assert not np.array_equal(read(tmp_path / "a" / "seed0001.png"), read(tmp_path / "b" / "seed0001.png"))


def test_progress_bar_only_for_many_images(files, tmp_path):
    many = run("--network", files["rgb"], "--seeds", "0-9", "--outdir", tmp_path / "many")
    few = run("--network", files["rgb"], "--seeds", "0-1", "--outdir", tmp_path / "few")
    assert many.exit_code == 0 and few.exit_code == 0
    assert "/10 [" in many.stderr  # the bar was drawn (how far depends on tqdm's refresh interval)
    assert "[" not in few.stderr
    assert many.stdout.strip().splitlines()[-1] == f"Wrote 10 images to {tmp_path / 'many'}"


def _not_a_network(tmp_path):
    path = tmp_path / "plain.safetensors"  # a valid safetensors file without our metadata
    save_file({"x": torch.zeros(2)}, str(path))
    return path


def _text_file(tmp_path):
    path = tmp_path / "notes.safetensors"
    path.write_text("hello\n")
    return path


@pytest.mark.parametrize(
    "case, option, fragment",
    [
        ("missing file", "--network", "does not exist"),
        ("text file", "--network", "notes.safetensors"),
        ("safetensors without network", "--network", "not a network file"),
        ("bad seeds", "--seeds", "'x'"),
        ("backwards seeds", "--seeds", "backwards"),
        ("class out of range", "--class", "out of range"),
        ("class on unconditional", "--class", "unconditional"),
        ("cutoff beyond layers", "--truncation-cutoff", "6 layers"),
        ("negative cutoff", "--truncation-cutoff", "-1"),
        ("nan truncation", "--truncation", "finite"),
        ("rgba as jpg", "--format", "4-channel"),
        ("cuda without cuda", "--device", "CUDA"),
    ],
)
def test_errors_name_the_option_without_traceback(files, tmp_path, case, option, fragment):
    net, seeds, extra = files["rgb"], "0-2", []
    if case == "missing file":
        net = tmp_path / "nope.safetensors"
    elif case == "text file":
        net = _text_file(tmp_path)
    elif case == "safetensors without network":
        net = _not_a_network(tmp_path)
    elif case == "bad seeds":
        seeds = "0-3,x"
    elif case == "backwards seeds":
        seeds = "9-2"
    elif case == "class out of range":
        net, extra = files["cond"], ["--class", "3"]
    elif case == "class on unconditional":
        extra = ["--class", "0"]
    elif case == "cutoff beyond layers":
        extra = ["--truncation", "0.5", "--truncation-cutoff", "7"]
    elif case == "negative cutoff":
        extra = ["--truncation-cutoff", "-1"]
    elif case == "nan truncation":
        extra = ["--truncation", "nan"]
    elif case == "rgba as jpg":
        net, extra = files["rgba"], ["--format", "jpg"]
    elif case == "cuda without cuda":
        if torch.cuda.is_available():
            pytest.skip("CUDA is available here")
        extra = ["--device", "cuda"]
    out = tmp_path / "out"
    result = run("--network", net, "--seeds", seeds, "--outdir", out, *extra)
    assert result.exit_code != 0
    assert isinstance(result.exception, SystemExit), repr(result.exception)  # a click exit, not a crash
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.output
    assert option in errors[0] and fragment in errors[0], errors[0]
    assert not out.exists() or not any(out.iterdir())  # nothing written


def test_help_lists_every_option():
    result = run("--help")
    assert result.exit_code == 0
    for option in ("--network", "--seeds", "--truncation", "--truncation-cutoff", "--class", "--noise-mode",
                   "--outdir", "--batch", "--device", "--grid", "--format"):
        assert option in result.output
