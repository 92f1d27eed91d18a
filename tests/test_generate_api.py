"""tools/genlib.py and tools/imagefiles.py: seeds, per-seed randomness, truncation, labels, uint8."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from generate_helpers import RESOLUTION, make_generator, make_network_file
from tools import genlib
from tools.genlib import ArgumentError
from tools.imagefiles import make_grid, save_image, to_uint8

# Float results of one seed in different batch sizes agree to rounding: BLAS kernels sum in a
# shape-dependent order (measured ~1e-5 on this CPU). A per-seed bug would differ by O(1).
FLOAT_TOL = 1e-4


@pytest.fixture(scope="module")
def G():
    return make_generator()[0]


@pytest.fixture(scope="module")
def G_cond():
    return make_generator(c_dim=3)[0]


# ----- seeds -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("0", [0]),
        ("0-3", [0, 1, 2, 3]),
        ("0-2,7,10-11", [0, 1, 2, 7, 10, 11]),
        (" 5 - 6 , 9 ", [5, 6, 9]),
        ("7-7", [7]),
        ("9,3,1", [9, 3, 1]),  # order is kept
        ("4294967295", [2**32 - 1]),
    ],
)
def test_parse_seeds(text, expected):
    assert genlib.parse_seeds(text) == expected


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("", "empty"),
        ("   ", "empty"),
        ("a", "'a'"),
        ("1,,2", "''"),
        ("1,", "''"),
        ("-1", "'-1'"),
        ("1-", "'1-'"),
        ("1-2-3", "'1-2-3'"),
        ("1.5", "'1.5'"),
        ("5-3", "backwards"),
        ("0-3,2", "more than once"),
        ("4294967296", "out of range"),
        ("0-2000000", "more than"),
    ],
)
def test_parse_seeds_rejects(text, fragment):
    with pytest.raises(ArgumentError, match="seeds") as info:
        genlib.parse_seeds(text)
    assert info.value.arg == "seeds"
    assert fragment in info.value.reason


# ----- per-seed randomness -----------------------------------------------------------------------------


def test_latents_depend_only_on_their_seed():
    z_all = genlib.latents([3, 5, 8], 64)
    assert torch.equal(z_all[1], genlib.latents([5], 64)[0])
    assert torch.equal(z_all[2], genlib.latents([8, 3], 64)[0])
    assert not torch.equal(z_all[0], z_all[1])


def test_latent_is_nvidias_draw_for_the_seed():
    # NVIDIA's generate.py / gen_images.py: z = np.random.RandomState(seed).randn(1, z_dim).
    for seed in (0, 7, 2**32 - 1):
        expected = np.random.RandomState(seed).randn(1, 16)[0].astype(np.float32)
        assert np.array_equal(genlib.seed_latent(seed, 16).numpy(), expected)
    assert genlib.seed_latent(7, 16).dtype == torch.float32
    with pytest.raises(ArgumentError, match="seeds"):
        genlib.seed_latent(2**32, 16)


def test_noise_generator_is_per_seed_and_not_the_latents_stream():
    a, b = genlib.noise_generator(7), genlib.noise_generator(7)
    assert torch.equal(torch.randn(5, generator=a), torch.randn(5, generator=b))
    assert not torch.equal(torch.randn(5, generator=genlib.noise_generator(8)), torch.randn(5, generator=a))
    # torch.Generator().manual_seed(7) has the Mersenne Twister state of RandomState(7): the noise
    # generator must not start from it, or the noise would reuse the latent's random bits.
    same_state = torch.Generator().manual_seed(7)
    assert not torch.equal(genlib.noise_generator(7).get_state(), same_state.get_state())


@pytest.mark.parametrize("noise_mode", ["const", "random", "none"])
def test_batch_size_invariance(G, noise_mode):
    seeds = [4, 0, 11, 7, 2]
    full = genlib.generate(G, seeds, noise_mode=noise_mode, batch_size=len(seeds))
    assert full.shape == (5, 3, RESOLUTION, RESOLUTION)
    for batch in (1, 2, 3):
        torch.testing.assert_close(genlib.generate(G, seeds, noise_mode=noise_mode, batch_size=batch), full, atol=FLOAT_TOL, rtol=0)
    # Order and company do not matter either: seed 11 alone is seed 11 within the batch.
    torch.testing.assert_close(genlib.generate(G, [11], noise_mode=noise_mode), full[2:3], atol=FLOAT_TOL, rtol=0)
    # The seeds make different images (the test above is not comparing constants).
    assert (full[0] - full[1]).abs().max() > 0.1


def test_random_noise_is_per_seed_and_used(G):
    a = genlib.generate(G, [3], noise_mode="random")
    b = genlib.generate(G, [3], noise_mode="random")
    const = genlib.generate(G, [3], noise_mode="const")
    none = genlib.generate(G, [3], noise_mode="none")
    assert torch.equal(a, b)  # reproducible, not from global RNG
    assert (a - const).abs().max() > 1e-3 and (a - none).abs().max() > 1e-3
    torch.manual_seed(123)  # the global RNG has no say
    torch.testing.assert_close(genlib.generate(G, [3], noise_mode="random"), a, atol=0, rtol=0)


# ----- truncation --------------------------------------------------------------------------------------


def test_truncation_zero_gives_the_mean_image(G):
    seeds = [0, 1, 2, 3]
    images = genlib.generate(G, seeds, truncation_psi=0.0)
    for i in range(1, len(seeds)):
        torch.testing.assert_close(images[i], images[0], atol=FLOAT_TOL, rtol=0)
    ws = genlib.map_seeds(G, seeds, truncation_psi=0.0)
    assert torch.equal(ws, G.mapping.w_avg.expand_as(ws))
    # Without truncation the seeds differ, so the equality above is the truncation's doing.
    free = genlib.generate(G, seeds, truncation_psi=1.0)
    assert (free[0] - free[1]).abs().max() > 0.1


def test_truncation_cutoff_touches_only_the_first_layers(G):
    seeds = [5, 6, 7]
    free = genlib.map_seeds(G, seeds)
    k = 2
    cut = genlib.map_seeds(G, seeds, truncation_psi=0.0, truncation_cutoff=k)
    assert torch.equal(cut[:, :k], G.mapping.w_avg.expand(3, k, -1))
    assert torch.equal(cut[:, k:], free[:, k:])
    half = genlib.map_seeds(G, seeds, truncation_psi=0.5, truncation_cutoff=k)
    torch.testing.assert_close(half[:, :k], G.mapping.w_avg + 0.5 * (free[:, :k] - G.mapping.w_avg))
    # Cutoff at every layer is plain truncation; cutoff 0 truncates nothing.
    img_all = genlib.generate(G, seeds, truncation_psi=0.5, truncation_cutoff=G.num_ws)
    torch.testing.assert_close(img_all, genlib.generate(G, seeds, truncation_psi=0.5), atol=0, rtol=0)
    img_none = genlib.generate(G, seeds, truncation_psi=0.5, truncation_cutoff=0)
    torch.testing.assert_close(img_none, genlib.generate(G, seeds), atol=0, rtol=0)
    img_k = genlib.generate(G, seeds, truncation_psi=0.0, truncation_cutoff=k)
    assert (img_k - genlib.generate(G, seeds)).abs().max() > 1e-3


@pytest.mark.parametrize("cutoff", [-1, 7, 100])
def test_truncation_cutoff_out_of_range(G, cutoff):
    assert G.num_ws == 6
    with pytest.raises(ArgumentError, match=r"\[0, 6\]") as info:
        genlib.generate(G, [0], truncation_psi=0.5, truncation_cutoff=cutoff)
    assert info.value.arg == "truncation_cutoff"


@pytest.mark.parametrize("psi", [float("nan"), float("inf")])
def test_truncation_psi_must_be_finite(G, psi):
    with pytest.raises(ArgumentError) as info:
        genlib.generate(G, [0], truncation_psi=psi)
    assert info.value.arg == "truncation_psi"


# ----- labels ------------------------------------------------------------------------------------------


def test_conditional_labels(G_cond):
    c = genlib.make_labels(G_cond, 2, 4)
    assert torch.equal(c, torch.tensor([[0.0, 0, 1]] * 4))
    assert torch.equal(genlib.make_labels(G_cond, [0, 2], 2), torch.tensor([[1.0, 0, 0], [0, 0, 1]]))
    img0 = genlib.generate(G_cond, [1, 2], class_idx=0)
    img2 = genlib.generate(G_cond, [1, 2], class_idx=2)
    assert (img0 - img2).abs().max() > 1e-3  # the class changes the image
    mixed = genlib.generate(G_cond, [1, 2], class_idx=[0, 2])
    torch.testing.assert_close(mixed[0], img0[0], atol=FLOAT_TOL, rtol=0)
    torch.testing.assert_close(mixed[1], img2[1], atol=FLOAT_TOL, rtol=0)


@pytest.mark.parametrize("class_idx, fragment", [(3, "out of range"), (-1, "out of range"), ([0], "2 images")])
def test_conditional_label_errors(G_cond, class_idx, fragment):
    with pytest.raises(ArgumentError, match=fragment) as info:
        genlib.generate(G_cond, [0, 1], class_idx=class_idx)
    assert info.value.arg == "class_idx"


def test_latents_without_seeds_need_a_class(G_cond):
    # map_latents has no seeds to take a class from: a conditional network still needs one there.
    with pytest.raises(ArgumentError, match="required") as info:
        genlib.map_latents(G_cond, torch.zeros(2, G_cond.z_dim))
    assert info.value.arg == "class_idx"


def test_unconditional_refuses_a_class(G):
    with pytest.raises(ArgumentError, match="unconditional") as info:
        genlib.generate(G, [0], class_idx=0)
    assert info.value.arg == "class_idx"


# ----- loading -----------------------------------------------------------------------------------------


def test_load_generator_prefers_g_ema(tmp_path):
    with_ema = make_network_file(tmp_path / "a.safetensors")
    without = make_network_file(tmp_path / "b.safetensors", with_ema=False)
    G_ema_ref, G_ref = make_generator(seed=100)[0], make_generator(seed=0)[0]
    img_ema = genlib.generate(genlib.load_generator(with_ema), [1])
    img_g = genlib.generate(genlib.load_generator(without), [1])
    torch.testing.assert_close(img_ema, genlib.generate(G_ema_ref, [1]), atol=0, rtol=0)
    torch.testing.assert_close(img_g, genlib.generate(G_ref, [1]), atol=0, rtol=0)
    assert (img_ema - img_g).abs().max() > 1e-3


def test_load_generator_errors(tmp_path):
    with pytest.raises(ArgumentError, match="does not exist") as info:
        genlib.load_generator(tmp_path / "missing.safetensors")
    assert info.value.arg == "network"
    junk = tmp_path / "junk.safetensors"
    junk.write_text("not a network\n")
    with pytest.raises(ArgumentError, match="junk.safetensors") as info:
        genlib.load_generator(junk)
    assert info.value.arg == "network" and "\n" not in info.value.reason


# ----- uint8 and files ---------------------------------------------------------------------------------


def test_to_uint8_maps_range_and_clips():
    x = torch.tensor([-2.0, -1.0, 0.0, 1.0, 3.0]).reshape(1, 1, 1, 5)
    assert to_uint8(x).reshape(-1).tolist() == [0, 0, 128, 255, 255]
    assert to_uint8(torch.zeros(2, 3, 4, 5)).shape == (2, 4, 5, 3)


def test_make_grid_layout():
    images = np.stack([np.full((2, 3, 1), i + 1, np.uint8) for i in range(5)])
    grid = make_grid(images)  # 3 columns, 2 rows
    assert grid.shape == (4, 9, 1)
    assert grid[0, 0, 0] == 1 and grid[0, 3, 0] == 2 and grid[2, 0, 0] == 4 and grid[2, 6, 0] == 0
    assert make_grid(images, cols=5).shape == (2, 15, 1)


def test_save_image_refuses_what_the_format_cannot_store(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    with pytest.raises(ValueError, match="4 channels"):
        save_image(rgba, tmp_path / "x.jpg")
    assert not list(tmp_path.iterdir())  # nothing half-written
    save_image(rgba, tmp_path / "x.png")
    assert [p.name for p in tmp_path.iterdir()] == ["x.png"]


def test_network_saved_mid_growth_generates_at_its_stage(tmp_path):
    """A snapshot taken during progressive growing renders at the stage it was saved in."""
    import stylegan

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        G, D = stylegan.build("tiny", resolution=RESOLUTION, growth="progressive")
    G.set_growth(8, 0.5)
    D.set_growth(8, 0.5)
    path = tmp_path / "growing.safetensors"
    stylegan.save_network(path, {"G": G, "D": D}, G.config)
    images = genlib.generate(genlib.load_generator(path), [0, 1])
    assert images.shape == (2, 3, 8, 8)
    assert to_uint8(images).shape == (2, 8, 8, 3)
