"""Shared contract every network configuration must honour (imported by tests/test_networks*.py).

A test class gives ``get_build_args()`` (the arguments of :func:`stylegan.build`) and inherits:
output shapes and dtypes of G, G.mapping, G.synthesis and D; finite outputs; seeded determinism;
an exact safetensors round trip; gradients reaching every parameter; labels changing the output of
conditional models.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch.nn.utils import parametrize

import stylegan

BATCH = 4


def weight_leaf(module: torch.nn.Module) -> torch.Tensor:
    """The trained tensor behind ``module.weight``: the parameter itself, or the original under a
    parametrization (spectral norm), whose ``weight`` is computed and holds no gradient."""
    if parametrize.is_parametrized(module, "weight"):
        return module.parametrizations.weight.original
    return module.weight


class NetworkContract:
    """Mixin of contract tests; subclasses are named ``Test...`` and override the class attributes."""

    build_args: dict[str, Any] = {}
    heavy: bool = True  # False for the big presets: no gradient or file round-trip test

    # ----- fixtures ---------------------------------------------------------------------------

    @pytest.fixture(scope="class")
    @classmethod
    def nets(cls) -> tuple[stylegan.Generator, stylegan.Discriminator]:
        return cls.make_nets()

    @classmethod
    def make_nets(cls) -> tuple[stylegan.Generator, stylegan.Discriminator]:
        """Build once per class. Noise strengths start at 0; make them non-zero, as after training,
        so that the noise inputs actually reach the image."""
        torch.manual_seed(0)  # weights only; every input below uses its own generator
        G, D = stylegan.build(**cls.build_args)
        with torch.no_grad():
            for name, p in G.named_parameters():
                if name.endswith("noise_strength"):
                    p.fill_(0.1)
        return G, D

    def stages(self, G: stylegan.Generator) -> list[tuple[int, float]]:
        """Full network; with progressive growth every stage mid-fade (each uses its own layers)."""
        if G.config.growth == "none":
            return [(G.img_resolution, 1.0)]
        return [(r, 0.5) for r in G.config.block_resolutions]

    def inputs(self, G: stylegan.Generator, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor | None]:
        gen = torch.Generator().manual_seed(seed)
        z = torch.randn(BATCH, G.z_dim, generator=gen)
        c = None
        if G.c_dim:
            c = torch.nn.functional.one_hot(torch.arange(BATCH) % G.c_dim, G.c_dim).float()
        return z, c

    # ----- shared tests -----------------------------------------------------------------------

    def test_shapes_and_dtypes(self, nets: Any) -> None:
        G, D = nets
        cfg = G.config
        z, c = self.inputs(G)
        with torch.no_grad():
            ws = G.mapping(z, c)
            assert ws.shape == (BATCH, G.num_ws, G.w_dim) and ws.dtype == torch.float32
            img = G.synthesis(ws)
            assert img.shape == (BATCH, cfg.img_channels, cfg.resolution, cfg.resolution)
            assert img.dtype == torch.float32  # fp16 blocks stay fp32 on CPU
            assert torch.isfinite(img).all()
            logits = D(img, c)
            assert logits.shape == (BATCH, 1) and logits.dtype == torch.float32
            assert torch.isfinite(logits).all()
        assert (G.img_resolution, G.img_channels, G.c_dim) == (cfg.resolution, cfg.img_channels, cfg.c_dim)
        assert G.mapping.num_ws == G.num_ws == G.synthesis.num_ws

    def test_seeded_determinism(self, nets: Any) -> None:
        G, _ = nets
        z, c = self.inputs(G)
        with torch.no_grad():
            a = G(z, c, generator=torch.Generator().manual_seed(5))
            b = G(z, c, generator=torch.Generator().manual_seed(5))
            other = G(z, c, generator=torch.Generator().manual_seed(6))
        assert torch.equal(a, b)
        if G.config.use_noise:
            assert not torch.equal(a, other)

    def test_save_load_round_trip(self, nets: Any, tmp_path: Any) -> None:
        if not self.heavy:
            pytest.skip("big preset: the round trip is tested on small configurations")
        G, D = nets
        path = tmp_path / "net.safetensors"
        stylegan.save_network(path, {"G": G, "D": D}, G.config, {"kimg": 12})
        loaded = stylegan.load_network(path)
        assert set(loaded) == {"G", "D"} and not loaded["G"].training
        z, c = self.inputs(G)
        was_training = G.training
        G.eval(), D.eval()
        try:
            with torch.no_grad():
                img = G(z, c, noise_mode="const")
                assert torch.equal(loaded["G"](z, c, noise_mode="const"), img)
                assert torch.equal(loaded["D"](img, c), D(img, c))
        finally:
            G.train(was_training), D.train(was_training)
        for name, module in (("G", G), ("D", D)):
            ref = module.state_dict()
            got = loaded[name].state_dict()
            assert ref.keys() == got.keys()
            assert all(torch.equal(ref[k], got[k]) for k in ref)

    def test_gradient_reaches_every_parameter(self, nets: Any) -> None:
        if not self.heavy:
            pytest.skip("big preset: gradients are tested on small configurations")
        G, D = nets
        z, c = self.inputs(G)
        G.zero_grad(set_to_none=True), D.zero_grad(set_to_none=True)
        try:
            for res, alpha in self.stages(G):
                G.set_growth(res, alpha), D.set_growth(res, alpha)
                D(G(z, c), c).square().sum().backward()
        finally:
            G.set_growth(G.img_resolution, 1.0), D.set_growth(D.img_resolution, 1.0)
        for net in (G, D):
            for name, p in net.named_parameters():
                assert p.grad is not None, f"{type(net).__name__}.{name} got no gradient"
                assert torch.isfinite(p.grad).all(), name
                assert p.grad.abs().sum() > 0, f"{type(net).__name__}.{name} got a zero gradient"
        G.zero_grad(set_to_none=True), D.zero_grad(set_to_none=True)

    def test_labels_change_outputs(self, nets: Any) -> None:
        G, D = nets
        if G.c_dim == 0:
            z, _ = self.inputs(G)
            with pytest.raises(ValueError, match="unconditional"):
                G(z, torch.zeros(BATCH, 3))
            return
        z, _ = self.inputs(G)
        c0 = torch.nn.functional.one_hot(torch.zeros(BATCH, dtype=torch.long), G.c_dim).float()
        c1 = torch.nn.functional.one_hot(torch.ones(BATCH, dtype=torch.long), G.c_dim).float()
        with torch.no_grad():
            img0, img1 = G(z, c0, noise_mode="const"), G(z, c1, noise_mode="const")
            assert not torch.allclose(img0, img1)
            assert not torch.allclose(D(img0, c0), D(img0, c1))
        with pytest.raises(ValueError, match="conditional"):
            G(z, None)

    def test_double_backward_for_regularizers(self, nets: Any) -> None:
        """R1 (gradient of D w.r.t. real images) and path length (gradient of G w.r.t. ws) need
        second derivatives through every layer."""
        if not self.heavy:
            pytest.skip("big preset")
        G, D = nets
        z, c = self.inputs(G)
        real = torch.randn(BATCH, G.img_channels, G.img_resolution, G.img_resolution, requires_grad=True)
        (grad,) = torch.autograd.grad(D(real, c).sum(), real, create_graph=True)
        D.zero_grad(set_to_none=True)
        grad.square().sum().backward()
        assert weight_leaf(D.b4.conv).grad is not None and weight_leaf(D.b4.conv).grad.abs().sum() > 0
        ws = G.mapping(z, c).detach().requires_grad_(True)
        img = G.synthesis(ws, noise_mode="const")
        (pl_grad,) = torch.autograd.grad((img * torch.randn_like(img)).sum(), ws, create_graph=True)
        G.zero_grad(set_to_none=True)
        pl_grad.square().sum().backward()
        assert weight_leaf(G.synthesis.blocks["b4"].conv1).grad.abs().sum() > 0
        G.zero_grad(set_to_none=True), D.zero_grad(set_to_none=True)
