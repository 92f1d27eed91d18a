"""Spectral normalisation (Miyato et al. 2018) of a network's weights, with PyTorch's own
parametrization (``torch.nn.utils.parametrizations.spectral_norm``).

Each weight ``W`` (every parameter named ``weight`` with two or more dimensions, reshaped to a
matrix over its output dimension) is used as ``W / sigma(W)``, ``sigma`` its largest singular
value estimated by power iteration with the vectors ``u`` and ``v`` (buffers: they are part of
``state_dict``, so of ``state/`` and of network files, and resume exactly).

Two choices of ours:

* **When u moves.** PyTorch's parametrization runs one power iteration on every forward pass in
  training mode. Our phases run D several times per step (G's phase, D's phase, R1) and over a
  varying number of micro-batches, so u would move a layout-dependent number of times and two
  process layouts would no longer train alike. Here the parametrization never iterates on its own
  (its ``n_power_iterations`` is 0 after set-up); :func:`power_iteration` runs one iteration per
  network and optimizer step, before the step's phases, on every process alike: Miyato et al.'s
  "one power iteration per update" (sec. 2.1, Algorithm 1).
* **With equalised learning rate.** Our layers multiply their stored weight by
  ``weight_gain = lr_multiplier / sqrt(fan_in)`` at run time. Spectral normalisation makes the
  layer's weight scale-free, so that constant would only shrink every layer's output (its spectral
  norm would be ``weight_gain``, not 1). A normalised layer therefore computes with ``W / sigma(W)``
  itself (``weight_gain`` 1): its largest singular value is 1, as in the paper. Biases keep their
  gain. Layers that scale their styles rather than their weight (modulated convolutions, which
  demodulate anyway, and ToRGB) keep theirs.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrizations, parametrize


def _weight_gained_layers() -> tuple[type[nn.Module], ...]:
    from stylegan.layers import Conv2dLayer, FullyConnectedLayer

    return (Conv2dLayer, FullyConnectedLayer)


def _normalisations(net: nn.Module) -> list[nn.Module]:
    """The spectral-norm parametrizations of ``net``'s weights."""
    found = []
    for module in net.modules():
        if parametrize.is_parametrized(module, "weight"):
            found.extend(p for p in module.parametrizations.weight if hasattr(p, "_u"))
    return found


def apply_spectral_norm(net: nn.Module) -> nn.Module:
    """Spectrally normalise every weight of ``net`` in place (see the module docstring); returns it.
    The initial u and v come from 15 power iterations on the initial weights (PyTorch's set-up)."""
    gained = _weight_gained_layers()
    for module in list(net.modules()):
        weight = module._parameters.get("weight")
        if weight is None or weight.ndim < 2:
            continue
        # dim: PyTorch's default, the output dimension (1 for transposed convolutions, else 0).
        parametrizations.spectral_norm(module, "weight", n_power_iterations=1)
        if isinstance(module, gained):
            module.weight_gain = 1.0
    for sn in _normalisations(net):
        sn.n_power_iterations = 0  # u moves only in power_iteration()
    return net


def is_spectrally_normalised(net: nn.Module) -> bool:
    return bool(_normalisations(net))


@torch.no_grad()
def power_iteration(net: nn.Module) -> None:
    """One power iteration for every normalised weight of ``net``: updates u and v in place."""
    for module in net.modules():
        if not parametrize.is_parametrized(module, "weight"):
            continue
        for sn in module.parametrizations.weight:
            if not hasattr(sn, "_u"):
                continue
            was_training = sn.training
            sn.n_power_iterations = 1
            sn.train()
            try:
                getattr(module, "weight")  # the parametrization's forward runs the iteration
            finally:
                sn.n_power_iterations = 0
                sn.train(was_training)
