"""Broken data at training time: each fault is one warning naming the shard and the member, the
bad samples are replaced by stand-ins and counted (``Batches.skipped``, the tick line and
``stats.jsonl``), batches stay deterministic and resumable, a stream whose shards cannot be read
three times in a row stops with one line, and an unreachable URL fails within a bounded time."""

from __future__ import annotations

import http.server
import json
import shutil
import socket
import tarfile
import threading
import time
import warnings
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from test_data import PER_SHARD, SHARDS, _png, decode_ids, make_dataset
from train_fixtures import rewrite_shard
from training.runlog import unstamped
from training.data import DataError, open_stream
from training.data_info import open_url

N = SHARDS * PER_SHARD


def _stream(ds: Path, **kw):
    args = dict(rank=0, world_size=1, seed=0, batch_size=PER_SHARD, workers=0, use_labels=True, shuffle_buffer=PER_SHARD)
    return open_stream(str(ds), **{**args, **kw})[1]


def _epoch(ds: Path, **kw) -> tuple[list[int], int, list[str]]:
    """(image ids of the first N samples, samples replaced, warning texts)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        it = _stream(ds, **kw)
        ids = [i for _ in range(SHARDS) for i in decode_ids(next(it)[0])[0]]
    return ids, it.skipped, [str(w.message) for w in caught]


def _one(messages: list[str], *parts: str) -> str:
    """The warning holding ``parts``: one line. (A shard is warned about each time it is read; the
    look-ahead for stand-ins may read the next epoch's copy within the first epoch's batches.)"""
    hits = [m for m in messages if all(p in m for p in parts)]
    assert hits and all("\n" not in m for m in hits), (parts, messages)
    assert len(set(hits)) == 1, hits
    return hits[0]


@pytest.fixture()
def ds(tmp_path) -> Path:
    return make_dataset(tmp_path / "ds")


def test_clean_data_replaces_nothing(ds):
    ids, skipped, messages = _epoch(ds)
    assert sorted(ids) == list(range(N)) and skipped == 0 and not messages


def test_truncated_shard(ds):
    shard = ds / "t-000002.tar"
    shard.write_bytes(shard.read_bytes()[: 512 * 9])  # 4 members and a half
    ids, skipped, messages = _epoch(ds)
    text = _one(messages, "t-000002.tar' is damaged after member")
    assert "of 10 images read" in text
    read = int(text.split(" of 10 images read")[0].rsplit(" ", 1)[-1])
    assert 0 < read < PER_SHARD and skipped == PER_SHARD - read and len(ids) == N


def test_missing_and_empty_shards(ds):
    (ds / "t-000001.tar").unlink()
    (ds / "t-000004.tar").write_bytes(b"")
    with tarfile.open(ds / "t-000005.tar", "w"):
        pass
    ids, skipped, messages = _epoch(ds)
    _one(messages, "t-000001.tar' cannot be read (FileNotFoundError")
    _one(messages, "t-000004.tar' cannot be read (ReadError")
    _one(messages, "t-000005.tar' cannot be read (it holds no images but dataset.json lists 10)")
    assert skipped == 3 * PER_SHARD
    assert not {i // PER_SHARD for i in ids} & {1, 4, 5}  # the stand-ins come from readable shards


def test_bad_labels_and_a_class_outside_num_classes(ds):
    def change(name, data):
        return {"00000012.cls": b"abc", "00000013.cls": b"7", "00000014.cls": None}.get(name, data)

    rewrite_shard(ds / "t-000001.tar", change)
    ids, skipped, messages = _epoch(ds)
    _one(messages, "t-000001.tar' member '00000012.cls': label 'abc' is not a whole number")
    _one(messages, "t-000001.tar' member '00000013.cls': class 7 is outside 0..2")
    _one(messages, "t-000001.tar' member '00000014.cls': missing")
    assert skipped == 3 and not {12, 13, 14} & set(ids)


def test_counts_that_disagree_with_dataset_json(ds):
    info = json.loads((ds / "dataset.json").read_text())
    info["shards"][0]["count"] = PER_SHARD - 2  # the shard holds 2 more than listed
    info["shards"][3]["count"] = PER_SHARD + 3  # and this one 3 fewer
    (ds / "dataset.json").write_text(json.dumps(info))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        it = _stream(ds, batch_size=N + 1)
        next(it)
    messages = [str(w.message) for w in caught]
    _one(messages, "t-000000.tar' holds 10 images but dataset.json lists 8: 2 skipped, from member")
    _one(messages, "t-000003.tar' holds 10 images but dataset.json lists 13: 3 skipped")
    assert it.skipped == 3  # the extra images of shard 0 are not in the plan: warned, not stand-ins


def test_corrupt_images_and_wrong_sizes(ds):
    def change(name, data):
        if name == "00000031.png":
            return b"\x89PNG\r\n\x1a\nbroken"
        if name == "00000032.png":
            return _png(32, 3)  # 3 channels in a 1-channel dataset
        return data

    rewrite_shard(ds / "t-000003.tar", change)
    ids, skipped, messages = _epoch(ds)
    _one(messages, "t-000003.tar' member '00000031.png': unreadable image")
    _one(messages, "t-000003.tar' member '00000032.png': 8x8x3 pixels, dataset.json says 8x8x1")
    assert skipped == 2 and not {31, 32} & set(ids)


@pytest.mark.parametrize("workers", [0, 2])
def test_bad_data_keeps_batches_deterministic_and_resumable(ds, workers):
    rewrite_shard(ds / "t-000001.tar", lambda name, data: b"abc" if name == "00000015.cls" else data)
    (ds / "t-000004.tar").write_bytes((ds / "t-000004.tar").read_bytes()[:2000])
    kw = dict(batch_size=7, workers=workers, mirror=True, shuffle_buffer=25)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first = _stream(ds, **kw)
        a = [next(first) for _ in range(20)]
        again = _stream(ds, **kw)
        b = [next(again) for _ in range(20)]
        resumed = _stream(ds, skip_batches=11, **kw)
        c = [next(resumed) for _ in range(9)]
    same = lambda x, y: torch.equal(x[0], y[0]) and torch.equal(x[1], y[1])  # noqa: E731
    assert all(same(x, y) for x, y in zip(a, b)) and first.skipped == again.skipped > 0
    assert all(same(x, y) for x, y in zip(a[11:], c))


@pytest.mark.parametrize("workers", [0, 2])
def test_three_unreadable_shards_in_a_row_stop_with_one_line(ds, workers):
    for shard in ds.glob("t-*.tar"):
        shard.write_bytes(b"not a tar file")
    it = _stream(ds, workers=workers)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(DataError) as err:
            next(it)
    message = str(err.value)
    assert "\n" not in message and "Traceback" not in message
    assert message.startswith("cannot read shard ") and "3 shards in a row unreadable" in message


@pytest.mark.e2e
def test_training_reports_bad_samples_in_the_tick_line_and_stats(tmp_path):
    from train_fixtures import make_dataset as make_train_dataset
    from training.train import main

    data = make_train_dataset(tmp_path / "data", resolution=8, num_images=32, num_classes=4, shards=2)
    rewrite_shard(data / "test-000000.tar", lambda name, d: b"x" if name.endswith(".cls") else d)  # half the labels
    out = tmp_path / "runs"
    args = ["--preset", "tiny", "--data", str(data), "--outdir", str(out), "--batch", "8", "--tick", "0.016", "--workers", "0",
            "--threads", "1", "--kimg", "0.032"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    run = next(out.iterdir())
    stats = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    assert all(s["data_skipped"] > 0 for s in stats)
    assert f"bad data {stats[0]['data_skipped']} " in (run / "log.txt").read_text()


def test_training_stops_with_one_line_when_no_shard_can_be_read(tmp_path):
    from train_fixtures import make_dataset as make_train_dataset
    from training.train import main

    data = make_train_dataset(tmp_path / "data", resolution=8, num_images=32, num_classes=0, shards=2)
    for shard in data.glob("*.tar"):
        shard.unlink()
    args = ["--preset", "tiny", "--data", str(data), "--outdir", str(tmp_path / "runs"), "--batch", "8", "--workers", "0",
            "--threads", "1", "--kimg", "0.016"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "Traceback" not in result.output
    assert "cannot read shard" in errors[0] and "3 shards in a row unreadable" in errors[0]


# ---------------------------------------------------------------------------------------- http
needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="http shards are read with curl")


@needs_curl
def test_refused_url_fails_fast():
    t0 = time.monotonic()
    with pytest.raises(FileNotFoundError, match="127.0.0.1:9"):
        open_stream("http://127.0.0.1:9/ds/", rank=0, world_size=1, seed=0, batch_size=2, workers=0)
    assert time.monotonic() - t0 < 10  # 3 tries, 1 s apart


@needs_curl
def test_server_errors_fail_within_the_retry_bound(ds):
    class Unavailable(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(503)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Unavailable)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        t0 = time.monotonic()
        with pytest.raises(OSError):
            with open_url(f"http://127.0.0.1:{server.server_address[1]}/t-000000.tar") as f:
                f.read()
        assert time.monotonic() - t0 < 10  # WebDataset's own curl: 30 retries, 60 s
    finally:
        server.shutdown()
        server.server_close()


@needs_curl
def test_silent_server_fails_within_the_stall_bound():
    """A server that accepts and never answers: WebDataset's curl would wait forever."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    try:
        t0 = time.monotonic()
        with pytest.raises(OSError):
            with open_url(f"http://127.0.0.1:{silent.getsockname()[1]}/t.tar", connect_timeout=1, stall_timeout=1,
                          retries=1, retry_delay=1) as f:
                f.read()
        elapsed = time.monotonic() - t0
        assert elapsed < 2 * (1 + 1) + 1 + 3, elapsed  # (1 + retries) * (connect + stall) + delay, plus slack
    finally:
        silent.close()


# ---------------------------------------------------------------------------------------- pipe: URLs
def test_silent_pipe_command_is_stopped_within_the_timeout():
    """``pipe:sleep 30`` produces nothing: stopped after the timeout, one line naming the URL."""
    start = time.monotonic()
    with pytest.raises(OSError) as err, open_url("pipe:sleep 30", pipe_timeout=1.5) as stream:
        stream.read(10240)
    took = time.monotonic() - start
    message = str(err.value)
    assert message.startswith("cannot read pipe:sleep 30: the command produced no bytes for 1.5 s") and "\n" not in message
    assert took < 15  # 1.5 s and the kill; generous for a loaded machine, 30 s would mean no bound


def test_pipe_timeout_from_the_environment_counts_as_an_unreadable_shard(ds, monkeypatch):
    from training.data import check_shard

    monkeypatch.setenv("STYLEGAN_PIPE_TIMEOUT", "1")
    start = time.monotonic()
    check = check_shard("pipe:sleep 30", 10)
    assert time.monotonic() - start < 15
    text = check.warning("skipped and replaced")
    assert "pipe:sleep 30" in text and "no bytes for 1 s" in text and "its 10 images are skipped" in text
    monkeypatch.setenv("STYLEGAN_PIPE_TIMEOUT", "soon")
    with pytest.raises(ValueError, match="STYLEGAN_PIPE_TIMEOUT='soon': expected a number of seconds > 0"):
        open_url("pipe:true")


def test_pipe_cat_reads_the_dataset_like_local_files(ds):
    source = f"pipe:cat {ds}/t-{{000000..{SHARDS - 1:06d}}}.tar"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        it = open_stream(source, rank=0, world_size=1, seed=0, batch_size=PER_SHARD, workers=0, use_labels=True,
                         shuffle_buffer=PER_SHARD)[1]
        ids = [i for _ in range(SHARDS) for i in decode_ids(next(it)[0])[0]]
    local = _epoch(ds)[0]
    assert ids == local and it.skipped == 0 and not caught


def test_failing_pipe_command_names_the_url_and_the_exit_status(ds):
    url = f"pipe:cat {ds}/no-such-shard.tar"
    with pytest.raises(OSError) as err, open_url(url) as stream:
        stream.read()
    message = str(err.value)
    assert message.startswith(f"cannot read {url}: the command exited with status 1") and "\n" not in message
    assert "No such file or directory" in message  # the command's own last stderr line


def test_loader_worker_warnings_reach_log_txt(tmp_path):
    """A bad member read by a loader worker (not the training process) is one line in log.txt,
    naming the shard and the member; before, it went to the worker's stderr only."""
    from train_fixtures import make_dataset as make_train_dataset
    from training.train import main

    data = make_train_dataset(tmp_path / "data", resolution=8, num_images=32, num_classes=4, shards=2)
    rewrite_shard(data / "test-000001.tar", lambda name, d: b"x7" if name == "000020.cls" else d)
    out = tmp_path / "runs"
    args = ["--preset", "tiny", "--data", str(data), "--outdir", str(out), "--batch", "8", "--workers", "1",
            "--threads", "1", "--kimg", "0.032", "--tick", "0.016", "--snap", "100"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    lines = [unstamped(line) for line in (next(out.iterdir()) / "log.txt").read_text().splitlines()]
    hits = [line for line in lines if "test-000001.tar' member '000020.cls': label 'x7' is not a whole number" in line]
    assert len(hits) == 1 and hits[0].startswith("warning: skipping shard '"), lines
