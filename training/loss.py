"""Losses and regularisers of StyleGAN2, as per-sample tensors.

Every function returns one value per sample (shape ``[N]``); the caller sums them and divides by
the global number of samples of the phase, so that gradient accumulation and any number of
processes give the gradient of the same global mean.

* Adversarial loss: the non-saturating logistic loss (Goodfellow et al. 2014, sec. 3, the
  practical form), ``softplus(-D(G(z)))`` for G and ``softplus(D(G(z))) + softplus(-D(x))`` for D.
* R1 (Mescheder et al. 2018, eq. 9): ``gamma / 2 * ||grad_x D(x)||^2`` on reals.
* Path-length regularisation (Karras et al. 2020, StyleGAN2 eq. 4): ``(||J_w^T y||_2 - a)^2`` with
  ``y`` random images with normal pixels scaled by ``1/sqrt(H*W)`` and ``a`` a running mean of the
  lengths.
* Style mixing (Karras et al. 2019, StyleGAN sec. 3.1): with probability ``mixing``, a sample's
  ``ws`` switch to those of a second latent from a random layer on.
* InfoGAN (Chen et al. 2016, eq. 5-6), with ``info_codes``: the last entries of every fake's ``z``
  are its codes, and ``info_weight * -L_I`` (:func:`stylegan.info_codes.info_loss`, from D's head Q)
  is added to G's loss in G_main and to D's loss on the fakes in D_main.

First-order gradients that the regularisers penalise are taken with
``torch.autograd.grad(create_graph=True)``; the caller then runs a plain ``backward``.

Mixed precision is the networks' own (``precision``, see :func:`training.precision.network_precision`):
they run their top blocks in float16 / bfloat16 and return float32 images and logits, so every loss
here is computed in float32 and no autocast context is needed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from stylegan.info_codes import InfoCodes, code_dim, info_loss, sample_codes, with_codes
from training.blur import blur_images, blur_taps

PHASES = ("G_main", "G_reg", "D_main", "D_reg")


def sample_z(n: int, z_dim: int, gen: torch.Generator, device: torch.device, info_codes: InfoCodes = ()) -> torch.Tensor:
    """``n`` latents from N(0, I); with InfoGAN ``info_codes``, their last entries are codes drawn
    after the noise (one-hot uniform classes, Uniform(-1, 1); :func:`stylegan.info_codes.sample_codes`)."""
    z = torch.randn([n, z_dim], generator=gen, device=device)
    if not info_codes:
        return z
    return with_codes(z, info_codes, sample_codes(info_codes, n, gen, device))


def sample_c(
    n: int, c_dim: int, gen: torch.Generator, device: torch.device, class_probs: Sequence[float] | None = None
) -> torch.Tensor:
    """``n`` one-hot labels for the fakes (``[n, 0]`` when unconditional).

    Drawn from ``class_probs``, the dataset's class frequencies, as StyleGAN2-ADA draws the labels of
    random dataset items: on imbalanced data G then sees each class as often as D sees it in the reals.
    Uniform when no frequencies are given.
    """
    if c_dim == 0:
        return torch.zeros([n, 0], device=device)
    if class_probs is None:
        idx = torch.randint(0, c_dim, [n], generator=gen, device=device)
    else:
        probs = torch.as_tensor(class_probs, dtype=torch.float64, device=device)
        idx = torch.multinomial(probs, n, replacement=True, generator=gen)
    return F.one_hot(idx, c_dim).float()


def run_G(
    G: torch.nn.Module,
    z: torch.Tensor,
    c: torch.Tensor,
    *,
    mixing: float,
    gen: torch.Generator,
    update_emas: bool = False,
    precision: str = "fp32",
    code_dim: int = 0,
    synthesis_emas: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generate images with style-mixing regularisation; returns ``(img, ws)``.

    ``ws`` is the ``[N, num_ws, w_dim]`` tensor that synthesis consumed (after mixing), which is what
    path-length regularisation differentiates against. ``update_emas`` lets the main mapping call
    move G's ``w_avg`` (StyleGAN2-ADA does so in every phase that runs G: G_main, G_reg and D_main);
    the second mapping call of style mixing never does. The noise inputs are drawn from ``gen``;
    ``precision`` is the networks' own (see :func:`training.precision.network_precision`): it
    reaches only the synthesis blocks; the mapping network runs in float32 (``w_avg`` is a float32
    running mean, and in StyleGAN2-ADA only synthesis blocks use float16). ``code_dim``: the last
    entries of ``z`` that are InfoGAN codes; the mixing latent keeps them (only the noise is mixed),
    so every layer of an image sees the codes Q is asked to recover. ``synthesis_emas``: the synthesis
    network updates its own EMAs too (StyleGAN3's magnitude EMAs; D_main only, as NVIDIA's StyleGAN3).
    """
    ws = G.mapping(z, c, update_emas=update_emas)
    if mixing > 0:
        n, num_ws = ws.shape[0], ws.shape[1]
        # Per sample: mix with probability `mixing`, from a layer drawn uniformly in [1, num_ws).
        cutoff = torch.randint(1, max(num_ws, 2), [n], generator=gen, device=z.device)
        use = torch.rand([n], generator=gen, device=z.device) < mixing
        cutoff = torch.where(use, cutoff, torch.full_like(cutoff, num_ws))
        z2 = torch.randn(z.shape, generator=gen, device=z.device, dtype=z.dtype)
        if code_dim:
            z2 = torch.cat([z2[:, : z.shape[1] - code_dim], z[:, z.shape[1] - code_dim :]], dim=1)
        ws2 = G.mapping(z2, c, update_emas=False)
        layer = torch.arange(num_ws, device=z.device)
        take2 = (layer[None, :] >= cutoff[:, None])[:, :, None]  # [N, num_ws, 1]
        ws = torch.where(take2, ws2, ws)
    extra = {"update_emas": True} if synthesis_emas else {}
    img = G.synthesis(ws, precision=precision, generator=gen, **extra)
    return img, ws


def run_D(D: torch.nn.Module, img: torch.Tensor, c: torch.Tensor, precision: str = "fp32",
          augment: "Augment | None" = None, gen: torch.Generator | None = None) -> torch.Tensor:
    """Discriminator logits as a float32 ``[N]`` tensor, of the images augmented by ``augment``
    (its draws from ``gen``) when given: D sees only augmented images, real and fake, in every phase
    (StyleGAN2-ADA sec. 2)."""
    if augment is not None:
        img = augment(img, gen)
    return D(img, c, precision=precision).reshape(img.shape[0]).float()


def run_DQ(D: torch.nn.Module, img: torch.Tensor, c: torch.Tensor, precision: str = "fp32",
           augment: "Augment | None" = None, gen: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`run_D` that also returns Q's code parameters ``[N, K]`` (float32) from the same pass."""
    if augment is not None:
        img = augment(img, gen)
    logits, params = D(img, c, precision=precision, with_codes=True)
    return logits.reshape(img.shape[0]).float(), params.float()


# ---------------------------------------------------------------------------------------- adversarial losses
LOSSES = ("ns", "minimax", "lsgan", "hinge", "wgan", "wgan-gp")
OPTIMIZERS = ("adam", "rmsprop")
# LSGAN's targets (Mao et al. 2017, sec. 3.2.3, the "0-1 coding" of eq. 9): D pushes fakes to a and
# reals to b, G pushes its fakes to c.
LSGAN_A, LSGAN_B, LSGAN_C = 0.0, 1.0, 1.0


def g_term(kind: str, logits: torch.Tensor) -> torch.Tensor:
    """G's per-sample loss from D's logits on its fakes."""
    if kind == "ns":  # non-saturating: -log(sigmoid(D(G(z)))) (Goodfellow et al. 2014, sec. 3)
        return F.softplus(-logits)
    if kind == "minimax":  # the original objective: G minimises log(1 - sigmoid(D(G(z)))) (eq. 1)
        return -F.softplus(logits)
    if kind == "lsgan":  # Mao et al. 2017, eq. 2: 1/2 (D(G(z)) - c)^2
        return 0.5 * (logits - LSGAN_C).square()
    if kind in ("hinge", "wgan", "wgan-gp"):  # -D(G(z)) (SAGAN / BigGAN hinge; WGAN's critic for G)
        return -logits
    raise ValueError(f"--loss {kind!r}: expected one of {', '.join(LOSSES)}")


def d_fake_term(kind: str, logits: torch.Tensor) -> torch.Tensor:
    """D's per-sample loss on fakes."""
    if kind in ("ns", "minimax"):  # -log(1 - sigmoid(D(G(z))))
        return F.softplus(logits)
    if kind == "lsgan":  # 1/2 (D(G(z)) - a)^2
        return 0.5 * (logits - LSGAN_A).square()
    if kind == "hinge":  # max(0, 1 + D(G(z)))
        return F.relu(1 + logits)
    if kind in ("wgan", "wgan-gp"):  # the critic's D(G(z)) (Arjovsky et al. 2017 Algorithm 1; Gulrajani et al. 2017)
        return logits
    raise ValueError(f"--loss {kind!r}: expected one of {', '.join(LOSSES)}")


def d_real_term(kind: str, logits: torch.Tensor, drift: float = 0.0) -> torch.Tensor:
    """D's per-sample loss on reals (with ProGAN's drift ``drift * D(x)^2`` for wgan-gp)."""
    if kind in ("ns", "minimax"):  # -log(sigmoid(D(x)))
        return F.softplus(-logits)
    if kind == "lsgan":  # 1/2 (D(x) - b)^2
        return 0.5 * (logits - LSGAN_B).square()
    if kind == "hinge":  # max(0, 1 - D(x))
        return F.relu(1 - logits)
    if kind == "wgan":  # -D(x): the critic maximises D(x) - D(G(z)) (Arjovsky et al. 2017, Algorithm 1)
        return -logits
    if kind == "wgan-gp":  # -D(x) + drift D(x)^2 (ProGAN sec. A.1 keeps the critic near 0)
        return -logits + drift * logits.square()
    raise ValueError(f"--loss {kind!r}: expected one of {', '.join(LOSSES)}")


@torch.no_grad()
def clip_weights(module: torch.nn.Module, clip: float) -> None:
    """Clip every parameter's *effective* value to ``[-clip, clip]``: a layer with an equalised
    learning rate multiplies its stored weight by ``weight_gain`` (and its bias by ``bias_gain``) at
    run time, so its stored values are clipped to ``clip / gain``; the WGAN paper's constraint is on
    the weights the layer computes with."""
    for sub in module.modules():
        for name, param in sub.named_parameters(recurse=False):
            gain = getattr(sub, f"{name}_gain", 1.0)
            bound = clip / gain if isinstance(gain, (int, float)) and gain > 0 else clip
            param.clamp_(-bound, bound)


def fake_images(G, z, c, *, mixing: float, gen: torch.Generator, precision: str = "fp32", code_dim: int = 0,
                synthesis_emas: bool = False) -> torch.Tensor:
    """G's images for D's phase: no graph into G (it is frozen there). G's EMAs move (``w_avg``; with
    ``synthesis_emas`` StyleGAN3's magnitude EMAs too)."""
    with torch.no_grad():
        img, _ = run_G(G, z, c, mixing=mixing, gen=gen, update_emas=True, precision=precision, code_dim=code_dim,
                       synthesis_emas=synthesis_emas)
    return img


def g_main_loss(
    G, D, z, c, *, mixing: float, gen: torch.Generator, precision: str = "fp32", augment: "Augment | None" = None,
    kind: str = "ns", update_emas: bool = True,
):
    """G's adversarial loss per sample (non-saturating ``softplus(-D(G(z)))`` by default), and the
    fake logits. ``update_emas``: G's mapping moves ``w_avg`` (StyleGAN2-ADA; not NVIDIA's StyleGAN3)."""
    img, _ = run_G(G, z, c, mixing=mixing, gen=gen, update_emas=update_emas, precision=precision)
    logits = run_D(D, img, c, precision, augment, gen)
    return g_term(kind, logits), logits.detach()


def g_main_info_loss(
    G, D, z, c, *, mixing: float, gen: torch.Generator, precision: str = "fp32", augment: "Augment | None" = None,
    kind: str = "ns", info_codes: InfoCodes, info_cont_weight: float = 1.0, update_emas: bool = True,
):
    """:func:`g_main_loss` of a network with InfoGAN codes (the last entries of ``z``): also
    returns the unweighted ``-L_I`` per sample, from D's head Q in the same pass."""
    k = code_dim(info_codes)
    img, _ = run_G(G, z, c, mixing=mixing, gen=gen, update_emas=update_emas, precision=precision, code_dim=k)
    logits, params = run_DQ(D, img, c, precision, augment, gen)
    mi = info_loss(info_codes, params, z[:, z.shape[1] - k :], info_cont_weight)
    return g_term(kind, logits), logits.detach(), mi


def d_fake_loss(
    G, D, z, c, *, mixing: float, gen: torch.Generator, precision: str = "fp32", augment: "Augment | None" = None,
    kind: str = "ns", img: torch.Tensor | None = None,
):
    """D's loss on fakes per sample (``softplus(D(G(z)))`` by default), and the logits; G runs
    without a graph (or ``img`` are its images already)."""
    if img is None:
        img = fake_images(G, z, c, mixing=mixing, gen=gen, precision=precision)
    logits = run_D(D, img, c, precision, augment, gen)
    return d_fake_term(kind, logits), logits.detach()


def d_fake_info_loss(
    D, z, c, img: torch.Tensor, *, gen: torch.Generator, precision: str = "fp32", augment: "Augment | None" = None,
    kind: str = "ns", info_codes: InfoCodes, info_cont_weight: float = 1.0,
):
    """:func:`d_fake_loss` of G's images ``img`` with InfoGAN codes (the last entries of ``z``):
    also returns the unweighted ``-L_I`` per sample; Q's parameters are D's, so D minimises it too."""
    logits, params = run_DQ(D, img, c, precision, augment, gen)
    mi = info_loss(info_codes, params, z[:, z.shape[1] - code_dim(info_codes) :], info_cont_weight)
    return d_fake_term(kind, logits), logits.detach(), mi


def d_real_loss(
    D, real: torch.Tensor, c: torch.Tensor, *, precision: str = "fp32", augment: "Augment | None" = None,
    gen: torch.Generator | None = None, kind: str = "ns", drift: float = 0.0,
):
    """D's loss on reals per sample (``softplus(-D(x))`` by default), and the logits."""
    logits = run_D(D, real, c, precision, augment, gen)
    return d_real_term(kind, logits, drift), logits.detach()


def gradient_penalty(
    D, real: torch.Tensor, fake: torch.Tensor, c: torch.Tensor, *, gen: torch.Generator, grad_scale: float = 1.0,
    precision: str = "fp32", augment: "Augment | None" = None,
) -> torch.Tensor:
    """WGAN-GP's ``(||grad D(x_hat)||_2 - 1)^2`` per sample (Gulrajani et al. 2017, eq. 3) at
    ``x_hat = eps x + (1 - eps) G(z)``, ``eps ~ U[0, 1]`` per sample from ``gen``. The gradient is
    taken with the fp16 loss scale and unscaled, as R1's (:func:`r1_penalty`)."""
    eps = torch.rand([real.shape[0], 1, 1, 1], generator=gen, device=real.device, dtype=real.dtype)
    x_hat = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)
    logits = run_D(D, x_hat, c, precision, augment, gen)
    (grads,) = torch.autograd.grad(logits.sum() * grad_scale, x_hat, create_graph=True)
    norms = (grads.float() / grad_scale).square().sum(dim=[1, 2, 3]).add(1e-12).sqrt()
    return (norms - 1).square()


def r1_penalty(
    D,
    real: torch.Tensor,
    c: torch.Tensor,
    *,
    grad_scale: float = 1.0,
    precision: str = "fp32",
    augment: "Augment | None" = None,
    gen: torch.Generator | None = None,
) -> torch.Tensor:
    """``||grad_x D(x)||^2`` per sample: R1 (Mescheder et al. 2018, eq. 9) without ``gamma / 2``.

    With augmentation the gradient is with respect to the real image *before* it (StyleGAN2-ADA),
    so the double backward runs through the augmentation. ``grad_scale`` is the fp16 loss scale:
    the inner gradient is taken of the scaled logits (so it does not underflow) and unscaled before
    squaring, as the AMP recipe for gradient penalties does.
    """
    real = real.detach().requires_grad_(True)
    logits = run_D(D, real, c, precision, augment, gen)
    (grads,) = torch.autograd.grad(logits.sum() * grad_scale, real, create_graph=True)
    grads = grads.float() / grad_scale
    return grads.square().sum(dim=[1, 2, 3])


def path_lengths(
    G,
    z: torch.Tensor,
    c: torch.Tensor,
    *,
    mixing: float,
    gen: torch.Generator,
    grad_scale: float = 1.0,
    precision: str = "fp32",
    code_dim: int = 0,
    update_emas: bool = True,
) -> torch.Tensor:
    """``||J_w^T y||_2`` per sample (StyleGAN2 eq. 4), averaged over the ``ws`` of each sample."""
    img, ws = run_G(G, z, c, mixing=mixing, gen=gen, update_emas=update_emas, precision=precision, code_dim=code_dim)
    h, w = img.shape[2], img.shape[3]
    # y ~ N(0, I) / sqrt(H*W) makes the expected length independent of the resolution.
    y = torch.randn(img.shape, generator=gen, device=img.device, dtype=torch.float32) / math.sqrt(h * w)
    (grads,) = torch.autograd.grad((img.float() * y).sum() * grad_scale, ws, create_graph=True)
    grads = grads.float() / grad_scale  # [N, num_ws, w_dim]
    return grads.square().sum(dim=2).mean(dim=1).sqrt()


def pl_penalty(lengths: torch.Tensor, pl_mean: torch.Tensor) -> torch.Tensor:
    """``(length - a)^2`` per sample against the running mean ``a`` (already updated with this
    phase's lengths, see :func:`updated_pl_mean`)."""
    return (lengths - pl_mean.detach()).square()


def updated_pl_mean(pl_mean: torch.Tensor, lengths_mean: float, decay: float) -> torch.Tensor:
    """StyleGAN2's running mean of the path lengths, moved towards this phase's mean *before* the
    penalty is taken against it, in StyleGAN2-ADA's order: ``a' = lerp(a, mean(lengths), decay)``."""
    return pl_mean.detach().lerp(torch.full_like(pl_mean, lengths_mean), decay)


def pl_surrogate_weights(lengths: torch.Tensor, new_mean: torch.Tensor, lengths_mean: float, decay: float) -> torch.Tensor:
    """Per-sample weights ``w_i`` whose ``sum(w_i * length_i)`` has the gradient of the penalty
    ``sum_i (length_i - a')^2`` with ``a' = (1 - decay) a + decay * mean(lengths)``.

    StyleGAN2-ADA lets the gradient flow through ``mean(lengths)`` inside ``a'`` too. Its chain rule
    gives ``w_i = 2 (length_i - a') - 2 decay (mean(lengths) - a')``; with the mean taken over the
    phase's samples on every process, the gradient does not depend on how they are split.
    """
    a = new_mean.detach()
    return (2 * (lengths.detach() - a) - 2 * decay * (lengths_mean - a)).detach()


class PhaseEmas:
    """StyleGAN3's magnitude EMAs (G's ``magnitude_ema`` buffers) over one D_main phase, so that the
    phase's gradients do not depend on how its micro-batches are split over processes.

    Each layer moves its EMA towards its input's mean square and then uses it, in the same forward
    pass (NVIDIA's order). Left alone, a process's second micro-batch would render with the EMAs its
    first one moved, so one process over four micro-batches and two over two each would render
    different fakes. Instead every micro-batch starts from the phase's values, and after the phase the
    EMAs are the sample-weighted mean of what the micro-batches made of them:
    ``lerp(mean magnitude, ema, beta)``. The loop's buffer all-reduce (:func:`training.step.run_phase`)
    then averages that over processes: one move per D step towards the whole global batch's magnitude,
    NVIDIA's update when each GPU renders its share in one round (its 8-GPU reference setup)."""

    def __init__(self, G: torch.nn.Module) -> None:
        self.buffers = [b for name, b in G.named_buffers() if name.rsplit(".", 1)[-1] == "magnitude_ema"]
        self.start = [b.detach().clone() for b in self.buffers]
        self.sums = [torch.zeros_like(b, dtype=torch.float64) for b in self.buffers]
        self.count = 0

    @torch.no_grad()
    def begin_micro(self) -> None:
        for b, b0 in zip(self.buffers, self.start):
            b.copy_(b0)

    @torch.no_grad()
    def end_micro(self, n: int) -> None:
        for b, total in zip(self.buffers, self.sums):
            total.add_(b.double() * n)
        self.count += n

    @torch.no_grad()
    def finish(self) -> None:
        if self.count:
            for b, total in zip(self.buffers, self.sums):
                b.copy_(total / self.count)


# ---------------------------------------------------------------------------------------- the loss object
@dataclass(frozen=True)
class LossSettings:
    """The loss weights a phase needs (a view of :class:`training.config.TrainConfig`)."""

    r1_gamma: float
    r1_interval: int
    pl_weight: float
    pl_interval: int
    pl_batch_shrink: int
    mixing: float
    precision: str = "fp32"  # the networks' own precision argument (training.precision.network_precision)
    pl_decay: float = 0.01  # StyleGAN2's running-mean decay of the path lengths
    class_probs: tuple[float, ...] | None = None  # the fakes' label frequencies (the dataset's); None: uniform
    loss: str = "ns"  # the adversarial loss (LOSSES)
    gp_weight: float = 10.0  # wgan-gp: lambda of the gradient penalty (Gulrajani et al. 2017)
    drift: float = 0.001  # wgan-gp: ProGAN's epsilon_drift
    clip: float = 0.01  # wgan: D's effective weights are clipped to [-clip, clip] after each D step
    n_critic: int = 1  # D steps per G step (WGAN's n_critic)
    info_codes: InfoCodes = ()  # InfoGAN's codes, the last entries of z (NetworkConfig.info_codes)
    info_weight: float = 1.0  # InfoGAN's lambda (eq. 6) on -L_I, in G_main and D_main
    info_cont_weight: float = 1.0  # an extra factor on the continuous codes' terms of -L_I
    # Which phases move G's EMAs. StyleGAN2-ADA: w_avg in every phase that runs G. NVIDIA's StyleGAN3:
    # D_main only (g_phase_emas False), where the synthesis' magnitude EMAs move too (synthesis_emas).
    g_phase_emas: bool = True
    synthesis_emas: bool = False


# What D sees: images -> images with every random draw from the micro-batch's generator
# (training.augmentation.Augmentation); None: the images as they are.
Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


class StyleGAN2Loss:
    """The losses of StyleGAN2's four phases (Karras et al. 2020, sec. 3.1 and appendix B), one
    micro-batch at a time, as StyleGAN2-ADA's ``StyleGAN2Loss.accumulate_gradients`` does:

    * ``G_main``: non-saturating ``softplus(-D(aug(G(z))))``;
    * ``G_reg``: path length ``(||J_w^T y|| - a)^2`` on a batch shrunk by ``pl_batch_shrink``,
      weighted ``pl_weight * pl_interval`` (lazy regularisation), against the running mean ``a``
      that this object keeps (:attr:`pl_mean`);
    * ``D_main``: ``softplus(D(aug(G(z)))) + softplus(-D(aug(x)))``;
    * ``D_reg``: R1 ``gamma / 2 * ||grad_x D(aug(x))||^2``, weighted by ``r1_interval``: the gradient
      is taken with respect to the real image *before* augmentation, so the double backward runs
      through the augmentation.

    Each loss is a sum of per-sample terms divided by the phase's global sample count (``count``),
    so any split over micro-batches and processes gives the same gradient. Statistics are reported
    by name (:attr:`STATS`) as sums over samples. The caller (:func:`training.step.run_phase`) owns
    accumulation, the all-reduce and step skipping; :meth:`end_phase` tells this object whether the
    step was taken, so the running mean moves only with steps that count.
    """

    # Statistics each phase reports, by name, as sums over its samples (divided by the phase's
    # count for the mean). ``signs_real``: sum of sign(D(real)), ADA's overfitting heuristic r_t.
    STATS = {
        "G_main": ("loss_G", "scores_fake_G"),
        "G_reg": ("pl_penalty", "pl_length"),
        "D_main": ("loss_D", "scores_real", "scores_fake", "signs_real"),
        "D_reg": ("r1_penalty",),
    }

    def __init__(self, G: torch.nn.Module, D: torch.nn.Module, settings: LossSettings,
                 augment: Augment | None = None, fast: tuple | None = None) -> None:
        self.G, self.D, self.s, self.augment = G, D, settings, augment
        # ``fast``: (G, D) with compiled forward passes (training.speedups.compile_networks), used by the
        # phases whose backward is a plain one; the double-backward phases always use G and D.
        self.fast_G, self.fast_D = fast if fast is not None else (G, D)
        g_term(settings.loss, torch.zeros(1))  # an unknown --loss fails here, not mid-step
        self.stats = dict(self.STATS)
        if settings.loss == "wgan-gp":
            self.stats["D_main"] = self.STATS["D_main"] + ("gp_penalty",)
        if settings.info_codes:  # InfoGAN's -L_I, one statistic over G_main's and D_main's fakes
            self.stats["G_main"] = self.stats["G_main"] + ("info_loss",)
            self.stats["D_main"] = self.stats["D_main"] + ("info_loss",)
        self.pl_mean = torch.zeros([], device=next(G.parameters()).device)
        self._pending_pl_mean: torch.Tensor | None = None
        # The sigma of the blur of D's inputs (training.blur; StyleGAN3-R), set by the loop before each
        # step from the images shown so far; 0: none.
        self.blur_sigma = 0.0

    # -------------------------------------------------------------------------------- schedule
    def phases(self, step: int) -> list[str]:
        """The phases of iteration ``step`` (0-based): regularisers run when ``step`` hits their interval.
        With ``n_critic`` k > 1, G trains only at every k-th step, after k D steps (WGAN's Algorithm
        1), and path length counts G's steps."""
        s, names = self.s, []
        if (step + 1) % s.n_critic == 0:
            names.append("G_main")
            if s.pl_weight > 0 and (step // s.n_critic) % s.pl_interval == 0:
                names.append("G_reg")
        names.append("D_main")
        if s.r1_gamma > 0 and step % s.r1_interval == 0:
            names.append("D_reg")
        return names

    def double_backward(self, name: str) -> bool:
        """Whether phase ``name``'s backward differentiates a gradient: path length (``G_reg``), R1
        (``D_reg``) and WGAN-GP's penalty (``D_main`` with ``--loss wgan-gp``)."""
        return name in ("G_reg", "D_reg") or (name == "D_main" and self.s.loss == "wgan-gp")

    def pl_micro_batch(self, n: int) -> int:
        """Samples per micro-batch used by path-length regularisation (StyleGAN2 uses half)."""
        return max(1, n // self.s.pl_batch_shrink)

    def count(self, name: str, micro_sizes: Sequence[int], world_size: int) -> int:
        """Global number of samples a phase averages over (all processes, all rounds)."""
        if name == "G_reg":
            return sum(self.pl_micro_batch(n) for n in micro_sizes) * world_size
        return sum(micro_sizes) * world_size

    def networks(self, name: str) -> tuple[torch.nn.Module, torch.nn.Module]:
        """``(trained, frozen)`` for phase ``name``."""
        return (self.G, self.D) if name.startswith("G") else (self.D, self.G)

    # -------------------------------------------------------------------------------- phases
    def accumulate(
        self, name: str, micro_batches: Sequence, *, count: int, grad_scale: float,
        backward: Callable[[torch.Tensor], None], reduce: Callable[[list[torch.Tensor]], None],
    ) -> dict[str, torch.Tensor]:
        """Run phase ``name`` over this process's micro-batches (``.real``, ``.real_c``, ``.seed``),
        calling ``backward`` on each micro-batch's share of the loss; returns this process's
        statistics (float64 sums by name). ``reduce`` sums tensors over processes in place
        (the path-length mean is over the whole phase)."""
        device = self.pl_mean.device
        stats = {k: torch.zeros([], dtype=torch.float64, device=device) for k in self.stats[name]}
        if name == "G_reg":
            self._path_length_phase(micro_batches, count, grad_scale, backward, reduce, stats)
            return stats
        emas = PhaseEmas(self.G) if name == "D_main" and self.s.synthesis_emas else None
        for mb in micro_batches:
            gen = torch.Generator(device=mb.real.device).manual_seed(mb.seed)
            if emas is not None:
                emas.begin_micro()
            loss, per_sample = self._micro_loss(name, mb, gen, grad_scale)
            if emas is not None:
                emas.end_micro(mb.real.shape[0])
            backward(loss / count)
            for key, value in per_sample.items():
                stats[key] += value.double().sum()
        if emas is not None:
            emas.finish()
        return stats

    def end_phase(self, name: str, taken: bool) -> float | None:
        """After the optimizer step of ``name`` (``taken``: it was not skipped): commit the new
        path-length mean. Returns it for G_reg, else None."""
        pending, self._pending_pl_mean = self._pending_pl_mean, None
        if name != "G_reg" or pending is None or not taken:
            return None
        # The running mean of the path lengths (StyleGAN2 sec. 3.2), updated before its penalty.
        self.pl_mean.copy_(pending)
        return float(pending)

    def after_step(self, name: str, taken: bool) -> None:
        """After phase ``name``'s optimizer step: WGAN's weight clipping of D (Arjovsky et al. 2017,
        Algorithm 1, line 8)."""
        if name == "D_main" and taken and self.s.loss == "wgan":
            clip_weights(self.D, self.s.clip)

    def d_view(self) -> Augment | None:
        """What D sees of an image: blurred (StyleGAN3-R, while :attr:`blur_sigma` > 0), then augmented;
        ``None`` when neither."""
        sigma, augment = self.blur_sigma, self.augment
        if blur_taps(sigma) is None:
            return augment

        def view(images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
            images = blur_images(images, sigma)
            return images if augment is None else augment(images, gen)

        return view

    def _micro_loss(self, name: str, mb, gen: torch.Generator, grad_scale: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The summed (unnormalised) loss of one micro-batch and its per-sample statistics."""
        n, device, s, aug = mb.real.shape[0], mb.real.device, self.s, self.d_view()
        emas = s.g_phase_emas
        k, info = code_dim(s.info_codes), dict(info_codes=s.info_codes, info_cont_weight=s.info_cont_weight)
        G, D = (self.G, self.D) if self.double_backward(name) else (self.fast_G, self.fast_D)
        if name in ("G_main", "D_main"):
            z = sample_z(n, G.z_dim, gen, device, s.info_codes)
            c = sample_c(n, G.c_dim, gen, device, s.class_probs)
        if name == "G_main":
            common = dict(mixing=s.mixing, gen=gen, precision=s.precision, augment=aug, kind=s.loss, update_emas=emas)
            if s.info_codes:
                loss, fake, mi = g_main_info_loss(G, D, z, c, **common, **info)
            else:
                (loss, fake), mi = g_main_loss(G, D, z, c, **common), None
            stats = {"loss_G": loss.detach(), "scores_fake_G": fake}
            if mi is not None:
                loss = loss + s.info_weight * mi
                stats["info_loss"] = mi.detach()
            return loss.sum(), stats
        if name == "D_main":
            if s.loss == "wgan-gp" and G.c_dim:
                c = mb.real_c  # fakes of the reals' classes, so each interpolate between them has one label
            img = fake_images(G, z, c, mixing=s.mixing, gen=gen, precision=s.precision, code_dim=k,
                              synthesis_emas=s.synthesis_emas)
            if s.info_codes:
                loss_fake, fake, mi = d_fake_info_loss(D, z, c, img, gen=gen, precision=s.precision, augment=aug,
                                                       kind=s.loss, **info)
            else:
                mi = None
                loss_fake, fake = d_fake_loss(G, D, z, c, gen=gen, mixing=s.mixing, precision=s.precision,
                                              augment=aug, kind=s.loss, img=img)
            loss_real, real = d_real_loss(D, mb.real, mb.real_c, precision=s.precision, augment=aug, gen=gen,
                                          kind=s.loss, drift=s.drift if s.loss == "wgan-gp" else 0.0)
            loss = loss_fake + loss_real
            stats = {"loss_D": loss.detach(), "scores_real": real, "scores_fake": fake, "signs_real": real.sign()}
            if s.loss == "wgan-gp":
                gp = gradient_penalty(D, mb.real, img, mb.real_c, gen=gen, grad_scale=grad_scale,
                                      precision=s.precision, augment=aug)
                loss = loss + s.gp_weight * gp
                stats["gp_penalty"] = gp.detach()
            if mi is not None:  # Q's parameters are D's: D minimises -L_I on the fakes too (eq. 6)
                loss = loss + s.info_weight * mi
                stats["info_loss"] = mi.detach()
            return loss.sum(), stats
        if name == "D_reg":
            penalty = r1_penalty(self.D, mb.real, mb.real_c, grad_scale=grad_scale, precision=s.precision,
                                 augment=aug, gen=gen)
            return (penalty * (s.r1_gamma / 2 * s.r1_interval)).sum(), {"r1_penalty": penalty.detach()}
        raise ValueError(f"phase={name!r}: expected one of {', '.join(PHASES)}")

    def _path_lengths(self, mb, grad_scale: float) -> torch.Tensor:
        """Path lengths of one micro-batch's (smaller) G_reg batch, with the graph for backward."""
        device = mb.real.device
        gen = torch.Generator(device=device).manual_seed(mb.seed)
        m = self.pl_micro_batch(mb.real.shape[0])
        z = sample_z(m, self.G.z_dim, gen, device, self.s.info_codes)
        c = sample_c(m, self.G.c_dim, gen, device, self.s.class_probs)
        return path_lengths(self.G, z, c, mixing=self.s.mixing, gen=gen, grad_scale=grad_scale, precision=self.s.precision,
                            code_dim=code_dim(self.s.info_codes), update_emas=self.s.g_phase_emas)

    def _path_length_phase(self, micro_batches, count, grad_scale, backward, reduce, stats) -> None:
        """G_reg in StyleGAN2-ADA's order: update the running mean with this phase's lengths, then
        penalise against the updated mean. The mean is over the whole phase (all micro-batches of all
        processes), so the lengths of every micro-batch are computed first and kept for backward; one
        small all-reduce gives their global mean."""
        s = self.s
        lengths = [self._path_lengths(mb, grad_scale) for mb in micro_batches]
        total = torch.stack([torch.stack([l.detach().double().sum() for l in lengths]).sum(),
                             torch.tensor(float(sum(l.numel() for l in lengths)), dtype=torch.float64,
                                          device=self.pl_mean.device)])
        reduce([total])
        lengths_mean = float(total[0] / total[1].clamp(min=1))
        new_mean = updated_pl_mean(self.pl_mean, lengths_mean, s.pl_decay)
        for l in lengths:
            weights = pl_surrogate_weights(l, new_mean, lengths_mean, s.pl_decay)
            backward((weights * l).sum() * (s.pl_weight * s.pl_interval) / count)
            stats["pl_penalty"] += pl_penalty(l.detach(), new_mean).double().sum()
            stats["pl_length"] += l.detach().double().sum()
        self._pending_pl_mean = new_mean.detach()

    # -------------------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"pl_mean": self.pl_mean.detach().clone()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.pl_mean.copy_(state["pl_mean"])
