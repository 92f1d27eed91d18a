"""Finding the run a command continues, and recognising its dataset wherever it now lives.

``--resume auto`` is what a requeued cluster job runs again and again, often with several runs in
one ``--outdir``: it must continue the run the command describes, not merely the newest one. A run
*matches* when every option the command gives (other than those a resume may change) equals the
run's saved value, and the data it names is the run's data. The newest matching run (by the time
its state was saved) wins.

The data is compared by content, not by path, so a run can move to node-local scratch or another
mount: the *fingerprint* is what ``dataset.json`` says of the shards (names and sample counts),
the image shape and the labels. The same shards under another path are the same data; anything else
is refused with what differs.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from training.checkpoint import find_state, read_progress

# Options that never decide which run a command means: where runs go, and how to find them.
_NOT_COMPARED = ("outdir", "data")


def dataset_fingerprint(info: Any) -> dict[str, Any]:
    """What identifies a dataset's content (a :class:`training.data_info.DatasetInfo`): its shards'
    names and sample counts, image shape and labels, as ``dataset.json`` states them."""
    return {
        "resolution": int(info.resolution),
        "channels": int(info.channels),
        "num_images": int(info.num_images),
        "num_classes": int(info.num_classes),
        "class_counts": list(info.class_counts) if info.class_counts else None,
        "shards": [[_shard_name(s), int(n)] for s, n in zip(info.shards, info.shard_counts)],
    }


def _shard_name(shard: str) -> str:
    """A shard's file name, without the folder or URL it was found under."""
    return str(shard).rstrip("/").rsplit("/", 1)[-1]


def data_location(source: str) -> str:
    """The source as an absolute path (local data), or as given (URLs, ``pipe:`` commands)."""
    if "://" in source or source.startswith("pipe:"):
        return source
    return os.path.abspath(source)


def fingerprint_differences(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """Human-readable differences between two fingerprints (empty when they are the same data)."""
    out = []
    for key in ("resolution", "channels", "num_images", "num_classes", "class_counts"):
        if saved.get(key) != current.get(key):
            out.append(f"{key} {saved.get(key)} vs {current.get(key)}")
    a = {name: n for name, n in saved.get("shards", [])}
    b = {name: n for name, n in current.get("shards", [])}
    if a != b:
        gone, new = sorted(set(a) - set(b)), sorted(set(b) - set(a))
        counts = sorted(k for k in set(a) & set(b) if a[k] != b[k])
        parts = ([f"missing {_few(gone)}"] if gone else []) + ([f"extra {_few(new)}"] if new else [])
        parts += [f"{k}: {a[k]} vs {b[k]} samples" for k in counts[:3]]
        out.append("shards " + "; ".join(parts))
    return out


def _few(names: list[str]) -> str:
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


@dataclass(frozen=True)
class Candidate:
    """A run folder with a state, and why it does or does not match the command."""

    run_dir: Path
    saved_at: float
    nimg: int
    differences: tuple[str, ...]

    @property
    def matches(self) -> bool:
        return not self.differences


def run_differences(
    saved_config: Mapping[str, Any], given: Mapping[str, Any], may_change: Iterable[str],
    fingerprint: Mapping[str, Any] | None,
) -> list[str]:
    """How a run's ``config.json`` differs from what the command gives: ``--name saved vs given``
    for each given option that must stay as saved, and the data's differences."""
    train = saved_config.get("train", {})
    network = saved_config.get("network", {})
    skip = set(may_change) | set(_NOT_COMPARED)
    out = []
    for key, value in sorted(given.items()):
        if key in skip:
            continue
        saved = train.get(key, network.get(key))
        if saved != value:
            out.append(f"--{key.replace('_', '-')} {saved!r} vs {value!r}")
    if fingerprint is not None:
        saved_print = saved_config.get("dataset", {}).get("fingerprint")
        if saved_print is not None:
            out += [f"data: {d}" for d in fingerprint_differences(saved_print, fingerprint)]
        elif "data" in given and train.get("data") != given["data"]:  # a run from before fingerprints
            out.append(f"--data {train.get('data')!r} vs {given['data']!r}")
    return out


def candidates(
    outdir: Path, given: Mapping[str, Any], may_change: Iterable[str], fingerprint: Mapping[str, Any] | None,
) -> list[Candidate]:
    """Every run in ``outdir`` with a complete state, newest state first."""
    outdir, found = Path(outdir), []
    if not outdir.is_dir():
        return found
    for run in outdir.iterdir():
        state = find_state(run) if run.is_dir() else None
        if state is None:
            continue
        try:
            progress = read_progress(state)
            config = json.loads((run / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            found.append(Candidate(run, 0.0, 0, (f"unreadable ({err})",)))
            continue
        diffs = run_differences(config, given, may_change, fingerprint)
        found.append(Candidate(run, float(progress.get("saved_at", 0.0)), int(progress.get("nimg", 0)), tuple(diffs)))
    return sorted(found, key=lambda c: c.saved_at, reverse=True)


def choose_run(found: list[Candidate]) -> tuple[Candidate | None, str]:
    """The newest matching run and a line saying which was chosen and why the newer ones were not."""
    chosen = next((c for c in found if c.matches), None)
    passed = [c for c in found if c is not chosen and (chosen is None or c.saved_at > chosen.saved_at)]
    why = "; ".join(f"{c.run_dir.name}: {', '.join(c.differences[:2])}" for c in passed[:3])
    if chosen is None:
        if not found:
            return None, "--resume auto: no run with a saved state in --outdir; starting a new run"
        return None, f"--resume auto: no run in --outdir matches this command ({why}); starting a new run"
    matching = sum(c.matches for c in found)
    line = f"--resume auto: continuing {chosen.run_dir} (the newest of {matching} matching run(s)"
    return chosen, line + (f"; newer but different: {why})" if passed else ")")
