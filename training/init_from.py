"""``--init FILE``: start a new run from the weights of a trained network file.

This is fine-tuning and transfer learning (a face model adapted to paintings, a long run restarted
with other hyper-parameters), what StyleGAN2-ADA's users do with ``--resume=<pkl>``. Only the
weights come from the file: G, D and G_ema. The optimizers, the kimg counter, the path-length mean
and the progressive schedule start afresh; that is what separates it from ``--resume``, which
continues one run exactly from its ``state/``.

A file without a discriminator (an exported generator) leaves D at its fresh initialisation, and
G and G_ema stand in for each other when the file has only one of them. The file's network config
must equal the run's (preset sizes, resolution, channels, classes, growth): they decide what every
tensor means, so a mismatch is an error that lists the differing fields, never a partial copy.
Loading reads safetensors and JSON only (:mod:`stylegan.netfile`): no code from the file runs.

NVIDIA's StyleGAN2 and StyleGAN3 snapshots (``.pkl``) are accepted too, as ``--resume=<pkl>`` is in their code:
read by :mod:`stylegan.nvidia_pickle` (no code from them runs either) and converted in memory. Their
config is rebuilt from the pickled constructor arguments, so the run must build the same network
(:func:`network_config_from_file` gives it); ADA's augmentation probability is kept in the plan.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

import stylegan
from stylegan.config import NetworkConfig
from stylegan.nvidia_pickle import NvidiaNetwork, is_pickle_path, read_nvidia_pickle


@dataclass(frozen=True)
class InitPlan:
    """Which module of the file each network of the run starts from (``None``: fresh weights)."""

    path: Path
    sources: dict[str, str | None]  # "G", "D", "G_ema" -> module name in the file, or None
    kimg: float | None               # how long the file's networks had trained, if it says
    augment_p: float | None = None   # ADA's augmentation probability, when the file kept one
    note: str | None = None          # a line for the log about how the file was read


@functools.lru_cache(maxsize=1)
def _pickle(path: str, resolved: str, mtime_ns: int, size: int) -> NvidiaNetwork:
    """One conversion serves options_from_file, plan_init and apply_init (keyed by the file's stat)."""
    return read_nvidia_pickle(path)


def read_pickle(path: str | os.PathLike) -> NvidiaNetwork:
    """An NVIDIA ``.pkl`` as our networks (cached for the steps of one start-up)."""
    p = Path(path)
    if not p.is_file():
        raise stylegan.NvidiaPickleError(f"{p}: no such network file")
    st = p.stat()
    return _pickle(str(p), str(p.resolve()), st.st_mtime_ns, st.st_size)


@dataclass(frozen=True)
class _FileInfo:
    config: NetworkConfig
    modules: dict[str, str]  # name -> "generator" | "discriminator"
    metadata: dict[str, Any]


def _file_info(path: str | os.PathLike) -> _FileInfo:
    """Config, module kinds and metadata of a network file or an NVIDIA pickle (ValueError if neither)."""
    if is_pickle_path(path):
        net = read_pickle(path)
        kinds = {name: "discriminator" if name == "D" else "generator" for name in net.modules}
        return _FileInfo(net.config, kinds, {"augment_p": net.augment_p})
    info = stylegan.read_network_info(path)  # NetworkFileError is a ValueError
    return _FileInfo(info.config, dict(info.modules), info.metadata if isinstance(info.metadata, dict) else {})


def network_config_from_file(path: str | os.PathLike) -> NetworkConfig | None:
    """The network config of ``path`` (a network file or an NVIDIA ``.pkl``); None if unreadable.
    A run started from an NVIDIA pickle must build exactly this network (its preset is ``'nvidia'``
    unless the file equals one of ours)."""
    try:
        return _file_info(path).config
    except ValueError:
        return None


def _first(modules: dict[str, str], kind: str, preferred: tuple[str, ...]) -> str | None:
    names = [name for name, k in modules.items() if k == kind]
    for name in preferred:
        if name in names:
            return name
    return names[0] if names else None


def options_from_file(path: str | os.PathLike) -> dict[str, Any]:
    """The run options a network file implies: its preset, its width (``--cbase``, ``--cmax``, ``--map``,
    ``--mbstd-group``), and --no-cond for an unconditional one. A new
    ``--init`` run takes them unless given, so that fine-tuning a ``paper256`` file needs no
    ``--preset``. Empty when the file cannot be read (:func:`plan_init` then says why)."""
    config = network_config_from_file(path)
    if config is None:
        return {}
    # An unconditional file makes an unconditional run, labels or not. A conditional one leaves
    # --cond to its default (on when the dataset has labels); plan_init then checks the classes.
    options: dict[str, Any] = {"cond": False} if config.c_dim == 0 else {}
    if config.preset in stylegan.PRESETS:
        options["preset"] = config.preset
    # The width options decide the tensors' shapes: the run takes the file's.
    options.update(cbase=config.channel_base, cmax=config.channel_max, map=config.mapping_layers,
                   mbstd_group=config.mbstd_group_size)
    # ADA's augmentation probability when the file kept one: an --aug ada run starts p there.
    p = _number(_file_info(path).metadata.get("augment_p"))
    if p is not None and 0 <= p <= 1:
        options["p"] = p
    return options


def plan_init(path: str | os.PathLike, net_config: NetworkConfig) -> InitPlan:
    """Check that ``path`` can initialise networks built from ``net_config``; raise ``ValueError``
    (with every differing config field) when it cannot. Reads a network file's header only; an
    NVIDIA ``.pkl`` is read and converted (once; :func:`apply_init` reuses it)."""
    info = _file_info(path)
    # Float16 blocks and clamping decide how the layers compute, not what the tensors mean: a file
    # trained in fp16 can be fine-tuned in fp32 (and the reverse).
    # So does StyleGAN3's magnitude-EMA decay, which follows the run's batch (NVIDIA's 0.5 ** (batch / 20k)).
    layout = {"num_fp16_res": net_config.num_fp16_res, "conv_clamp": net_config.conv_clamp,
              "magnitude_ema_beta": net_config.magnitude_ema_beta}
    if info.config.replace(**layout) != net_config:
        ours, theirs = net_config.to_dict(), info.config.to_dict()
        diff = ", ".join(f"{k}: file {theirs[k]!r}, this run {ours[k]!r}" for k in ours if ours[k] != theirs.get(k))
        hint = (
            "the run must build the network the pickle describes (its config is rebuilt from NVIDIA's "
            "constructor arguments)" if is_pickle_path(path) else
            "start from a file of the same --preset, --growth, conditioning (--cond/--no-cond) and the "
            "dataset's resolution and channels"
        )
        raise ValueError(f"{path}: its networks differ from this run's ({diff}); {hint}")
    g = _first(info.modules, "generator", ("G", "G_ema"))
    if g is None:
        raise ValueError(f"{path}: the file holds no generator (modules: {info.modules})")
    sources = {
        "G": g,
        "G_ema": _first(info.modules, "generator", ("G_ema", "G")),
        "D": _first(info.modules, "discriminator", ("D",)),
    }
    kimg, p = _number(info.metadata.get("kimg")), _number(info.metadata.get("augment_p"))
    note = read_pickle(path).one_line() if is_pickle_path(path) else None
    return InitPlan(Path(path), sources, kimg, p, note)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _modules(plan: InitPlan) -> dict[str, nn.Module]:
    if is_pickle_path(plan.path):
        modules = read_pickle(plan.path).modules
        _pickle.cache_clear()  # the weights are copied next; do not keep a second set for the run
        return modules
    return stylegan.load_network(plan.path)


def apply_init(session: Any, plan: InitPlan) -> list[str]:
    """Copy the planned weights into ``session`` (G, D, G_ema on its device); returns log lines.
    Every process reads the file itself, as it reads ``--data``."""
    modules = _modules(plan)
    for target, source in plan.sources.items():
        if source is not None:
            getattr(session, target).load_state_dict(modules[source].state_dict(), strict=True)
    phase, alpha = session.schedule.at(session.progress.nimg)
    session.set_growth(phase.resolution, alpha)  # the run's schedule decides, not the file's stage
    trained = f" (trained {plan.kimg:g} kimg)" if plan.kimg is not None else ""
    copied = ", ".join(f"{t} <- {s}" for t, s in plan.sources.items() if s is not None)
    lines = [plan.note] if plan.note else []
    lines.append(f"initialised from {plan.path}{trained}: {copied}; optimizers, counters and schedules start afresh")
    if plan.sources["D"] is None:
        lines.append(f"note: {plan.path} has no discriminator; D starts from random weights (--seed)")
    return lines
