"""The adversarial losses of --loss (issue 17): each term against its paper's formula, WGAN-GP's
penalty on a critic whose gradient is known, training and exact resume with each, and the option
checks. The 2-process gradient equality of wgan-gp's double backward is in test_train_distributed."""

from __future__ import annotations

import math

import pytest
import torch

import stylegan
from click.testing import CliRunner

from test_train_loop import assert_same_state, read_stats, run_fit
from train_fixtures import make_dataset
from training import loss as L
from training.train import main


@pytest.fixture(scope="module")
def data8(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("data8"), resolution=8, num_images=64, num_classes=4)


LOGITS = torch.tensor([-3.0, -0.5, 0.0, 0.7, 4.0], dtype=torch.float64)


def test_terms_are_the_papers_formulas():
    d = torch.sigmoid(LOGITS)  # D's probability that the sample is real
    close = lambda a, b: torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)  # noqa: E731
    # Goodfellow et al. 2014: D maximises log D(x) + log(1 - D(G(z))); G minimises log(1 - D(G(z)))
    # (minimax) or maximises log D(G(z)) (non-saturating).
    for kind in ("ns", "minimax"):
        close(L.d_real_term(kind, LOGITS), -torch.log(d))
        close(L.d_fake_term(kind, LOGITS), -torch.log(1 - d))
    close(L.g_term("ns", LOGITS), -torch.log(d))
    close(L.g_term("minimax", LOGITS), torch.log(1 - d))
    # LSGAN (Mao et al. 2017, eq. 2 with a=0, b=1, c=1).
    close(L.d_real_term("lsgan", LOGITS), 0.5 * (LOGITS - 1) ** 2)
    close(L.d_fake_term("lsgan", LOGITS), 0.5 * LOGITS**2)
    close(L.g_term("lsgan", LOGITS), 0.5 * (LOGITS - 1) ** 2)
    # Hinge (Lim & Ye 2017; SAGAN eq. 5/6).
    close(L.d_real_term("hinge", LOGITS), torch.clamp(1 - LOGITS, min=0))
    close(L.d_fake_term("hinge", LOGITS), torch.clamp(1 + LOGITS, min=0))
    close(L.g_term("hinge", LOGITS), -LOGITS)
    # WGAN critic with ProGAN's drift: D(G(z)) - D(x) + eps D(x)^2.
    close(L.d_real_term("wgan-gp", LOGITS, drift=0.001) + L.d_fake_term("wgan-gp", LOGITS),
          0.001 * LOGITS**2)
    close(L.g_term("wgan-gp", LOGITS), -LOGITS)
    # WGAN (Arjovsky et al. 2017, Algorithm 1): the critic maximises D(x) - D(G(z)), G maximises D(G(z)).
    close(L.d_real_term("wgan", LOGITS), -LOGITS)
    close(L.d_fake_term("wgan", LOGITS), LOGITS)
    close(L.g_term("wgan", LOGITS), -LOGITS)
    with pytest.raises(ValueError, match="expected one of ns, minimax, lsgan, hinge, wgan, wgan-gp"):
        L.g_term("wgan-div", LOGITS)


def test_n_critic_trains_g_after_every_kth_d_step_and_counts_path_length_in_g_steps():
    settings = L.LossSettings(r1_gamma=1.0, r1_interval=16, pl_weight=2.0, pl_interval=4, pl_batch_shrink=2,
                              mixing=0.0, n_critic=5)
    loss = L.StyleGAN2Loss(TinyG(), None, settings)
    phases = [loss.phases(step) for step in range(25)]
    g_steps = [step for step, names in enumerate(phases) if "G_main" in names]
    assert g_steps == [4, 9, 14, 19, 24]  # after five D steps each
    assert [step for step, names in enumerate(phases) if "G_reg" in names] == [4, 24]  # G steps 0 and 4
    assert all("D_main" in names for names in phases)
    assert [step for step, names in enumerate(phases) if "D_reg" in names] == [0, 16]
    one = L.StyleGAN2Loss(TinyG(), None, L.LossSettings(**{**settings.__dict__, "n_critic": 1}))
    assert one.phases(0) == ["G_main", "G_reg", "D_main", "D_reg"] and one.phases(1) == ["G_main", "D_main"]


class TinyG(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))


def test_clip_weights_clips_what_each_layer_computes_with():
    import stylegan
    from stylegan.layers import Conv2dLayer, FullyConnectedLayer

    _, D = stylegan.build("tiny", 8, 1, 4)
    with torch.no_grad():
        for p in D.parameters():
            p.mul_(100)
    L.clip_weights(D, 0.01)
    layers = [m for m in D.modules() if isinstance(m, (Conv2dLayer, FullyConnectedLayer))]
    assert layers
    for m in layers:
        effective = m.weight * m.weight_gain
        assert effective.abs().max() <= 0.01 * (1 + 1e-6)
        assert effective.abs().max() >= 0.01 * (1 - 1e-6)  # scaled by 100, so the bound is reached
        if m.bias is not None:
            assert (m.bias * m.bias_gain).abs().max() <= 0.01 * (1 + 1e-6)
    assert all(p.abs().max() <= 0.01 / min(getattr(m, "weight_gain", 1.0), 1.0) + 1e-6 for m in D.modules()
               for p in m.parameters(recurse=False))


class LinearCritic(torch.nn.Module):
    """D(x) = <w, x>: its gradient is w everywhere, so the penalty is (||w|| - 1)^2 exactly."""

    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(w)

    def forward(self, img, c, precision="fp32"):
        return (img * self.w).sum(dim=[1, 2, 3])


def test_gradient_penalty_of_a_linear_critic():
    w = torch.randn(1, 2, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    D = LinearCritic(w)
    real, fake = torch.randn(4, 2, 3, 3, dtype=torch.float64), torch.randn(4, 2, 3, 3, dtype=torch.float64)
    gp = L.gradient_penalty(D, real, fake, torch.zeros(4, 0), gen=torch.Generator().manual_seed(1))
    expected = (w.norm() - 1) ** 2
    torch.testing.assert_close(gp.double(), expected.expand(4), rtol=1e-6, atol=1e-9)  # float32 inside
    # Its gradient reaches D's weights (the double backward): d/dw (||w|| - 1)^2 = 2 (||w|| - 1) w / ||w||.
    (g,) = torch.autograd.grad(gp.sum(), D.w)
    torch.testing.assert_close(g, 4 * 2 * (w.norm() - 1) * w / w.norm(), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("kind", ["minimax", "lsgan", "hinge", "wgan", "wgan-gp"])
def test_each_loss_trains(data8, tmp_path, kind):
    # wgan: 2 critic steps per G step and 4 steps, so that each tick (2 steps) has one G step.
    extra = {"n_critic": 2, "kimg": 0.032} if kind == "wgan" else {"kimg": 0.024}
    result = run_fit(data8, tmp_path / "run", loss=kind, **extra)
    assert result.status == "done"
    stats = read_stats(tmp_path / "run")
    assert all(math.isfinite(s["loss_D"]) and math.isfinite(s["loss_G"]) for s in stats)
    assert ("gp_penalty" in stats[-1]) == (kind == "wgan-gp")
    if kind in ("wgan", "wgan-gp"):
        assert stats[-1]["r1_penalty"] is None  # no R1 with their own constraint
    if kind == "wgan-gp":
        assert stats[-1]["gp_penalty"] >= 0
    if kind == "wgan":  # D's effective weights stay clipped; D trained with RMSProp at the paper's lr
        from training.checkpoint import load_state

        state = load_state(result.state_dir)
        _, D = stylegan.build("tiny", 8, 1, 4)
        D.load_state_dict(state.modules["D"])
        for m in D.modules():
            for name, p in m.named_parameters(recurse=False):
                assert float((p * getattr(m, f"{name}_gain", 1.0)).abs().max()) <= 0.01 * (1 + 1e-6), name
        group = state.training["opt_D"]["param_groups"][0]
        assert group["alpha"] == 0.99 and group["lr"] == 5e-5  # RMSProp; no lazy correction without D_reg


@pytest.mark.parametrize("kind", ["wgan", "wgan-gp"])
def test_wgan_resume_is_bit_identical(data8, tmp_path, kind):
    """wgan: 6 steps with n_critic 5, split after 3: its G step (step 4) and the clipping after each
    D step happen after the resume, with RMSProp's state restored."""
    straight = run_fit(data8, tmp_path / "straight", kimg=0.048, loss=kind)
    first = run_fit(data8, tmp_path / "split", kimg=0.024, loss=kind)
    second = run_fit(data8, tmp_path / "split", state_dir=first.state_dir, kimg=0.048, loss=kind)
    assert_same_state(straight.state_dir, second.state_dir)


def test_loss_options_are_checked(data8, tmp_path):
    base = ["--data", str(data8), "--outdir", str(tmp_path / "runs"), "--dry-run", "--preset", "tiny"]
    ok = CliRunner().invoke(main, [*base, "--loss", "wgan-gp", "--gp-weight", "5"])
    assert ok.exit_code == 0 and '"gamma": 0.0' in ok.output and '"gp_weight": 5.0' in ok.output
    assert "--gamma=0 (--loss wgan-gp: its gradient penalty (--gp-weight) takes R1's place)" in ok.output
    wgan = CliRunner().invoke(main, [*base, "--loss", "wgan"])
    assert wgan.exit_code == 0, wgan.output
    for text in ("--optimizer=rmsprop", "--n-critic=5", "--glr=5e-05", "--dlr=5e-05", "--gamma=0"):
        assert text in wgan.output
    for args, option, text in [
        (["--loss", "wgan-div"], "--loss", "expected one of ns, minimax, lsgan, hinge, wgan, wgan-gp"),
        (["--loss", "wgan", "--gamma", "1"], "--gamma", "its weight clipping (--clip) takes R1's place"),
        (["--loss", "hinge", "--clip", "0.1"], "--clip", "applies to --loss wgan only"),
        (["--loss", "wgan", "--beta1", "0.5"], "--beta1", "applies to --optimizer adam only"),
        (["--optimizer", "sgd"], "--optimizer", "expected one of adam, rmsprop"),
        (["--n-critic", "0"], "--n-critic", "expected an integer >= 1"),
        (["--beta2", "1"], "--beta2", "expected a number in [0, 1)"),
        (["--loss", "hinj"], "--loss", "did you mean 'hinge'"),
        (["--loss", "wgan-gp", "--gamma", "1"], "--gamma", "takes R1's place"),
        (["--loss", "hinge", "--gp-weight", "5"], "--gp-weight", "applies to --loss wgan-gp only"),
        (["--drift", "0.01"], "--drift", "applies to --loss wgan-gp only"),
    ]:
        res = CliRunner().invoke(main, [*base, *args])
        assert res.exit_code == 2 and option in res.output and text in res.output, (args, res.output)
