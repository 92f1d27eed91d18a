"""The progressive-growing schedule (Karras et al. 2018, ProGAN sec. 3 and A.1) and real-image fading.

With ``--growth progressive`` training starts at ``start`` x ``start`` (4 unless told) and then, for
each doubling up to the dataset's resolution, runs a *fade-in* phase (the new block's weight alpha
goes linearly from 0 to 1 over ``fade_kimg`` thousand images) followed by a *stable* phase of
``stable_kimg``. The first resolution has only a stable phase and the last one lasts until the end
of training. Every phase may use its own global batch (``--growth-batch``): ProGAN shrinks the
batch as the resolution grows to fit memory.

The reals are brought to the current stage the way the networks resample (the [1, 3, 3, 1] filter of
StyleGAN2 appendix B): downsampled to the stage's resolution and, while a block fades in, blended
with their own low-pass version exactly as G blends its output (ProGAN sec. A.1 fades the reals
too, so that D cannot tell the fade apart from the data).

``--growth none`` is the one-phase schedule: full resolution, alpha 1, from the first image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ops.upfirdn2d import downsample2d, setup_filter, upsample2d


@dataclass(frozen=True)
class Phase:
    """One stretch of the schedule: ``kind`` is ``'stable'`` or ``'fade'``, ``end_nimg`` may be inf."""

    index: int
    kind: str
    resolution: int
    start_nimg: float
    end_nimg: float
    batch: int

    @property
    def name(self) -> str:
        return f"{self.kind}{self.resolution}"

    def alpha(self, nimg: float) -> float:
        """The fade-in weight of the newest block after ``nimg`` images (1 in stable phases)."""
        if self.kind != "fade":
            return 1.0
        return min(max((nimg - self.start_nimg) / (self.end_nimg - self.start_nimg), 0.0), 1.0)


class GrowthSchedule:
    """The ordered phases of a run; :meth:`at` says which phase (and alpha) holds at ``nimg``."""

    def __init__(self, phases: list[Phase]) -> None:
        if not phases:
            raise ValueError("a growth schedule needs at least one phase")
        self.phases = phases

    @classmethod
    def fixed(cls, resolution: int, batch: int) -> "GrowthSchedule":
        """``--growth none``: one stable phase at full resolution."""
        return cls([Phase(0, "stable", resolution, 0.0, math.inf, batch)])

    @classmethod
    def progressive(
        cls,
        resolution: int,
        *,
        start: int = 4,
        fade_kimg: float,
        stable_kimg: float,
        batch: int,
        batch_per_res: dict[int, int] | None = None,
    ) -> "GrowthSchedule":
        """ProGAN's schedule from ``start`` to ``resolution``; ``batch_per_res`` overrides ``batch``."""
        if start > resolution:
            raise ValueError(f"--growth-start={start}: above the dataset's resolution {resolution}")
        per_res = dict(batch_per_res or {})
        phases: list[Phase] = []
        t = 0.0
        res = start
        while True:
            b = per_res.get(res, batch)
            if res > start:
                phases.append(Phase(len(phases), "fade", res, t, t + fade_kimg * 1000, b))
                t += fade_kimg * 1000
            end = math.inf if res == resolution else t + stable_kimg * 1000
            phases.append(Phase(len(phases), "stable", res, t, end, b))
            if res == resolution:
                return cls(phases)
            t = end
            res *= 2

    def at(self, nimg: float) -> tuple[Phase, float]:
        """The phase that holds after ``nimg`` images, and its alpha."""
        for phase in self.phases:
            if nimg < phase.end_nimg:
                return phase, phase.alpha(nimg)
        last = self.phases[-1]
        return last, last.alpha(nimg)

    @property
    def final_nimg(self) -> float:
        """Images until the final phase starts (0 for a fixed schedule)."""
        return self.phases[-1].start_nimg

    def describe(self, kimg: float) -> list[str]:
        """The schedule as a person reads it (``--dry-run`` and the first lines of ``log.txt``), and a
        warning when a run of ``kimg`` thousand images ends before the final resolution."""
        last = self.phases[-1]
        if len(self.phases) == 1:
            return [f"growth: none, {last.resolution}x{last.resolution} from the first image, batch {last.batch}"]
        parts = [f"{ph.name} {_kimg(ph.start_nimg)}-{_kimg(ph.end_nimg)}" for ph in self.phases[:-1]]
        parts.append(f"{last.name} from {_kimg(last.start_nimg)}")
        batches = sorted({ph.batch for ph in self.phases})
        batch = f"batch {batches[0]}" if len(batches) == 1 else "batch " + ", ".join(
            f"{ph.resolution}: {ph.batch}" for ph in self.phases if ph.kind == "stable")
        lines = [f"growth: progressive, {', '.join(parts)} kimg ({batch})"]
        if kimg * 1000 <= last.start_nimg:
            ends, _ = self.at(kimg * 1000 - 1)
            lines.append(
                f"warning: --kimg {kimg:g} ends in {ends.name} ({ends.resolution}x{ends.resolution}); reaching "
                f"{last.resolution}x{last.resolution} needs --kimg above {_kimg(last.start_nimg)}, or shorter "
                f"--fade-kimg / --stable-kimg (now {_kimg(self._fade_nimg())} / {_kimg(self.phases[0].end_nimg)})")
        return lines

    def _fade_nimg(self) -> float:
        fades = [ph.end_nimg - ph.start_nimg for ph in self.phases if ph.kind == "fade"]
        return fades[0] if fades else 0.0


def _kimg(nimg: float) -> str:
    return f"{nimg / 1000:g}"


def prepare_reals(images: torch.Tensor, resolution: int, alpha: float, f: torch.Tensor | None = None) -> torch.Tensor:
    """uint8 ``[N, C, H, W]`` (on the target device) -> float in [-1, 1] at ``resolution``, faded by ``alpha``."""
    x = images.to(torch.float32) / 127.5 - 1
    if x.shape[-1] == resolution and alpha >= 1:
        return x
    if f is None:
        f = setup_filter([1, 3, 3, 1], device=x.device)
    while x.shape[-1] > resolution:
        x = downsample2d(x, f)
    if alpha < 1 and resolution > 4:
        # The stage below's view of this image, brought back up the way G upsamples its output.
        low = upsample2d(downsample2d(x, f), f)
        x = low.lerp(x, alpha)
    return x
