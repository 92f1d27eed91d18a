"""Network files: the tensors of G / D / G_ema plus the JSON config that rebuilds them.

Format ``stylegan-net/1``: one ``.safetensors`` file. Tensor names are ``<module>.<state_dict key>``
(``G_ema.mapping.w_avg``, ``D.b4.fc.weight``, ...); parameters and persistent buffers (``w_avg``,
``noise_const``) are stored. The safetensors metadata (string to string) holds:

* ``format``: ``"stylegan-net/1"``;
* ``config``: the :class:`~stylegan.config.NetworkConfig` as JSON;
* ``modules``: JSON object, module name to kind (``"generator"`` or ``"discriminator"``);
* ``growth``: JSON object, module name to ``[resolution, alpha]``, the progressive stage it was in;
* ``metadata``: the caller's JSON object (kimg, run name, ...).

Loading parses JSON and reads raw tensors only: nothing is unpickled and no code runs. Files are
written to a temporary name in the same folder and renamed into place.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from stylegan.config import NetworkConfig
from stylegan.discriminator import Discriminator
from stylegan.generator import Generator

FORMAT = "stylegan-net/1"
KINDS: dict[str, type[nn.Module]] = {"generator": Generator, "discriminator": Discriminator}
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class NetworkFileError(ValueError):
    """A file is not a network file, is damaged, or does not match its own config."""


@dataclass(frozen=True)
class NetworkInfo:
    """What a network file says about itself, read without building any module."""

    config: NetworkConfig
    modules: dict[str, str]  # name -> kind
    growth: dict[str, tuple[int, float]]
    metadata: dict[str, Any]
    tensors: dict[str, tuple[int, ...]]  # name -> shape


def _kind_of(name: str, module: nn.Module) -> str:
    for kind, cls in KINDS.items():
        if isinstance(module, cls):
            return kind
    raise ValueError(f"modules[{name!r}]: expected a Generator or Discriminator, got {type(module).__name__}")


def save_network(
    path: str | os.PathLike,
    modules: Mapping[str, nn.Module],
    config: NetworkConfig | Mapping[str, Any],
    metadata: Mapping[str, Any] | None = None,
) -> None:
    """Write ``modules`` (e.g. ``{'G': G, 'D': D, 'G_ema': G_ema}``) built from ``config`` to ``path``."""
    cfg = config if isinstance(config, NetworkConfig) else NetworkConfig.from_dict(config)
    if not modules:
        raise ValueError("modules: expected at least one module, e.g. {'G_ema': G_ema}")
    try:
        meta_json = json.dumps(dict(metadata or {}), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ValueError(f"metadata: expected a JSON-serialisable dict ({err})") from None
    kinds, growth, tensors = {}, {}, {}
    for name, module in modules.items():
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f"modules: name {name!r} must be an identifier without dots, e.g. 'G_ema'")
        kinds[name] = _kind_of(name, module)
        if module.config != cfg:
            diff = {k: v for k, v in module.config.to_dict().items() if cfg.to_dict()[k] != v}
            raise ValueError(f"modules[{name!r}]: built from a different config than `config` (differs in {diff})")
        growth[name] = [module.growth_resolution, module.growth_alpha]
        for key, tensor in module.state_dict().items():
            tensors[f"{name}.{key}"] = tensor.detach().to("cpu").contiguous().clone()
    header = {
        "format": FORMAT,
        "config": json.dumps(cfg.to_dict(), sort_keys=True),
        "modules": json.dumps(kinds),
        "growth": json.dumps(growth),
        "metadata": meta_json,
    }
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        save_file(tensors, str(tmp), metadata=header)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _json_field(path: Path, header: Mapping[str, str], key: str) -> Any:
    if key not in header:
        raise NetworkFileError(f"{path}: not a network file: the metadata has no {key!r} entry")
    try:
        return json.loads(header[key])
    except json.JSONDecodeError as err:
        raise NetworkFileError(f"{path}: metadata entry {key!r} is not valid JSON ({err})") from None


def read_network_info(path: str | os.PathLike) -> NetworkInfo:
    """Config, module kinds, growth stages, metadata and tensor shapes of a network file."""
    path = Path(path)
    if not path.is_file():
        raise NetworkFileError(f"{path}: no such network file")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except (SafetensorError, OSError) as err:
        raise NetworkFileError(f"{path}: not a readable safetensors file, or truncated ({err})") from None
    if header.get("format") != FORMAT:
        raise NetworkFileError(
            f"{path}: not a network file: metadata 'format' is {header.get('format')!r}, expected {FORMAT!r}"
        )
    try:
        config = NetworkConfig.from_dict(_json_field(path, header, "config"))
    except (TypeError, ValueError) as err:
        raise NetworkFileError(f"{path}: invalid network config: {err}") from None
    kinds = _json_field(path, header, "modules")
    if not isinstance(kinds, dict) or not kinds or any(k not in KINDS for k in kinds.values()):
        raise NetworkFileError(f"{path}: 'modules' must map names to one of {', '.join(KINDS)}, got {kinds!r}")
    growth = _json_field(path, header, "growth")
    if (
        not isinstance(growth, dict)
        or set(growth) != set(kinds)
        or not all(isinstance(v, list) and len(v) == 2 for v in growth.values())
    ):
        raise NetworkFileError(f"{path}: 'growth' must give [resolution, alpha] for each of {sorted(kinds)}")
    metadata = _json_field(path, header, "metadata")
    return NetworkInfo(
        config=config,
        modules=dict(kinds),
        growth={k: (v[0], v[1]) for k, v in growth.items()},
        metadata=metadata,
        tensors=shapes,
    )


def _check_tensors(path: Path, expected: Mapping[str, tuple[int, ...]], found: Mapping[str, tuple[int, ...]]) -> None:
    """Raise listing every missing, unexpected or mis-shaped tensor."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    wrong = sorted(k for k in set(expected) & set(found) if tuple(expected[k]) != tuple(found[k]))
    if not (missing or unexpected or wrong):
        return
    lines = [f"{path}: the tensors do not match the network config:"]
    lines += [f"  missing {k} {list(expected[k])}" for k in missing]
    lines += [f"  unexpected {k} {list(found[k])}" for k in unexpected]
    lines += [f"  shape of {k}: file {list(found[k])}, config {list(expected[k])}" for k in wrong]
    raise NetworkFileError("\n".join(lines))


def load_network(path: str | os.PathLike, device: torch.device | str | None = None) -> dict[str, nn.Module]:
    """Rebuild every module stored in ``path``, in eval mode, on ``device`` (default CPU)."""
    path = Path(path)
    info = read_network_info(path)
    modules = {name: KINDS[kind](info.config) for name, kind in info.modules.items()}
    expected = {f"{name}.{k}": tuple(v.shape) for name, m in modules.items() for k, v in m.state_dict().items()}
    _check_tensors(path, expected, info.tensors)
    try:
        with safe_open(str(path), framework="pt") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError) as err:
        raise NetworkFileError(f"{path}: could not read the tensors ({err})") from None
    for name, module in modules.items():
        prefix = f"{name}."
        state = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        module.load_state_dict(state, strict=True)
        try:
            module.set_growth(*info.growth[name])
        except ValueError as err:
            raise NetworkFileError(f"{path}: growth stage of {name!r}: {err}") from None
        module.eval()
        if device is not None:
            module.to(device)
    return modules
