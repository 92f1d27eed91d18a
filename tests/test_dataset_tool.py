"""tools/dataset_tool.py: sources, labels, transforms, channels, bad inputs, overwrite, interruption."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import stat
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from tools.dataset_tool import main
from training.data import load_dataset_info, open_stream

ROOT = Path(__file__).resolve().parent.parent
COLORS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255)}
FORMATS = ["png", "jpg", "webp", "bmp", "tif"]


def solid(color, size=(12, 10), mode="RGB") -> Image.Image:
    return Image.new(mode, size, color)


def make_class_folders(root: Path, per_class: int = 4) -> Path:
    """<root>/<colour>/<i>.<fmt>: solid images of three colours in five formats and a few sizes."""
    for c, (name, rgb) in enumerate(COLORS.items()):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            fmt = FORMATS[(i + c) % len(FORMATS)]
            solid(rgb, (10 + 2 * i, 16 - i)).save(root / name / f"{i}.{fmt}", quality=95)
    return root


def run(args, ok=True):
    result = CliRunner().invoke(main, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, result.output + repr(result.exception)
    return result


def read_shards(dest: Path) -> list[tuple[str, Image.Image, int | None]]:
    """(key, image, class or None) for every sample, in shard order."""
    info = json.loads((dest / "dataset.json").read_text())
    out = []
    for shard in info["shards"]:
        with tarfile.open(dest / shard["name"]) as tar:
            files = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
        keys = sorted({n.split(".")[0] for n in files})
        assert len(keys) == shard["count"]
        for k in keys:
            im = Image.open(io.BytesIO(files[f"{k}.png"]))
            im.load()
            cls = files.get(f"{k}.cls")
            out.append((k, im, None if cls is None else int(cls)))
    return out


def colour_name(im: Image.Image) -> str:
    rgb = np.asarray(im.convert("RGB")).reshape(-1, 3).mean(0)
    return min(COLORS, key=lambda n: np.abs(rgb - COLORS[n]).sum())


def check_colour_dataset(dest: Path, n: int, resolution: int) -> list:
    info = json.loads((dest / "dataset.json").read_text())
    assert info["num_images"] == n and info["resolution"] == resolution
    assert info["class_names"] == ["blue", "green", "red"] and sum(info["class_counts"]) == n
    samples = read_shards(dest)
    assert len(samples) == n
    for _, im, cls in samples:
        assert im.size == (resolution, resolution)
        assert info["class_names"][cls] == colour_name(im)  # every label matches its image
    return samples


def test_folder_source_with_folder_labels(tmp_path):
    src = make_class_folders(tmp_path / "src")
    result = run(["--source", src, "--dest", tmp_path / "out", "--resolution", 8, "--labels", "folders",
                  "--shard-size", 5, "--workers", 2])
    samples = check_colour_dataset(tmp_path / "out", 12, 8)
    info = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert [s["count"] for s in info["shards"]] == [5, 5, 2] and info["channels"] == 3 and info["skipped"] == []
    labels = [c for _, _, c in samples]
    assert labels != sorted(labels)  # shuffled across shards, not class after class
    assert "Wrote 12 images" in result.output and "Size: input" in result.output
    assert load_dataset_info(str(tmp_path / "out")).num_classes == 3  # the reader takes it


@pytest.mark.parametrize("kind", ["zip", "tar", "tar.gz"])
def test_archive_sources_match_the_folder(tmp_path, kind):
    src = make_class_folders(tmp_path / "src")
    run(["--source", src, "--dest", tmp_path / "ref", "--resolution", 8, "--labels", "folders", "--workers", 1])
    archive = tmp_path / f"src.{kind}"
    files = sorted(p for p in src.rglob("*") if p.is_file())
    if kind == "zip":
        with zipfile.ZipFile(archive, "w") as zf:
            for i, p in enumerate(files):  # one wrapping folder, looked through; stored and deflated members
                method = zipfile.ZIP_DEFLATED if i % 2 else zipfile.ZIP_STORED
                zf.write(p, "digits/" + p.relative_to(src).as_posix(), compress_type=method)
    else:
        with tarfile.open(archive, "w:gz" if kind.endswith("gz") else "w") as tf:
            for p in files:
                tf.add(p, p.relative_to(src).as_posix())
    run(["--source", archive, "--dest", tmp_path / "out", "--resolution", 8, "--labels", "folders", "--prefix", "ref"])
    check_colour_dataset(tmp_path / "out", 12, 8)
    for a, b in zip(read_shards(tmp_path / "ref"), read_shards(tmp_path / "out")):
        assert a[2] == b[2] and np.array_equal(np.asarray(a[1]), np.asarray(b[1]))  # same names, same shuffle


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_labels_from_file(tmp_path, fmt):
    src = tmp_path / "src"
    src.mkdir()
    table = {}
    for i in range(6):
        name = list(COLORS)[i % 3]
        solid(COLORS[name]).save(src / f"img{i}.png")
        table[f"img{i}.png"] = name
    solid((9, 9, 9)).save(src / "unlisted.png")
    labels = tmp_path / f"labels.{fmt}"
    if fmt == "json":
        labels.write_text(json.dumps({"labels": [[k, v] for k, v in table.items()]}))
    else:
        with open(labels, "w", newline="") as f:
            csv.writer(f).writerows([["file", "class"], *table.items()])
    run(["--source", src, "--dest", tmp_path / "out", "--resolution", 8, "--labels", labels, "--workers", 1])
    check_colour_dataset(tmp_path / "out", 6, 8)
    skipped = json.loads((tmp_path / "out" / "dataset.json").read_text())["skipped"]
    assert [(s["input"], s["reason"]) for s in skipped] == [("unlisted.png", "no label")]


def test_integer_labels_keep_their_index(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        solid((40 * i, 0, 0)).save(src / f"{i}.png")
    (tmp_path / "l.json").write_text(json.dumps({"0.png": 4, "1.png": 0, "2.png": 4}))
    run(["--source", src, "--dest", tmp_path / "out", "--resolution", 8, "--labels", tmp_path / "l.json", "--workers", 1])
    info = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert info["class_names"] == ["0", "1", "2", "3", "4"] and info["class_counts"] == [1, 0, 0, 0, 2]


def _bars() -> Image.Image:
    """16x8: columns 0-3 red, 4-11 white, 12-15 blue."""
    a = np.full((8, 16, 3), 255, np.uint8)
    a[:, :4] = COLORS["red"]
    a[:, 12:] = COLORS["blue"]
    return Image.fromarray(a)


def _expected(transform: str) -> np.ndarray:
    white, red, blue, black = (255, 255, 255), COLORS["red"], COLORS["blue"], (0, 0, 0)
    out = np.zeros((8, 8, 3), np.uint8)
    if transform == "center-crop":
        out[:] = white
    elif transform == "resize":
        out[:], out[:, :2], out[:, 6:] = white, red, blue
    else:  # pad and center-crop-wide: the 2:1 image becomes 8x4 on a black canvas
        out[:] = black
        out[2:6], out[2:6, :2], out[2:6, 6:] = white, red, blue
    return out


@pytest.mark.parametrize("transform", ["center-crop", "center-crop-wide", "resize", "pad"])
def test_transforms(tmp_path, transform):
    src = tmp_path / "src"
    src.mkdir()
    _bars().save(src / "bars.png")
    square = np.zeros((16, 16, 3), np.uint8)
    square[4:12] = 255  # a wide crop keeps exactly the white band
    Image.fromarray(square).save(src / "square.png")
    run(["--source", src, "--dest", tmp_path / "out", "--resolution", 8, "--transform", transform,
         "--resize-filter", "box", "--workers", 1, "--seed", 1])
    got = [np.asarray(im) for _, im, _ in read_shards(tmp_path / "out")]
    assert all(g.shape == (8, 8, 3) for g in got)
    assert any(np.array_equal(g, _expected(transform)) for g in got), transform
    if transform == "center-crop-wide":
        band = np.zeros((8, 8, 3), np.uint8)
        band[2:6] = 255
        assert any(np.array_equal(g, band) for g in got)


@pytest.mark.parametrize("channels,mode", [("1", "L"), ("3", "RGB"), ("4", "RGBA")])
def test_channels(tmp_path, channels, mode):
    src = tmp_path / "src"
    src.mkdir()
    solid((200, 100, 50, 128), mode="RGBA").save(src / "rgba.png")
    solid(77, mode="L").save(src / "gray.jpg")
    solid((1, 2, 3)).convert("P").save(src / "pal.gif")
    run(["--source", src, "--dest", tmp_path / "out", "--resolution", 8, "--channels", channels, "--workers", 1])
    samples = read_shards(tmp_path / "out")
    assert len(samples) == 3 and all(im.mode == mode for _, im, _ in samples)
    assert json.loads((tmp_path / "out" / "dataset.json").read_text())["channels"] == int(channels)
    info, it = open_stream(str(tmp_path / "out"), rank=0, world_size=1, seed=0, batch_size=3, workers=0, channels=int(channels))
    assert next(it)[0].shape == (3, int(channels), 8, 8)


@pytest.mark.parametrize("modes,expected", [(["L", "L"], 1), (["L", "RGB"], 3), (["RGBA", "LA"], 4)])
def test_default_channels_from_data(tmp_path, modes, expected):
    src = tmp_path / "src"
    src.mkdir()
    for i, m in enumerate(modes):
        Image.new(m, (8, 8)).save(src / f"{i}.png")
    run(["--source", src, "--dest", tmp_path / "out", "--resolution", 8, "--workers", 1])
    assert json.loads((tmp_path / "out" / "dataset.json").read_text())["channels"] == expected


def test_bad_inputs_are_skipped_with_reasons(tmp_path):
    src = make_class_folders(tmp_path / "src", per_class=2)
    reddish = np.random.default_rng(0).integers(0, 40, (16, 16, 3), dtype=np.uint8)
    reddish[..., 0] += 215
    buf = io.BytesIO()
    Image.fromarray(reddish).save(buf, format="png")
    good = buf.getvalue()  # big enough that the cuts below land inside the image data
    (src / "red" / "noise.png").write_bytes(good)
    corrupt = bytearray(good)
    corrupt[len(corrupt) // 2] ^= 0xFF  # a flipped byte inside the image data: CRC/zlib error
    (src / "red" / "corrupt.png").write_bytes(bytes(corrupt))
    (src / "red" / "truncated.png").write_bytes(good[: len(good) // 2])
    (src / "green" / "empty.png").write_bytes(b"")
    (src / "green" / "text.png").write_text("this is not an image\n")
    solid(COLORS["blue"], (2, 2)).save(src / "blue" / "small.png")
    (src / "notes.txt").write_text("ignored: not an image extension")
    result = run(["--source", src, "--dest", tmp_path / "out", "--resolution", 16, "--labels", "folders", "--workers", 2])
    check_colour_dataset(tmp_path / "out", 7, 16)
    skipped = {s["input"]: s["reason"] for s in json.loads((tmp_path / "out" / "dataset.json").read_text())["skipped"]}
    assert skipped == {"red/corrupt.png": "truncated or corrupt", "red/truncated.png": "truncated or corrupt",
                       "green/empty.png": "empty file", "green/text.png": "not an image", "blue/small.png": "too small"}
    assert "Skipped 5 inputs: 2 truncated or corrupt" in result.output
    for reason in ("1 empty file", "1 not an image", "1 too small"):
        assert reason in result.output


def test_nothing_usable_fails_and_writes_nothing(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.png").write_bytes(b"")
    (src / "b.jpg").write_text("nope")
    result = run(["--source", src, "--dest", tmp_path / "out", "--resolution", 8], ok=False)
    assert result.exit_code != 0 and "--source" in result.output and "no usable image" in result.output
    assert not (tmp_path / "out").exists()
    (tmp_path / "none").mkdir()
    result = run(["--source", tmp_path / "none", "--dest", tmp_path / "out", "--resolution", 8], ok=False)
    assert result.exit_code != 0 and "no image files" in result.output


def test_wrong_arguments_name_the_option(tmp_path):
    src = make_class_folders(tmp_path / "src", per_class=1)
    cases = [(["--labels", tmp_path / "missing.json"], "--labels"), (["--transform", "zoom"], "--transform"),
             (["--resolution", 2], "--resolution"), (["--channels", "2"], "--channels")]
    for extra, option in cases:
        args = ["--source", src, "--dest", tmp_path / "out", "--resolution", 8, *extra]
        result = run(args, ok=False)
        assert result.exit_code == 2 and option in result.output, (extra, result.output)
    (tmp_path / "text.txt").write_text("x")
    result = run(["--source", tmp_path / "text.txt", "--dest", tmp_path / "out", "--resolution", 8], ok=False)
    assert result.exit_code == 2 and "--source" in result.output
    flat = tmp_path / "flat"
    flat.mkdir()
    solid((1, 1, 1)).save(flat / "a.png")
    result = run(["--source", flat, "--dest", tmp_path / "out", "--resolution", 8, "--labels", "folders"], ok=False)
    assert result.exit_code == 2 and "--labels" in result.output


def test_refuses_to_overwrite_and_keeps_other_files(tmp_path):
    src = make_class_folders(tmp_path / "src", per_class=2)
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "README.md").write_text("keep me")
    run(["--source", src, "--dest", dest, "--resolution", 8, "--workers", 1, "--shard-size", 2])
    before = (dest / "dataset.json").read_bytes()
    result = run(["--source", src, "--dest", dest, "--resolution", 16, "--workers", 1], ok=False)
    assert result.exit_code != 0 and "--overwrite" in result.output and "--dest" in result.output
    assert (dest / "dataset.json").read_bytes() == before
    run(["--source", src, "--dest", dest, "--resolution", 16, "--workers", 1, "--shard-size", 4, "--overwrite"])
    info = load_dataset_info(str(dest))
    assert info.resolution == 16 and len(info.shards) == 2
    assert sorted(p.name for p in dest.iterdir()) == ["README.md", "dataset.json", "out-000000.tar", "out-000001.tar"]


def test_max_images_and_determinism(tmp_path):
    src = make_class_folders(tmp_path / "src")
    for name in ("a", "b"):
        run(["--source", src, "--dest", tmp_path / name, "--resolution", 8, "--max-images", 5, "--shard-size", 2,
             "--workers", 2, "--prefix", "s"])
    info = json.loads((tmp_path / "a" / "dataset.json").read_text())
    assert [s["count"] for s in info["shards"]] == [2, 2, 1] and info["num_images"] == 5
    for s in info["shards"]:
        assert (tmp_path / "a" / s["name"]).read_bytes() == (tmp_path / "b" / s["name"]).read_bytes()


def test_interrupted_run_leaves_no_dataset(tmp_path):
    """SIGKILL mid-way: dest must not hold a dataset.json; a rerun then works without --overwrite."""
    src = tmp_path / "src"
    src.mkdir()
    big = np.random.default_rng(0).integers(0, 256, (384, 384, 3), dtype=np.uint8)
    Image.fromarray(big).save(src / "0000.png")
    for i in range(1, 3000):  # hard links: a slow conversion with almost no setup
        os.link(src / "0000.png", src / f"{i:04d}.png")
    dest = tmp_path / "out"
    cmd = [sys.executable, str(ROOT / "tools" / "dataset_tool.py"), "--source", str(src), "--dest", str(dest),
           "--resolution", "64", "--shard-size", "10", "--workers", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not list(dest.glob(".partial-*/*.tar")):  # wait until shards are being written
            assert proc.poll() is None and time.monotonic() < deadline, "the conversion ended before it could be killed"
            time.sleep(0.02)
        time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not (dest / "dataset.json").exists() and not list(dest.glob("*.tar"))
    with pytest.raises(FileNotFoundError):
        load_dataset_info(str(dest))
    small = tmp_path / "small"
    small.mkdir()
    solid((5, 5, 5)).save(small / "a.png")
    run(["--source", small, "--dest", dest, "--resolution", 8, "--workers", 1])
    assert load_dataset_info(str(dest)).num_images == 1
    assert not list(dest.glob(".partial-*"))  # the killed run's working folder was cleaned up


def test_resolution_must_be_a_power_of_two(tmp_path):
    src = make_class_folders(tmp_path / "src", per_class=1)
    for bad in (12, 100, 1000):
        result = run(["--source", src, "--dest", tmp_path / "out", "--resolution", bad], ok=False)
        errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
        assert result.exit_code == 2 and len(errors) == 1, result.output
        assert "--resolution" in errors[0] and f"{bad}: expected a power of two" in errors[0]
    assert not (tmp_path / "out").exists()


def test_fifos_devices_and_symlink_loops_are_listed_as_skipped(tmp_path):
    src = make_class_folders(tmp_path / "src", per_class=2)
    os.mkfifo(src / "red" / "pipe.png")  # opening it to read would block forever
    (src / "red" / "loop.png").symlink_to("loop.png")
    (src / "green" / "a.png").symlink_to("b.png")
    (src / "green" / "b.png").symlink_to("a.png")
    (src / "blue" / "gone.png").symlink_to("nowhere.png")
    (src / "blue" / "again").symlink_to("..", target_is_directory=True)  # a folder loop: not followed
    expected = {"red/pipe.png": ("not a regular file", "FIFO"), "red/loop.png": ("symlink loop", "itself"),
                "green/a.png": ("symlink loop", "itself"), "green/b.png": ("symlink loop", "itself"),
                "blue/gone.png": ("dangling symlink", "does not exist")}
    try:
        os.mknod(src / "blue" / "null.png", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
        expected["blue/null.png"] = ("not a regular file", "character device")
    except PermissionError:  # creating device files needs root
        pass
    result = run(["--source", src, "--dest", tmp_path / "out", "--resolution", 8, "--labels", "folders",
                  "--workers", 1])
    info = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert info["num_images"] == 6
    skipped = {s["input"]: s for s in info["skipped"]}
    for name, (reason, detail) in expected.items():
        assert skipped[name]["reason"] == reason and detail in skipped[name]["detail"], skipped.get(name)
    assert f"Skipped {len(expected)} inputs" in result.output


def test_nvidia_spellings_get_one_line(tmp_path):
    """NVIDIA's --width/--height and a zip --dest: one line naming what to use here, nothing written."""
    src = make_class_folders(tmp_path / "src", per_class=1)
    for flag in ("--width", "--height"):
        result = run(["--source", src, "--dest", tmp_path / "out", flag, 256], ok=False)
        assert result.exit_code == 2 and f"{flag} is NVIDIA's dataset_tool flag" in result.output
        assert "--resolution 256" in result.output and "Traceback" not in result.output
    result = run(["--source", src, "--dest", tmp_path / "ffhq.zip", "--resolution", 8], ok=False)
    assert result.exit_code == 2 and "--dest" in result.output and "folder" in result.output
    assert f"--dest {tmp_path / 'ffhq'}" in result.output
    assert not (tmp_path / "ffhq.zip").exists() and not (tmp_path / "out").exists()
