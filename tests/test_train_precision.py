"""Mixed-precision training: --precision reaches G and D as their own precision argument (no
autocast), and a training step in fp16 / bf16 has finite gradients close to fp32's."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
import torch.nn.functional as F

import stylegan
from train_fixtures import RecordGrads
from training.distributed import Dist
from training.precision import make_scaler, network_precision
from training.loss import PHASES, LossSettings
from training.step import MicroBatch
from train_fixtures import run_loss_phase

LOW = {"fp16": torch.float16, "bf16": torch.bfloat16}


def _setup():
    torch.manual_seed(0)
    G, D = stylegan.build("tiny", 32, num_fp16_res=2, conv_clamp=256, c_dim=2)
    gen = torch.Generator().manual_seed(1)
    real = torch.rand([4, 3, 32, 32], generator=gen) * 2 - 1
    c = F.one_hot(torch.tensor([0, 1, 1, 0]), 2).float()
    return G.train(), D.train(), [MicroBatch(real, c, seed=7)]


def _settings(precision: str) -> LossSettings:
    return LossSettings(r1_gamma=1.0, r1_interval=4, pl_weight=2.0, pl_interval=4, pl_batch_shrink=2, mixing=0.9,
                        precision=network_precision(precision))


def _phase(name, G, D, micro, precision, scaler=None):
    G, D = copy.deepcopy(G), copy.deepcopy(D)
    opt = RecordGrads((G if name.startswith("G") else D).parameters())
    result = run_loss_phase(name, G, D, opt, micro, settings=_settings(precision), dist=Dist(),
                       pl_mean=torch.tensor(0.5), scaler=scaler)
    return opt.grads, result


def test_network_precision_is_the_trainers_name():
    assert [network_precision(p) for p in ("fp32", "fp16", "bf16")] == ["fp32", "fp16", "bf16"]
    with pytest.raises(ValueError, match="--precision='fp64': expected one of fp32, fp16, bf16"):
        network_precision("fp64")


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_training_step_in_reduced_precision_has_finite_gradients_close_to_fp32(precision):
    G, D, micro = _setup()
    for name in PHASES:
        ref, _ = _phase(name, G, D, micro, "fp32")
        scaler = make_scaler(precision, torch.device("cpu"))
        scale = None if scaler is None else scaler.get_scale()
        grads, result = _phase(name, G, D, micro, precision, scaler)
        assert not result.skipped, name
        assert grads, f"{name}: the optimizer took no step (a non-finite gradient under the loss scaler)"
        if scaler is not None:
            assert scaler.get_scale() == scale, f"{name}: the loss scale backed off (an overflow)"
        got = torch.cat([g.flatten() for g, r in zip(grads, ref) if r is not None])
        want = torch.cat([r.flatten() for r in ref if r is not None])
        assert bool(torch.isfinite(got).all()), name
        # Measured on this setup: at most 0.04 (fp16) and 0.075 (bf16, 8-bit mantissa). Single
        # scalars such as a noise strength, sums of many cancelling terms, can be 20-60% off.
        err = float((got - want).norm() / want.norm())
        assert err < 0.15, f"{name}: relative gradient error vs fp32 {err:.3g}"


# ----- bf16 double backward on a CPU: around oneDNN --------------------------------------------------------
# oneDNN's bfloat16 convolution gets some of the shapes a double backward makes wrong on AMX CPUs
# (training/precision.py: onednn_unsafe); R1's gradient was 0.27 off fp32 there, path length's 0.14.


@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16"])
@pytest.mark.parametrize("loss", ["ns", "wgan-gp"])
def test_bf16_double_backward_on_a_cpu_runs_without_onednn(precision, loss):
    """The backward of exactly the phases that differentiate a gradient (path length, R1, WGAN-GP's
    penalty) runs with oneDNN off, only for bf16; the flag is back on after each phase."""
    G, D, micro = _setup()
    settings = dataclasses.replace(_settings(precision), loss=loss)
    for name in PHASES:
        if loss == "wgan-gp" and name == "D_reg":
            continue  # WGAN-GP has no R1
        net = G if name.startswith("G") else D
        seen: list[bool] = []
        param = next(p for n, p in net.named_parameters() if "b32" in n)  # in a reduced-precision block
        handle = param.register_hook(lambda g: seen.append(torch.backends.mkldnn.enabled))
        try:
            run_loss_phase(name, G, D, RecordGrads(net.parameters()), micro, settings=settings, dist=Dist(),
                           pl_mean=torch.tensor(0.5), scaler=make_scaler(precision, torch.device("cpu")))
        finally:
            handle.remove()
        double = name in ("G_reg", "D_reg") or (name == "D_main" and loss == "wgan-gp")
        assert seen and set(seen) == {not (double and precision == "bf16")}, (name, seen)
        assert torch.backends.mkldnn.enabled, name


def test_without_onednn_restores_the_setting_and_does_nothing_when_inactive():
    from training.precision import onednn_unsafe, without_onednn

    assert onednn_unsafe("bf16", torch.device("cpu"))
    assert not onednn_unsafe("fp32", torch.device("cpu")) and not onednn_unsafe("fp16", torch.device("cpu"))
    assert not onednn_unsafe("bf16", torch.device("cuda"))
    with without_onednn(False):
        assert torch.backends.mkldnn.enabled
    with pytest.raises(RuntimeError, match="inside"):
        with without_onednn():
            assert not torch.backends.mkldnn.enabled
            raise RuntimeError("inside")
    assert torch.backends.mkldnn.enabled


def test_a_bf16_convolution_double_backward_without_onednn_is_close_to_fp32():
    """The smallest case of the fault: the weight gradient of ||d/dx sum(v * conv(x, w))||^2 for a
    3x3 convolution with padding 1 (D's conv0). On an AMX CPU with oneDNN it is ~100% off
    (2026-12-03); without oneDNN it is within bfloat16's rounding of float32's (0.3% measured)."""
    from training.precision import without_onednn

    gen = torch.Generator().manual_seed(0)
    x0, v = torch.randn([4, 32, 32, 32], generator=gen), torch.randn([4, 32, 32, 32], generator=gen)
    w0 = torch.randn([32, 32, 3, 3], generator=gen) / 3 / 32**0.5

    def weight_grad(dtype):
        x, w = x0.to(dtype).clone().requires_grad_(True), w0.clone().requires_grad_(True)
        y = F.conv2d(x, w.to(dtype), padding=1)
        (gx,) = torch.autograd.grad((y.float() * v).sum(), x, create_graph=True)
        gx.float().square().sum().backward()
        return w.grad

    want = weight_grad(torch.float32)
    with without_onednn():
        got = weight_grad(torch.bfloat16)
    assert float((got - want).norm() / want.norm()) < 0.02


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_training_runs_only_the_top_blocks_in_reduced_precision(precision):
    """Through the loss code: the mapping and D's epilogue see float32, the top blocks the low dtype
    (an autocast around the step would turn the float32 layers low too)."""
    G, D, micro = _setup()
    seen: dict[str, torch.dtype] = {}
    mods = {"G.mapping": G.mapping, "G.b8": G.synthesis.blocks["b8"].conv1, "G.b32": G.synthesis.blocks["b32"].conv1,
            "D.b32": D.blocks["b32"].conv1, "D.b8": D.blocks["b8"].conv1, "D.fc": D.b4.fc, "D.mapping": D.mapping}
    hooks = [m.register_forward_hook(lambda mod, a, out, k=k: seen.__setitem__(k, out.dtype)) for k, m in mods.items()]
    try:
        run_loss_phase("G_main", G, D, RecordGrads(G.parameters()), micro, settings=_settings(precision), dist=Dist(),
                  pl_mean=torch.tensor(0.0), scaler=make_scaler(precision, torch.device("cpu")))
    finally:
        for h in hooks:
            h.remove()
    low = LOW[precision]
    assert seen == {"G.mapping": torch.float32, "G.b8": torch.float32, "G.b32": low,
                    "D.b32": low, "D.b8": torch.float32, "D.fc": torch.float32, "D.mapping": torch.float32}


def test_only_fp16_gets_a_loss_scaler():
    """bfloat16 has float32's range; float16 starts at 2**10 (see training/precision.py)."""
    cpu = torch.device("cpu")
    scaler = make_scaler("fp16", cpu)
    assert isinstance(scaler, torch.amp.GradScaler) and scaler.get_scale() == 2.0**10
    assert make_scaler("bf16", cpu) is None and make_scaler("fp32", cpu) is None


# ----- bf16 on a CPU without native bfloat16 -------------------------------------------------------------

AVX2_ONLY = "processor\t: 0\nflags\t\t: fpu sse sse2 avx avx2 fma bmi2\n"
AVX512_BF16 = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512bw avx512_bf16 amx_tile\n"
ARM_BF16 = "processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n"


def test_cpu_native_bf16_from_the_flags():
    from training.precision import cpu_has_native_bf16

    assert cpu_has_native_bf16(AVX2_ONLY) is False
    assert cpu_has_native_bf16(AVX512_BF16) is True
    assert cpu_has_native_bf16(ARM_BF16) is True
    assert cpu_has_native_bf16("model name\t: something\n") is None  # cannot tell: no warning


def test_bf16_warning_only_for_a_cpu_without_native_bf16(monkeypatch):
    import training.precision
    from training.precision import precision_warning

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    line = precision_warning("bf16", cpu, native_bf16=False)
    assert line.startswith("warning: --precision bf16") and "slower than fp32" in line and "\n" not in line
    assert precision_warning("bf16", cpu, native_bf16=True) is None
    assert precision_warning("fp32", cpu, native_bf16=False) is None
    assert precision_warning("bf16", cuda, native_bf16=False) is None
    for detected, warns in ((False, True), (True, False), (None, False)):  # by default: this CPU's flags
        monkeypatch.setattr(training.precision, "cpu_has_native_bf16", lambda: detected)
        assert (precision_warning("bf16", cpu) is not None) == warns
