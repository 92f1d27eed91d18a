"""Where the NVIDIA-pickle test vectors live, and small pickles built in the tests.

The vectors (``nvidia-pickles/*.pkl`` + ``*.npz``, made with NVIDIA's own code) are never copied
into this repository: they are read from ``$STYLEGAN_FIXTURES`` or from ``../shared/fixtures``
beside the checkout, and the tests that need them skip with the reason when neither exists.
"""

from __future__ import annotations

import io
import os
import pickle
import sys
import types
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

SG2_FIXTURES = ("sg2-cond-rgb32", "sg2-uncond-gray64-fp16", "sg2-uncond-rgba16-resnetG")
SG3_FIXTURES = ("sg3t-refuse", "sg3-t-cond-rgb32", "sg3-r-uncond-gray32")


def fixtures_dir() -> Path:
    env = os.environ.get("STYLEGAN_FIXTURES")
    root = Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"
    return root / "nvidia-pickles"


def fixture(name: str, ext: str = "pkl") -> Path:
    path = fixtures_dir() / f"{name}.{ext}"
    if not path.is_file():
        pytest.skip(f"NVIDIA test vectors not found: {path} (set STYLEGAN_FIXTURES to the fixtures folder)")
    return path


def reference(name: str) -> dict[str, np.ndarray]:
    with np.load(fixture(name, "npz")) as ref:
        return {k: ref[k] for k in ref.files}


def fake_modules(monkeypatch: pytest.MonkeyPatch, dotted: str) -> types.ModuleType:
    """Register an empty module ``dotted`` (and its parents) so that pickle can name its globals."""
    parts = dotted.split(".")
    module = None
    for i in range(1, len(parts) + 1):
        name = ".".join(parts[:i])
        module = sys.modules.get(name) or types.ModuleType(name)
        monkeypatch.setitem(sys.modules, name, module)
    return module


class Reduce:
    """Pickles as ``func(*args)``: how hostile (and hand-made) pickles are written."""

    def __init__(self, func, *args) -> None:
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args

    def __call__(self, *args):  # pickle wants a callable where a nested Reduce is the function
        raise RuntimeError("only for pickling")


def storage_blob(t: torch.Tensor) -> bytes:
    """What ``torch.storage._load_from_bytes`` receives for ``t``'s storage when torch pickles ``t``
    (torch's legacy format), taken from ``pickle.dumps(t)`` itself."""
    blobs: list[bytes] = []

    class Recorder(pickle.Unpickler):
        def find_class(self, module: str, name: str):
            if (module, name) == ("torch.storage", "_load_from_bytes"):
                return blobs.append
            return lambda *args: None  # the tensor around it is not needed

    Recorder(io.BytesIO(pickle.dumps(t, protocol=4))).load()
    (blob,) = blobs
    return blob


def shared_storage_views(n: int, numel: int) -> list:
    """``n`` tensors that all claim the whole of one storage (pickled once, memoized)."""
    from torch._utils import _rebuild_tensor_v2
    from torch.storage import _load_from_bytes

    storage = Reduce(_load_from_bytes, storage_blob(torch.zeros(numel)))
    return [Reduce(_rebuild_tensor_v2, storage, 0, (numel,), (1,), False, OrderedDict()) for _ in range(n)]
