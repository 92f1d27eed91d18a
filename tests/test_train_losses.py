"""The adversarial losses of --loss (issue 17): each term against its paper's formula, WGAN-GP's
penalty on a critic whose gradient is known, training and exact resume with each, and the option
checks. The 2-process gradient equality of wgan-gp's double backward is in test_train_distributed."""

from __future__ import annotations

import math

import pytest
import torch
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
    with pytest.raises(ValueError, match="expected one of ns, minimax, lsgan, hinge, wgan-gp"):
        L.g_term("wgan", LOGITS)


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


@pytest.mark.parametrize("kind", ["minimax", "lsgan", "hinge", "wgan-gp"])
def test_each_loss_trains(data8, tmp_path, kind):
    result = run_fit(data8, tmp_path / "run", kimg=0.024, loss=kind)
    assert result.status == "done"
    stats = read_stats(tmp_path / "run")
    assert all(math.isfinite(s["loss_D"]) and math.isfinite(s["loss_G"]) for s in stats)
    assert ("gp_penalty" in stats[-1]) == (kind == "wgan-gp")
    if kind == "wgan-gp":
        assert stats[-1]["gp_penalty"] >= 0 and stats[-1]["r1_penalty"] is None  # no R1 with its own penalty


def test_wgan_gp_resume_is_bit_identical(data8, tmp_path):
    straight = run_fit(data8, tmp_path / "straight", kimg=0.048, loss="wgan-gp")
    first = run_fit(data8, tmp_path / "split", kimg=0.024, loss="wgan-gp")
    second = run_fit(data8, tmp_path / "split", state_dir=first.state_dir, kimg=0.048, loss="wgan-gp")
    assert_same_state(straight.state_dir, second.state_dir)


def test_loss_options_are_checked(data8, tmp_path):
    base = ["--data", str(data8), "--outdir", str(tmp_path / "runs"), "--dry-run", "--preset", "tiny"]
    ok = CliRunner().invoke(main, [*base, "--loss", "wgan-gp", "--gp-weight", "5"])
    assert ok.exit_code == 0 and '"gamma": 0.0' in ok.output and '"gp_weight": 5.0' in ok.output
    assert "--gamma=0 (--loss wgan-gp has its own gradient penalty)" in ok.output
    for args, option, text in [
        (["--loss", "wgan"], "--loss", "expected one of ns, minimax, lsgan, hinge, wgan-gp"),
        (["--loss", "hinj"], "--loss", "did you mean 'hinge'"),
        (["--loss", "wgan-gp", "--gamma", "1"], "--gamma", "takes R1's place"),
        (["--loss", "hinge", "--gp-weight", "5"], "--gp-weight", "applies to --loss wgan-gp only"),
        (["--drift", "0.01"], "--drift", "applies to --loss wgan-gp only"),
    ]:
        res = CliRunner().invoke(main, [*base, *args])
        assert res.exit_code == 2 and option in res.output and text in res.output, (args, res.output)
