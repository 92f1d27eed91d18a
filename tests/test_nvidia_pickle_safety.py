"""Reading NVIDIA pickles never runs code from them; foreign files get one line saying what they are.

Every hostile pickle is built here, in the test; no pickle file is committed. Each payload is also
run once through plain ``pickle.loads`` (into another folder) to prove that it is live, so the
"no marker" assertions cannot pass because a payload was inert.
"""

from __future__ import annotations

import builtins
import importlib
import os
import pickle
import re
import subprocess
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import stylegan
from nvidia_fixtures import Reduce, fake_modules, fixture, shared_storage_views, storage_blob
from stylegan.nvidia_pickle import _merge, convert_snapshot, read_nvidia_pickle
from stylegan.safe_unpickle import ALLOWED, PickleRefused, safe_loads
from tools import convert, generate


def _payloads(marker: Path) -> dict[str, object]:
    """Pickled objects that create ``marker`` when unpickled by plain pickle."""
    getattr_os_system = Reduce(getattr, Reduce(importlib.import_module, "os"), "system")
    return {
        "os.system": Reduce(os.system, f"touch {marker}"),
        "builtins.eval": Reduce(builtins.eval, f"open({str(marker)!r}, 'w').close()"),
        "subprocess.Popen": Reduce(subprocess.Popen, ["touch", str(marker)]),
        "importlib.import_module": Reduce(getattr_os_system, f"touch {marker}"),
    }


def _run_plainly(data: bytes) -> None:
    """The control: what ``pickle.loads`` (no allowlist) does with the payload."""
    obj = pickle.loads(data)
    if isinstance(obj, subprocess.Popen):
        obj.wait()


# payload -> the first global it names (os.system is posix.system; the importlib chain starts with getattr)
PAYLOADS = {"os.system": "posix.system", "builtins.eval": "builtins.eval", "subprocess.Popen": "subprocess.Popen",
            "importlib.import_module": "builtins.getattr"}


@pytest.mark.parametrize("kind", PAYLOADS)
def test_a_hostile_pickle_is_refused_and_runs_nothing(kind, tmp_path):
    marker = tmp_path / "marker"
    hostile = tmp_path / "network-snapshot-000000.pkl"
    # Hidden where a snapshot's harmless metadata would be.
    hostile.write_bytes(pickle.dumps({"training_set_kwargs": {"path": _payloads(marker)[kind]}}, protocol=4))
    with pytest.raises(stylegan.NvidiaPickleError, match="refused: the pickle asks for the global") as info:
        read_nvidia_pickle(hostile)
    assert "\n" not in str(info.value) and str(hostile) in str(info.value)
    assert f"global {PAYLOADS[kind]}," in str(info.value)
    assert not marker.exists()
    # The CLIs stop with exit 2 and the same line, and still nothing ran.
    for cli, args in ((convert.main, ["--source", str(hostile), "--dest", str(tmp_path / "n.safetensors")]),
                      (generate.main, ["--network", str(hostile), "--seeds", "0", "--outdir", str(tmp_path / "o")])):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 2 and "refused: the pickle asks for the global" in result.output, result.output
        assert "Traceback" not in result.output
    assert not marker.exists() and not (tmp_path / "n.safetensors").exists() and not (tmp_path / "o").exists()
    # Control: the payload is live.
    control = tmp_path / "control" / "marker"
    control.parent.mkdir()
    _run_plainly(pickle.dumps(_payloads(control)[kind], protocol=4))
    assert control.exists()


def test_a_payload_inside_a_tensor_storage_is_refused(tmp_path):
    marker = tmp_path / "marker"
    header = b"".join(pickle.dumps(x, protocol=2) for x in (
        0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True}))
    blob = header + pickle.dumps(Reduce(os.system, f"touch {marker}"), protocol=2)
    from torch.storage import _load_from_bytes

    data = pickle.dumps({"G": Reduce(_load_from_bytes, blob)}, protocol=4)
    with pytest.raises(PickleRefused, match=r"a tensor storage asks for the global posix\.system"):
        safe_loads(data)
    assert not marker.exists()


def test_the_allowlist_is_small_and_names_no_code_runner():
    modules = {m for m, _ in ALLOWED}
    assert modules <= {"collections", "builtins", "torch._utils", "torch.storage", "torch_utils.persistence",
                       "dnnlib.util", "numpy", "numpy.core.multiarray", "numpy._core.multiarray"}
    assert {n for m, n in ALLOWED if m == "builtins"} == {"set", "frozenset"}


def test_tensors_arrays_and_containers_are_read(tmp_path):
    data = {
        "t": torch.arange(6.0).reshape(2, 3).t(),  # a non-contiguous view: copied
        "half": torch.ones(3, dtype=torch.float16),
        "a": np.arange(4, dtype=np.int32).reshape(2, 2),
        "s": np.float64(0.25),
        "od": OrderedDict(x=1),
        "set": {1, 2},
    }
    obj = safe_loads(pickle.dumps(data, protocol=4))
    assert torch.equal(obj["t"], data["t"]) and obj["half"].dtype == torch.float16
    assert np.array_equal(obj["a"].array, data["a"]) and obj["s"] == 0.25
    assert obj["od"] == OrderedDict(x=1) and obj["set"] == {1, 2}


def test_object_arrays_are_refused():
    with pytest.raises(PickleRefused, match="numpy dtype 'O8'; only plain numeric dtypes"):
        safe_loads(pickle.dumps(np.array([None, 1], dtype=object), protocol=4))


def test_tensors_may_not_claim_more_than_the_file_holds():
    data = pickle.dumps(shared_storage_views(200, 1000), protocol=4)  # 200 x 4000 bytes from one storage
    assert len(data) < 40_000
    with pytest.raises(PickleRefused, match="more than the file holds"):
        safe_loads(data)
    (one,) = safe_loads(pickle.dumps(shared_storage_views(1, 1000), protocol=4))  # one claim is fine
    assert one.shape == (1000,)


def test_tensors_on_one_storage_do_not_alias():
    from torch._utils import _rebuild_tensor_v2
    from torch.storage import _load_from_bytes

    t = torch.arange(12.0)
    storage = Reduce(_load_from_bytes, storage_blob(t))  # pickled once, used by both tensors
    whole = Reduce(_rebuild_tensor_v2, storage, 0, (12,), (1,), False, OrderedDict())
    again = Reduce(_rebuild_tensor_v2, storage, 0, (12,), (1,), False, OrderedDict())
    data = pickle.dumps([whole, again], protocol=4)
    assert data.count(b"FloatStorage") == 1
    a, b = safe_loads(data)
    assert torch.equal(a, t) and torch.equal(b, t)
    a[0] = 100.0
    assert b[0] == 0.0


def test_a_tensor_outside_its_storage_is_refused():
    from torch._utils import _rebuild_tensor_v2
    from torch.storage import _load_from_bytes

    storage = Reduce(_load_from_bytes, storage_blob(torch.zeros(10)))
    bad = Reduce(_rebuild_tensor_v2, storage, 5, (10,), (1,), False, OrderedDict())
    with pytest.raises(PickleRefused, match="reaches outside its storage"):
        safe_loads(pickle.dumps(bad, protocol=4))


def test_a_tensorflow_era_pickle_gets_one_line_that_says_so(tmp_path, monkeypatch):
    module = fake_modules(monkeypatch, "dnnlib.tflib.network")

    class Network:  # stands in for NVIDIA's TF network class: only its name is pickled
        def __init__(self, name: str) -> None:
            self.name, self.version = name, 4

    Network.__module__, Network.__qualname__ = "dnnlib.tflib.network", "Network"
    module.Network = Network
    path = tmp_path / "stylegan2-ffhq-config-f.pkl"
    path.write_bytes(pickle.dumps((Network("G"), Network("D"), Network("Gs")), protocol=3))
    with pytest.raises(stylegan.NvidiaPickleError) as info:
        read_nvidia_pickle(path)
    message = str(info.value)
    assert "TensorFlow-era StyleGAN/StyleGAN2 pickle" in message and "not supported" in message
    assert "legacy.py" in message and "\n" not in message


@pytest.mark.parametrize(
    "content, expected",
    [
        (b"", "not a pickle"),
        (b"\x89PNG\r\n\x1a\n" + bytes(100), "not a pickle"),
        (b"{\"a\": 1}", "not a pickle"),
        (pickle.dumps({"G": torch.zeros(100)}, protocol=4)[:-30], "truncated pickle"),
        (pickle.dumps({"state": 1}, protocol=4), "not an NVIDIA network snapshot"),
    ],
    ids=["empty", "png", "json", "truncated", "other-pickle"],
)
def test_foreign_files_get_one_line(content, expected, tmp_path):
    path = tmp_path / "net.pkl"
    path.write_bytes(content)
    with pytest.raises(stylegan.NvidiaPickleError, match=expected) as info:
        read_nvidia_pickle(path)
    assert "\n" not in str(info.value)
    result = CliRunner().invoke(convert.main, ["--source", str(path), "--dest", str(tmp_path / "n.safetensors")])
    assert result.exit_code == 2 and expected in result.output and "Traceback" not in result.output


def test_our_own_network_file_renamed_pkl_is_not_a_pickle(tmp_path):
    G, D = stylegan.build("tiny", 8, 1, 0)
    path = tmp_path / "net.pkl"
    stylegan.save_network(path, {"G": G}, G.config)
    with pytest.raises(stylegan.NvidiaPickleError, match="not a pickle"):
        read_nvidia_pickle(path)


def test_a_stylegan3_snapshot_is_read_and_said_so(tmp_path):
    """``sg3t-refuse`` was made while only StyleGAN2 was read; now it is read (its outputs against
    NVIDIA's: tests/test_nvidia_pickle_fidelity.py). Its D was made with num_fp16_res 0 and no clamp,
    its G with NVIDIA's defaults (4, 256): D takes G's, and the conversion says so."""
    path = fixture("sg3t-refuse")
    net = read_nvidia_pickle(path)
    assert net.config.family == "stylegan3" and net.config.preset == "nvidia-stylegan3-t"
    assert (net.config.num_fp16_res, net.config.conv_clamp) == (4, 256.0)
    assert net.layout_notes == ["D num_fp16_res=0 -> 4", "D conv_clamp=None -> 256"]
    result = CliRunner().invoke(convert.main, ["--source", str(path), "--dest", str(tmp_path / "n.safetensors")])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "found G, D, G_ema: StyleGAN3-T, G 14 layers (2 critically sampled) + ToRGB / D resnet, 16x16" in out
    assert "D built with G's num_fp16_res and conv_clamp" in out and "D conv_clamp=None -> 256" in out


# ----- StyleGAN3: what the rebuilt network is checked against (fixture records, altered) ----------


@pytest.fixture()
def sg3_snapshot():
    path = fixture("sg3-t-cond-rgb32")
    return path, safe_loads(path.read_bytes())


def _sg3_layer(obj, module: str, layer: str):
    return obj[module].state["_modules"]["synthesis"].state["_modules"][layer]


def _alter_filter(obj):
    buffers = _sg3_layer(obj, "G_ema", "L3_36_64").state["_buffers"]
    buffers["down_filter"] = buffers["down_filter"] + 1e-4


def _alter_padding(obj):
    state = _sg3_layer(obj, "G", "L5_52_64").state
    state["padding"] = [p + 1 for p in state["padding"]]


@pytest.mark.parametrize(
    "change, expected",
    [
        (lambda obj: obj["G"].state["_init_kwargs"].update(foo=1),
         "G kwarg foo=1: our NetworkConfig cannot represent it"),
        (lambda obj: obj["G_ema"].state["_init_kwargs"]["mapping_kwargs"].update(activation="relu"),
         "G_ema.mapping kwarg activation='relu': our NetworkConfig cannot represent it"),
        # A schedule argument NVIDIA's modules keep no attribute of: what it changes is caught layer by layer.
        (lambda obj: [obj[m].state["_init_kwargs"].update(first_stopband=5.0) for m in ("G", "G_ema")],
         "G.synthesis.L11_52_64: out_half_width is 3.893"),
        (_alter_filter, "G_ema.synthesis.L3_36_64.down_filter: differs from ours by 0.0001 (more than 1e-06)"),
        (_alter_padding, "G.synthesis.L5_52_64: padding is ["),
        (lambda obj: obj["G_ema"].state["_modules"]["synthesis"].state["layer_names"].reverse(),
         "G_ema.synthesis: layer 0 is named 'L14_32_3', expected 'L0_<size>_<channels>'"),
        (lambda obj: obj["G"].state["_init_kwargs"].update(num_fp16_res=2),
         "G_ema has num_fp16_res=0 but G has 2: our NetworkConfig has one num_fp16_res for G and D"),
    ],
    ids=["unknown", "mapping-activation", "stopband", "filter", "padding", "layer-names", "fp16-g-vs-g-ema"],
)
def test_what_a_stylegan3_snapshot_is_checked_against(sg3_snapshot, change, expected):
    path, obj = sg3_snapshot
    change(obj)
    with pytest.raises(stylegan.NvidiaPickleError, match=re.escape(expected)) as info:
        convert_snapshot(obj, path)
    assert "\n" not in str(info.value)


def test_a_stylegan3_g_keeps_its_own_channel_schedule():
    """NVIDIA's config-R doubles G's channel_base and channel_max, not D's: ours are g_channel_*."""
    g = dict(family="stylegan3", z_dim=8, g_channel_base=65536, g_channel_max=1024)
    d = dict(channel_base=32768, channel_max=512)
    merged = _merge({"G": g, "D": d, "G_ema": g})
    assert merged == dict(family="stylegan3", z_dim=8, channel_base=32768, channel_max=512, g_channel_base=65536,
                          g_channel_max=1024)
    alike = _merge({"G": g, "D": dict(channel_base=65536, channel_max=1024)})
    assert (alike["g_channel_base"], alike["g_channel_max"], alike["channel_base"]) == (None, None, 65536)
    alone = _merge({"G_ema": g})  # a generator without D: its schedule is the config's
    assert (alone["g_channel_base"], alone["channel_base"], alone["channel_max"]) == (None, 65536, 1024)


# ----- constructor arguments our config cannot represent (fixture records, altered) --------------


@pytest.fixture()
def cond_snapshot():
    path = fixture("sg2-cond-rgb32")
    return path, safe_loads(path.read_bytes())


def test_records_keep_nvidias_constructor_arguments(cond_snapshot):
    path, obj = cond_snapshot
    kwargs = obj["G_ema"].state["_init_kwargs"]
    assert kwargs["mapping_kwargs"] == {"num_layers": 2} and kwargs["architecture"] == "skip"
    assert obj["G_ema"].class_name == "Generator" and len(obj["G_ema"].source_sha256) == 64


@pytest.mark.parametrize(
    "module, change, expected",
    [
        ("G_ema", lambda kw: kw["mapping_kwargs"].update(activation="relu"),
         "G_ema.mapping kwarg activation='relu': our NetworkConfig supports only 'lrelu'"),
        ("G", lambda kw: kw.update(foo=1), "G kwarg foo=1: our NetworkConfig cannot represent it"),
        ("D", lambda kw: kw.update(channel_base=2048), "D has channel_base=2048 but G has 1024: our NetworkConfig has one channel_base for G and D"),
        ("D", lambda kw: kw.update(cmap_dim=7), "D kwarg cmap_dim=7: our NetworkConfig supports only None or 64"),
        ("D", lambda kw: kw["epilogue_kwargs"].update(mbstd_num_channels=3), "mbstd_num_channels=3: must divide"),
    ],
    ids=["activation", "unknown", "channel-base", "cmap-dim", "mbstd"],
)
def test_what_our_config_cannot_represent_is_named(cond_snapshot, module, change, expected):
    path, obj = cond_snapshot
    change(obj[module].state["_init_kwargs"])
    with pytest.raises(stylegan.NvidiaPickleError, match=re.escape(expected)):
        convert_snapshot(obj, path)


def test_runtime_only_arguments_are_reported_not_refused(cond_snapshot):
    path, obj = cond_snapshot
    for name in ("G", "G_ema"):
        obj[name].state["_init_kwargs"]["fused_modconv_default"] = "inference_only"
    net = convert_snapshot(obj, path)
    assert any("fused_modconv_default='inference_only'" in line for line in net.describe())



def test_stylegan2_ada_pytorch_argument_layout_gives_the_same_config(tmp_path):
    """stylegan2-ada-pytorch nests the synthesis arguments (``synthesis_kwargs``) and its legacy.py
    fills every mapping argument, also for an unconditional D; the stylegan3 repository does not."""
    path = fixture("sg2-uncond-gray64-fp16")
    expected = read_nvidia_pickle(path).config
    obj = safe_loads(path.read_bytes())
    synthesis = ("channel_base", "channel_max", "num_fp16_res", "conv_clamp", "architecture")
    for name in ("G", "G_ema"):
        kw = obj[name].state["_init_kwargs"]
        kw["synthesis_kwargs"] = {k: kw.pop(k) for k in synthesis}
        kw["synthesis_kwargs"].update(resample_filter=[1, 3, 3, 1], use_noise=True, activation="lrelu")
        kw["mapping_kwargs"].update(embed_features=None, layer_features=None, activation="lrelu",
                                    lr_multiplier=0.01, w_avg_beta=0.998)
    d_kw = obj["D"].state["_init_kwargs"]
    d_kw["mapping_kwargs"] = {"num_layers": 0, "embed_features": None, "layer_features": None,
                              "activation": "lrelu", "lr_multiplier": 0.1}
    d_kw["block_kwargs"] = {"activation": "lrelu", "resample_filter": [1, 3, 3, 1], "freeze_layers": 0}
    net = convert_snapshot(obj, path)
    assert net.config == expected
    assert "D.block_kwargs freeze_layers=0" in net.ignored_kwargs
