"""Network files from strangers: a corpus of hostile files, generated here (never committed), each
refused by ``stylegan.load_network`` and by ``tools/generate.py`` with one line, quickly, without a
large allocation and without running anything. Also: dtypes are checked, non-finite weights warn.

Classes (docs/reliability.md): absurd sizes in the config, too many modules or tensors, deeply
nested JSON, broken safetensors headers, dtypes and shapes that disagree with the config, pickles
and strings that try to run code, bad growth stages.
"""

from __future__ import annotations

import json
import pickle
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors import safe_open
from safetensors.torch import save_file

import stylegan
from stylegan.netfile import MAX_HEADER_BYTES, MAX_MESSAGE, NetworkFileError

REPO = Path(__file__).resolve().parents[1]
DEEP = 200_000
MARKER = "HOSTILE_MARKER"


class _Touch:
    """Unpickling this runs ``touch <marker>``: the loader must never unpickle."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (subprocess.call, (["touch", str(self.marker)],))


def _raw(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata())


def _write_header(path: Path, header: bytes, data: bytes = b"") -> None:
    """A safetensors file with exactly this header (bytes) and payload."""
    path.write_bytes(struct.pack("<Q", len(header)) + header + data)


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def build_corpus(folder: Path, good: Path) -> dict[str, Path]:
    """Write the hostile files; returns name -> path. ``good`` is a valid network file."""
    tensors, meta = _raw(good)
    cfg = json.loads(meta["config"])
    marker = folder / MARKER
    files: dict[str, Path] = {}

    def with_meta(name: str, tensors=tensors, **entries: str) -> None:
        path = folder / f"{name}.safetensors"
        save_file(tensors, str(path), metadata={**meta, **entries})
        files[name] = path

    def with_config(name: str, **changes) -> None:
        with_meta(name, config=json.dumps({**cfg, **changes}))

    # Absurd sizes in the config (the tensors stay those of the tiny network).
    for name, key, value in [
        ("z-1e9", "z_dim", 10**9), ("w-1e9", "w_dim", 10**9), ("c-1e9", "c_dim", 10**9),
        ("base-1e9", "channel_base", 10**9), ("cmax-1e9", "channel_max", 10**9), ("res-2e20", "resolution", 2**20),
        ("res-2e40", "resolution", 2**40), ("mapping-1e6", "mapping_layers", 10**6),
        ("dmapping-1e6", "d_mapping_layers", 10**6), ("channels-1e6", "img_channels", 10**6),
        ("mbstd-1e9", "mbstd_group_size", 10**9), ("fp16-1e9", "num_fp16_res", 10**9), ("z-negative", "z_dim", -1),
        ("z-string", "z_dim", "512"), ("filter-1e5-taps", "resample_filter", [1.0] * 100_000),
        ("filter-1e300", "resample_filter", [1e300, 1.0]), ("preset-1mb", "preset", "p" * 1_000_000),
    ]:
        with_config(f"config-{name}", **{key: value})
    with_meta("config-int-5000-digits", config=json.dumps(cfg).replace('"z_dim": ', '"z_dim": ' + "9" * 5000 + ", \"x\": ", 1))
    with_meta("config-infinite-clamp", config=json.dumps({**cfg, "conv_clamp": 0.5}).replace(
        '"conv_clamp": 0.5', '"conv_clamp": Infinity'))
    with_meta("config-nan-beta", config=json.dumps({**cfg, "w_avg_beta": 0.5}).replace('"w_avg_beta": 0.5', '"w_avg_beta": NaN'))
    with_meta("config-overflow-lr", config=json.dumps({**cfg, "mapping_lr_multiplier": 0.5}).replace(
        '"mapping_lr_multiplier": 0.5', '"mapping_lr_multiplier": 1e999'))
    with_meta("config-unknown-key-1mb", config=json.dumps({**cfg, "k" * 1_000_000: 1}))
    # A filter of 10^7 taps does not fit in the header a network file may have.
    taps = ("1," * 10**7)[:-1]
    with_meta("config-filter-1e7-taps", config=json.dumps(cfg).replace('"resample_filter": [1.0, 3.0, 3.0, 1.0]',
                                                                       f'"resample_filter": [{taps}]'))
    # Modules and growth.
    many = {f"G{i}": "generator" for i in range(5000)}
    with_meta("modules-5000", modules=json.dumps(many), growth=json.dumps({k: [8, 1.0] for k in many}))
    with_meta("modules-kind-code", modules=json.dumps({"G": "__import__('os').system('touch HOSTILE_MARKER')"}))
    with_meta("modules-name-dotted", modules=json.dumps({"G.__class__": "generator"}))
    with_meta("modules-a-list", modules=json.dumps(["G", "generator"]))
    with_meta("modules-empty", modules="{}")
    with_meta("growth-huge-resolution", growth=json.dumps({**json.loads(meta["growth"]), "G": [2**40, 1.0]}))
    with_meta("growth-nan-alpha", growth=json.dumps({**json.loads(meta["growth"]), "G": [8, 0.5]}).replace("0.5", "NaN"))
    with_meta("growth-strings", growth=json.dumps({k: ["8", "x"] for k in json.loads(meta["growth"])}))
    # JSON nested 200,000 deep, in each metadata entry and in the safetensors header itself.
    for key in ("config", "modules", "growth", "metadata"):
        with_meta(f"nested-{key}", **{key: _nested(DEEP)})
    _write_header(folder / "nested-header.safetensors", ('{"a":' * DEEP + "1" + "}" * DEEP).encode())
    files["nested-header"] = folder / "nested-header.safetensors"
    # Broken safetensors headers.
    for name, blob in [("empty", b""), ("eight-bytes", struct.pack("<Q", 0)), ("len-2-63", struct.pack("<Q", 2**63)),
                       ("len-past-end", struct.pack("<Q", 1000) + b"{}"), ("a-list", None),
                       ("not-json", None)]:
        path = folder / f"header-{name}.safetensors"
        if name == "a-list":
            _write_header(path, b"[1, 2, 3]")
        elif name == "not-json":
            _write_header(path, b"{not json at all}")
        else:
            path.write_bytes(blob)
        files[f"header-{name}"] = path
    big = json.dumps({"__metadata__": meta, "pad": {"dtype": "U8", "shape": [0], "data_offsets": [0, 0]},
                      "x": "y" * MAX_HEADER_BYTES}).encode()
    _write_header(folder / "header-5mb.safetensors", big)
    files["header-5mb"] = folder / "header-5mb.safetensors"
    empties = {f"t{i}": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]} for i in range(5000)}
    _write_header(folder / "tensors-5000.safetensors", json.dumps({"__metadata__": meta, **empties}).encode())
    files["tensors-5000"] = folder / "tensors-5000.safetensors"
    huge = {"__metadata__": meta, "G.mapping.w_avg": {"dtype": "F32", "shape": [10**9, 10**9], "data_offsets": [0, 16]}}
    _write_header(folder / "tensor-shape-1e18.safetensors", json.dumps(huge).encode(), b"\0" * 16)
    files["tensor-shape-1e18"] = folder / "tensor-shape-1e18.safetensors"
    past = {"__metadata__": meta, "G.mapping.w_avg": {"dtype": "F32", "shape": [4], "data_offsets": [0, 10**12]}}
    _write_header(folder / "tensor-offset-past-end.safetensors", json.dumps(past).encode(), b"\0" * 16)
    files["tensor-offset-past-end"] = folder / "tensor-offset-past-end.safetensors"
    # Dtypes and shapes that disagree with the config.
    first = sorted(k for k in tensors if k.endswith("weight") and tensors[k].ndim == 2)[0]
    for dtype in (torch.float16, torch.bfloat16, torch.float64, torch.int32):
        with_meta(f"dtype-{str(dtype)[6:]}", tensors={**tensors, first: tensors[first].to(dtype)})
    with_meta("dtype-all-f64", tensors={k: v.double() for k, v in tensors.items()})
    with_meta("shape-flattened", tensors={**tensors, first: tensors[first].reshape(-1)})
    with_meta("shape-bigger", tensors={**tensors, first: torch.zeros(tensors[first].shape[0] * 64, tensors[first].shape[1])})
    with_meta("tensor-missing", tensors={k: v for k, v in tensors.items() if k != first})
    with_meta("tensor-extra", tensors={**tensors, "G.extra.weight": torch.zeros(3)})
    with_config("config-w-dim-differs", w_dim=cfg["w_dim"] * 2)
    with_meta("format-other", format="stylegan-net/2")
    # Things that would run code if anything unpickled or shelled out.
    torch.save({"G": _Touch(marker)}, folder / "pickle.safetensors")
    files["pickle-as-safetensors"] = folder / "pickle.safetensors"
    (folder / "pickle.pkl").write_bytes(pickle.dumps(_Touch(marker)))
    files["pickle-pkl"] = folder / "pickle.pkl"
    with_meta("metadata-pickle-bytes", metadata=json.dumps({"kimg": 1}) + pickle.dumps(_Touch(marker)).hex())
    return files


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    G, D = stylegan.build("tiny", 8, img_channels=1, c_dim=0)
    path = tmp_path_factory.mktemp("good") / "good.safetensors"
    stylegan.save_network(path, {"G": G, "D": D, "G_ema": G}, G.config, {"kimg": 1})
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, good: Path) -> dict[str, Path]:
    return build_corpus(tmp_path_factory.mktemp("hostile"), good)


def test_the_corpus_is_large_and_the_good_file_loads(corpus: dict[str, Path], good: Path) -> None:
    assert len(corpus) >= 40
    assert set(stylegan.load_network(good)) == {"G", "D", "G_ema"}


def test_every_hostile_file_is_refused_in_one_line_quickly(corpus: dict[str, Path]) -> None:
    refused = 0
    for name, path in corpus.items():
        t0 = time.process_time()
        with pytest.raises(NetworkFileError) as err:
            stylegan.load_network(path)
        cpu = time.process_time() - t0
        message = str(err.value)
        assert "\n" not in message and len(message) <= MAX_MESSAGE, name
        assert message.startswith(str(path)), name
        assert cpu < 0.5, f"{name}: {cpu:.2f} s of CPU to refuse"
        refused += 1
    assert refused == len(corpus)
    assert not (next(iter(corpus.values())).parent / MARKER).exists()
    print(f"hostile network files refused: {refused} of {len(corpus)}")


@pytest.mark.parametrize("name, match", [
    ("config-z-1e9", r"z_dim=1000000000: expected an int in \[1, 8192\]"),
    ("config-res-2e40", r"resolution=1099511627776: expected a power of two in \[4, 8192\]"),
    ("config-filter-1e5-taps", "resample_filter=.*expected a tuple of 1 to 16 numbers"),
    ("config-filter-1e7-taps", "header has .* bytes; a network file's has at most"),
    ("modules-5000", "'modules' must map 1 to 8 identifiers"),
    ("nested-config", "metadata entry 'config' is JSON nested too deeply"),
    ("nested-header", "safetensors header is JSON nested too deeply"),
    ("tensors-5000", "holds 5000 tensors; a network file holds at most 4096"),
    ("dtype-float16", r"dtype of .*: file F16, config F32"),
    ("dtype-all-f64", r"dtype of .*: file F64, config F32"),
    ("shape-flattened", r"shape of .*: file \[.*\], config \[.*\]"),
    ("config-int-5000-digits", "'config' is not valid JSON"),
    ("config-nan-beta", "w_avg_beta=nan: expected a finite number"),
    ("growth-nan-alpha", "growth stage of 'G'"),
    ("pickle-as-safetensors", "not a readable safetensors file"),
])
def test_refusals_say_what_is_wrong(corpus: dict[str, Path], name: str, match: str) -> None:
    with pytest.raises(NetworkFileError, match=match):
        stylegan.load_network(corpus[name])


def test_generate_cli_exits_2_with_one_line_for_every_hostile_file(corpus: dict[str, Path], tmp_path: Path) -> None:
    from tools.generate import main

    for name, path in corpus.items():
        out = tmp_path / "out"
        result = CliRunner().invoke(main, ["--network", str(path), "--seeds", "0", "--outdir", str(out),
                                           "--device", "cpu"])
        errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
        assert result.exit_code == 2, f"{name}: {result.output}"
        assert len(errors) == 1 and "--network" in errors[0] and "Traceback" not in result.output, name
        assert not out.exists(), name
    assert not (tmp_path / MARKER).exists() and not (next(iter(corpus.values())).parent / MARKER).exists()


def test_refusing_allocates_little(corpus: dict[str, Path], good: Path, tmp_path: Path) -> None:
    """Peak resident memory of a fresh process grows by less than 64 MiB over the whole corpus
    (the files claim gigabytes to terabytes)."""
    listing = tmp_path / "files.json"
    listing.write_text(json.dumps([str(p) for p in corpus.values()]))
    script = f"""
import json, resource, sys
import stylegan
stylegan.load_network({str(good)!r})
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
for path in json.load(open({str(listing)!r})):
    try:
        stylegan.load_network(path)
    except stylegan.NetworkFileError:
        pass
    else:
        sys.exit("loaded " + path)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=300,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    grown_kib = int(done.stdout.split()[-1])
    assert grown_kib < 64 * 1024, f"peak memory grew by {grown_kib / 1024:.0f} MiB"
    print(f"peak memory growth while refusing {len(corpus)} hostile files: {grown_kib / 1024:.1f} MiB")


def test_dtype_is_not_reinterpreted(good: Path, tmp_path: Path) -> None:
    tensors, meta = _raw(good)
    half = {k: v.half() for k, v in tensors.items()}
    path = tmp_path / "half.safetensors"
    save_file(half, str(path), metadata=meta)
    with pytest.raises(NetworkFileError, match="dtype of"):
        stylegan.read_network_info(path)


def test_non_finite_weights_load_with_a_warning_naming_them(good: Path, tmp_path: Path) -> None:
    tensors, meta = _raw(good)
    names = sorted(k for k in tensors if k.startswith("G_ema.") and k.endswith("weight"))[:2]
    for name, value in zip(names, (float("nan"), float("inf"))):
        bad = tensors[name].clone()
        bad.view(-1)[0] = value
        tensors[name] = bad
    path = tmp_path / "nan.safetensors"
    save_file(tensors, str(path), metadata=meta)
    with pytest.warns(UserWarning, match="2 tensor") as record:
        modules = stylegan.load_network(path)
    assert all(n in str(record[0].message) for n in names)
    assert not bool(torch.isfinite(modules["G_ema"].state_dict()[names[0][len("G_ema."):]]).all())


def test_limits_admit_real_networks() -> None:
    """The bounds leave room above every published configuration (config-f 1024, ProGAN 1024)."""
    for preset in ("stylegan2", "paper1024"):
        cfg = stylegan.resolve_config(preset, 1024, 3, 1000)
        with torch.device("meta"):
            stylegan.build_from_config(cfg)
    stylegan.resolve_config("stylegan2", 8192, 16, 100_000, channel_base=2**20, channel_max=8192, z_dim=8192,
                            w_dim=8192, mapping_layers=64)


def test_a_file_swapped_between_header_check_and_read_is_refused(corpus: dict[str, Path], good: Path,
                                                                 monkeypatch) -> None:
    import stylegan.netfile as netfile

    checked = netfile.read_network_info(good)
    monkeypatch.setattr(netfile, "read_network_info", lambda path: checked)
    with pytest.raises(NetworkFileError, match="changed while being read"):
        stylegan.load_network(corpus["shape-flattened"])
