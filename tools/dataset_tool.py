"""Convert a folder, zip or tar of images into WebDataset shards + dataset.json (DESIGN.md, "Shards").

    python tools/dataset_tool.py --source photos.zip --dest datasets/photos --resolution 256 \\
        [--transform center-crop] [--labels folders|FILE] [--workers N] [--shard-size 1000]

Images are decoded, converted and re-encoded as compressed PNG by `--workers` processes, in an
order shuffled by `--seed` so that every shard mixes the classes. A bad input (empty, not an image,
truncated, too small, unreadable; a FIFO, device file, socket or symlink loop in a folder) is skipped
and recorded with its reason in dataset.json; the run fails only when nothing usable is left. Output appears in `--dest` atomically (tools/dataset_writer.py).
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import time
from collections import Counter, deque
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import closing
from collections.abc import Callable, Iterator
from pathlib import Path

if __package__ in (None, ""):  # run as `python tools/dataset_tool.py`: make `tools.*` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import click
import numpy as np
from tqdm import tqdm

from tools.dataset_image import FILTERS, TRANSFORMS, ImageSpec, Result, peek_kind, process_chunk
from tools.dataset_sources import Listing, file_labels, folder_labels, list_source, read_item, source_kind
from tools.dataset_writer import ShardWriter, check_dest, commit, new_partial
from training.data_info import DatasetInfo

_CHANNEL_PEEK = 256  # inputs whose headers decide the default --channels


def _default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return ""


def _labels(names: list[str], labels: str | None, source: Path) -> tuple[dict[str, str], list[str] | None]:
    if labels is None:
        return {}, None
    if labels == "folders":
        mapping, classes = folder_labels(names)
        if not mapping:
            raise click.BadParameter(f"no image of {source} lies in a class sub-folder", param_hint="--labels")
        return mapping, classes
    path = Path(labels)
    if not path.is_file():
        raise click.BadParameter(f"{labels!r} is neither 'folders' nor an existing JSON/CSV file", param_hint="--labels")
    try:
        mapping, classes = file_labels(path, names)
    except (ValueError, UnicodeDecodeError) as e:
        raise click.BadParameter(str(e), param_hint="--labels") from None
    if not mapping:
        raise click.BadParameter(f"no image of {source} is named in {labels}", param_hint="--labels")
    return mapping, classes


def _guess_channels(listing: Listing, order: np.ndarray) -> tuple[int, str]:
    """1, 3 or 4 from the headers of the first inputs (in shuffled order), and why."""
    kinds = []
    for i in order[:_CHANNEL_PEEK]:
        try:
            kind = peek_kind(read_item(listing.locator(int(i))))
        except OSError:
            kind = None
        if kind is not None:
            kinds.append(kind)
    if not kinds:
        return 3, "no readable header among the first inputs"
    if all(alpha for _, alpha in kinds):
        return 4, f"all {len(kinds)} sampled images have alpha"
    if any(color for color, _ in kinds):
        return 3, f"colour among {len(kinds)} sampled images"
    return 1, f"all {len(kinds)} sampled images are grayscale"


def _results(listing: Listing, order: np.ndarray, spec: ImageSpec, workers: int) -> Iterator[Result]:
    """Results in `order`, computed by `workers` processes.

    Chunks of inputs go to the pool through a bounded window of futures: memory stays flat for any
    number of inputs, results come back in order, and an early stop (--max-images, Ctrl-C) cancels
    the chunks that have not started.
    """
    chunk = max(1, min(32, len(order) // (workers * 8)))
    chunks = ([(k, listing.locator(int(order[k]))) for k in range(s, min(s + chunk, len(order)))]
              for s in range(0, len(order), chunk))
    if workers == 1:
        for jobs in chunks:
            yield from process_chunk(jobs, spec)
        return
    window: deque[Future] = deque()
    with ProcessPoolExecutor(workers) as pool:
        try:
            for jobs in chunks:
                window.append(pool.submit(process_chunk, jobs, spec))
                if len(window) >= 4 * workers:
                    yield from window.popleft().result()
            while window:
                yield from window.popleft().result()
        finally:
            for future in window:
                future.cancel()


def _nvidia_size(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is not None:
        raise click.UsageError(
            f"{param.opts[0]} is NVIDIA's dataset_tool flag; here images are square: --resolution {value} "
            "(and --transform center-crop|center-crop-wide|resize|pad for how they become square)", ctx=ctx)


# Archive suffixes NVIDIA's dataset_tool writes with --dest; ours writes a folder of tar shards.
_ARCHIVE_DEST = (".zip", ".tar", ".tar.gz", ".tgz")


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.option("--source", required=True, type=click.Path(exists=True, path_type=Path), help="Folder (recursive), .zip, or .tar/.tar.gz of images.")
@click.option("--dest", required=True, type=click.Path(path_type=Path), help="Output folder for the shards and dataset.json.")
@click.option("--resolution", required=True, type=click.IntRange(min=4), help="Output width and height in pixels.")
@click.option("--transform", type=click.Choice(TRANSFORMS), default="center-crop", help="How images become square.")
@click.option("--resize-filter", type=click.Choice(list(FILTERS)), default="lanczos", help="Resampling filter.")
@click.option("--channels", type=click.Choice(["1", "3", "4"]), default=None, help="1 grayscale, 3 RGB, 4 RGBA  [default: from the data]")
@click.option("--labels", default=None, help="'folders' (class = top-level sub-folder) or a JSON/CSV file mapping file name to class.")
@click.option("--max-images", type=click.IntRange(min=1), default=None, help="Stop after this many images.")
@click.option("--shard-size", type=click.IntRange(min=1), default=1000, help="Images per shard.")
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Worker processes  [default: all cores]")
@click.option("--seed", type=click.IntRange(min=0), default=0, help="Seed of the shuffle across shards.")
@click.option("--min-size", type=click.IntRange(min=1), default=None, help="Skip images whose short side is smaller  [default: resolution/4]")
@click.option("--prefix", default=None, help="Shard name prefix: <prefix>-000000.tar  [default: the --dest folder name]")
@click.option("--source-name", default=None, help="Source recorded in dataset.json  [default: the --source path]")
@click.option("--overwrite", is_flag=True, help="Replace a dataset already in --dest.")
@click.option("--width", hidden=True, expose_value=False, callback=_nvidia_size, is_eager=True)
@click.option("--height", hidden=True, expose_value=False, callback=_nvidia_size, is_eager=True)
def main(source: Path, dest: Path, resolution: int, transform: str, resize_filter: str, channels: str | None,
         labels: str | None, max_images: int | None, shard_size: int, workers: int | None, seed: int,
         min_size: int | None, prefix: str | None, source_name: str | None, overwrite: bool) -> None:
    """Convert images to WebDataset shards for training/data.py."""
    if dest.name.lower().endswith(_ARCHIVE_DEST) and not dest.is_dir():
        folder = dest.with_name(re.sub(r"(\.tar\.gz|\.tgz|\.zip|\.tar)$", "", dest.name, flags=re.I) or "dataset")
        raise click.BadParameter(
            f"{str(dest)!r} names an archive (NVIDIA's dataset_tool writes one zip); here --dest is a folder that gets "
            f"the shards (tar files, one per --shard-size images) and dataset.json, e.g. --dest {folder}",
            param_hint="--dest")
    if resolution & (resolution - 1):
        raise click.BadParameter(f"{resolution}: expected a power of two (4, 8, ..., 256, 512, 1024): the networks "
                                 "double the resolution from block to block", param_hint="--resolution")
    workers = workers or _default_workers()
    prefix = prefix if prefix is not None else (re.sub(r"[^A-Za-z0-9_.-]+", "_", dest.resolve().name) or "shard")
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", prefix):
        raise click.BadParameter(f"{prefix!r}: use letters, digits, '_', '.' and '-'", param_hint="--prefix")
    try:
        source_kind(source)
    except ValueError as e:
        raise click.BadParameter(str(e).removeprefix(f"--source {source}: "), param_hint="--source") from None
    problem = check_dest(dest, prefix, overwrite)
    if problem:
        raise click.ClickException(f"--dest: {problem}; pass --overwrite to replace it")
    created = not dest.exists()
    work = new_partial(dest)
    try:
        _convert(source, dest, work, resolution=resolution, transform=transform, resize_filter=resize_filter,
                 channels=None if channels is None else int(channels), labels=labels, max_images=max_images,
                 shard_size=shard_size, workers=workers, seed=seed, min_size=min_size or max(1, resolution // 4),
                 prefix=prefix, source_name=source_name or str(source))
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if created and dest.is_dir() and not any(dest.iterdir()):
            dest.rmdir()


def _write(listing: Listing, order: np.ndarray, spec: ImageSpec, workers: int, writer: ShardWriter,
           skipped: list[dict], max_images: int | None, label: Callable[[str], int | None]) -> tuple[Counter, Counter]:
    """Convert inputs in `order` into `writer` until done or `max_images`; returns (class counts, notes)."""
    class_counts: Counter[int] = Counter()
    notes: Counter[str] = Counter()
    target = min(len(order), max_images or len(order))
    count_all = target == len(order)  # the bar counts inputs, or written images under --max-images
    results = _results(listing, order, spec, workers)
    with closing(results), tqdm(total=target, unit="img", desc="converting", mininterval=0.5, file=sys.stderr) as bar:
        for result in results:
            name = listing.names[order[result.index]]
            if result.png is None:
                skipped.append({"input": name, "reason": result.reason, "detail": result.detail})
                bar.set_postfix(skipped=len(skipped), refresh=False)
                bar.update(int(count_all))
                continue
            cls = label(name)
            writer.add(result.png, cls)
            class_counts[cls] += 1
            if result.note:
                notes[result.note] += 1
            bar.update(1)
            if writer.num_written == target:
                break
    writer.close()
    return class_counts, notes


def _convert(source: Path, dest: Path, work: Path, *, resolution: int, transform: str, resize_filter: str,
             channels: int | None, labels: str | None, max_images: int | None, shard_size: int, workers: int,
             seed: int, min_size: int, prefix: str, source_name: str) -> None:
    t0 = time.perf_counter()
    listing = list_source(source, work)
    names = listing.names
    if not names:
        raise click.ClickException(f"--source {source}: no image files found")
    label_of, class_names = _labels(names, labels, source)
    skipped = [{"input": n, "reason": "no label", "detail": f"not matched by --labels {labels}"}
               for n in names if labels is not None and n not in label_of]
    skipped += [{"input": n, "reason": reason, "detail": detail} for n, reason, detail in listing.ignored]
    usable = np.array([i for i, n in enumerate(names) if labels is None or n in label_of], dtype=np.int64)
    order = usable[np.random.default_rng(seed).permutation(len(usable))]  # mixes classes across shards
    how = "from --channels"
    if channels is None:
        channels, how = _guess_channels(listing, order)
    click.echo(f"{len(names)} images in {source} ({_size(listing.input_bytes)}); {channels} channel(s) ({how}); {workers} workers")
    spec = ImageSpec(resolution, channels, transform, resize_filter, min_size)
    class_index = {n: k for k, n in enumerate(class_names or [])}
    writer = ShardWriter(work, prefix, shard_size, key_digits=max(8, len(str(len(names)))))
    class_counts, notes = _write(listing, order, spec, workers, writer, skipped, max_images,
                                 lambda name: class_index[label_of[name]] if class_names is not None else None)
    reasons = Counter(s["reason"] for s in skipped)
    if writer.num_written == 0:
        raise click.ClickException(f"--source {source}: no usable image among {len(names)} inputs "
                                   f"(skipped: {', '.join(f'{n} {r}' for r, n in reasons.most_common())})")
    info = DatasetInfo(
        resolution=resolution, channels=channels, num_images=writer.num_written, num_classes=len(class_index),
        class_names=tuple(class_names) if class_names else None,
        class_counts=tuple(class_counts[k] for k in range(len(class_index))) if class_names else None,
        shards=tuple(s["name"] for s in writer.shards), shard_counts=tuple(s["count"] for s in writer.shards),
        source=source_name, transform=transform, resize_filter=resize_filter, seed=seed,
        skipped=tuple(sorted(skipped, key=lambda s: s["input"])), created_by="tools/dataset_tool.py",
    )
    commit(work, dest, prefix, info.to_dict())  # the reader's schema (training.data_info), written by it
    dt = time.perf_counter() - t0
    click.echo(f"Wrote {writer.num_written} images ({resolution}x{resolution}, {channels} channel(s), "
               f"{len(class_index)} classes) in {len(writer.shards)} shards to {dest} "
               f"in {dt:.1f} s ({writer.num_written / dt:.0f} img/s)")
    click.echo(f"Skipped {len(skipped)} inputs" + (": " + ", ".join(f"{n} {r}" for r, n in reasons.most_common()) if skipped else ""))
    for note, n in notes.most_common():
        click.echo(f"Note: {n} images: {note}")
    click.echo(f"Size: input {_size(listing.input_bytes)} -> output {_size(writer.bytes_written)} "
               f"({writer.bytes_written / max(listing.input_bytes, 1):.2f}x)")


if __name__ == "__main__":
    main()
