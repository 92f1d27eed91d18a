"""Worker for test_train_distributed.py, run under ``torchrun --nproc-per-node P`` (gloo on CPU).

Every process builds the same tiny G and D and the same global set of micro-batches (real images,
labels and per-micro-batch seeds); rank r takes its share. For each phase (G_main, G_reg, D_main,
D_reg) the processes run :func:`training.step.run_phase` together, and rank 0 also runs it alone
over *all* micro-batches. A recording "optimizer" captures the gradients each saw at ``step()``.
Then all processes take a few real Adam steps and compare their weights.

Rank 0 writes a JSON report to argv[1]: per phase the largest gradient difference (relative to the
gradient's scale), the difference against a wrong single-process reference that sees only rank 0's
data (which must be large, or the comparison proves nothing), the statistics, and the replica check.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import sys

import torch
import torch.nn.functional as F

import stylegan
from train_fixtures import RecordGrads
from training.augmentation import Augmentation
from stylegan.attention import SelfAttention
from training.distributed import Dist, module_fingerprint
from training.loss import PHASES, LossSettings
from training.step import MicroBatch
from train_fixtures import run_loss_phase

RES, C_DIM, N, ROUNDS = 8, 4, 4, 2


def global_micro_batches(world: int) -> list[MicroBatch]:
    gen = torch.Generator().manual_seed(1234)
    out = []
    for _ in range(world * ROUNDS):
        real = torch.rand([N, 1, RES, RES], generator=gen) * 2 - 1
        c = F.one_hot(torch.randint(0, C_DIM, [N], generator=gen), C_DIM).float()
        seed = int(torch.randint(0, 2**62, [1], generator=gen))
        out.append(MicroBatch(real, c, seed))
    return out


def phase_grads(name, G, D, micro, dist, settings, pl_mean, augment=None, blur_sigma=0.0):
    G, D = copy.deepcopy(G), copy.deepcopy(D)
    net = G if name.startswith("G") else D
    opt = RecordGrads(net.parameters())
    result = run_loss_phase(name, G, D, opt, micro, settings=settings, dist=dist, pl_mean=pl_mean, augment=augment,
                            blur_sigma=blur_sigma)
    return opt.grads, result, magnitude_emas(G)


def magnitude_emas(G: torch.nn.Module) -> torch.Tensor:
    """StyleGAN3's magnitude EMAs of ``G`` (empty for other families)."""
    found = [b.reshape(1) for n, b in G.named_buffers() if n.endswith("magnitude_ema")]
    return torch.cat(found) if found else torch.zeros(0)


# Variants: (loss, augmentation, network options, loss settings). Augmentation draws come from each
# micro-batch's generator: the same on any layout. ADA's pipeline runs at a fixed p = 0.5 (every
# transform group of bgc fires for some samples), DiffAugment whole. wgan-gp's gradient penalty has
# R1's double backward in D_main. "sn": spectrally normalised G and D (u fixed within a step, so every
# layout normalises alike). "attention": SAGAN blocks at 8x8 of a 16x16 G and D (the reals enlarged),
# their gates set to 0.5 so that the attention path carries gradient. "infogan": two codes and D's
# head Q, whose -L_I is in G_main and D_main.
# "sg3": StyleGAN3-T (4 layers) as NVIDIA's StyleGAN3 trains it: G's EMAs move in D_main only, where
# the magnitude EMAs move too (the rendered fakes depend on them), path length and mixing kept to
# exercise G_reg through its layers. "sg3-r-blur": config-R with D's inputs blurred (sigma 1) before
# ADA's pipeline, R1 through both.
CODES = (("cat", 3), ("cont", 1))
SG3 = {"g_phase_emas": False, "synthesis_emas": True}
SG3_NET = {"preset": "stylegan3-tiny", "sg3_layers": 4, "num_fp16_res": 0, "conv_clamp": None, "magnitude_ema_beta": 0.5}
VARIANTS = {
    "none": ("ns", lambda: None, {}, {}),
    "ada": ("ns", lambda: Augmentation("fixed", augpipe="bgc", p=0.5), {}, {}),
    "diffaug": ("ns", lambda: Augmentation("diffaug"), {}, {}),
    "wgan-gp": ("wgan-gp", lambda: None, {}, {}),
    "sn": ("ns", lambda: None, {"spectral_norm": "gd"}, {}),
    "attention": ("ns", lambda: None, {"resolution": 2 * RES, "attention": (RES,)}, {}),
    "infogan": ("ns", lambda: None, {"info_codes": CODES}, {"info_codes": CODES, "info_weight": 1.0}),
    "sg3": ("ns", lambda: None, SG3_NET, SG3),
    "sg3-r-blur": ("ns", lambda: Augmentation("fixed", augpipe="bgc", p=0.5),
                   {**SG3_NET, "preset": "stylegan3-r", "channel_base": 256, "channel_max": 16}, SG3),
}
BLUR = {"sg3-r-blur": 1.0}


def build_variant(network: dict) -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    options = dict(network)
    G, D = stylegan.build(options.pop("preset", "tiny"), options.pop("resolution", RES), 1, C_DIM, **options)
    for module in [*G.modules(), *D.modules()]:
        if isinstance(module, SelfAttention):
            module.gate.data.fill_(0.5)
    return G, D


def unused_beyond_two(phase: str, G: torch.nn.Module, D: torch.nn.Module) -> int:
    if phase == "D_reg":
        return sum(1 for n, _ in D.named_parameters() if n.startswith("b4.q_"))
    if phase == "G_reg" and G.config.family == "stylegan2":
        return sum(1 for n, _ in G.named_parameters() if n.endswith("torgb.bias")) - 2
    return 0


def at_resolution(micro: list[MicroBatch], res: int) -> list[MicroBatch]:
    if res == RES:
        return micro
    return [dataclasses.replace(m, real=F.interpolate(m.real, size=(res, res), mode="nearest")) for m in micro]


def max_rel_diff(a: list, b: list) -> float:
    if [x is None for x in a] != [x is None for x in b]:
        return float("inf")  # different parameters received gradients
    worst = 0.0
    for x, y in zip(a, b):
        if x is None:
            continue
        scale = max(float(y.abs().max()), 1e-12)
        worst = max(worst, float((x - y).abs().max()) / scale)
    return worst


def main(out_path: str) -> None:
    dist = Dist.from_accelerate()
    torch.manual_seed(0)
    G, D = stylegan.build("tiny", RES, 1, C_DIM)
    base_settings = LossSettings(r1_gamma=0.5, r1_interval=4, pl_weight=2.0, pl_interval=4,
                                 pl_batch_shrink=2, mixing=0.9)
    micro = global_micro_batches(dist.world_size)
    mine = micro[dist.rank * ROUNDS : (dist.rank + 1) * ROUNDS]
    pl_mean = torch.tensor(0.25)
    report: dict = {"world_size": dist.world_size, "phases": {}}
    for variant, (kind, make, network, extra) in VARIANTS.items():
        augment = make()
        settings = dataclasses.replace(base_settings, loss=kind, **extra)
        Gv, Dv = build_variant(network) if network else (G, D)
        all_micro = at_resolution(micro, Gv.img_resolution)
        own = all_micro[dist.rank * ROUNDS : (dist.rank + 1) * ROUNDS]
        blur = BLUR.get(variant, 0.0)
        for name in PHASES:
            grads, result, emas = phase_grads(name, Gv, Dv, own, dist, settings, pl_mean, augment, blur)
            if dist.rank == 0:
                ref, ref_result, ref_emas = phase_grads(name, Gv, Dv, all_micro, Dist(), settings, pl_mean, augment, blur)
                wrong, _, _ = phase_grads(name, Gv, Dv, all_micro[:ROUNDS], Dist(), settings, pl_mean, augment, blur)
                report["phases"][f"{variant}:{name}"] = {
                    # StyleGAN3's magnitude EMAs after the phase: the same on any layout, moved by D_main alone.
                    "emas_diff": float((emas - ref_emas).abs().max()) if emas.numel() else 0.0,
                    "emas_moved": float((emas - magnitude_emas(Gv)).abs().max()) if emas.numel() else None,
                    "num_grads": sum(g is not None for g in grads),
                    "num_params": len(grads),
                    # Beyond the two biases at RES 8 the test allows for: R1 (D_reg) reads D without its
                    # InfoGAN head Q, whose parameters get no gradient there; path length (G_reg) gives
                    # no ToRGB bias a gradient, and a 16x16 G has a third.
                    "unused_params": unused_beyond_two(name, Gv, Dv),
                    "max_rel_diff": max_rel_diff(grads, ref),
                    "wrong_ref_diff": max_rel_diff(grads, wrong) if [g is None for g in grads] == [g is None for g in wrong] else float("inf"),
                    "count": result.count,
                    "ref_count": ref_result.count,
                    "sums": result.sums,
                    "ref_sums": ref_result.sums,
                    "skipped": result.skipped,
                }

    # Replicas: a few real Adam steps on each process's own data must leave identical weights.
    G.train(), D.train()
    opt_G = torch.optim.Adam(G.parameters(), lr=0.002, betas=(0.0, 0.99))
    opt_D = torch.optim.Adam(D.parameters(), lr=0.002, betas=(0.0, 0.99))
    for step in range(3):
        for name in PHASES:
            run_loss_phase(name, G, D, opt_G if name.startswith("G") else opt_D, mine, settings=base_settings, dist=dist,
                      pl_mean=pl_mean)
    spread = dist.max_difference(module_fingerprint([G, D]))
    w_avg = G.mapping.w_avg.clone()
    spread_w_avg = dist.max_difference(w_avg)
    # The same with StyleGAN3's networks: its magnitude EMAs, like w_avg, stay identical on every process.
    G3, D3 = build_variant(SG3_NET)
    sg3_settings = dataclasses.replace(base_settings, **SG3)
    opt_G3 = torch.optim.Adam(G3.parameters(), lr=0.002, betas=(0.0, 0.99))
    opt_D3 = torch.optim.Adam(D3.parameters(), lr=0.002, betas=(0.0, 0.99))
    start_emas = magnitude_emas(G3)
    for step in range(2):
        for name in PHASES:
            run_loss_phase(name, G3, D3, opt_G3 if name.startswith("G") else opt_D3, mine, settings=sg3_settings,
                           dist=dist, pl_mean=pl_mean)
    sg3_spread = dist.max_difference(module_fingerprint([G3, D3]))
    sg3_emas_spread = dist.max_difference(magnitude_emas(G3))
    if dist.rank == 0:
        report["replica_spread"] = spread
        report["w_avg_spread"] = spread_w_avg
        report["w_avg_moved"] = float(w_avg.abs().sum())
        report["sg3_replica_spread"] = sg3_spread
        report["sg3_emas_spread"] = sg3_emas_spread
        report["sg3_emas_moved"] = float((magnitude_emas(G3) - start_emas).abs().max())
        with open(out_path, "w") as f:
            json.dump(report, f)
    dist.barrier()
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
