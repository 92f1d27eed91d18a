"""DCGAN family (stylegan/dcgan.py): the shared network contract on small configs, the paper's 64x64
parameter count against a hand count, tanh output, N(0, 0.02) initialisation, batch normalisation
in files and modes, the projection discriminator, growth refusals and mixed precision."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F

import stylegan
from networks_contract import BATCH, NetworkContract, weight_leaf
from stylegan.dcgan import (
    INIT_STD,
    DCGANDiscriminator,
    DCGANGenerator,
    DiscriminatorBlock,
    DiscriminatorOutput,
    GeneratorBlock,
    GeneratorInput,
)
from stylegan.growth import check_stage

# Small DCGAN configs; use_noise=False says what is true of DCGAN (no noise inputs), so the
# contract's determinism test does not expect two noise seeds to give two images.
SMALL = dict(preset="tiny", family="dcgan", channel_base=256, channel_max=32, z_dim=16, use_noise=False)
# The paper's 64x64 LSUN network (fig. 1): z 100, G 1024 (4x4) -> 512 -> 256 -> 128 -> 3.
PAPER64 = dict(resolution=64, z_dim=100, channel_base=4096, channel_max=1024, img_channels=3)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _build(**overrides: Any) -> tuple[DCGANGenerator, DCGANDiscriminator]:
    torch.manual_seed(0)
    return stylegan.build(**{**SMALL, **overrides})


def _one_hot(labels: list[int], c_dim: int) -> torch.Tensor:
    return F.one_hot(torch.tensor(labels), c_dim).float()


# ----- the shared contract ------------------------------------------------------------------------


class DCGANContract(NetworkContract):
    """The contract, with its one StyleGAN-only test replaced: the double-backward test names
    StyleGAN2's layers (``D.b4.conv``, ``G.synthesis.blocks['b4'].conv1``)."""

    def test_double_backward_for_regularizers(self, nets: Any) -> None:
        G, D = nets
        z, c = self.inputs(G)
        real = torch.randn(BATCH, G.img_channels, G.img_resolution, G.img_resolution, requires_grad=True)
        (grad,) = torch.autograd.grad(D(real, c).sum(), real, create_graph=True)
        D.zero_grad(set_to_none=True)
        grad.square().sum().backward()
        top = weight_leaf(D.blocks[f"b{D.img_resolution}"].conv)  # the input layer (no BN)
        assert top.grad is not None and top.grad.abs().sum() > 0
        assert weight_leaf(D.blocks["b8"].conv).grad.abs().sum() > 0
        ws = G.mapping(z, c).detach().requires_grad_(True)
        img = G.synthesis(ws)
        (pl_grad,) = torch.autograd.grad((img * torch.randn_like(img)).sum(), ws, create_graph=True)
        G.zero_grad(set_to_none=True)
        pl_grad.square().sum().backward()
        assert weight_leaf(G.synthesis.blocks["b4"].fc).grad.abs().sum() > 0
        assert weight_leaf(G.synthesis.blocks[f"b{G.img_resolution}"].conv).grad.abs().sum() > 0
        G.zero_grad(set_to_none=True), D.zero_grad(set_to_none=True)


class TestDCGANUnconditionalRGB(DCGANContract):
    build_args = dict(SMALL, resolution=16, img_channels=3)


class TestDCGANConditionalGray(DCGANContract):
    """The demo's shape: 32x32 grayscale, 10 classes (BATCH=4 labels cover classes 0-3)."""

    build_args = dict(SMALL, resolution=32, img_channels=1, c_dim=10)


class TestDCGANConditionalSmallest(DCGANContract):
    build_args = dict(SMALL, resolution=8, img_channels=4, c_dim=3)


class TestDCGANSpectralNorm(DCGANContract):
    """spectral_norm='gd' (stylegan/spectral.py, applied by stylegan/families.py to every family):
    the transposed convs, the projections and the label embeddings are parametrized too."""

    build_args = dict(SMALL, resolution=16, c_dim=2, spectral_norm="gd")


# ----- architecture -------------------------------------------------------------------------------


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_paper_64x64_parameter_count() -> None:
    """Hand count of fig. 1's network and its mirror D (no biases; BN: gain + shift per channel)."""
    with torch.device("meta"):  # shapes only: nothing is allocated
        G, D = stylegan.build("tiny", family="dcgan", **PAPER64)
    g_project = 100 * 1024 * 4 * 4  # z -> 1024 x 4 x 4, one matrix multiplication
    g_convs = (1024 * 512 + 512 * 256 + 256 * 128 + 128 * 3) * 4 * 4  # transposed 4x4 convs
    g_bn = 2 * (1024 + 512 + 256 + 128)
    d_convs = (3 * 128 + 128 * 256 + 256 * 512 + 512 * 1024) * 4 * 4
    d_out = 1024 * 4 * 4  # 4x4 conv to one logit
    d_bn = 2 * (256 + 512 + 1024)  # none on the input layer
    assert _count(G) == g_project + g_convs + g_bn == 12_658_432
    assert _count(D) == d_convs + d_out + d_bn == 11_036_160
    assert _count(G.mapping) == 0 and G.w_dim == 100 and G.num_ws == 1
    # Fig. 1's feature maps, and D mirroring them.
    g_maps = [G.synthesis.blocks["b4"].channels] + [
        G.synthesis.blocks[f"b{r}"].conv.out_channels for r in (8, 16, 32, 64)
    ]
    assert g_maps == [1024, 512, 256, 128, 3]
    assert [D.blocks[f"b{r}"].conv.out_channels for r in (64, 32, 16, 8, 4)] == [128, 256, 512, 1024, 1]
    # Conditional: G's embedding (c_dim x z_dim) and the projection's wider input (the embedding's
    # z_dim features x 1024 x 4 x 4); D's projection (c_dim x channels(4)).
    with torch.device("meta"):
        Gc, Dc = stylegan.build("tiny", family="dcgan", c_dim=10, **PAPER64)
    assert _count(Gc) - _count(G) == 10 * 100 + 100 * 1024 * 4 * 4 == 1_639_400
    assert _count(Dc) - _count(D) == 10 * 1024
    assert Gc.w_dim == 200


def test_half_width_64x64_parameter_count() -> None:
    """channel_base 2048 / channel_max 512: G 512 -> 256 -> 128 -> 64 -> 3 and D 64 -> ... -> 512,
    the widths of dcgan.torch and PyTorch's DCGAN example (ngf = ndf = 64), hand-counted."""
    with torch.device("meta"):
        G, D = stylegan.build("tiny", family="dcgan", **dict(PAPER64, channel_base=2048, channel_max=512))
    g = 100 * 512 * 16 + (512 * 256 + 256 * 128 + 128 * 64 + 64 * 3) * 16 + 2 * (512 + 256 + 128 + 64)
    d = (3 * 64 + 64 * 128 + 128 * 256 + 256 * 512) * 16 + 512 * 16 + 2 * (128 + 256 + 512)
    assert (_count(G), _count(D)) == (g, d) == (3_576_704, 2_765_568)


def test_layer_structure_follows_the_paper() -> None:
    """BN after every G layer but the output and every D layer but the input; no bias anywhere;
    4x4 kernels, stride 2, padding 1 (the head: 4x4, no padding)."""
    G, D = _build(resolution=32)
    for name, m in list(G.named_modules()) + list(D.named_modules()):
        if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear)):
            assert m.bias is None, name
    for r in (8, 16, 32):
        block = G.synthesis.blocks[f"b{r}"]
        assert (block.conv.kernel_size, block.conv.stride, block.conv.padding) == ((4, 4), (2, 2), (1, 1))
        assert hasattr(block, "bn") == (r != 32)
    for r in (32, 16, 8):
        block = D.blocks[f"b{r}"]
        assert (block.conv.kernel_size, block.conv.stride, block.conv.padding) == ((4, 4), (2, 2), (1, 1))
        assert hasattr(block, "bn") == (r != 32)
    assert (D.blocks["b4"].conv.kernel_size, D.blocks["b4"].conv.padding) == ((4, 4), (0, 0))
    assert not any(isinstance(m, (torch.nn.MaxPool2d, torch.nn.AvgPool2d)) for m in D.modules())


def test_each_layer_computes_what_sec_3_says() -> None:
    """G: relu(BN(conv_transpose(x))) and x = relu(BN(reshape(W z))) at 4x4; D: lrelu_0.2(conv(img))
    at the input, lrelu_0.2(BN(conv(x))) after; each against its own formula, in train mode (batch
    statistics) on the real intermediate inputs."""
    G, D = _build(resolution=16)
    inputs, outputs, hooks = {}, {}, []

    def record(name: str, args: tuple, out: torch.Tensor) -> None:
        inputs[name], outputs[name] = args[0], out

    for name, m in list(G.synthesis.blocks.items()) + [("D" + k, v) for k, v in D.blocks.items()]:
        hooks.append(m.register_forward_hook(lambda mod, a, o, n=name: record(n, a, o)))
    z = torch.randn(8, G.z_dim, generator=_gen(9))
    try:
        with torch.no_grad():
            D(G(z))
    finally:
        for h in hooks:
            h.remove()

    def bn(x: torch.Tensor, m: torch.nn.BatchNorm2d) -> torch.Tensor:
        mean, var = x.mean(dim=(0, 2, 3), keepdim=True), x.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
        return (x - mean) / (var + m.eps).sqrt() * m.weight[:, None, None] + m.bias[:, None, None]

    b4, b8 = G.synthesis.blocks["b4"], G.synthesis.blocks["b8"]
    x4 = F.relu(bn((inputs["b4"] @ b4.fc.weight.T).reshape(8, 32, 4, 4), b4.bn))
    assert torch.allclose(outputs["b4"], x4, atol=1e-5)
    x8 = F.relu(bn(F.conv_transpose2d(inputs["b8"], b8.conv.weight, stride=2, padding=1), b8.bn))
    assert torch.allclose(outputs["b8"], x8, atol=1e-5) and (outputs["b8"] == 0).any()
    d16, d8 = D.blocks["b16"], D.blocks["b8"]
    y8 = F.leaky_relu(F.conv2d(inputs["Db16"], d16.conv.weight, stride=2, padding=1), 0.2)
    assert torch.allclose(outputs["Db16"], y8, atol=1e-5) and (outputs["Db16"] < 0).any()
    y4 = F.leaky_relu(bn(F.conv2d(inputs["Db8"], d8.conv.weight, stride=2, padding=1), d8.bn), 0.2)
    assert torch.allclose(outputs["Db8"], y4, atol=1e-5)


def test_output_is_tanh_of_the_last_transposed_conv() -> None:
    G, _ = _build(resolution=16, img_channels=3)
    last = G.synthesis.blocks["b16"]
    with torch.no_grad():
        last.conv.weight.mul_(300)  # push the pre-activations far beyond [-1, 1]
    seen = {}
    hook = last.register_forward_hook(lambda mod, args, out: seen.update(x=args[0]))
    try:
        with torch.no_grad():
            img = G(torch.randn(BATCH, G.z_dim, generator=_gen(0)))
    finally:
        hook.remove()
    pre = F.conv_transpose2d(seen["x"], last.conv.weight, stride=2, padding=1)
    assert pre.abs().max() > 5
    assert torch.allclose(img, torch.tanh(pre), atol=1e-6)
    assert img.abs().max() <= 1 and img.abs().max() > 0.999


def test_initialisation_statistics() -> None:
    """Sec. 4: weights N(0, 0.02); BN gains N(1, 0.02) and shifts 0 (authors' code); G's label
    embedding N(0, 1), on the scale of z."""
    G, D = _build(resolution=32, channel_base=8192, channel_max=256, z_dim=64, c_dim=20)
    gains = []
    for net in (G, D):
        for name, p in net.named_parameters():
            if name == "mapping.embed.weight":
                assert abs(p.std().item() - 1.0) < 0.05 and abs(p.mean().item()) < 0.05, name
            elif name.endswith("bn.weight"):
                gains.append(p.detach())
            elif name.endswith("bn.bias"):
                assert torch.equal(p, torch.zeros_like(p)), name
            else:
                assert p.ndim >= 2 and p.numel() >= 1000, name  # a conv / linear weight
                tol = 0.1 if p.numel() >= 10_000 else 0.2
                assert abs(p.std().item() / INIT_STD - 1) < tol, (name, p.std().item())
                assert abs(p.mean().item()) < 4 * INIT_STD / p.numel() ** 0.5, name
    gains = torch.cat(gains)
    assert gains.numel() >= 1000
    assert abs(gains.mean().item() - 1) < 0.005 and abs(gains.std().item() / INIT_STD - 1) < 0.1


# ----- mapping: the latent's own preparation -------------------------------------------------------


def test_mapping_is_z_and_label_embedding_with_w_avg_and_truncation() -> None:
    G, _ = _build(resolution=8, c_dim=3, w_avg_beta=0.9)
    z = torch.randn(BATCH, G.z_dim, generator=_gen(1))
    c = _one_hot([0, 1, 2, 1], 3)
    ws = G.mapping(z, c)
    assert ws.shape == (BATCH, 1, 2 * G.z_dim)
    assert torch.equal(ws[:, 0, : G.z_dim], z)
    assert torch.allclose(ws[:, 0, G.z_dim :], G.mapping.embed.weight.T[[0, 1, 2, 1]])
    assert torch.equal(G.mapping.w_avg, torch.zeros(G.w_dim))  # untouched without update_emas
    G.mapping(z, c, update_emas=True)
    expected = 0.1 * ws[:, 0].detach().mean(dim=0)  # lerp(mean, 0, 0.9)
    assert torch.allclose(G.mapping.w_avg, expected, atol=1e-7)
    psi = 0.7
    truncated = G.mapping(z, c, truncation_psi=psi)
    assert torch.allclose(truncated, G.mapping.w_avg + psi * (ws - G.mapping.w_avg), atol=1e-6)
    assert torch.equal(G.mapping(z, c, truncation_psi=psi, truncation_cutoff=1), truncated)
    assert torch.equal(G.mapping(z, c, truncation_psi=psi, truncation_cutoff=0), ws)
    with pytest.raises(ValueError, match=r"truncation_cutoff=2: expected None or an int in \[0, 1\]"):
        G.mapping(z, c, truncation_psi=psi, truncation_cutoff=2)
    with pytest.raises(ValueError, match=r"z: expected shape \[N, 16\]"):
        G(torch.randn(2, 5), c[:2])


def test_noise_arguments_are_validated_and_change_nothing() -> None:
    G, D = _build(resolution=8)
    G.eval()
    z = torch.randn(BATCH, G.z_dim, generator=_gen(2))
    with torch.no_grad():
        ref = G(z)
        for kwargs in (
            dict(noise_mode="const"), dict(noise_mode="none"), dict(generator=_gen(5)),
            dict(generator=[_gen(i) for i in range(BATCH)]), dict(fused_modconv=True), dict(precision="fp32"),
        ):
            assert torch.equal(G(z, **kwargs), ref), kwargs
    ws = G.mapping(z)
    for kwargs, match in (
        (dict(noise_mode="rand"), "noise_mode='rand'"),
        (dict(precision="fp8"), "precision='fp8': expected one of"),
        (dict(generator=[_gen(0)]), r"expected one generator per sample \(4\), got 1"),
        (dict(generator=3), "generator: expected None, a torch.Generator"),
        (dict(fused_modconv="yes"), "fused_modconv='yes'"),
    ):
        with pytest.raises(ValueError, match=match):
            G.synthesis(ws, **kwargs)
    with pytest.raises(ValueError, match=r"ws: expected shape \[N, 1, 16\]"):
        G.synthesis(torch.randn(2, 2, 16))
    with pytest.raises(ValueError, match=r"img: expected shape \[N, 3, 8, 8\] at growth resolution 8"):
        D(torch.randn(2, 3, 16, 16))
    with pytest.raises(ValueError, match="precision='half'"):
        D(torch.randn(2, 3, 8, 8), precision="half")


def test_ignored_fields_change_nothing() -> None:
    """The fields DCGAN ignores (module docstring) build the same network."""
    G, D = _build(resolution=16, c_dim=2)
    G2, D2 = _build(
        resolution=16, c_dim=2, w_dim=7, mapping_layers=5, mapping_lr_multiplier=1.0, g_architecture="orig",
        d_architecture="skip", conv_clamp=None, mbstd_group_size=2, mbstd_num_channels=0, d_mapping_layers=3,
        resample_filter=(1.0, 1.0), use_noise=True,
    )
    for a, b in ((G, G2), (D, D2)):
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ----- conditioning -------------------------------------------------------------------------------


def test_projection_discriminator() -> None:
    """Miyato & Koyama 2018, eq. 3: logit = conv4x4(phi) + <V c, sum_hw phi>, phi the 4x4 features."""
    _, D = _build(resolution=16, c_dim=3)
    D.eval()
    head = D.blocks["b4"]
    seen = {}
    hook = head.register_forward_hook(lambda mod, args, out: seen.update(phi=args[0]))
    img = torch.randn(BATCH, 3, 16, 16, generator=_gen(3))
    c = _one_hot([2, 0, 1, 2], 3)
    try:
        with torch.no_grad():
            logits = D(img, c)
    finally:
        hook.remove()
    phi = seen["phi"]
    assert phi.shape == (BATCH, 32, 4, 4)
    projection = (head.embed.weight.T[[2, 0, 1, 2]] * phi.sum(dim=(2, 3))).sum(1)
    expected = (phi * head.conv.weight[0]).sum(dim=(1, 2, 3)) + projection
    assert torch.allclose(logits[:, 0], expected, atol=1e-5)


def test_labels_reach_G_in_eval_mode() -> None:
    """In eval mode (running statistics) each class gives another image for the same z."""
    G, _ = _build(resolution=16, c_dim=4)
    G.eval()
    z = torch.randn(1, G.z_dim, generator=_gen(4)).repeat(4, 1)
    with torch.no_grad():
        img = G(z, _one_hot([0, 1, 2, 3], 4))
    diffs = [(img[i] - img[j]).abs().mean().item() for i in range(4) for j in range(i)]
    assert min(diffs) > 1e-3


# ----- batch normalisation ------------------------------------------------------------------------


def test_train_mode_couples_the_batch_eval_mode_does_not() -> None:
    G, D = _build(resolution=16)
    z = torch.randn(8, G.z_dim, generator=_gen(5))
    with torch.no_grad():
        G.train(), D.train()
        batch, alone = G(z), G(z[:2])
        assert not torch.allclose(batch[:2], alone, atol=1e-4)  # batch statistics
        assert not torch.allclose(D(batch)[:2], D(batch[:2]), atol=1e-4)
        G.eval(), D.eval()
        batch, alone = G(z), G(z[:2])
        assert torch.allclose(batch[:2], alone, atol=1e-5)  # running statistics: per sample
        assert torch.allclose(D(batch)[:2], D(batch[:2]), atol=1e-5)


def test_running_statistics_round_trip_through_a_network_file(tmp_path: Any) -> None:
    """BN's running mean / var and num_batches_tracked (int64) are buffers: saved, checked against
    the config from the header, loaded; the loaded modules render what the originals render in eval."""
    G, D = _build(resolution=16, c_dim=2)
    z, c = torch.randn(BATCH, G.z_dim, generator=_gen(6)), _one_hot([0, 1, 0, 1], 2)
    with torch.no_grad():
        for _ in range(3):  # train mode: move the running statistics away from their start
            D(G(z, c, update_emas=True), c)
    bn = G.synthesis.blocks["b4"].bn
    assert int(bn.num_batches_tracked) == 3 and not torch.equal(bn.running_var, torch.ones_like(bn.running_var))
    path = tmp_path / "dcgan.safetensors"
    stylegan.save_network(path, {"G": G, "D": D, "G_ema": G}, G.config, {"kimg": 1})
    info = stylegan.read_network_info(path)
    assert info.config.family == "dcgan"
    assert info.modules == {"G": "generator", "D": "discriminator", "G_ema": "generator"}
    assert info.dtypes["G.synthesis.blocks.b4.bn.num_batches_tracked"] == "I64"
    loaded = stylegan.load_network(path)
    assert isinstance(loaded["G_ema"], DCGANGenerator) and isinstance(loaded["D"], DCGANDiscriminator)
    for name, module in (("G", G), ("D", D)):
        ref, got = module.state_dict(), loaded[name].state_dict()
        assert ref.keys() == got.keys()
        assert all(torch.equal(ref[k], got[k]) and ref[k].dtype == got[k].dtype for k in ref)
    assert not torch.equal(loaded["G"].mapping.w_avg, torch.zeros(G.w_dim))
    G.eval(), D.eval()
    with torch.no_grad():
        img = G(z, c, truncation_psi=0.5)
        assert torch.equal(loaded["G_ema"](z, c, truncation_psi=0.5), img)
        assert torch.equal(loaded["D"](img, c), D(img, c))


# ----- growth and refusals ------------------------------------------------------------------------


def test_set_growth_accepts_only_the_full_stage() -> None:
    G, D = _build(resolution=16)
    for net in (G, D):
        net.set_growth(16, 1.0)
        assert (net.growth_resolution, net.growth_alpha) == (16, 1.0)
        for stage in ((8, 1.0), (16, 0.5), (4, 0.0)):
            with pytest.raises(ValueError) as got:
                net.set_growth(*stage)
            with pytest.raises(ValueError) as expected:
                check_stage(net.config, *stage)
            assert str(got.value) == str(expected.value) and "growth='none'" in str(got.value)


@pytest.mark.parametrize(
    "overrides, match",
    [
        (dict(growth="progressive"), "growth='progressive': DCGAN networks do not grow progressively"),
        (dict(resolution=4), "resolution=4: DCGAN needs a power of two >= 8"),
        (dict(family="dcgn"), "did you mean 'dcgan'"),
        (dict(resolution=16, attention=(8,)), "self-attention blocks exist in the stylegan2 family only"),
    ],
)
def test_bad_configs_are_refused(overrides: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        stylegan.build(**{**SMALL, **overrides})


def test_classes_refuse_another_family() -> None:
    cfg = stylegan.resolve_config("tiny", 8)
    for cls in (DCGANGenerator, DCGANDiscriminator):
        with pytest.raises(ValueError, match="family='stylegan2': the DCGAN networks"):
            cls(cfg)
        with pytest.raises(ValueError, match="config: expected a NetworkConfig"):
            cls(cfg.to_dict())


# ----- precision ----------------------------------------------------------------------------------

LOW = {"fp16": torch.float16, "bf16": torch.bfloat16}


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_low_precision_layers(precision: str) -> None:
    """num_fp16_res=2 at 32: G's b16 and b32 and D's b32 and b16 run in the low dtype (BN included);
    G's projection, the image (cast before tanh), D's b8 and head, the embeddings and the logits
    float32; the result stays close to float32's. 'auto' on the CPU is float32."""
    G, D = _build(resolution=32, c_dim=2, num_fp16_res=2)
    G.eval(), D.eval()
    low = LOW[precision]
    kinds = (GeneratorInput, GeneratorBlock, DiscriminatorBlock, DiscriminatorOutput,
             torch.nn.BatchNorm2d, torch.nn.Linear)
    seen, hooks = {}, []
    for prefix, net in (("G.", G), ("D.", D)):
        for name, m in net.named_modules():
            if isinstance(m, kinds):
                hooks.append(m.register_forward_hook(lambda mod, a, o, n=prefix + name: seen.update({n: o.dtype})))
    z, c = torch.randn(BATCH, G.z_dim, generator=_gen(7)), _one_hot([0, 1, 1, 0], 2)
    try:
        with torch.no_grad():
            img = G(z, c, precision=precision)
            logits = D(img, c, precision=precision)
    finally:
        for h in hooks:
            h.remove()
    assert {k: v for k, v in seen.items() if v != torch.float32} == {
        "G.synthesis.blocks.b16": low, "G.synthesis.blocks.b16.bn": low,
        "D.blocks.b32": low, "D.blocks.b16": low, "D.blocks.b16.bn": low,
    }
    assert {"G.mapping.embed", "G.synthesis.blocks.b4.fc", "G.synthesis.blocks.b32", "D.blocks.b8.bn",
            "D.blocks.b4", "D.blocks.b4.embed"} <= set(seen)
    assert img.dtype == logits.dtype == torch.float32
    with torch.no_grad():
        ref = G(z, c, precision="fp32")
        assert torch.equal(G(z, c, precision="auto"), ref)
        assert not torch.equal(img, ref)  # the output layer's conv did run in the low dtype
        tol = 0.02 if precision == "fp16" else 0.1
        assert (img - ref).abs().max() < tol
        assert (logits - D(ref, c, precision="fp32")).abs().max() < 10 * tol


@pytest.mark.gpu
def test_cuda_auto_precision_matches_fp32() -> None:
    G, D = _build(resolution=32, c_dim=2, num_fp16_res=2)
    G, D = G.cuda().eval(), D.cuda().eval()
    z = torch.randn(BATCH, G.z_dim, generator=_gen(8)).cuda()
    c = _one_hot([0, 1, 1, 0], 2).cuda()
    with torch.no_grad():
        for precision, tol in (("auto", 0.02), ("fp16", 0.02), ("bf16", 0.1)):
            img = G(z, c, precision=precision)
            ref = G(z, c, precision="fp32")
            assert img.dtype == torch.float32 and (img - ref).abs().max() < tol, precision
            logits = D(img, c, precision=precision)
            assert logits.dtype == torch.float32 and (logits - D(img, c, precision="fp32")).abs().max() < 10 * tol
    G.train(), D.train()
    img = G(z, c, precision="fp16")  # train mode: batch statistics of float16 activations
    D(img, c, precision="fp16").sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in G.parameters() if p.grad is not None)
