"""Convert a folder, zip or tar of images into WebDataset shards + dataset.json (DESIGN.md, "Shards").

    python tools/dataset_tool.py --source photos.zip --dest datasets/photos --resolution 256 \\
        [--transform center-crop] [--labels folders|FILE] [--workers N] [--shard-size 1000]

Images are decoded, converted and re-encoded as compressed PNG by `--workers` processes, in an
order shuffled by `--seed` so that every shard mixes the classes. A bad input (empty, not an image,
truncated, too small, unreadable) is skipped and recorded with its reason in dataset.json; the run
fails only when nothing usable is left. Output appears in `--dest` atomically (tools/dataset_writer.py).
"""

from __future__ import annotations

import multiprocessing
import os
import re
import shutil
import sys
import time
from collections import Counter
from contextlib import closing
from collections.abc import Iterator
from pathlib import Path

if __package__ in (None, ""):  # run as `python tools/dataset_tool.py`: make `tools.*` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import click
import numpy as np
from tqdm import tqdm

from tools.dataset_image import FILTERS, TRANSFORMS, ImageSpec, Result, peek_kind, process
from tools.dataset_sources import Item, file_labels, folder_labels, list_source, read_item, source_kind
from tools.dataset_writer import ShardWriter, check_dest, commit, new_partial

FORMAT = "stylegan-dataset/1"
_CHANNEL_PEEK = 256  # inputs whose headers decide the default --channels


def _default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return ""


def _labels(items: list[Item], labels: str | None, source: Path) -> tuple[dict[str, str], list[str] | None]:
    if labels is None:
        return {}, None
    if labels == "folders":
        mapping, names = folder_labels(items)
        if not mapping:
            raise click.BadParameter(f"no image of {source} lies in a class sub-folder", param_hint="--labels")
        return mapping, names
    path = Path(labels)
    if not path.is_file():
        raise click.BadParameter(f"{labels!r} is neither 'folders' nor an existing JSON/CSV file", param_hint="--labels")
    try:
        mapping, names = file_labels(path, items)
    except (ValueError, UnicodeDecodeError) as e:
        raise click.BadParameter(str(e), param_hint="--labels") from None
    if not mapping:
        raise click.BadParameter(f"no image of {source} is named in {labels}", param_hint="--labels")
    return mapping, names


def _guess_channels(tasks: list[tuple[int, Item]]) -> tuple[int, str]:
    """1, 3 or 4 from the headers of the first inputs (in shuffled order), and why."""
    kinds = []
    for _, item in tasks[:_CHANNEL_PEEK]:
        try:
            kind = peek_kind(read_item(item.locator))
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


def _results(tasks: list[tuple[int, Item]], spec: ImageSpec, workers: int) -> Iterator[Result]:
    """Results in task order; a pool of `workers` processes does the image work."""
    jobs = ((i, item.locator, spec) for i, item in tasks)
    if workers == 1:
        yield from map(process, jobs)
        return
    chunk = max(1, min(64, len(tasks) // (workers * 8)))
    with multiprocessing.get_context().Pool(workers) as pool:
        yield from pool.imap(process, jobs, chunksize=chunk)


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
def main(source: Path, dest: Path, resolution: int, transform: str, resize_filter: str, channels: str | None,
         labels: str | None, max_images: int | None, shard_size: int, workers: int | None, seed: int,
         min_size: int | None, prefix: str | None, source_name: str | None, overwrite: bool) -> None:
    """Convert images to WebDataset shards for training/data.py."""
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


def _convert(source: Path, dest: Path, work: Path, *, resolution: int, transform: str, resize_filter: str,
             channels: int | None, labels: str | None, max_images: int | None, shard_size: int, workers: int,
             seed: int, min_size: int, prefix: str, source_name: str) -> None:
    t0 = time.perf_counter()
    items, input_bytes = list_source(source, work)
    if not items:
        raise click.ClickException(f"--source {source}: no image files found")
    label_of, class_names = _labels(items, labels, source)
    skipped = [{"input": i.name, "reason": "no label", "detail": f"not matched by --labels {labels}"}
               for i in items if labels is not None and i.name not in label_of]
    usable = [i for i in items if labels is None or i.name in label_of]
    order = np.random.default_rng(seed).permutation(len(usable))  # mixes classes across shards
    tasks = [(k, usable[int(j)]) for k, j in enumerate(order)]
    how = "from --channels"
    if channels is None:
        channels, how = _guess_channels(tasks)
    click.echo(f"{len(items)} images in {source} ({_size(input_bytes)}); {channels} channel(s) ({how}); {workers} workers")
    spec = ImageSpec(resolution, channels, transform, resize_filter, min_size)
    class_index = {n: k for k, n in enumerate(class_names or [])}
    writer = ShardWriter(work, prefix, shard_size, key_digits=max(8, len(str(len(items)))))
    class_counts = [0] * len(class_index)
    notes: Counter[str] = Counter()
    target = min(len(tasks), max_images or len(tasks))
    count_all = target == len(tasks)  # the bar counts inputs, or written images under --max-images
    results = _results(tasks, spec, workers)
    with closing(results), tqdm(total=target, unit="img", desc="converting", mininterval=0.5, file=sys.stderr) as bar:
        for result in results:
            item = tasks[result.index][1]
            if result.png is None:
                skipped.append({"input": item.name, "reason": result.reason, "detail": result.detail})
                bar.set_postfix(skipped=len(skipped), refresh=False)
                bar.update(int(count_all))
                continue
            label = class_index[label_of[item.name]] if class_names is not None else None
            writer.add(result.png, label)
            if label is not None:
                class_counts[label] += 1
            if result.note:
                notes[result.note] += 1
            bar.update(1)
            if writer.num_written == target:
                break
    writer.close()
    reasons = Counter(s["reason"] for s in skipped)
    if writer.num_written == 0:
        raise click.ClickException(f"--source {source}: no usable image among {len(items)} inputs "
                                   f"(skipped: {', '.join(f'{n} {r}' for r, n in reasons.most_common())})")
    info = {
        "format": FORMAT, "resolution": resolution, "channels": channels, "num_images": writer.num_written,
        "num_classes": len(class_index), "class_names": class_names, "class_counts": class_counts if class_names else None,
        "shards": writer.shards, "source": source_name, "transform": transform, "resize_filter": resize_filter,
        "seed": seed, "skipped": sorted(skipped, key=lambda s: s["input"]), "created_by": "tools/dataset_tool.py",
    }
    commit(work, dest, prefix, info)
    dt = time.perf_counter() - t0
    click.echo(f"Wrote {writer.num_written} images ({resolution}x{resolution}, {channels} channel(s), "
               f"{len(class_index)} classes) in {len(writer.shards)} shards to {dest} "
               f"in {dt:.1f} s ({writer.num_written / dt:.0f} img/s)")
    click.echo(f"Skipped {len(skipped)} inputs" + (": " + ", ".join(f"{n} {r}" for r, n in reasons.most_common()) if skipped else ""))
    for note, n in notes.most_common():
        click.echo(f"Note: {n} images: {note}")
    click.echo(f"Size: input {_size(input_bytes)} -> output {_size(writer.bytes_written)} "
               f"({writer.bytes_written / max(input_bytes, 1):.2f}x)")


if __name__ == "__main__":
    main()
