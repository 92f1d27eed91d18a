"""What D sees: ``--aug none|ada|fixed|diffaug``, with its state and statistics in one place.

* ``ada``: StyleGAN2-ADA's pipeline (:mod:`training.augment`, ``--augpipe``, default ``bgc``) with
  the probability p adapted by :class:`training.ada.AdaController` from
  ``r_t = E[sign(D(real))]`` (Karras et al. 2020, sec. 3);
* ``fixed``: the same pipeline at a constant ``--p``;
* ``diffaug``: DiffAugment (Zhao et al. 2020, :mod:`training.diffaug`), ``--diffaug`` policies;
* ``none``: the images as they are (x-flips come from ``--mirror``, in the data).

The loss (:class:`training.loss.StyleGAN2Loss`) calls the object on every image D sees, real and
fake, in every phase, with the micro-batch's own generator: the draws depend on the seed the
micro-batch carries, never on the process layout. After each phase the loop hands the phase's
(all-reduced) statistics to :meth:`observe`: ADA adds D_main's ``signs_real`` and sample count to
its accumulator and moves p every ``interval`` D steps. Every process sees the same sums, so p is
the same everywhere without a collective of its own. p and the accumulator are in ``state/``.
"""

from __future__ import annotations

from typing import Any

import torch

from training.ada import AdaController
from training.diffaug import diff_augment, parse_policy

ADA_INTERVAL = 4  # StyleGAN2-ADA: p is adjusted every 4 D steps


class Augmentation:
    """Callable ``(images, gen) -> images`` for the loss, or ``None``-like when off (:attr:`active`)."""

    def __init__(self, mode: str, *, augpipe: str = "bgc", p: float | None = None, target: float = 0.6,
                 ada_kimg: float = 500.0, batch: int = 32, diffaug: str = "color,translation,cutout",
                 device: torch.device | str = "cpu") -> None:
        self.mode = mode
        self.pipe = None
        self.controller: AdaController | None = None
        self.policy: tuple[str, ...] = ()
        self._d_steps = 0
        if mode in ("ada", "fixed"):
            from training.augment import make_pipe

            self.pipe = make_pipe(augpipe).to(device)
            self.pipe.p.copy_(torch.as_tensor(float(p or 0.0)))
            if mode == "ada":
                self.controller = AdaController(target, ada_kimg, batch, ADA_INTERVAL, float(p or 0.0))
        elif mode == "diffaug":
            self.policy = parse_policy(diffaug)
        elif mode != "none":
            raise ValueError(f"--aug {mode!r}: expected one of none, ada, fixed, diffaug")

    @classmethod
    def for_run(cls, cfg: Any, device: torch.device) -> "Augmentation":
        """The augmentation of a resolved :class:`training.config.TrainConfig`."""
        return cls(cfg.aug, augpipe=cfg.augpipe, p=cfg.p, target=cfg.target, ada_kimg=cfg.ada_kimg,
                   batch=cfg.batch, diffaug=cfg.diffaug, device=device)

    @property
    def active(self) -> bool:
        return self.mode != "none"

    @property
    def p(self) -> float | None:
        """The pipeline's probability (ADA's current one); None without a pipeline."""
        return None if self.pipe is None else float(self.pipe.p)

    def __call__(self, images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        if self.pipe is not None:
            return self.pipe(images, gen)
        if self.policy:
            return diff_augment(images, self.policy, gen)
        return images

    def observe(self, result: Any) -> None:
        """A phase's result (:class:`training.step.PhaseResult`, sums over all processes): ADA counts
        D_main's signs of the real logits and, every ``interval`` D steps, moves p."""
        if self.controller is None or result.name != "D_main" or result.skipped:
            return
        self.controller.accumulator.add_(torch.tensor([result.sums["signs_real"], float(result.count)],
                                                      dtype=torch.float64))
        self._d_steps += 1
        if self.controller.due(self._d_steps):
            self.pipe.p.fill_(self.controller.update())

    def stats(self) -> dict[str, float | None]:
        """``aug_p`` and ADA's last ``aug_rt`` for ``stats.jsonl`` and the tick line (absent when off)."""
        if self.pipe is None:
            return {}
        rt = self.controller.last_rt if self.controller is not None else None
        return {"aug_p": self.p, "aug_rt": rt}

    def state_dict(self) -> dict[str, Any]:
        """Plain numbers (bit-exact resume): p, ADA's accumulator, last r_t and its D-step count."""
        state: dict[str, Any] = {"mode": self.mode}
        if self.pipe is not None:
            state["p"] = self.p
        if self.controller is not None:
            state.update(controller=self.controller.state_dict(), d_steps=self._d_steps)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("mode") != self.mode:
            raise ValueError(f"the state was saved with --aug {state.get('mode')}, this run has --aug {self.mode}")
        if self.controller is not None:
            self.controller.load_state_dict(state["controller"])
            self._d_steps = int(state["d_steps"])
        if self.pipe is not None:
            self.pipe.p.fill_(float(state["p"]))
