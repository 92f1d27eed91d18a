"""Network files: the tensors of G / D / G_ema plus the JSON config that rebuilds them.

Format ``stylegan-net/1``: one ``.safetensors`` file. Tensor names are ``<module>.<state_dict key>``
(``G_ema.mapping.w_avg``, ``D.b4.fc.weight``, ...); parameters and persistent buffers (``w_avg``,
``noise_const``) are stored. The safetensors metadata (string to string) holds:

* ``format``: ``"stylegan-net/1"``;
* ``config``: the :class:`~stylegan.config.NetworkConfig` as JSON;
* ``modules``: JSON object, module name to kind (``"generator"`` or ``"discriminator"``);
* ``growth``: JSON object, module name to ``[resolution, alpha]``, the progressive stage it was in;
* ``metadata``: the caller's JSON object (kimg, run name, ...); a ``class_names`` list there (one
  name per class) is what the generation tools accept as ``--class NAME``.

Loading parses JSON and reads raw tensors only: nothing is unpickled and no code runs. Every size a
file can ask for is bounded (``MAX_*`` here, ``LIMITS`` in :mod:`stylegan.config`) and every
tensor's name, shape and dtype is checked against the config from the header before a module is
built; each refusal is one line (docs/networks.md, "Limits"). Files are written to a temporary name
in the same folder and renamed into place, with the mode the umask gives; a failed write raises
``OSError`` naming the file and the reason (``No space left on device``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from stylegan.config import NetworkConfig
from stylegan.families import BUILDERS, kind_of
from stylegan.growth import check_stage

FORMAT = "stylegan-net/1"
KINDS = BUILDERS  # kind -> builder from the config (any family)
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
# Bounds on what a file may ask of the reader (docs/networks.md, "Limits"). A 1024x1024 config-f
# file with G, D and G_ema holds about 400 tensors in a header of about 60 KB.
MAX_HEADER_BYTES = 4 * 2**20
MAX_TENSORS = 4096
MAX_MODULES = 8
MAX_MESSAGE = 4000  # characters of an error line: the tensor lists of a real mismatch fit
_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
           torch.int64: "I64", torch.int32: "I32", torch.uint8: "U8", torch.bool: "BOOL"}


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
    dtypes: dict[str, str] = field(default_factory=dict)  # name -> safetensors dtype ("F32", ...)


def _kind_of(name: str, module: nn.Module) -> str:
    kind = kind_of(module)
    if kind is None:
        raise ValueError(f"modules[{name!r}]: expected a Generator or Discriminator, got {type(module).__name__}")
    return kind


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
    # safetensors itself writes a private (0600) temporary file beside its target and renames it;
    # giving it a target inside our own temporary folder keeps every partial file under one name
    # a later clean-up recognises, ``.<name>.<hex>.tmp``.
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        tmp.mkdir()
        save_file(tensors, str(tmp / "network.safetensors"), metadata=header)
        os.chmod(tmp / "network.safetensors", file_mode())
        os.replace(tmp / "network.safetensors", path)
    except SafetensorError as err:  # an I/O error inside the serialiser: keep its errno, drop the chain
        code = _errno_of(err)
        raise OSError(code, os.strerror(code) if code else str(err), str(path)) from None
    except OSError as err:
        raise OSError(err.errno, err.strerror or str(err), str(path)) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _errno_of(err: Exception) -> int:
    """The ``(os error N)`` that safetensors' Rust writer puts in its message, or 0."""
    found = re.search(r"os error (\d+)", str(err))
    return int(found.group(1)) if found else 0


def file_mode() -> int:
    """The mode a new file gets from the process's umask (``0o644`` under the usual ``022``)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:  # Linux: read without changing it
            for line in f:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: the only portable way to read it is to set it
    os.umask(mask)
    return 0o666 & ~mask


def _fail(path: Path, message: str) -> NetworkFileError:
    """One line, at most :data:`MAX_MESSAGE` characters: a hostile file's text can be megabytes."""
    line = " ".join(f"{path}: {message}".split())
    return NetworkFileError(line if len(line) <= MAX_MESSAGE else line[: MAX_MESSAGE - 3] + "...")


def _loads(path: Path, text: str | bytes, what: str) -> Any:
    try:
        return json.loads(text)
    except RecursionError:
        raise _fail(path, f"{what} is JSON nested too deeply") from None
    except ValueError as err:  # JSONDecodeError, and ints longer than Python parses
        raise _fail(path, f"{what} is not valid JSON ({err})") from None


def _json_field(path: Path, header: Mapping[str, str], key: str) -> Any:
    if key not in header:
        raise _fail(path, f"not a network file: the metadata has no {key!r} entry")
    return _loads(path, header[key], f"metadata entry {key!r}")


def _check_header(path: Path) -> None:
    """Refuse, before the safetensors reader parses it, a header that is oversized or holds too many
    tensors: parsing a 100 MB header of empty tensors alone takes seconds (safetensors' own limit)."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            size = os.fstat(f.fileno()).st_size
            n = int.from_bytes(head, "little") if len(head) == 8 else -1
            if n < 2 or 8 + n > size:
                raise _fail(path, "not a readable safetensors file, or truncated (its header runs past the end)")
            if n > MAX_HEADER_BYTES:
                raise _fail(path, f"its safetensors header has {n} bytes; a network file's has at most {MAX_HEADER_BYTES}")
            header = _loads(path, f.read(n), "the safetensors header")
    except OSError as err:
        raise _fail(path, f"cannot read the file ({err.strerror or err})") from None
    if not isinstance(header, dict):
        raise _fail(path, "not a readable safetensors file, or truncated (the header is not a JSON object)")
    if len(header) - ("__metadata__" in header) > MAX_TENSORS:
        raise _fail(path, f"holds {len(header) - 1} tensors; a network file holds at most {MAX_TENSORS}")


def read_network_info(path: str | os.PathLike) -> NetworkInfo:
    """Config, module kinds, growth stages, metadata and tensor shapes of a network file.

    Reads the header only, with every size bounded (docs/networks.md, "Limits"), and checks each
    tensor's name, shape and dtype against the config (modules built on the meta device, which
    allocates nothing): a damaged or hostile file is refused in milliseconds, with one line.
    """
    path = Path(path)
    if not path.is_file():
        raise _fail(path, "no such network file")
    _check_header(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
            shapes, dtypes = {}, {}
            for k in f.keys():
                sl = f.get_slice(k)
                shapes[k], dtypes[k] = tuple(sl.get_shape()), sl.get_dtype()
    except (SafetensorError, OSError) as err:
        raise _fail(path, f"not a readable safetensors file, or truncated ({err})") from None
    if header.get("format") != FORMAT:
        raise _fail(path, f"not a network file: metadata 'format' is {_short(header.get('format'))}, expected {FORMAT!r}")
    try:
        config = NetworkConfig.from_dict(_json_field(path, header, "config"))
    except NetworkFileError:
        raise
    except (TypeError, ValueError) as err:
        raise _fail(path, f"invalid network config: {err}") from None
    kinds = _json_field(path, header, "modules")
    if (
        not isinstance(kinds, dict)
        or not 1 <= len(kinds) <= MAX_MODULES
        or any(not _NAME.match(k) or not isinstance(v, str) or v not in KINDS for k, v in kinds.items())
    ):
        raise _fail(
            path, f"'modules' must map 1 to {MAX_MODULES} identifiers to one of {', '.join(KINDS)}, got {_short(kinds)}"
        )
    growth = _json_field(path, header, "growth")
    if (
        not isinstance(growth, dict)
        or set(growth) != set(kinds)
        or not all(isinstance(v, list) and len(v) == 2 for v in growth.values())
    ):
        raise _fail(path, f"'growth' must give [resolution, alpha] for each of {sorted(kinds)}")
    for name, (resolution, alpha) in growth.items():
        try:
            check_stage(config, resolution, alpha)
        except ValueError as err:
            raise _fail(path, f"growth stage of {name!r}: {err}") from None
    metadata = _json_field(path, header, "metadata")
    if not isinstance(metadata, dict):
        raise _fail(path, f"metadata entry 'metadata' must be a JSON object, got {type(metadata).__name__}")
    info = NetworkInfo(
        config=config,
        modules=dict(kinds),
        growth={k: (v[0], v[1]) for k, v in growth.items()},
        metadata=metadata,
        tensors=shapes,
        dtypes=dtypes,
    )
    _check_tensors(path, _expected_tensors(info), info)
    return info


def _short(value: Any, width: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def _listed(items: list[str], limit: int = 32, sep: str = "; ") -> str:
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return sep.join(items[:limit]) + more


def _expected_tensors(info: NetworkInfo) -> dict[str, tuple[tuple[int, ...], str]]:
    """Name -> (shape, safetensors dtype) of every tensor the config implies, learned by building
    the modules on the meta device: no memory is allocated, whatever sizes the config names."""
    out = {}
    with torch.device("meta"):
        for name, kind in info.modules.items():
            for key, value in KINDS[kind](info.config).state_dict().items():
                out[f"{name}.{key}"] = (tuple(value.shape), _DTYPES.get(value.dtype, str(value.dtype)))
    return out


def _check_tensors(path: Path, expected: Mapping[str, tuple[tuple[int, ...], str]], info: NetworkInfo) -> None:
    """Raise, in one line, listing the missing, unexpected, mis-shaped and mis-typed tensors."""
    found = info.tensors
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    common = sorted(set(expected) & set(found))
    wrong = [k for k in common if tuple(expected[k][0]) != tuple(found[k])]
    typed = [k for k in common if k not in wrong and info.dtypes.get(k, expected[k][1]) != expected[k][1]]
    if not (missing or unexpected or wrong or typed):
        return
    parts = [
        _listed([f"missing {k} {list(expected[k][0])}" for k in missing]),
        _listed([f"unexpected {k} {list(found[k])}" for k in unexpected]),
        _listed([f"shape of {k}: file {list(found[k])}, config {list(expected[k][0])}" for k in wrong]),
        _listed([f"dtype of {k}: file {info.dtypes[k]}, config {expected[k][1]}" for k in typed]),
    ]
    raise _fail(path, "the tensors do not match the network config: " + "; ".join(p for p in parts if p))


def load_network(path: str | os.PathLike, device: torch.device | str | None = None) -> dict[str, nn.Module]:
    """Rebuild every module stored in ``path``, in eval mode, on ``device`` (default CPU).

    Every name, shape and dtype is checked against the config from the header before a module is
    built, so memory never exceeds the file's own tensors plus one tensor in flight. Weights that
    are not finite load, with one warning naming them.
    """
    path = Path(path)
    info = read_network_info(path)  # names, shapes and dtypes checked against the config
    modules = {name: KINDS[kind](info.config) for name, kind in info.modules.items()}
    targets = {f"{name}.{k}": v for name, m in modules.items() for k, v in m.state_dict().items()}
    non_finite = []
    try:
        with safe_open(str(path), framework="pt") as f, torch.no_grad():
            for key in f.keys():  # one tensor at a time: the peak is the modules plus one tensor
                target = targets.get(key)
                sl = f.get_slice(key)
                if target is None or tuple(sl.get_shape()) != tuple(target.shape) or sl.get_dtype() != _DTYPES.get(
                    target.dtype
                ):
                    raise _fail(path, f"the file changed while being read (tensor {key!r} no longer fits its config)")
                tensor = f.get_tensor(key)
                if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                    non_finite.append(key)
                target.copy_(tensor)
                del tensor
    except (SafetensorError, OSError) as err:
        raise _fail(path, f"could not read the tensors ({err})") from None
    if non_finite:
        warnings.warn(
            f"{path}: {len(non_finite)} tensor(s) hold NaN or infinite values: {_listed(non_finite, 8, ', ')}", stacklevel=2
        )
    for name, module in modules.items():
        try:
            module.set_growth(*info.growth[name])
        except (TypeError, ValueError) as err:
            raise _fail(path, f"growth stage of {name!r}: {err}") from None
        module.eval()
        if device is not None:
            module.to(device)
    return modules
