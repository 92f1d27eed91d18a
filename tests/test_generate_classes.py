"""Classes in the generation tools: the default for a conditional network without ``--class``
(seed N gets class N mod C; a grid has one row per class; a walk keeps its first seed's class), and
``--class`` by index or by the name stored in the network file or its run's config.json."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import stylegan
from generate_helpers import RESOLUTION as R
from generate_helpers import make_generator, make_network_file
from tools import generate, genlib, latent_walks, style_mixing, video
from tools.genlib import ArgumentError
from tools.imagefiles import to_uint8

C = 3  # classes of the conditional test network


@pytest.fixture(scope="module")
def G_cond():
    return make_generator(c_dim=C)[0]


@pytest.fixture(scope="module")
def cond_net(tmp_path_factory):
    return make_network_file(tmp_path_factory.mktemp("nets") / "cond.safetensors", c_dim=C)


def named_net(path, names):
    """A conditional network file whose metadata carries ``class_names``."""
    G, D = make_generator(c_dim=len(names))
    stylegan.save_network(path, {"G": G, "D": D}, G.config, metadata={"kimg": 0, "class_names": list(names)})
    return path


def read(path) -> np.ndarray:
    with Image.open(path) as im:
        arr = np.asarray(im)
    return arr[:, :, None] if arr.ndim == 2 else arr


def close_uint8(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal up to a rare +-1 level from float rounding in different batch shapes."""
    d = np.abs(a.astype(int) - b.astype(int))
    return d.max() <= 1 and (d > 0).mean() < 1e-2


def invoke(cmd, *args):
    return CliRunner().invoke(cmd.main, [str(a) for a in args], catch_exceptions=True)


# ----- the library: seed N gets class N mod C -----------------------------------------------------------


def test_seed_classes_are_seed_mod_c(G_cond):
    assert genlib.seed_classes(G_cond, [0, 1, 2, 3, 7]) == [0, 1, 2, 0, 1]
    assert genlib.seed_classes(make_generator()[0], [0, 5]) is None  # unconditional: no labels


def test_generate_without_a_class_uses_seed_mod_c_in_every_batch(G_cond):
    seeds = [0, 1, 2, 3, 5]
    default = genlib.generate(G_cond, seeds, batch_size=2)
    explicit = genlib.generate(G_cond, seeds, class_idx=[s % C for s in seeds], batch_size=2)
    assert torch.equal(default, explicit)
    alone = genlib.generate(G_cond, [5], batch_size=2)  # a seed's class does not depend on the list
    torch.testing.assert_close(alone[0], default[4], atol=1e-4, rtol=0)


def test_style_mixing_and_walks_default_to_the_seeds_classes(G_cond):
    figure = latent_walks.style_mixing_figure(G_cond, [0, 1], [4, 5])
    for k, seed in enumerate([4, 5]):  # the top row shows the column seeds as generate.py would
        expected = to_uint8(genlib.generate(G_cond, [seed], class_idx=seed % C))[0]
        assert close_uint8(figure[:R, (k + 1) * R : (k + 2) * R], expected)
    frame = next(latent_walks.iter_video_frames(G_cond, [4, 0, 2, 3], grid=(2, 1), frames_per_transition=2))
    for k, seed in enumerate([4, 2]):  # frame 0 of each walk: its first keyframe, in that seed's class
        expected = to_uint8(genlib.generate(G_cond, [seed], class_idx=seed % C))[0]
        assert close_uint8(frame[:, k * R : (k + 1) * R], expected)


# ----- --class: index or name ------------------------------------------------------------------------------


def test_parse_class_index_name_and_errors():
    names = ("cat", "dog", "fox")
    assert genlib.parse_class(None, 3, names) == (None, None)
    assert genlib.parse_class("2", 3, names) == (2, None)
    assert genlib.parse_class("dog", 3, names) == (1, None)
    assert genlib.parse_class(1, 3, None) == (1, None)
    with pytest.raises(ArgumentError, match="out of range"):
        genlib.parse_class("3", 3, names)
    with pytest.raises(ArgumentError, match="did you mean 'dog'") as info:
        genlib.parse_class("dgo", 3, names)
    assert info.value.arg == "class_idx"
    with pytest.raises(ArgumentError, match="no class names stored"):
        genlib.parse_class("dog", 3, None)
    with pytest.raises(ArgumentError, match="unconditional"):
        genlib.parse_class("0", 0, None)
    # A number is an index even when it is another class's name; the note says so.
    idx, note = genlib.parse_class("0", 3, ("2", "0", "1"))
    assert idx == 0 and "index 1" in note


def test_class_names_from_the_file_else_the_run(tmp_path):
    assert genlib.read_class_names(named_net(tmp_path / "a.safetensors", ["cat", "dog", "fox"]), 3) == ("cat", "dog", "fox")
    run = tmp_path / "run"
    run.mkdir()
    plain = make_network_file(run / "network-snapshot-000000.safetensors", c_dim=C)
    assert genlib.read_class_names(plain, C) is None
    (run / "config.json").write_text(json.dumps({"dataset": {"class_names": ["a", "b", "c"]}}))
    assert genlib.read_class_names(plain, C) == ("a", "b", "c")
    assert genlib.read_class_names(plain, 4) is None  # names that do not fit the network are ignored


# ----- the CLIs --------------------------------------------------------------------------------------------


def test_generate_without_class_cycles_and_grids_one_row_per_class(cond_net, tmp_path):
    result = invoke(generate, "--network", cond_net, "--seeds", "0-4", "--outdir", tmp_path / "a", "--grid")
    assert result.exit_code == 0, result.output
    assert f"seed N has class N mod {C}" in result.stdout and "one row per class" in result.stdout
    single = invoke(generate, "--network", cond_net, "--seeds", "4", "--outdir", tmp_path / "b", "--class", 4 % C)
    assert single.exit_code == 0, single.output
    assert close_uint8(read(tmp_path / "a" / "seed0004.png"), read(tmp_path / "b" / "seed0004.png"))
    grid = read(tmp_path / "a" / "grid.png")
    assert grid.shape[:2] == (C * R, 2 * R)  # classes 0,1,2,0,1: three rows of at most two
    tile = lambda r, c: grid[r * R : (r + 1) * R, c * R : (c + 1) * R]  # noqa: E731
    assert np.array_equal(tile(0, 1), read(tmp_path / "a" / "seed0003.png"))  # class 0: seeds 0 and 3
    assert np.array_equal(tile(1, 1), read(tmp_path / "a" / "seed0004.png"))  # class 1: seeds 1 and 4
    assert not tile(2, 1).any()  # class 2 has one seed: a blank cell


def test_generate_class_by_name(tmp_path):
    net = named_net(tmp_path / "named.safetensors", ["cat", "dog", "fox"])
    by_name = invoke(generate, "--network", net, "--seeds", "3", "--outdir", tmp_path / "n", "--class", "dog")
    by_index = invoke(generate, "--network", net, "--seeds", "3", "--outdir", tmp_path / "i", "--class", "1")
    assert by_name.exit_code == 0 and by_index.exit_code == 0, by_name.output + by_index.output
    assert np.array_equal(read(tmp_path / "n" / "seed0003.png"), read(tmp_path / "i" / "seed0003.png"))
    typo = invoke(generate, "--network", net, "--seeds", "3", "--outdir", tmp_path / "t", "--class", "dgo")
    assert typo.exit_code == 2 and "'--class'" in typo.output and "did you mean 'dog'" in typo.output
    assert "Traceback" not in typo.output


def test_generate_class_name_from_the_runs_config(tmp_path):
    run = tmp_path / "00000-run"
    run.mkdir()
    net = make_network_file(run / "network-snapshot-000000.safetensors", c_dim=C)
    (run / "config.json").write_text(json.dumps({"dataset": {"class_names": ["zero", "one", "two"]}}))
    result = invoke(generate, "--network", net, "--seeds", "1", "--outdir", tmp_path / "o", "--class", "two")
    assert result.exit_code == 0, result.output
    ref = invoke(generate, "--network", net, "--seeds", "1", "--outdir", tmp_path / "r", "--class", "2")
    assert ref.exit_code == 0, ref.output
    assert np.array_equal(read(tmp_path / "o" / "seed0001.png"), read(tmp_path / "r" / "seed0001.png"))


def test_style_mixing_and_video_need_no_class(cond_net, tmp_path):
    mixing = invoke(style_mixing, "--network", cond_net, "--rows", "0-1", "--cols", "2-3", "--out", tmp_path / "m.png")
    assert mixing.exit_code == 0, mixing.output
    assert f"seed N has class N mod {C}" in mixing.stdout
    walk = invoke(video, "--network", cond_net, "--seeds", "0-3", "--grid", "2x1", "--frames", "2",
                  "--out", tmp_path / "w.gif")
    assert walk.exit_code == 0, walk.output
    assert "first seed's class" in walk.stdout
    named = invoke(style_mixing, "--network", named_net(tmp_path / "n.safetensors", ["cat", "dog", "fox"]),
                   "--rows", "0", "--cols", "1", "--class", "fox", "--out", tmp_path / "f.png")
    assert named.exit_code == 0, named.output
