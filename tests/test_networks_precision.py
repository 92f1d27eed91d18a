"""Mixed precision laid out as StyleGAN2-ADA (appendix D): which layer runs in which dtype, the
conv_clamp of every clamped layer, and the float16 overflow guard of the modulated conv."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import stylegan
from stylegan.layers import Conv2dLayer
from stylegan.modconv import SynthesisLayer, ToRGBLayer
from stylegan.precision import block_dtype, check_precision

LOW = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
# Leaf layers whose input and output dtypes say where a block's arithmetic happens.
LAYERS = ("SynthesisLayer", "ToRGBLayer", "Conv2dLayer", "FullyConnectedLayer", "MinibatchStdLayer")


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _record(model: torch.nn.Module) -> tuple[dict[str, tuple[torch.dtype, torch.dtype]], list]:
    """Hooks that record ``name -> (dtype of the first float input, dtype of the output)``."""
    seen: dict[str, tuple[torch.dtype, torch.dtype]] = {}

    def hook(mod, args, out, name):
        x = next(a for a in args if isinstance(a, torch.Tensor) and a.is_floating_point())
        y = out[0] if isinstance(out, tuple) else out
        seen[name] = (x.dtype, y.dtype)

    hooks = [
        m.register_forward_hook(lambda mod, a, o, name=name: hook(mod, a, o, name))
        for name, m in model.named_modules()
        if type(m).__name__ in LAYERS or name in ("mapping", "synthesis")
    ]
    return seen, hooks


def _expected_G(name: str, low: torch.dtype) -> torch.dtype:
    """Mapping and every affine (style) layer float32; blocks b32 and b16 low; b8 and b4 float32."""
    if name.startswith("mapping") or name.endswith("affine") or name == "synthesis":
        return torch.float32
    return low if name.startswith(("synthesis.blocks.b32.", "synthesis.blocks.b16.")) else torch.float32


def _expected_D(name: str, low: torch.dtype) -> torch.dtype:
    """Blocks b32 and b16 low; b8, the 4x4 epilogue (mbstd, conv, fc, out) and the label mapping float32."""
    return low if name.startswith(("blocks.b32.", "blocks.b16.")) else torch.float32


@pytest.mark.parametrize("precision", ["fp16", "bf16", "fp32"])
@pytest.mark.parametrize("g_arch,d_arch", [("skip", "resnet"), ("resnet", "skip"), ("orig", "orig")])
def test_layer_dtypes_follow_the_ada_layout(precision: str, g_arch: str, d_arch: str) -> None:
    torch.manual_seed(0)
    G, D = stylegan.build(
        "tiny", 32, num_fp16_res=2, conv_clamp=256, c_dim=2, g_architecture=g_arch, d_architecture=d_arch
    )
    assert [b.use_fp16 for b in G.synthesis.blocks.values()] == [False, False, True, True]
    low = LOW[precision]
    z, c = torch.randn(4, G.z_dim, generator=_gen(0)), torch.eye(2)[[0, 1, 0, 1]]
    seen_G, hooks_G = _record(G)
    seen_D, hooks_D = _record(D)
    try:
        img = G(z, c, precision=precision)
        logits = D(img, c, precision=precision)
    finally:
        for h in hooks_G + hooks_D:
            h.remove()
    assert img.dtype == logits.dtype == torch.float32
    for seen, expected in ((seen_G, _expected_G), (seen_D, _expected_D)):
        wrong = {name: io for name, io in seen.items() if io != (expected(name, low),) * 2}
        assert not wrong, f"layers in the wrong dtype under precision={precision!r}: {wrong}"
    # The layout reaches every kind of layer the test means to cover.
    assert {"mapping", "synthesis", "synthesis.blocks.b32.conv1", "synthesis.blocks.b16.conv0.affine"} <= set(seen_G)
    assert {"mapping", "blocks.b32.conv0", "blocks.b16.conv1", "blocks.b8.conv1", "b4.mbstd", "b4.out"} <= set(seen_D)
    if precision != "fp32":
        assert seen_G["synthesis.blocks.b32.torgb"] == (low, low)  # computed low, cast up before the sum


def test_block_dtype_rule() -> None:
    cpu, cuda, f32 = torch.device("cpu"), torch.device("cuda"), torch.float32
    assert block_dtype(True, "auto", cpu, f32) == f32  # float16 on a CPU only when asked for
    assert block_dtype(True, "auto", cuda, f32) == torch.float16
    assert block_dtype(True, "fp16", cpu, f32) == torch.float16
    assert block_dtype(True, "bf16", cpu, f32) == torch.bfloat16
    assert block_dtype(True, "bf16", cuda, torch.float64) == torch.bfloat16
    assert block_dtype(True, "fp32", cuda, f32) == f32
    for precision in ("auto", "fp16", "bf16"):
        assert block_dtype(False, precision, cuda, torch.float64) == torch.float64
    with pytest.raises(ValueError, match=r"precision='half': expected one of 'auto', 'fp32', 'fp16', 'bf16'"):
        check_precision("half")


# ---------------------------------------------------------------------------------------- clamping
def _clamped_layers(clamp: float | None) -> dict[str, torch.nn.Module]:
    torch.manual_seed(1)
    layers = {
        "synthesis": SynthesisLayer(8, 8, w_dim=4, resolution=8, conv_clamp=clamp),
        "synthesis_up": SynthesisLayer(8, 8, w_dim=4, resolution=16, up=2, conv_clamp=clamp),
        "torgb": ToRGBLayer(8, 3, w_dim=4, conv_clamp=clamp),
        "conv": Conv2dLayer(8, 8, kernel_size=3, activation="lrelu", conv_clamp=clamp),
        "conv_down": Conv2dLayer(8, 8, kernel_size=3, activation="lrelu", down=2, conv_clamp=clamp),
    }
    with torch.no_grad():  # weights and biases that push the outputs far beyond the clamp
        for layer in layers.values():
            layer.weight.mul_(20)
            layer.bias.fill_(5)
    return layers


def _run(name: str, layer: torch.nn.Module, x: torch.Tensor, w: torch.Tensor, gain: float) -> torch.Tensor:
    if name == "torgb":
        return layer(x, w)
    if name.startswith("synthesis"):
        return layer(x, w, noise_mode="const", gain=gain)
    return layer(x, gain=gain)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("gain", [1.0, math.sqrt(0.5)])
def test_conv_clamp_bounds_every_clamped_layer_in_any_dtype(dtype: torch.dtype, gain: float) -> None:
    """Clamped: |out| <= conv_clamp * gain (ToRGB: conv_clamp) in float32 too, as NVIDIA does. The
    same weights without a clamp exceed it, so the bound is the clamp's doing."""
    clamp = 2.0
    x = (torch.randn(2, 8, 8, 8, generator=_gen(2)) * 10).to(dtype)
    w = torch.randn(2, 4, generator=_gen(3)) * 3
    free, clamped = _clamped_layers(None), _clamped_layers(clamp)
    for name in clamped:
        bound = clamp * (1.0 if name == "torgb" else gain)
        with torch.no_grad():
            y_free = _run(name, free[name], x, w, gain)
            y = _run(name, clamped[name], x, w, gain)
        assert y.dtype == dtype, name
        assert float(y_free.float().abs().max()) > 2 * bound, name
        # The bound itself is rounded to `dtype` by clamp().
        assert float(y.float().abs().max()) <= bound * (1 + torch.finfo(dtype).eps), name
        assert bool(torch.isfinite(y).all()), name


# ------------------------------------------------------------------------------- float16 overflow
def test_fp16_modconv_prenormalises_instead_of_overflowing() -> None:
    """A weight and styles large enough that ``conv(x * s, w)`` overflows float16: the layer still
    gives float32's result, because the normalisation that eq. 3 cancels keeps it in range."""
    torch.manual_seed(4)
    layer = SynthesisLayer(16, 16, w_dim=4, resolution=8, use_noise=False)
    with torch.no_grad():
        layer.weight.mul_(1e4)
        layer.affine.bias.fill_(1e3)
    x = torch.randn(2, 16, 8, 8, generator=_gen(5)) * 10
    w = torch.randn(2, 4, generator=_gen(6))
    styles = layer.affine(w)
    naive = F.conv2d(x.half() * styles.half()[:, :, None, None], layer.weight.half(), padding=1)
    assert not torch.isfinite(naive).all()  # what a plain float16 modulated conv would give
    ref = layer(x, w)
    for fused in (True, False):
        y = layer(x.half(), w, fused_modconv=fused)
        assert y.dtype == torch.float16 and bool(torch.isfinite(y).all())
        torch.testing.assert_close(y.float(), ref, rtol=0.02, atol=0.02)
