"""Inputs of tools/dataset_tool.py: list the images of a folder, zip or tar, read their bytes, label them.

Listing happens once in the main process into a column-wise `Listing`; its `locator(i)` lets any
worker process read the bytes itself (a path, a zip member, or an offset into an uncompressed tar), so the
expensive decode/resize/encode work parallelises without funnelling every byte through one pipe.
A compressed tar cannot be read at random offsets, so it is first decompressed once into the
tool's temporary folder.
"""

from __future__ import annotations

import bz2
import csv
import errno
import functools
import gzip
import json
import lzma
import os
import shutil
import stat
import struct
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

# Extensions Pillow registers for reading, minus formats it only identifies (stubs) or that are not
# raster images; a text file renamed .png is still listed and then skipped with its reason.
_NOT_IMAGES = {".h5", ".hdf", ".bufr", ".grib", ".fit", ".fits", ".wmf", ".emf", ".eps", ".ps", ".mpeg", ".mpg"}


@functools.cache
def image_extensions() -> frozenset[str]:
    Image.init()
    return frozenset(e for e, f in Image.registered_extensions().items() if f in Image.OPEN and e not in _NOT_IMAGES)


@dataclass(frozen=True)
class Listing:
    """The images of a source, column-wise (tens of millions of inputs must fit in memory).

    `names` are posix paths inside the source, sorted; `root` is the folder or archive; for an
    archive, `offsets`/`sizes`/`methods` say where a worker finds each member's (compressed) bytes.
    """

    kind: str
    root: str
    names: list[str]
    sizes: np.ndarray  # stored bytes per input
    offsets: np.ndarray | None = None  # tar: data offset; zip: local header offset
    methods: np.ndarray | None = None  # zip: compression method
    input_bytes: int = 0
    ignored: tuple[tuple[str, str, str], ...] = ()  # (name, reason, detail): FIFOs, devices, symlink loops

    def __len__(self) -> int:
        return len(self.names)

    def locator(self, i: int) -> tuple:
        """What `read_item` needs to read input i, small enough to send to a worker."""
        if self.kind == "folder":
            return ("file", os.path.join(self.root, self.names[i]))
        if self.kind == "zip":
            return ("zip", self.root, self.names[i], int(self.offsets[i]), int(self.sizes[i]), int(self.methods[i]))
        return ("tar", self.root, int(self.offsets[i]), int(self.sizes[i]))


def _is_image_name(name: str) -> bool:
    parts = PurePosixPath(name).parts
    if any(p.startswith(".") or p == "__MACOSX" for p in parts):
        return False  # hidden files, AppleDouble files and folders that archives carry along
    return PurePosixPath(name).suffix.lower() in image_extensions()


def source_kind(source: Path) -> str:
    """'folder', 'zip' or 'tar'; raises ValueError for anything else."""
    if source.is_dir():
        return "folder"
    if zipfile.is_zipfile(source):
        return "zip"
    if tarfile.is_tarfile(source):
        return "tar"
    raise ValueError(f"--source {source}: not a folder, a .zip or a .tar/.tar.gz archive")


def _sorted_listing(kind: str, root: str, rows: list[tuple], input_bytes: int,
                    ignored: list[tuple[str, str, str]] | None = None) -> Listing:
    rows.sort(key=lambda r: r[0])
    cols = list(zip(*rows)) if rows else [[]] * 4
    extra = [np.asarray(c, dtype=np.int64) for c in cols[2:]]
    return Listing(kind, root, list(cols[0]), np.asarray(cols[1], dtype=np.int64), *extra, input_bytes=input_bytes,
                   ignored=tuple(sorted(ignored or [])))


_SPECIAL = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
            (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def special_file(path: str) -> tuple[str, str] | None:
    """(reason, detail) when ``path`` is not something to read as an image file: a FIFO (reading
    it would block), a device, a socket, a symlink loop or a dangling symlink; else None."""
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "symlink loop", f"{path} -> {os.readlink(path)} leads back to itself"
        if os.path.islink(path):
            return "dangling symlink", f"{path} -> {os.readlink(path)}, which does not exist"
        return "unreadable", e.strerror or str(e)
    for test, what in _SPECIAL:
        if test(mode):
            return "not a regular file", what
    return None


def list_source(source: Path, workdir: Path) -> Listing:
    """The image files of a folder, zip or tar. `workdir` receives a decompressed copy of a tar.gz."""
    kind = source_kind(source)
    if kind == "folder":
        rows, ignored = [], []
        for root, dirs, files in os.walk(source):  # symlinked folders are not followed: no loops
            dirs.sort()
            for f in files:
                path = os.path.join(root, f)
                name = Path(path).relative_to(source).as_posix()
                if any(p.startswith(".") for p in PurePosixPath(name).parts):
                    continue
                problem = special_file(path)
                if problem is not None:
                    ignored.append((name, *problem))
                elif _is_image_name(name) and os.path.isfile(path):
                    rows.append((name, os.path.getsize(path)))
        return _sorted_listing("folder", str(source), rows, sum(r[1] for r in rows), ignored)
    if kind == "zip":
        with zipfile.ZipFile(source) as zf:
            rows = [(i.filename, i.compress_size, i.header_offset, -1 if i.flag_bits & 1 else i.compress_type)
                    for i in zf.infolist() if not i.is_dir() and _is_image_name(i.filename)]
        return _sorted_listing("zip", str(source), rows, source.stat().st_size)
    tar_path = _uncompressed_tar(source, workdir)
    rows = []
    with tarfile.open(tar_path, "r:") as tf:
        for m in tf:
            if m.isfile() and _is_image_name(m.name):
                rows.append((m.name, m.size, m.offset_data))
            tf.members = []  # tarfile keeps every header otherwise
    return _sorted_listing("tar", str(tar_path), rows, source.stat().st_size)


def _uncompressed_tar(source: Path, workdir: Path) -> Path:
    with open(source, "rb") as f:
        head = f.read(6)
    for magic, module in ((b"\x1f\x8b", gzip), (b"BZh", bz2), (b"\xfd7zXZ\x00", lzma)):
        if head.startswith(magic):
            out = workdir / "source.tar"
            with module.open(source, "rb") as src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            return out
    return source


def _read_zip_member(path: str, name: str, offset: int, size: int, method: int) -> bytes:
    """Read one member from its local header: no worker has to parse the central directory."""
    if method == -1:
        raise OSError(f"zip member {name} is encrypted")
    with open(path, "rb") as f:
        f.seek(offset)
        header = f.read(30)
        if len(header) < 30 or header[:4] != b"PK\x03\x04":
            raise OSError(f"bad zip local header for {name}")
        name_len, extra_len = struct.unpack("<HH", header[26:30])
        f.seek(offset + 30 + name_len + extra_len)
        data = f.read(size)
    if method == zipfile.ZIP_STORED:
        return data
    if method == zipfile.ZIP_DEFLATED:
        try:
            return zlib.decompress(data, -15)
        except zlib.error as e:
            raise OSError(f"zip member {name}: {e}") from None
    with zipfile.ZipFile(path) as zf:  # bzip2/lzma members: rare, let zipfile handle them
        return zf.read(name)


def read_item(locator: tuple) -> bytes:
    """The raw bytes of an input (runs in worker processes)."""
    kind = locator[0]
    if kind == "file":
        return Path(locator[1]).read_bytes()
    if kind == "zip":
        return _read_zip_member(*locator[1:])
    if kind == "tar":
        with open(locator[1], "rb") as f:
            f.seek(locator[2])
            return f.read(locator[3])
    raise ValueError(f"unknown input locator {locator!r}")


# ---------------------------------------------------------------------------------------------- labels


def _class_order(names: set[str]) -> list[str]:
    """Numeric names in numeric order ("2" before "10"), then the rest alphabetically."""
    return sorted(names, key=lambda n: (not n.isdigit(), int(n) if n.isdigit() else 0, n))


def folder_labels(names: list[str]) -> tuple[dict[str, str], list[str]]:
    """{item name: class name} from the top-level sub-folder, and the sorted class names.

    Folders that wrap every item (common in archives: `digits/0/a.png`) are looked through;
    items directly at the top have no class and are left out of the mapping.
    """
    parts = [PurePosixPath(n).parts for n in names]
    strip = 0
    while parts and all(len(p) >= strip + 3 for p in parts) and len({p[strip] for p in parts}) == 1:
        strip += 1
    mapping = {n: p[strip] for n, p in zip(names, parts) if len(p) >= strip + 2}
    return mapping, _class_order(set(mapping.values()))


def file_labels(path: Path, names: list[str]) -> tuple[dict[str, str], list[str]]:
    """{item name: class name} from a JSON or CSV file mapping file names to classes.

    JSON: `{"a.png": 3, ...}`, `[["a.png", 3], ...]` or `{"labels": [["a.png", 3], ...]}`.
    CSV: rows `file,class` with an optional header row (`file`/`filename`/`name`/`path`/`image`).
    A name matches an item's path inside the source, else its file name when that is unique in the
    file. Integer classes keep their index (class names "0".."max"); other names are sorted.
    """
    table: dict[str, str] = {}
    for key, value in _label_pairs(path):
        key = str(key).replace("\\", "/")
        table[key[2:] if key.startswith("./") else key] = str(value).strip()
    numeric = bool(table) and all(v.isdigit() for v in table.values())
    if numeric:
        table = {k: str(int(v)) for k, v in table.items()}
        classes = [str(i) for i in range(max(int(v) for v in table.values()) + 1)]
    else:
        classes = _class_order(set(table.values()))
    base_count: dict[str, int] = {}
    for k in table:
        base_count[PurePosixPath(k).name] = base_count.get(PurePosixPath(k).name, 0) + 1
    by_base = {PurePosixPath(k).name: v for k, v in table.items() if base_count[PurePosixPath(k).name] == 1}
    mapping = {}
    for name in names:
        value = table.get(name, by_base.get(PurePosixPath(name).name))
        if value is not None:
            mapping[name] = value
    return mapping, classes


def _label_pairs(path: Path) -> list[tuple[str, object]]:
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() == ".json":
        data = json.loads(text)
        if isinstance(data, dict) and set(data) == {"labels"}:
            data = data["labels"]
        pairs = list(data.items()) if isinstance(data, dict) else data
    else:
        rows = [r for r in csv.reader(text.splitlines()) if r and any(c.strip() for c in r)]
        if rows and rows[0][0].strip().lower() in {"file", "filename", "name", "path", "image"}:
            rows = rows[1:]
        pairs = rows
    if not isinstance(pairs, list) or not all(isinstance(p, (list, tuple)) and len(p) == 2 for p in pairs):
        raise ValueError(f"--labels {path}: every entry must pair a file name with a class (file,class)")
    if any(isinstance(v, bool) or not isinstance(v, (int, str)) for _, v in pairs):
        raise ValueError(f"--labels {path}: classes must be integers or names")
    return [(k, v) for k, v in pairs]
