"""Build the CUDA extensions once and cache them: the cache key, the cache folder, the lock.

Each extension (:data:`EXTENSIONS`) is compiled by ``torch.utils.cpp_extension`` with ninja, in a
child process (:mod:`ops._compile_worker`) that gets ``CUDA_HOME``, ``PATH`` (for ninja) and the
``-gencode`` flags explicitly; our own process environment is never changed, and
``TORCH_CUDA_ARCH_LIST`` is only read (by ``python -m ops build``), never set.

A build lives in ``<cache>/<name>-<key>/``, where the key hashes the sources, the torch version,
torch's CUDA version, the Python version, the GPU architectures and the flags. ``build.json`` is
written last (atomically), so a folder with it holds a complete build. Builds are serialised by an
``fcntl`` lock on ``<cache>/<name>-<key>.lock``: when 8 processes of a node start together, one
compiles and the others wait and load its result. The kernel releases the lock when its holder dies,
so a killed build never leaves a stale lock behind. A failed build records its error, so the
processes that were waiting for it report the same error instead of compiling again.

Prebuilt folders (``python -m ops build`` for several architectures, e.g. in the Docker image) are
found by :func:`find_prebuilt` for any GPU their architectures cover.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

CSRC = Path(__file__).resolve().with_name("csrc")
WORKER = Path(__file__).resolve().with_name("_compile_worker.py")
CACHE_ENV = "STYLEGAN_OPS_CACHE"
LOCK_TIMEOUT_ENV = "STYLEGAN_OPS_LOCK_TIMEOUT"
NAMESPACE = "stylegan_ops"
# Part of the cache key: bump when the flags or the build procedure change.
BUILD_FORMAT = 1

Log = Callable[[str], None]


class BuildError(RuntimeError):
    """An extension could not be built; the message carries the compiler's own output."""


@dataclass(frozen=True)
class ExtensionSpec:
    """One extension: the sources it compiles and the headers it depends on (all in ``csrc/``)."""

    name: str
    sources: tuple[str, ...]
    headers: tuple[str, ...]
    defines: tuple[str, ...] = ()
    cuda: bool = True


_COMMON_HEADERS = ("common.h", "dtype_dispatch.h")
EXTENSIONS: dict[str, ExtensionSpec] = {
    "bias_act": ExtensionSpec("stylegan_bias_act", ("bias_act.cpp", "bias_act.cu"), _COMMON_HEADERS + ("bias_act.h",)),
    "upfirdn2d": ExtensionSpec(
        "stylegan_upfirdn2d", ("upfirdn2d.cpp", "upfirdn2d.cu"), _COMMON_HEADERS + ("upfirdn2d.h",)
    ),
    "filtered_lrelu": ExtensionSpec(
        "stylegan_filtered_lrelu", ("filtered_lrelu.cpp", "filtered_lrelu.cu"), _COMMON_HEADERS + ("filtered_lrelu.h",)
    ),
}

# The tests' CPU emulation: the host code of every op with the kernels run on the CPU, registered
# in its own namespace (see csrc/cpu_emulation.cpp). Needs a C++ compiler only.
EMULATION_NAMESPACE = "stylegan_ops_emu"
EMULATION = ExtensionSpec(
    "stylegan_ops_emulation",
    ("bias_act.cpp", "upfirdn2d.cpp", "filtered_lrelu.cpp", "cpu_emulation.cpp"),
    _COMMON_HEADERS + ("bias_act.h", "upfirdn2d.h", "filtered_lrelu.h"),
    defines=(
        "STYLEGAN_OPS_CPU_EMULATION",
        f"STYLEGAN_OPS_NS={EMULATION_NAMESPACE}",
        "STYLEGAN_OPS_BOUNDS_CHECK",
        "STYLEGAN_OPS_MAX_GRID_Y=3",  # exercise the kernels' loop over grid rows
    ),
    cuda=False,
)

_ARCH_RE = re.compile(r"^(\d+)\.(\d+)([af]?)(\+PTX)?$")


def parse_arch_list(text: str) -> tuple[str, ...]:
    """``"8.6;9.0+PTX"`` (``;``, ``,`` or spaces; ``TORCH_CUDA_ARCH_LIST`` syntax) -> sorted, unique."""
    items = [item for item in re.split(r"[;,\s]+", text.strip()) if item]
    bad = [item for item in items if not _ARCH_RE.match(item)]
    if not items or bad:
        raise ValueError(
            f"arch list {text!r}: expected compute capabilities like '8.6' or '9.0+PTX' separated by ';' "
            f"(bad: {', '.join(map(repr, bad)) or 'empty'})"
        )

    def order(item: str) -> tuple[int, int, str]:
        major, minor, suffix, ptx = _ARCH_RE.match(item).groups()  # type: ignore[union-attr]
        return int(major), int(minor), suffix + (ptx or "")

    return tuple(sorted(set(items), key=order))


def gencode_flags(archs: tuple[str, ...]) -> list[str]:
    """nvcc flags for ``archs``: machine code for each, plus PTX for the ``+PTX`` ones."""
    flags = []
    for arch in archs:
        major, minor, suffix, ptx = _ARCH_RE.match(arch).groups()  # type: ignore[union-attr]
        num = f"{major}{minor}{suffix}"
        flags.append(f"-gencode=arch=compute_{num},code=sm_{num}")
        if ptx:
            flags.append(f"-gencode=arch=compute_{num},code=compute_{num}")
    return flags


def covers(archs: tuple[str, ...] | list[str], capability: tuple[int, int]) -> bool:
    """Whether code built for ``archs`` runs on a GPU of ``capability``: machine code runs on the same
    major version with an equal or higher minor; PTX is compiled by the driver for newer GPUs;
    ``a``/``f`` (architecture-specific) code runs only on its own architecture."""
    for arch in archs:
        match = _ARCH_RE.match(arch)
        if match is None:
            continue
        major, minor, suffix, ptx = int(match.group(1)), int(match.group(2)), match.group(3), match.group(4)
        if (major, minor) == capability:
            return True
        if suffix:
            continue
        if major == capability[0] and minor <= capability[1]:
            return True
        if ptx and (major, minor) <= capability:
            return True
    return False


def cache_root() -> Path:
    """``$STYLEGAN_OPS_CACHE``, else ``$TORCH_EXTENSIONS_DIR/stylegan_ops``, else
    ``$XDG_CACHE_HOME/stylegan_ops`` (``~/.cache/stylegan_ops``)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    if os.environ.get("TORCH_EXTENSIONS_DIR"):
        return Path(os.environ["TORCH_EXTENSIONS_DIR"]).expanduser() / "stylegan_ops"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "stylegan_ops"


def source_hash(spec: ExtensionSpec) -> str:
    """SHA-256 of the sources and headers an extension is compiled from."""
    digest = hashlib.sha256()
    for name in sorted(set(spec.sources + spec.headers)):
        digest.update(name.encode() + b"\0" + (CSRC / name).read_bytes() + b"\0")
    return digest.hexdigest()


def compile_flags(spec: ExtensionSpec, archs: tuple[str, ...]) -> dict[str, list[str]]:
    """Host and device compiler flags (the architectures enter only through ``-gencode``)."""
    defines = [f"-D{d}" for d in spec.defines]
    cflags = ["-O3", *defines]
    if not spec.cuda:
        return {"cflags": cflags, "cuda_cflags": []}
    threads = max(1, min(len(archs), os.cpu_count() or 1))
    cuda_cflags = ["-O3", *defines, *gencode_flags(archs)] + ([f"--threads={threads}"] if threads > 1 else [])
    return {"cflags": cflags, "cuda_cflags": cuda_cflags}


def build_key(spec: ExtensionSpec, archs: tuple[str, ...]) -> dict[str, object]:
    """Everything a build depends on. ``--threads`` only changes build speed, so it is left out."""
    import torch

    flags = compile_flags(spec, archs)
    flags["cuda_cflags"] = [f for f in flags["cuda_cflags"] if not f.startswith("--threads")]
    return {
        "format": BUILD_FORMAT,
        "name": spec.name,
        "source": source_hash(spec),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": f"{sys.version_info[0]}.{sys.version_info[1]}",
        "archs": list(archs) if spec.cuda else [],
        "flags": flags,
    }


def build_dir(spec: ExtensionSpec, archs: tuple[str, ...], root: Path) -> Path:
    key = json.dumps(build_key(spec, archs), sort_keys=True)
    return root / f"{spec.name}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def _write_json(path: Path, data: dict[str, object]) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def _read_json(path: Path) -> dict[str, object] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _complete_build(folder: Path, key: dict[str, object]) -> Path | None:
    """The library of a finished build in ``folder`` made with ``key``, else ``None``."""
    manifest = _read_json(folder / "build.json")
    if not manifest or manifest.get("key") != key:
        return None
    library = folder / str(manifest.get("library", ""))
    return library if library.is_file() else None


def find_prebuilt(spec: ExtensionSpec, capabilities: list[tuple[int, int]], root: Path) -> Path | None:
    """A finished build in ``root`` of these sources, this torch, CUDA and Python, whose
    architectures cover every one of ``capabilities``."""
    for manifest_path in sorted(root.glob(f"{spec.name}-*/build.json")):
        manifest = _read_json(manifest_path)
        key = manifest.get("key") if manifest else None
        if not isinstance(key, dict):
            continue
        archs = key.get("archs") or []
        wanted = build_key(spec, tuple(archs))
        if key == wanted and all(covers(archs, cap) for cap in capabilities):
            library = _complete_build(manifest_path.parent, wanted)
            if library is not None:
                return library
    return None


def _log_stderr(message: str) -> None:
    print(f"[stylegan ops] {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def file_lock(path: Path, what: str, log: Log = _log_stderr, timeout: float | None = None) -> Iterator[None]:
    """Hold an exclusive ``fcntl`` lock on ``path``; say once when waiting for another holder."""
    if timeout is None:
        timeout = float(os.environ.get(LOCK_TIMEOUT_ENV, "3600"))
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        start, told = time.monotonic(), False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                waited = time.monotonic() - start
                if not told and waited > 1.0:
                    log(f"waiting for another process that is building {what} (lock {path})")
                    told = True
                if waited > timeout:
                    raise BuildError(
                        f"waited {timeout:.0f} s for the build lock {path} held by another process; "
                        f"if no build is running, raise ${LOCK_TIMEOUT_ENV} or check that the file system "
                        f"supports flock"
                    ) from None
                time.sleep(0.2)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


CompileFn = Callable[[ExtensionSpec, tuple[str, ...], Path, bool, Log], Path]


def ensure_built(
    spec: ExtensionSpec,
    archs: tuple[str, ...],
    root: Path | None = None,
    compile_fn: CompileFn | None = None,
    verbose: bool = False,
    log: Log = _log_stderr,
) -> Path:
    """The library of ``spec`` for ``archs``: from the cache, or compiled now under the lock."""
    root = cache_root() if root is None else root
    compile_fn = compile_in_subprocess if compile_fn is None else compile_fn
    key = build_key(spec, archs)
    folder = build_dir(spec, archs, root)
    library = _complete_build(folder, key)
    if library is not None:
        return library
    root.mkdir(parents=True, exist_ok=True)
    started = time.time()
    with file_lock(root / f"{folder.name}.lock", spec.name, log):
        library = _complete_build(folder, key)
        if library is not None:
            return library
        failure = _read_json(folder / "failed.json")
        if failure and float(failure.get("time", 0)) >= started:  # type: ignore[arg-type]
            raise BuildError(str(failure.get("error")))
        folder.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        try:
            library = compile_fn(spec, archs, folder, verbose, log)
        except BuildError as err:
            _write_json(folder / "failed.json", {"time": time.time(), "error": str(err)})
            raise
        (folder / "failed.json").unlink(missing_ok=True)
        _write_json(
            folder / "build.json",
            {
                "key": key,
                "library": library.name,
                "built": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "seconds": round(time.monotonic() - t0, 1),
            },
        )
        return library


@dataclass(frozen=True)
class BuildResult:
    """The outcome of one build of :func:`build_many`: the library, or the error."""

    label: str
    library: Path | None
    error: str
    seconds: float


def build_many(
    jobs: list[tuple[str, ExtensionSpec, tuple[str, ...]]], verbose: bool = False, log: Log = _log_stderr
) -> list[BuildResult]:
    """Build several ``(label, spec, archs)`` at once, one compiler process each (they are single
    translation units per language, so this is how a build uses more than one core)."""
    from concurrent.futures import ThreadPoolExecutor

    def one(job: tuple[str, ExtensionSpec, tuple[str, ...]]) -> BuildResult:
        label, spec, archs = job
        start = time.monotonic()
        try:
            library = ensure_built(spec, archs, verbose=verbose, log=log)
        except BuildError as err:
            return BuildResult(label, None, str(err), time.monotonic() - start)
        return BuildResult(label, library, "", time.monotonic() - start)

    with ThreadPoolExecutor(max(len(jobs), 1)) as pool:
        return list(pool.map(one, jobs))


def compile_in_subprocess(spec: ExtensionSpec, archs: tuple[str, ...], folder: Path, verbose: bool, log: Log) -> Path:
    """Compile ``spec`` into ``folder`` with :mod:`ops._compile_worker` in a child process."""
    from ops import _toolchain

    env = dict(os.environ)
    env.pop("TORCH_CUDA_ARCH_LIST", None)  # the -gencode flags decide
    problems = []
    ninja = _toolchain.find_ninja()
    if ninja.path is None:
        problems.append(ninja.problem)
    else:
        env["PATH"] = os.pathsep.join([str(Path(ninja.path).parent), env.get("PATH", "")])
    if _toolchain.find_cxx().path is None:
        problems.append(_toolchain.find_cxx().problem)
    if spec.cuda:
        nvcc = _toolchain.find_nvcc()
        home = _toolchain.cuda_home(nvcc.path) if nvcc.path else None
        if nvcc.path is None:
            problems.append(nvcc.problem)
        elif home is None:
            problems.append(f"could not tell which CUDA toolkit {nvcc.path} belongs to; set CUDA_HOME")
        else:
            env["CUDA_HOME"] = home
    if problems:
        raise BuildError("; ".join(problems))
    request = {
        "name": spec.name,
        "sources": [str(CSRC / s) for s in spec.sources],
        "build_dir": str(folder),
        "verbose": verbose,
        "cuda": spec.cuda,
        **compile_flags(spec, archs),
    }
    what = f"{spec.name} for {', '.join('sm_' + a.replace('.', '') for a in archs)}" if spec.cuda else spec.name
    log(f"building {what} (first use; cached in {folder})")
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), json.dumps(request)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if verbose:
            sys.stderr.write(line)
    proc.wait()
    output = "".join(lines)
    (folder / "build.log").write_text(output)
    if proc.returncode != 0:
        raise BuildError(f"building {what} failed (full log: {folder / 'build.log'}):\n{_error_excerpt(output)}")
    library = folder / f"{spec.name}.so"
    if not library.is_file():
        raise BuildError(f"building {what} produced no {library.name} (full log: {folder / 'build.log'})")
    return library


def _error_excerpt(output: str, limit: int = 4000) -> str:
    """The compiler's error lines (or the tail of the output) in at most ``limit`` characters."""
    lines = output.strip().splitlines()
    errors = [i for i, line in enumerate(lines) if re.search(r"\berror\b|Error|fatal", line)]
    if errors:
        first = max(errors[0] - 2, 0)
        text = "\n".join(lines[first : first + 40])
    else:
        text = "\n".join(lines[-40:])
    return text if len(text) <= limit else text[:limit] + "\n..."
