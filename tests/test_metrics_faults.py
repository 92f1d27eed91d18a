"""Damaged reals in the metrics pass: a bad sample is skipped (never replaced: a stand-in would bias
the statistics), named in one warning, counted in the results; the CLI stops with one line and exit
status 2 only when nothing usable is left or three shards in a row cannot be read (the training rule)."""

from __future__ import annotations

import json
import re
import tarfile
import warnings
from pathlib import Path

import pytest
from click.testing import CliRunner

from generate_helpers import make_network_file
from metrics_helpers import ReplayGenerator, random_images, write_dataset
from train_fixtures import rewrite_shard
from tools.metrics import main
from training.metrics import RandomConvFeatures, compute_metrics, parse_metrics

N, PER_SHARD = 40, 10
BROKEN_PNG = b"\x89PNG\r\n\x1a\nbroken"


def _truncate_at(shard: Path, member: str) -> None:
    """Cut the shard 10 bytes into ``member``'s data: the members before it stay readable."""
    with tarfile.open(shard) as tar:
        offset = next(m.offset_data for m in tar if m.name == member)
    shard.write_bytes(shard.read_bytes()[: offset + 10])


def _damage(ds: Path) -> list[int]:
    """Break shards 0-3 of ``ds`` in four ways; returns the ids of the images still usable."""
    rewrite_shard(ds / "t-000000.tar", lambda name, data: BROKEN_PNG if name == "00000003.png" else data)
    rewrite_shard(ds / "t-000001.tar", lambda name, data: b"abc" if name == "00000015.cls" else data)
    _truncate_at(ds / "t-000002.tar", "00000024.png")
    (ds / "t-000003.tar").unlink()
    return [i for i in range(N) if i not in (3, 15) and not 24 <= i < 40]


@pytest.fixture()
def images():
    return random_images(N, res=16, channels=1, seed=1)


def test_bad_reals_are_skipped_named_and_counted(images, tmp_path):
    ds = write_dataset(tmp_path / "ds", images, labels=[i % 3 for i in range(N)], per_shard=PER_SHARD, num_classes=3)
    good = _damage(ds)
    # A generator that replays exactly the usable reals scores FID 0 only if the bad ones were
    # skipped: a stand-in (a duplicate of another real) would move the real statistics.
    G = ReplayGenerator(images[good], c_dim=3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        (result,) = compute_metrics(G, parse_metrics(f"fid{len(good)}_full"), RandomConvFeatures(dim=16),
                                    data=str(ds), cache_dir=str(tmp_path / "cache"), batch_size=8)
    messages = [str(w.message) for w in caught]
    assert result.num_real == len(good) and result.real_skipped == N - len(good) == 18
    assert result.results[f"fid{len(good)}_full"] == pytest.approx(0.0, abs=1e-4)
    for parts in (("t-000000.tar' member '00000003.png': unreadable image",),
                  ("t-000001.tar' member '00000015.cls': label 'abc' is not a whole number",),
                  ("t-000002.tar' is damaged after member", "4 of 10 images read, the rest are skipped"),
                  ("t-000003.tar' cannot be read (FileNotFoundError", "its 10 images are skipped")):
        hits = [m for m in messages if all(p in m for p in parts)]
        assert len(hits) == 1 and "\n" not in hits[0] and "replaced" not in hits[0], (parts, messages)

    # The cache keeps the count: a second call reads the statistics from it and reports the same.
    (again,) = compute_metrics(G, parse_metrics(f"fid{len(good)}_full"), RandomConvFeatures(dim=16),
                               data=str(ds), cache_dir=str(tmp_path / "cache"), batch_size=8)
    assert again.real_skipped == 18 and again.results == result.results


@pytest.fixture()
def network(tmp_path):
    return make_network_file(tmp_path / "gray.safetensors", img_channels=1)


def _cli(network: Path, ds: Path, tmp_path: Path):
    args = ["--network", network, "--data", ds, "--metrics", "fid10_full", "--features", "random", "--batch", 8,
            "--cache-dir", tmp_path / "cache", "--device", "cpu"]
    return CliRunner().invoke(main, [str(a) for a in args])


def test_cli_reports_the_skipped_reals(images, network, tmp_path):
    ds = write_dataset(tmp_path / "ds", images, per_shard=PER_SHARD)
    rewrite_shard(ds / "t-000001.tar", lambda name, data: BROKEN_PNG if name == "00000012.png" else data)
    (ds / "t-000003.tar").write_bytes(b"")
    result = _cli(network, ds, tmp_path)
    assert result.exit_code == 0, result.output
    (line,) = [json.loads(x) for x in result.stdout.splitlines() if x.startswith("{")]
    assert line["real_skipped"] == 11 and line["num_real"] == N - 11
    warned = [x.strip() for x in re.split(r"[\r\n]", result.stderr) if x.strip().startswith("warning: ")]
    assert len(warned) == 2 and "00000012.png" in warned[0] + warned[1], result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize("case", ["three_in_a_row", "nothing_usable"])
def test_cli_stops_with_one_line(images, network, tmp_path, case):
    ds = write_dataset(tmp_path / "ds", images, per_shard=PER_SHARD)
    if case == "three_in_a_row":  # shard 0 is fine, shards 1-3 are not tars at all
        for s in (1, 2, 3):
            (ds / f"t-{s:06d}.tar").write_bytes(b"not a tar file")
        expect = "3 shards in a row unreadable"
    else:  # every shard reads, but no image decodes
        for s in range(4):
            rewrite_shard(ds / f"t-{s:06d}.tar", lambda name, data: BROKEN_PNG)
        expect = f"no usable real image: all {N} images"
    result = _cli(network, ds, tmp_path)
    assert result.exit_code == 2, result.output
    errors = [x for x in result.output.splitlines() if x.startswith("Error:")]
    assert len(errors) == 1 and expect in errors[0], result.output
    assert "Traceback" not in result.output
    assert not list((tmp_path / "cache").glob("metrics/reals-*"))  # nothing cached from a failed pass


def test_clean_reals_report_nothing_skipped(images, network, tmp_path):
    ds = write_dataset(tmp_path / "ds", images, per_shard=PER_SHARD)
    result = _cli(network, ds, tmp_path)
    assert result.exit_code == 0, result.output
    (line,) = [json.loads(x) for x in result.stdout.splitlines() if x.startswith("{")]
    assert line["real_skipped"] == 0 and line["num_real"] == N and "warning:" not in result.stderr
