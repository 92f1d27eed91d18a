"""Training dynamics as StyleGAN2-ADA's loop: fake labels from the dataset's class frequencies, the
lazy-regularisation Adam correction whenever an interval is set, w_avg moved by every phase that runs
G, and the path-length mean updated before the penalty is taken against it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import stylegan
from train_fixtures import RecordGrads
from training import loss as L
from training.config import TrainConfig
from training.distributed import Dist
from training.resolve import DataShape, resolve_run
from training.session import build_session, class_probs

ADAM_BETAS = (0.0, 0.99)  # StyleGAN2's (ProGAN sec. A.1: no first-moment momentum), every StyleGAN preset's
from training.loss import LossSettings
from training.step import MicroBatch
from train_fixtures import run_loss_phase


def test_fake_labels_follow_the_dataset_class_frequencies():
    gen = torch.Generator().manual_seed(0)
    probs = class_probs([900, 90, 10], 3)
    assert probs == pytest.approx((0.9, 0.09, 0.01))
    c = L.sample_c(20000, 3, gen, torch.device("cpu"), probs)
    freq = c.sum(0) / c.shape[0]
    assert torch.allclose(freq, torch.tensor([0.9, 0.09, 0.01]), atol=0.01)
    uniform = L.sample_c(20000, 3, torch.Generator().manual_seed(0), torch.device("cpu"))
    assert torch.allclose(uniform.sum(0) / 20000, torch.full([3], 1 / 3), atol=0.02)
    assert class_probs(None, 3) is None and class_probs([1, 2], 3) is None and class_probs([5], 0) is None


def _session(**changes):
    cfg = TrainConfig(preset="tiny", batch=4, **changes)
    run = resolve_run(cfg, DataShape(8, 1, 2))
    return build_session(run.train, Dist(), run.network, class_counts=[3, 1])


def test_lazy_adam_correction_applies_whenever_an_interval_is_set():
    for pl_weight, gamma in ((2.0, 1.0), (0.0, 0.0)):  # also without path length and R1 (cifar has pl_weight 0)
        s = _session(pl_weight=pl_weight, gamma=gamma, glr=0.0025, dlr=0.002)
        g, d = s.opt_G.param_groups[0], s.opt_D.param_groups[0]
        assert g["lr"] == pytest.approx(0.0025 * 4 / 5) and d["lr"] == pytest.approx(0.002 * 16 / 17)
        assert g["betas"] == pytest.approx((ADAM_BETAS[0] ** 0.8, ADAM_BETAS[1] ** 0.8))
        assert d["betas"] == pytest.approx((ADAM_BETAS[0] ** (16 / 17), ADAM_BETAS[1] ** (16 / 17)))
    assert _session().settings.class_probs == pytest.approx((0.75, 0.25))


def _micro(n: int = 4, rounds: int = 2, seed: int = 0) -> list[MicroBatch]:
    gen = torch.Generator().manual_seed(seed)
    return [MicroBatch(torch.rand([n, 1, 8, 8], generator=gen) * 2 - 1,
                       F.one_hot(torch.randint(0, 2, [n], generator=gen), 2).float(), 1000 + r) for r in range(rounds)]


@pytest.mark.parametrize("phase", ["G_main", "G_reg", "D_main"])
def test_every_phase_that_runs_G_moves_w_avg(phase):
    torch.manual_seed(0)
    G, D = stylegan.build("tiny", 8, 1, 2)
    before = G.mapping.w_avg.clone()
    settings = LossSettings(r1_gamma=1.0, r1_interval=4, pl_weight=2.0, pl_interval=4, pl_batch_shrink=2, mixing=0.0)
    opt = torch.optim.SGD((G if phase.startswith("G") else D).parameters(), lr=0.0)
    run_loss_phase(phase, G, D, opt, _micro(), settings=settings, dist=Dist(), pl_mean=torch.tensor(0.0))
    assert not torch.equal(G.mapping.w_avg, before)
    G2, D2 = stylegan.build("tiny", 8, 1, 2)
    run_loss_phase("D_reg", G2, D2, torch.optim.SGD(D2.parameters(), lr=0.0), _micro(), settings=settings, dist=Dist(),
              pl_mean=torch.tensor(0.0))
    assert torch.equal(G2.mapping.w_avg, torch.zeros_like(G2.mapping.w_avg))  # R1 does not run G


def test_path_length_mean_is_updated_before_the_penalty_as_stylegan2_ada():
    torch.manual_seed(0)
    G, D = stylegan.build("tiny", 8, 1, 2)
    settings = LossSettings(r1_gamma=1.0, r1_interval=4, pl_weight=2.0, pl_interval=4, pl_batch_shrink=2,
                            mixing=0.5, pl_decay=0.25)
    micro, a = _micro(), torch.tensor(0.3)
    opt = RecordGrads(G.parameters())
    result = run_loss_phase("G_reg", G, D, opt, micro, settings=settings, dist=Dist(), pl_mean=a)

    # The reference: NVIDIA's order written out with autograd over the whole phase at once.
    torch.manual_seed(0)
    G_ref, _ = stylegan.build("tiny", 8, 1, 2)
    lengths = []
    for mb in micro:
        gen = torch.Generator().manual_seed(mb.seed)
        z = L.sample_z(2, G_ref.z_dim, gen, torch.device("cpu"))
        c = L.sample_c(2, 2, gen, torch.device("cpu"))
        lengths.append(L.path_lengths(G_ref, z, c, mixing=0.5, gen=gen))
    lengths = torch.cat(lengths)
    new_mean = a.lerp(lengths.mean(), 0.25)  # not detached: the gradient flows through the batch mean too
    penalty = (lengths - new_mean).square()
    (penalty.sum() * 2.0 * 4 / lengths.numel()).backward()
    ref = [p.grad for p in G_ref.parameters() if p.grad is not None]

    assert result.pl_mean == pytest.approx(float(new_mean.detach()), rel=1e-6)
    assert result.sums["pl_penalty"] == pytest.approx(float(penalty.sum().detach()), rel=1e-5)
    got_grads = [g for g in opt.grads if g is not None]
    assert len(got_grads) == len(ref)
    for got, want in zip(got_grads, ref):
        assert torch.allclose(got, want, rtol=1e-4, atol=1e-7)
    # The old order (penalty against the mean before the update) gives a different gradient.
    old = [(lengths.detach() - a).square()]
    assert float(old[0].sum()) != pytest.approx(float(penalty.sum().detach()), rel=1e-6)
