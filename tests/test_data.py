"""training/data.py: shapes, labels, per-rank/per-worker coverage, exact resume, mirror, errors."""

from __future__ import annotations

import functools
import http.server
import io
import json
import shutil
import tarfile
import threading

import numpy as np
import pytest
import torch
from PIL import Image

from tools.dataset_writer import ShardWriter
from training.data import StreamPlan, decode_png, load_dataset_info, open_stream

RES = 8
SHARDS, PER_SHARD = 6, 10
N = SHARDS * PER_SHARD


def _png(image_id: int, channels: int) -> bytes:
    """An image that names itself: row 0 holds id % 256 and id // 256; row 1 marks the right edge."""
    a = np.zeros((RES, RES), np.uint8)
    a[0, 0], a[0, 1] = image_id % 256, image_id // 256
    a[1, RES - 1] = 255
    a = np.repeat(a[:, :, None], channels, axis=2) if channels > 1 else a
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="png")
    return buf.getvalue()


def make_dataset(folder, *, channels=1, labelled=True, shards=SHARDS, per_shard=PER_SHARD):
    folder.mkdir(parents=True, exist_ok=True)
    writer = ShardWriter(folder, "t", per_shard)
    for i in range(shards * per_shard):
        writer.add(_png(i, channels), i % 3 if labelled else None)
    writer.close()
    info = {"format": "stylegan-dataset/1", "resolution": RES, "channels": channels, "num_images": writer.num_written,
            "num_classes": 3 if labelled else 0, "class_names": ["a", "b", "c"] if labelled else None,
            "class_counts": None, "shards": writer.shards, "source": "test"}
    (folder / "dataset.json").write_text(json.dumps(info))
    return folder


def decode_ids(images: torch.Tensor) -> tuple[list[int], list[bool]]:
    """(image ids, flipped?) from a batch made by _png."""
    ids, flips = [], []
    for im in images[:, 0].numpy():
        flipped = bool(im[1, 0] == 255)
        row = im[0, ::-1] if flipped else im[0]
        ids.append(int(row[0]) + 256 * int(row[1]))
        flips.append(flipped)
    return ids, flips


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("ds"))


def take(it, n):
    return [next(it) for _ in range(n)]


def test_dataset_info(ds):
    info = load_dataset_info(str(ds))
    assert (info.resolution, info.channels, info.num_images, info.num_classes) == (RES, 1, N, 3)
    assert info.class_names == ("a", "b", "c") and len(info.shards) == SHARDS
    assert info.shard_counts == (PER_SHARD,) * SHARDS
    sub = load_dataset_info(str(ds / "t-{000001..000002}.tar"))  # dataset.json found beside the shards
    assert sub.num_images == 2 * PER_SHARD and sub.shards[0].endswith("t-000001.tar")


@pytest.mark.parametrize("channels", [1, 3])
def test_shapes_dtypes_labels(tmp_path, channels):
    make_dataset(tmp_path, channels=channels)
    info, it = open_stream(str(tmp_path), rank=0, world_size=1, seed=0, batch_size=7, workers=0, use_labels=True,
                           resolution=RES, channels=channels)
    for images, labels in take(it, 5):
        assert images.shape == (7, channels, RES, RES) and images.dtype == torch.uint8 and images.is_contiguous()
        assert labels.shape == (7,) and labels.dtype == torch.int64
        ids, _ = decode_ids(images)
        assert labels.tolist() == [i % 3 for i in ids]
    _, it = open_stream(str(tmp_path), rank=0, world_size=1, seed=0, batch_size=4, workers=0)
    assert next(it)[1].tolist() == [-1] * 4


def test_ranks_and_workers_read_different_data(ds):
    """2 ranks x 2 workers: each worker's first epoch is a full permutation; all four orders differ."""
    streams = {}
    for rank in range(2):
        _, it = open_stream(str(ds), rank=rank, world_size=2, seed=3, batch_size=5, workers=2, shuffle_buffer=2 * PER_SHARD)
        batches = take(it, 2 * N // 5)  # N samples per worker
        for w in range(2):
            ids = [i for images, _ in batches[w::2] for i in decode_ids(images)[0]]
            assert sorted(ids) == list(range(N)), "a worker's first epoch covers every image once"
            streams[(rank, w)] = ids
    orders = [tuple(v) for v in streams.values()]
    assert len(set(orders)) == 4
    firsts = [set(v[: N // 3]) for v in streams.values()]
    assert firsts[0] != firsts[2] and firsts[1] != firsts[3]  # ranks start on different images


@pytest.mark.parametrize("workers", [0, 2])
def test_deterministic_and_exact_resume(ds, workers):
    kw = dict(rank=1, world_size=2, seed=5, batch_size=4, workers=workers, mirror=True, use_labels=True, shuffle_buffer=15)
    _, it = open_stream(str(ds), **kw)
    fresh = take(it, 40)  # 160 samples: well past one epoch of a worker
    _, it = open_stream(str(ds), **kw)
    again = take(it, 40)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(fresh, again))
    for k in (1, 5, 13, 35):
        _, it = open_stream(str(ds), skip_batches=k, **kw)
        for i, (images, labels) in enumerate(take(it, 4)):
            assert torch.equal(images, fresh[k + i][0]) and torch.equal(labels, fresh[k + i][1]), (k, i)


def test_seed_and_mirror(ds):
    _, it = open_stream(str(ds), rank=0, world_size=1, seed=0, batch_size=N, workers=0, mirror=True)
    ids, flips = decode_ids(next(it)[0])
    assert 0.2 < np.mean(flips) < 0.8
    _, it = open_stream(str(ds), rank=0, world_size=1, seed=0, batch_size=N, workers=0, mirror=False)
    ids2, flips2 = decode_ids(next(it)[0])
    assert ids2 == ids and not any(flips2)  # mirroring does not change the order
    _, it = open_stream(str(ds), rank=0, world_size=1, seed=1, batch_size=N, workers=0)
    assert decode_ids(next(it)[0])[0] != ids


def test_world_larger_than_shards(tmp_path):
    make_dataset(tmp_path, shards=2, per_shard=3)
    seen = set()
    for rank in range(8):
        _, it = open_stream(str(tmp_path), rank=rank, world_size=8, seed=0, batch_size=4, workers=0)
        seen.update(decode_ids(next(it)[0])[0])
    assert seen == set(range(6))


def test_sources_pattern_file_url_and_pipe(ds):
    pattern = str(ds / "t-{000002..000003}.tar")
    for source in (pattern, "file:" + pattern, f"pipe:cat {ds}/t-{{000002..000003}}.tar"):
        info, it = open_stream(source, rank=0, world_size=1, seed=0, batch_size=2 * PER_SHARD, workers=0)
        ids = decode_ids(next(it)[0])[0]
        assert sorted(ids) == list(range(2 * PER_SHARD, 4 * PER_SHARD)), source


@pytest.mark.skipif(shutil.which("curl") is None, reason="WebDataset reads http(s) URLs with curl")
def test_http_sources_match_local(ds):
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(ds)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        kw = dict(rank=0, world_size=1, seed=0, batch_size=N // 2, workers=0, use_labels=True)
        local = take(open_stream(str(ds), **kw)[1], 3)
        for source in (url + "/", url + "/t-{000000..000005}.tar"):
            info, it = open_stream(source, **kw)
            assert info.num_images == N and info.shards[0].startswith(url)
            assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(local, take(it, 3)))
    finally:
        server.shutdown()
        server.server_close()


def test_pyspng_and_pillow_decode_alike(ds):
    pytest.importorskip("pyspng")
    out = []
    for decoder in ("pyspng", "pillow"):
        _, it = open_stream(str(ds), rank=0, world_size=1, seed=0, batch_size=9, workers=0, decoder=decoder)
        out.append(take(it, 3))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(*out))
    rgba = io.BytesIO()
    Image.fromarray(np.arange(4 * 4 * 4, dtype=np.uint8).reshape(4, 4, 4)).save(rgba, format="png")
    assert np.array_equal(decode_png(rgba.getvalue(), "pyspng"), decode_png(rgba.getvalue(), "pillow"))


def test_clear_errors(ds, tmp_path):
    with pytest.raises(ValueError, match="resolution 16 does not match the dataset's 8"):
        open_stream(str(ds), rank=0, world_size=1, seed=0, batch_size=2, resolution=16)
    with pytest.raises(ValueError, match="3 image channels do not match the dataset's 1"):
        open_stream(str(ds), rank=0, world_size=1, seed=0, batch_size=2, channels=3)
    with pytest.raises(ValueError, match="rank=2, world_size=2"):
        open_stream(str(ds), rank=2, world_size=2, seed=0, batch_size=2)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        open_stream(str(tmp_path / "nowhere"), rank=0, world_size=1, seed=0, batch_size=2)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no dataset.json"):
        load_dataset_info(str(tmp_path / "empty"))
    lone = tmp_path / "lone"
    lone.mkdir()
    shutil.copy(ds / "t-000000.tar", lone)
    with pytest.raises(FileNotFoundError, match="put dataset.json beside the shards"):
        load_dataset_info(str(lone / "t-000000.tar"))
    with pytest.raises(FileNotFoundError, match=r"t-000006.tar' does not exist \(4 of 10 missing\)"):
        load_dataset_info(str(ds / "t-{000000..000009}.tar"))
    unlabelled = make_dataset(tmp_path / "unlabelled", labelled=False, shards=1)
    with pytest.raises(ValueError, match="use_labels=True but the dataset"):
        open_stream(str(unlabelled), rank=0, world_size=1, seed=0, batch_size=2, use_labels=True)
    info = json.loads((ds / "dataset.json").read_text())
    (tmp_path / "zero").mkdir()
    (tmp_path / "zero" / "dataset.json").write_text(json.dumps({**info, "num_images": 0, "shards": []}))
    with pytest.raises(ValueError, match="holds no images"):
        load_dataset_info(str(tmp_path / "zero"))
    (tmp_path / "typo").mkdir()
    (tmp_path / "typo" / "dataset.json").write_text(json.dumps({**info, "resolutoin": 8}))
    with pytest.raises(ValueError, match="did you mean 'resolution'"):
        load_dataset_info(str(tmp_path / "typo"))


def test_damaged_shard_and_sample(tmp_path):
    make_dataset(tmp_path, shards=1)
    info = json.loads((tmp_path / "dataset.json").read_text())
    info["shards"][0]["count"] = PER_SHARD + 1
    (tmp_path / "dataset.json").write_text(json.dumps(info))
    # A count that disagrees with dataset.json: one warning naming the shard; the missing slot is
    # filled by a stand-in and counted, the plan (and so resuming) unchanged.
    _, it = open_stream(str(tmp_path), rank=0, world_size=1, seed=0, batch_size=PER_SHARD + 1, workers=0)
    with pytest.warns(UserWarning, match="t-000000.tar' holds 10 images but dataset.json lists 11"):
        images, _ = next(it)
    assert it.skipped == 1 and len(set(decode_ids(images)[0])) == PER_SHARD
    # A sample whose PNG is corrupt is replaced by a neighbour, with a warning naming it.
    bad = tmp_path / "bad"
    bad.mkdir()
    with tarfile.open(bad / "t-000000.tar", "w") as tar:
        for key, data in (("a", _png(1, 1)), ("b", b"\x89PNG\r\n\x1a\nbroken"), ("c", _png(3, 1))):
            ti = tarfile.TarInfo(f"{key}.png")
            ti.size = len(data)
            tar.addfile(ti, io.BytesIO(data))
    (bad / "dataset.json").write_text(json.dumps({**info, "num_classes": 0, "class_names": None,
                                                  "shards": [{"name": "t-000000.tar", "count": 3}], "num_images": 3}))
    for decoder in ("auto", "pillow"):
        _, it = open_stream(str(bad), rank=0, world_size=1, seed=0, batch_size=3, workers=0, decoder=decoder)
        with pytest.warns(UserWarning, match=r"b\.png"):
            images, _ = next(it)
        assert sorted(set(decode_ids(images)[0])) == [1, 3]
    # A shard that cannot be read at all names itself.
    (bad / "t-000000.tar").write_bytes(b"")
    _, it = open_stream(str(bad), rank=0, world_size=1, seed=0, batch_size=3, workers=0)
    with pytest.raises(OSError, match="cannot read shard .*t-000000.tar"):
        next(it)


def test_plan_locate_matches_group_walk():
    plan = StreamPlan((5, 7, 3), seed=1, rank=0, worker=0, shuffle_buffer=9)
    sizes = [plan.group_size(j) for j in range(6)]
    offset = sum(sizes[:4]) + 2
    assert plan.locate(offset) == (4, 2)
    assert plan.shards_per_group == 2 and all(len(set(plan.group_shards(j))) <= 2 for j in range(6))
