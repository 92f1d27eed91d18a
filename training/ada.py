"""The adaptive augmentation probability p of ADA (Karras et al. 2020, StyleGAN2-ADA sec. 3).

"Training Generative Adversarial Networks with Limited Data", sec. 3 "Adaptive discriminator
augmentation": D's overfitting is measured by the heuristic ``r_t = E[sign(D_train)]``, the mean
sign of D's raw outputs on the real training images, which stays near 0 while D generalises and
tends to 1 as it memorises them. Every ``interval`` (4) D steps p is nudged towards the value that
holds r_t at the ``target`` (0.6):

    p <- clamp(p + sign(r_t - target) * batch * interval / (ada_kimg * 1000), 0, 1)

so that p can go from 0 to 1 in ``ada_kimg`` (500) thousand real images.

The controller owns only p and the r_t accumulator; the trainer feeds it the real logits of D's
main phase, sums ``accumulator`` over processes (an all-reduce of two float64 numbers, exact
because both are integers below 2**53) and calls ``update`` when ``due``. Its state is plain
Python floats, so a resumed run continues bit-exactly.
"""

from __future__ import annotations

import math

import torch


class AdaController:
    """p and the r_t accumulator of ADA; see the module docstring for the rule."""

    def __init__(
        self,
        target: float,
        ada_kimg: float,
        batch: int,
        interval: int = 4,
        p: float = 0.0,
        *,
        device: torch.device | str = "cpu",
    ) -> None:
        if not (isinstance(target, (int, float)) and 0.0 < target < 1.0):
            raise ValueError(f"ADA target={target!r}: expected a number in (0, 1), e.g. 0.6")
        if not (isinstance(ada_kimg, (int, float)) and math.isfinite(ada_kimg) and ada_kimg > 0):
            raise ValueError(f"ADA ada_kimg={ada_kimg!r}: expected a finite number > 0, e.g. 500")
        if isinstance(batch, bool) or not isinstance(batch, int) or batch <= 0:
            raise ValueError(f"ADA batch={batch!r}: expected an integer > 0 (the global batch)")
        if isinstance(interval, bool) or not isinstance(interval, int) or interval <= 0:
            raise ValueError(f"ADA interval={interval!r}: expected an integer > 0 (D steps between updates)")
        if not (isinstance(p, (int, float)) and 0.0 <= p <= 1.0):
            raise ValueError(f"ADA p={p!r}: expected a number in [0, 1]")
        self.target = float(target)
        self.ada_kimg = float(ada_kimg)
        self.batch = batch
        self.interval = interval
        self.p = float(p)
        self.last_rt: float | None = None
        # [sum of sign(D(real)), number of real logits] since the last update.
        self._acc = torch.zeros(2, dtype=torch.float64, device=device)

    @property
    def step_size(self) -> float:
        """How far one update moves p: ``batch * interval / (ada_kimg * 1000)``."""
        return self.batch * self.interval / (self.ada_kimg * 1000.0)

    @property
    def accumulator(self) -> torch.Tensor:
        """The float64 ``[sum of signs, count]`` tensor; sum it in place over processes before ``update``."""
        return self._acc

    @torch.no_grad()
    def accumulate(self, logits: torch.Tensor) -> None:
        """Add the real logits D produced in its main phase (any shape; detached here)."""
        logits = logits.detach()
        # torch.sign(nan) is 0; keep NaN so a broken interval yields r_t = NaN and leaves p alone.
        signs = torch.where(logits.isnan(), logits, logits.sign()).sum(dtype=torch.float64)
        count = torch.tensor(float(logits.numel()), dtype=torch.float64, device=logits.device)
        self._acc += torch.stack([signs, count]).to(self._acc.device)

    def due(self, step: int) -> bool:
        """Whether to update after ``step`` completed D steps (counted from 1): every ``interval``-th."""
        return step > 0 and step % self.interval == 0

    def update(self) -> float:
        """Compute r_t from the (all-reduced) accumulator, move p, reset the accumulator; return p.

        With no real logits since the last update (count 0) there is no r_t: p stays and
        ``last_rt`` becomes None. A NaN logit makes r_t NaN: p stays and ``last_rt`` is NaN.
        """
        signs, count = (float(v) for v in self._acc.tolist())
        self._acc.zero_()
        if count <= 0:
            self.last_rt = None
            return self.p
        rt = signs / count
        self.last_rt = rt
        # StyleGAN2-ADA sec. 3: p moves by a fixed step towards holding r_t at the target.
        direction = (rt > self.target) - (rt < self.target)  # sign(r_t - target)
        self.p = min(max(self.p + direction * self.step_size, 0.0), 1.0)
        return self.p

    def state_dict(self) -> dict[str, object]:
        """p, the accumulator and the last r_t as plain Python floats (JSON-able, bit-exact)."""
        signs, count = (float(v) for v in self._acc.tolist())
        return {"p": self.p, "accumulator": [signs, count], "last_rt": self.last_rt}

    def load_state_dict(self, state: dict[str, object]) -> None:
        """Restore what ``state_dict`` returned; the rule's settings come from the constructor."""
        expected = {"p", "accumulator", "last_rt"}
        if set(state) != expected:
            raise ValueError(f"ADA state has keys {sorted(state)}: expected {sorted(expected)}")
        p, acc, last_rt = state["p"], state["accumulator"], state["last_rt"]
        if not (isinstance(p, (int, float)) and 0.0 <= p <= 1.0):
            raise ValueError(f"ADA state p={p!r}: expected a number in [0, 1]")
        if not (isinstance(acc, (list, tuple)) and len(acc) == 2 and all(isinstance(v, (int, float)) for v in acc)):
            raise ValueError(f"ADA state accumulator={acc!r}: expected [sum of signs, count]")
        if last_rt is not None and not isinstance(last_rt, (int, float)):
            raise ValueError(f"ADA state last_rt={last_rt!r}: expected a number or None")
        self.p = float(p)
        self._acc.copy_(torch.tensor([float(acc[0]), float(acc[1])], dtype=torch.float64))
        self.last_rt = None if last_rt is None else float(last_rt)
