"""Progressive-growing state shared by the synthesis network and the discriminator (ProGAN sec. 3).

A network runs at a *stage*: a resolution ``r`` of its schedule ``4, 8, ..., resolution`` and a
fade-in ``alpha`` in [0, 1]. While a new block fades in (ProGAN fig. 2), its output is blended with
the resampled output of the stage below: ``out = (1 - alpha) * resample(prev) + alpha * new``.
``alpha`` has no effect at 4x4, which has no stage below.

The stage is plain Python state, not a parameter or buffer, so it never enters ``state_dict``; the
training loop sets it (``set_growth``) and saves it with its own state. Network files record it
separately. Intermediate stages need a ToRGB / FromRGB layer at every resolution, which the
``skip`` architectures have anyway; for ``orig`` and ``resnet`` they exist only when the network is
built with ``growth='progressive'``, so a network built with ``growth='none'`` is exactly the
fixed-resolution StyleGAN2 network and refuses any stage other than (full resolution, 1).
"""

from __future__ import annotations

import math

from stylegan.config import NetworkConfig, is_power_of_two


def check_stage(config: NetworkConfig, resolution: int, alpha: float) -> tuple[int, float]:
    """Validate a growth stage for networks built from ``config``; returns ``(resolution, alpha)``."""
    if not (is_power_of_two(resolution) and 4 <= resolution <= config.resolution):
        raise ValueError(
            f"growth resolution={resolution!r}: expected a power of two in [4, {config.resolution}]"
        )
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not math.isfinite(alpha):
        raise ValueError(f"growth alpha={alpha!r}: expected a number in [0, 1]")
    alpha = float(alpha)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"growth alpha={alpha!r}: expected a number in [0, 1]")
    if config.growth == "none" and (resolution != config.resolution or alpha != 1.0):
        raise ValueError(
            f"set_growth({resolution}, {alpha}): this network was built with growth='none' and runs only at "
            f"its full resolution {config.resolution} with alpha 1; build it with growth='progressive'"
        )
    return resolution, alpha


class GrowthMixin:
    """``set_growth`` and the ``growth_resolution`` / ``growth_alpha`` attributes."""

    config: NetworkConfig
    growth_resolution: int
    growth_alpha: float

    def _init_growth(self) -> None:
        self.growth_resolution = self.config.resolution
        self.growth_alpha = 1.0

    def set_growth(self, resolution: int, alpha: float) -> None:
        """Run at ``resolution`` with fade-in ``alpha`` (see the module docstring)."""
        self.growth_resolution, self.growth_alpha = check_stage(self.config, resolution, alpha)

    @property
    def fading(self) -> bool:
        """Whether the top block is being blended with the stage below."""
        return self.growth_alpha < 1.0 and self.growth_resolution > 4
