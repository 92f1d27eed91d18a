"""StyleGAN3 in training: the blur of D's inputs (NVIDIA's taps, its fade, before augmentation, R1
through it), which phases move G's EMAs, G's uncorrected Adam, low precision on a CPU, --dry-run, and
(end to end) a run of the demo preset with blur that resumes bit-identically and generates."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import stylegan
from test_train_loop import assert_same_state, read_stats, run_fit
from train_fixtures import run_loss_phase
from training.blur import blur_images, blur_sigma_at, blur_taps
from training.config import TrainConfig
from training.distributed import Dist
from training.loss import LossSettings, StyleGAN2Loss, r1_penalty
from training.resolve import DataShape, resolve_run
from training.session import build_session
from training.step import MicroBatch
from training.train import main

REPO = Path(__file__).resolve().parents[1]
SETTINGS = LossSettings(r1_gamma=0.5, r1_interval=4, pl_weight=0.0, pl_interval=0, pl_batch_shrink=2, mixing=0.0,
                        g_phase_emas=False, synthesis_emas=True)


def small_sg3(**overrides):
    torch.manual_seed(0)
    return stylegan.build("stylegan3-tiny", 16, 1, 4, **{"sg3_layers": 4, "num_fp16_res": 0, "conv_clamp": None,
                                                        **overrides})


def micro_batches(n: int = 2, size: int = 4, res: int = 16) -> list[MicroBatch]:
    gen = torch.Generator().manual_seed(3)
    return [MicroBatch(torch.rand([size, 1, res, res], generator=gen) * 2 - 1, torch.eye(4)[torch.arange(size) % 4],
                       10 + i) for i in range(n)]


# ----- the blur (training/blur.py) ------------------------------------------------------------------------

def test_blur_taps_are_nvidias():
    taps = blur_taps(10.0)
    x = torch.arange(-30, 31, dtype=torch.float64)
    want = torch.exp2(-(x / 10).square())
    assert taps.shape == (61,) and torch.allclose(taps.double(), want / want.sum(), atol=1e-8)
    assert blur_taps(0.3) is None and blur_taps(0.0) is None and blur_taps(1 / 3 + 1e-9).shape == (3,)
    img = torch.randn(2, 3, 16, 16)
    assert blur_images(img, 0.2) is img
    # Separable: the 2-D result is the row filter, then the column filter, with zero padding.
    out, f = blur_images(img, 1.0), blur_taps(1.0)
    rows = torch.nn.functional.conv2d(img.reshape(6, 1, 16, 16), f.reshape(1, 1, 1, -1), padding=(0, 3))
    both = torch.nn.functional.conv2d(rows, f.reshape(1, 1, -1, 1), padding=(3, 0)).reshape(2, 3, 16, 16)
    assert out.shape == img.shape and torch.allclose(out, both, atol=1e-6)


def test_blur_fades_linearly():
    assert blur_sigma_at(0, 10, 200) == 10 and blur_sigma_at(100_000, 10, 200) == pytest.approx(5)
    assert blur_sigma_at(200_000, 10, 200) == 0 and blur_sigma_at(10**7, 10, 200) == 0
    assert blur_sigma_at(10**7, 2, 0) == 2  # no fade: constant
    assert blur_sigma_at(0, 0, 200) == 0


def test_d_sees_blurred_then_augmented_images_and_r1_goes_through_both():
    G, D = small_sg3()
    doubled = lambda images, gen: images * 2  # an "augmentation" whose order shows
    loss = StyleGAN2Loss(G, D, SETTINGS, augment=doubled)
    img, gen = torch.randn(4, 1, 16, 16), torch.Generator()
    assert loss.d_view() is doubled  # no blur yet
    loss.blur_sigma = 1.5
    assert torch.allclose(loss.d_view()(img, gen), blur_images(img, 1.5) * 2)
    # R1 is taken with respect to the image before the blur: the gradient flows back through it.
    c = torch.eye(4)
    got = r1_penalty(D, img, c, augment=loss.d_view(), gen=gen)
    x = img.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(D(blur_images(x, 1.5) * 2, c).sum(), x)
    assert torch.allclose(got, grad.square().sum(dim=[1, 2, 3]), rtol=1e-5)
    assert not torch.allclose(got, r1_penalty(D, img, c, augment=doubled, gen=gen), rtol=1e-3)


def test_every_phase_feeds_d_blurred_images():
    G, D = small_sg3()
    seen, rendered = [], []
    D.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach().clone()))
    G.synthesis.register_forward_hook(lambda module, args, out: rendered.append(out.detach().clone()))
    micro = micro_batches(1)
    opt = torch.optim.SGD(D.parameters(), lr=0.0)
    phases = {"G_main": lambda: [rendered[0]], "D_main": lambda: [rendered[0], micro[0].real],
              "D_reg": lambda: [micro[0].real]}
    for name, originals in phases.items():
        seen.clear(), rendered.clear()
        run_loss_phase(name, G, D, opt, micro, settings=SETTINGS, dist=Dist(), pl_mean=0.0, blur_sigma=2.0)
        want = originals()
        assert len(seen) == len(want), name
        for got, image in zip(seen, want):
            assert torch.allclose(got, blur_images(image, 2.0), atol=1e-6), name
            assert not torch.allclose(got, image, atol=1e-3), name


# ----- G's EMAs ----------------------------------------------------------------------------------------

def emas(G):
    return torch.stack([layer.magnitude_ema for layer in G.synthesis.layers]).clone()


def test_only_d_main_moves_gs_emas_and_micro_batches_start_alike():
    """NVIDIA's StyleGAN3 loss: G_main renders without moving w_avg or the magnitude EMAs; D_main moves
    both. Every micro-batch of D_main renders from the phase's EMAs, so its fakes do not depend on the
    micro-batches before it; afterwards the EMAs are the mean of what the micro-batches made of them."""
    G, D = small_sg3(magnitude_ema_beta=0.5)
    opt = torch.optim.SGD(list(G.parameters()) + list(D.parameters()), lr=0.0)
    micro = micro_batches(2)
    w_avg, before = G.mapping.w_avg.clone(), emas(G)
    run_loss_phase("G_main", G, D, opt, micro, settings=SETTINGS, dist=Dist(), pl_mean=0.0)
    assert torch.equal(G.mapping.w_avg, w_avg) and torch.equal(emas(G), before)
    run_loss_phase("D_main", G, D, opt, micro, settings=SETTINGS, dist=Dist(), pl_mean=0.0)
    assert not torch.equal(G.mapping.w_avg, w_avg) and (emas(G) - before).abs().min() > 1e-3
    after = emas(G)
    # Each micro-batch alone from the phase's values: the EMAs afterwards are the mean of the two.
    singles = []
    for mb in micro:
        with torch.no_grad():
            for layer, value in zip(G.synthesis.layers, before):
                layer.magnitude_ema.copy_(value)
        run_loss_phase("D_main", G, D, opt, [mb], settings=SETTINGS, dist=Dist(), pl_mean=0.0)
        singles.append(emas(G))
    assert torch.allclose(after, (singles[0] + singles[1]) / 2, atol=1e-6)
    # StyleGAN2-ADA's settings (the stylegan2 family): G_main moves w_avg.
    ada = LossSettings(**{**SETTINGS.__dict__, "g_phase_emas": True, "synthesis_emas": False})
    w_avg = G.mapping.w_avg.clone()
    run_loss_phase("G_main", G, D, opt, micro, settings=ada, dist=Dist(), pl_mean=0.0)
    assert not torch.equal(G.mapping.w_avg, w_avg)


def test_session_settings_and_adam_for_stylegan3():
    run = resolve_run(TrainConfig(preset="stylegan3-tiny", data="data"), DataShape(16, 1, 4))
    session = build_session(run.train, Dist(), run.network.replace(sg3_layers=4))
    s = session.loss.s
    assert (s.g_phase_emas, s.synthesis_emas, s.pl_weight) == (False, True, 0.0)
    assert session.loss.phases(0) == ["G_main", "D_main", "D_reg"] and session.loss.phases(1) == ["G_main", "D_main"]
    g, d = session.opt_G.param_groups[0], session.opt_D.param_groups[0]
    assert (g["lr"], g["betas"]) == (0.0025, (0.0, 0.99))  # no lazy G regularisation: uncorrected
    c = 16 / 17  # D's R1 every 16 steps: lr and betas corrected (StyleGAN2 appendix B)
    assert d["lr"] == pytest.approx(0.002 * c) and d["betas"][1] == pytest.approx(0.99**c)
    tiny = resolve_run(TrainConfig(preset="tiny", data="data"), DataShape(16, 1, 4))
    s2 = build_session(tiny.train, Dist(), tiny.network).loss.s
    assert (s2.g_phase_emas, s2.synthesis_emas) == (True, False)


# ----- precision -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("precision, dtype", [("bf16", torch.bfloat16), ("fp16", torch.float16)])
def test_low_precision_layers_train_on_a_cpu(precision, dtype):
    """--precision fp16|bf16 on a CPU: the layers whose sampling rate is among the top num_fp16_res run
    in the low dtype (conv_clamp 256), the others in float32; every phase's loss and gradient is finite."""
    torch.manual_seed(0)
    G, D = stylegan.build("stylegan3-tiny", 32, 1, 4, sg3_layers=4, num_fp16_res=1, conv_clamp=256.0)
    low = [layer.use_fp16 for layer in G.synthesis.layers]  # rate 32 of 32x32: low; rate 16: float32
    assert any(low) and not all(low)
    dtypes = {}
    for i, layer in enumerate(G.synthesis.layers):
        layer.register_forward_hook(lambda m, a, out, i=i: dtypes.__setitem__(i, out.dtype))
    settings = LossSettings(**{**SETTINGS.__dict__, "precision": precision})
    micro = micro_batches(1, size=2, res=32)
    for name in ("G_main", "D_main", "D_reg"):
        net = G if name.startswith("G") else D
        opt = torch.optim.SGD(net.parameters(), lr=0.0)
        result = run_loss_phase(name, G, D, opt, micro, settings=settings, dist=Dist(), pl_mean=0.0)
        assert not result.skipped, name
        assert all(p.grad is None or torch.isfinite(p.grad).all() for p in net.parameters())
    assert [dtypes[i] for i in range(len(low))] == [dtype if f else torch.float32 for f in low]


# ----- the memory and time estimates --------------------------------------------------------------------

def test_memory_estimate_takes_the_largest_phase():
    """training/estimate.py: G's and D's saved tensors apart, and the phase that keeps the most. The
    demo's G keeps 9 times what tiny's does (every layer's upsampled signal in the reference filtered
    leaky ReLU), so G_main sets its peak; without path length there is no G_reg term."""
    from training.estimate import estimate, phase_activations, saved_bytes_per_sample

    assert phase_activations(10, 3, path_length=False) == {"G_main": 13, "D_main": 6, "D_reg": 6}
    assert phase_activations(10, 3, path_length=True, pl_batch_shrink=2)["G_reg"] == 10
    G, D = stylegan.build("stylegan3-tiny", img_channels=1, c_dim=10, num_fp16_res=0, conv_clamp=None)
    tiny_G, tiny_D = stylegan.build("tiny", img_channels=1, c_dim=10, num_fp16_res=0, conv_clamp=None)
    g, d = saved_bytes_per_sample(G, D)
    tg, td = saved_bytes_per_sample(tiny_G, tiny_D)
    assert d == td and 6 * tg < g < 12 * tg
    e = estimate(G, D, 32, "fp32", path_length=False)
    assert e.peak_phase == "G_main" and e.activation_bytes == 32 * (g + d)
    assert 0.9 < e.activation_bytes / 2**30 < 1.4  # 1.12 GiB; the CPU measured 1.53 GiB above the idle process


def test_flop_count_of_a_grouped_convs_weight_gradient():
    """torch's formula counts a grouped conv's weight gradient as if every group met every other;
    FlopCount counts it per group, so StyleGAN3's per-sample (grouped) modulated conv costs the same per
    image at any batch."""
    from training.flops import FlopCount, step_flops

    def count(n: int) -> float:
        x = torch.randn(1, 4 * n, 8, 8, requires_grad=True)
        w = torch.randn(6 * n, 4, 3, 3, requires_grad=True)
        with FlopCount() as counter:
            torch.nn.functional.conv2d(x, w, groups=n).sum().backward()
        return counter.total / n

    assert count(1) == count(8) == 3 * 2 * 6 * 4 * 9 * 36  # forward, input and weight gradients
    assert step_flops(1.0, 0.0, path_length=False) == pytest.approx(3.45)
    assert step_flops(0.0612, 0.0645, path_length=False) / (0.0612 + 0.0645) == pytest.approx(6.2, abs=0.05)


# ----- the CLI -------------------------------------------------------------------------------------------

def test_dry_run_says_where_gamma_came_from(tmp_path):
    res = CliRunner().invoke(main, ["--dry-run", "--preset", "stylegan3-r", "--resolution", "512", "--outdir",
                                    str(tmp_path)])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "--gamma=8 (NVIDIA's docs/configs.md table for StyleGAN3 at 512x512" in text
    assert "--blur-sigma=10" in text and "--blur-fade-kimg=200 (NVIDIA's StyleGAN3 rule: batch x 200 / 32)" in text
    assert "parameters: G 15,093,151" not in text  # 512x512: fewer layers' worth than at 1024
    assert "memory per process (estimate)" in text and "magnitude EMAs: decay 0.998892" in text
    res = CliRunner().invoke(main, ["--dry-run", "--preset", "stylegan3-t", "--resolution", "1024", "--gamma", "32.8",
                                    "--outdir", str(tmp_path)])
    assert res.exit_code == 0 and "parameters: G 22,313,167" in res.output and "D 29,012,513" in res.output
    assert "--gamma=32.8" not in res.output.split("from --preset")[1].split("\n")[0]  # given, not the preset's


def test_init_from_a_file_trained_with_another_batch(tmp_path):
    """The magnitude EMAs' decay follows the run's --batch; a file trained with another batch still
    initialises the run (the decay is not part of what the tensors mean), as fp16 blocks and clamping."""
    from training.init_from import plan_init

    G, D = small_sg3()
    path = tmp_path / "net.safetensors"
    stylegan.save_network(path, {"G": G, "D": D, "G_ema": G}, G.config, {"kimg": 1})
    other = G.config.replace(magnitude_ema_beta=0.5 ** (64 / 20000), num_fp16_res=2, conv_clamp=256.0)
    assert plan_init(path, other).sources == {"G": "G", "G_ema": "G_ema", "D": "D"}
    with pytest.raises(ValueError, match="sg3_layers"):
        plan_init(path, G.config.replace(sg3_layers=6))


# ----- end to end ----------------------------------------------------------------------------------------

@pytest.mark.e2e
def test_demo_preset_trains_resumes_exactly_and_generates(tmp_path):
    """stylegan3-tiny on the demo digits (data/), with a blur that fades out mid-run: a run split in two
    continues bit for bit (networks with their magnitude EMAs, optimizers, counters, RNG), and the
    snapshot generates."""
    opts = dict(preset="stylegan3-tiny", batch=8, pl_weight=0.0, pl_interval=0, mixing=0.0, r1_interval=4,
                blur_sigma=2.0, blur_fade_kimg=0.024, tick=0.008)
    data = REPO / "data"
    straight = run_fit(data, tmp_path / "straight", kimg=0.032, **opts)
    first = run_fit(data, tmp_path / "split", kimg=0.016, **opts)
    second = run_fit(data, tmp_path / "split", state_dir=first.state_dir, kimg=0.032, **opts)
    assert_same_state(straight.state_dir, second.state_dir)
    stats = read_stats(tmp_path / "straight")
    assert all(math.isfinite(s["loss_D"]) for s in stats)
    # The sigma of each tick's last step (tick 0.008 kimg = one step of 8): 2 fading to 0 at 24 images.
    assert [s["blur_sigma"] for s in stats] == pytest.approx([2.0, 2 * (1 - 8 / 24), 2 * (1 - 16 / 24), 0.0])
    nets = stylegan.load_network(straight.snapshot)
    G = nets["G_ema"]
    assert G.config.family == "stylegan3" and G.config.magnitude_ema_beta == pytest.approx(0.5 ** (8 / 20000))
    assert all(float(layer.magnitude_ema) != 1.0 for layer in G.synthesis.layers)  # G_ema copied the moved EMAs
    out = tmp_path / "images"
    gen = subprocess.run([sys.executable, "tools/generate.py", "--network", str(straight.snapshot), "--seeds", "0-1",
                          "--outdir", str(out), "--class", "7"], cwd=REPO, capture_output=True, text=True, timeout=300,
                         env={**__import__("os").environ, "PYTHONPATH": str(REPO)})
    assert gen.returncode == 0, gen.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == ["seed0000.png", "seed0001.png"]
