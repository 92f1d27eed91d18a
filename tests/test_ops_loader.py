"""The loader of the CUDA ops without a GPU: architectures, cache key and folder, the build lock
across processes, recorded failures, prebuilt lookup, tool discovery, the subprocess build, impl
resolution with its one warning, the CLI (build, doctor, cache), and the backward formulas the
kernels' autograd uses (checked with the reference)."""

from __future__ import annotations

import multiprocessing
import os
import stat
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from test_ops_upfirdn2d import FILTERS, GRID

from ops import _build, _toolchain, extension, impl
from ops.__main__ import cli
from ops.upfirdn2d import _filter_grad, _transposed_padding, _upfirdn2d_ref

# --- architectures ------------------------------------------------------------------------------


def test_parse_arch_list() -> None:
    assert _build.parse_arch_list("9.0;8.6, 8.0 9.0") == ("8.0", "8.6", "9.0")
    assert _build.parse_arch_list("8.6+PTX;9.0a") == ("8.6+PTX", "9.0a")
    for bad in ("", "sm_90", "9", "9.0;x"):
        with pytest.raises(ValueError, match="expected compute capabilities like '8.6'"):
            _build.parse_arch_list(bad)


def test_gencode_flags() -> None:
    assert _build.gencode_flags(("8.6+PTX", "9.0a")) == [
        "-gencode=arch=compute_86,code=sm_86",
        "-gencode=arch=compute_86,code=compute_86",
        "-gencode=arch=compute_90a,code=sm_90a",
    ]


@pytest.mark.parametrize(
    "archs, capability, expected",
    [
        (["9.0"], (9, 0), True),
        (["8.0"], (8, 6), True),  # machine code runs on a newer minor of the same major
        (["8.6"], (8, 0), False),
        (["8.0"], (9, 0), False),
        (["8.0+PTX"], (9, 0), True),  # PTX is compiled by the driver for newer GPUs
        (["9.0a"], (9, 0), True),
        (["9.0a"], (10, 0), False),  # arch-specific code runs only on its own architecture
        (["7.0", "7.5", "8.0", "8.6", "8.9", "9.0"], (8, 9), True),
    ],
)
def test_covers(archs, capability, expected) -> None:
    assert _build.covers(archs, capability) is expected


# --- cache folder and key -----------------------------------------------------------------------


def test_cache_root_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(_build.CACHE_ENV, raising=False)
    monkeypatch.delenv("TORCH_EXTENSIONS_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert _build.cache_root() == tmp_path / "xdg" / "stylegan_ops"
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "torch_ext"))
    assert _build.cache_root() == tmp_path / "torch_ext" / "stylegan_ops"
    monkeypatch.setenv(_build.CACHE_ENV, str(tmp_path / "ours"))
    assert _build.cache_root() == tmp_path / "ours"


SPEC = _build.EXTENSIONS["bias_act"]


def test_build_folder_changes_with_every_part_of_the_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    base = _build.build_dir(SPEC, ("9.0",), tmp_path)
    assert base == _build.build_dir(SPEC, ("9.0",), tmp_path)  # deterministic
    assert base.name.startswith("stylegan_bias_act-")
    assert _build.build_dir(SPEC, ("8.6",), tmp_path) != base
    assert _build.build_dir(_build.EXTENSIONS["upfirdn2d"], ("9.0",), tmp_path) != base
    monkeypatch.setattr(torch, "__version__", "0.0.0-other")
    assert _build.build_dir(SPEC, ("9.0",), tmp_path) != base
    monkeypatch.undo()
    csrc = tmp_path / "csrc"
    csrc.mkdir()
    for name in SPEC.sources + SPEC.headers:
        (csrc / name).write_bytes((_build.CSRC / name).read_bytes())
    monkeypatch.setattr(_build, "CSRC", csrc)
    assert _build.build_dir(SPEC, ("9.0",), tmp_path) == base
    (csrc / "bias_act.h").write_text((csrc / "bias_act.h").read_text() + "\n// edited\n")
    assert _build.build_dir(SPEC, ("9.0",), tmp_path) != base


def _fake_compile(spec, archs, folder, verbose, log) -> Path:
    """Stands in for the compiler: slow enough for the others to queue, counts its calls."""
    with open(folder.parent / "compiles.txt", "a") as fh:
        fh.write(f"{os.getpid()}\n")
    time.sleep(0.5)
    library = folder / f"{spec.name}.so"
    library.write_text("not really a library")
    return library


def _failing_compile(spec, archs, folder, verbose, log) -> Path:
    with open(folder.parent / "compiles.txt", "a") as fh:
        fh.write(f"{os.getpid()}\n")
    time.sleep(0.5)
    raise _build.BuildError("bias_act.cu(12): error: identifier 'oops' is undefined")


def test_ensure_built_compiles_once_then_uses_the_cache(tmp_path: Path) -> None:
    logs: list[str] = []
    first = _build.ensure_built(SPEC, ("9.0",), tmp_path, _fake_compile, log=logs.append)
    again = _build.ensure_built(SPEC, ("9.0",), tmp_path, _fake_compile, log=logs.append)
    assert first == again and first.is_file()
    assert len((tmp_path / "compiles.txt").read_text().split()) == 1
    manifest = _build._read_json(first.parent / "build.json")
    assert manifest["key"] == _build.build_key(SPEC, ("9.0",)) and manifest["library"] == first.name
    assert not list(tmp_path.rglob("*.tmp"))  # written atomically


def _build_in_child(root: str, compile_name: str, queue) -> None:
    compile_fn = {"ok": _fake_compile, "fail": _failing_compile}[compile_name]
    try:
        path = _build.ensure_built(SPEC, ("9.0",), Path(root), compile_fn, log=lambda m: None)
        queue.put(("ok", str(path)))
    except _build.BuildError as err:
        queue.put(("error", str(err)))


@pytest.mark.parametrize("outcome", ["ok", "fail"])
def test_concurrent_processes_build_once(tmp_path: Path, outcome: str) -> None:
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_build_in_child, args=(str(tmp_path), outcome, queue)) for _ in range(4)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert len((tmp_path / "compiles.txt").read_text().split()) == 1  # one compile for all four
    kinds = {kind for kind, _ in results}
    assert kinds == ({"ok"} if outcome == "ok" else {"error"})
    assert len({text for _, text in results}) == 1  # the same library, or the same compiler error
    if outcome == "fail":
        assert "identifier 'oops' is undefined" in results[0][1]
        # A process that starts after the failure tries again (the user may have fixed the cause).
        _build.ensure_built(SPEC, ("9.0",), tmp_path, _fake_compile, log=lambda m: None)
        assert len((tmp_path / "compiles.txt").read_text().split()) == 2


def test_lock_says_it_waits_and_times_out(tmp_path: Path) -> None:
    logs: list[str] = []
    with _build.file_lock(tmp_path / "x.lock", "thing", logs.append):
        ctx = multiprocessing.get_context("fork")
        queue = ctx.Queue()

        def contender() -> None:
            messages: list[str] = []
            try:
                with _build.file_lock(tmp_path / "x.lock", "thing", messages.append, timeout=1.5):
                    queue.put(("acquired", messages))
            except _build.BuildError as err:
                queue.put((str(err), messages))

        proc = ctx.Process(target=contender)
        proc.start()
        error, messages = queue.get(timeout=30)
        proc.join(timeout=30)
    assert "waited 2 s for the build lock" in error or "waited 1 s for the build lock" in error
    assert any("waiting for another process that is building thing" in m for m in messages)
    with _build.file_lock(tmp_path / "x.lock", "thing", logs.append, timeout=1):
        pass  # released by the holder's exit from the block


def test_find_prebuilt_by_architecture(tmp_path: Path) -> None:
    archs = ("7.5", "8.0", "9.0")
    library = _build.ensure_built(SPEC, archs, tmp_path, _fake_compile, log=lambda m: None)
    assert _build.find_prebuilt(SPEC, [(8, 6)], tmp_path) == library
    assert _build.find_prebuilt(SPEC, [(8, 0), (9, 0)], tmp_path) == library
    assert _build.find_prebuilt(SPEC, [(7, 0)], tmp_path) is None
    assert _build.find_prebuilt(_build.EXTENSIONS["upfirdn2d"], [(9, 0)], tmp_path) is None
    library.unlink()  # an incomplete build folder is not a build
    assert _build.find_prebuilt(SPEC, [(9, 0)], tmp_path) is None


# --- tools and the real subprocess build --------------------------------------------------------


def _script(path: Path, text: str) -> Path:
    path.write_text("#!/bin/sh\n" + text)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


def test_cuda_home_sees_through_wrappers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = tmp_path / "cuda-13.0" / "bin"
    real.mkdir(parents=True)
    _script(
        real / "nvcc",
        'case "$1" in --version) echo "Cuda compilation tools, release 13.0, V13.0.88";; '
        f'--dryrun) echo "#\\$ TOP={real}/.." >&2;; esac\n',
    )
    wrapper_bin = tmp_path / "usr-local-bin"
    wrapper_bin.mkdir()
    _script(wrapper_bin / "nvcc", f'exec {real / "nvcc"} "$@"\n')
    monkeypatch.delenv("CUDA_HOME", raising=False)
    monkeypatch.delenv("CUDA_PATH", raising=False)
    monkeypatch.setenv("PATH", f"{wrapper_bin}{os.pathsep}{os.environ['PATH']}")
    nvcc = _toolchain.find_nvcc()
    assert nvcc.path == str(wrapper_bin / "nvcc") and nvcc.version == "13.0.88"
    assert _toolchain.cuda_home(nvcc.path) == str(tmp_path / "cuda-13.0")


def test_missing_tools_are_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(_toolchain, "find_ninja", lambda: _toolchain.Tool(None, "", "ninja was not found; pip install ninja"))
    monkeypatch.setattr(_toolchain, "find_nvcc", lambda: _toolchain.Tool(None, "", "nvcc (the CUDA compiler) was not found"))
    with pytest.raises(_build.BuildError, match="ninja was not found.*nvcc .* was not found"):
        _build.compile_in_subprocess(SPEC, ("9.0",), tmp_path, False, lambda m: None)


def _tiny_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str) -> _build.ExtensionSpec:
    csrc = tmp_path / "csrc"
    csrc.mkdir(exist_ok=True)
    (csrc / "tiny.cpp").write_text(body)
    monkeypatch.setattr(_build, "CSRC", csrc)
    return _build.ExtensionSpec(f"stylegan_tiny_{abs(hash(body)) % 10**8}", ("tiny.cpp",), (), cuda=False)


@pytest.mark.skipif(_toolchain.find_cxx().path is None or _toolchain.find_ninja().path is None, reason="needs c++ and ninja")
def test_subprocess_build_reports_the_compilers_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = _tiny_spec(tmp_path, monkeypatch, "int answer() { return undefined_name; }\n")
    with pytest.raises(_build.BuildError) as info:
        _build.ensure_built(spec, (), tmp_path / "cache", log=lambda m: None)
    assert "undefined_name" in str(info.value) and "was not declared" in str(info.value)
    assert "build.log" in str(info.value)
    spec = _tiny_spec(tmp_path, monkeypatch, "int answer() { return 42; }\n")
    library = _build.ensure_built(spec, (), tmp_path / "cache", log=lambda m: None)
    assert library.is_file() and library.suffix == ".so"


# --- impl resolution and the one warning --------------------------------------------------------

BROKEN = extension.Availability(False, "building the upfirdn2d extension failed: upfirdn2d.cu(3): error: oops", "read the error")


@pytest.fixture
def fake_gpu_status(monkeypatch: pytest.MonkeyPatch):
    """Pretend cuda:0 exists and set what its kernels' status is."""
    statuses = {"bias_act": extension.Availability(True), "upfirdn2d": BROKEN}
    monkeypatch.setattr(extension, "device_status", lambda index: dict(statuses))
    monkeypatch.delenv(impl.ENV_VAR, raising=False)
    impl._warn_fallback.cache_clear()
    yield statuses
    impl._warn_fallback.cache_clear()


def test_auto_on_cpu_is_the_reference_silently() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert impl.resolve_impl("auto", "upfirdn2d", torch.device("cpu"), torch.float32) == "ref"
    with pytest.raises(impl.CudaOpsUnavailableError, match="kernels run on CUDA devices only"):
        impl.resolve_impl("cuda", "upfirdn2d", torch.device("cpu"))


def test_auto_warns_once_with_reason_fix_and_how_to_silence(fake_gpu_status) -> None:
    gpu = torch.device("cuda", 0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            assert impl.resolve_impl("auto", "upfirdn2d", gpu, torch.float16) == "ref"
            assert impl.resolve_impl("auto", "bias_act", gpu, torch.float16) == "cuda"
    fallback = [w for w in caught if issubclass(w.category, impl.CudaOpsFallbackWarning)]
    assert len(fallback) == 1
    text = str(fallback[0].message)
    assert "upfirdn2d.cu(3): error: oops" in text and "fix: read the error" in text
    assert "STYLEGAN_OPS=ref" in text and "python -m ops doctor" in text


def test_cuda_raises_with_the_compilers_error(fake_gpu_status, monkeypatch: pytest.MonkeyPatch) -> None:
    gpu = torch.device("cuda", 0)
    with pytest.raises(impl.CudaOpsUnavailableError, match=r"impl='cuda' for upfirdn2d: .*error: oops"):
        impl.resolve_impl("cuda", "upfirdn2d", gpu)
    monkeypatch.setenv(impl.ENV_VAR, "cuda")
    with pytest.raises(impl.CudaOpsUnavailableError, match="error: oops"):
        impl.resolve_impl("auto", "upfirdn2d", gpu)
    monkeypatch.setenv(impl.ENV_VAR, "ref")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert impl.resolve_impl("auto", "upfirdn2d", gpu) == "ref"


def test_dtypes_without_kernels(fake_gpu_status) -> None:
    gpu = torch.device("cuda", 0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert impl.resolve_impl("auto", "bias_act", gpu, torch.complex64) == "ref"
    with pytest.raises(impl.CudaOpsUnavailableError, match="support float32, float64, float16 and bfloat16"):
        impl.resolve_impl("cuda", "bias_act", gpu, torch.complex64)


def test_environment_problem_on_this_machine() -> None:
    problem = extension.environment_problem()
    if torch.version.cuda is None:
        assert problem is not None and "CPU-only build" in problem.reason
    elif not torch.cuda.is_available():
        assert problem is not None and "no CUDA device" in problem.reason
    else:
        assert problem is None


# --- command line -------------------------------------------------------------------------------


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the report of a machine without a GPU")
def test_doctor_without_gpu(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(_build.CACHE_ENV, str(tmp_path))
    result = CliRunner().invoke(cli, ["doctor"])
    assert result.exit_code == 1, result.output
    for expected in ("python", "torch", "nvcc", "ninja", "c++", "GPU", "cache", "STYLEGAN_OPS"):
        assert expected in result.output
    verdict = result.output.strip().splitlines()[-1]
    assert verdict.startswith("fast path: INACTIVE: ") and ("CPU-only" in verdict or "no CUDA device" in verdict)


def test_doctor_and_build_reject_a_bad_arch() -> None:
    result = CliRunner().invoke(cli, ["doctor", "--arch", "sm_90"])
    assert result.exit_code == 2 and "--arch" in result.output and "'8.6'" in result.output
    if torch.version.cuda is not None:
        result = CliRunner().invoke(cli, ["build", "--arch", "sm_90"])
        assert result.exit_code == 2 and "--arch" in result.output


@pytest.mark.skipif(torch.version.cuda is not None, reason="checks the message of a CPU-only PyTorch")
def test_build_needs_a_cuda_build_of_torch() -> None:
    result = CliRunner().invoke(cli, ["build", "--arch", "9.0"])
    assert result.exit_code == 1 and "CPU-only build" in result.output


def test_cache_lists_and_cleans(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(_build.CACHE_ENV, str(tmp_path))
    _build.ensure_built(SPEC, ("8.6", "9.0"), tmp_path, _fake_compile, log=lambda m: None)
    result = CliRunner().invoke(cli, ["cache"])
    assert result.exit_code == 0 and "1 builds" in result.output and "archs 8.6;9.0" in result.output
    result = CliRunner().invoke(cli, ["cache", "--clean"])
    assert result.exit_code == 0 and not any(tmp_path.iterdir())


def test_python_dash_m_ops_runs() -> None:
    import subprocess

    out = subprocess.run([sys.executable, "-m", "ops", "--help"], capture_output=True, text=True, check=True)
    assert "build" in out.stdout and "doctor" in out.stdout


# --- the backward formulas the kernels' autograd uses, checked with the reference -----------------


def _ref_op(x, f, upx, upy, downx, downy, x0, x1, y0, y1, flip, gain):
    """The registered operator's signature, computed by the reference."""
    return _upfirdn2d_ref(x, f, (upx, upy), (downx, downy), (x0, x1, y0, y1), flip, gain)


@pytest.mark.parametrize("fname, up, down, pad, flip", [g for g in GRID if FILTERS[g[0]]().ndim == 2])
def test_transposed_parameters_give_the_gradient(fname, up, down, pad, flip) -> None:
    f = FILTERS[fname]().double()
    x = torch.randn(2, 3, 7, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0), requires_grad=True)
    params = (*up, *down, *pad, flip, 1.5)
    y = _ref_op(x, f, *params)
    dy = torch.randn(y.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    (want,) = torch.autograd.grad(y, x, dy)
    px = _transposed_padding(x.shape[3], y.shape[3], up[0], down[0], pad[0], f.shape[1])
    py = _transposed_padding(x.shape[2], y.shape[2], up[1], down[1], pad[2], f.shape[0])
    got = _ref_op(dy, f, down[0], down[1], up[0], up[1], *px, *py, not flip, 1.5)
    torch.testing.assert_close(got, want)
    f_grad = f.clone().requires_grad_(True)
    (want_f,) = torch.autograd.grad(_ref_op(x, f_grad, *params), f_grad, dy)
    torch.testing.assert_close(_filter_grad(_ref_op, x.detach(), dy, f, params), want_f)


def test_public_ops_trace_into_one_graph() -> None:
    # resolve_impl is taken once while tracing (assume_constant_result): no graph break.
    from ops import bias_act, setup_filter, upfirdn2d

    f = setup_filter([1, 3, 3, 1])
    fn = lambda x: bias_act(upfirdn2d(x, f, down=2, padding=1), act="lrelu")  # noqa: E731
    x = torch.randn(1, 2, 8, 8)
    torch.testing.assert_close(torch.compile(fn, backend="aot_eager", fullgraph=True)(x), fn(x))
