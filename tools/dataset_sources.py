"""Inputs of tools/dataset_tool.py: list the images of a folder, zip or tar, read their bytes, label them.

Listing happens once in the main process and yields small `Item`s whose `locator` lets any worker
process read the bytes itself (a path, a zip member, or an offset into an uncompressed tar), so the
expensive decode/resize/encode work parallelises without funnelling every byte through one pipe.
A compressed tar cannot be read at random offsets, so it is first decompressed once into the
tool's temporary folder.
"""

from __future__ import annotations

import csv
import functools
import json
import os
import shutil
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from PIL import Image

# Extensions Pillow registers for reading, minus formats it only identifies (stubs) or that are not
# raster images; a text file renamed .png is still listed and then skipped with its reason.
_NOT_IMAGES = {".h5", ".hdf", ".bufr", ".grib", ".fit", ".fits", ".wmf", ".emf", ".eps", ".ps", ".mpeg", ".mpg"}
_COMPRESSED = {b"\x1f\x8b": "gz", b"BZh": "bz2", b"\xfd7zXZ\x00": "xz"}


@functools.cache
def image_extensions() -> frozenset[str]:
    Image.init()
    return frozenset(e for e, f in Image.registered_extensions().items() if f in Image.OPEN and e not in _NOT_IMAGES)


@dataclass(frozen=True)
class Item:
    """One input file. `name` is its path inside the source (posix); `locator` says how to read it."""

    name: str
    locator: tuple
    size: int


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


def list_source(source: Path, workdir: Path) -> tuple[list[Item], int]:
    """(image items sorted by name, input size in bytes). `workdir` receives a decompressed tar."""
    kind = source_kind(source)
    if kind == "folder":
        items = []
        for root, dirs, files in os.walk(source):
            dirs.sort()
            for f in sorted(files):
                path = Path(root) / f
                name = path.relative_to(source).as_posix()
                if _is_image_name(name) and path.is_file():
                    items.append(Item(name, ("file", str(path)), path.stat().st_size))
        return sorted(items, key=lambda i: i.name), sum(i.size for i in items)
    if kind == "zip":
        with zipfile.ZipFile(source) as zf:
            items = [Item(i.filename, ("zip", str(source), i.filename), i.file_size)
                     for i in zf.infolist() if not i.is_dir() and _is_image_name(i.filename)]
        return sorted(items, key=lambda i: i.name), source.stat().st_size
    tar_path = _uncompressed_tar(source, workdir)
    with tarfile.open(tar_path, "r:") as tf:
        items = [Item(m.name, ("tar", str(tar_path), m.offset_data, m.size), m.size)
                 for m in tf if m.isfile() and _is_image_name(m.name)]
    return sorted(items, key=lambda i: i.name), source.stat().st_size


def _uncompressed_tar(source: Path, workdir: Path) -> Path:
    with open(source, "rb") as f:
        head = f.read(6)
    for magic, codec in _COMPRESSED.items():
        if head.startswith(magic):
            out = workdir / "source.tar"
            opener = {"gz": "gzip", "bz2": "bz2", "xz": "lzma"}[codec]
            module = __import__(opener)
            with module.open(source, "rb") as src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            return out
    return source


@functools.cache
def _open_zip(path: str, pid: int) -> zipfile.ZipFile:
    """One ZipFile per (archive, process): handles must not be shared across fork."""
    return zipfile.ZipFile(path)


def read_item(locator: tuple) -> bytes:
    """The raw bytes of an input (runs in worker processes)."""
    kind = locator[0]
    if kind == "file":
        return Path(locator[1]).read_bytes()
    if kind == "zip":
        return _open_zip(locator[1], os.getpid()).read(locator[2])
    if kind == "tar":
        with open(locator[1], "rb") as f:
            f.seek(locator[2])
            return f.read(locator[3])
    raise ValueError(f"unknown input locator {locator!r}")


# ---------------------------------------------------------------------------------------------- labels


def _class_order(names: set[str]) -> list[str]:
    """Numeric names in numeric order ("2" before "10"), then the rest alphabetically."""
    return sorted(names, key=lambda n: (not n.isdigit(), int(n) if n.isdigit() else 0, n))


def folder_labels(items: list[Item]) -> tuple[dict[str, str], list[str]]:
    """{item name: class name} from the top-level sub-folder, and the sorted class names.

    Folders that wrap every item (common in archives: `digits/0/a.png`) are looked through;
    items directly at the top have no class and are left out of the mapping.
    """
    parts = [PurePosixPath(i.name).parts for i in items]
    strip = 0
    while parts and all(len(p) >= strip + 3 for p in parts) and len({p[strip] for p in parts}) == 1:
        strip += 1
    mapping = {i.name: p[strip] for i, p in zip(items, parts) if len(p) >= strip + 2}
    return mapping, _class_order(set(mapping.values()))


def file_labels(path: Path, items: list[Item]) -> tuple[dict[str, str], list[str]]:
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
        names = [str(i) for i in range(max(int(v) for v in table.values()) + 1)]
    else:
        names = _class_order(set(table.values()))
    base_count: dict[str, int] = {}
    for k in table:
        base_count[PurePosixPath(k).name] = base_count.get(PurePosixPath(k).name, 0) + 1
    by_base = {PurePosixPath(k).name: v for k, v in table.items() if base_count[PurePosixPath(k).name] == 1}
    mapping = {}
    for item in items:
        value = table.get(item.name, by_base.get(PurePosixPath(item.name).name))
        if value is not None:
            mapping[item.name] = value
    return mapping, names


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
