"""InfoGAN's codes (Chen et al. 2016): the code layout and sampling, the loss against its formula,
NetworkConfig's field, D's head Q, training with --info-codes (stats, exact resume), and the
tools (generate.py --code, video.py --sweep-code)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import stylegan
from stylegan.config import NetworkConfig
from stylegan.info_codes import (
    code_dim, code_slices, info_loss, parse_info_codes, sample_codes, set_codes, with_codes,
)
from stylegan.sampling import seed_latent
from test_train_loop import assert_same_state, read_stats, run_fit
from train_fixtures import make_dataset
from training.config import ConfigError, TrainConfig
from training.loss import sample_z

CODES = (("cat", 3), ("cont", 1), ("cont", 1))  # 'cat:3,cont:2'
RES = 16


# ----------------------------------------------------------------------------------------- layout and sampling
def test_parse_and_layout():
    assert parse_info_codes("cat:10,cont:2") == (("cat", 10), ("cont", 1), ("cont", 1))
    assert parse_info_codes(" cont , cat:2 ") == (("cont", 1), ("cat", 2))
    assert parse_info_codes("") == ()
    for bad in ("cat", "cat:1", "cat:1001", "cont:0", "disc:3", "cat:3;cont:1", "cont:17"):
        with pytest.raises(ValueError, match="cat:N|more than 16"):
            parse_info_codes(bad)
    assert code_dim(CODES) == 5
    assert code_slices(CODES, 8) == [slice(3, 6), slice(6, 7), slice(7, 8)]


def test_sampling_ranges_one_hot_and_reproducible():
    codes = sample_codes(CODES, 4000, torch.Generator().manual_seed(1))
    again = sample_codes(CODES, 4000, torch.Generator().manual_seed(1))
    assert torch.equal(codes, again) and codes.shape == (4000, 5)
    cat, cont = codes[:, :3], codes[:, 3:]
    assert torch.equal(cat.sum(dim=1), torch.ones(4000)) and set(cat.unique().tolist()) == {0.0, 1.0}
    freq = cat.mean(dim=0)
    assert torch.all((freq - 1 / 3).abs() < 0.03)  # uniform classes
    assert cont.min() >= -1 and cont.max() <= 1 and (cont.mean(dim=0).abs() < 0.05).all()
    assert torch.allclose(cont.var(dim=0), torch.full([2], 1 / 3), atol=0.03)  # Uniform(-1, 1): variance 1/3


def test_sample_z_puts_codes_last_and_is_unchanged_without_codes():
    z0 = sample_z(6, 8, torch.Generator().manual_seed(3), torch.device("cpu"))
    assert torch.equal(z0, torch.randn([6, 8], generator=torch.Generator().manual_seed(3)))
    z = sample_z(6, 8, torch.Generator().manual_seed(3), torch.device("cpu"), CODES)
    assert torch.equal(z[:, :3], z0[:, :3])  # the noise is the same draw
    assert torch.equal(z[:, 3:6].sum(dim=1), torch.ones(6)) and z[:, 6:].abs().max() <= 1


def test_set_codes_and_seed_latents():
    z = with_codes(torch.zeros(2, 8), CODES, torch.zeros(2, 5))
    out = set_codes(z, CODES, {0: 2, 2: -0.5})
    assert out[:, 3:6].tolist() == [[0, 0, 1]] * 2 and out[:, 7].tolist() == [-0.5, -0.5]
    for values, text in (({0: 3}, "class index in \\[0, 2\\]"), ({1: 1.5}, "in \\[-1, 1\\]"), ({3: 0}, "codes 0-2"),
                         ({0: 0.5}, "class index")):
        with pytest.raises(ValueError, match=text):
            set_codes(z, CODES, values)
    # A seed's latent: NVIDIA's noise first, its own codes last; the same for the same seed.
    plain = seed_latent(7, 8)
    coded = seed_latent(7, 8, CODES)
    assert torch.equal(coded[:3], plain[:3]) and torch.equal(coded, seed_latent(7, 8, CODES))
    assert coded[3:6].sum() == 1 and not torch.equal(coded[3:], plain[3:])


# ----------------------------------------------------------------------------------------- the loss
def test_info_loss_matches_the_formula():
    params = torch.tensor([[2.0, 0.0, -1.0, 0.3, -0.2], [0.5, 0.5, 0.5, 0.0, 1.0]])
    c = torch.tensor([[0.0, 0.0, 1.0, 0.8, -0.4], [1.0, 0.0, 0.0, -1.0, 1.0]])
    expected = []
    for p, t in zip(params.tolist(), c.tolist()):
        logits, cls = p[:3], t[:3].index(1.0)
        ce = -(logits[cls] - math.log(sum(math.exp(v) for v in logits)))  # -log softmax
        gauss = 0.5 * (t[3] - p[3]) ** 2 + 0.5 * (t[4] - p[4]) ** 2  # unit-variance Gaussian NLL, no constant
        expected.append((ce, gauss))
    got = info_loss(CODES, params, c)
    assert torch.allclose(got, torch.tensor([a + b for a, b in expected]), atol=1e-6)
    got = info_loss(CODES, params, c, cont_weight=0.1)
    assert torch.allclose(got, torch.tensor([a + 0.1 * b for a, b in expected]), atol=1e-6)


# ----------------------------------------------------------------------------------------- config and D
def test_network_config_field_validation_and_json():
    cfg = stylegan.resolve_config("tiny", RES, 3, 0, info_codes=CODES)
    data = json.loads(json.dumps(cfg.to_dict()))
    assert data["info_codes"] == [["cat", 3], ["cont", 1], ["cont", 1]]
    assert NetworkConfig.from_dict(data) == cfg and NetworkConfig.from_dict(data).info_codes == CODES
    assert "info_codes" in NetworkConfig().to_dict() and NetworkConfig().info_codes == ()
    for bad, text in [((("cat", 1),), "n in \\[2, 1000\\]"), ((("cont", 2),), "'cont', 1"), ((("x", 3),), "'cat', n"),
                      ((("cat", 64),), "fewer than z_dim"), ((("cont", 1),) * 17, "at most 16"), ([["cat", 3]], "tuple")]:
        with pytest.raises(ValueError, match=text):
            cfg.replace(info_codes=bad) if not isinstance(bad, list) else NetworkConfig(info_codes=bad)
    with pytest.raises(ValueError, match="stylegan2 family only"):
        stylegan.resolve_config("dcgan", RES, 3, 0, info_codes=CODES)


def test_d_head_shapes_and_plain_call_unchanged():
    torch.manual_seed(0)
    G0, D0 = stylegan.build("tiny", resolution=RES, img_channels=3)
    torch.manual_seed(0)
    G1, D1 = stylegan.build("tiny", resolution=RES, img_channels=3, info_codes=CODES)
    extra = set(D1.state_dict()) - set(D0.state_dict())
    assert extra == {"b4.q_fc.weight", "b4.q_fc.bias", "b4.q_out.weight", "b4.q_out.bias"}
    assert G1.state_dict().keys() == G0.state_dict().keys()  # G does not change at all
    img = torch.randn(4, 3, RES, RES)
    logits, params = D1(img, None, precision="fp32", with_codes=True)
    assert logits.shape == (4, 1) and params.shape == (4, 5) and params.dtype == torch.float32
    assert torch.equal(D1(img, None, precision="fp32"), logits)  # the plain call: logits only, same values
    with pytest.raises(ValueError, match="no InfoGAN head"):
        D0(img, None, with_codes=True)


# ----------------------------------------------------------------------------------------- training
@pytest.fixture(scope="module")
def data8(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("data8"), resolution=8, num_images=64, num_classes=4)


def test_train_config_options():
    TrainConfig(info_codes="cat:10,cont:2", info_weight=0.5, info_cont_weight=0.1).validate()
    for kw, option in [(dict(info_codes="cat:1"), "--info-codes"), (dict(info_weight=2.0), "--info-weight"),
                       (dict(info_codes="cat:4", info_cont_weight=0.1), "--info-cont-weight"),
                       (dict(info_codes="cat:4", info_weight=-1.0), "--info-weight")]:
        with pytest.raises(ConfigError) as err:
            TrainConfig(**kw).validate()
        assert option in str(err.value), (kw, err.value)


def test_trains_with_codes_resumes_exactly_and_generates(data8, tmp_path):
    opts = dict(preset="tiny", info_codes="cat:3,cont:1", info_weight=1.0, info_cont_weight=0.5, mixing=0.5)
    straight = run_fit(data8, tmp_path / "straight", kimg=0.048, **opts)
    first = run_fit(data8, tmp_path / "split", kimg=0.024, **opts)
    second = run_fit(data8, tmp_path / "split", state_dir=first.state_dir, kimg=0.048, **opts)
    assert_same_state(straight.state_dir, second.state_dir)
    stats = read_stats(tmp_path / "straight")
    assert all(s["info_loss"] is not None and math.isfinite(s["info_loss"]) and s["info_loss"] > 0 for s in stats)
    nets = stylegan.load_network(straight.snapshot)
    assert nets["G_ema"].config.info_codes == (("cat", 3), ("cont", 1))
    assert any(k.startswith("b4.q_out") for k in nets["D"].state_dict())
    # Q is trained: from the same start, its weights after one step differ from those after six
    # (Adam moves no parameter without a gradient, and there is no weight decay).
    from training.checkpoint import load_state

    short = run_fit(data8, tmp_path / "short", kimg=0.008, **opts)
    one, six = load_state(short.state_dir).modules["D"], load_state(straight.state_dir).modules["D"]
    assert not torch.equal(one["b4.q_out.weight"], six["b4.q_out.weight"])


def test_info_options_refused_where_they_do_not_apply(data8, tmp_path):
    from training.train import main

    for args, text in [(["--info-weight", "2"], "without --info-codes"),
                       (["--preset", "dcgan", "--info-codes", "cat:3"], "stylegan2 family only"),
                       (["--preset", "tiny", "--info-codes", "cat:64"], "fewer than z_dim")]:
        res = CliRunner().invoke(main, ["--data", str(data8), "--outdir", str(tmp_path / "r"), "--dry-run", *args])
        assert res.exit_code in (1, 2) and text in res.output, (args, res.output)


# ----------------------------------------------------------------------------------------- tools
@pytest.fixture(scope="module")
def coded_file(tmp_path_factory):
    torch.manual_seed(0)
    G, D = stylegan.build("tiny", resolution=RES, img_channels=3, info_codes=CODES)
    path = tmp_path_factory.mktemp("net") / "coded.safetensors"
    stylegan.save_network(path, {"G": G.eval(), "D": D.eval()}, G.config, metadata={"kimg": 0})
    plain = path.with_name("plain.safetensors")
    G0, D0 = stylegan.build("tiny", resolution=RES, img_channels=3)
    stylegan.save_network(plain, {"G": G0.eval(), "D": D0.eval()}, G0.config, metadata={"kimg": 0})
    return path, plain


def _generate(*args):
    from tools.generate import main

    return CliRunner().invoke(main, list(args))


def test_generate_code_changes_the_image_deterministically(coded_file, tmp_path):
    path, plain = coded_file
    images = {}
    for name, extra in [("none", []), ("a", ["--code", "0=2,2=0.5"]), ("b", ["--code", "0=2,2=0.5"]),
                        ("c", ["--code", "0=0,2=0.5"])]:
        res = _generate("--network", str(path), "--seeds", "3", "--outdir", str(tmp_path / name), *extra)
        assert res.exit_code == 0, res.output
        images[name] = np.asarray(Image.open(tmp_path / name / "seed0003.png"))
    assert np.array_equal(images["a"], images["b"])
    assert not np.array_equal(images["a"], images["c"]) and not np.array_equal(images["a"], images["none"])
    # The seed alone gives its own codes: the image of the seed's latent, codes included.
    from stylegan.sampling import to_uint8
    from tools import genlib

    G = genlib.load_generator(path)
    ref = to_uint8(G(seed_latent(3, G.z_dim, CODES)[None], None, noise_mode="const"))[0].permute(1, 2, 0).numpy()
    assert np.array_equal(images["none"], ref)
    coded = set_codes(seed_latent(3, G.z_dim, CODES)[None], CODES, {0: 2, 2: 0.5})
    ref = to_uint8(G(coded, None, noise_mode="const"))[0].permute(1, 2, 0).numpy()
    assert np.array_equal(images["a"], ref)


@pytest.mark.parametrize("args, text", [
    (["--code", "0=3"], "class index in [0, 2]"),
    (["--code", "1=1.5"], "in [-1, 1]"),
    (["--code", "5=0"], "codes 0-2"),
    (["--code", "0:1"], "INDEX=VALUE"),
    (["--code", "0=1,0=2"], "more than once"),
])
def test_generate_refuses_bad_codes(coded_file, tmp_path, args, text):
    res = _generate("--network", str(coded_file[0]), "--seeds", "0", "--outdir", str(tmp_path), *args)
    assert res.exit_code == 2 and "--code" in res.output and text in res.output and "Traceback" not in res.output


def test_generate_refuses_codes_for_a_network_without(coded_file, tmp_path):
    res = _generate("--network", str(coded_file[1]), "--seeds", "0", "--outdir", str(tmp_path), "--code", "0=1")
    assert res.exit_code == 2 and "--code" in res.output and "no InfoGAN codes" in res.output


def test_video_sweeps_one_code(coded_file, tmp_path):
    from tools.latent_walks import code_sweep_values
    from tools.video import main

    assert code_sweep_values(CODES, 1, 4, loop=False) == [-1.0, -0.5, 0.0, 0.5, 1.0]
    assert code_sweep_values(CODES, 1, 2, loop=True) == [-1.0, 0.0, 1.0, 0.0]
    assert code_sweep_values(CODES, 0, 2, loop=False) == [0.0, 0.0, 1.0, 1.0, 2.0, 2.0]
    out = tmp_path / "sweep.gif"
    res = CliRunner().invoke(main, ["--network", str(coded_file[0]), "--seeds", "0,1", "--grid", "2x1",
                                    "--sweep-code", "1", "--frames", "2", "--no-loop", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "Wrote 3 frames (2x1 sweeps of code 1" in res.output
    gif = Image.open(out)
    frames = []
    for i in range(gif.n_frames):
        gif.seek(i)
        frames.append(np.asarray(gif.convert("RGB")))
    assert len(frames) == 3 and not np.array_equal(frames[0], frames[2])
    for args, option, text in [(["--sweep-code", "3", "--grid", "2x1"], "--sweep-code", "codes 0-2"),
                               (["--sweep-code", "1", "--grid", "1x1"], "--seeds", "one seed per cell")]:
        res = CliRunner().invoke(main, ["--network", str(coded_file[0]), "--seeds", "0,1", *args, "--out", str(out)])
        assert res.exit_code == 2 and option in res.output and text in res.output, res.output
    res = CliRunner().invoke(main, ["--network", str(coded_file[1]), "--seeds", "0", "--sweep-code", "0",
                                    "--out", str(out)])
    assert res.exit_code == 2 and "no InfoGAN codes" in res.output, res.output


def test_train_help_lists_the_info_options_with_defaults():
    from training.train import main

    text = " ".join(CliRunner().invoke(main, ["--help"]).output.split())
    for opt in ("--info-codes", "--info-weight", "--info-cont-weight"):
        assert f" {opt} " in f" {text} ", opt
    assert "e.g. 0.1). [default: 1.0]" in text and "lambda, the weight of InfoGAN's" in text
