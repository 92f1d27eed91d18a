"""Metric names: ``fid50k_full``, ``kid50k_full``, ``pr50k3_full``, ``is50k``, ``eqt50k_int``,
``eqt50k_frac``, ``eqr50k`` and their smaller forms.

The names follow StyleGAN2-ADA's convention (StyleGAN3's for the equivariance metrics), so a number
in ``stats.jsonl`` says what it measured:

| name | generated | reals | reported keys |
|---|---|---|---|
| ``fid<C>_full`` | C | all | ``fid<C>_full`` |
| ``kid<C>_full`` | C | all, at most 1,000,000 | ``kid<C>_full`` |
| ``pr<C><K>_full`` | C | all, at most 200,000 | ``pr<C><K>_full_precision``, ``..._recall`` |
| ``is<C>`` | C | none | ``is<C>_mean``, ``is<C>_std`` |
| ``eqt<C>_int``, ``eqt<C>_frac``, ``eqr<C>`` | C | none | the name (PSNR in dB; StyleGAN3 only) |

``C`` is a count, ``50k`` (thousands) or a plain number (``fid500_full``); ``K`` is the precision /
recall neighbourhood size. After a plain count, ``K`` is separated by an underscore
(``pr500_3_full``), because ``pr5003_full`` would be ambiguous. A count given through
``num_gen`` replaces the name's and renames the metric (``fid50k_full`` with ``num_gen=2000`` is
reported as ``fid2k_full``), so a number is never labelled with a count it did not use.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, replace
from typing import Iterable

KINDS = ("fid", "kid", "pr", "is", "eqt_int", "eqt_frac", "eqr")
FEATURE_KINDS = ("fid", "kid", "pr", "is")  # seen through a feature network
EQUIVARIANCE_KINDS = ("eqt_int", "eqt_frac", "eqr")  # StyleGAN3's equivariance (training/metrics/equivariance.py)
# Caps on the real samples kept as feature vectors (FID needs only their moments), as StyleGAN2-ADA.
MAX_REAL = {"fid": None, "kid": 1_000_000, "pr": 200_000, "is": 0, "eqt_int": 0, "eqt_frac": 0, "eqr": 0}
EXAMPLES = "fid50k_full, kid50k_full, pr50k3_full, is50k, eqt50k_int, eqt50k_frac, eqr50k, fid2k_full, pr500_3_full"

_COUNT = r"(\d+)(k?)"
_PATTERNS = {
    "fid": re.compile(rf"^fid{_COUNT}_full$"),
    "kid": re.compile(rf"^kid{_COUNT}_full$"),
    "pr": re.compile(r"^pr(?:(\d+)(k)(\d+)|(\d+)()_(\d+))_full$"),
    "is": re.compile(rf"^is{_COUNT}$"),
    "eqt_int": re.compile(rf"^eqt{_COUNT}_int$"),
    "eqt_frac": re.compile(rf"^eqt{_COUNT}_frac$"),
    "eqr": re.compile(rf"^eqr{_COUNT}$"),
}


@dataclass(frozen=True)
class MetricSpec:
    """One metric: its kind, generated sample count and (precision / recall) neighbourhood size."""

    kind: str
    num_gen: int
    nhood: int = 3

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"metric kind {self.kind!r}: expected one of {', '.join(KINDS)}")
        if self.num_gen < 2:
            raise ValueError(f"metric {self.kind}: {self.num_gen} generated images; expected at least 2")
        if self.kind == "pr" and not 1 <= self.nhood < self.num_gen:
            raise ValueError(
                f"metric pr: neighbourhood size {self.nhood} with {self.num_gen} images; expected 1 <= k < count"
            )
        if self.kind == "is" and self.num_gen < 10:
            raise ValueError(f"metric is: {self.num_gen} generated images; expected at least 10 (one per split)")

    @property
    def name(self) -> str:
        """The canonical name (``fid50k_full``, ``pr500_3_full``, ``is50k``)."""
        count = f"{self.num_gen // 1000}k" if self.num_gen % 1000 == 0 else str(self.num_gen)
        if self.kind == "pr":
            sep = "" if count.endswith("k") else "_"
            return f"pr{count}{sep}{self.nhood}_full"
        if self.kind in ("eqt_int", "eqt_frac"):
            return f"eqt{count}_{self.kind[4:]}"
        if self.kind in ("is", "eqr"):
            return f"{self.kind}{count}"
        return f"{self.kind}{count}_full"

    @property
    def max_real(self) -> int | None:
        """How many real feature vectors the metric needs kept (``None``: only their moments)."""
        return MAX_REAL[self.kind]

    @property
    def keys(self) -> tuple[str, ...]:
        """The result keys this metric reports."""
        if self.kind == "pr":
            return (f"{self.name}_precision", f"{self.name}_recall")
        if self.kind == "is":
            return (f"{self.name}_mean", f"{self.name}_std")
        return (self.name,)

    @property
    def needs_reals(self) -> bool:
        return self.kind in ("fid", "kid", "pr")

    @property
    def needs_features(self) -> bool:
        """Whether the metric sees images through a feature network (all but the equivariance ones)."""
        return self.kind in FEATURE_KINDS

    @property
    def is_equivariance(self) -> bool:
        return self.kind in EQUIVARIANCE_KINDS

    def with_num_gen(self, num_gen: int | None) -> MetricSpec:
        return self if num_gen is None else replace(self, num_gen=num_gen)


def _count(digits: str, k: str) -> int:
    return int(digits) * (1000 if k else 1)


def _repairs(text: str) -> list[str]:
    """Likely intended spellings: a missing or extra ``_full``, a missing ``_int``, other case, dashes."""
    t = text.lower().replace("-", "_")
    return [t, f"{t}_full", t.removesuffix("_full"), f"{t}_int"]


def parse_metric(name: str, num_gen: int | None = None) -> MetricSpec:
    """Parse one metric name; ``num_gen`` overrides its generated count (see the module docstring)."""
    text = name.strip() if isinstance(name, str) else name
    if not isinstance(text, str) or not text:
        raise ValueError(f"metric {name!r}: empty; expected names like {EXAMPLES}")
    if num_gen is not None and (isinstance(num_gen, bool) or not isinstance(num_gen, int) or num_gen < 2):
        raise ValueError(f"num_gen={num_gen!r}: expected an int >= 2")
    for kind, pattern in _PATTERNS.items():
        m = pattern.match(text)
        if m is None:
            continue
        if kind == "pr":
            g = m.groups()
            digits, k, nhood = (g[0], g[1], g[2]) if g[0] is not None else (g[3], g[4], g[5])
            spec = MetricSpec("pr", _count(digits, k), int(nhood))
        else:
            spec = MetricSpec(kind, _count(m.group(1), m.group(2)))
        return spec.with_num_gen(num_gen)
    close = [c for c in _repairs(text) if any(p.match(c) for p in _PATTERNS.values())]
    close = close or difflib.get_close_matches(text, [s.strip() for s in EXAMPLES.split(",")], n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ValueError(
        f"metric {text!r} is not a known metric name{hint}: expected fid<C>_full, kid<C>_full, pr<C><K>_full, "
        f"is<C>, eqt<C>_int, eqt<C>_frac or eqr<C> with a count C like 50k or 500 (e.g. {EXAMPLES})"
    )


def parse_metrics(names: str | Iterable[str], num_gen: int | None = None) -> list[MetricSpec]:
    """Parse a comma-separated list (or a list) of names; duplicates after renaming are refused."""
    items = [n for n in names.split(",")] if isinstance(names, str) else list(names)
    items = [n.strip() for n in items if n.strip()]
    if not items:
        raise ValueError(f"metrics {names!r}: empty; expected a comma-separated list such as {EXAMPLES}")
    specs = [parse_metric(n, num_gen) for n in items]
    seen: dict[str, str] = {}
    for raw, spec in zip(items, specs):
        if spec.name in seen:
            raise ValueError(f"metrics {names!r}: {raw!r} and {seen[spec.name]!r} both give {spec.name!r}; list it once")
        seen[spec.name] = raw
    return specs


_RESULT_SUFFIXES = ("_precision", "_recall", "_mean", "_std")


def is_result_key(key: str) -> bool:
    """Whether ``key`` is a metric result key (``fid50k_full``, ``pr50k3_full_recall``, ``is50k_std``).

    For sorting a stats record's keys, e.g. into a ``Metrics/`` TensorBoard group.
    """
    for suffix in ("",) + _RESULT_SUFFIXES:
        if suffix and not key.endswith(suffix):
            continue
        base = key[: len(key) - len(suffix)] if suffix else key
        try:
            spec = parse_metric(base)
        except ValueError:
            continue
        if key in spec.keys:
            return True
    return False
