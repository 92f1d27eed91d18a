"""The training state in ``<run>/state/``: written as a whole or not at all, and found again.

``state/`` holds everything a run needs to continue exactly where it stopped:

* ``networks.safetensors``: G, D and G_ema with their config (a regular network file, so
  ``stylegan.load_network`` opens it too);
* ``training.pt``: both optimizers, the fp16 loss scalers, the path-length mean (tensors and plain
  containers only, read back with ``torch.load(weights_only=True)``, which never runs code);
* ``rng.pt``: every rank's random-number-generator states;
* ``progress.json``: counters (step, images, tick), the progressive phase and alpha, the data
  position, written last: a folder without it is not a state.

The folder is written under a temporary name beside ``state/`` and renamed into place; the previous
state is moved aside first and deleted after. A crash at any moment leaves either the old or the new
state complete (:func:`find_state` also accepts the moved-aside one if the crash fell between the
two renames). A write that fails (a full disk) raises :class:`training.outputs.OutputError` naming
``state/`` and leaves the previous state as it was.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors.torch import load_file

import stylegan
from training.outputs import writing

FORMAT = "stylegan-train-state/1"
STATE = "state"
_TMP_PREFIX = ".state-tmp-"
_OLD_PREFIX = ".state-old-"


@dataclass
class LoadedState:
    """A state folder read back: module tensors by module name, and the rest as saved."""

    path: Path
    modules: dict[str, dict[str, torch.Tensor]]
    training: dict[str, Any]
    rng: list[dict[str, Any]]
    progress: dict[str, Any]


def save_state(
    run_dir: Path,
    *,
    modules: Mapping[str, torch.nn.Module],
    net_config: Any,
    training: Mapping[str, Any],
    rng: list[dict[str, Any]],
    progress: Mapping[str, Any],
) -> Path:
    """Write ``run_dir/state`` atomically (see the module docstring); returns its path."""
    run_dir = Path(run_dir)
    tmp = run_dir / f"{_TMP_PREFIX}{uuid.uuid4().hex}"
    try:
        with writing(run_dir / STATE):  # a full disk: one line naming state/, the old state kept
            tmp.mkdir(parents=True)
            _write_state(tmp, run_dir, modules, net_config, training, rng, progress)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    for stale in run_dir.glob(f"{_OLD_PREFIX}*"):
        shutil.rmtree(stale, ignore_errors=True)
    return run_dir / STATE


def _write_state(
    tmp: Path, run_dir: Path, modules: Mapping[str, torch.nn.Module], net_config: Any,
    training: Mapping[str, Any], rng: list[dict[str, Any]], progress: Mapping[str, Any],
) -> None:
    """Fill ``tmp``, then swap it in for ``run_dir/state`` (two renames)."""
    stylegan.save_network(tmp / "networks.safetensors", modules, net_config, metadata={"kind": "train-state"})
    _save_torch(tmp / "training.pt", dict(training))
    _save_torch(tmp / "rng.pt", {"ranks": rng})
    body = json.dumps({"format": FORMAT, "saved_at": time.time(), **progress}, indent=1, sort_keys=True)
    (tmp / "progress.json").write_text(body + "\n", encoding="utf-8")
    _fsync_dir(tmp)
    final = run_dir / STATE
    old = run_dir / f"{_OLD_PREFIX}{uuid.uuid4().hex}"
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    _fsync_dir(run_dir)


def _save_torch(path: Path, obj: Any) -> None:
    with open(path, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    """Make a rename or new files in ``path`` durable (where the OS allows opening folders)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def is_state(path: Path) -> bool:
    """Whether ``path`` is a complete state folder."""
    return (Path(path) / "progress.json").is_file()


def find_state(run_dir: Path) -> Path | None:
    """The complete state of ``run_dir``: ``state/``, or a moved-aside one if a save was cut short."""
    run_dir = Path(run_dir)
    if is_state(run_dir / STATE):
        return run_dir / STATE
    aside = [p for p in run_dir.glob(f"{_OLD_PREFIX}*") if is_state(p)]
    return max(aside, key=lambda p: p.stat().st_mtime) if aside else None


def resolve_resume(path: Path) -> tuple[Path, Path]:
    """``(run_dir, state_dir)`` for ``--resume PATH`` given a run folder or its ``state/``."""
    path = Path(path)
    if is_state(path):
        return path.parent, path
    state = find_state(path)
    if state is None:
        raise FileNotFoundError(f"{path}: no resumable state (expected a run folder holding state/progress.json)")
    return path, state


def read_progress(state_dir: Path) -> dict[str, Any]:
    data = json.loads((Path(state_dir) / "progress.json").read_text(encoding="utf-8"))
    if data.get("format") != FORMAT:
        raise ValueError(f"{state_dir}: state format {data.get('format')!r}, expected {FORMAT!r}")
    return data


def load_state(state_dir: Path, device: torch.device | str = "cpu") -> LoadedState:
    """Read a state folder; network tensors land on ``device``, optimizer states on the CPU until loaded."""
    state_dir = Path(state_dir)
    progress = read_progress(state_dir)
    tensors = load_file(str(state_dir / "networks.safetensors"), device=str(device))
    modules: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        name, _, rest = key.partition(".")
        modules.setdefault(name, {})[rest] = value
    # On the CPU: Optimizer.load_state_dict moves each state tensor to its parameter's device,
    # except Adam's step counters, which must stay on the CPU (non-capturable Adam).
    training = torch.load(state_dir / "training.pt", map_location="cpu", weights_only=True)
    rng = torch.load(state_dir / "rng.pt", map_location="cpu", weights_only=True)["ranks"]
    return LoadedState(path=state_dir, modules=modules, training=training, rng=rng, progress=progress)
