"""Network files: round trip of G / D / G_ema, metadata, growth stage, atomic writes, and refusal of
corrupt, truncated and mismatched files with errors that name what is wrong."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import stylegan
from stylegan.netfile import FORMAT, NetworkFileError


@pytest.fixture(scope="module")
def nets() -> tuple[stylegan.Generator, stylegan.Discriminator, stylegan.Generator]:
    torch.manual_seed(0)
    G, D = stylegan.build("tiny", 8, img_channels=1, c_dim=3, growth="progressive", g_architecture="orig")
    G_ema = copy.deepcopy(G)
    with torch.no_grad():
        G_ema.mapping.w_avg.normal_()
        for p in G_ema.parameters():
            p.mul_(0.5)
    return G, D, G_ema


@pytest.fixture()
def saved(nets: tuple, tmp_path: Path) -> Path:
    G, D, G_ema = nets
    path = tmp_path / "network-snapshot-000010.safetensors"
    stylegan.save_network(path, {"G": G, "D": D, "G_ema": G_ema}, G.config, {"kimg": 10, "run": "demo"})
    return path


def _raw(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata())


def test_round_trip_all_modules(nets: tuple, saved: Path) -> None:
    G, D, G_ema = nets
    loaded = stylegan.load_network(saved)
    assert set(loaded) == {"G", "D", "G_ema"}
    assert isinstance(loaded["G_ema"], stylegan.Generator) and isinstance(loaded["D"], stylegan.Discriminator)
    assert all(not m.training for m in loaded.values())
    for name, module in (("G", G), ("D", D), ("G_ema", G_ema)):
        assert loaded[name].config == module.config
        ref, got = module.state_dict(), loaded[name].state_dict()
        assert ref.keys() == got.keys() and all(torch.equal(ref[k], got[k]) for k in ref)
    assert torch.equal(loaded["G_ema"].mapping.w_avg, G_ema.mapping.w_avg)
    z = torch.randn(2, G.z_dim, generator=torch.Generator().manual_seed(0))
    c = torch.eye(3)[:2]
    G_ema.eval()
    with torch.no_grad():
        assert torch.equal(loaded["G_ema"](z, c, noise_mode="const"), G_ema(z, c, noise_mode="const"))
        out = loaded["G_ema"](z, c, truncation_psi=0.7, generator=torch.Generator().manual_seed(1))
        assert torch.equal(out, G_ema(z, c, truncation_psi=0.7, generator=torch.Generator().manual_seed(1)))


def test_info_without_building(nets: tuple, saved: Path) -> None:
    info = stylegan.read_network_info(saved)
    assert info.config == nets[0].config
    assert info.modules == {"G": "generator", "D": "discriminator", "G_ema": "generator"}
    assert info.metadata == {"kimg": 10, "run": "demo"}
    assert info.growth["G"] == (8, 1.0)
    assert info.tensors["G.mapping.w_avg"] == (nets[0].w_dim,)
    _, header = _raw(saved)
    assert header["format"] == FORMAT and json.loads(header["config"]) == nets[0].config.to_dict()
    assert not any("resample_filter" in k for k in info.tensors)  # rebuilt from the config


def test_growth_stage_is_restored(nets: tuple, tmp_path: Path) -> None:
    G, D, _ = nets
    G.set_growth(4, 1.0), D.set_growth(8, 0.25)
    try:
        path = tmp_path / "grow.safetensors"
        stylegan.save_network(path, {"G": G, "D": D}, G.config)
    finally:
        G.set_growth(8, 1.0), D.set_growth(8, 1.0)
    loaded = stylegan.load_network(path)
    assert (loaded["G"].growth_resolution, loaded["G"].growth_alpha) == (4, 1.0)
    assert (loaded["D"].growth_resolution, loaded["D"].growth_alpha) == (8, 0.25)


def test_load_to_device(saved: Path) -> None:
    loaded = stylegan.load_network(saved, device="cpu")
    assert all(p.device.type == "cpu" for p in loaded["G"].parameters())


def test_atomic_write_leaves_no_temp_and_keeps_old_file(nets: tuple, saved: Path) -> None:
    G, D, _ = nets
    before = saved.read_bytes()
    with pytest.raises(ValueError, match="metadata"):
        stylegan.save_network(saved, {"G": G}, G.config, {"bad": object()})
    assert saved.read_bytes() == before
    stylegan.save_network(saved, {"G": G}, G.config)
    assert [p.name for p in saved.parent.iterdir()] == [saved.name]
    assert set(stylegan.read_network_info(saved).modules) == {"G"}


def test_save_refuses_bad_arguments(nets: tuple, tmp_path: Path) -> None:
    G, D, _ = nets
    other = G.config.replace(channel_max=32)
    with pytest.raises(ValueError, match="different config"):
        stylegan.save_network(tmp_path / "x.safetensors", {"G": G}, other)
    with pytest.raises(ValueError, match="Generator or Discriminator"):
        stylegan.save_network(tmp_path / "x.safetensors", {"G": torch.nn.Linear(2, 2)}, G.config)
    with pytest.raises(ValueError, match="identifier"):
        stylegan.save_network(tmp_path / "x.safetensors", {"G.x": G}, G.config)
    with pytest.raises(ValueError, match="at least one"):
        stylegan.save_network(tmp_path / "x.safetensors", {}, G.config)
    assert not list(tmp_path.iterdir())


def test_missing_and_garbage_files(tmp_path: Path) -> None:
    with pytest.raises(NetworkFileError, match="no such network file"):
        stylegan.load_network(tmp_path / "nope.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"this is not a safetensors file at all" * 10)
    with pytest.raises(NetworkFileError, match="not a readable safetensors file"):
        stylegan.load_network(junk)
    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(plain))
    with pytest.raises(NetworkFileError, match="not a network file"):
        stylegan.load_network(plain)
    with pytest.raises(NetworkFileError, match="not a network file"):
        stylegan.read_network_info(plain)


def test_truncated_file(saved: Path) -> None:
    data = saved.read_bytes()
    for cut in (len(data) - 100, len(data) // 2, 20, 4):
        saved.write_bytes(data[:cut])
        with pytest.raises(NetworkFileError, match="not a readable safetensors file, or truncated"):
            stylegan.load_network(saved)


def test_mismatched_tensors_are_listed(saved: Path) -> None:
    tensors, header = _raw(saved)
    tensors["G.mapping.w_avg"] = torch.zeros(7)  # wrong shape
    del tensors["D.b4.out.bias"]  # missing
    tensors["G_ema.extra.weight"] = torch.zeros(3, 3)  # unexpected
    save_file(tensors, str(saved), metadata=header)
    with pytest.raises(NetworkFileError) as err:
        stylegan.load_network(saved)
    msg = str(err.value)
    assert "do not match the network config" in msg
    assert "shape of G.mapping.w_avg: file [7], config [64]" in msg
    assert "missing D.b4.out.bias [64]" in msg  # conditional: projection to cmap_dim
    assert "unexpected G_ema.extra.weight [3, 3]" in msg


def test_config_that_does_not_fit_the_tensors(saved: Path) -> None:
    tensors, header = _raw(saved)
    cfg = json.loads(header["config"])
    cfg["w_dim"] = 32
    header["config"] = json.dumps(cfg)
    save_file(tensors, str(saved), metadata=header)
    with pytest.raises(NetworkFileError, match=r"shape of G.mapping.w_avg: file \[64\], config \[32\]"):
        stylegan.load_network(saved)


@pytest.mark.parametrize(
    "key, value, match",
    [
        ("config", "{not json", "'config' is not valid JSON"),
        ("config", json.dumps({"resolutoin": 8}), "did you mean 'resolution'"),
        ("config", json.dumps({"resolution": 12}), "resolution=12"),
        ("modules", json.dumps({"G": "painter"}), "'modules' must map"),
        ("growth", json.dumps({"G": 8}), "'growth' must give"),
        ("format", "stylegan-net/0", "not a network file"),
    ],
)
def test_bad_metadata(saved: Path, key: str, value: str, match: str) -> None:
    tensors, header = _raw(saved)
    header[key] = value
    save_file(tensors, str(saved), metadata=header)
    with pytest.raises(NetworkFileError, match=match):
        stylegan.load_network(saved)


def test_bad_growth_stage_in_file(saved: Path) -> None:
    tensors, header = _raw(saved)
    growth = json.loads(header["growth"])
    growth["D"] = [16, 1.0]
    header["growth"] = json.dumps(growth)
    save_file(tensors, str(saved), metadata=header)
    with pytest.raises(NetworkFileError, match="growth stage of 'D'.*resolution=16"):
        stylegan.load_network(saved)


def test_missing_metadata_entry(saved: Path) -> None:
    tensors, header = _raw(saved)
    del header["modules"]
    save_file(tensors, str(saved), metadata=header)
    with pytest.raises(NetworkFileError, match="no 'modules' entry"):
        stylegan.read_network_info(saved)
