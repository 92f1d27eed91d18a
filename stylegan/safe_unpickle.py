"""A restricted unpickler for network snapshots: tensors, numpy arrays, plain containers, records.

Python's ``pickle`` runs whatever callables a file names (``os.system``, ``eval``, ...), and
NVIDIA's snapshots go further: they embed their own source code and rebuild their objects with
it (``torch_utils.persistence``). This reader runs none of that. :class:`SafeUnpickler` resolves
every global the file asks for through one explicit allowlist (:data:`ALLOWED`) of small functions
written here, and refuses anything else with one line that names the global. NVIDIA's persistent
objects become :class:`PersistentObject` records (class name and state); their source is never
compiled, only hashed.

Tensors: since torch 1.6 a pickled storage is ``torch.storage._load_from_bytes(blob)``, where
``blob`` is torch's legacy serialisation of that one storage (five small pickles, then the raw
bytes). :func:`load_storage_blob` parses it with the same restricted machinery. Every tensor is
checked against its storage, and all tensors together may not claim more bytes than the file
holds, so a small hostile file cannot make the reader allocate much more than its own size.
"""

from __future__ import annotations

import collections
import hashlib
import io
import math
import pickle
import struct
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch


class PickleRefused(ValueError):
    """The file is not a pickle this reader accepts; the message is one line for a CLI."""


@dataclass
class PersistentObject:
    """An object NVIDIA's ``torch_utils.persistence`` would have rebuilt by running the pickled
    source of its class: kept as data instead. ``state`` is the object's ``__dict__`` (for an
    ``nn.Module``: ``_parameters``, ``_buffers``, ``_modules`` and plain attributes)."""

    class_name: str
    state: dict
    version: int
    source_sha256: str  # of the embedded module source, which is never compiled


# ----- what the allowlisted globals build ------------------------------------------------------


class _Budget:
    """Bytes the tensors of one file may still claim (the file's size)."""

    def __init__(self, limit: int) -> None:
        self.left = limit

    def take(self, nbytes: int, what: str) -> None:
        if nbytes > self.left:
            raise PickleRefused(
                f"refused: {what} claims {nbytes} bytes, more than the file holds for tensors; "
                f"a network snapshot stores every tensor's data once"
            )
        self.left -= nbytes


class _PlainDict(dict):
    """Stands in for ``dnnlib.util.EasyDict`` (a dict subclass in NVIDIA's kwargs): a plain dict."""

    def __setstate__(self, state: Any) -> None:
        if state:
            raise PickleRefused("refused: an EasyDict with attribute state; expected a plain mapping")


class _DtypeRef:
    """A numpy dtype as pickled (``numpy.dtype(code, align, copy)`` then its state): numbers only."""

    def __init__(self, code: Any, align: Any = False, copy: Any = True) -> None:
        if not isinstance(code, str) or len(code) > 8:
            raise PickleRefused(f"refused: numpy dtype {code!r}; expected a numeric type code such as 'f8'")
        try:
            dtype = np.dtype(code)
        except TypeError:
            raise PickleRefused(f"refused: numpy dtype {code!r} is not a known type code") from None
        if dtype.kind not in "biufc" or dtype.fields is not None or dtype.subdtype is not None:
            raise PickleRefused(f"refused: numpy dtype {code!r}; only plain numeric dtypes are allowed")
        self.dtype = dtype

    def __setstate__(self, state: Any) -> None:
        order = state[1] if isinstance(state, tuple) and len(state) > 1 else None
        if order not in ("<", ">", "|", "="):
            raise PickleRefused(f"refused: numpy dtype state {state!r}; expected a plain numeric dtype")
        if order in ("<", ">"):
            self.dtype = self.dtype.newbyteorder(order)


def _as_dtype(value: Any) -> np.dtype:
    if not isinstance(value, _DtypeRef):
        raise PickleRefused(f"refused: expected a numpy dtype, got {type(value).__name__}")
    return value.dtype


def _np_scalar(dtype: Any, data: Any = None) -> Any:
    """``numpy.core.multiarray.scalar(dtype, bytes)``: a numeric scalar (as a Python number)."""
    dt = _as_dtype(dtype)
    if not isinstance(data, bytes) or len(data) != dt.itemsize:
        raise PickleRefused(f"refused: numpy scalar of {dt} with {type(data).__name__} data")
    return np.frombuffer(data, dtype=dt)[0].item()


class _NdarrayType:
    """Marker for ``numpy.ndarray`` as the first argument of ``_reconstruct``."""


class ArrayRecord:
    """A numpy array as pickled (``_reconstruct(ndarray, ...)`` then its state); ``.array`` after
    the state is set. Numeric dtypes only: object arrays would carry arbitrary objects."""

    def __init__(self, budget: _Budget) -> None:
        self._budget = budget
        self.array: np.ndarray | None = None

    def __setstate__(self, state: Any) -> None:
        if not (isinstance(state, tuple) and len(state) == 5):
            raise PickleRefused("refused: numpy array state of an unexpected form")
        _, shape, dtype, fortran, raw = state
        dt = _as_dtype(dtype)
        if not (isinstance(shape, tuple) and len(shape) <= 32 and all(_is_count(s) for s in shape)):
            raise PickleRefused(f"refused: numpy array shape {shape!r}")
        if not isinstance(raw, (bytes, bytearray)) or len(raw) != math.prod(shape) * dt.itemsize:
            raise PickleRefused(f"refused: numpy array data does not match its shape {shape} and dtype {dt}")
        self._budget.take(len(raw), "a numpy array")
        flat = np.frombuffer(bytes(raw), dtype=dt)
        self.array = flat.reshape(shape, order="F" if fortran else "C").copy()


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


# torch's legacy storage classes, named in a storage blob, and the dtypes they hold.
STORAGE_DTYPES = {
    "DoubleStorage": torch.float64, "FloatStorage": torch.float32, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001


@dataclass(frozen=True)
class _StorageType:
    dtype: torch.dtype


class Storage:
    """The data of one tensor storage: a flat CPU tensor of its dtype. The first tensor that covers
    all of it shares its memory; any other tensor built on it gets a copy, so no two tensors of
    the result alias each other."""

    def __init__(self, flat: torch.Tensor) -> None:
        self.flat = flat
        self.claimed = False


class _BlobUnpickler(pickle.Unpickler):
    """The small pickles inside a storage blob: numbers, strings, and storage class names."""

    def __init__(self, f: io.BytesIO) -> None:
        super().__init__(f)
        self.refs: dict[str, tuple[torch.dtype, int]] = {}

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(STORAGE_DTYPES[name])
        raise PickleRefused(f"refused: a tensor storage asks for the global {module}.{name}; expected a torch storage type")

    def persistent_load(self, pid: Any) -> Any:
        # torch's legacy format: ('storage', storage type, key, location, numel[, view metadata]).
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"):
            raise PickleRefused(f"refused: unexpected persistent id in a tensor storage: {str(pid)[:80]!r}")
        stype, key, numel = pid[1], pid[2], pid[4]
        if not isinstance(stype, _StorageType) or not isinstance(key, str) or not _is_count(numel):
            raise PickleRefused(f"refused: malformed tensor storage reference {str(pid)[:80]!r}")
        if len(pid) == 6 and pid[5] is not None:
            raise PickleRefused("refused: a storage view inside a tensor storage blob (not written by torch >= 1.6)")
        self.refs[key] = (stype.dtype, numel)
        return key


def load_storage_blob(blob: Any, budget: _Budget) -> Storage:
    """Parse ``torch.storage._load_from_bytes``'s argument (torch's legacy format) into a :class:`Storage`."""
    if not isinstance(blob, bytes):
        raise PickleRefused(f"refused: tensor storage data of type {type(blob).__name__}; expected bytes")
    if blob[:4] == b"PK\x03\x04":
        raise PickleRefused("refused: a tensor storage in torch's zip format; NVIDIA's snapshots use the legacy one")
    f = io.BytesIO(blob)
    reader = _BlobUnpickler(f)
    try:
        magic, protocol, sys_info = reader.load(), reader.load(), reader.load()
        if magic != _LEGACY_MAGIC or protocol != _LEGACY_PROTOCOL:
            raise PickleRefused("refused: tensor storage data without torch's legacy header")
        if not isinstance(sys_info, dict) or sys_info.get("little_endian") is not True:
            raise PickleRefused("refused: tensor storage written on a big-endian machine")
        root, keys = reader.load(), reader.load()
    except (pickle.UnpicklingError, EOFError) as err:
        raise PickleRefused(f"damaged tensor storage data ({err})") from None
    if not (isinstance(keys, list) and keys == [root] and root in reader.refs):
        raise PickleRefused("refused: a tensor storage blob that holds other than one storage")
    dtype, numel = reader.refs[root]
    head = f.read(8)
    if len(head) != 8 or struct.unpack("<q", head)[0] != numel:
        raise PickleRefused("damaged tensor storage data: its size does not match its header")
    itemsize = torch.empty(0, dtype=dtype).element_size()
    data = f.read(numel * itemsize)
    if len(data) != numel * itemsize:
        raise PickleRefused("truncated tensor storage data")
    budget.take(len(data), "a tensor storage")
    flat = torch.frombuffer(bytearray(data), dtype=dtype) if numel else torch.empty(0, dtype=dtype)
    return Storage(flat)


def rebuild_tensor(
    storage: Any, offset: Any, size: Any, stride: Any, requires_grad: Any = False, hooks: Any = None,
    metadata: Any = None, *, budget: _Budget,
) -> torch.Tensor:
    """``torch._utils._rebuild_tensor_v2``: a tensor on ``storage``, checked to lie inside it."""
    if not isinstance(storage, Storage):
        raise PickleRefused(f"refused: a tensor built on {type(storage).__name__}; expected a storage")
    ok = (
        _is_count(offset) and isinstance(size, tuple) and isinstance(stride, tuple) and len(size) == len(stride) <= 16
        and all(_is_count(v) for v in size + stride)
    )
    if not ok:
        raise PickleRefused(f"refused: tensor geometry size={size!r} stride={stride!r} offset={offset!r}")
    if hooks:  # an OrderedDict of backward hooks would hold functions
        raise PickleRefused("refused: a tensor with backward hooks")
    if metadata:
        raise PickleRefused(f"refused: a tensor with metadata {str(metadata)[:60]}")
    numel, capacity = math.prod(size), storage.flat.numel()
    if numel and (numel > capacity or offset + sum((n - 1) * s for n, s in zip(size, stride)) >= capacity):
        raise PickleRefused(f"refused: a tensor of size {list(size)} reaches outside its storage of {capacity} elements")
    budget.take(numel * storage.flat.element_size(), "a tensor")
    if not numel:
        return storage.flat.new_empty(size)
    if not storage.claimed and offset == 0 and numel == capacity and tuple(stride) == _contiguous_strides(size):
        storage.claimed = True
        return storage.flat.view(size)  # the usual case: one tensor, its whole storage, no copy
    return torch.as_strided(storage.flat, size, stride, offset).clone()


def _contiguous_strides(size: tuple[int, ...]) -> tuple[int, ...]:
    strides, step = [], 1
    for n in reversed(size):
        strides.append(step)
        step *= max(n, 1)
    return tuple(reversed(strides))


def rebuild_parameter(data: Any, requires_grad: Any = False, hooks: Any = None, state: Any = None) -> torch.Tensor:
    """``torch._utils._rebuild_parameter(_with_state)``: the tensor itself (no ``nn.Parameter`` needed)."""
    if not isinstance(data, torch.Tensor) or hooks or state:
        raise PickleRefused("refused: a parameter that is not a plain tensor (hooks or extra state)")
    return data


def persistent_record(meta: Any) -> PersistentObject:
    """``torch_utils.persistence._reconstruct_persistent_obj(meta)``, as a record: nothing is compiled."""
    if not (isinstance(meta, dict) and meta.get("type") == "class" and isinstance(meta.get("class_name"), str)):
        raise PickleRefused("refused: an NVIDIA persistent object without the expected metadata")
    state = meta.get("state")
    if not isinstance(state, dict):
        raise PickleRefused(f"refused: NVIDIA persistent object {meta['class_name']!r} has no dict state")
    src = meta.get("module_src")
    digest = hashlib.sha256(src.encode()).hexdigest() if isinstance(src, str) else ""
    return PersistentObject(meta["class_name"], state, int(meta.get("version") or 0), digest)


def _np_reconstruct(budget: _Budget) -> Callable[..., ArrayRecord]:
    def reconstruct(cls: Any, shape: Any = None, typecode: Any = None) -> ArrayRecord:
        if cls is not _NdarrayType:
            raise PickleRefused(f"refused: numpy _reconstruct of {cls!r}; expected numpy.ndarray")
        return ArrayRecord(budget)

    return reconstruct


def _allowlist(storage_budget: _Budget, tensor_budget: _Budget) -> dict[tuple[str, str], Any]:
    """The allowlist: (module, name) -> what it becomes. Every entry is a function of this module
    or a harmless type (OrderedDict, set), never the original global."""
    reconstruct = _np_reconstruct(tensor_budget)
    return {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
        ("torch._utils", "_rebuild_tensor_v2"): lambda *a: rebuild_tensor(*a, budget=tensor_budget),
        ("torch._utils", "_rebuild_parameter"): rebuild_parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): rebuild_parameter,
        ("torch.storage", "_load_from_bytes"): lambda blob: load_storage_blob(blob, storage_budget),
        ("torch_utils.persistence", "_reconstruct_persistent_obj"): persistent_record,
        ("dnnlib.util", "EasyDict"): _PlainDict,
        ("numpy", "dtype"): _DtypeRef,
        ("numpy", "ndarray"): _NdarrayType,
        ("numpy.core.multiarray", "scalar"): _np_scalar,
        ("numpy._core.multiarray", "scalar"): _np_scalar,
        ("numpy.core.multiarray", "_reconstruct"): reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): reconstruct,
    }


ALLOWED: frozenset[tuple[str, str]] = frozenset(_allowlist(_Budget(0), _Budget(0)))


def tensorflow_era(module: str) -> bool:
    """Globals of NVIDIA's TensorFlow code (StyleGAN, StyleGAN2, StyleGAN2-ADA-TF pickles)."""
    return module == "dnnlib.tflib" or module.startswith("dnnlib.tflib.") or module.startswith("tensorflow")


class SafeUnpickler(pickle.Unpickler):
    """Unpickles with :data:`ALLOWED` only; see the module docstring."""

    def __init__(self, f: io.BytesIO, size: int) -> None:
        super().__init__(f)
        # Storages copy bytes out of the file and tensors copy storages: each at most the file's size.
        self._table = _allowlist(_Budget(size), _Budget(size))

    def find_class(self, module: str, name: str) -> Any:
        found = self._table.get((module, name))
        if found is not None:
            return found
        if tensorflow_era(module):
            raise PickleRefused(
                f"TensorFlow-era StyleGAN/StyleGAN2 pickle (it asks for {module}.{name}): not supported; convert it "
                f"first with NVIDIA's legacy.py (stylegan2-ada-pytorch or stylegan3: python legacy.py "
                f"--source=NET.pkl --dest=NET-pytorch.pkl), then read that file"
            )
        raise PickleRefused(
            f"refused: the pickle asks for the global {module}.{name}, which is not on the allowlist "
            f"(tensors, numpy arrays, plain containers, NVIDIA's persistent objects); nothing from the file was run"
        )

    def persistent_load(self, pid: Any) -> Any:
        raise PickleRefused(f"refused: a persistent id {str(pid)[:60]!r} (a torch.save file, not a snapshot pickle)")


def safe_loads(data: bytes) -> Any:
    """Unpickle ``data`` with :class:`SafeUnpickler`. Raises :class:`PickleRefused` (one line) for a
    file that is not a pickle, is truncated or damaged, or asks for anything off the allowlist."""
    if not (len(data) >= 2 and data[0] == pickle.PROTO[0] and 2 <= data[1] <= pickle.HIGHEST_PROTOCOL):
        raise PickleRefused(f"not a pickle (it starts with {data[:8]!r}); expected a network snapshot .pkl")
    unpickler = SafeUnpickler(io.BytesIO(data), len(data))
    try:
        obj = unpickler.load()
    except PickleRefused:
        raise
    except EOFError:
        raise PickleRefused("truncated pickle: the file ends before the pickle does (an incomplete download?)") from None
    except pickle.UnpicklingError as err:
        if "truncated" in str(err):
            raise PickleRefused("truncated pickle: the file ends before the pickle does (an incomplete download?)") from None
        raise PickleRefused(f"damaged pickle ({err})") from None
    except (TypeError, ValueError, KeyError, IndexError, AttributeError, OverflowError, RecursionError, MemoryError) as err:
        # Allowlisted functions called with arguments of the wrong shape: a damaged or forged file.
        raise PickleRefused(f"damaged or forged pickle ({type(err).__name__}: {err})") from None
    return obj
