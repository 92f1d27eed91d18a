"""compute_metrics end to end on tiny datasets: known values, the real-data pass, the stats cache, the
training hook (metric-<name>.jsonl) and the feature extractors (random, and Inception's messages).
"""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch

import stylegan
from metrics_helpers import ReplayGenerator, random_images, write_dataset
from training.metrics import (
    MetricUnavailable,
    RandomConvFeatures,
    build_extractor,
    compute_metrics,
    evaluate_snapshot,
    find_inception_weights,
    load_inception,
    parse_metrics,
)
from training.metrics import inception, reals, runner, stats_cache
from training.metrics.features import to_rgb

N = 40


@pytest.fixture(scope="module")
def images():
    return random_images(N, res=16, channels=1, seed=0)


@pytest.fixture()
def dataset(tmp_path, images):
    return write_dataset(tmp_path / "ds", images, per_shard=15)  # shards of 15, 15, 10


@pytest.fixture()
def cache(tmp_path):
    return str(tmp_path / "cache")


def metrics_of(G, names, dataset, cache_dir, **kw):
    results = compute_metrics(G, parse_metrics(names), RandomConvFeatures(dim=16), data=str(dataset),
                              cache_dir=cache_dir, batch_size=kw.pop("batch_size", 8), **kw)
    return {k: v for r in results for k, v in r.results.items()}


# ------------------------------------------------------------------------------------ known values
def test_generator_that_replays_the_dataset_scores_perfectly(images, dataset, cache):
    G = ReplayGenerator(images)
    out = metrics_of(G, f"fid{N}_full,kid{N}_full,pr{N}_3_full,is{N}", dataset, cache)
    assert out[f"fid{N}_full"] == pytest.approx(0.0, abs=1e-6)
    # Identical samples: the unbiased MMD^2 is <= 0 (a PSD kernel's off-diagonal mean is at most its diagonal's).
    assert out[f"kid{N}_full"] <= 0.0
    assert out[f"pr{N}_3_full_precision"] == 1.0 and out[f"pr{N}_3_full_recall"] == 1.0
    assert out[f"is{N}_mean"] >= 1.0
    assert {c["noise_mode"] for c in G.calls} == {"random"} and {c["truncation_psi"] for c in G.calls} == {1.0}


def test_collapsed_generator_loses_recall_not_precision(images, dataset, cache):
    collapsed = np.repeat(images[:4], N // 4, axis=0)  # 4 distinct images, each repeated
    G = ReplayGenerator(collapsed)
    out = metrics_of(G, f"fid{N}_full,pr{N}_3_full", dataset, cache)
    assert out[f"pr{N}_3_full_precision"] == 1.0
    assert out[f"pr{N}_3_full_recall"] < 0.5
    assert out[f"fid{N}_full"] > 0.05


def test_mirror_doubles_the_reals_and_labels_follow_class_counts(images, tmp_path, cache):
    labels = [i % 3 for i in range(N)]
    ds = write_dataset(tmp_path / "labelled", images, labels=labels, per_shard=15, num_classes=3)
    G = ReplayGenerator(images, c_dim=3)
    results = compute_metrics(G, parse_metrics(f"fid{N}_full"), RandomConvFeatures(dim=16), data=str(ds),
                              mirror=True, cache_dir=cache, batch_size=8)
    assert results[0].num_real == 2 * N
    c = torch.cat([call["c"] for call in G.calls])
    assert c.shape == (N, 3) and torch.equal(c.sum(dim=1), torch.ones(N))
    unlabelled = write_dataset(tmp_path / "unlabelled", images)
    with pytest.raises(ValueError, match="conditional .* has no labels"):
        compute_metrics(G, parse_metrics("fid10_full"), RandomConvFeatures(), data=str(unlabelled), cache=False)


def test_real_pass_reads_each_image_once_in_order(images, dataset):
    src = reals.open_reals(str(dataset))
    got = torch.cat([b for p in range(src.num_parts) for b in reals.iter_part(src, p, batch_size=4)])
    assert torch.equal(got, torch.from_numpy(images).permute(0, 3, 1, 2))
    mirrored = reals.open_reals(str(dataset), mirror=True, resolution=8)
    batches = list(reals.iter_part(mirrored, 0, batch_size=4))
    assert [b.shape[0] for b in batches] == [4, 4, 4, 4, 4, 4, 3, 3]
    assert torch.equal(batches[1], batches[0].flip(-1)) and batches[0].shape[-1] == 8
    box = torch.from_numpy(images[:4]).permute(0, 3, 1, 2).float()
    expected = torch.nn.functional.avg_pool2d(box, 2).round().to(torch.uint8)
    assert torch.equal(batches[0], expected)
    with pytest.raises(ValueError, match="resolution 32 does not fit the dataset's 16"):
        reals.open_reals(str(dataset), resolution=32)
    with pytest.raises(ValueError, match="3-channel images but the dataset .* has 1"):
        reals.open_reals(str(dataset), channels=3)


def test_real_generator_end_to_end_and_progressive_stage(dataset, cache):
    torch.manual_seed(0)
    G, _ = stylegan.build("tiny", resolution=16, img_channels=1, growth="progressive")
    out = metrics_of(G.eval(), "fid24_full,is24", dataset, cache)
    assert set(out) == {"fid24_full", "is24_mean", "is24_std"} and all(np.isfinite(list(out.values())))
    G.set_growth(8, 1.0)  # a snapshot mid progressive growing: reals are compared at 8x8
    results = compute_metrics(G, parse_metrics("fid24_full"), RandomConvFeatures(dim=16), data=str(dataset),
                              cache_dir=cache, batch_size=8)
    assert np.isfinite(results[0].results["fid24_full"])


def test_results_do_not_depend_on_the_chunking_of_reals(images, dataset, cache):
    """Batch size changes forward batches and summation order only: equal to float rounding."""
    G = ReplayGenerator(images[::-1].copy())
    a = metrics_of(G, "fid30_full,kid30_full", dataset, cache, batch_size=8, cache=False)
    b = metrics_of(G, "fid30_full,kid30_full", dataset, cache, batch_size=5, cache=False)
    assert a == pytest.approx(b, rel=1e-4, abs=1e-6)


def test_argument_errors(images, dataset):
    G = ReplayGenerator(images)
    with pytest.raises(ValueError, match="data: required for fid10_full"):
        compute_metrics(G, parse_metrics("fid10_full"), RandomConvFeatures())
    with pytest.raises(ValueError, match="noise_mode='x'"):
        compute_metrics(G, parse_metrics("is10"), RandomConvFeatures(), noise_mode="x")

    no_logits = RandomConvFeatures()
    no_logits.num_classes = 0
    with pytest.raises(ValueError, match="no class logits"):
        compute_metrics(G, parse_metrics("is10"), no_logits)


# ----------------------------------------------------------------------------------------- cache
def count_real_passes(monkeypatch) -> list[int]:
    calls = []
    original = runner.real_stats

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(runner, "real_stats", counting)
    return calls


def test_cache_hit_skips_the_real_pass(images, dataset, cache, monkeypatch):
    passes = count_real_passes(monkeypatch)
    G = ReplayGenerator(images)
    first = metrics_of(G, "fid20_full", dataset, cache)
    second = metrics_of(G, "fid20_full", dataset, cache)
    assert passes == [1] and first == second
    entries = list((stats_cache.cache_root(cache) / "metrics").glob("reals-*.safetensors"))
    assert len(entries) == 1


def test_cache_invalidation(images, dataset, cache, monkeypatch, tmp_path):
    passes = count_real_passes(monkeypatch)
    G = ReplayGenerator(images)
    metrics_of(G, "fid20_full", dataset, cache)
    metrics_of(G, "fid20_full", dataset, cache, mirror=True)                 # mirror is in the key
    assert len(passes) == 2
    compute_metrics(G, parse_metrics("fid20_full"), RandomConvFeatures(dim=16, seed=1), data=str(dataset),
                    cache_dir=cache, batch_size=8)                           # another feature network
    assert len(passes) == 3
    metrics_of(G, "kid20_full", dataset, cache)                              # FID kept no samples; KID needs them
    assert len(passes) == 4
    metrics_of(G, "fid20_full,kid20_full", dataset, cache)                   # now both are served
    assert len(passes) == 4
    # Rewrite one shard with other pixels: the content hash changes.
    changed = images.copy()
    changed[0] = 255 - changed[0]
    write_dataset(dataset, changed, per_shard=15)
    metrics_of(G, "fid20_full", dataset, cache)
    assert len(passes) == 5
    # A damaged entry is recomputed, not fatal.
    for entry in (stats_cache.cache_root(cache) / "metrics").glob("reals-*.safetensors"):
        entry.write_bytes(b"garbage")
    metrics_of(G, "fid20_full", dataset, cache)
    assert len(passes) == 6


def test_shard_hashes_are_remembered_by_size_and_mtime(dataset, cache, monkeypatch):
    urls = tuple(str(p) for p in sorted(dataset.glob("t-*.tar")))
    first = stats_cache.shard_hashes(urls, cache)
    assert all(h.startswith("sha256:") for h in first) and len(set(first)) == 3
    monkeypatch.setattr(stats_cache, "_hash_file", lambda path: pytest.fail(f"re-hashed {path}"))
    assert stats_cache.shard_hashes(urls, cache) == first
    assert stats_cache.shard_hashes(("http://host/ds-000000.tar",), cache) == ["url:http://host/ds-000000.tar"]


# ---------------------------------------------------------------------------------- training hook
def test_evaluate_snapshot_writes_metric_files(images, dataset, cache, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    notes = []
    out = evaluate_snapshot(ReplayGenerator(images), metrics="fid20_full,pr20_3_full", data=str(dataset),
                            run_dir=run_dir, snapshot="network-snapshot-000004.safetensors", kimg=4.0,
                            features="random", cache_dir=cache, batch_size=8, log=notes.append)
    assert set(out) == {"fid20_full", "pr20_3_full_precision", "pr20_3_full_recall"}
    record = json.loads((run_dir / "metric-fid20_full.jsonl").read_text().splitlines()[-1])
    assert record["snapshot"] == "network-snapshot-000004.safetensors" and record["kimg"] == 4.0
    assert record["results"] == {"fid20_full": out["fid20_full"]} and record["num_real"] == N
    assert record["features"].startswith("random-conv")
    assert (run_dir / "metric-pr20_3_full.jsonl").is_file()
    assert any("cached" in n for n in notes)


def test_missing_weights_is_a_warning_in_training(images, dataset, cache, tmp_path, monkeypatch):
    monkeypatch.delenv(inception.ENV_WEIGHTS, raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    notes = []
    out = evaluate_snapshot(ReplayGenerator(images), metrics="fid20_full", data=str(dataset), run_dir=run_dir,
                            snapshot="snap.safetensors", cache_dir=cache, log=notes.append)
    assert out == {} and not list(run_dir.iterdir())
    assert len(notes) == 1 and notes[0].startswith("warning: metrics fid20_full skipped for snap.safetensors: ")
    assert "weights-inception-2015-12-05-6726825d.pth" in notes[0]
    with pytest.warns(UserWarning, match="fid20_full skipped for snap.safetensors: .*Inception weights"):
        assert evaluate_snapshot(ReplayGenerator(images), metrics="fid20_full", data=str(dataset), run_dir=run_dir,
                                 snapshot="snap.safetensors", cache_dir=cache) == {}


# ------------------------------------------------------------------------------------- extractors
def test_missing_weights_message_names_the_file_and_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.delenv(inception.ENV_WEIGHTS, raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    cache = tmp_path / "cache"
    with pytest.raises(MetricUnavailable) as info:
        find_inception_weights(cache_dir=cache)
    message = str(info.value)
    assert inception.WEIGHTS_URL in message
    assert str(cache / "weights-inception-2015-12-05-6726825d.pth") in message
    assert "--inception-weights" in message and "STYLEGAN_INCEPTION_WEIGHTS" in message
    monkeypatch.setenv(inception.ENV_WEIGHTS, str(tmp_path / "nope.pth"))
    with pytest.raises(MetricUnavailable, match="nope.pth.* given by the STYLEGAN_INCEPTION_WEIGHTS environment"):
        find_inception_weights(cache_dir=cache)
    with pytest.raises(MetricUnavailable, match=r"given by inception_weights \(--inception-weights\)"):
        find_inception_weights(tmp_path / "other.pth")
    # Found in the cache dir under either published name, and the explicit path wins.
    (cache).mkdir()
    (cache / "pt_inception-2015-12-05-6726825d.pth").write_bytes(b"x")
    monkeypatch.delenv(inception.ENV_WEIGHTS)
    assert find_inception_weights(cache_dir=cache).name == "pt_inception-2015-12-05-6726825d.pth"


def test_missing_package_and_weights_are_one_message(tmp_path, monkeypatch):
    monkeypatch.delenv(inception.ENV_WEIGHTS, raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    missing = (None, "ModuleNotFoundError: No module named 'torch_fidelity'")
    monkeypatch.setattr(inception, "_import_fidelity", lambda: missing)
    with pytest.raises(MetricUnavailable) as info:
        load_inception(cache_dir=tmp_path)
    message = str(info.value)
    assert message.startswith("(1) Inception weights") and "(2) The Inception feature network needs" in message
    assert "pip install 'stylegan-train[metrics]'" in message
    weights = tmp_path / "w.pth"
    torch.save({"a": torch.zeros(1)}, weights)
    with pytest.raises(MetricUnavailable, match="needs the optional package torch-fidelity") as info:
        build_extractor("inception", inception_weights=weights)
    assert "Inception weights" not in str(info.value)


class Executes:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_weights_that_are_not_plain_tensors_are_refused(tmp_path, capsys):
    bad = tmp_path / "code.pth"
    bad.write_bytes(pickle.dumps({"w": Executes()}, protocol=2))
    with pytest.raises(MetricUnavailable, match="cannot be read as a plain tensor file"):
        inception._load_cached(str(bad), 0, "cpu")
    assert "must never run" not in capsys.readouterr().out
    text = tmp_path / "text.pth"
    text.write_text("not weights")
    with pytest.raises(MetricUnavailable, match="cannot be read as a plain tensor file"):
        inception._load_cached(str(text), 0, "cpu")


def test_random_extractor_is_deterministic_and_takes_any_channels():
    images = torch.from_numpy(random_images(6, res=16, channels=3, seed=1)).permute(0, 3, 1, 2).contiguous()
    a, b = RandomConvFeatures(seed=0), RandomConvFeatures(seed=0)
    out = a(images)
    assert out["features"].shape == (6, a.feature_dim) and out["logits"].shape == (6, 10)
    assert torch.equal(out["features"], b(images)["features"])
    assert not torch.equal(out["features"], RandomConvFeatures(seed=1)(images)["features"])
    gray = images[:, :1]
    assert torch.equal(a(gray)["features"], a(gray.expand(-1, 3, -1, -1))["features"])
    rgba = torch.cat([images, torch.zeros_like(images[:, :1])], dim=1)
    assert torch.equal(a(rgba)["features"], out["features"])
    assert a(torch.nn.functional.interpolate(images.float(), size=64).to(torch.uint8))["features"].shape == (6, 128)
    with pytest.raises(ValueError, match="uint8"):
        a(images.float())
    with pytest.raises(ValueError, match="C = 1, 3 or 4"):
        to_rgb(torch.zeros(1, 2, 4, 4, dtype=torch.uint8))
    with pytest.raises(ValueError, match="feature extractor 'vgg'"):
        build_extractor("vgg")
